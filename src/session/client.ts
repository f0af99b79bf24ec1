// One client connection: startup (TLS, cancel, auth), server assignment, then the data phase
// where client messages are framed and forwarded to the server it holds (session pooling), and
// server chunks are forwarded back unchanged. Every disconnect goes through disconnect(reason).

import net from 'node:net';
import tls from 'node:tls';
import { randomInt } from 'node:crypto';
import { AUTH_OK, SSL_NO, SSL_YES, backendKeyData, errorResponse, message, parameterStatus, READY_IDLE, withSeverity } from '../protocol/backend';
import { FrameReader } from '../protocol/frame-reader';
import { MAX_STARTUP_LENGTH, decodeStartup } from '../protocol/frontend';
import { SQLSTATE } from '../protocol/sqlstate';
import { MAX_MESSAGE_LENGTH, ServerConn, ServerConnError, ServerOwner, sendCancel } from '../pool/server-conn';
import type { UserPool } from '../pool/registry';
import { chooseSessionServer } from '../pool/choose';
import { STAT } from '../shared/layout';
import { log } from '../log';
import { ClientAuth } from './auth';
import { clientGucs } from './startup-params';
import { gucReadStatement, gucSyncStatement } from './guc-sync';
import { NO_EFFECT, PinReason, stateEffects } from './state-effects';
import { PreparedStatements } from './prepared';
import { writeView } from '../net/read-buffer';

const SESSION = Symbol('clientSession');
type SessionSocket = net.Socket & { [SESSION]?: ClientSession };

/** `onread` callback of plain client sockets (`this` is the socket). */
export function onClientRead(this: net.Socket, nread: number, buf: Buffer): void {
  (this as SessionSocket)[SESSION]?.onData(buf.subarray(0, nread));
}
import { WorkerContext, encodePid, workerOfPid } from './context';

const enum Phase {
  Startup,
  Auth,
  Waiting,
  Active,
  Closed,
}

// Frontend message types the data phase looks at.
const TERMINATE = 0x58; // X
const QUERY = 0x51; // Q
const PARSE = 0x50; // P
const BIND = 0x42; // B
const EXECUTE = 0x45; // E
const DESCRIBE = 0x44; // D
const CLOSE = 0x43; // C
const FLUSH = 0x48; // H
const SYNC = 0x53; // S
const FUNCTION_CALL = 0x46; // F

/**
 * Stands in for a named Parse when the prepared-statement cache is off: it fails at analysis
 * (a relation that cannot exist; the name is under 64 bytes, so no truncation notice) and that
 * error is replaced by a clear one in order with every other reply.
 */
const NAMED_STATEMENT_MARKER = 'openproxy_named_statement_refused_3f9c2a';
const NAMED_STATEMENT_PROBE = message('P', Buffer.from(`\0SELECT FROM ${NAMED_STATEMENT_MARKER}\0\0\0`, 'utf8'));
const ADMIN_DATABASES = new Set(['openproxy', 'pgbouncer', 'pgcat']);
let seq = 0;

