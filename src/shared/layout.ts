// The declared schema of the SharedArrayBuffer every thread maps: one region per table, fixed sizes.
// Counters that several threads change use Atomics; per-worker stats rows have a single writer
// (their worker) and are summed by readers, so the hot path does plain stores.

export const MAX_WORKERS = 256;
/** Server slots: one per (pool, user, shard, host:port). Assigned by the main thread, never reused. */
export const MAX_SERVER_SLOTS = 4096;
/** Stats slots: one per (pool, user). */
export const MAX_POOL_SLOTS = 1024;
/** Connection groups: one per pool (max_db_connections) and one per user name (max_user_connections). */
export const MAX_GROUPS = 2048;

/** Per-worker, per-(pool, user) add-only counters, named like SHOW STATS columns. */
export const STAT = {
  xact_count: 0,
  query_count: 1,
  received: 2, // bytes from clients
  sent: 3, // bytes to clients
  xact_time_us: 4,
  query_time_us: 5,
  wait_time_us: 6,
  errors: 7,
  /** Clients that logged in to this pool. */
  logins: 8,
  /** Times a client was pinned to its server connection (dedicated mode). */
  pins: 9,
  /** Statements cancelled because they ran past statement_timeout. */
  statement_timeouts: 10,
} as const;
export const STAT_COUNT = 11;

interface Region {
  offset: number;
  length: number;
  bytes: number;
}

function regions<T extends Record<string, [number, number]>>(spec: T): { [K in keyof T]: Region } & { total: number } {
  let offset = 0;
  const out: Record<string, Region> = {};
  for (const [name, [length, bytes]] of Object.entries(spec)) {
    offset = Math.ceil(offset / 8) * 8;
    out[name] = { offset, length, bytes };
    offset += length * bytes;
  }
  return Object.assign(out as { [K in keyof T]: Region }, { total: offset });
}

export const LAYOUT = regions({
  /**
   * [0] layout version, [1] worker count, [2] shutting down (1), [3] starving signal (see STARVING_SIGNAL),
   * [4] clients refused at max_client_conn (REFUSED_CLIENTS), [5] last server connection id (SERVER_IDS),
   * [6] server state signal (STATE_SIGNAL).
   */
  header: [8, 4],
  /** Live clients per worker: main picks the worker with the fewest. */
  workerClients: [MAX_WORKERS, 4],
  /** Open server connections per server slot (all workers): the global pool_size limit. */
  serverConns: [MAX_SERVER_SLOTS, 4],
  /** Clients waiting for a connection of a server slot, all workers. */
  serverWaiters: [MAX_SERVER_SLOTS, 4],
  /**
   * Clients that have waited longer than STARVING_MS for a server slot, all workers: only they move slots between
   * workers.
   */
  serverStarving: [MAX_SERVER_SLOTS, 4],
  /** Bumped + notified when a server slot frees a connection; waiters in other workers wake on it. */
  serverSignal: [MAX_SERVER_SLOTS, 4],
  /** Connections of a server slot held by a client right now, all workers: load_balancing_mode = "loc". */
  serverActive: [MAX_SERVER_SLOTS, 4],
  /** Ban expiry per server slot (ms since the epoch; 0 = not banned). Written whole by one thread, read by all. */
  serverBanUntil: [MAX_SERVER_SLOTS, 8],
  /** Why a server slot is banned: a BAN_REASON code. */
  serverBanReason: [MAX_SERVER_SLOTS, 4],
  /**
   * Replica lag per server slot, measured by the HA thread: replay position (LSN as a number; the primary's own
   * position for a primary), bytes and ms behind, and when it was measured (ms epoch, 0 = never).
   */
  serverReplayLsn: [MAX_SERVER_SLOTS, 8],
  serverLagBytes: [MAX_SERVER_SLOTS, 8],
  serverLagMs: [MAX_SERVER_SLOTS, 8],
  serverLagAt: [MAX_SERVER_SLOTS, 8],
  /**
   * When the probe behind serverReplayLsn was sent (ms epoch): that position is at least the WAL end as of this time
   * (read_your_writes).
   */
  serverLsnSince: [MAX_SERVER_SLOTS, 8],
  /** Role of an `auto` server as the HA thread last found it: ROLE codes (0 = not known / unreachable). */
  serverRole: [MAX_SERVER_SLOTS, 4],
  /** When serverRole was last written (ms epoch; 0 = never probed, the worker's own login-time learning applies). */
  serverRoleAt: [MAX_SERVER_SLOTS, 8],
  /** Server state per slot (SERVER_STATE: UP, DOWN, MAINT, DRAIN); admin commands and the HA thread write it. */
  serverState: [MAX_SERVER_SLOTS, 4],
  /** Why the state last changed: a STATE_REASON code. */
  serverStateReason: [MAX_SERVER_SLOTS, 4],
  /** When the state last changed (ms epoch; 0 = UP since openproxy started). */
  serverStateAt: [MAX_SERVER_SLOTS, 8],
  /** When the server last came UP from another state (ms epoch; 0 = never down): slow_start counts from it. */
  serverUpAt: [MAX_SERVER_SLOTS, 8],
  /** Active checks: when the last one ended (ms epoch, 0 = none), how long it took (ms). */
  serverCheckAt: [MAX_SERVER_SLOTS, 8],
  serverCheckMs: [MAX_SERVER_SLOTS, 8],
  /** Active checks in a row with the same outcome: > 0 passed, < 0 failed. */
  serverCheckStreak: [MAX_SERVER_SLOTS, 4],
  /**
   * When etcd's leader key last named this server the new leader (ms epoch): workers open a
   * connection to it ahead of its promotion, so the first writes after it need no login.
   */
  serverWarmAt: [MAX_SERVER_SLOTS, 8],
  /** Open server connections per group (pool or user), all servers and workers: max_db/user_connections. */
  groupConns: [MAX_GROUPS, 4],
  /** Bumped + notified when a group frees a connection. */
  groupSignal: [MAX_GROUPS, 4],
  /** Pools with clients waiting because the group is at its limit: idle connections of the group close for them. */
  groupWanted: [MAX_GROUPS, 4],
  /** Round-robin position per pool slot (pool, user), advanced with Atomics.add by every worker. */
  poolRoundRobin: [MAX_POOL_SLOTS, 4],
  /** STAT counters: [worker][pool slot][stat]. */
  stats: [MAX_WORKERS * MAX_POOL_SLOTS * STAT_COUNT, 8],
});

