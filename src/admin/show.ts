// SHOW rows of the admin console, with PgBouncer's column names and order (SPEC.md), built from the
// merged worker snapshots, the config snapshot and the shared tables.

import type { Config } from '../config/types';
import type { Registry } from '../pool/registry';
import { configRows } from '../config/load';
import { BAN_REASON, STAT } from '../shared/layout';
import type { SharedState } from '../shared/state';
import { POOL_COUNTS, type ServerStatRow, type WorkerSnapshot } from '../shared/snapshot';
import { SERVER_STAT } from '../pool/server-pool';
import { VERSION } from '../version';

export interface Table {
  columns: string[];
  rows: (string | number | null)[][];
}

const secs = (ms: number) => Math.max(0, Math.floor(ms / 1000));

export function showConfig(cfg: Config): Table {
  return {
    columns: ['key', 'value', 'default', 'changeable'],
    rows: configRows(cfg).map((r) => [r.key, r.value, r.default, r.changeable]),
  };
}

export function showDatabases(reg: Registry, shared: SharedState, paused: Set<string>, disabled: Set<string>): Table {
  const rows: Table['rows'] = [];
  for (const up of reg.userPools()) {
    for (const shard of up.shards) {
      for (const e of shard) {
        const s = e.pool.settings;
        rows.push([
          s.label,
          e.address.host,
          e.address.port,
          s.login.database,
          s.login.user,
          up.user.pool_size,
          up.user.min_pool_size,
          up.pool.reserve_pool_size,
          up.user.pool_mode,
          up.pool.max_db_connections,
          Atomics.load(shared.serverConns, e.pool.slot),
          paused.has(up.pool.name) || paused.has('') ? 1 : 0,
          disabled.has(up.pool.name) || disabled.has('') ? 1 : 0,
        ]);
      }
    }
  }
  return {
    columns: [
      'name',
      'host',
      'port',
      'database',
      'force_user',
      'pool_size',
      'min_pool_size',
      'reserve_pool',
      'pool_mode',
      'max_connections',
      'current_connections',
      'paused',
      'disabled',
    ],
    rows,
  };
}

export function showPools(snaps: WorkerSnapshot[]): Table {
  const now = Date.now();
  const merged = new Map<string, WorkerSnapshot['pools'][number]>();
  for (const s of snaps) {
    for (const p of s.pools) {
      const k = `${p.database}\0${p.user}`;
      const m = merged.get(k);
      if (!m) merged.set(k, { ...p });
      else {
        for (const f of POOL_COUNTS) m[f] += p[f];
        if (p.oldest_wait && (!m.oldest_wait || p.oldest_wait < m.oldest_wait)) m.oldest_wait = p.oldest_wait;
      }
    }
  }
  const rows = [...merged.values()].map((p) => {
    const waitMs = p.oldest_wait ? now - p.oldest_wait : 0;
    return [
      p.database,
      p.user,
      p.pool_mode,
      p.cl_idle,
      p.cl_active,
      p.cl_waiting,
      0,
      p.sv_active,
      p.sv_idle,
      p.sv_used,
      p.sv_tested,
      p.sv_login,
      secs(waitMs),
      (waitMs % 1000) * 1000,
    ];
  });
  return {
    columns: [
      'database',
      'user',
      'pool_mode',
      'cl_idle',
      'cl_active',
      'cl_waiting',
      'cl_cancel_req',
      'sv_active',
      'sv_idle',
      'sv_used',
      'sv_tested',
      'sv_login',
      'maxwait',
      'maxwait_us',
    ],
    rows,
  };
}

export function showClients(snaps: WorkerSnapshot[]): Table {
  const now = Date.now();
  const rows = snaps.flatMap((s) =>
    s.clients.map((c) => {
      const waitMs = c.wait_since ? now - c.wait_since : 0;
      return [
        `0x${c.id.toString(16)}`,
        c.database,
        c.user,
        c.application_name,
        c.state,
        c.transaction_count,
        c.query_count,
        c.error_count,
        secs(now - c.connected_at),
        secs(waitMs),
        (waitMs % 1000) * 1000,
        c.local_port,
        c.listener_role,
      ];
    }),
  );
  return {
    columns: [
      'client_id',
      'database',
      'user',
      'application_name',
      'state',
      'transaction_count',
      'query_count',
      'error_count',
      'age_seconds',
      'maxwait',
      'maxwait_us',
      'local_port',
      'listener_role',
    ],
    rows,
  };
}

export function showServers(snaps: WorkerSnapshot[]): Table {
  const now = Date.now();
  const rows = snaps.flatMap((s) =>
    s.servers.map((v) => [
      v.id,
      v.database_name,
      v.user,
      v.address,
      v.application_name,
      v.state,
      v.transaction_count,
      v.query_count,
      v.bytes_sent,
      v.bytes_received,
      secs(now - v.created_at),
      v.prepare_cache_hit,
      v.prepare_cache_miss,
      v.prepare_cache_eviction,
      v.prepare_cache_size,
    ]),
  );
  return {
    columns: [
      'server_id',
      'database_name',
      'user',
      'address_id',
      'application_name',
      'state',
      'transaction_count',
      'query_count',
      'bytes_sent',
      'bytes_received',
      'age_seconds',
      'prepare_cache_hit',
      'prepare_cache_miss',
      'prepare_cache_eviction',
      'prepare_cache_size',
    ],
    rows,
  };
}

