// One logged-in connection from openproxy to a PostgreSQL server (the login is server-login.ts): a
// byte pipe whose ReadyForQuery / ParameterStatus / ErrorResponse are watched by a scanner while
// every chunk is forwarded unchanged to the client that holds it. Statements openproxy runs itself
// (run()) take the replies for a moment without disturbing the holder.

import net from 'node:net';
import { errorField, queryMessage } from '../protocol/backend';
import { BACKEND_TYPES, BE, TX_IDLE } from '../protocol/messages';
import { MessageScanner, type ScanSink } from '../protocol/scanner';
import type { ScramKeys } from '../protocol/scram';
import type { DnsCache } from '../net/dns-cache';
import { writeView } from '../net/read-buffer';
import { serialize } from 'pg-protocol';
import type { RunResult, ServerLink, ServerOwner } from './server-link';

/** PostgreSQL's own maximum message size (1 GB). */
export const MAX_MESSAGE_LENGTH = 0x3fffffff;
const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);
/** PostgreSQL reports about 15 parameters; a server naming this many distinct ones is misbehaving. */
const MAX_REPORTED_PARAMS = 1000;

export interface ServerLogin {
  host: string;
  port: number;
  user: string;
  password?: string;
  database: string;
  applicationName: string;
  connectTimeout: number;
  tls: boolean;
  verifyCertificate: boolean;
  keepalive: { idle: number; interval: number; count: number };
  /** dns_cache_enabled: where `host` is resolved (the connection records the address it used). */
  dns?: DnsCache | null;
  /** SCRAM pass-through keys by configured verifier, learned from this worker's client logins. */
  passThrough?: ReadonlyMap<string, ScramKeys>;
}

let nextServerId = 1;
/** Where server ids come from: this thread's counter until useServerIds() (one counter for all workers). */
let takeServerId = () => nextServerId++;

/** Server ids from a source shared by every worker, so SHOW SERVERS lists each id once. */
export function useServerIds(take: () => number): void {
  takeServerId = take;
}

export class ServerConn implements ScanSink, ServerLink {
  /** Process-unique id (SHOW SERVERS server_id). */
  readonly id = takeServerId();
  /** ParameterStatus values as the server last reported them. */
  readonly params = new Map<string, string>();
  /** The same values by lower-case name (GUC names are case-insensitive). */
  readonly reported = new Map<string, string>();
  /** GUCs openproxy knows were set on this connection beyond its defaults (name → current_setting). */
  gucs = new Map<string, string>();
  /** The server's BackendKeyData, for forwarding CancelRequests. */
  backendPid = 0;
  backendSecret = 0;
  readonly createdAt = Date.now();
  /** When it was last released to the idle list or checked (ms epoch; 0 = fresh, never released). */
  lastUsed = 0;
  testing = false;
  /** Held by a client (counted in the shared serverActive table). */
  lent = false;
  /** Last ReadyForQuery status: 0x49 I, 0x54 T, 0x45 E. */
  txStatus = 0x49;
  /** Client bytes were sent since the last ReadyForQuery: the server owes an answer. */
  busy = false;
  /** The client holding the connection (hold / letGo), or null. */
  owner: ServerOwner | null = null;
  /** Receives the replies to openproxy's own statement while run() is under way (before owner). */
  private runner: ServerOwner | null = null;
  closed = false;
  closeReason = '';
  transactions = 0;
  queries = 0;
  bytesSent = 0;
  bytesReceived = 0;
  /** Message types whose bodies the scanner hands over: Z, S, E always; D only during run(). */
  private readonly wanted = MessageScanner.want('ZSE');
  private readonly scanner = new MessageScanner(this.wanted, MAX_MESSAGE_LENGTH, BACKEND_TYPES);
  private rows: string[][] | null = null;
  /** Header bytes of a message split across reads, held back and scanned again with the next chunk. */
  private held: Buffer | null = null;
  /** Chunk being scanned and the [start, end) ranges of it to drop (answers to openproxy's own messages). */
  private chunk: Buffer = Buffer.alloc(0);
  private drops: number[] = [];
  /** Replacement bytes for each dropped range (null = just drop), parallel to drops' pairs. */
  private inserts: (Buffer | null)[] = [];
  /** Server-side prepared statements on this connection, least recently used first (name → true). */
  readonly prepared = new Map<string, true>();
  /** RECONNECT: close instead of pooling when released (SHOW SERVERS close_needed; WAIT_CLOSE waits for these). */
  closeNeeded = false;
  /** Prepared-statement cache on this connection: found, prepared lazily, closed to make room (SHOW SERVERS). */
  prepareHits = 0;
  prepareMisses = 0;
  prepareEvictions = 0;
  /** A "cached plan must not change result type" error was seen: DEALLOCATE ALL before reuse. */
  stalePlans = false;
  /**
   * Set when the server sent an ErrorResponse nobody asked for (FATAL at shutdown or timeout,
   * arriving after the owner's last ReadyForQuery): the connection is closed, never reused.
   */
  doomed: string | null = null;
  /** SQLSTATE of the error that doomed it. */
  doomedCode = '';
  /** The address the connection went to (dns_cache_enabled), or the host as configured. */
  address = '';
  /** Offset in the chunk being scanned where the owner's share ended (its hold-ending ReadyForQuery), or -1. */
  private cut = -1;