export class ClientSession implements ServerOwner {
  private sock: net.Socket;
  private phase = Phase.Startup;
  /** Startup-phase bytes (untyped packets) not yet decoded. */
  private startupBuf: Buffer = Buffer.alloc(0);
  private readonly frames = new FrameReader(MAX_MESSAGE_LENGTH);
  private auth: ClientAuth | null = null;
  /** The BackendKeyData openproxy gave this client. */
  readonly pid: number;
  readonly secret = randomInt(0, 0x7fffffff);
  readonly connectedAt = Date.now();
  params = new Map<string, string>();
  userPool: UserPool | null = null;
  server: ServerConn | null = null;
  private serverPool: import('../pool/server-pool').ServerPool | null = null;
  /** Stats row base index in the shared stats table. */
  private stat = -1;
  /** performance.now() when the current query / transaction started; -1 = none running. */
  private queryStart = -1;
  private xactStart = -1;
  transactions = 0;
  queries = 0;
  errors = 0;
  /** Last time the client sent anything (ms epoch); for idle-in-transaction checks. */
  lastActivity = Date.now();
  /** Transaction pooling: the server is held per transaction, not per session. */
  txMode = false;
  /** GUCs the client asked for at startup, and what it wants now (name → current_setting form). */
  private readonly startupGucs = new Map<string, string>();
  gucs = new Map<string, string>();
  /** Why this client keeps its server connection between transactions (dedicated mode). */
  readonly pins = new Set<PinReason>();
  private readonly unpinLater = new Set<PinReason>();
  /** GUCs the current transaction may have changed; RESET ALL / DISCARD ALL seen. */
  private readonly touched = new Set<string>();
  private readonly resets = new Set<string>();
  private resetAll = false;
  /** ReadyForQuery messages the server still owes (one per Query, Sync, FunctionCall forwarded). */
  private pendingReady = 0;
  /** Extended-protocol messages forwarded since the last Sync. */
  private sinceSync = 0;
  private acquiring = false;
  private releasePending = false;
  /** openproxy's own statement runs on the held server: client messages wait. */
  private syncing = false;
  private timeoutCancelled = false;
  /** Transaction mode with prepared_statements_cache_size > 0: named statements are rewritten. */
  private ps: PreparedStatements | null = null;
  /** Cache off: names of refused named statements whose error is still to come, in order. */
  private readonly namedRefused: string[] = [];

  constructor(sock: net.Socket, private readonly ctx: WorkerContext) {
    this.sock = sock;
    this.remote = `${sock.remoteAddress}:${sock.remotePort}`;
    this.pid = encodePid(ctx.index, ++seq);
    sock.setNoDelay(true);
    this.listen(sock);
  }

  private listen(sock: net.Socket): void {
    (sock as SessionSocket)[SESSION] = this;
    sock.on('data', (chunk: Buffer) => this.onData(chunk)); // TLS sockets; plain ones use onread
    sock.on('error', (e) => this.disconnect(`client socket error: ${e.message}`));
    sock.on('close', () => this.disconnect('client closed the connection'));
    sock.on('drain', () => this.server?.socket.resume());
  }

  /** Peer address, kept from the start (a destroyed socket no longer knows it). */
  readonly remote: string;

  get state(): string {
    if (this.phase === Phase.Waiting) return 'waiting';
    if (this.phase !== Phase.Active) return 'login';
    return this.server?.busy ? 'active' : 'idle';
  }

  /** Client bytes (possibly a view of the thread's reused read buffer: nothing may keep it). */
  onData(chunk: Buffer): void {
    this.lastActivity = Date.now();
    if (this.phase === Phase.Startup) this.onStartupBytes(Buffer.from(chunk));
    else if (this.phase !== Phase.Closed) {
      if (this.stat >= 0) this.ctx.shared.stats[this.stat + STAT.received] += chunk.length;
      this.frames.push(chunk);
      if (this.phase === Phase.Auth) this.onAuthMessages();
      else if (this.phase === Phase.Active) this.onClientBytes();
    }
    this.frames.detach();
  }

  // ---- startup ---------------------------------------------------------------------------

  private onStartupBytes(chunk: Buffer): void {
    this.startupBuf = this.startupBuf.length ? Buffer.concat([this.startupBuf, chunk]) : chunk;
    if (this.startupBuf.length < 4) return;
    const len = this.startupBuf.readInt32BE(0);
    if (len < 8 || len > MAX_STARTUP_LENGTH) {
      return this.fatal(SQLSTATE.PROTOCOL_VIOLATION, `invalid startup packet length ${len}`, 'bad startup packet');
    }
    if (this.startupBuf.length < len) return;
    const pkt = this.startupBuf.subarray(0, len);
    const rest = this.startupBuf.subarray(len);
    this.startupBuf = Buffer.alloc(0);
    const d = decodeStartup(pkt);
    switch (d.kind) {
      case 'invalid':
        return this.fatal(d.code, d.reason, 'bad startup packet');
      case 'gssenc':
        this.sock.write(SSL_NO);
        break;
      case 'ssl':
        if (rest.length > 0) return this.fatal(SQLSTATE.PROTOCOL_VIOLATION, 'data after SSLRequest before the answer', 'bad startup packet');
        if (this.ctx.tls && !(this.sock instanceof tls.TLSSocket)) return this.upgradeTls();
        this.sock.write(SSL_NO);
        break;
      case 'cancel':
        this.handleCancel(d.pid, d.secret);
        this.disconnect('cancel request handled');
        return;
      case 'startup':
        this.params = d.params;
        if (rest.length) this.frames.push(rest);
        return void this.login();
    }
    if (rest.length) this.onStartupBytes(rest);
  }

