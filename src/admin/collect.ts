// A proxy worker's part of the admin console's view: its clients, server connections and per-pool
// counts at this moment (see snapshot.ts).

import { getHeapStatistics } from 'node:v8';
import type { WorkerContext } from '../session/context';
import type { WorkerSnapshot, PoolRow } from '../shared/snapshot';
import { checkDue } from '../pool/check';
import { SERVER_STAT } from '../pool/server-pool';

export function collect(ctx: WorkerContext): WorkerSnapshot {
  const h = getHeapStatistics();
  const heap = { used: h.used_heap_size, total: h.total_heap_size, external: h.external_memory };
  const dns = ctx.registry.dns?.counts() ?? null;
  const snap: WorkerSnapshot = { worker: ctx.index, heap, clients: [], servers: [], pools: [], serverStats: [], dns };
  const pools = new Map<string, PoolRow>();
  for (const up of ctx.registry.userPools()) {
    const lat = ctx.latency.get(up.statSlot);
    const row: PoolRow = {
      database: up.pool.name,
      user: up.user.username,
      pool_mode: up.user.pool_mode,
      cl_idle: 0,
      cl_active: 0,
      cl_waiting: 0,
      sv_active: 0,
      sv_idle: 0,
      sv_used: 0,
      sv_tested: 0,
      sv_login: 0,
      oldest_wait: 0,
      prepare_hits: 0,
      prepare_misses: 0,
      prepare_evictions: 0,
      query_latency: lat ? lat.query.data() : null,
      xact_latency: lat ? lat.xact.data() : null,
    };
    pools.set(`${up.pool.name}\0${up.user.username}`, row);
    const checkDelay = ctx.registry.general.healthcheck_delay;
    for (const shard of up.shards) {
      for (const e of shard) {
        const sp = e.pool;
        row.sv_login += sp.opening;
        row.prepare_hits += sp.closedPrepare.hits;
        row.prepare_misses += sp.closedPrepare.misses;
        row.prepare_evictions += sp.closedPrepare.evictions;
        const v = Array.from(sp.stats);
        for (const conn of sp.all) {
          v[SERVER_STAT.received] += conn.bytesSent;
          v[SERVER_STAT.sent] += conn.bytesReceived;
        }
        snap.serverStats.push({ instance: sp.settings.label, database: up.pool.name, user: up.user.username, v });
        for (const conn of sp.all) {
          const idle = sp.idle.includes(conn);
          const used = idle && checkDue(conn, checkDelay);
          row.prepare_hits += conn.prepareHits;
          row.prepare_misses += conn.prepareMisses;
          row.prepare_evictions += conn.prepareEvictions;
          if (conn.testing) row.sv_tested++;
          else if (!idle) row.sv_active++;
          else if (used) row.sv_used++;
          else row.sv_idle++;
          snap.servers.push({
            id: conn.id,
            database_name: up.pool.name,
            user: up.user.username,
            address:
              conn.address && conn.address !== conn.login.host
                ? `${conn.login.host} (${conn.address}):${conn.login.port}`
                : `${conn.login.host}:${conn.login.port}`,
            application_name: conn.params.get('application_name') ?? '',
            state: conn.testing ? 'tested' : idle ? (used ? 'used' : 'idle') : 'active',
            transaction_count: conn.transactions,
            query_count: conn.queries,
            bytes_sent: conn.bytesSent,
            bytes_received: conn.bytesReceived,
            created_at: conn.createdAt,
            prepare_cache_hit: conn.prepareHits,
            prepare_cache_miss: conn.prepareMisses,
            prepare_cache_eviction: conn.prepareEvictions,
            prepare_cache_size: conn.prepared.size,
            close_needed: conn.closeNeeded,
            worker: ctx.index,
          });
        }
      }
    }
  }
  for (const c of ctx.clients.values()) {
    const up = c.userPool;
    if (!up) continue;
    const state = c.state;
    snap.clients.push({
      id: c.pid,
      database: up.pool.name,
      user: up.user.username,
      application_name: c.gucs.get('application_name') ?? c.params.get('application_name') ?? '',
      state,
      transaction_count: c.transactions,
      query_count: c.queries,
      error_count: c.errors,
      connected_at: c.connectedAt,
      wait_since: c.waitSince,
      worker: ctx.index,
      local_port: c.localPort,
      listener_role: c.listenerRole,
    });
    const row = pools.get(`${up.pool.name}\0${up.user.username}`);
    if (!row) continue;
    if (state === 'waiting') {
      row.cl_waiting++;
      if (c.waitSince && (row.oldest_wait === 0 || c.waitSince < row.oldest_wait)) row.oldest_wait = c.waitSince;
    } else if (state === 'active') row.cl_active++;
    else if (state === 'idle') row.cl_idle++;
  }
  snap.pools = [...pools.values()];
  return snap;
}
