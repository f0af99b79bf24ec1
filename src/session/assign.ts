// A server connection for each transaction (transaction mode, routed sessions): routing commands
// answered first, PAUSE, the route (target, shard, candidates), then the fast path (an idle,
// matching connection, or a queue place on one pool with a synchronous hand-over) or the general
// path (health checks, GUC sync, several candidates, banning failed replicas, and a write waiting
// up to primary_wait_timeout for a primary during a failover).

import { errorField, withSeverity } from '../protocol/backend';
import { FE } from '../protocol/messages';
import { SQLSTATE } from '../protocol/sqlstate';
import { ServerConnError, type ServerLink, isFinal } from '../pool/server-link';
import { SERVER_STAT, type ServerPool } from '../pool/server-pool';
import { checkDue, checkSettings, healthCheck } from '../pool/check';
import { type ServerEntry, roleOf } from '../pool/registry';
import { Verdict } from '../routing/classify';
import { BAN, type ReadOptions, type Target, candidates } from '../routing/router';
import { SERVER_STATE, STAT } from '../shared/layout';
import { log } from '../log';
import { gucSyncStatement, gucsMatch } from './guc-sync';
import { isPaused } from './pause';
import { GOING_AWAY } from './replay';
import { Phase, type Session } from './session';

/** The client sent something and holds no server: take one (routed, if routing is on). */
export function beginTransaction(s: Session): void {
  if (s.acquiring || s.phase !== Phase.Active) return;
  const f = s.frames;
  if (f.pending === 0) return;
  const refused = f.refusal();
  if (refused !== null) {
    // Refused before a server is taken for it (the frame reader would refuse it after).
    return s.fatal(SQLSTATE.PROTOCOL_VIOLATION, refused, 'bad message');
  }
  if (f.pending >= 5 && f.buf[f.off] === FE.TERMINATE) return s.disconnect('client sent Terminate');
  // A Flush with no server held has nothing to flush: answered by silence, as PostgreSQL would.
  while (f.pending >= 5 && f.buf[f.off] === FE.FLUSH && f.buf.readInt32BE(f.off + 1) === 4) f.next();
  if (f.pending === 0) return;
  if (s.generation !== s.ctx.registry.generation) refreshPool(s);
  const up = s.userPool!;
  if (f.buf[f.off] === FE.QUERY && s.route.answerHints(f, up, false, s.sock)) return;
  if (isPaused(s.ctx, up.pool.name, up.user.username)) {
    // PAUSE: no server for a new transaction until RESUME.
    if (!s.pauseWaiter) {
      s.pauseWaiter = {
        resume: () => {
          s.pauseWaiter = null;
          s.waitSince = 0;
          s.beginTransaction();
        },
      };
      s.waitSince = Date.now();
      s.ctx.pauseWaiters.add(s.pauseWaiter);
    }
    return;
  }
  let order: ServerEntry[];
  let target: Target = 'primary';
  if (s.route.active(up)) {
    const readOnly = s.gucs.get('default_transaction_read_only') === 'on';
    target = s.route.target(up, f.buf, f.off, f.end, s.ctx.classifier, s.ps, readOnly);
    const shard = up.shards.length > 1 ? s.route.shardOf(up, f.buf, f.off, f.end, s.ps) : 0;
    if (typeof shard === 'string') return s.rejectHead(SQLSTATE.INVALID_PARAMETER_VALUE, shard);
    const minLsn = up.pool.read_your_writes && target === 'read' ? s.ryw.floor(s.ctx.shared) : 0;
    order = candidates(s.ctx.shared, up, shard, target, readOptions(s, minLsn));
    if (order.length === 0 && target === 'read' && !heldBack(s, shard)) {
      return s.fatal(SQLSTATE.CONNECTION_FAILURE, `no server for reads in pool "${up.pool.name}"`, 'no server');
    }
    s.route.shard = shard;
  } else if (s.ctx.shared.usable(s.home!.pool.slot)) {
    // Not routed: always the login server; one array per client, not per transaction.
    if (s.homeOrder[0] !== s.home) s.homeOrder = [s.home!];
    order = s.homeOrder;
  } else {
    // The login server takes no new transactions (DOWN, MAINT, DRAIN): another of its role, or
    // (the primary) wait for it up to primary_wait_timeout.
    target = roleOf(s.home!) === 'replica' ? 'read' : 'primary';
    s.route.shard = 0;
    order = candidates(s.ctx.shared, up, 0, target, readOptions(s, 0));
  }
  const first = order[0] as ServerEntry | undefined;
  const idle = first?.pool.takeIdleNow();
  if (first && idle && ready(s, idle, first)) {
    attachRouted(s, idle, first, target);
    s.forwardToServer();
    return;
  }
  s.acquiring = true;
  s.waitSince = Date.now();
  s.waitStart = performance.now();
  s.waitTarget = target;
  s.waitOrder = order;
  if (first && !idle && order.length === 1) {
    // One candidate and nothing idle: queue on its pool; a released connection is handed over
    // synchronously (onGranted), without a promise per transaction.
    s.waitEntry = first;
    const conn = first.pool.request(s.waiter);
    if (conn) onGranted(s, conn);
    return;
  }
  acquireSlow(s, order, target, idle);
}