  private upgradeTls(): void {
    const raw = this.sock;
    raw.removeAllListeners('data');
    raw.removeAllListeners('error');
    raw.removeAllListeners('close');
    raw.write(SSL_YES);
    const t = new tls.TLSSocket(raw, { isServer: true, secureContext: this.ctx.tls! });
    this.sock = t;
    raw.on('error', () => undefined);
    this.listen(t);
  }

  private handleCancel(pid: number, secret: number): void {
    const worker = workerOfPid(pid);
    if (worker === this.ctx.index) cancelLocal(this.ctx, pid, secret);
    else this.ctx.forwardCancel(worker, pid, secret);
  }

  private login(): void {
    const user = this.params.get('user')!;
    const db = this.params.get('database') || user;
    if (this.params.has('replication') && this.params.get('replication') !== 'false') {
      return this.fatal(SQLSTATE.FEATURE_NOT_SUPPORTED, 'replication connections are not supported through openproxy', 'replication connection');
    }
    if (this.ctx.shutdown) return this.fatal(SQLSTATE.ADMIN_SHUTDOWN, 'openproxy is shutting down', 'login during shutdown');
    if (ADMIN_DATABASES.has(db)) {
      return this.fatal(SQLSTATE.FEATURE_NOT_SUPPORTED, `the admin console (database "${db}") is not available in this version of openproxy`, 'admin console');
    }
    const up = this.ctx.registry.find(db, user);
    if (!up) {
      if (!this.ctx.registry.hasDatabase(db)) return this.fatal(SQLSTATE.INVALID_CATALOG_NAME, `no such database: ${db}`, 'unknown database');
      return this.fatal(SQLSTATE.INVALID_AUTHORIZATION, `no such user: "${user}" in pool "${db}"`, 'unknown user');
    }
    this.userPool = up;
    this.auth = new ClientAuth(this.ctx.registry.general.auth_type, user, up.user.password);
    this.phase = Phase.Auth;
    this.authStep(this.auth.start());
    if (this.frames.pending) this.onAuthMessages();
  }

  private onAuthMessages(): void {
    while (this.phase === Phase.Auth && this.frames.next()) {
      if (this.frames.type !== 0x70) return this.fatal(SQLSTATE.PROTOCOL_VIOLATION, `expected a password message, got message type ${String.fromCharCode(this.frames.type)}`, 'bad auth message');
      this.authStep(this.auth!.step(this.frames.body()));
    }
    if (this.frames.error) this.fatal(SQLSTATE.PROTOCOL_VIOLATION, this.frames.error, 'bad message');
  }

  private authStep(step: ReturnType<ClientAuth['start']>): void {
    if (step.kind === 'send') {
      this.sock.write(step.data);
      return;
    }
    if (step.kind === 'fail') {
      log.warn('client authentication failed', { client: this.remote, user: this.params.get('user'), database: this.params.get('database'), reason: step.message });
      return this.fatal(step.code, step.message, 'authentication failed');
    }
    if (step.data) this.sock.write(step.data);
    this.sock.write(AUTH_OK);
    this.auth = null;
    void this.attachServer();
  }

  // ---- server assignment ----------------------------------------------------------------

