// What one proxy worker knows that the admin console shows: its clients, its server connections
// and its per-pool counts. The admin session's worker asks main, main asks every worker, and the
// answers are merged into SHOW rows (src/admin/show.ts).

import type { HistogramData } from './histogram';

export interface ClientRow {
  id: number;
  database: string;
  user: string;
  application_name: string;
  /** active (holds a server), idle, waiting (for a server), login */
  state: string;
  transaction_count: number;
  query_count: number;
  error_count: number;
  connected_at: number;
  /** ms epoch when it started waiting for a server; 0 = not waiting. */
  wait_since: number;
  worker: number;
  /** openproxy's port the client connected to (0: the Unix socket). */
  local_port: number;
  /** That port's role ([[general.listeners]]); '' = the main port. */
  listener_role: string;
}

export interface ServerRow {
  id: number;
  database_name: string;
  user: string;
  address: string;
  application_name: string;
  /** active (held by a client), idle, used (idle past healthcheck_delay) */
  state: string;
  transaction_count: number;
  query_count: number;
  bytes_sent: number;
  bytes_received: number;
  created_at: number;
  prepare_cache_hit: number;
  prepare_cache_miss: number;
  prepare_cache_eviction: number;
  prepare_cache_size: number;
  close_needed: boolean;
  worker: number;
}

/** One server of one pool user, this worker's share: SERVER_STAT counters (pool/server-pool.ts). */
export interface ServerStatRow {
  instance: string;
  database: string;
  user: string;
  v: number[];
}

/** PoolRow's counts, summed when the workers' rows are merged (SHOW POOLS, metrics). */
export const POOL_COUNTS = [
  'cl_idle',
  'cl_active',
  'cl_waiting',
  'sv_active',
  'sv_idle',
  'sv_used',
  'sv_tested',
  'sv_login',
] as const;

export interface PoolRow {
  database: string;
  user: string;
  pool_mode: string;
  cl_idle: number;
  cl_active: number;
  cl_waiting: number;
  sv_active: number;
  sv_idle: number;
  sv_used: number;
  /** Running server_check_query now. */
  sv_tested: number;
  sv_login: number;
  /** ms epoch of the oldest waiting client's start; 0 = none. */
  oldest_wait: number;
  /** Prepared-statement cache totals of this worker's connections for the pool, closed ones included. */
  prepare_hits: number;
  prepare_misses: number;
  prepare_evictions: number;
  query_latency: HistogramData | null;
  xact_latency: HistogramData | null;
}

export interface WorkerSnapshot {
  worker: number;
  /** The worker's V8 heap (bytes): used and allocated, and memory outside it (buffers). */
  heap: { used: number; total: number; external: number };
  clients: ClientRow[];
  servers: ServerRow[];
  pools: PoolRow[];
  serverStats: ServerStatRow[];
  /** This worker's DNS cache (dns_cache_enabled), null when off. */
  dns: { names: number; pending: number; queries: number } | null;
}