/** A connection needs nothing before use: checked recently, role known, settings match. */
function ready(s: Session, conn: ServerLink, e: ServerEntry): boolean {
  return (
    !needsCheck(s, conn) && (e.address.role !== 'auto' || !!e.learned) && gucsMatch(conn.gucs, s.gucs, conn.reported)
  );
}

const staleMs = (s: Session) => Math.max(2000, 4 * s.ctx.registry.general.replica_lag_interval);

function readOptions(s: Session, minLsn: number): ReadOptions {
  const up = s.userPool!;
  const replicaPort = s.route.port === 'replica';
  return {
    primaryReads: replicaPort ? false : s.route.primaryReads(up),
    minLsn,
    staleMs: staleMs(s),
    source: s.source,
    slowStartMs: s.ctx.registry.general.slow_start * 1000,
    primaryFallback: replicaPort ? s.route.primaryReads(up) : undefined,
  };
}

/**
 * Whether a server of the shard is in MAINT or DRAIN: a transaction that finds no server then
 * waits (up to primary_wait_timeout) for READY or a switchover instead of failing at once.
 */
function heldBack(s: Session, shard: number): boolean {
  const servers = s.userPool!.shards[shard] ?? s.userPool!.shards[0];
  for (const e of servers) {
    const st = Atomics.load(s.ctx.shared.serverState, e.pool.slot);
    if (st === SERVER_STATE.maint || st === SERVER_STATE.drain) return true;
  }
  return false;
}

/** The pool gave this client a connection (called synchronously from its release, or when one was opened). */
export function onGranted(s: Session, conn: ServerLink): void {
  const entry = s.waitEntry!;
  s.serverPool = entry.pool;
  if (s.phase === Phase.Closed) {
    stopWaiting(s, false);
    return entry.pool.release(conn);
  }
  if (needsCheck(s, conn) || entry.address.role === 'auto' || !gucsMatch(conn.gucs, s.gucs, conn.reported)) {
    // Checked, role-confirmed and matched by the general path, this connection first.
    return acquireSlow(s, s.waitOrder, s.waitTarget, conn);
  }
  stopWaiting(s, true, entry.pool);
  attachRouted(s, conn, entry, s.waitTarget);
  s.forwardToServer();
}

/** The pool could not give a connection (query_wait_timeout while queued, or opening one failed). */
export function onGrantFailed(s: Session, err: ServerConnError): void {
  if (s.phase === Phase.Closed) return stopWaiting(s, false);
  // As the general path treats a failed acquire: final, or ban the server and maybe wait for a primary.
  if (!isFinal(err)) s.ban(s.waitEntry!, BAN.connect);
  acquireSlow(s, [], s.waitTarget, undefined, err);
}

/** The wait is over; `counted`: add it to the pool's wait time (and to the server's, `to`). */
function stopWaiting(s: Session, counted: boolean, to?: ServerPool): void {
  s.acquiring = false;
  s.waitSince = 0;
  if (!counted) return;
  const us = Math.round((performance.now() - s.waitStart) * 1000);
  s.ctx.shared.stats[s.stat + STAT.wait_time_us] += us;
  if (to) to.stats[SERVER_STAT.wait_us] += us;
}

/** The general path: health checks, GUC sync, several candidates, waiting for a primary. */
function acquireSlow(
  s: Session,
  order: ServerEntry[],
  target: Target,
  idle: ServerLink | undefined,
  failed?: ServerConnError,
): void {
  acquireWithWait(s, order, target, idle, failed).then(
    ({ conn, entry }) => {
      stopWaiting(s, true, entry.pool);
      s.serverPool = entry.pool;
      if (s.phase === Phase.Closed) return entry.pool.release(conn);
      attachRouted(s, conn, entry, target);
      s.forwardToServer();
    },
    (e: ServerConnError | GucRejected) => {
      stopWaiting(s, false);
      s.ctx.shared.stats[s.stat + STAT.errors] += 1;
      if (e instanceof GucRejected) {
        // The client's own settings were refused (e.g. a bad value): its error, then goodbye.
        if (s.sock.writable) s.sock.write(withSeverity(e.body, 'ERROR'));
        return s.disconnect('session parameters rejected by the server');
      }
      s.fatal(e.sqlstate ?? SQLSTATE.CONNECTION_FAILURE, e.message, 'no server connection');
    },
  );
}