  private async attachServer(): Promise<void> {
    const up = this.userPool!;
    this.phase = Phase.Waiting;
    this.txMode = up.user.pool_mode === 'transaction';
    const cacheSize = this.ctx.registry.general.prepared_statements_cache_size;
    if (this.txMode && cacheSize > 0) this.ps = new PreparedStatements(cacheSize);
    this.stat = this.ctx.shared.statBase(this.ctx.index, up.statSlot);
    this.ctx.shared.stats[this.stat + STAT.logins] += 1;
    this.ctx.clients.set(this.pid, this);
    const gucs = clientGucs(this.params);
    if (typeof gucs === 'string') return this.fatal(SQLSTATE.FEATURE_NOT_SUPPORTED, gucs, 'bad startup options');
    for (const [k, v] of gucs) this.startupGucs.set(k.toLowerCase(), v);
    this.gucs = new Map(this.startupGucs);
    const waitStart = performance.now();
    let conn: ServerConn;
    try {
      const pick = await chooseSessionServer(up);
      conn = pick.conn;
      this.serverPool = pick.pool;
    } catch (e) {
      const err = e as ServerConnError;
      this.ctx.shared.stats[this.stat + STAT.errors] += 1;
      return this.fatal(err.sqlstate ?? SQLSTATE.CONNECTION_FAILURE, err.message, 'no server connection');
    }
    this.ctx.shared.stats[this.stat + STAT.wait_time_us] += Math.round((performance.now() - waitStart) * 1000);
    if ((this.phase as Phase) === Phase.Closed) return this.releaseServer(conn, this.serverPool!);
    if (!(await this.matchGucs(conn, true))) return;
    this.attach(conn);
    const out: Buffer[] = [];
    for (const [k, v] of conn.params) out.push(parameterStatus(k, v));
    out.push(backendKeyData(this.pid, this.secret), READY_IDLE);
    this.sock.write(Buffer.concat(out));
    this.phase = Phase.Active;
    if (this.ctx.registry.general.log_client_connections) {
      log.info('client logged in', { client: this.remote, user: up.user.username, database: up.pool.name, server_id: conn.id, pool_mode: up.user.pool_mode });
    }
    if (this.txMode) this.endTransaction();
    else if (this.frames.pending) this.forwardToServer();
  }

  /**
   * Makes the connection's GUCs match this client's (one statement, only differences). On failure
   * the client gets the server's error as FATAL at login, or as an ErrorResponse later, and is
   * disconnected; the connection is reset or closed. Returns false when the client is gone.
   */
  private async matchGucs(conn: ServerConn, atLogin: boolean): Promise<boolean> {
    const sql = gucSyncStatement(conn.gucs, this.gucs, conn.reported);
    if (!sql) return true;
    const r = await conn.run(sql, this.userPool!.pool.connect_timeout + 5000);
    if (r.ok) conn.gucs = new Map(this.gucs);
    if ((this.phase as Phase) === Phase.Closed || !r.ok) {
      if (!r.ok && r.error && this.sock.writable) this.sock.write(withSeverity(r.error, atLogin ? 'FATAL' : 'ERROR'));
      this.releaseServer(conn, this.serverPool!);
      if ((this.phase as Phase) !== Phase.Closed) this.disconnect('session parameters rejected by the server');
      return false;
    }
    return true;
  }

  private attach(conn: ServerConn): void {
    this.server = conn;
    conn.owner = this;
    conn.trackStatementReplies(this.ps !== null);
  }

  // ---- data phase -------------------------------------------------------------------------

  private onClientBytes(): void {
    if (this.server) this.forwardToServer();
    else if (this.txMode) this.beginTransaction();
  }