/** One row per user name (PgBouncer's): its limit and server connections across every pool. */
export function showUsers(reg: Registry, shared: SharedState): Table {
  const rows = new Map<string, Table['rows'][number]>();
  for (const up of reg.userPools()) {
    const group = up.shards[0]?.[0]?.pool.settings.groups.user;
    if (rows.has(up.user.username) || group === undefined) continue;
    const u = up.user;
    rows.set(u.username, [u.username, u.pool_mode, u.max_user_connections, Atomics.load(shared.groupConns, group)]);
  }
  return { columns: ['name', 'pool_mode', 'max_user_connections', 'current_connections'], rows: [...rows.values()] };
}

/** SHOW MEM: each worker thread's V8 heap, in kB (PgBouncer lists its slab caches here instead). */
export function showMem(snaps: WorkerSnapshot[]): Table {
  const kb = (n: number) => Math.round(n / 1024);
  return {
    columns: ['thread', 'heap_used_kb', 'heap_total_kb', 'external_kb'],
    rows: snaps.map((s) => [`worker ${s.worker}`, kb(s.heap.used), kb(s.heap.total), kb(s.heap.external)]),
  };
}

export function showVersion(): Table {
  return { columns: ['version'], rows: [[`openproxy ${VERSION}`]] };
}

export function showLists(cfg: Config, snaps: WorkerSnapshot[], refused: number): Table {
  const clients = snaps.flatMap((s) => s.clients);
  const servers = snaps.flatMap((s) => s.servers);
  const users = new Set(cfg.pools.flatMap((p) => p.users.map((u) => u.username)));
  const items: [string, number][] = [
    ['databases', cfg.pools.length],
    ['users', users.size],
    ['pools', cfg.pools.reduce((n, p) => n + p.users.length, 0)],
    ['free_clients', 0],
    ['used_clients', clients.filter((c) => c.state !== 'login').length],
    ['login_clients', clients.filter((c) => c.state === 'login').length],
    ['free_servers', servers.filter((s) => s.state !== 'active').length],
    ['used_servers', servers.filter((s) => s.state === 'active').length],
    // dns_cache_enabled: summed over the workers' caches; zones are a c-ares notion PgBouncer has.
    ['dns_names', sumDns(snaps, 'names')],
    ['dns_zones', 0],
    ['dns_queries', sumDns(snaps, 'queries')],
    ['dns_pending', sumDns(snaps, 'pending')],
    ['refused_clients', refused],
  ];
  return { columns: ['list', 'items'], rows: items };
}

const sumDns = (snaps: WorkerSnapshot[], k: 'names' | 'pending' | 'queries') =>
  snaps.reduce((n, s) => n + (s.dns?.[k] ?? 0), 0);

interface Totals {
  database: string;
  user: string;
  v: number[];
}

/** Stats per (pool, user), summed over every worker's row in shared memory. */
export function totals(reg: Registry, shared: SharedState): Totals[] {
  const out: Totals[] = [];
  const workers = shared.header[1];
  for (const up of reg.userPools()) {
    const v = new Array<number>(11).fill(0);
    for (let w = 0; w < workers; w++) {
      const base = shared.statBase(w, up.statSlot);
      for (let i = 0; i < v.length; i++) v[i] += shared.stats[base + i];
    }
    out.push({ database: up.pool.name, user: up.user.username, v });
  }
  return out;
}

/**
 * SHOW STATS as seed 000 has it: one row per server (instance = postgres_shard_0_primary …) and
 * pool user, summed over every worker; averages are per second since start (PgBouncer's are per
 * stats period). SHOW STATS_TOTALS / STATS_AVERAGES keep PgBouncer's rows per database.
 */
