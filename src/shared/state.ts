// Typed views over the shared layout, with the operations threads perform on them.

import {
  LAYOUT,
  LAYOUT_VERSION,
  MAX_POOL_SLOTS,
  MAX_WORKERS,
  SERVER_STATE,
  STARVING_SIGNAL,
  STATE_SIGNAL,
  STAT_COUNT,
} from './layout';

/** The groups a server slot's connections count in, and their limits (0 = no limit). */
export interface ConnGroups {
  db: number;
  dbMax: number;
  user: number;
  userMax: number;
}

/** What takeConn() returns: taken, or which limit is full. */
export const TAKE = { ok: 0, slot: 1, db: 2, user: 3 } as const;

export class SharedState {
  readonly header: Int32Array;
  readonly workerClients: Int32Array;
  readonly serverConns: Int32Array;
  readonly groupConns: Int32Array;
  readonly groupSignal: Int32Array;
  readonly groupWanted: Int32Array;
  readonly serverWaiters: Int32Array;
  readonly serverSignal: Int32Array;
  readonly serverStarving: Int32Array;
  readonly serverActive: Int32Array;
  readonly serverBanUntil: Float64Array;
  readonly serverBanReason: Int32Array;
  readonly poolRoundRobin: Int32Array;
  readonly serverReplayLsn: Float64Array;
  readonly serverLagBytes: Float64Array;
  readonly serverLagMs: Float64Array;
  readonly serverLagAt: Float64Array;
  readonly serverLsnSince: Float64Array;
  readonly serverRole: Int32Array;
  readonly serverRoleAt: Float64Array;
  readonly serverState: Int32Array;
  readonly serverStateReason: Int32Array;
  readonly serverStateAt: Float64Array;
  readonly serverUpAt: Float64Array;
  readonly serverCheckAt: Float64Array;
  readonly serverCheckMs: Float64Array;
  readonly serverCheckStreak: Int32Array;
  readonly serverWarmAt: Float64Array;
  readonly stats: Float64Array;

  constructor(readonly sab: SharedArrayBuffer) {
    const i32 = (r: { offset: number; length: number }) => new Int32Array(sab, r.offset, r.length);
    this.header = i32(LAYOUT.header);
    this.workerClients = i32(LAYOUT.workerClients);
    this.serverConns = i32(LAYOUT.serverConns);
    this.groupConns = i32(LAYOUT.groupConns);
    this.groupSignal = i32(LAYOUT.groupSignal);
    this.groupWanted = i32(LAYOUT.groupWanted);
    this.serverWaiters = i32(LAYOUT.serverWaiters);
    this.serverSignal = i32(LAYOUT.serverSignal);
    this.serverStarving = i32(LAYOUT.serverStarving);
    this.serverActive = i32(LAYOUT.serverActive);
    this.serverBanUntil = new Float64Array(sab, LAYOUT.serverBanUntil.offset, LAYOUT.serverBanUntil.length);
    this.serverBanReason = i32(LAYOUT.serverBanReason);
    this.poolRoundRobin = i32(LAYOUT.poolRoundRobin);
    const f64 = (r: { offset: number; length: number }) => new Float64Array(sab, r.offset, r.length);
    this.serverReplayLsn = f64(LAYOUT.serverReplayLsn);
    this.serverLagBytes = f64(LAYOUT.serverLagBytes);
    this.serverLagMs = f64(LAYOUT.serverLagMs);
    this.serverLagAt = f64(LAYOUT.serverLagAt);
    this.serverLsnSince = f64(LAYOUT.serverLsnSince);
    this.serverRole = i32(LAYOUT.serverRole);
    this.serverRoleAt = f64(LAYOUT.serverRoleAt);
    this.serverState = i32(LAYOUT.serverState);
    this.serverStateReason = i32(LAYOUT.serverStateReason);
    this.serverStateAt = f64(LAYOUT.serverStateAt);
    this.serverUpAt = f64(LAYOUT.serverUpAt);
    this.serverCheckAt = f64(LAYOUT.serverCheckAt);
    this.serverCheckMs = f64(LAYOUT.serverCheckMs);
    this.serverCheckStreak = i32(LAYOUT.serverCheckStreak);
    this.serverWarmAt = f64(LAYOUT.serverWarmAt);
    this.stats = new Float64Array(sab, LAYOUT.stats.offset, LAYOUT.stats.length);
  }

  static create(workers: number): SharedState {
    const s = new SharedState(new SharedArrayBuffer(LAYOUT.total));
    s.header[0] = LAYOUT_VERSION;
    s.header[1] = workers;
    return s;
  }

  /** A client started starving for a server slot: wake every worker (they may hold idle connections of it). */
  signalStarving(): void {
    Atomics.add(this.header, STARVING_SIGNAL, 1);
    Atomics.notify(this.header, STARVING_SIGNAL);
  }

  /**
   * Calls `check` now and again after every bump of header[`signal`] (STARVING_SIGNAL,
   * STATE_SIGNAL) until `stopped()`, without a timer: an idle worker does not wake up for it.
   */
  onSignal(signal: number, check: () => void, stopped: () => boolean): void {
    const loop = (): void => {
      if (stopped()) return;
      const seen = Atomics.load(this.header, signal);
      check();
      const r = Atomics.waitAsync(this.header, signal, seen);
      if (r.async) void r.value.then(loop);
      else setImmediate(loop);
    };
    loop();
  }