  /** Transaction mode: the client sent something and holds no server; take one. */
  private beginTransaction(): void {
    if (this.acquiring || this.phase !== Phase.Active) return;
    const f = this.frames;
    if (f.pending === 0) return;
    if (f.pending >= 5 && f.buf[f.off] === TERMINATE) return this.disconnect('client sent Terminate');
    const pool = this.serverPool!;
    const idle = pool.takeIdleNow();
    if (idle && gucSyncStatement(idle.gucs, this.gucs, idle.reported) === '') {
      this.attach(idle);
      this.forwardToServer();
      return;
    }
    this.acquiring = true;
    const waitStart = performance.now();
    (idle ? Promise.resolve(idle) : pool.acquire()).then(
      async (conn) => {
        this.acquiring = false;
        this.ctx.shared.stats[this.stat + STAT.wait_time_us] += Math.round((performance.now() - waitStart) * 1000);
        if (this.phase === Phase.Closed) return pool.release(conn);
        if (!(await this.matchGucs(conn, false))) return;
        this.attach(conn);
        this.forwardToServer();
      },
      (e: ServerConnError) => {
        this.acquiring = false;
        this.ctx.shared.stats[this.stat + STAT.errors] += 1;
        this.fatal(e.sqlstate ?? SQLSTATE.CONNECTION_FAILURE, e.message, 'no server connection');
      },
    );
  }

  /**
   * Forwards every complete client message, noting what each one obliges: Query, Sync and
   * FunctionCall each get one ReadyForQuery; extended-protocol messages since the last Sync keep
   * the server held; statements that change session state are noted or pin the client.
   */
  private forwardToServer(): void {
    if (this.syncing) return;
    const f = this.frames;
    const server = this.server!;
    const ps = this.ps;
    let runStart = f.off;
    while (f.next()) {
      switch (f.type) {
        case TERMINATE:
          if (f.start > runStart) server.write(f.view(runStart, f.start));
          return this.disconnect('client sent Terminate');
        case QUERY: {
          this.pendingReady++;
          if (!this.txMode) break;
          const sql = f.buf.toString('utf8', f.start + 5, f.msgEnd - 1);
          this.noteSql(sql);
          if (ps) {
            ps.noteSync();
            const out = ps.rewriteQuery(sql, server);
            if (out) {
              if (f.start > runStart) server.write(f.view(runStart, f.start));
              server.write(out);
              runStart = f.msgEnd;
            }
          }
          break;
        }
        case PARSE: {
          this.sinceSync++;
          if (!this.txMode) break;
          const nameEnd = f.buf.indexOf(0, f.start + 5);
          if (nameEnd > f.start + 5 && !ps) {
            // Cache off: a named statement cannot follow the client to another connection. Send
            // a Parse that fails at analysis instead; its error is swapped for a clear one.
            if (f.start > runStart) server.write(f.view(runStart, f.start));
            server.write(NAMED_STATEMENT_PROBE);
            this.namedRefused.push(f.buf.toString('utf8', f.start + 5, nameEnd));
            runStart = f.msgEnd;
            break;
          }
          const textEnd = f.buf.indexOf(0, nameEnd + 1);
          if (textEnd > nameEnd) this.noteSql(f.buf.toString('utf8', nameEnd + 1, textEnd));
          break;
        }
        case SYNC:
          this.pendingReady++;
          this.sinceSync = 0;
          ps?.noteSync();
          break;
        case FUNCTION_CALL:
          this.pendingReady++;
          ps?.noteSync();
          break;
        case BIND:
        case EXECUTE:
        case DESCRIBE:
        case CLOSE:
        case FLUSH:
          this.sinceSync++;
          break;
        default:
          break; // CopyData / CopyDone / CopyFail belong to the running COPY
      }
      if (ps && (f.type === PARSE || f.type === BIND || f.type === DESCRIBE || f.type === CLOSE)) {
        const out = ps.rewrite(f.type, f.view(f.start, f.msgEnd), server);
        if (out) {
          if (f.start > runStart) server.write(f.view(runStart, f.start));
          server.write(out);
          runStart = f.msgEnd;
        }
      }
      if (this.queryStart < 0) {
        this.queryStart = performance.now();
        this.timeoutCancelled = false;
        if (this.xactStart < 0) this.xactStart = this.queryStart;
      }
    }
    if (f.error) return this.fatal(SQLSTATE.PROTOCOL_VIOLATION, f.error, 'bad message');
    // Complete messages only: a partial one stays buffered until its last byte arrives.
    if (f.off > runStart && !server.write(f.view(runStart, f.off))) this.sock.pause();
  }

