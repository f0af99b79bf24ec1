// Prometheus metrics (prom-client), computed at scrape time from the shared tables and one
// snapshot of every worker: openproxy's own names plus the names pgbouncer_exporter produces, so
// existing PgBouncer dashboards keep working.

import { Registry, type Gauge } from 'prom-client';
import type { Config } from '../config/types';
import type { Slots } from '../pool/slots';
import { poolSlotKey } from '../pool/slots';
import type { SharedState } from '../shared/state';
import { REFUSED_CLIENTS, SERVER_STATE_NAMES, STAT } from '../shared/layout';
import { POOL_COUNTS, type WorkerSnapshot } from '../shared/snapshot';
import { type ServerRow, serverRows } from './server-rows';
import { BUCKETS, type HistogramData } from '../shared/histogram';

export interface ScrapeSource {
  cfg(): Config;
  slots(): Slots;
  shared: SharedState;
  snapshots(): Promise<WorkerSnapshot[]>;
  /** The virtual router's state, when one is configured and started. */
  vrrp?: () => { state: string; priority: number } | null;
}

interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/** A metric whose samples are computed by `fill` at scrape time (histograms from summed buckets, too). */
function custom(
  reg: Registry,
  name: string,
  help: string,
  type: 'gauge' | 'counter' | 'histogram',
  fill: () => Sample[],
): void {
  const metric = {
    name,
    help,
    type,
    aggregator: 'sum',
    get: async () => ({ name, help, type, aggregator: 'sum', values: fill() }),
    reset: () => undefined,
  };
  reg.registerMetric(metric as unknown as Gauge);
}

function histogramSamples(name: string, labels: Record<string, string>, h: HistogramData): Sample[] {
  const out: Sample[] = [];
  let cum = 0;
  BUCKETS.forEach((le, i) => {
    cum += h.counts[i];
    out.push({ labels: { ...labels, le }, value: cum, metricName: `${name}_bucket` });
  });
  cum += h.counts[BUCKETS.length];
  out.push({ labels: { ...labels, le: '+Inf' }, value: cum, metricName: `${name}_bucket` });
  out.push({ labels, value: h.sum, metricName: `${name}_sum` });
  out.push({ labels, value: cum, metricName: `${name}_count` });
  return out;
}

function addHist(a: HistogramData | null, b: HistogramData | null): HistogramData | null {
  if (!a) return b ? { counts: [...b.counts], sum: b.sum } : null;
  if (!b) return a;
  return { counts: a.counts.map((x, i) => x + b.counts[i]), sum: a.sum + b.sum };
}

export class Exporter {
  readonly registry = new Registry();
  private snaps: WorkerSnapshot[] = [];