export const LAYOUT_VERSION = 7;

/** Codes in serverRole. */
export const ROLE = { unknown: 0, primary: 1, replica: 2 } as const;

/** Codes in serverState. UP is 0, so a fresh slot is UP. */
export const SERVER_STATE = { up: 0, down: 1, maint: 2, drain: 3 } as const;
export const SERVER_STATE_NAMES = ['UP', 'DOWN', 'MAINT', 'DRAIN'] as const;

/** Codes in serverStateReason. */
export const STATE_REASON = [
  '',
  'check passed',
  'check failed',
  'check timed out',
  'connect failed',
  'replica lag',
  'replica caught up',
  'MAINT by admin',
  'DRAIN by admin',
  'READY by admin',
  'drained',
] as const;
export const REASON = {
  checkPassed: 1,
  checkFailed: 2,
  checkTimeout: 3,
  connectFailed: 4,
  lag: 5,
  caughtUp: 6,
  maint: 7,
  drain: 8,
  ready: 9,
  drained: 10,
} as const;

/** Codes in serverBanReason. */
export const BAN_REASON = [
  '',
  'connect failed',
  'health check failed',
  'server closed the connection',
  'replica lag',
  'banned by admin',
  'health check timed out',
  'connect timed out',
  'query_timeout',
] as const;
export const BAN = {
  connect: 1,
  healthcheck: 2,
  closed: 3,
  lag: 4,
  admin: 5,
  checkTimeout: 6,
  connectTimeout: 7,
  queryTimeout: 8,
} as const;
/** Ban reasons of a server that stopped answering: not lifted early when every replica is banned. */
export const UNRESPONSIVE: ReadonlySet<number> = new Set([BAN.checkTimeout, BAN.connectTimeout, BAN.queryTimeout]);

/** A waiter older than this may take a slot from another worker (close-and-reopen there). */
export const STARVING_MS = 20;
/** header index bumped + notified when a waiter starts starving: workers holding idle connections wake on it. */
export const STARVING_SIGNAL = 3;
/** header index: connections refused because max_client_conn clients were live (main thread adds). */
export const REFUSED_CLIENTS = 4;
/** header index: the last server connection id handed out (Atomics.add by every worker). */
export const SERVER_IDS = 5;
/** header index bumped + notified when a server's state changes: workers close connections to DOWN servers. */
export const STATE_SIGNAL = 6;
