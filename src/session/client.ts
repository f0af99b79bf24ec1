// One client connection: startup (TLS, cancel, auth), server assignment, then the data phase
// where client messages are framed and forwarded to the server it holds (session pooling), and
// server chunks are forwarded back unchanged. Every disconnect goes through disconnect(reason).

import net from 'node:net';
import tls from 'node:tls';
import { randomInt } from 'node:crypto';
import { AUTH_OK, SSL_NO, SSL_YES, backendKeyData, commandComplete, dataRow, errorField, errorResponse, message, parameterStatus, READY_IDLE, READY_IN_TX, rowDescription, withSeverity } from '../protocol/backend';
import { FrameReader } from '../protocol/frame-reader';
import { MAX_STARTUP_LENGTH, decodeStartup } from '../protocol/frontend';
import { SQLSTATE } from '../protocol/sqlstate';
import { MAX_MESSAGE_LENGTH, ServerConn, ServerConnError, ServerOwner, isFinal, sendCancel } from '../pool/server-conn';
import { PoolWaiter, poolWaiter } from '../pool/server-pool';
import type { ServerEntry, UserPool } from '../pool/registry';
import { chooseSessionServer, roleOf } from '../pool/choose';
import { Verdict } from '../routing/classify';
import { BAN, Target, banServer, candidates } from '../routing/router';
import { Hint, RoleHint, parseHint } from '../routing/hints';
import { automaticKey, defaultShard, shardComment, shardOfKey } from '../routing/sharding';
import { STAT } from '../shared/layout';
import { log } from '../log';
import { ClientAuth } from './auth';
import { clientGucs } from './startup-params';
import { gucReadStatement, gucSyncStatement, gucsMatch } from './guc-sync';
import { NO_EFFECT, PinReason, stateEffects } from './state-effects';
import { PreparedStatements } from './prepared';
import { writeView } from '../net/read-buffer';
import { ADMIN_DATABASES, AdminConsole } from '../admin/console';
import { isPaused } from '../admin/control';
import { VERSION } from '../cli';
import { PoolLatency } from '../metrics/histogram';

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
  /** This client's (pool, user) latency histograms on this worker. */
  private latency: PoolLatency | null = null;
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
  /** This client's place in a server pool's queue (one object for its life: no allocation per wait). */
  private readonly waiter: PoolWaiter = poolWaiter(
    (conn) => this.onGranted(conn),
    (err) => this.onGrantFailed(err),
  );
  /** What the queued wait is for: the server entry, the route target, the candidates, the start (performance.now()). */
  private waitEntry: ServerEntry | null = null;
  private waitTarget: Target = 'primary';
  private waitOrder: ServerEntry[] = [];
  private waitStart = 0;
  private releasePending = false;
  /** openproxy's own statement runs on the held server: client messages wait. */
  private syncing = false;
  private timeoutCancelled = false;
  /** Transaction mode with prepared_statements_cache_size > 0: named statements are rewritten. */
  private ps: PreparedStatements | null = null;
  /** Cache off: names of refused named statements whose error is still to come, in order. */
  private readonly namedRefused: string[] = [];
  /** The server the client logged in through (its pool is used when routing is off). */
  private home: ServerEntry | null = null;
  private homeOrder: ServerEntry[] = [];
  /** The server entry of the connection held now. */
  private entry: ServerEntry | null = null;
  /** Routing commands: SET SERVER ROLE, SET PRIMARY READS (null = the pool's setting). */
  private roleHint: RoleHint | null = null;
  private primaryReadsHint: boolean | null = null;
  /** Session mode with routing: the server is chosen by the first query and then kept. */
  private routedSession = false;
  /** The held connection is a replica chosen for implicit (autocommit) reads: a write waits for the next transaction. */
  private implicitReads = false;
  /** Text of the statement that routed the current transaction (for learning from 25006). */
  private routedSql = '';
  /**
   * Transparent retry of reads: the client bytes of a read transaction are kept until the server's
   * first real reply, so a replica that dies (or refuses the read as a write) before anything
   * reached the client costs a retry on another server instead of an error.
   */
  private replayArmed = false;
  private replayBuf: Buffer = Buffer.alloc(0);
  private replayLen = 0;
  private replayTries = 0;
  private replayPendingReady = 0;
  private replaySinceSync = 0;
  /** Header replies (ParseComplete, RowDescription, …) held while a retry is still possible. */
  private heldReply: Buffer | null = null;
  /**
   * A Flush was forwarded inside the retry window: the client now waits for what the server has
   * answered so far (describe-first drivers: Parse/Describe/Flush, then Bind/Execute/Sync), so
   * the next reply goes straight through and ends the window.
   */
  private replayFlushed = false;
  private retrying = false;
  /** SET SHARD TO / SET SHARDING KEY TO: the shard this client's transactions go to (null = decided per query). */
  private shardSetting: number | null = null;
  /** The first statement of the batch at the head of the buffer, and its Bind parameters (text), for sharding. */
  private batchSql = '';
  private batchParams: (string | null)[] | null = null;
  /** read_your_writes: a replica must have replayed this far to take this client's reads. */
  private minLsn = 0;
  /** read_your_writes: the held transaction runs on the primary (it may write). */
  private rywPending = false;
  /**
   * read_your_writes: when this client's last primary transaction ended (ms epoch; 0 = settled) and
   * that primary's shared slot. The HA thread's next primary position sent after that time
   * becomes minLsn; until then the client's reads stay on the primary. No round trip per write.
   */
  private rywSince = 0;
  private rywSlot = -1;

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

  /** ms epoch when this client started waiting for a server connection; 0 = not waiting. */
  waitSince = 0;
  /** Registered with the worker while a PAUSE holds this client's next transaction. */
  private pauseWaiter: { resume(): void } | null = null;

  get state(): string {
    if (this.phase === Phase.Waiting || this.acquiring || this.pauseWaiter) return 'waiting';
    if (this.phase !== Phase.Active) return 'login';
    return this.server ? 'active' : 'idle';
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
    if (ADMIN_DATABASES.has(db) && !this.ctx.registry.hasDatabase(db)) {
      const g = this.ctx.registry.general;
      if (user !== g.admin_username) return this.fatal(SQLSTATE.INVALID_AUTHORIZATION, `not allowed: the admin console (database "${db}") is only for admin_username`, 'admin console refused');
      this.admin = new AdminConsole(this.ctx);
      this.auth = new ClientAuth(g.auth_type, user, g.admin_userpassword);
      this.phase = Phase.Auth;
      this.authStep(this.auth.start());
      if (this.frames.pending) this.onAuthMessages();
      return;
    }
    if (this.ctx.disabled.has(db) || this.ctx.disabled.has('')) return this.fatal(SQLSTATE.CANNOT_CONNECT_NOW, `database "${db}" is disabled (DISABLE by the openproxy admin)`, 'database disabled');
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
    if (this.admin) return this.startAdmin();
    void this.attachServer();
  }

  // ---- admin console ----------------------------------------------------------------------

  /** Set for a session on the admin console. */
  private admin: AdminConsole | null = null;
  private adminBusy = false;

  private startAdmin(): void {
    const params: [string, string][] = [
      ['server_version', `${VERSION}/openproxy`],
      ['client_encoding', 'UTF8'],
      ['server_encoding', 'UTF8'],
      ['DateStyle', 'ISO, MDY'],
      ['integer_datetimes', 'on'],
      ['standard_conforming_strings', 'on'],
      ['application_name', this.params.get('application_name') ?? ''],
    ];
    this.sock.write(Buffer.concat([...params.map(([k, v]) => parameterStatus(k, v)), backendKeyData(this.pid, this.secret), READY_IDLE]));
    this.phase = Phase.Active;
    log.info('admin console login', { client: this.remote, user: this.params.get('user') });
    this.onAdminMessages();
  }

  /** Admin console: simple queries one at a time; Terminate ends it; anything else is refused. */
  private onAdminMessages(): void {
    const f = this.frames;
    while (!this.adminBusy && this.phase === Phase.Active && f.next()) {
      if (f.type === TERMINATE) return this.disconnect('admin client sent Terminate');
      if (f.type !== QUERY) {
        if (f.type === SYNC) this.sock.write(READY_IDLE);
        else if (f.type === PARSE) this.sock.write(errorResponse({ severity: 'ERROR', code: SQLSTATE.FEATURE_NOT_SUPPORTED, message: 'the admin console speaks the simple query protocol only' }));
        continue;
      }
      const sql = f.buf.toString('utf8', f.start + 5, f.msgEnd - 1);
      this.adminBusy = true;
      f.detach();
      void this.admin!.run(sql).then((reply) => {
        this.adminBusy = false;
        if (this.phase === Phase.Closed) return;
        this.sock.write(reply);
        this.onAdminMessages();
      });
    }
    if (f.error) this.fatal(SQLSTATE.PROTOCOL_VIOLATION, f.error, 'bad message');
  }

  // ---- server assignment ----------------------------------------------------------------

  private async attachServer(): Promise<void> {
    const up = this.userPool!;
    this.phase = Phase.Waiting;
    this.txMode = up.user.pool_mode === 'transaction';
    this.stat = this.ctx.shared.statBase(this.ctx.index, up.statSlot);
    let lat = this.ctx.latency.get(up.statSlot);
    if (!lat) this.ctx.latency.set(up.statSlot, (lat = new PoolLatency()));
    this.latency = lat;
    this.ctx.shared.stats[this.stat + STAT.logins] += 1;
    this.ctx.clients.set(this.pid, this);
    const gucs = clientGucs(this.params);
    if (typeof gucs === 'string') return this.fatal(SQLSTATE.FEATURE_NOT_SUPPORTED, gucs, 'bad startup options');
    for (const [k, v] of gucs) this.startupGucs.set(k.toLowerCase(), v);
    this.gucs = new Map(this.startupGucs);
    const waitStart = performance.now();
    let conn: ServerConn;
    try {
      const pick = await chooseSessionServer(up, this.routingActive(up));
      conn = pick.conn;
      this.serverPool = pick.pool;
      this.home = this.entry = up.shards.flat().find((e) => e.pool === pick.pool) ?? null;
      this.generation = this.ctx.registry.generation;
      this.routedSession = !this.txMode && this.routingActive(up);
      // Named statements follow a client between server connections only through the cache.
      const cacheSize = this.ctx.registry.general.prepared_statements_cache_size;
      if (this.movable && cacheSize > 0) this.ps = new PreparedStatements(cacheSize);
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
    else if (this.routedSession) {
      // The session's server is chosen by its first query: give back the one used for the login.
      this.server = null;
      conn.owner = null;
      this.serverPool!.release(conn);
      if (this.frames.pending) this.beginTransaction();
    } else if (this.frames.pending) this.forwardToServer();
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
    if (conn.closed && (this.phase as Phase) !== Phase.Closed) {
      // The server ended the session right behind its answer: nothing may be sent on it.
      this.fatal(SQLSTATE.CONNECTION_FAILURE, `server connection closed: ${conn.closeReason}`, 'server connection lost');
      return false;
    }
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
    if (this.admin) return this.onAdminMessages();
    if (this.server) {
      // A routed session on a replica with nothing outstanding: the next statement may need the primary.
      if (this.routedSession && this.implicitReads && this.pendingReady === 0 && this.sinceSync === 0) this.sessionBoundary();
      else this.forwardToServer();
    } else if (this.movable) this.beginTransaction();
  }

  /** The client's session can move between server connections: transaction mode, or a routed session. */
  private get movable(): boolean {
    return this.txMode || this.routedSession;
  }

  /**
   * Session mode with routing, on a replica with nothing outstanding (the session's first query
   * chose it). A statement that needs the primary moves the session there at a transaction
   * boundary, carrying its settings as transaction mode does, and the session then stays on the
   * primary (it reads its own writes). State that cannot move (temp table, advisory lock, LISTEN,
   * WITH HOLD cursor, SQL PREPARE, LOAD) gets a clear error instead of the replica's raw 25006.
   */
  private sessionBoundary(): void {
    this.releasePending = false;
    const conn = this.server;
    const f = this.frames;
    if (!conn || this.phase !== Phase.Active || this.syncing || f.pending < 5) return;
    if (conn.txStatus !== 0x49) {
      // Inside a transaction on the replica (BEGIN READ ONLY): everything goes to it.
      this.waitBypass = true;
      return this.forwardToServer();
    }
    if (f.pending < 1 + f.buf.readInt32BE(f.off + 1)) return; // judged when the message is whole
    const head = f.buf[f.off];
    // Only a statement can need the primary (Terminate, Sync, Flush, Describe, Close … stay here).
    if (head !== QUERY && head !== PARSE && head !== BIND && head !== FUNCTION_CALL) return this.forwardToServer();
    for (const r of this.unpinLater) this.pins.delete(r);
    this.unpinLater.clear();
    if (this.target(this.userPool!) !== 'primary') return this.forwardToServer();
    if (this.pins.size > 0 && STATE_COMMAND.test(this.routedSql)) {
      // EXECUTE, FETCH, DEALLOCATE, …: they use the state that keeps the session here.
      this.waitBypass = true;
      return this.forwardToServer();
    }
    if (this.pins.size > 0) {
      const reasons = [...this.pins].join(', ');
      const where = this.entry ? `${this.entry.address.host}:${this.entry.address.port}` : 'a replica';
      this.errors++;
      this.ctx.shared.stats[this.stat + STAT.errors] += 1;
      log.warn('routed session cannot move to the primary for a write: its state stays on the replica', { client: this.remote, user: this.userPool!.user.username, server: where, state: reasons });
      return this.rejectHead(SQLSTATE.READ_ONLY_SQL_TRANSACTION, `this session cannot move to the primary for this statement: it holds ${reasons} on replica ${where}`, "Write before creating session state (the session then stays on the primary), or SET SERVER ROLE TO 'primary' at the start of the session.");
    }
    const move = () => {
      if (this.phase !== Phase.Active || this.server !== conn) return;
      log.debug('routed session moves to the primary', { client: this.remote, from: this.entry ? `${this.entry.address.host}:${this.entry.address.port}` : '' });
      this.server = null;
      this.implicitReads = false;
      conn.socket.resume();
      this.releaseServer(conn, this.serverPool!);
      this.beginTransaction();
    };
    if (this.touched.size > 0 || this.resets.size > 0 || this.resetAll) this.captureGucs(conn, move);
    else move();
  }

  /** The next forwarded statement goes to the held server even if it would need the primary (inside a transaction). */
  private waitBypass = false;

  /** Transaction mode: the client sent something and holds no server; take one (routed, if routing is on). */
  private beginTransaction(): void {
    if (this.acquiring || this.phase !== Phase.Active) return;
    const f = this.frames;
    if (f.pending === 0) return;
    if (f.pending >= 5 && f.buf[f.off] === TERMINATE) return this.disconnect('client sent Terminate');
    // A Flush with no server held has nothing to flush: answered by silence, as PostgreSQL would.
    while (f.pending >= 5 && f.buf[f.off] === FLUSH && f.buf.readInt32BE(f.off + 1) === 4) f.next();
    if (f.pending === 0) return;
    if (this.generation !== this.ctx.registry.generation) this.refreshPool();
    if (f.buf[f.off] === QUERY && this.answerHints()) return;
    const up = this.userPool!;
    if (isPaused(this.ctx, up.pool.name, up.user.username)) {
      // PAUSE: no server for a new transaction until RESUME.
      if (!this.pauseWaiter) {
        this.pauseWaiter = { resume: () => { this.pauseWaiter = null; this.waitSince = 0; this.beginTransaction(); } };
        this.waitSince = Date.now();
        this.ctx.pauseWaiters.add(this.pauseWaiter);
      }
      return;
    }
    let order: ServerEntry[];
    let target: Target = 'primary';
    if (this.routingActive(up)) {
      target = this.target(up);
      const shard = up.shards.length > 1 ? this.shardOf(up) : 0;
      if (shard < 0) return;
      const g = this.ctx.registry.general;
      order = candidates(this.ctx.shared, up, shard, target, { primaryReads: this.primaryReads(up), minLsn: up.pool.read_your_writes && target === 'read' ? this.readFloor() : 0, staleMs: Math.max(2000, 4 * g.replica_lag_interval) });
      if (order.length === 0 && target === 'read') return this.fatal(SQLSTATE.CONNECTION_FAILURE, `no server for reads in pool "${up.pool.name}"`, 'no server');
      this.routeShard = shard;
    } else {
      // Not routed: always the login server; one array per client, not per transaction.
      if (this.homeOrder[0] !== this.home) this.homeOrder = [this.home!];
      order = this.homeOrder;
    }
    const first = order[0] as ServerEntry | undefined;
    const idle = first?.pool.takeIdleNow();
    if (first && idle && !this.needsCheck(idle) && (first.address.role !== 'auto' || first.learned) && gucsMatch(idle.gucs, this.gucs, idle.reported)) {
      this.attachRouted(idle, first, target);
      this.forwardToServer();
      return;
    }
    this.acquiring = true;
    this.waitSince = Date.now();
    this.waitStart = performance.now();
    this.waitTarget = target;
    this.waitOrder = order;
    if (first && !idle && order.length === 1) {
      // One candidate and nothing idle: queue on its pool; a released connection is handed over
      // synchronously (onGranted), without a promise per transaction.
      this.waitEntry = first;
      const conn = first.pool.request(this.waiter);
      if (conn) this.onGranted(conn);
      return;
    }
    this.acquireSlow(order, target, idle);
  }

  /** The general path: health checks, GUC sync, several candidates, waiting for a primary. */
  private acquireSlow(order: ServerEntry[], target: Target, idle: ServerConn | undefined, failed?: ServerConnError): void {
    this.acquireWithWait(order, target, idle, failed).then(
      ({ conn, entry }) => {
        this.acquiring = false;
        this.waitSince = 0;
        this.ctx.shared.stats[this.stat + STAT.wait_time_us] += Math.round((performance.now() - this.waitStart) * 1000);
        this.serverPool = entry.pool;
        if (this.phase === Phase.Closed) return entry.pool.release(conn);
        this.attachRouted(conn, entry, target);
        this.forwardToServer();
      },
      (e: ServerConnError | GucRejected) => this.onAcquireError(e),
    );
  }

  private onAcquireError(e: ServerConnError | GucRejected): void {
    this.acquiring = false;
    this.waitSince = 0;
    this.ctx.shared.stats[this.stat + STAT.errors] += 1;
    if (e instanceof GucRejected) {
      // The client's own settings were refused (e.g. a bad value): its error, then goodbye.
      if (this.sock.writable) this.sock.write(withSeverity(e.body, 'ERROR'));
      return this.disconnect('session parameters rejected by the server');
    }
    this.fatal(e.sqlstate ?? SQLSTATE.CONNECTION_FAILURE, e.message, 'no server connection');
  }

  /** The pool gave this client a connection (called synchronously from its release, or when one was opened). */
  private onGranted(conn: ServerConn): void {
    const entry = this.waitEntry!;
    this.serverPool = entry.pool;
    if (this.phase === Phase.Closed) {
      this.acquiring = false;
      this.waitSince = 0;
      return entry.pool.release(conn);
    }
    if (this.needsCheck(conn) || entry.address.role === 'auto' || !gucsMatch(conn.gucs, this.gucs, conn.reported)) {
      // Checked, role-confirmed and matched by the general path, this connection first.
      return this.acquireSlow(this.waitOrder, this.waitTarget, conn);
    }
    this.acquiring = false;
    this.waitSince = 0;
    this.ctx.shared.stats[this.stat + STAT.wait_time_us] += Math.round((performance.now() - this.waitStart) * 1000);
    this.attachRouted(conn, entry, this.waitTarget);
    this.forwardToServer();
  }

  /** The pool could not give a connection (query_wait_timeout while queued, or opening one failed). */
  private onGrantFailed(err: ServerConnError): void {
    if (this.phase === Phase.Closed) {
      this.acquiring = false;
      this.waitSince = 0;
      return;
    }
    // As the general path treats a failed acquire: final, or ban the server and maybe wait for a primary.
    if (!isFinal(err)) this.ban(this.waitEntry!, BAN.connect);
    this.acquireSlow([], this.waitTarget, undefined, err);
  }

  /** Shard of the transaction being routed (for recomputing candidates while waiting for a primary). */
  private routeShard = 0;

  /**
   * acquireFrom, but a write that finds no primary (failover under way: none known, or the known
   * one unreachable) waits up to primary_wait_timeout for the HA thread to find one.
   */
  private async acquireWithWait(order: ServerEntry[], target: Target, idle: ServerConn | undefined, failed?: ServerConnError): Promise<{ conn: ServerConn; entry: ServerEntry }> {
    const g = this.ctx.registry.general;
    const up = this.userPool!;
    const deadline = Date.now() + (target === 'primary' && this.routingActive(up) ? g.primary_wait_timeout : 0);
    let announced = false;
    for (;;) {
      if (failed) {
        // The queued fast path already tried its one server and failed (and banned it if it may).
        const err = failed;
        failed = undefined;
        if (!retryable(err) || Date.now() >= deadline || this.phase === Phase.Closed) throw err;
      } else if (order.length > 0) {
        try {
          return await this.acquireFrom(order, target, idle);
        } catch (e) {
          if (!retryable(e as ServerConnError) || Date.now() >= deadline || this.phase === Phase.Closed) throw e;
        }
      } else if (Date.now() >= deadline) {
        throw new ServerConnError(`no primary is available in pool "${up.pool.name}" (waited primary_wait_timeout = ${g.primary_wait_timeout} ms)`, SQLSTATE.CONNECTION_FAILURE);
      }
      if (!announced) {
        announced = true;
        log.info('no primary available: the write waits for one', { client: this.remote, pool: up.pool.name, primary_wait_timeout_ms: g.primary_wait_timeout });
      }
      idle = undefined;
      await new Promise((r) => setTimeout(r, 100));
      if (this.phase === Phase.Closed) throw new ServerConnError('client left', SQLSTATE.CONNECTION_FAILURE);
      order = candidates(this.ctx.shared, up, this.routeShard, target, { primaryReads: this.primaryReads(up), minLsn: 0, staleMs: Math.max(2000, 4 * g.replica_lag_interval) });
    }
  }

  private attachRouted(conn: ServerConn, entry: ServerEntry, target: Target): void {
    this.batchSql = '';
    this.serverPool = entry.pool;
    this.entry = entry;
    this.rywPending = this.userPool!.pool.read_your_writes && this.txMode && roleOf(entry) === 'primary' && this.routedVerdict !== Verdict.Read && this.routedVerdict !== Verdict.ReadOnlyTx;
    if (target === 'read' && this.txMode && this.replayTries < 2) {
      this.replayArmed = true;
      this.replayFlushed = false;
      this.replayLen = 0;
      this.replayPendingReady = this.pendingReady;
      this.replaySinceSync = this.sinceSync;
    } else this.replayArmed = false;
    // Autocommit reads on a replica: a write arriving between them waits for the next transaction.
    this.implicitReads = ((this.txMode && target === 'read' && this.routedVerdict === Verdict.Read) || this.routedSession) && roleOf(entry) !== 'primary';
    this.attach(conn);
  }

  /**
   * A connection from the first server in `order` that can give one: a server that cannot be
   * reached or fails its health check is banned (replicas only) and the next is tried, so a read
   * survives a dead replica. Pool exhaustion and errors from PostgreSQL itself are not retried.
   */
  private async acquireFrom(order: ServerEntry[], target: Target, idle: ServerConn | undefined): Promise<{ conn: ServerConn; entry: ServerEntry }> {
    const g = this.ctx.registry.general;
    let lastError: ServerConnError | null = null;
    for (let i = 0; i < order.length; i++) {
      const e = order[i];
      if (i > 0 && roleOf(e) !== 'primary' && this.ctx.shared.banned(e.pool.slot, Date.now())) continue;
      for (let attempt = 0; ; attempt++) {
        let conn: ServerConn;
        try {
          conn = i === 0 && attempt === 0 && idle ? idle : await e.pool.acquire();
        } catch (err) {
          lastError = err as ServerConnError;
          if (isFinal(lastError) || this.phase === Phase.Closed) throw lastError;
          this.ban(e, BAN.connect);
          break;
        }
        if (e.address.role === 'auto' && !e.learned) {
          e.learned = conn.params.get('in_hot_standby') === 'on' ? 'replica' : 'primary';
        }
        if (target === 'primary' && e.address.role === 'auto' && roleOf(e) !== 'primary') {
          e.pool.release(conn);
          break;
        }
        if (!this.needsCheck(conn) || (await this.healthCheck(conn, g.healthcheck_timeout))) {
          // Make its settings match this client's; a server going away here is skipped like a failed check.
          const sql = gucSyncStatement(conn.gucs, this.gucs, conn.reported);
          if (!sql) return { conn, entry: e };
          const r = await conn.run(sql, e.pool.settings.connectTimeout + 5000);
          // ok but closed: the server ended the session in the same read as the answer (shutdown).
          if (r.ok && !conn.closed) {
            conn.gucs = new Map(this.gucs);
            return { conn, entry: e };
          }
          const code = r.error ? errorField(r.error, 0x43) : '';
          if (r.error && !conn.closed && !GOING_AWAY.has(code)) {
            if (conn.clean) e.pool.release(conn);
            else conn.close('session parameters rejected');
            throw new GucRejected(r.error);
          }
          if (!conn.closed) conn.close('server went away while applying session parameters');
          lastError = new ServerConnError(`${e.address.host}:${e.address.port} went away`, SQLSTATE.CONNECTION_FAILURE);
          if (this.ban(e, BAN.closed) || attempt >= 2) break;
          continue;
        }
        lastError = new ServerConnError(`health check of ${e.address.host}:${e.address.port} failed`, SQLSTATE.CONNECTION_FAILURE);
        // A replica that fails its check is banned; the primary gets up to three fresh tries.
        if (this.ban(e, BAN.healthcheck) || attempt >= 2) break;
      }
    }
    throw lastError ?? new ServerConnError(`no server available for ${target === 'read' ? 'reads' : 'writes'} in pool "${this.userPool!.pool.name}"`, SQLSTATE.CONNECTION_FAILURE);
  }

  /** A connection idle longer than healthcheck_delay is checked before use. */
  private needsCheck(conn: ServerConn): boolean {
    const delay = this.ctx.registry.general.healthcheck_delay;
    return delay > 0 && Date.now() - conn.lastUsed > delay;
  }

  /** Runs an empty statement within healthcheck_timeout; a connection that fails is closed. */
  private async healthCheck(conn: ServerConn, timeoutMs: number): Promise<boolean> {
    const r = await conn.run(';', timeoutMs);
    if (r.ok && conn.clean) {
      conn.lastUsed = Date.now();
      return true;
    }
    conn.close('health check failed');
    return false;
  }

  /** Bans a failed server for ban_time (never the primary); true if it was banned. */
  private ban(e: ServerEntry, reason: number): boolean {
    return banServer(this.ctx.shared, this.ctx.registry.userPools(), e, reason, this.ctx.registry.general.ban_time);
  }

  /** Registry generation this client's userPool / home entry come from. */
  private generation = 0;

  /**
   * After a reload, between transactions: take the new settings of this client's pool (routing,
   * lag, sizes, a switch to session mode). A pool or user removed by the reload keeps its old
   * settings until the client leaves; a session-mode client stays in session mode (its state
   * was never tracked, so it cannot safely start moving between connections).
   */
  private refreshPool(): void {
    this.generation = this.ctx.registry.generation;
    const up = this.userPool!;
    const next = this.ctx.registry.find(up.pool.name, up.user.username);
    if (!next || next === up) return;
    this.userPool = next;
    const home = next.shards.flat().find((e) => e.pool === this.home?.pool);
    if (home) this.home = home;
    else {
      // Its server was removed: come home to the new shard's first primary, if any.
      const primary = next.shards[0].find((e) => e.address.role !== 'replica') ?? next.shards[0][0];
      this.home = primary;
    }
    if (this.txMode && next.user.pool_mode === 'session' && this.pins.size === 0) {
      log.info('pool_mode changed to session by a reload: this client keeps its next server connection', { client: this.remote, user: next.user.username });
      this.txMode = false;
      this.routedSession = true;
    }
  }

  /** Whether this client's transactions are routed (parser, default_role, or a routing command). */
  private routingActive(up: UserPool): boolean {
    const p = up.pool;
    return this.roleHint !== null || p.default_role === 'replica' || (p.query_parser_enabled && p.query_parser_read_write_splitting) || up.shards.length > 1 || up.hasAuto;
  }

  /**
   * The shard of the transaction at the head of the buffer: a /* shard_id / sharding_key *\/ comment,
   * then the automatic_sharding_key's value in the statement (query parser on), then SET SHARD /
   * SET SHARDING KEY, then default_shard. -1 after answering the client with an error.
   */
  private shardOf(up: UserPool): number {
    const p = up.pool;
    const n = up.shards.length;
    this.scanBatchHead();
    const sql = this.batchSql;
    const c = sql ? shardComment(sql) : null;
    let shard: number | null = null;
    if (c?.shardId !== undefined) shard = c.shardId;
    else if (c?.key !== undefined) shard = shardOfKey(p.sharding_function, c.key, n);
    else if (p.query_parser_enabled && p.automatic_sharding_key && sql) {
      const key = automaticKey(sql, p.automatic_sharding_key, this.batchParams);
      if (key !== null) shard = shardOfKey(p.sharding_function, key, n);
    }
    shard ??= this.shardSetting ?? defaultShard(p.default_shard, n);
    if (shard >= n) {
      this.rejectHead(SQLSTATE.INVALID_PARAMETER_VALUE, `shard ${shard} does not exist: pool "${p.name}" has ${n} shards (0 to ${n - 1})`);
      return -1;
    }
    return shard;
  }

  /** First statement text and Bind parameters of the batch at the head of the buffer. */
  private scanBatchHead(): void {
    const f = this.frames;
    const buf = f.buf;
    let p = f.off;
    this.batchSql = '';
    this.batchParams = null;
    while (p + 5 <= f.end) {
      const len = buf.readInt32BE(p + 1);
      if (len < 4 || p + 1 + len > f.end) break;
      const type = buf[p];
      if (type === QUERY && !this.batchSql) {
        this.batchSql = buf.toString('utf8', p + 5, p + len);
        break;
      }
      if (type === PARSE && !this.batchSql) this.batchSql = parseText(buf, p);
      else if (type === BIND) {
        const portalEnd = buf.indexOf(0, p + 5);
        const nameEnd = buf.indexOf(0, portalEnd + 1);
        if (!this.batchSql && this.ps) this.batchSql = this.ps.textOf(buf.toString('utf8', portalEnd + 1, nameEnd)) ?? '';
        this.batchParams = bindParams(buf, nameEnd + 1, p + 1 + len);
        break;
      } else if (type === SYNC) break;
      p += 1 + len;
    }
  }

  /**
   * Answers the transaction at the head of the buffer with an error instead of running it: the
   * messages up to its Query or Sync are consumed and one ErrorResponse + ReadyForQuery is sent.
   */
  private rejectHead(code: string, message: string, hint?: string): void {
    const f = this.frames;
    while (f.next()) if (f.type === QUERY || f.type === SYNC) break;
    this.batchSql = '';
    this.sock.write(Buffer.concat([errorResponse({ severity: 'ERROR', code, message, hint }), READY_IDLE]));
    if (f.pending) queueMicrotask(() => this.onClientBytes());
  }

  /**
   * read_your_writes: how far a replica must have replayed for this client's next read. Right
   * after a write, until the HA thread has measured the primary since, that is "everything" (the
   * read goes to the primary).
   */
  private readFloor(): number {
    if (this.rywSince > 0) {
      const sh = this.ctx.shared;
      // Strictly later: a probe sent in the same millisecond may have run before the commit.
      if (this.rywSlot < 0 || !(sh.serverLsnSince[this.rywSlot] > this.rywSince)) return Number.MAX_SAFE_INTEGER;
      this.minLsn = Math.max(this.minLsn, sh.serverReplayLsn[this.rywSlot]);
      this.rywSince = 0;
    }
    return this.minLsn;
  }

  private primaryReads(up: UserPool): boolean {
    return this.primaryReadsHint ?? (up.pool.primary_reads_enabled || this.roleHint === 'any');
  }

  /** Verdict of the batch that decided the current route. */
  private routedVerdict: Verdict = Verdict.Write;

  /** Where the transaction at the head of the buffer goes. */
  private target(up: UserPool): Target {
    const hint = this.roleHint;
    const p = up.pool;
    this.routedVerdict = Verdict.Write;
    this.routedSql = '';
    if (hint === 'primary') return 'primary';
    const parse = hint === 'auto' || hint === 'any' || (p.query_parser_enabled && p.query_parser_read_write_splitting);
    if (hint === 'replica' || (!parse && p.default_role === 'replica')) return 'read';
    if (!parse) return 'primary';
    const v = this.batchVerdict(p.query_parser_max_length ?? 0);
    if (v === null) return p.default_role === 'replica' ? 'read' : 'primary';
    this.routedVerdict = v;
    if (v === Verdict.Read || v === Verdict.ReadOnlyTx) return 'read';
    if (v === Verdict.Begin && this.gucs.get('default_transaction_read_only') === 'on') return 'read';
    return 'primary';
  }

  /** Combined verdict of the first transaction's messages in the buffer (up to a Query or Sync); null = not classified (too long). */
  private batchVerdict(maxLength: number): Verdict | null {
    const f = this.frames;
    const buf = f.buf;
    const cls = this.ctx.classifier;
    let p = f.off;
    let result: Verdict | null = null;
    /** Statements named by a Parse in this batch: their Bind is already judged by that Parse. */
    let parsed: string[] | null = null;
    while (p + 5 <= f.end) {
      const len = buf.readInt32BE(p + 1);
      if (len < 4 || p + 1 + len > f.end) break;
      const type = buf[p];
      let v: Verdict | null = null;
      let sql = '';
      if (type === QUERY) {
        sql = buf.toString('utf8', p + 5, p + len);
      } else if (type === PARSE) {
        const nameEnd = buf.indexOf(0, p + 5);
        const textEnd = buf.indexOf(0, nameEnd + 1);
        if (nameEnd > 0 && textEnd > nameEnd) sql = buf.toString('utf8', nameEnd + 1, textEnd);
        if (nameEnd > p + 5) (parsed ??= []).push(buf.toString('utf8', p + 5, nameEnd));
      } else if (type === BIND) {
        // A statement prepared earlier: its text decides (known only with the prepared-statement
        // cache). Parse + Bind of the same name in one batch (postgres.js, pgjdbc) was judged at the Parse.
        const portalEnd = buf.indexOf(0, p + 5);
        const nameEnd = buf.indexOf(0, portalEnd + 1);
        const name = buf.toString('utf8', portalEnd + 1, nameEnd);
        if (name && parsed?.includes(name)) v = null;
        else {
          const text = name && this.ps ? this.ps.textOf(name) : undefined;
          if (text === undefined) v = name || result === null ? Verdict.Write : null;
          else sql = text;
        }
      } else if (type === FUNCTION_CALL) v = Verdict.Write;
      if (sql) {
        v = cls.verdict(sql, maxLength);
        if (v === null) return null;
        if (!this.routedSql) this.routedSql = sql;
      }
      if (v !== null) result = result === null ? v : combine(result, v);
      p += 1 + len;
      // The first transaction ends here; later ones are checked as they are forwarded (mustWait).
      if (type === QUERY || type === SYNC) break;
    }
    return result ?? Verdict.Write;
  }

  /**
   * Answers routing commands at the head of the buffer (SET SERVER ROLE, SHOW PRIMARY READS, …);
   * true if the buffer is now empty.
   */
  private answerHints(): boolean {
    const f = this.frames;
    while (f.pending >= 5 && f.buf[f.off] === QUERY) {
      const len = f.buf.readInt32BE(f.off + 1);
      if (len > 80 || f.pending < len + 1) return false;
      // Every hint starts with SET or SHOW: look at the first non-blank byte before decoding text.
      let i = f.off + 5;
      while (i < f.off + len && (f.buf[i] === 0x20 || (f.buf[i] >= 0x09 && f.buf[i] <= 0x0d))) i++;
      if ((f.buf[i] | 0x20) !== 0x73) return false;
      const hint = parseHint(f.buf.toString('utf8', f.off + 5, f.off + len));
      if (!hint) return false;
      f.next();
      this.sock.write(this.applyHint(hint));
    }
    return f.pending === 0;
  }

  private applyHint(h: Hint): Buffer {
    const up = this.userPool!;
    const ready = this.server && this.server.txStatus !== 0x49 ? READY_IN_TX : READY_IDLE;
    switch (h.kind) {
      case 'set_role':
        this.roleHint = h.role;
        return Buffer.concat([commandComplete('SET'), ready]);
      case 'set_primary_reads':
        this.primaryReadsHint = h.on;
        return Buffer.concat([commandComplete('SET'), ready]);
      case 'show_role': {
        const p = up.pool;
        const role = this.roleHint ?? (p.query_parser_enabled && p.query_parser_read_write_splitting ? 'auto' : p.default_role === 'replica' ? 'replica' : 'primary');
        return Buffer.concat([rowDescription(['server_role']), dataRow([role]), commandComplete('SHOW'), ready]);
      }
      case 'show_primary_reads':
        return Buffer.concat([rowDescription(['primary_reads']), dataRow([this.primaryReads(up) ? 'on' : 'off']), commandComplete('SHOW'), ready]);
      case 'set_shard':
      case 'set_sharding_key': {
        const n = up.shards.length;
        const shard = h.kind === 'set_shard' ? h.shard : shardOfKey(up.pool.sharding_function, h.key, n);
        if (shard !== null && shard >= n) {
          return Buffer.concat([errorResponse({ severity: 'ERROR', code: SQLSTATE.INVALID_PARAMETER_VALUE, message: `shard ${shard} does not exist: pool "${up.pool.name}" has ${n} shards (0 to ${n - 1})` }), ready]);
        }
        if (shard === null && h.kind === 'set_sharding_key') {
          return Buffer.concat([errorResponse({ severity: 'ERROR', code: SQLSTATE.INVALID_PARAMETER_VALUE, message: `sharding key ${h.key} is not a 64-bit integer` }), ready]);
        }
        this.shardSetting = shard;
        return Buffer.concat([commandComplete('SET'), ready]);
      }
      case 'show_shard':
        return Buffer.concat([rowDescription(['shard']), dataRow([this.shardSetting === null ? 'default' : String(this.shardSetting)]), commandComplete('SHOW'), ready]);
    }
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
    const batchStart = f.off;
    // Rewritten messages (prepared statements, refused names, DEALLOCATE) are spliced between
    // views of the client's bytes; the batch still goes out in one write (one syscall).
    let parts: Buffer[] | null = null;
    loop: while (f.next()) {
      switch (f.type) {
        case TERMINATE:
          parts = splice(parts, f, runStart, f.start, null);
          if (parts.length > 0) server.write(Buffer.concat(parts));
          return this.disconnect('client sent Terminate');
        case QUERY: {
          if (this.implicitReads && this.sinceSync === 0 && !this.takeBypass() && this.mustWait(f.buf.toString('utf8', f.start + 5, f.msgEnd - 1))) {
            f.off = f.start; // a write: it starts the next transaction, on the primary
            break loop;
          }
          this.pendingReady++;
          if (!this.movable) break;
          const sql = f.buf.toString('utf8', f.start + 5, f.msgEnd - 1);
          this.noteSql(sql);
          if (ps) {
            ps.noteSync();
            const out = ps.rewriteQuery(sql, server);
            if (out) {
              parts = splice(parts, f, runStart, f.start, out);
              runStart = f.msgEnd;
            }
          }
          break;
        }
        case PARSE: {
          if (this.implicitReads && this.sinceSync === 0 && !this.takeBypass() && this.mustWait(parseText(f.buf, f.start))) {
            f.off = f.start;
            break loop;
          }
          this.sinceSync++;
          if (!this.movable) break;
          const nameEnd = f.buf.indexOf(0, f.start + 5);
          if (nameEnd > f.start + 5 && !ps) {
            // Cache off: a named statement cannot follow the client to another connection. Send
            // a Parse that fails at analysis instead; its error is swapped for a clear one.
            parts = splice(parts, f, runStart, f.start, NAMED_STATEMENT_PROBE);
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
        case FLUSH:
          // Everything answered so far is owed to the client now (see onServerData). A Flush
          // leaves nothing behind on the server, so it does not keep the connection held.
          if (this.replayArmed) this.replayFlushed = true;
          break;
        case BIND:
        case EXECUTE:
        case DESCRIBE:
        case CLOSE:
          this.sinceSync++;
          break;
        default:
          break; // CopyData / CopyDone / CopyFail belong to the running COPY
      }
      if (ps && (f.type === PARSE || f.type === BIND || f.type === DESCRIBE || f.type === CLOSE)) {
        const out = ps.rewrite(f.type, f.view(f.start, f.msgEnd), server);
        if (out) {
          parts = splice(parts, f, runStart, f.start, out);
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
    if (this.replayArmed && f.off > batchStart) this.keepForReplay(f.buf, batchStart, f.off);
    // Header replies held back before this Flush are what the client now waits for.
    if (this.replayFlushed && this.heldReply) this.endReplay();
    // Complete messages only: a partial one stays buffered until its last byte arrives.
    if (parts !== null) {
      parts = splice(parts, f, runStart, f.off, null);
      if (!server.write(parts.length === 1 ? parts[0] : Buffer.concat(parts))) this.sock.pause();
    } else if (f.off > runStart && !server.write(f.view(runStart, f.off))) this.sock.pause();
  }

  /** Appends forwarded client bytes to the replay copy (up to 64 KiB; a bigger batch is not retried). */
  private keepForReplay(buf: Buffer, from: number, to: number): void {
    const n = to - from;
    if (this.replayLen + n > 65536) {
      this.endReplay();
      return;
    }
    if (this.replayBuf.length < this.replayLen + n) {
      const grown = Buffer.allocUnsafe(Math.max(1024, (this.replayLen + n) * 2));
      this.replayBuf.copy(grown, 0, 0, this.replayLen);
      this.replayBuf = grown;
    }
    buf.copy(this.replayBuf, this.replayLen, from, to);
    this.replayLen += n;
  }

  /**
   * The server failed the read before the client saw a byte of the answer: drop that connection,
   * ban the server if it is going away, and send the same bytes through routing again (deferred:
   * this runs inside the server connection's callbacks).
   */
  private retryRead(reason: string, banIt: boolean): void {
    const conn = this.server;
    const entry = this.entry;
    this.retrying = true;
    this.replayArmed = false;
    this.heldReply = null;
    this.replayTries++;
    const bytes = Buffer.from(this.replayBuf.subarray(0, this.replayLen));
    this.server = null;
    if (conn) {
      conn.owner = null;
      conn.socket.resume();
      if (!conn.closed) conn.close(`read retried on another server: ${reason}`);
    }
    if (banIt && entry) this.ban(entry, BAN.closed);
    log.warn('read retried on another server', { client: this.remote, server: entry ? `${entry.address.host}:${entry.address.port}` : '', reason });
    this.pendingReady = this.replayPendingReady;
    this.sinceSync = this.replaySinceSync;
    this.releasePending = false;
    this.namedRefused.length = 0;
    this.ps?.resetReplies();
    queueMicrotask(() => {
      this.retrying = false;
      if (this.phase === Phase.Closed) return;
      this.frames.unshift(bytes);
      this.sock.resume();
      this.beginTransaction();
    });
  }

  /** Uses up waitBypass: true once after sessionBoundary forwarded into an open transaction. */
  private takeBypass(): boolean {
    if (!this.waitBypass) return false;
    this.waitBypass = false;
    return true;
  }

  /** On a replica between implicit transactions: does this statement need another server? */
  private mustWait(sql: string): boolean {
    const v = this.ctx.classifier.verdict(sql, this.userPool!.pool.query_parser_max_length ?? 0);
    return v !== Verdict.Read && v !== Verdict.ReadOnlyTx;
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
    log.info(this.txMode ? 'client pinned to its server connection' : 'routed session holds state that keeps it on its server', { client: this.remote, user: this.userPool?.user.username, reason, server_id: this.server?.id });
  }

  onServerData(chunk: Buffer): void {
    if (this.retrying) return;
    if (this.replayArmed) {
      const reply = this.heldReply ? Buffer.concat([this.heldReply, chunk]) : chunk;
      const next = firstReply(reply, this.entry !== null && roleOf(this.entry) !== 'primary');
      if (next === REPLY_WAIT && !this.replayFlushed) {
        this.heldReply = Buffer.from(reply);
        return;
      }
      this.heldReply = null;
      if (next === REPLY_RETRY || next === REPLY_RETRY_BAN) return this.retryRead(next === REPLY_RETRY_BAN ? 'server is shutting down' : 'the replica refused the read', next === REPLY_RETRY_BAN);
      this.replayArmed = false;
      this.replayTries = 0;
      chunk = reply;
    }
    this.ctx.shared.stats[this.stat + STAT.sent] += chunk.length;
    if (!writeView(this.sock, chunk)) this.server?.socket.pause();
    if (this.releasePending) {
      this.releasePending = false;
      if (this.txMode) this.endTransaction();
      else this.sessionBoundary();
    }
  }

  /**
   * Ends the retry window: header replies held so far go to the client now (they are never
   * dropped), and later replies pass straight through.
   */
  private endReplay(): void {
    this.replayArmed = false;
    this.replayTries = 0;
    const held = this.heldReply;
    if (!held) return;
    this.heldReply = null;
    this.ctx.shared.stats[this.stat + STAT.sent] += held.length;
    if (!this.sock.write(held)) this.server?.socket.pause();
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
      message: `prepared statement "${name}" cannot be used: named prepared statements need prepared_statements_cache_size > 0 in ${this.txMode ? 'transaction pooling' : 'a routed session (read/write splitting moves it between servers)'}`,
      hint: `Set general.prepared_statements_cache_size in openproxy (e.g. 500), or use unnamed statements${this.txMode ? ', or pool_mode = "session"' : ''}.`,
    });
  }

  onReady(status: number): boolean {
    const now = performance.now();
    const st = this.ctx.shared.stats;
    this.queries++;
    this.ps?.onReady();
    if (this.pendingReady > 0) this.pendingReady--;
    if (this.pendingReady === 0) this.namedRefused.length = 0; // settled: answered or skipped
    st[this.stat + STAT.query_count] += 1;
    if (this.queryStart >= 0) {
      st[this.stat + STAT.query_time_us] += Math.round((now - this.queryStart) * 1000);
      this.latency!.query.observe((now - this.queryStart) / 1000);
    }
    this.queryStart = -1;
    if (status === 0x49) {
      this.transactions++;
      st[this.stat + STAT.xact_count] += 1;
      if (this.xactStart >= 0) {
        st[this.stat + STAT.xact_time_us] += Math.round((now - this.xactStart) * 1000);
        this.latency!.xact.observe((now - this.xactStart) / 1000);
      }
      this.xactStart = -1;
      // Transaction mode: the server owes nothing more once every Sync/Query was answered.
      if (this.txMode && this.pendingReady === 0 && this.sinceSync === 0) this.releasePending = true;
    }
    if (this.routedSession && this.implicitReads && this.pendingReady === 0 && this.sinceSync === 0 && this.frames.pending > 0) {
      // Statements held back on a replica-bound session (see forwardToServer): decide after this answer.
      this.releasePending = true;
      return status === 0x49 && this.pins.size === 0;
    }
    return this.releasePending && this.staysUnpinned();
  }

  /** No pin outlives the end of this transaction (LISTEN etc. keep server bytes flowing to the client). */
  private staysUnpinned(): boolean {
    if (this.pins.size === 0) return true;
    for (const r of this.pins) if (!this.unpinLater.has(r)) return false;
    return true;
  }

  /**
   * Transaction mode, at ReadyForQuery 'I' with nothing outstanding: read back GUCs the transaction
   * may have changed, apply unpins, then return the connection unless the client is pinned.
   */
  private endTransaction(): void {
    const conn = this.server;
    if (!conn || this.phase === Phase.Closed) return;
    if (conn.closed || conn.doomed) {
      // The server ended the session after its last answer (shutdown, idle timeout; its FATAL may
      // share a read with the ReadyForQuery): an unpinned client has everything it asked for and
      // goes on; a pinned one has lost the state it was pinned to.
      const why = conn.closed ? conn.closeReason : conn.doomed!;
      this.server = null;
      conn.owner = null;
      if (!conn.closed) conn.close(why);
      if (this.pins.size > 0) return this.fatal(SQLSTATE.CONNECTION_FAILURE, `server connection lost with this session's state: ${why}`, 'pinned server connection lost');
      this.unpinLater.clear();
      this.sock.resume();
      if (this.frames.pending) this.beginTransaction();
      return;
    }
    if (this.touched.size > 0 || this.resets.size > 0 || this.resetAll) {
      this.captureGucs(conn);
      return;
    }
    for (const r of this.unpinLater) this.pins.delete(r);
    this.unpinLater.clear();
    if (this.rywPending) {
      // read_your_writes: the commit is done; a primary position measured after now covers it.
      this.rywPending = false;
      this.rywSince = Date.now();
      this.rywSlot = this.entry?.pool.slot ?? -1;
    }
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
      if (conn.clean && !gucsMatch(conn.gucs, this.gucs, conn.reported)) {
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
    this.replayTries = 0;
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
  private captureGucs(conn: ServerConn, next: () => void = () => this.endTransaction()): void {
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
    if (names.length === 0) return next();
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
      next();
    });
  }

  onServerError(body: Buffer): void {
    this.errors++;
    // A "read" a replica refused as a write (e.g. SELECT of a function that writes): remember it,
    // so this text goes to the primary from now on.
    if (this.routedSql && this.entry && roleOf(this.entry) === 'replica' && errorField(body, 0x43) === '25006') {
      this.ctx.classifier.learnWrite(this.routedSql);
      log.info('statement sent to a replica needs the primary; routing it there from now on', { client: this.remote, statement: this.routedSql.slice(0, 200) });
    }
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
    if (this.retrying) return;
    if (this.replayArmed) return this.retryRead(reason, true);
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
    if (this.pauseWaiter) this.ctx.pauseWaiters.delete(this.pauseWaiter);
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

/** The server refused a client's session settings (SET …): the ErrorResponse body to pass on. */
class GucRejected extends Error {
  constructor(readonly body: Buffer) {
    super('session parameters rejected');
  }
}

/** Commands that work on session objects: a pinned routed session runs them where the objects are. */
const STATE_COMMAND = /^\s*(?:execute|fetch|move|close|deallocate|discard|unlisten|reset|show)\b/i;

const REPLY_FORWARD = 0;
const REPLY_WAIT = 1;
const REPLY_RETRY = 2;
const REPLY_RETRY_BAN = 3;
/** Server going away: admin_shutdown, crash_shutdown, cannot_connect_now. */
const GOING_AWAY = new Set(['57P01', '57P02', '57P03']);

/**
 * Adds the client's bytes [from, to) and `insert` to a batch. Views of the read buffer are fine:
 * the batch is concatenated (copied) at once, and a lone view goes through writeView, which keeps
 * the buffer when the write is queued.
 */
function splice(parts: Buffer[] | null, f: FrameReader, from: number, to: number, insert: Buffer | null): Buffer[] {
  const p = parts ?? [];
  if (to > from) p.push(f.view(from, to));
  if (insert) p.push(insert);
  return p;
}

/** Whether a write may wait for a primary and try again after this failure. */
function retryable(err: ServerConnError): boolean {
  return err instanceof ServerConnError && !isFinal(err);
}
/** A replica refusing a read: read_only_sql_transaction, serialization_failure (conflict with recovery). */
const REPLICA_REFUSAL = new Set(['25006', '40001']);

/**
 * The start of a server's reply while a read may still be retried: skips header messages
 * (ParseComplete, BindComplete, NoData, ParameterDescription, RowDescription, notices, parameter
 * status); an ErrorResponse saying the server is going away (or, on a replica, refusing the read)
 * means retry; anything else means the answer has begun.
 */
function firstReply(buf: Buffer, onReplica: boolean): number {
  let p = 0;
  while (p + 5 <= buf.length) {
    const t = buf[p];
    const len = buf.readInt32BE(p + 1);
    if (t === 0x31 || t === 0x32 || t === 0x6e || t === 0x74 || t === 0x54 || t === 0x4e || t === 0x53) {
      p += 1 + len;
      continue;
    }
    if (t !== 0x45) return REPLY_FORWARD;
    if (p + 1 + len > buf.length) return REPLY_WAIT;
    const code = errorField(buf.subarray(p + 5, p + 1 + len), 0x43);
    if (GOING_AWAY.has(code)) return REPLY_RETRY_BAN;
    return onReplica && REPLICA_REFUSAL.has(code) ? REPLY_RETRY : REPLY_FORWARD;
  }
  return REPLY_WAIT;
}

/** A Bind's parameter values as text (binary int2/int4/int8 decoded; other binary values null). */
function bindParams(buf: Buffer, from: number, end: number): (string | null)[] | null {
  let p = from;
  if (p + 2 > end) return null;
  const nFormats = buf.readInt16BE(p);
  p += 2;
  const formats: number[] = [];
  for (let i = 0; i < nFormats; i++, p += 2) formats.push(buf.readInt16BE(p));
  const n = buf.readInt16BE(p);
  p += 2;
  const out: (string | null)[] = [];
  for (let i = 0; i < n && p + 4 <= end; i++) {
    const len = buf.readInt32BE(p);
    p += 4;
    if (len < 0) {
      out.push(null);
      continue;
    }
    const binary = (nFormats === 1 ? formats[0] : formats[i] ?? 0) === 1;
    if (!binary) out.push(buf.toString('utf8', p, p + len));
    else if (len === 8) out.push(buf.readBigInt64BE(p).toString());
    else if (len === 4) out.push(String(buf.readInt32BE(p)));
    else if (len === 2) out.push(String(buf.readInt16BE(p)));
    else out.push(null);
    p += len;
  }
  return out;
}

/** The query text of a Parse message starting at `start`. */
function parseText(buf: Buffer, start: number): string {
  const nameEnd = buf.indexOf(0, start + 5);
  const textEnd = buf.indexOf(0, nameEnd + 1);
  return textEnd > nameEnd ? buf.toString('utf8', nameEnd + 1, textEnd) : '';
}

/** Verdicts of messages that will share one server: any write wins; a transaction start keeps its kind. */
function combine(a: Verdict, b: Verdict): Verdict {
  if (a === Verdict.Write || b === Verdict.Write) return Verdict.Write;
  if (a === Verdict.Begin || a === Verdict.ReadOnlyTx) return a;
  if (b === Verdict.Begin || b === Verdict.ReadOnlyTx) return b;
  return Verdict.Read;
}

/** Cancels the running query of a local session if pid/secret match (silently ignored otherwise, like PostgreSQL). */
export function cancelLocal(ctx: WorkerContext, pid: number, secret: number): void {
  const c = ctx.clients.get(pid);
  if (!c || c.secret !== secret || !c.server) return;
  const s = c.server;
  void sendCancel(s.login.host, s.login.port, s.backendPid, s.backendSecret, s.login.connectTimeout);
}