  constructor(private readonly src: ScrapeSource) {
    const r = this.registry;
    const stat =
      (field: number, scale = 1) =>
      () =>
        this.statRows().map(({ db, user, v }) => ({ labels: { database: db, user }, value: v[field] * scale }));
    const statByDb =
      (field: number, scale = 1) =>
      () => {
        const m = new Map<string, number>();
        for (const { db, v } of this.statRows()) m.set(db, (m.get(db) ?? 0) + v[field] * scale);
        return [...m].map(([database, value]) => ({ labels: { database }, value }));
      };
    const pools = () => this.mergedPools();
    const poolGauge = (f: (p: WorkerSnapshot['pools'][number]) => number) => () =>
      pools().map((p) => ({ labels: { database: p.database, user: p.user }, value: f(p) }));

    custom(r, 'openproxy_up', 'openproxy is running (1).', 'gauge', () => [{ labels: {}, value: 1 }]);
    custom(
      r,
      'openproxy_clients',
      'Client connections by pool and state (active: holds a server connection).',
      'gauge',
      () =>
        pools().flatMap((p) => [
          { labels: { database: p.database, user: p.user, state: 'active' }, value: p.cl_active },
          { labels: { database: p.database, user: p.user, state: 'idle' }, value: p.cl_idle },
          { labels: { database: p.database, user: p.user, state: 'waiting' }, value: p.cl_waiting },
        ]),
    );
    custom(r, 'openproxy_clients_by_port', "Client connections by openproxy's port and its role.", 'gauge', () => {
      const n = new Map<string, number>();
      for (const c of this.clients()) {
        const k = `${c.local_port}\0${c.listener_role || 'main'}`;
        n.set(k, (n.get(k) ?? 0) + 1);
      }
      return [...n].map(([k, value]) => {
        const [port, role] = k.split('\0');
        return { labels: { port: port === '0' ? 'unix' : port, role }, value };
      });
    });
    custom(r, 'openproxy_server_connections', 'Server connections by pool and state.', 'gauge', () =>
      pools().flatMap((p) => [
        { labels: { database: p.database, user: p.user, state: 'active' }, value: p.sv_active },
        { labels: { database: p.database, user: p.user, state: 'idle' }, value: p.sv_idle },
        { labels: { database: p.database, user: p.user, state: 'used' }, value: p.sv_used },
        { labels: { database: p.database, user: p.user, state: 'login' }, value: p.sv_login },
      ]),
    );
    custom(r, 'openproxy_server_banned', 'A server banned now (1), with the reason.', 'gauge', () =>
      this.serverRows().map((s) => ({
        labels: { database: s.db, server: s.server, role: s.role, reason: s.reason },
        value: s.banned ? 1 : 0,
      })),
    );
    custom(
      r,
      'openproxy_server_state',
      'Server state: 1 for the state it is in (UP, DOWN, MAINT, DRAIN).',
      'gauge',
      () =>
        this.serverRows().flatMap((s) =>
          SERVER_STATE_NAMES.map((state) => ({
            labels: { database: s.db, user: s.user, server: s.server, state },
            value: s.state === state ? 1 : 0,
          })),
        ),
    );
    custom(
      r,
      'openproxy_server_state_since_seconds',
      'When the server last changed state (Unix time; 0 = not since openproxy started).',
      'gauge',
      () =>
        this.serverRows().map((s) => ({
          labels: { database: s.db, user: s.user, server: s.server, reason: s.stateReason },
          value: s.stateSince / 1000,
        })),
    );
    custom(
      r,
      'openproxy_server_role',
      "A server's current role (1 for the role it has), and where that came from (config, sql probe).",
      'gauge',
      () =>
        this.serverRows().map((s) => ({
          labels: { database: s.db, user: s.user, server: s.server, role: s.currentRole, source: s.roleSource },
          value: 1,
        })),
    );
    custom(
      r,
      'openproxy_vrrp_state',
      'The VRRP virtual router state (1 for the state it is in: INIT, BACKUP, MASTER, FAULT).',
      'gauge',
      () => {
        const v = this.src.vrrp?.();
        return v
          ? ['INIT', 'BACKUP', 'MASTER', 'FAULT'].map((state) => ({
              labels: { state },
              value: v.state === state ? 1 : 0,
            }))
          : [];
      },
    );
    custom(
      r,
      'openproxy_vrrp_priority',
      'The VRRP priority advertised now (0 while no primary is reachable).',
      'gauge',
      () => {
        const v = this.src.vrrp?.();
        return v ? [{ labels: {}, value: v.priority }] : [];
      },
    );
    custom(
      r,
      'openproxy_replica_lag_bytes',
      'Bytes of WAL a replica has not replayed yet (measured when lag settings are on).',
      'gauge',
      () =>
        this.serverRows()
          .filter((s) => s.lagAt > 0)
          .map((s) => ({ labels: { database: s.db, server: s.server }, value: s.lagBytes })),
    );
    custom(
      r,
      'openproxy_prepared_statement_cache_hits_total',
      'Named statements found prepared on the server connection.',
      'counter',
      () => pools().map((p) => ({ labels: { database: p.database, user: p.user }, value: p.prepare_hits })),
    );
    custom(
      r,
      'openproxy_prepared_statement_cache_misses_total',
      'Named statements prepared on a server connection on first use there.',
      'counter',
      () => pools().map((p) => ({ labels: { database: p.database, user: p.user }, value: p.prepare_misses })),
    );
    custom(
      r,
      'openproxy_prepared_statement_cache_evictions_total',
      'Server-side statements closed to stay within prepared_statements_cache_size.',
      'counter',
      () => pools().map((p) => ({ labels: { database: p.database, user: p.user }, value: p.prepare_evictions })),
    );
    custom(
      r,
      'openproxy_client_pins_total',
      'Times a client was pinned to its server connection (dedicated mode).',
      'counter',
      stat(STAT.pins),
    );
    custom(
      r,
      'openproxy_statement_timeouts_total',
      'Statements cancelled by the per-user statement_timeout.',
      'counter',
      stat(STAT.statement_timeouts),
    );
    custom(r, 'openproxy_client_logins_total', 'Client logins.', 'counter', stat(STAT.logins));
    custom(
      r,
      'openproxy_clients_refused_total',
      'Connections refused because max_client_conn clients were connected.',
      'counter',
      () => [{ labels: {}, value: Atomics.load(this.src.shared.header, REFUSED_CLIENTS) }],
    );
    custom(r, 'openproxy_errors_total', 'Errors sent to clients.', 'counter', stat(STAT.errors));
    custom(
      r,
      'openproxy_query_duration_seconds',
      'Query latency through openproxy (first byte in to ReadyForQuery).',
      'histogram',
      () =>
        pools().flatMap((p) =>
          p.query_latency
            ? histogramSamples(
                'openproxy_query_duration_seconds',
                { database: p.database, user: p.user },
                p.query_latency,
              )
            : [],
        ),
    );
    custom(r, 'openproxy_transaction_duration_seconds', 'Transaction latency through openproxy.', 'histogram', () =>
      pools().flatMap((p) =>
        p.xact_latency
          ? histogramSamples(
              'openproxy_transaction_duration_seconds',
              { database: p.database, user: p.user },
              p.xact_latency,
            )
          : [],
      ),
    );

    // pgbouncer_exporter's names.
    custom(r, 'pgbouncer_up', 'The pooler is up (pgbouncer_exporter name).', 'gauge', () => [{ labels: {}, value: 1 }]);
    custom(
      r,
      'pgbouncer_pools_client_active_connections',
      'Client connections linked to a server connection.',
      'gauge',
      poolGauge((p) => p.cl_active),
    );
    custom(
      r,
      'pgbouncer_pools_client_waiting_connections',
      'Client connections waiting for a server connection.',
      'gauge',
      poolGauge((p) => p.cl_waiting),
    );
    custom(
      r,
      'pgbouncer_pools_server_active_connections',
      'Server connections linked to a client.',
      'gauge',
      poolGauge((p) => p.sv_active),
    );
    custom(
      r,
      'pgbouncer_pools_server_idle_connections',
      'Server connections idle and ready.',
      'gauge',
      poolGauge((p) => p.sv_idle),
    );
    custom(
      r,
      'pgbouncer_pools_server_used_connections',
      'Server connections idle longer than the check delay.',
      'gauge',
      poolGauge((p) => p.sv_used),
    );
    custom(
      r,
      'pgbouncer_pools_server_testing_connections',
      'Server connections being tested.',
      'gauge',
      poolGauge(() => 0),
    );
    custom(
      r,
      'pgbouncer_pools_server_login_connections',
      'Server connections logging in.',
      'gauge',
      poolGauge((p) => p.sv_login),
    );
    custom(
      r,
      'pgbouncer_pools_client_maxwait_seconds',
      'Longest wait of a waiting client.',
      'gauge',
      poolGauge((p) => (p.oldest_wait ? (Date.now() - p.oldest_wait) / 1000 : 0)),
    );
    custom(r, 'pgbouncer_stats_queries_pooled_total', 'Queries pooled.', 'counter', statByDb(STAT.query_count));
    custom(
      r,
      'pgbouncer_stats_queries_duration_seconds_total',
      'Time spent in queries.',
      'counter',
      statByDb(STAT.query_time_us, 1e-6),
    );
    custom(
      r,
      'pgbouncer_stats_sql_transactions_pooled_total',
      'Transactions pooled.',
      'counter',
      statByDb(STAT.xact_count),
    );
    custom(
      r,
      'pgbouncer_stats_server_in_transaction_seconds_total',
      'Time spent in transactions.',
      'counter',
      statByDb(STAT.xact_time_us, 1e-6),
    );
    custom(
      r,
      'pgbouncer_stats_client_wait_seconds_total',
      'Time clients waited for a server connection.',
      'counter',
      statByDb(STAT.wait_time_us, 1e-6),
    );
    custom(
      r,
      'pgbouncer_stats_received_bytes_total',
      'Bytes received from clients.',
      'counter',
      statByDb(STAT.received),
    );
    custom(r, 'pgbouncer_stats_sent_bytes_total', 'Bytes sent to clients.', 'counter', statByDb(STAT.sent));
    custom(r, 'pgbouncer_databases_current_connections', 'Server connections open per database entry.', 'gauge', () =>
      this.serverRows().map((s) => ({
        labels: { name: s.label, host: s.host, port: s.port, database: s.dbname, force_user: s.user },
        value: s.conns,
      })),
    );
    custom(r, 'pgbouncer_databases_pool_size', 'pool_size per database entry.', 'gauge', () =>
      this.serverRows().map((s) => ({
        labels: { name: s.label, host: s.host, port: s.port, database: s.dbname, force_user: s.user },
        value: s.poolSize,
      })),
    );
  }