  /** Bumps the server state signal: a role or state changed (waiters for a primary look again at once). */
  signalState(): void {
    Atomics.add(this.header, STATE_SIGNAL, 1);
    Atomics.notify(this.header, STATE_SIGNAL);
  }

  /** The state signal's count now, to wait for the next change with waitStateChange(). */
  stateVersion(): number {
    return Atomics.load(this.header, STATE_SIGNAL);
  }

  /** Resolves at the next role or state change after `seen` (stateVersion()), or after `ms`. */
  async waitStateChange(seen: number, ms: number): Promise<void> {
    const r = Atomics.waitAsync(this.header, STATE_SIGNAL, seen, ms);
    if (r.async) await r.value;
  }

  /** Whether a server slot takes new transactions and logins: UP (not DOWN, in MAINT or draining). */
  usable(slot: number): boolean {
    return Atomics.load(this.serverState, slot) === SERVER_STATE.up;
  }

  /**
   * Moves a server slot to `state` (a SERVER_STATE code) for a STATE_REASON code, if it is in
   * `from` now (compare-and-swap: an admin's MAINT is never overwritten by a check that read the
   * old state); true if it moved. Coming UP from another state starts slow_start.
   */
  setState(slot: number, from: number, state: number, reason: number, now: number): boolean {
    if (from === state || Atomics.compareExchange(this.serverState, slot, from, state) !== from) return false;
    Atomics.store(this.serverStateReason, slot, reason);
    this.serverStateAt[slot] = now;
    if (state === SERVER_STATE.up) this.serverUpAt[slot] = now;
    this.signalState();
    return true;
  }

  /**
   * Takes one connection of a server slot if fewer than `max` are open across all workers and its
   * pool's and user's groups are below their limits; returns TAKE.ok or the limit that is full.
   */
  takeConn(slot: number, max: number, g: ConnGroups): number {
    if (!take(this.serverConns, slot, max)) return TAKE.slot;
    if (!take(this.groupConns, g.db, g.dbMax || Number.POSITIVE_INFINITY)) {
      Atomics.sub(this.serverConns, slot, 1);
      this.signal(slot);
      return TAKE.db;
    }
    if (!take(this.groupConns, g.user, g.userMax || Number.POSITIVE_INFINITY)) {
      Atomics.sub(this.serverConns, slot, 1);
      Atomics.sub(this.groupConns, g.db, 1);
      this.signal(slot);
      this.signalGroup(g.db);
      return TAKE.user;
    }
    return TAKE.ok;
  }

  /** Whether a server slot is banned now. */
  banned(slot: number, now: number): boolean {
    const until = this.serverBanUntil[slot];
    return until !== 0 && until > now;
  }

  /** Bans a server slot until `until` (ms epoch) for a BAN code; every worker sees it at once. */
  ban(slot: number, until: number, reason: number): void {
    Atomics.store(this.serverBanReason, slot, reason);
    this.serverBanUntil[slot] = until;
  }

  unban(slot: number): void {
    this.serverBanUntil[slot] = 0;
    Atomics.store(this.serverBanReason, slot, 0);
  }

  /** Gives a connection back (slot and groups) and wakes waiters on any worker. */
  releaseConn(slot: number, g: ConnGroups): void {
    Atomics.sub(this.serverConns, slot, 1);
    Atomics.sub(this.groupConns, g.db, 1);
    Atomics.sub(this.groupConns, g.user, 1);
    this.signal(slot);
    this.signalGroup(g.db);
    this.signalGroup(g.user);
  }

  signalGroup(group: number): void {
    Atomics.add(this.groupSignal, group, 1);
    Atomics.notify(this.groupSignal, group);
  }

  /** Whether clients wait for a connection of a group that is at its limit `max`. */
  groupWants(group: number, max: number): boolean {
    return max > 0 && Atomics.load(this.groupWanted, group) > 0 && Atomics.load(this.groupConns, group) >= max;
  }

  signal(slot: number): void {
    Atomics.add(this.serverSignal, slot, 1);
    Atomics.notify(this.serverSignal, slot);
  }

  /** The index of the worker with the fewest live clients. */
  leastLoadedWorker(count: number): number {
    let best = 0;
    let bestN = Infinity;
    for (let w = 0; w < count; w++) {
      const n = Atomics.load(this.workerClients, w);
      if (n < bestN) {
        best = w;
        bestN = n;
      }
    }
    return best;
  }

  /** Row of stat counters a worker writes for a (pool, user) slot. */
  statBase(worker: number, poolSlot: number): number {
    return (worker * MAX_POOL_SLOTS + poolSlot) * STAT_COUNT;
  }

  /** Sum of one stat over all workers. */
  statTotal(poolSlot: number, stat: number, workers = MAX_WORKERS): number {
    let sum = 0;
    for (let w = 0; w < workers; w++) sum += this.stats[this.statBase(w, poolSlot) + stat];
    return sum;
  }
}

export { MAX_WORKERS };

/** Adds one to a[i] if it is below max (compare-and-swap, any thread). */
function take(a: Int32Array, i: number, max: number): boolean {
  for (;;) {
    const cur = Atomics.load(a, i);
    if (cur >= max) return false;
    if (Atomics.compareExchange(a, i, cur, cur + 1) === cur) return true;
  }
}