  /** Records what a statement does to session state (transaction mode). */
  private noteSql(sql: string): void {
    const fx = stateEffects(sql);
    if (fx === NO_EFFECT) return;
    for (const g of fx.gucs) this.touched.add(g);
    for (const g of fx.resets) this.resets.add(g);
    if (fx.resetAll) this.resetAll = true;
    for (const r of fx.pin) this.pin(r);
    for (const r of fx.unpin) this.unpinLater.add(r);
    if (fx.unpin.includes('sql_prepare')) {
      // DEALLOCATE ALL / DISCARD ALL also remove the protocol-level statements on the server.
      this.server?.prepared.clear();
      this.ps?.forgetAll();
    }
  }

  /** Dedicated mode: this client keeps its server connection until the state is gone. */
  private pin(reason: PinReason): void {
    if (this.pins.has(reason)) return;
    this.pins.add(reason);
    this.ctx.shared.stats[this.stat + STAT.pins] += 1;
    log.info('client pinned to its server connection', { client: this.remote, user: this.userPool?.user.username, reason, server_id: this.server?.id });
  }

  onServerData(chunk: Buffer): void {
    this.ctx.shared.stats[this.stat + STAT.sent] += chunk.length;
    if (!writeView(this.sock, chunk)) this.server?.socket.pause();
    if (this.releasePending) {
      this.releasePending = false;
      this.endTransaction();
    }
  }

  onServerDrain(): void {
    this.sock.resume();
  }

  dropResponse(type: number): boolean {
    return this.ps !== null && this.ps.isOurs(type);
  }

  replaceError(body: Buffer): Buffer | null {
    if (this.namedRefused.length === 0 || !errorField(body, 0x4d).includes(NAMED_STATEMENT_MARKER)) return null;
    const name = this.namedRefused.shift()!;
    return errorResponse({
      severity: 'ERROR',
      code: SQLSTATE.INVALID_SQL_STATEMENT_NAME,
      message: `prepared statement "${name}" cannot be used: named prepared statements need prepared_statements_cache_size > 0 in transaction pooling`,
      hint: 'Set general.prepared_statements_cache_size in openproxy (e.g. 500), use unnamed statements, or use pool_mode = "session".',
    });
  }

  onReady(status: number): void {
    const now = performance.now();
    const st = this.ctx.shared.stats;
    this.queries++;
    this.ps?.onReady();
    if (this.pendingReady > 0) this.pendingReady--;
    if (this.pendingReady === 0) this.namedRefused.length = 0; // settled: answered or skipped
    st[this.stat + STAT.query_count] += 1;
    if (this.queryStart >= 0) st[this.stat + STAT.query_time_us] += Math.round((now - this.queryStart) * 1000);
    this.queryStart = -1;
    if (status === 0x49) {
      this.transactions++;
      st[this.stat + STAT.xact_count] += 1;
      if (this.xactStart >= 0) st[this.stat + STAT.xact_time_us] += Math.round((now - this.xactStart) * 1000);
      this.xactStart = -1;
      // Transaction mode: the server owes nothing more once every Sync/Query was answered.
      if (this.txMode && this.pendingReady === 0 && this.sinceSync === 0) this.releasePending = true;
    }
  }

