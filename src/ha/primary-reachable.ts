// Whether this node can reach a primary for every pool shard (VRRP gives the VIPs up when not):
// an `auto` server the role probes found primary recently, or a configured primary accepting TCP.

import net from 'node:net';
import type { Config } from '../config/types';
import { type Slots, serverSlotKey } from '../pool/slots';
import type { SharedState } from '../shared/state';
import { ROLE } from '../shared/layout';

export function tcpReachable(host: string, port: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(ms, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

export async function primaryReachable(cfg: Config, slots: Slots, shared: SharedState): Promise<boolean> {
  const fresh = Date.now() - Math.max(3 * cfg.general.renew_interval, 3000);
  const checks: Promise<boolean>[] = [];
  for (const pool of cfg.pools) {
    const user = pool.users[0];
    if (!user) continue;
    for (const shard of pool.shards) {
      checks.push(
        (async () => {
          for (const a of shard.servers) {
            if (a.role === 'auto') {
              const slot = slots.servers[serverSlotKey(pool.name, user.username, shard.index, a.host, a.port)];
              if (slot !== undefined && shared.serverRole[slot] === ROLE.primary && shared.serverRoleAt[slot] >= fresh)
                return true;
            } else if (
              a.role === 'primary' &&
              (await tcpReachable(a.host, a.port, Math.min(1000, pool.connect_timeout)))
            )
              return true;
          }
          return false;
        })(),
      );
    }
  }
  return (await Promise.all(checks)).every(Boolean);
}