  /** Built by openServerConn (server-login.ts) once the login succeeded. */
  constructor(
    readonly socket: net.Socket,
    readonly login: ServerLogin,
  ) {}

  /** True when dns_cache_enabled and the host now resolves elsewhere: the connection drains. */
  get addressStale(): boolean {
    const now = this.login.dns?.current(this.login.host);
    return now !== undefined && now !== this.address;
  }

  /** The login is done: server bytes now go through the scanner to the holder. */
  attachStream(): void {
    this.socket.on('data', onServerSocketData);
    this.socket.on('error', onServerSocketError);
    this.socket.on('close', onServerSocketClose);
    this.socket.on('drain', onServerSocketDrain);
    (this.socket as SocketWithConn)[CONN] = this;
  }

  onData(data: Buffer): void {
    this.bytesReceived += data.length;
    let chunk = data;
    if (this.held) {
      chunk = Buffer.concat([this.held, data]);
      this.held = null;
    }
    // The owner at the start of the chunk gets it up to the ReadyForQuery that ends its hold;
    // anything after that (a FATAL at shutdown, a notice) was not sent to it and is dropped.
    const owner = this.runner ?? this.owner;
    this.chunk = chunk;
    this.cut = -1;
    if (!this.scanner.scan(chunk, this)) {
      // The client gets the whole messages before the bad one, so it is at a message boundary.
      if (owner && this.cut < 0) this.forward(owner, chunk, this.scanner.errorAt);
      this.close(`protocol error from server: ${this.scanner.error}`, true);
      return;
    }
    let end = chunk.length;
    const partial = this.scanner.takePartialHeader();
    if (partial > 0) {
      end -= partial;
      this.held = Buffer.from(chunk.subarray(end));
    }
    if (this.cut >= 0) end = this.cut;
    if (owner) this.forward(owner, chunk, end);
    this.drops.length = 0;
    this.inserts.length = 0;
    if (this.doomed && this.owner === null && this.runner === null) this.close(this.doomed, true);
  }

  private forward(owner: ServerOwner, chunk: Buffer, end: number): void {
    if (this.drops.length === 0) {
      if (end > 0) owner.onServerData(end === chunk.length ? chunk : chunk.subarray(0, end));
      return;
    }
    // Dropped replies (answers to openproxy's own Parse / Close) and swapped errors: the client
    // still gets the chunk in one piece, so one write.
    const parts: Buffer[] = [];
    let from = 0;
    for (let i = 0; i < this.drops.length && this.drops[i] < end; i += 2) {
      if (this.drops[i] > from) parts.push(chunk.subarray(from, this.drops[i]));
      const insert = this.inserts[i / 2];
      if (insert) parts.push(insert);
      from = this.drops[i + 1];
    }
    if (end > from) parts.push(chunk.subarray(from, end));
    if (parts.length > 0) owner.onServerData(parts.length === 1 ? parts[0] : Buffer.concat(parts));
  }