interface Acquired {
  conn: ServerLink;
  entry: ServerEntry;
}

/**
 * acquireFrom, but a write that finds no primary (failover under way: none known, or the known
 * one unreachable) waits up to primary_wait_timeout for the HA thread to find one.
 */
async function acquireWithWait(
  s: Session,
  order: ServerEntry[],
  target: Target,
  idle: ServerLink | undefined,
  failed?: ServerConnError,
): Promise<Acquired> {
  const g = s.ctx.registry.general;
  const up = s.userPool!;
  const waits = (target === 'primary' && s.route.active(up)) || heldBack(s, s.route.shard);
  const deadline = Date.now() + (waits ? g.primary_wait_timeout : 0);
  const gaveUp = (e: ServerConnError) => !retryable(e) || Date.now() >= deadline || s.phase === Phase.Closed;
  let announced = false;
  let seen = s.ctx.shared.stateVersion();
  for (;;) {
    if (failed) {
      // The queued fast path already tried its one server and failed (and banned it if it may).
      const err = failed;
      failed = undefined;
      if (gaveUp(err)) throw err;
    } else if (order.length > 0) {
      try {
        return await acquireFrom(s, order, target, idle);
      } catch (e) {
        if (gaveUp(e as ServerConnError)) throw e;
      }
    } else if (Date.now() >= deadline) {
      const what = `no ${target === 'read' ? 'server for reads' : 'primary'} is available in pool "${up.pool.name}"`;
      const message = waits ? `${what} (waited primary_wait_timeout = ${g.primary_wait_timeout} ms)` : what;
      throw new ServerConnError(message, SQLSTATE.CONNECTION_FAILURE);
    }
    if (!announced) {
      announced = true;
      log.info(`no ${target === 'read' ? 'server for reads' : 'primary'} available: the transaction waits`, {
        client: s.remote,
        pool: up.pool.name,
        primary_wait_timeout_ms: g.primary_wait_timeout,
      });
    }
    idle = undefined;
    // Look again at the next role or state change (a new primary, READY), at the latest in 100 ms.
    await s.ctx.shared.waitStateChange(seen, 100);
    seen = s.ctx.shared.stateVersion();
    if (s.phase === Phase.Closed) throw new ServerConnError('client left', SQLSTATE.CONNECTION_FAILURE);
    order = candidates(s.ctx.shared, up, s.route.shard, target, readOptions(s, 0));
  }
}

/** The session holds a connection for the transaction at the head of its buffer. */
function attachRouted(s: Session, conn: ServerLink, entry: ServerEntry, target: Target): void {
  s.serverPool = entry.pool;
  s.entry = entry;
  const v = s.route.verdict;
  const onPrimary = roleOf(entry) === 'primary';
  s.ryw.pending =
    s.userPool!.pool.read_your_writes && s.txMode && onPrimary && v !== Verdict.Read && v !== Verdict.ReadOnlyTx;
  if (target === 'read' && s.txMode && s.replay.tries < 2) s.replay.arm(s.pendingReady, s.sinceSync);
  else s.replay.armed = false;
  // Autocommit reads on a replica: a write arriving between them waits for the next transaction.
  s.implicitReads = ((s.txMode && target === 'read' && v === Verdict.Read) || s.routedSession) && !onPrimary;
  s.attach(conn);
}

/**
 * A connection from the first server in `order` that can give one: a server that cannot be
 * reached or fails its health check is banned (replicas only) and the next is tried, so a read
 * survives a dead replica. Pool exhaustion and errors from PostgreSQL itself are not retried.
 */
