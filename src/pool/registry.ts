// A worker's view of the configured pools: (database, user) → user pool → per-server ServerPools,
// rebuilt on every config snapshot while keeping the ServerPools (and their connections) whose
// slot survives. Slots are stable numbers assigned by the main thread (see slots.ts).

import { DnsCache } from '../net/dns-cache';
import type { Config, GeneralConfig, PoolConfig, ServerAddress, UserConfig } from '../config/types';
import type { SharedState } from '../shared/state';
import { ROLE, SERVER_STATE } from '../shared/layout';
import { ServerPool, type ServerPoolSettings } from './server-pool';
import { passThroughKeys } from './pass-through';
import { type Slots, dbGroupKey, poolSlotKey, serverSlotKey, userGroupKey } from './slots';

export interface ServerEntry {
  address: ServerAddress;
  pool: ServerPool;
  /** Role learned from the server itself (in_hot_standby at login) for `auto` servers. */
  learned?: 'primary' | 'replica';
  /** Shared tables (the HA thread's role probes for `auto` servers). */
  shared: SharedState;
  /** The role this worker last acted on (a primary that stops being one has its connections closed). */
  lastRole?: 'primary' | 'replica' | 'unknown';
}

export interface UserPool {
  pool: PoolConfig;
  user: UserConfig;
  /** Index into the shared stats table. */
  statSlot: number;
  shards: ServerEntry[][];
  /** Some server's role is `auto` (it can change): transactions are routed to whoever is primary now. */
  hasAuto: boolean;
}

export class Registry {
  private users = new Map<string, Map<string, UserPool>>();
  readonly servers = new Map<number, ServerPool>();
  general!: GeneralConfig;
  /** Bumped by every update: sessions refresh their UserPool when it changed. */
  generation = 0;
  /** The whole snapshot (SHOW CONFIG, SHOW DATABASES). */
  config!: Config;
  /** dns_cache_enabled: this thread's cache of server addresses (null: the system resolves at every connect). */
  dns: DnsCache | null = null;

  constructor(
    private readonly shared: SharedState,
    readonly workerIndex: number,
    private readonly workerCount: number,
  ) {}

  update(cfg: Config, slots: Slots): void {
    this.general = cfg.general;
    this.config = cfg;
    if (cfg.general.dns_cache_enabled) {
      this.dns ??= new DnsCache(cfg.general.dns_max_ttl * 1000);
      this.dns.maxTtlMs = cfg.general.dns_max_ttl * 1000;
    } else this.dns = null;
    this.generation++;
    const users = new Map<string, Map<string, UserPool>>();
    const live = new Set<number>();
    for (const pool of cfg.pools) {
      const byUser = new Map<string, UserPool>();
      for (const user of pool.users) {
        const shards = pool.shards.map((shard) =>
          shard.servers.map((address, i) => {
            const slot =
              slots.servers[serverSlotKey(pool.name, user.username, shard.index, address.host, address.port)];
            live.add(slot);
            const role =
              address.role === 'auto'
                ? 'auto'
                : address.role === 'primary'
                  ? 'primary'
                  : `replica_${shard.servers.slice(0, i).filter((s) => s.role === 'replica').length}`;
            const settings: ServerPoolSettings = {
              poolSize: user.pool_size,
              minPoolSize: user.min_pool_size,
              idleTimeout: pool.idle_timeout,
              lifetime: user.server_lifetime,
              connectTimeout: pool.connect_timeout,
              waitTimeout: cfg.general.query_wait_timeout,
              poolName: pool.name,
              label: `${pool.name}_shard_${shard.index}_${role === 'auto' ? `auto_${i}` : role}`,
              workers: this.workerCount,
              groups: {
                db: slots.groups[dbGroupKey(pool.name)],
                dbMax: pool.max_db_connections,
                user: slots.groups[userGroupKey(user.username)],
                userMax: user.max_user_connections,
              },
              reserveSize: pool.reserve_pool_size,
              reserveTimeout: cfg.general.reserve_pool_timeout,
              login: {
                host: address.host,
                port: address.port,
                user: user.server_username,
                password: user.server_password,
                database: shard.database,
                applicationName: 'openproxy',
                connectTimeout: pool.connect_timeout,
                tls: cfg.general.server_tls,
                verifyCertificate: cfg.general.verify_server_certificate,
                keepalive: {
                  idle: cfg.general.tcp_keepalives_idle,
                  interval: cfg.general.tcp_keepalives_interval,
                  count: cfg.general.tcp_keepalives_count,
                },
                dns: this.dns,
                passThrough: passThroughKeys,
              },
            };
            let sp = this.servers.get(slot);
            if (sp) sp.settings = settings;
            else this.servers.set(slot, (sp = new ServerPool(slot, settings, this.shared)));
            const old = this.users
              .get(pool.name)
              ?.get(user.username)
              ?.shards[shard.index]?.find((e) => e.pool === sp);
            return {
              address,
              pool: sp,
              learned: old?.learned,
              shared: this.shared,
              lastRole: old?.lastRole,
            } as ServerEntry;
          }),
        );
        byUser.set(user.username, {
          pool,
          user,
          statSlot: slots.pools[poolSlotKey(pool.name, user.username)],
          shards,
          hasAuto: pool.shards.some((sh) => sh.servers.some((a) => a.role === 'auto')),
        });
      }
      users.set(pool.name, byUser);
    }
    for (const [slot, sp] of this.servers) {
      if (live.has(slot)) continue;
      sp.retired = true;
      sp.closeIdle('pool removed by reload');
      if (sp.all.size === 0) this.servers.delete(slot);
    }
    this.users = users;
  }