export function showStats(snaps: WorkerSnapshot[], uptimeS: number): Table {
  const t = Math.max(1, uptimeS);
  const merged = new Map<string, ServerStatRow>();
  for (const snap of snaps) {
    for (const r of snap.serverStats) {
      const k = `${r.instance}\0${r.user}`;
      const m = merged.get(k);
      if (!m) merged.set(k, { ...r, v: r.v.slice() });
      else r.v.forEach((x, i) => (m.v[i] += x));
    }
  }
  const S = SERVER_STAT;
  const rows = [...merged.values()].map(({ instance, database, user, v }) => {
    const xacts = v[S.xacts];
    const queries = v[S.queries];
    return [
      instance,
      database,
      user,
      xacts,
      queries,
      v[S.received],
      v[S.sent],
      v[S.xact_us],
      v[S.query_us],
      v[S.wait_us],
      v[S.errors],
      Math.round(xacts / t),
      Math.round(queries / t),
      Math.round(v[S.received] / t),
      Math.round(v[S.sent] / t),
      Math.round(v[S.errors] / t),
      xacts ? Math.round(v[S.xact_us] / xacts) : 0,
      queries ? Math.round(v[S.query_us] / queries) : 0,
      xacts ? Math.round(v[S.wait_us] / xacts) : 0,
    ];
  });
  return {
    columns: [
      'instance',
      'database',
      'user',
      'total_xact_count',
      'total_query_count',
      'total_received',
      'total_sent',
      'total_xact_time',
      'total_query_time',
      'total_wait_time',
      'total_errors',
      'avg_xact_count',
      'avg_query_count',
      'avg_recv',
      'avg_sent',
      'avg_errors',
      'avg_xact_time',
      'avg_query_time',
      'avg_wait_time',
    ],
    rows,
  };
}

/** PgBouncer's SHOW STATS_TOTALS / STATS_AVERAGES: per database (users summed). */
export function showStatsBy(reg: Registry, shared: SharedState, uptimeS: number, averages: boolean): Table {
  const byDb = new Map<string, number[]>();
  for (const { database, v } of totals(reg, shared)) {
    const acc = byDb.get(database) ?? new Array<number>(11).fill(0);
    v.forEach((x, i) => (acc[i] += x));
    byDb.set(database, acc);
  }
  const t = Math.max(1, uptimeS);
  const rows = [...byDb].map(([db, v]) => {
    const xacts = v[STAT.xact_count];
    const queries = v[STAT.query_count];
    return averages
      ? [
          db,
          Math.round(xacts / t),
          Math.round(queries / t),
          Math.round(v[STAT.received] / t),
          Math.round(v[STAT.sent] / t),
          xacts ? Math.round(v[STAT.xact_time_us] / xacts) : 0,
          queries ? Math.round(v[STAT.query_time_us] / queries) : 0,
          xacts ? Math.round(v[STAT.wait_time_us] / xacts) : 0,
        ]
      : [
          db,
          xacts,
          queries,
          v[STAT.received],
          v[STAT.sent],
          v[STAT.xact_time_us],
          v[STAT.query_time_us],
          v[STAT.wait_time_us],
        ];
  });
  return {
    columns: [
      'database',
      'xact_count',
      'query_count',
      'bytes_received',
      'bytes_sent',
      'xact_time',
      'query_time',
      'wait_time',
    ],
    rows,
  };
}

/** PgBouncer's SHOW TOTALS: name, value over every pool. */
export function showTotals(reg: Registry, shared: SharedState, uptimeS: number): Table {
  const v = new Array<number>(11).fill(0);
  for (const r of totals(reg, shared)) r.v.forEach((x, i) => (v[i] += x));
  const t = Math.max(1, uptimeS);
  const xacts = v[STAT.xact_count];
  const queries = v[STAT.query_count];
  const rows: [string, number][] = [
    ['total_xact_count', xacts],
    ['total_query_count', queries],
    ['total_received', v[STAT.received]],
    ['total_sent', v[STAT.sent]],
    ['total_xact_time', v[STAT.xact_time_us]],
    ['total_query_time', v[STAT.query_time_us]],
    ['total_wait_time', v[STAT.wait_time_us]],
    ['total_errors', v[STAT.errors]],
    ['avg_xact_count', Math.round(xacts / t)],
    ['avg_query_count', Math.round(queries / t)],
    ['avg_recv', Math.round(v[STAT.received] / t)],
    ['avg_sent', Math.round(v[STAT.sent] / t)],
    ['avg_xact_time', xacts ? Math.round(v[STAT.xact_time_us] / xacts) : 0],
    ['avg_query_time', queries ? Math.round(v[STAT.query_time_us] / queries) : 0],
    ['avg_wait_time', xacts ? Math.round(v[STAT.wait_time_us] / xacts) : 0],
  ];
  return { columns: ['name', 'value'], rows };
}

/** Servers banned now (one row per host:port), with why and for how much longer. */
export function showBans(reg: Registry, shared: SharedState): Table {
  const now = Date.now();
  const seen = new Map<string, Table['rows'][number]>();
  for (const up of reg.userPools()) {
    for (const shard of up.shards) {
      for (const e of shard) {
        const k = `${e.address.host}:${e.address.port}`;
        if (seen.has(k) || !shared.banned(e.pool.slot, now)) continue;
        seen.set(k, [
          e.address.host,
          e.address.port,
          e.address.role,
          BAN_REASON[shared.serverBanReason[e.pool.slot]] ?? '',
          Math.ceil((shared.serverBanUntil[e.pool.slot] - now) / 1000),
        ]);
      }
    }
  }
  return { columns: ['host', 'port', 'role', 'reason', 'seconds_left'], rows: [...seen.values()] };
}
