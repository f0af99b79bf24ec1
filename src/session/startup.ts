// From the first byte to the first ReadyForQuery: the startup packet family (SSLRequest,
// GSSENCRequest, CancelRequest, StartupMessage), TLS, the pool and user lookup, client
// authentication, then the server the client logs in through (or the admin console).

import tls from 'node:tls';
import { AUTH_OK, SSL_NO, SSL_YES, backendKeyData, parameterStatus, READY_IDLE } from '../protocol/backend';
import { MAX_STARTUP_LENGTH, decodeStartup } from '../protocol/frontend';
import { EMPTY } from '../protocol/frame-reader';
import { FE } from '../protocol/messages';
import { SQLSTATE } from '../protocol/sqlstate';
import type { ServerConnError, ServerLink } from '../pool/server-link';
import { cachedLoginEntry, chooseSessionServer } from '../pool/choose';
import { checkSettings } from '../pool/check';
import { learnKeys } from '../pool/pass-through';
import type { UserPool } from '../pool/registry';
import { PoolLatency } from '../shared/histogram';
import { STAT } from '../shared/layout';
import { VERSION } from '../version';
import { log } from '../log';
import { wantsClientCert } from '../config/client-tls';
import { admit } from './access';
import { type AuthMethod, ClientAuth, type AuthStep } from './auth';
import { lookupLogin, lookupPool } from './auth-query';
import { clientGucs } from './startup-params';
import { PreparedStatements } from './prepared';
import { ADMIN_DATABASES, type WorkerContext, workerOfPid } from './context';
import { matchGucs } from './assign';
import { Phase, type Session } from './session';

/** Startup-phase bytes: packets are untyped (length first) until the StartupMessage is done. */
export function onStartupBytes(s: Session, chunk: Buffer): void {
  s.startupBuf = s.startupBuf.length ? Buffer.concat([s.startupBuf, chunk]) : chunk;
  if (s.startupBuf.length < 4) return;
  const len = s.startupBuf.readInt32BE(0);
  if (len < 8 || len > MAX_STARTUP_LENGTH) {
    return s.fatal(SQLSTATE.PROTOCOL_VIOLATION, `invalid startup packet length ${len}`, 'bad startup packet');
  }
  if (s.startupBuf.length < len) return;
  const pkt = s.startupBuf.subarray(0, len);
  const rest = s.startupBuf.subarray(len);
  s.startupBuf = EMPTY;
  const d = decodeStartup(pkt);
  switch (d.kind) {
    case 'invalid':
      return s.fatal(d.code, d.reason, 'bad startup packet');
    case 'gssenc':
      s.sock.write(SSL_NO);
      break;
    case 'ssl':
      if (rest.length > 0) {
        return s.fatal(SQLSTATE.PROTOCOL_VIOLATION, 'data after SSLRequest before the answer', 'bad startup packet');
      }
      // As PostgreSQL: no TLS over the Unix-domain socket.
      if (
        s.ctx.tls &&
        !s.unix &&
        s.ctx.registry.general.client_tls_sslmode !== 'disable' &&
        !(s.sock instanceof tls.TLSSocket)
      )
        return upgradeTls(s);
      s.sock.write(SSL_NO);
      break;
    case 'cancel':
      handleCancel(s.ctx, d.pid, d.secret);
      s.disconnect('cancel request handled');
      return;
    case 'startup':
      s.params = d.params;
      if (rest.length) s.frames.push(rest);
      return login(s);
  }
  if (rest.length) onStartupBytes(s, rest);
}

function upgradeTls(s: Session): void {
  const raw = s.sock;
  raw.removeAllListeners('data');
  raw.removeAllListeners('error');
  raw.removeAllListeners('close');
  raw.write(SSL_YES);
  const t = new tls.TLSSocket(raw, {
    isServer: true,
    secureContext: s.ctx.tls!,
    // verify-ca / verify-full: ask for a certificate, judge it at login (a clear 28000, not a TLS alert).
    requestCert: wantsClientCert(s.ctx.registry.general),
    rejectUnauthorized: false,
  });
  s.sock = t;
  raw.on('error', () => undefined);
  s.listen(t);
}