  /** The pool for a database name, if any (any user). */
  /** The password of a pool user of this name (the first pool that has one), for stats_users logins. */
  passwordOf(user: string): string | undefined {
    for (const users of this.users.values()) {
      const up = users.get(user);
      if (up?.user.password) return up.user.password;
    }
    return undefined;
  }

  hasDatabase(db: string): boolean {
    return this.users.has(db);
  }

  find(db: string, user: string): UserPool | undefined {
    return this.users.get(db)?.get(user);
  }

  userPools(): UserPool[] {
    return [...this.users.values()].flatMap((m) => [...m.values()]);
  }

  /** This worker's share of a global min_pool_size. */
  minShare(min: number): number {
    return Math.floor(min / this.workerCount) + (this.workerIndex < min % this.workerCount ? 1 : 0);
  }

  /**
   * `auto` servers the HA thread no longer finds primary: every connection this worker has to them
   * is closed at once (a client mid-transaction gets 08006), so nothing opened to a primary can
   * carry a write after it was demoted. Returns how many were closed.
   */
  closeDemoted(): number {
    let closed = 0;
    for (const up of this.userPools()) {
      if (!up.hasAuto) continue;
      for (const shard of up.shards) {
        for (const e of shard) {
          if (e.address.role !== 'auto') continue;
          const r = roleOf(e);
          if (e.lastRole === 'primary' && r !== 'primary') {
            for (const c of [...e.pool.all]) {
              c.close(`${e.address.host}:${e.address.port} is no longer primary`, true);
              closed++;
            }
          }
          e.lastRole = r;
        }
      }
    }
    return closed;
  }

  /**
   * After a server state change: idle connections of servers that take no new work (DOWN, MAINT)
   * close; with on_marked_down = "shutdown-sessions" every connection to a DOWN server closes
   * (a client in a transaction there gets 08006). Returns how many were closed.
   */
  closeUnusable(): number {
    let closed = 0;
    const shutdown = this.general.on_marked_down === 'shutdown-sessions';
    for (const sp of this.servers.values()) {
      const state = Atomics.load(this.shared.serverState, sp.slot);
      if (state === SERVER_STATE.up || state === SERVER_STATE.drain) continue;
      const all = shutdown && state === SERVER_STATE.down;
      const conns = all ? [...sp.all] : sp.idle.slice();
      const why = `${sp.settings.label} is ${state === SERVER_STATE.down ? 'DOWN' : 'in MAINT'}`;
      for (const c of conns) c.close(why, all);
      closed += conns.length;
    }
    return closed;
  }

  /** Opens a connection to servers etcd just named the new leader (in the last 5 s) where none is idle. */
  warmNamed(now: number): void {
    for (const sp of this.servers.values()) if (now - this.shared.serverWarmAt[sp.slot] < 5000) sp.warm();
  }

  sweep(now: number): void {
    this.dns?.refreshDue();
    for (const up of this.userPools()) {
      for (const shard of up.shards) for (const e of shard) e.pool.sweep(now, this.minShare(up.user.min_pool_size));
    }
    for (const [slot, sp] of this.servers) {
      if (sp.retired) {
        sp.sweep(now, 0);
        if (sp.all.size === 0 && sp.waiting === 0) this.servers.delete(slot);
      }
    }
  }
}

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
