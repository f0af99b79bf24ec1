// One row per configured (pool, user, shard, server) with what the shared tables say about it
// now (role, ban, state, lag): the metrics and the status page read the same rows.

import type { Config } from '../config/types';
import type { Slots } from '../pool/slots';
import { serverSlotKey } from '../pool/slots';
import type { SharedState } from '../shared/state';
import { BAN_REASON, ROLE, SERVER_STATE_NAMES, STATE_REASON } from '../shared/layout';

export interface ServerRow {
  db: string;
  user: string;
  label: string;
  host: string;
  port: number;
  dbname: string;
  server: string;
  role: string;
  currentRole: string;
  roleSource: string;
  banned: boolean;
  reason: string;
  conns: number;
  poolSize: number;
  lagBytes: number;
  lagAt: number;
  shard: number;
  /** UP, DOWN, MAINT, DRAIN; since (ms epoch, 0 = from the start) and why. */
  state: string;
  stateSince: number;
  stateReason: string;
}

export function serverRows(cfg: Config, slots: Slots, sh: SharedState): ServerRow[] {
  const now = Date.now();
  const rows: ServerRow[] = [];
  for (const p of cfg.pools) {
    for (const u of p.users) {
      for (const shard of p.shards) {
        let replica = 0;
        shard.servers.forEach((a, i) => {
          const slot = slots.servers[serverSlotKey(p.name, u.username, shard.index, a.host, a.port)];
          const roleName =
            a.role === 'replica' ? `replica_${replica++}` : a.role === 'primary' ? 'primary' : `auto_${i}`;
          const banned = sh.banned(slot, now);
          const probed = a.role === 'auto' && sh.serverRoleAt[slot] > 0;
          const code = sh.serverRole[slot];
          const currentRole =
            a.role !== 'auto'
              ? a.role
              : probed
                ? code === ROLE.primary
                  ? 'primary'
                  : code === ROLE.replica
                    ? 'replica'
                    : 'unknown'
                : 'unknown';
          const roleSource =
            a.role !== 'auto'
              ? 'config'
              : !probed
                ? 'not probed yet'
                : shard.use_patroni
                  ? 'patroni + sql probe'
                  : 'sql probe';
          rows.push({
            db: p.name,
            user: u.username,
            label: `${p.name}_shard_${shard.index}_${roleName}`,
            host: a.host,
            port: a.port,
            dbname: shard.database,
            server: `${a.host}:${a.port}`,
            role: a.role,
            currentRole,
            roleSource,
            banned,
            reason: banned ? (BAN_REASON[sh.serverBanReason[slot]] ?? '') : '',
            conns: Atomics.load(sh.serverConns, slot),
            poolSize: u.pool_size,
            lagBytes: sh.serverLagBytes[slot],
            lagAt: sh.serverLagAt[slot],
            shard: shard.index,
            state: SERVER_STATE_NAMES[Atomics.load(sh.serverState, slot)] ?? '?',
            stateSince: sh.serverStateAt[slot],
            stateReason: STATE_REASON[Atomics.load(sh.serverStateReason, slot)] ?? '',
          });
        });
      }
    }
  }
  return rows;
}