function handleCancel(ctx: WorkerContext, pid: number, secret: number): void {
  const worker = workerOfPid(pid);
  if (worker === ctx.index) cancelLocal(ctx, pid, secret);
  else ctx.forwardCancel(worker, pid, secret);
}

/** Cancels the running query of a local session if pid/secret match (silently ignored otherwise, like PostgreSQL). */
export function cancelLocal(ctx: WorkerContext, pid: number, secret: number): void {
  const c = ctx.clients.get(pid);
  if (c && c.secret === secret) c.cancelQuery();
}

function login(s: Session): void {
  const user = s.params.get('user')!;
  const db = s.params.get('database') || user;
  const ctx = s.ctx;
  if (s.params.has('replication') && s.params.get('replication') !== 'false') {
    const message = 'replication connections are not supported through openproxy';
    return s.fatal(SQLSTATE.FEATURE_NOT_SUPPORTED, message, 'replication connection');
  }
  if (ctx.shutdown) return s.fatal(SQLSTATE.ADMIN_SHUTDOWN, 'openproxy is shutting down', 'login during shutdown');
  const g = ctx.registry.general;
  let password: string | undefined;
  if (ADMIN_DATABASES.has(db) && !ctx.registry.hasDatabase(db)) {
    const reader = user !== g.admin_username && g.stats_users.includes(user);
    if (user !== g.admin_username && !reader) {
      const message = `not allowed: the admin console (database "${db}") is only for admin_username and stats_users`;
      return s.fatal(SQLSTATE.INVALID_AUTHORIZATION, message, 'admin console refused');
    }
    password = reader ? ctx.registry.passwordOf(user) : g.admin_userpassword;
    if (password === undefined) {
      const message = `stats_users lists "${user}", but no pool has a user of that name with a password`;
      return s.fatal(SQLSTATE.INVALID_AUTHORIZATION, message, 'admin console refused');
    }
    s.console = ctx.openConsole(s, reader);
  } else {
    if (ctx.disabled.has(db) || ctx.disabled.has('')) {
      const message = `database "${db}" is disabled (DISABLE by the openproxy admin)`;
      return s.fatal(SQLSTATE.CANNOT_CONNECT_NOW, message, 'database disabled');
    }
    const up = ctx.registry.find(db, user);
    if (!up || up.user.lookedUp) {
      if (!ctx.registry.hasDatabase(db))
        return s.fatal(SQLSTATE.INVALID_CATALOG_NAME, `no such database: ${db}`, 'unknown database');
      // Users auth_query added are looked up again: a changed or dropped password counts at once.
      const via = lookupPool(s, db);
      if (via) return lookupLogin(s, via, db, user, (method, secret) => beginAuth(s, method, user, secret));
      if (!up)
        return s.fatal(SQLSTATE.INVALID_AUTHORIZATION, `no such user: "${user}" in pool "${db}"`, 'unknown user');
    }
    s.userPool = up;
    password = up.user.password;
  }
  const method = admit(s, db, user);
  if (method === null) return;
  beginAuth(s, method, user, password);
}

function beginAuth(s: Session, method: AuthMethod, user: string, password: string | undefined): void {
  s.auth = new ClientAuth(method, user, password);
  s.phase = Phase.Auth;
  authStep(s, s.auth.start());
  if (s.frames.pending) onAuthMessages(s);
}

/** PasswordMessage / SASL responses while authenticating. */
export function onAuthMessages(s: Session): void {
  const f = s.frames;
  while (s.phase === Phase.Auth && f.next()) {
    if (f.type !== FE.PASSWORD) {
      const message = `expected a password message, got message type ${String.fromCharCode(f.type)}`;
      return s.fatal(SQLSTATE.PROTOCOL_VIOLATION, message, 'bad auth message');
    }
    authStep(s, s.auth!.step(f.body()));
  }
  if (f.error) s.fatal(SQLSTATE.PROTOCOL_VIOLATION, f.error, 'bad message');
}