  /**
   * Transaction mode, at ReadyForQuery 'I' with nothing outstanding: read back GUCs the transaction
   * may have changed, apply unpins, then return the connection unless the client is pinned.
   */
  private endTransaction(): void {
    const conn = this.server;
    if (!conn || this.phase === Phase.Closed) return;
    if (conn.closed) {
      this.server = null;
      return this.fatal(SQLSTATE.CONNECTION_FAILURE, `server connection closed: ${conn.closeReason}`, 'server connection lost');
    }
    if (this.touched.size > 0 || this.resets.size > 0 || this.resetAll) {
      this.captureGucs(conn);
      return;
    }
    for (const r of this.unpinLater) this.pins.delete(r);
    this.unpinLater.clear();
    if (conn.stalePlans && conn.clean) {
      this.syncing = true;
      conn.run('DEALLOCATE ALL', this.ctx.registry.general.healthcheck_timeout + 5000).then((r) => {
        this.syncing = false;
        conn.stalePlans = false;
        conn.prepared.clear();
        if (!r.ok) conn.close('DEALLOCATE ALL failed');
        else if (this.server === conn) conn.owner = this;
        if ((this.phase as Phase) !== Phase.Closed) this.endTransaction();
      });
      return;
    }
    if (this.pins.size > 0 || !conn.clean) {
      // Pinned: the connection stays, but a RESET may have left it behind the client's settings.
      if (conn.clean && gucSyncStatement(conn.gucs, this.gucs, conn.reported) !== '') {
        this.syncing = true;
        void this.matchGucs(conn, false).then((ok) => {
          this.syncing = false;
          if (ok && this.server === conn) {
            conn.owner = this;
            if (this.frames.pending) this.forwardToServer();
          }
        });
        return;
      }
      if (this.frames.pending) this.forwardToServer();
      return;
    }
    this.server = null;
    conn.owner = null;
    this.sock.resume();
    conn.socket.resume();
    this.serverPool!.release(conn);
    if (this.frames.pending) this.beginTransaction();
  }

  /**
   * After RESET / RESET ALL the connection is at its own defaults and the client wants its startup
   * values back (PostgreSQL's session defaults): record that, and let the next match apply them.
   * GUCs SET in the transaction are read back from the server, which also covers rollbacks.
   */
  private captureGucs(conn: ServerConn): void {
    if (this.resetAll) {
      this.gucs = new Map(this.startupGucs);
      conn.gucs.clear();
      this.resetAll = false;
    }
    for (const n of this.resets) {
      if (this.touched.has(n)) continue;
      conn.gucs.delete(n);
      const startup = this.startupGucs.get(n);
      if (startup === undefined) this.gucs.delete(n);
      else this.gucs.set(n, startup);
    }
    this.resets.clear();
    const names = [...this.touched];
    this.touched.clear();
    if (names.length === 0) return this.endTransaction();
    this.syncing = true;
    conn.run(gucReadStatement(names), this.ctx.registry.general.healthcheck_timeout + 5000).then((r) => {
      this.syncing = false;
      if ((this.phase as Phase) === Phase.Closed) return;
      if (!r.ok || r.rows.length !== 1) return this.fatal(SQLSTATE.INTERNAL_ERROR, 'openproxy could not read back session settings', 'GUC capture failed');
      if (this.server === conn) conn.owner = this; // run() borrowed it
      names.forEach((n, i) => {
        const v = r.rows[0][i];
        this.gucs.set(n, v);
        conn.gucs.set(n, v);
      });
      this.endTransaction();
    });
  }

  onServerError(body: Buffer): void {
    this.errors++;
    // The server skips to the next Sync: refused Parses after this error produce no error of their own.
    if (this.namedRefused.length && !errorField(body, 0x4d).includes(NAMED_STATEMENT_MARKER)) this.namedRefused.length = 0;
    this.ctx.shared.stats[this.stat + STAT.errors] += 1;
    if (this.ps) {
      this.ps.onError();
      // The server's plan for a cached statement went stale (the table changed): drop them all
      // before this connection is used again, so the next Parse prepares afresh.
      if (this.server && errorField(body, 0x43) === '0A000' && /cached plan must not change result type/.test(errorField(body, 0x4d))) {
        this.server.stalePlans = true;
      }
    }
  }