  /** Watch ParseComplete / CloseComplete (prepared-statement cache on), or not. */
  private trackStatementReplies(on: boolean): void {
    this.wanted[0x31] = on ? 1 : 0;
    this.wanted[0x33] = on ? 1 : 0;
  }

  /** ScanSink: a watched message from the server. */
  onMessage(type: number, body: Buffer): void {
    const sink = this.runner ?? this.owner;
    if (type === BE.READY) {
      this.txStatus = body[0];
      this.busy = false;
      this.queries++;
      if (this.txStatus === TX_IDLE) this.transactions++;
      if (this.cut < 0 && sink?.onReady(this.txStatus) === true)
        this.cut = body.byteOffset - this.chunk.byteOffset + body.length;
    } else if (type === BE.PARAMETER_STATUS) {
      const k = body.indexOf(0);
      const v = body.indexOf(0, k + 1);
      if (k > 0 && v > k) {
        const name = body.toString('utf8', 0, k);
        const value = body.toString('utf8', k + 1, v);
        if (this.params.size >= MAX_REPORTED_PARAMS && !this.params.has(name)) {
          this.doomedCode = '08P01';
          this.doomed ??= `server reported more than ${MAX_REPORTED_PARAMS} distinct parameters`;
          return;
        }
        this.params.set(name, value);
        this.reported.set(name.toLowerCase(), value);
      }
    } else if (type === BE.ERROR) {
      if (this.cut >= 0 || sink === null) {
        if (this.doomed === null) this.doomedCode = errorField(body, 0x43);
        this.doomed ??= `server sent an error while idle: ${this.doomedCode} ${errorField(body, 0x4d)}`;
        return;
      }
      const replacement = sink.replaceError?.(body) ?? null;
      // Only an error whose bytes all lie in this chunk can be swapped; others pass unchanged.
      if (replacement && body.buffer === this.chunk.buffer) {
        const start = body.byteOffset - this.chunk.byteOffset - 5;
        if (start >= 0) {
          this.drops.push(start, start + 5 + body.length);
          this.inserts.push(replacement);
        }
      }
      sink.onServerError(body);
    } else if (type === BE.DATA_ROW && this.rows) {
      this.rows.push(decodeDataRow(body));
    } else if (
      (type === BE.PARSE_COMPLETE || type === BE.CLOSE_COMPLETE) &&
      this.cut < 0 &&
      sink?.dropResponse?.(type)
    ) {
      const start = body.byteOffset - this.chunk.byteOffset - 5; // bodyless: header is in this chunk
      this.drops.push(start, start + 5);
      this.inserts.push(null);
    }
  }

  hold(owner: ServerOwner, trackStatements: boolean): void {
    this.owner = owner;
    this.trackStatementReplies(trackStatements);
  }

  letGo(): void {
    this.owner = null;
    this.socket.resume();
  }

  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  cancel(): Promise<void> {
    return sendCancel(this.login.host, this.login.port, this.backendPid, this.backendSecret, this.login.connectTimeout);
  }

  /** Forwards client bytes. */
  write(data: Buffer): boolean {
    this.busy = true;
    this.bytesSent += data.length;
    return writeView(this.socket, data);
  }

  /** Between server messages: an ErrorResponse of ours may be sent to the client now. */
  get atMessageBoundary(): boolean {
    return this.scanner.atBoundary;
  }

  /** True when the server is between statements, idle, and owes nothing: safe to reset and reuse. */
  get clean(): boolean {
    return !this.closed && this.doomed === null && !this.busy && this.txStatus === 0x49 && this.scanner.atBoundary;
  }