async function acquireFrom(
  s: Session,
  order: ServerEntry[],
  target: Target,
  idle: ServerLink | undefined,
): Promise<Acquired> {
  const g = s.ctx.registry.general;
  let lastError: ServerConnError | null = null;
  for (let i = 0; i < order.length; i++) {
    const e = order[i];
    if (i > 0 && roleOf(e) !== 'primary' && s.ctx.shared.banned(e.pool.slot, Date.now())) continue;
    for (let attempt = 0; ; attempt++) {
      let conn: ServerLink;
      try {
        conn = i === 0 && attempt === 0 && idle ? idle : await e.pool.acquire();
      } catch (err) {
        lastError = err as ServerConnError;
        if (isFinal(lastError) || s.phase === Phase.Closed) throw lastError;
        // A connect that timed out (no answer at all) is banned as unresponsive, not lifted early.
        s.ban(e, /timed out/.test(lastError.message) ? BAN.connectTimeout : BAN.connect);
        break;
      }
      if (e.address.role === 'auto' && !e.learned) {
        e.learned = conn.params.get('in_hot_standby') === 'on' ? 'replica' : 'primary';
      }
      if (target === 'primary' && e.address.role === 'auto' && roleOf(e) !== 'primary') {
        e.pool.release(conn);
        break;
      }
      const check = needsCheck(s, conn) ? await healthCheck(conn, checkSettings(g)) : 'ok';
      if (check === 'ok') {
        // Make its settings match this client's; a server going away here is skipped like a failed check.
        const sql = gucSyncStatement(conn.gucs, s.gucs, conn.reported);
        if (!sql) return { conn, entry: e };
        const r = await conn.run(sql, e.pool.settings.connectTimeout + 5000);
        // ok but closed: the server ended the session in the same read as the answer (shutdown).
        if (r.ok && !conn.closed) {
          conn.gucs = new Map(s.gucs);
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
        if (s.ban(e, BAN.closed) || attempt >= 2) break;
        continue;
      }
      lastError = new ServerConnError(
        `health check of ${e.address.host}:${e.address.port} failed`,
        SQLSTATE.CONNECTION_FAILURE,
      );
      // A replica that fails its check is banned; the primary gets up to three fresh tries.
      if (s.ban(e, check === 'timeout' ? BAN.checkTimeout : BAN.healthcheck) || attempt >= 2) break;
    }
  }
  const what = target === 'read' ? 'reads' : 'writes';
  throw (
    lastError ??
    new ServerConnError(
      `no server available for ${what} in pool "${s.userPool!.pool.name}"`,
      SQLSTATE.CONNECTION_FAILURE,
    )
  );
}

/** A connection idle longer than healthcheck_delay is checked before use. */
function needsCheck(s: Session, conn: ServerLink): boolean {
  return checkDue(conn, s.ctx.registry.general.healthcheck_delay);
}

/**
 * Makes the connection's GUCs match this client's (one statement, only differences). On failure
 * the client gets the server's error as FATAL at login, or as an ErrorResponse later, and is
 * disconnected; the connection is reset or closed. Returns false when the client is gone.
 */
export async function matchGucs(s: Session, conn: ServerLink, atLogin: boolean): Promise<boolean> {
  const sql = gucSyncStatement(conn.gucs, s.gucs, conn.reported);
  if (!sql) return true;
  const r = await conn.run(sql, s.userPool!.pool.connect_timeout + 5000);
  if (r.ok) conn.gucs = new Map(s.gucs);
  if (conn.closed && s.phase !== Phase.Closed) {
    // The server ended the session right behind its answer: nothing may be sent on it.
    s.fatal(SQLSTATE.CONNECTION_FAILURE, `server connection closed: ${conn.closeReason}`, 'server connection lost');
    return false;
  }
  if (s.phase === Phase.Closed || !r.ok) {
    if (!r.ok && r.error && s.sock.writable) s.sock.write(withSeverity(r.error, atLogin ? 'FATAL' : 'ERROR'));
    s.releaseServer(conn, s.serverPool!);
    if (s.phase !== Phase.Closed) s.disconnect('session parameters rejected by the server');
    return false;
  }
  return true;
}

/**
 * After a reload, between transactions: take the new settings of this client's pool (routing,
 * lag, sizes, a switch to session mode). A pool or user removed by the reload keeps its old
 * settings until the client leaves; a session-mode client stays in session mode (its state
 * was never tracked, so it cannot safely start moving between connections).
 */
function refreshPool(s: Session): void {
  s.generation = s.ctx.registry.generation;
  const up = s.userPool!;
  const next = s.ctx.registry.find(up.pool.name, up.user.username);
  if (!next || next === up) return;
  s.userPool = next;
  const home = next.shards.flat().find((e) => e.pool === s.home?.pool);
  if (home) s.home = home;
  else {
    // Its server was removed: come home to the new shard's first primary, if any.
    s.home = next.shards[0].find((e) => e.address.role !== 'replica') ?? next.shards[0][0];
  }
  if (s.txMode && next.user.pool_mode === 'session' && s.pins.size === 0) {
    log.info('pool_mode changed to session by a reload: this client keeps its next server connection', {
      client: s.remote,
      user: next.user.username,
    });
    s.txMode = false;
    s.routedSession = true;
  }
}

/** The server refused a client's session settings (SET …): the ErrorResponse body to pass on. */
class GucRejected extends Error {
  constructor(readonly body: Buffer) {
    super('session parameters rejected');
  }
}

/** Whether a write may wait for a primary and try again after this failure. */
function retryable(err: ServerConnError): boolean {
  return err instanceof ServerConnError && !isFinal(err);
}
