// Which server of a shard takes a transaction: the primary for writes; for reads the replicas (and
// the primary with primary_reads_enabled) in load_balancing_mode order, skipping banned servers,
// with the primary last as the fallback. Replicas over max_replica_lag / max_replica_lag_ms, or
// behind a read_your_writes client's last commit, are left out (lag measured by the HA thread). Bans live in the shared
// table, so every worker stops
// using a failed server at once; the primary is never banned (writes have nowhere else to go), and
// when every replica is banned the bans are lifted rather than overloading the primary with reads —
// except bans of servers that stopped answering (timeouts): retrying those costs every read a full
// timeout, so reads go to the primary until the ban ends.

import type { PoolConfig } from '../config/types';
import type { ServerEntry, UserPool } from '../pool/registry';
import { roleOf } from '../pool/registry';
import type { SharedState } from '../shared/state';
import { BAN, BAN_REASON, UNRESPONSIVE } from '../shared/layout';
import { log } from '../log';

export type Target = 'primary' | 'read';

/** Candidate servers for a transaction, best first. Allocates one small array. */
export interface ReadOptions {
  primaryReads: boolean;
  /** read_your_writes: a replica must have replayed at least this far (0 = no requirement). */
  minLsn: number;
  /** A lag measurement older than this many ms is unknown, and unknown counts as lagging. */
  staleMs: number;
  /** load_balancing_mode = "source": a hash of the client's address (sourceHash). */
  source: number;
  /** slow_start in ms: a server that came UP this recently takes a growing share of its weight (0 = off). */
  slowStartMs: number;
  /** A replica port (listener role "replica"): the primary serves reads only as a fallback, and only if true. */
  primaryFallback?: boolean;
}