  /** One scrape: fresh worker snapshots, then the text format. */
  async metrics(): Promise<string> {
    this.snaps = await this.src.snapshots();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  mergedPools(): WorkerSnapshot['pools'] {
    const m = new Map<string, WorkerSnapshot['pools'][number]>();
    for (const s of this.snaps) {
      for (const p of s.pools) {
        const k = `${p.database}\0${p.user}`;
        const a = m.get(k);
        if (!a) {
          m.set(k, {
            ...p,
            query_latency: addHist(null, p.query_latency),
            xact_latency: addHist(null, p.xact_latency),
          });
          continue;
        }
        for (const f of [...POOL_COUNTS, 'prepare_hits', 'prepare_misses', 'prepare_evictions'] as const) a[f] += p[f];
        if (p.oldest_wait && (!a.oldest_wait || p.oldest_wait < a.oldest_wait)) a.oldest_wait = p.oldest_wait;
        a.query_latency = addHist(a.query_latency, p.query_latency);
        a.xact_latency = addHist(a.xact_latency, p.xact_latency);
      }
    }
    return [...m.values()];
  }

  private statRows(): { db: string; user: string; v: number[] }[] {
    const cfg = this.src.cfg();
    const slots = this.src.slots();
    const sh = this.src.shared;
    const out: { db: string; user: string; v: number[] }[] = [];
    for (const p of cfg.pools) {
      for (const u of p.users) {
        const slot = slots.pools[poolSlotKey(p.name, u.username)];
        const v = new Array<number>(11).fill(0);
        for (let w = 0; w < sh.header[1]; w++) {
          const base = sh.statBase(w, slot);
          for (let i = 0; i < v.length; i++) v[i] += sh.stats[base + i];
        }
        out.push({ db: p.name, user: u.username, v });
      }
    }
    return out;
  }

  /** One row per configured (pool, user, shard, server). */
  serverRows(): ServerRow[] {
    return serverRows(this.src.cfg(), this.src.slots(), this.src.shared);
  }

  /** Clients, summed per pool, and the current snapshot's client rows (status page). */
  clients() {
    return this.snaps.flatMap((s) => s.clients);
  }

  async refresh(): Promise<void> {
    this.snaps = await this.src.snapshots();
  }
}
