// One connection from openproxy to a PostgreSQL server: login (TLS, md5, SCRAM) through
// pg-protocol, then a byte pipe whose ReadyForQuery / ParameterStatus / ErrorResponse are watched
// by a scanner while every chunk is forwarded unchanged to the client that holds it.

import net from 'node:net';
import tls from 'node:tls';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser';
import type { BackendMessage } from 'pg-protocol/dist/messages';
import { FrameReader } from '../protocol/frame-reader';
import { errorField, queryMessage } from '../protocol/backend';
import { MessageScanner, ScanSink } from '../protocol/scanner';
import type { DnsCache } from '../net/dns-cache';
import { ScramClient, SCRAM_MECHANISM } from '../protocol/scram';
import { md5Response, md5Stored } from '../protocol/md5';
import { setKeepAlive } from '../net/sockopt';
import { onreadOptions, writeView } from '../net/read-buffer';
import { SQLSTATE } from '../protocol/sqlstate';

/** PostgreSQL's own maximum message size (1 GB). */
export const MAX_MESSAGE_LENGTH = 0x3fffffff;
const Z = 0x5a;
const S = 0x53;
const E = 0x45;
const D = 0x44;
const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);

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
}

/** Receives what the server sends while a client holds the connection. */
export interface ServerOwner {
  /** A chunk of server bytes to forward unchanged. */
  onServerData(chunk: Buffer): void;
  /**
   * ReadyForQuery seen, with its transaction status byte (I, T, E). Returns true when this
   * message ends the owner's hold: bytes after it belong to nobody and are not forwarded.
   */
  onReady(status: number): boolean | void;
  onServerError(body: Buffer): void;
  /** The connection broke (not called for close() we asked for). */
  onServerClosed(reason: string): void;
  /** The server socket drained after a write returned false. */
  onServerDrain?(): void;
  /** ParseComplete ('1') or CloseComplete ('3') arrived: true = it answers openproxy's own message, drop it. */
  dropResponse?(type: number): boolean;
  /** An ErrorResponse the owner may replace with its own (same position in the stream), or null. */
  replaceError?(body: Buffer): Buffer | null;
}

export class ServerConnError extends Error {
  /** `endedAtLogin`: the server closed the session as its login completed; nothing was sent on it. */
  constructor(message: string, readonly sqlstate: string, readonly fromServer = false, readonly endedAtLogin = false) {
    super(message);
  }
}

/**
 * A failed acquire that no other server or later try can fix: pool exhaustion, or PostgreSQL's
 * own refusal (auth, unknown database). A server that cannot be reached or is starting / shutting
 * down (57P0x, as during a switchover) is not: it is banned or skipped and another one tried.
 */
export function isFinal(err: ServerConnError): boolean {
  const goingAway = err.sqlstate !== undefined && err.sqlstate.startsWith('57P0');
  return err.sqlstate === SQLSTATE.TOO_MANY_CONNECTIONS || (err.fromServer === true && !goingAway);
}

let nextServerId = 1;

export class ServerConn implements ScanSink {
  /** Process-unique id (SHOW SERVERS server_id). */
  readonly id = nextServerId++;
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
  /** When it was last released to the idle list (ms epoch). */
  lastUsed = Date.now();
  /** Held by a client (counted in the shared serverActive table). */
  lent = false;
  /** Last ReadyForQuery status: 0x49 I, 0x54 T, 0x45 E. */
  txStatus = 0x49;
  /** Client bytes were sent since the last ReadyForQuery: the server owes an answer. */
  busy = false;
  owner: ServerOwner | null = null;
  closed = false;
  closeReason = '';
  transactions = 0;
  queries = 0;
  bytesSent = 0;
  bytesReceived = 0;
  /** Message types whose bodies the scanner hands over: Z, S, E always; D only during run(). */
  private readonly wanted = MessageScanner.want('ZSE');
  private readonly scanner = new MessageScanner(this.wanted, MAX_MESSAGE_LENGTH);
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

  private constructor(readonly socket: net.Socket, readonly login: ServerLogin) {}

  static async open(login: ServerLogin): Promise<ServerConn> {
    let address = login.host;
    if (login.dns) {
      try {
        address = await login.dns.resolve(login.host);
      } catch (e) {
        throw new ServerConnError(`cannot resolve ${login.host}: ${(e as Error).message}`, '08006');
      }
    }
    const conn = await ServerConn.connect(login, address);
    conn.address = address;
    return conn;
  }

  /** True when dns_cache_enabled and the host now resolves elsewhere: the connection drains. */
  get addressStale(): boolean {
    const now = this.login.dns?.current(this.login.host);
    return now !== undefined && now !== this.address;
  }