function authStep(s: Session, step: AuthStep): void {
  if (step.kind === 'send') {
    s.sock.write(step.data);
    return;
  }
  if (step.kind === 'fail') {
    const who = { client: s.remote, user: s.params.get('user'), database: s.params.get('database') };
    log.warn('client authentication failed', { ...who, reason: step.message });
    return s.fatal(step.code, step.message, 'authentication failed');
  }
  const authOk = step.data ? Buffer.concat([step.data, AUTH_OK]) : AUTH_OK;
  // SCRAM pass-through: this worker's server logins for that verifier can use the proved key now.
  const keys = s.auth?.passThrough;
  const verifier = s.userPool?.user.password ?? s.lookedUp?.secret;
  if (keys && verifier && learnKeys(verifier, keys)) s.ctx.shareScramKeys(verifier, keys);
  s.auth = null;
  if (s.console) return startConsole(s, authOk);
  if (s.lookedUp) return void addLookedUp(s, s.lookedUp, authOk);
  void attachServer(s, authOk);
}

/** A user auth_query found and the client proved: into the pool (every thread), then on as usual. */
async function addLookedUp(s: Session, found: { pool: string; secret: string }, authOk: Buffer): Promise<void> {
  const user = s.params.get('user')!;
  s.phase = Phase.Waiting;
  try {
    const known = s.ctx.registry.find(found.pool, user);
    if (known?.user.password !== found.secret) await s.ctx.addUser(found.pool, user, found.secret);
  } catch (e) {
    return s.fatal(SQLSTATE.INTERNAL_ERROR, `could not add user "${user}": ${(e as Error).message}`, 'auth_query');
  }
  if ((s.phase as Phase) === Phase.Closed) return;
  s.userPool = s.ctx.registry.find(found.pool, user) ?? null;
  if (!s.userPool) return s.fatal(SQLSTATE.INTERNAL_ERROR, `user "${user}" was not added`, 'auth_query');
  void attachServer(s, authOk);
}

function startConsole(s: Session, authOk: Buffer): void {
  const params: [string, string][] = [
    ['server_version', `${VERSION}/openproxy`],
    ['client_encoding', 'UTF8'],
    ['server_encoding', 'UTF8'],
    ['DateStyle', 'ISO, MDY'],
    ['integer_datetimes', 'on'],
    ['standard_conforming_strings', 'on'],
    ['application_name', s.params.get('application_name') ?? ''],
  ];
  const status = params.map(([k, v]) => parameterStatus(k, v));
  s.sock.write(Buffer.concat([authOk, ...status, backendKeyData(s.pid, s.secret), READY_IDLE]));
  s.phase = Phase.Active;
  log.info('admin console login', { client: s.remote, user: s.params.get('user') });
  s.console!.onMessages();
}

/**
 * Authenticated: take a server connection for the login (its ParameterStatus values are what the
 * client sees), make its settings match the client's startup options, answer ReadyForQuery.
 * Transaction mode and routed sessions give it back at once.
 */
