// Which server a client logs in on. A plain session goes to the shard's primary (default_role =
// replica: to a replica, falling back to the primary). Servers configured as `auto` are told apart
// by the HA thread's probes, or before the first probe by what they report at login
// (in_hot_standby, PostgreSQL 14+).

import type { ServerConn } from './server-conn';
import { ServerConnError, isFinal } from './server-link';
import { type ServerEntry, type UserPool, roleOf } from './registry';
import type { ServerPool } from './server-pool';
import { type CheckSettings, checkDue, healthCheck } from './check';
import { SQLSTATE } from '../protocol/sqlstate';
import { SERVER_STATE } from '../shared/layout';

function learn(e: ServerEntry, conn: ServerConn): 'primary' | 'replica' {
  const hs = conn.params.get('in_hot_standby');
  e.learned = hs === 'on' ? 'replica' : 'primary';
  return e.learned;
}

async function tryEntry(
  e: ServerEntry,
  want: 'primary' | 'replica' | null,
  check: CheckSettings,
): Promise<{ conn: ServerConn; pool: ServerPool } | null> {
  let conn = await e.pool.acquire();
  // A pooled connection due for a check that fails it is closed; the next is fresh or checked too.
  for (let tries = 0; checkDue(conn, check.delay); tries++) {
    const r = await healthCheck(conn, check);
    if (r === 'ok') break;
    if (tries >= 2)
      throw new ServerConnError(
        `server_check_query failed (${r}) on ${e.pool.settings.label}`,
        SQLSTATE.CONNECTION_FAILURE,
      );
    conn = await e.pool.acquire();
  }
  if (e.address.role === 'auto' && learn(e, conn) !== want && want !== null) {
    e.pool.release(conn);
    return null;
  }
  return { conn, pool: e.pool };
}

/**
 * The server a client logs in on. `anyRole` (routed clients: the login server only supplies
 * parameters and is given back) takes the primary, else a replica, else a server not yet known,
 * so logins go on while no primary is known. Otherwise the session needs the primary (or,
 * default_role = replica, a replica first). A server that cannot be reached, or is starting or
 * shutting down (57P0x, as during a switchover), is skipped.
 */
export async function chooseSessionServer(
  up: UserPool,
  check: CheckSettings,
  anyRole = false,
  waitMs = 0,
): Promise<{ conn: ServerConn; pool: ServerPool }> {
  const deadline = Date.now() + waitMs;
  const shared = up.shards[0][0]?.shared;
  for (;;) {
    const seen = shared?.stateVersion() ?? 0;
    try {
      return await chooseOnce(up, check, anyRole);
    } catch (e) {
      // Every server it may log in on is in MAINT or DRAIN: wait for READY (or a switchover).
      if (!(e instanceof HeldBack) || Date.now() >= deadline) throw e;
    }
    await shared?.waitStateChange(seen, 100);
  }
}

/** Thrown when no server took the login because the only candidates are in MAINT or DRAIN. */
class HeldBack extends ServerConnError {}

async function chooseOnce(
  up: UserPool,
  check: CheckSettings,
  anyRole: boolean,
): Promise<{ conn: ServerConn; pool: ServerPool }> {
  const servers = up.shards[0].filter((e) => e.shared.usable(e.pool.slot));
  const wantReplica = up.pool.default_role === 'replica';
  const order = (want: 'primary' | 'replica') => {
    const known = servers.filter((e) => roleOf(e) === want);
    const unknown = servers.filter((e) => roleOf(e) === 'unknown');
    if (want === 'replica') known.sort(() => Math.random() - 0.5);
    return [...known, ...unknown];
  };
  const wants: readonly ('primary' | 'replica')[] = wantReplica
    ? ['replica', 'primary']
    : anyRole
      ? ['primary', 'replica']
      : ['primary'];
  let lastError: Error | null = null;
  const tried = new Set<ServerEntry>();
  for (const want of wants) {
    for (const e of order(want)) {
      if (tried.has(e)) continue;
      tried.add(e);
      try {
        const got = await tryEntry(e, anyRole ? null : want, check);
        if (got) return got;
      } catch (err) {
        lastError = err as Error;
        if (isFinal(err as ServerConnError)) throw err;
      }
    }
  }
  if (lastError) throw lastError;
  const what = `no ${wantReplica ? 'replica or primary' : 'primary'} server is available in pool "${up.pool.name}"`;
  const held = up.shards[0].some((e) => {
    const st = Atomics.load(e.shared.serverState, e.pool.slot);
    return st === SERVER_STATE.maint || st === SERVER_STATE.drain;
  });
  if (held) throw new HeldBack(`${what}: servers are in MAINT or DRAIN`, SQLSTATE.CONNECTION_FAILURE);
  throw new ServerConnError(what, SQLSTATE.CONNECTION_FAILURE);
}

/**
 * The server a client that takes a connection only per transaction logs in on without one: the
 * first the login would choose (same order as chooseSessionServer) whose pool already knows its
 * login parameters. Null: none, or a role not yet known; the client then logs in through a server.
 */
export function cachedLoginEntry(
  up: UserPool,
  anyRole: boolean,
  banned: (slot: number) => boolean,
): ServerEntry | null {
  const wants: readonly ('primary' | 'replica')[] =
    up.pool.default_role === 'replica' ? ['replica', 'primary'] : anyRole ? ['primary', 'replica'] : ['primary'];
  for (const want of wants) {
    const live = up.shards[0].filter((e) => roleOf(e) === want && !banned(e.pool.slot) && e.shared.usable(e.pool.slot));
    if (live.length === 0) continue;
    // Replicas are taken at random, as the login through a server does.
    const e = want === 'replica' ? live[Math.floor(Math.random() * live.length)] : live[0];
    return e.pool.loginParams ? e : null;
  }
  return null;
}