  /**
   * Runs one simple-protocol statement of openproxy's own (reset, SET, GUC read-back, check);
   * resolves at its ReadyForQuery. Its replies go to a runner, not to the holder, which keeps
   * the connection throughout.
   */
  run(sql: string, timeoutMs: number): Promise<RunResult> {
    const rows: string[][] = [];
    this.rows = rows;
    this.wanted[BE.DATA_ROW] = 1;
    return new Promise((resolve) => {
      const changed: [string, string][] = [];
      const before = new Map(this.params);
      let error: Buffer | undefined;
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        this.rows = null;
        this.wanted[BE.DATA_ROW] = 0;
        this.runner = null;
        if (ok) for (const [k, v] of this.params) if (before.get(k) !== v) changed.push([k, v]);
        resolve({ ok: ok && error === undefined, error, params: changed, rows });
      };
      const timer = setTimeout(() => {
        finish(false);
        this.close(`no answer to ${sql.slice(0, 40)} within ${timeoutMs} ms`);
      }, timeoutMs);
      this.runner = {
        onServerData: () => undefined,
        onServerError: (body) => {
          error = Buffer.from(body);
        },
        onReady: () => finish(true),
        onServerClosed: () => finish(false),
      };
      this.write(queryMessage(sql));
    });
  }

  /** Closes the connection; `unexpected` = it broke rather than being retired. */
  close(reason: string, unexpected = false): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    if (!this.socket.destroyed) {
      if (!unexpected && this.socket.writable) {
        this.socket.end(TERMINATE);
        // A server that never closes its side (stalled, black-holed) must not keep the fd.
        setTimeout(destroySocket, CLOSE_GRACE_MS, this.socket).unref();
      } else this.socket.destroy();
    }
    const sink = this.runner ?? this.owner;
    if (unexpected && sink) sink.onServerClosed(reason);
    this.onClosed?.(this, reason);
  }

  /** Set by the pool: called once when the connection is gone, to free its slot. */
  onClosed?: (conn: ServerConn, reason: string) => void;
}

const CLOSE_GRACE_MS = 5000;
const destroySocket = (s: net.Socket) => s.destroy();

const CONN = Symbol('serverConn');
/** Set on a plain socket while it logs in: its onread callback hands chunks to the login. */
export const LOGIN = Symbol('serverLogin');
export type SocketWithConn = net.Socket & { [CONN]?: ServerConn; [LOGIN]?: (chunk: Buffer) => void };

/** `onread` callback of plain server sockets (`this` is the socket): login handler, then the pipe. */
export function onServerRead(this: net.Socket, nread: number, buf: Buffer): void {
  const s = this as SocketWithConn;
  const chunk = buf.subarray(0, nread);
  const login = s[LOGIN];
  if (login) login(chunk);
  else s[CONN]?.onData(chunk);
}

function onServerSocketData(this: SocketWithConn, chunk: Buffer): void {
  this[CONN]!.onData(chunk);
}
function onServerSocketError(this: SocketWithConn, err: Error): void {
  this[CONN]!.close(`server connection error: ${err.message}`, true);
}
function onServerSocketClose(this: SocketWithConn): void {
  this[CONN]!.close('server closed the connection', true);
}
function onServerSocketDrain(this: SocketWithConn): void {
  this[CONN]!.owner?.onServerDrain?.();
}

/** DataRow body → column texts (NULL as ''): only for openproxy's own queries. */
function decodeDataRow(body: Buffer): string[] {
  const n = body.length >= 2 ? body.readInt16BE(0) : 0;
  const out: string[] = [];
  let i = 2;
  for (let c = 0; c < n && i + 4 <= body.length; c++) {
    const len = body.readInt32BE(i);
    i += 4;
    if (len < 0) out.push('');
    else {
      out.push(body.toString('utf8', i, i + len));
      i += len;
    }
  }
  return out;
}

/** Sends a CancelRequest for a server backend over a new connection. */
export function sendCancel(host: string, port: number, pid: number, secret: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const t = setTimeout(() => s.destroy(), timeoutMs);
    s.once('connect', () => s.end(serialize.cancel(pid, secret)));
    s.once('error', () => undefined);
    s.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}
