// Which server a session-mode client gets. Until query routing exists, a session goes to the
// shard's primary (default_role = replica: to a replica, falling back to the primary). Servers
// configured as `auto` are told apart by what they report at login: in_hot_standby (PostgreSQL 14+).

import type { ServerConn } from './server-conn';
import { ServerConnError } from './server-conn';
import type { ServerEntry, UserPool } from './registry';
import type { ServerPool } from './server-pool';
import { SQLSTATE } from '../protocol/sqlstate';
import { ROLE } from '../shared/layout';

/**
 * A server's role now: as configured, or for `auto` servers what the HA thread's last probe found
 * (an unreachable server is 'unknown', never its old role), or before any probe what the server
 * said at login (in_hot_standby).
 */
export function roleOf(e: ServerEntry): 'primary' | 'replica' | 'unknown' {
  if (e.address.role !== 'auto') return e.address.role;
  const slot = e.pool.slot;
  if (e.shared.serverRoleAt[slot] > 0) {
    const r = e.shared.serverRole[slot];
    return r === ROLE.primary ? 'primary' : r === ROLE.replica ? 'replica' : 'unknown';
  }
  return e.learned ?? 'unknown';
}

function learn(e: ServerEntry, conn: ServerConn): 'primary' | 'replica' {
  const hs = conn.params.get('in_hot_standby');
  e.learned = hs === 'on' ? 'replica' : 'primary';
  return e.learned;
}

async function tryEntry(e: ServerEntry, want: 'primary' | 'replica'): Promise<{ conn: ServerConn; pool: ServerPool } | null> {
  const conn = await e.pool.acquire();
  if (e.address.role === 'auto' && learn(e, conn) !== want) {
    e.pool.release(conn);
    return null;
  }
  return { conn, pool: e.pool };
}

export async function chooseSessionServer(up: UserPool): Promise<{ conn: ServerConn; pool: ServerPool }> {
  const servers = up.shards[0];
  const wantReplica = up.pool.default_role === 'replica';
  const order = (want: 'primary' | 'replica') => {
    const known = servers.filter((e) => roleOf(e) === want);
    const unknown = servers.filter((e) => roleOf(e) === 'unknown');
    if (want === 'replica') known.sort(() => Math.random() - 0.5);
    return [...known, ...unknown];
  };
  let lastError: Error | null = null;
  for (const want of wantReplica ? (['replica', 'primary'] as const) : (['primary'] as const)) {
    for (const e of order(want)) {
      try {
        const got = await tryEntry(e, want);
        if (got) return got;
      } catch (err) {
        lastError = err as Error;
        if ((err as ServerConnError).sqlstate === SQLSTATE.TOO_MANY_CONNECTIONS || (err as ServerConnError).fromServer) throw err;
      }
    }
  }
  if (lastError) throw lastError;
  throw new ServerConnError(`no ${wantReplica ? 'replica or primary' : 'primary'} server is available in pool "${up.pool.name}"`, SQLSTATE.CONNECTION_FAILURE);
}