/** FNV-1a of a client address (without the port), for load_balancing_mode = "source". */
export function sourceHash(address: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < address.length; i++) h = Math.imul(h ^ address.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A well-mixed number in (0, 1) from two 32-bit keys. */
function unit(a: number, b: number): number {
  let h = Math.imul(a ^ Math.imul(b + 1, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return ((h >>> 0) + 0.5) / 4294967296;
}

export function candidates(
  shared: SharedState,
  up: UserPool,
  shard: number,
  target: Target,
  opts: ReadOptions,
): ServerEntry[] {
  const primaryReads = opts.primaryReads;
  const servers = up.shards[shard] ?? up.shards[0];
  const primaries: ServerEntry[] = [];
  const unknown: ServerEntry[] = [];
  const replicas: ServerEntry[] = [];
  for (const e of servers) {
    // DOWN (checks, lag), MAINT and DRAIN servers take no new transactions.
    if (!shared.usable(e.pool.slot)) continue;
    const r = roleOf(e);
    if (r === 'primary') primaries.push(e);
    else if (r === 'replica') replicas.push(e);
    else if (shared.serverRoleAt[e.pool.slot] === 0) unknown.push(e); // never probed: its login tells
    // probed and unknown (unreachable, no answer): neither role until a probe says otherwise
  }
  if (target === 'primary') return primaries.concat(unknown);
  const now = Date.now();
  let live = replicas.filter((e) => !shared.banned(e.pool.slot, now));
  const liftable =
    live.length === 0 ? replicas.filter((e) => !UNRESPONSIVE.has(shared.serverBanReason[e.pool.slot])) : [];
  if (liftable.length > 0) {
    for (const e of liftable) shared.unban(e.pool.slot);
    log.warn('every replica is banned: lifting the bans', {
      pool: up.pool.name,
      replicas: liftable.map((e) => `${e.address.host}:${e.address.port}`),
    });
    live = liftable;
  }
  const p = up.pool;
  if (p.max_replica_lag > 0 || p.max_replica_lag_ms > 0 || opts.minLsn > 0) {
    // Lagging replicas (or ones that have not replayed this client's last write) take no reads.
    const freshSince = now - opts.staleMs;
    live = live.filter((e) => {
      const slot = e.pool.slot;
      if (shared.serverLagAt[slot] < freshSince) return false;
      if (p.max_replica_lag > 0 && shared.serverLagBytes[slot] > p.max_replica_lag) return false;
      if (p.max_replica_lag_ms > 0 && shared.serverLagMs[slot] > p.max_replica_lag_ms) return false;
      return opts.minLsn === 0 || shared.serverReplayLsn[slot] >= opts.minLsn;
    });
  }
  const set = primaryReads ? live.concat(primaries) : live;
  const ordered = balance(shared, up, set, opts, now);
  if (opts.primaryFallback !== undefined) return opts.primaryFallback ? ordered.concat(unknown, primaries) : ordered;
  return primaryReads ? ordered.concat(unknown) : ordered.concat(unknown, primaries);
}

/**
 * The read set in the order to try it, by server weight (a weight-0 server is only a fallback):
 * random (weighted draw), round_robin (shared counter over the weights), loc (fewest held
 * connections per unit of weight, all workers), source (rendezvous hashing of the client address:
 * the same replica while it is healthy). The rest follow as fallbacks.
 */
function balance(shared: SharedState, up: UserPool, set: ServerEntry[], opts: ReadOptions, now: number): ServerEntry[] {
  const n = set.length;
  if (n <= 1) return set;
  const mode: PoolConfig['load_balancing_mode'] = up.pool.load_balancing_mode;
  const source = opts.source;
  const w = opts.slowStartMs > 0 ? (e: ServerEntry) => slowWeight(shared, e, opts.slowStartMs, now) : plainWeight;
  if (mode === 'loc') {
    const start = (Math.random() * n) | 0; // ties broken at random
    const rotated = set.slice(start).concat(set.slice(0, start));
    const load = (e: ServerEntry) =>
      w(e) > 0 ? (Atomics.load(shared.serverActive, e.pool.slot) + 1) / w(e) : Number.POSITIVE_INFINITY;
    return rotated.sort((a, b) => load(a) - load(b));
  }
  if (mode === 'source') {
    const score = (e: ServerEntry) => (w(e) > 0 ? -w(e) / Math.log(unit(source, e.pool.slot)) : 0);
    return set.slice().sort((a, b) => score(b) - score(a));
  }
  let total = 0;
  for (const e of set) total += w(e);
  const draw =
    mode === 'round_robin' ? Atomics.add(shared.poolRoundRobin, up.statSlot, 1) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  let start = draw % n;
  if (total > 0) {
    // The server whose share of [0, total) the draw falls in (weights may be fractions during slow_start).
    let k = mode === 'round_robin' ? draw % total : Math.random() * total;
    start = 0;
    while (start < n - 1 && k >= w(set[start])) k -= w(set[start++]);
  }
  return set.slice(start).concat(set.slice(0, start));
}

const plainWeight = (e: ServerEntry) => e.address.weight;

/** slow_start: a server UP for t < slow_start ms weighs weight × t / slow_start (at least 1 % of it). */
function slowWeight(shared: SharedState, e: ServerEntry, slowMs: number, now: number): number {
  const full = e.address.weight;
  const since = now - shared.serverUpAt[e.pool.slot];
  if (full === 0 || since >= slowMs) return full;
  return full * Math.max(0.01, since / slowMs);
}

/**
 * Bans a failed server (every slot with its host:port, for every user) for ban_time seconds.
 * The primary is never banned: it is the only place writes can go.
 */
export function banServer(
  shared: SharedState,
  pools: UserPool[],
  failed: ServerEntry,
  reason: number,
  banTimeS: number,
): boolean {
  if (roleOf(failed) === 'primary' || banTimeS <= 0) return false;
  const until = Date.now() + banTimeS * 1000;
  const { host, port } = failed.address;
  for (const up of pools) {
    for (const shard of up.shards)
      for (const e of shard)
        if (e.address.host === host && e.address.port === port) shared.ban(e.pool.slot, until, reason);
  }
  log.warn('server banned', { server: `${host}:${port}`, reason: BAN_REASON[reason], ban_time_s: banTimeS });
  return true;
}

export { BAN };