async function attachServer(s: Session, authOk: Buffer): Promise<void> {
  const up = s.userPool!;
  const ctx = s.ctx;
  s.phase = Phase.Waiting;
  s.txMode = up.user.pool_mode === 'transaction';
  s.stat = ctx.shared.statBase(ctx.index, up.statSlot);
  let lat = ctx.latency.get(up.statSlot);
  if (!lat) ctx.latency.set(up.statSlot, (lat = new PoolLatency()));
  s.latency = lat;
  ctx.shared.stats[s.stat + STAT.logins] += 1;
  ctx.clients.set(s.pid, s);
  const gucs = clientGucs(s.params);
  if (typeof gucs === 'string') return s.fatal(SQLSTATE.FEATURE_NOT_SUPPORTED, gucs, 'bad startup options');
  for (const [k, v] of gucs) s.startupGucs.set(k.toLowerCase(), v);
  s.gucs = s.startupGucs;
  if (loginWithoutServer(s, up, authOk)) return;
  s.sock.write(authOk);
  const waitStart = performance.now();
  let conn: ServerLink;
  try {
    const g = ctx.registry.general;
    const pick = await chooseSessionServer(up, checkSettings(g), s.route.active(up), g.primary_wait_timeout);
    conn = pick.conn;
    s.serverPool = pick.pool;
    s.home = s.entry = up.shards.flat().find((e) => e.pool === pick.pool) ?? null;
    s.generation = ctx.registry.generation;
    s.routedSession = !s.txMode && s.route.active(up);
    // Named statements follow a client between server connections only through the cache.
    cachePrepared(s);
  } catch (e) {
    const err = e as ServerConnError;
    ctx.shared.stats[s.stat + STAT.errors] += 1;
    return s.fatal(err.sqlstate ?? SQLSTATE.CONNECTION_FAILURE, err.message, 'no server connection');
  }
  ctx.shared.stats[s.stat + STAT.wait_time_us] += Math.round((performance.now() - waitStart) * 1000);
  if ((s.phase as Phase) === Phase.Closed) return s.releaseServer(conn, s.serverPool!);
  if (!(await matchGucs(s, conn, true))) return;
  s.attach(conn);
  const out: Buffer[] = [];
  for (const [k, v] of conn.params) out.push(parameterStatus(k, v));
  out.push(backendKeyData(s.pid, s.secret), READY_IDLE);
  s.sock.write(Buffer.concat(out));
  s.phase = Phase.Active;
  if (ctx.registry.general.log_client_connections) {
    const who = { client: s.remote, user: up.user.username, database: up.pool.name };
    log.info('client logged in', { ...who, server_id: conn.id, pool_mode: up.user.pool_mode });
  }
  if (s.txMode) s.endTransaction();
  else if (s.routedSession) {
    // The session's server is chosen by its first query: give back the one used for the login.
    s.server = null;
    conn.letGo();
    s.serverPool!.release(conn);
    if (s.frames.pending) s.beginTransaction();
  } else if (s.frames.pending) s.forwardToServer();
}

/** Named statements follow a client between server connections only through the cache. */
function cachePrepared(s: Session): void {
  const cacheSize = s.userPool!.pool.prepared_statements_cache_size;
  if (s.movable && cacheSize > 0) s.ps = new PreparedStatements(cacheSize);
}

/**
 * A client that takes a server only per transaction (transaction mode, routed session) logs in
 * from the parameters its pool's connections reported, as PgBouncer does: no server connection is
 * taken, so a login storm does not queue behind running transactions. Only when every startup
 * setting is one the server already reports with that value, or a plain application_name (the
 * first transaction sets it); anything else is checked by logging in through a server.
 */
function loginWithoutServer(s: Session, up: UserPool, authOk: Buffer): boolean {
  const ctx = s.ctx;
  const routing = s.route.active(up);
  const routed = !s.txMode && routing;
  if (!s.txMode && !routed) return false;
  const now = Date.now();
  // As the login through a server: a routed client may log in on any role.
  const e = cachedLoginEntry(up, routing, (slot) => ctx.shared.banned(slot, now));
  const params = e?.pool.loginParams;
  if (!e || !params) return false;
  for (const [k, v] of s.startupGucs) if (!echoable(k, v, params)) return false;
  s.serverPool = e.pool;
  s.home = s.entry = e;
  s.generation = ctx.registry.generation;
  s.routedSession = routed;
  cachePrepared(s);
  const out: Buffer[] = [authOk];
  const app = s.startupGucs.get('application_name');
  for (const [k, v] of params) out.push(parameterStatus(k, k === 'application_name' ? (app ?? v) : v));
  out.push(backendKeyData(s.pid, s.secret), READY_IDLE);
  s.sock.write(Buffer.concat(out));
  s.phase = Phase.Active;
  if (ctx.registry.general.log_client_connections) {
    const who = { client: s.remote, user: up.user.username, database: up.pool.name };
    log.info('client logged in', { ...who, pool_mode: up.user.pool_mode, server: 'none (parameters cached)' });
  }
  if (s.frames.pending) s.beginTransaction();
  return true;
}

/** A startup setting the server reports with this very value, or a printable application_name. */
function echoable(name: string, value: string, params: ReadonlyMap<string, string>): boolean {
  if (name === 'application_name') return /^[\x20-\x7e]{0,63}$/.test(value);
  for (const [k, v] of params) if (k.toLowerCase() === name) return v === value;
  return false;
}
