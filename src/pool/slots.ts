// Stable slot numbers for shared-state tables, assigned by the main thread and never reused, so
// a reload keeps the counters of servers and pools that stay and workers agree on every index.

import type { Config } from '../config/types';
import { MAX_GROUPS, MAX_POOL_SLOTS, MAX_SERVER_SLOTS } from '../shared/layout';
import { ConfigError } from '../config/error';

export interface Slots {
  servers: Record<string, number>;
  pools: Record<string, number>;
  /** Connection groups: dbGroupKey(pool) and userGroupKey(user). */
  groups: Record<string, number>;
}

export const serverSlotKey = (pool: string, user: string, shard: number, host: string, port: number) =>
  `${pool}\u0000${user}\u0000${shard}\u0000${host}:${port}`;
export const poolSlotKey = (pool: string, user: string) => `${pool}\u0000${user}`;
export const dbGroupKey = (pool: string) => `db\u0000${pool}`;
export const userGroupKey = (user: string) => `user\u0000${user}`;

export class SlotAllocator {
  private readonly servers = new Map<string, number>();
  private readonly pools = new Map<string, number>();
  private readonly groups = new Map<string, number>();

  /** Slots for every (pool, user, shard, server) of cfg; throws if the tables are full. */
  assign(cfg: Config): Slots {
    const out: Slots = { servers: {}, pools: {}, groups: {} };
    const take = (map: Map<string, number>, key: string, max: number, what: string) => {
      let n = map.get(key);
      if (n === undefined) {
        if (map.size >= max)
          throw new ConfigError(`too many ${what} over this process's life (${max}); restart openproxy`);
        map.set(key, (n = map.size));
      }
      return n;
    };
    const group = (key: string) => {
      out.groups[key] = take(this.groups, key, MAX_GROUPS, 'pool and user names');
    };
    for (const pool of cfg.pools) {
      group(dbGroupKey(pool.name));
      for (const user of pool.users) {
        group(userGroupKey(user.username));
        out.pools[poolSlotKey(pool.name, user.username)] = take(
          this.pools,
          poolSlotKey(pool.name, user.username),
          MAX_POOL_SLOTS,
          'pool/user pairs',
        );
        for (const shard of pool.shards) {
          for (const s of shard.servers) {
            const key = serverSlotKey(pool.name, user.username, shard.index, s.host, s.port);
            out.servers[key] = take(this.servers, key, MAX_SERVER_SLOTS, 'pool/user/server combinations');
          }
        }
      }
    }
    return out;
  }
}