  onServerClosed(reason: string): void {
    const boundary = this.server?.atMessageBoundary ?? true;
    this.server = null;
    log.warn('server connection lost under a client', { client: this.remote, reason });
    if (boundary) this.fatal(SQLSTATE.CONNECTION_FAILURE, `server connection closed unexpectedly: ${reason}`, 'server connection lost');
    else this.disconnect(`server connection lost mid-message: ${reason}`);
  }

  /** Janitor: per-user statement_timeout, enforced by cancelling the statement on the server. */
  checkStatementTimeout(now: number): void {
    const limit = this.userPool?.user.statement_timeout ?? 0;
    if (limit <= 0 || !this.server || this.queryStart < 0 || this.timeoutCancelled) return;
    if (now - this.queryStart < limit) return;
    this.timeoutCancelled = true;
    this.ctx.shared.stats[this.stat + STAT.statement_timeouts] += 1;
    const s = this.server;
    log.warn('statement_timeout reached; cancelling the statement on the server', { client: this.remote, user: this.userPool!.user.username, statement_timeout_ms: limit, server_id: s.id });
    void sendCancel(s.login.host, s.login.port, s.backendPid, s.backendSecret, s.login.connectTimeout);
  }

  // ---- ending -----------------------------------------------------------------------------

  /** Sends a FATAL ErrorResponse (only at a message boundary) and disconnects. */
  fatal(code: string, message: string, reason: string): void {
    if (this.phase === Phase.Closed) return;
    if (this.sock.writable && (this.server === null || this.server.atMessageBoundary)) {
      this.sock.write(errorResponse({ severity: 'FATAL', code, message }));
    }
    this.disconnect(`${reason}: ${message}`);
  }

  /** The one way out: frees the server connection (reset or closed), unregisters, closes the socket. */
  disconnect(reason: string): void {
    if (this.phase === Phase.Closed) return;
    const wasActive = this.phase === Phase.Active;
    this.phase = Phase.Closed;
    this.ctx.clients.delete(this.pid);
    if (this.sock.writable) this.sock.end();
    setTimeout(() => this.sock.destroy(), 1000).unref();
    const server = this.server;
    this.server = null;
    if (server && this.serverPool) {
      server.socket.resume();
      this.releaseServer(server, this.serverPool);
    }
    if (wasActive && this.ctx.registry.general.log_client_disconnections) {
      log.info('client disconnected', { client: this.remote, user: this.params.get('user'), reason, age_s: Math.round((Date.now() - this.connectedAt) / 1000) });
    } else {
      log.debug('client disconnected', { client: this.remote, reason });
    }
    this.onGone?.();
  }

  /** Session end: a clean server is reset with DISCARD ALL and pooled; anything else is closed. */
  private releaseServer(conn: ServerConn, pool: import('../pool/server-pool').ServerPool): void {
    conn.owner = null;
    if (!conn.clean) {
      conn.close('client left mid-statement or inside a transaction');
      return;
    }
    conn.run('DISCARD ALL', this.ctx.registry.general.healthcheck_timeout + 1000).then((r) => {
      conn.gucs.clear();
      conn.prepared.clear();
      if (r.ok && conn.clean) pool.release(conn);
      else conn.close('reset (DISCARD ALL) failed');
    });
  }

  /** Set by the worker: called once after disconnect. */
  onGone?: () => void;
}

/** One field (by its type byte: C code, M message) of an ErrorResponse body. */
function errorField(body: Buffer, field: number): string {
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const end = body.indexOf(0, i + 1);
    if (end < 0) return '';
    if (body[i] === field) return body.toString('utf8', i + 1, end);
    i = end + 1;
  }
  return '';
}

/** Cancels the running query of a local session if pid/secret match (silently ignored otherwise, like PostgreSQL). */
export function cancelLocal(ctx: WorkerContext, pid: number, secret: number): void {
  const c = ctx.clients.get(pid);
  if (!c || c.secret !== secret || !c.server) return;
  const s = c.server;
  void sendCancel(s.login.host, s.login.port, s.backendPid, s.backendSecret, s.login.connectTimeout);
}