  private static connect(login: ServerLogin, address: string): Promise<ServerConn> {
    return new Promise((resolve, reject) => {
      let settled = false;
      // Plain connections read into the thread's reused buffer (onread); TLS keeps the stream path.
      const raw = login.tls
        ? net.connect({ host: address, port: login.port, noDelay: true })
        : net.connect({ host: address, port: login.port, noDelay: true, onread: onreadOptions(onServerRead) } as net.NetConnectOpts);
      let sock: net.Socket = raw;
      const timer = setTimeout(() => done(new ServerConnError(`timed out connecting to ${login.host}:${login.port} after ${login.connectTimeout} ms`, '08006')), login.connectTimeout);
      const done = (err: Error | null, conn?: ServerConn) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          sock.destroy();
          raw.destroy();
          reject(err);
        } else resolve(conn!);
      };
      raw.once('error', (e) => done(new ServerConnError(`cannot connect to ${login.host}:${login.port}: ${e.message}`, '08006')));
      raw.once('close', () => done(new ServerConnError(`server ${login.host}:${login.port} closed the connection during login`, '08006')));
      raw.once('connect', () => {
        setKeepAlive(raw, login.keepalive.idle, login.keepalive.interval, login.keepalive.count);
        if (!login.tls) return startLogin(raw);
        raw.write(serialize.requestSsl());
        raw.once('data', (b: Buffer) => {
          if (b.length !== 1 || b[0] !== 0x53) return done(new ServerConnError(`server ${login.host}:${login.port} refused TLS (server_tls = true)`, '08006'));
          const t = tls.connect({ socket: raw, servername: net.isIP(login.host) ? undefined : login.host, rejectUnauthorized: login.verifyCertificate });
          sock = t;
          t.once('error', (e) => done(new ServerConnError(`TLS to ${login.host}:${login.port} failed: ${e.message}`, '08006')));
          t.once('secureConnect', () => startLogin(t));
        });
      });

      const startLogin = (s: net.Socket) => {
        const conn = new ServerConn(s, login);
        const frames = new FrameReader(MAX_MESSAGE_LENGTH);
        const parser = new Parser();
        let scram: ScramClient | null = null;
        const onMessage = (msg: BackendMessage) => {
          const m = msg as BackendMessage & Record<string, any>;
          switch (m.name) {
            case 'authenticationOk':
              return;
            case 'authenticationCleartextPassword':
              if (login.password === undefined) return done(new ServerConnError(`server asks a password for ${login.user} and none is configured`, '28P01'));
              s.write(serialize.password(login.password));
              return;
            case 'authenticationMD5Password':
              if (login.password === undefined) return done(new ServerConnError(`server asks a password for ${login.user} and none is configured`, '28P01'));
              s.write(serialize.password(md5Response(md5Stored(login.password, login.user), m.salt)));
              return;
            case 'authenticationSASL':
              if (login.password === undefined) return done(new ServerConnError(`server asks a password for ${login.user} and none is configured`, '28P01'));
              if (!m.mechanisms.includes(SCRAM_MECHANISM)) return done(new ServerConnError(`server offers no supported SASL mechanism (${m.mechanisms.join(', ')})`, '28000'));
              scram = new ScramClient(login.password);
              s.write(serialize.sendSASLInitialResponseMessage(SCRAM_MECHANISM, scram.first()));
              return;
            case 'authenticationSASLContinue':
              s.write(serialize.sendSCRAMClientFinalMessage(scram!.final(m.data)));
              return;
            case 'authenticationSASLFinal':
              scram!.verify(m.data);
              return;
            case 'parameterStatus':
              conn.params.set(m.parameterName, m.parameterValue);
              conn.reported.set(m.parameterName.toLowerCase(), m.parameterValue);
              return;
            case 'backendKeyData':
              conn.backendPid = m.processID;
              conn.backendSecret = m.secretKey;
              return;
            case 'error':
              return done(new ServerConnError(`server ${login.host}:${login.port}: ${m.message}`, m.code ?? '08006', true));
            case 'readyForQuery': {
              delete (raw as SocketWithConn)[LOGIN];
              s.removeAllListeners('data');
              s.removeAllListeners('error');
              s.removeAllListeners('close');
              raw.removeAllListeners('error');
              raw.removeAllListeners('close');
              conn.attachStream();
              if (frames.pending > 0) conn.onData(Buffer.from(frames.view(frames.off, frames.end)));
              frames.off = frames.end;
              // A FATAL in the same read as the login's end (the server shutting down as the session
              // started): the connection is already closed and must not be handed to anyone.
              if (conn.closed) return done(new ServerConnError(`server ${login.host}:${login.port} ended the session right after login: ${conn.closeReason}`, conn.doomedCode || '08006', true, true));
              return done(null, conn);
            }
            default:
              return; // NoticeResponse during login: ignore
          }
        };
        const onLoginData = (chunk: Buffer) => {
          frames.push(chunk);
          try {
            while (!settled && frames.next()) parser.parse(frames.view(frames.start, frames.msgEnd), onMessage);
          } catch (e) {
            return done(new ServerConnError(`login to ${login.host}:${login.port} failed: ${(e as Error).message}`, '08006'));
          }
          if (frames.error) done(new ServerConnError(`server ${login.host}:${login.port} sent an invalid message: ${frames.error}`, '08P01'));
          frames.detach();
        };
        if (s === raw && !login.tls) (raw as SocketWithConn)[LOGIN] = onLoginData;
        else s.on('data', onLoginData);
        if (s !== raw) {
          s.once('error', (e) => done(new ServerConnError(`server ${login.host}:${login.port}: ${e.message}`, '08006')));
          s.once('close', () => done(new ServerConnError(`server ${login.host}:${login.port} closed the connection during login`, '08006')));
        }
        const startup: Record<string, string> = { user: login.user, database: login.database, application_name: login.applicationName };
        s.write(serialize.startup(startup));
      };
    });
  }

  private attachStream(): void {
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
    const owner = this.owner;
    this.chunk = chunk;
    this.cut = -1;
    if (!this.scanner.scan(chunk, this)) {
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
    if (this.doomed && this.owner === null) this.close(this.doomed, true);
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
  trackStatementReplies(on: boolean): void {
    this.wanted[0x31] = on ? 1 : 0;
    this.wanted[0x33] = on ? 1 : 0;
  }

  /** ScanSink: a watched message from the server. */
  onMessage(type: number, body: Buffer): void {
    if (type === Z) {
      this.txStatus = body[0];
      this.busy = false;
      this.queries++;
      if (this.txStatus === 0x49) this.transactions++;
      if (this.cut < 0 && this.owner?.onReady(this.txStatus) === true) this.cut = body.byteOffset - this.chunk.byteOffset + body.length;
    } else if (type === S) {
      const k = body.indexOf(0);
      const v = body.indexOf(0, k + 1);
      if (k > 0 && v > k) {
        const name = body.toString('utf8', 0, k);
        const value = body.toString('utf8', k + 1, v);
        this.params.set(name, value);
        this.reported.set(name.toLowerCase(), value);
      }
    } else if (type === E) {
      if (this.cut >= 0 || this.owner === null) {
        if (this.doomed === null) this.doomedCode = errorField(body, 0x43);
        this.doomed ??= `server sent an error while idle: ${this.doomedCode} ${errorField(body, 0x4d)}`;
        return;
      }
      const replacement = this.owner?.replaceError?.(body) ?? null;
      // Only an error whose bytes all lie in this chunk can be swapped; others pass unchanged.
      if (replacement && body.buffer === this.chunk.buffer) {
        const start = body.byteOffset - this.chunk.byteOffset - 5;
        if (start >= 0) {
          this.drops.push(start, start + 5 + body.length);
          this.inserts.push(replacement);
        }
      }
      this.owner?.onServerError(body);
    } else if (type === D && this.rows) {
      this.rows.push(decodeDataRow(body));
    } else if ((type === 0x31 || type === 0x33) && this.cut < 0 && this.owner?.dropResponse?.(type)) {
      const start = body.byteOffset - this.chunk.byteOffset - 5; // bodyless: header is in this chunk
      this.drops.push(start, start + 5);
      this.inserts.push(null);
    }
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

  /** Runs one simple-protocol statement without a client attached (reset, SET); resolves at ReadyForQuery. */
  run(sql: string, timeoutMs: number): Promise<{ ok: boolean; error?: Buffer; params: [string, string][]; rows: string[][] }> {
    const rows: string[][] = [];
    this.rows = rows;
    this.wanted[D] = 1;
    const done = () => {
      this.rows = null;
      this.wanted[D] = 0;
    };
    return new Promise((resolve) => {
      const changed: [string, string][] = [];
      const before = new Map(this.params);
      let error: Buffer | undefined;
      const timer = setTimeout(() => {
        done();
        this.owner = null;
        this.close(`no answer to ${sql.slice(0, 40)} within ${timeoutMs} ms`);
        resolve({ ok: false, params: changed, rows });
      }, timeoutMs);
      this.owner = {
        onServerData: () => undefined,
        onServerError: (body) => (error = Buffer.from(body)),
        onReady: () => {
          clearTimeout(timer);
          done();
          this.owner = null;
          for (const [k, v] of this.params) if (before.get(k) !== v) changed.push([k, v]);
          resolve({ ok: error === undefined, error, params: changed, rows });
        },
        onServerClosed: () => {
          clearTimeout(timer);
          done();
          this.owner = null;
          resolve({ ok: false, params: changed, rows });
        },
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
      if (!unexpected && this.socket.writable) this.socket.end(TERMINATE);
      else this.socket.destroy();
    }
    const owner = this.owner;
    if (unexpected && owner) owner.onServerClosed(reason);
    this.onClosed?.(this, reason);
  }

  /** Set by the pool: called once when the connection is gone, to free its slot. */
  onClosed?: (conn: ServerConn, reason: string) => void;
}

const CONN = Symbol('serverConn');
const LOGIN = Symbol('serverLogin');
type SocketWithConn = net.Socket & { [CONN]?: ServerConn; [LOGIN]?: (chunk: Buffer) => void };

/** `onread` callback of plain server sockets (`this` is the socket): login handler, then the pipe. */
function onServerRead(this: net.Socket, nread: number, buf: Buffer): void {
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
  const n = body.readInt16BE(0);
  const out: string[] = [];
  let i = 2;
  for (let c = 0; c < n; c++) {
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
