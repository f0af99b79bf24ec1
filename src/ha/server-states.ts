// HAProxy-style server states, kept by the HA thread in the shared table: active checks of every
// server every check_interval (server_check_query on a monitoring connection; DOWN after
// check_fall failures in a row, UP after check_rise passes), replica lag from the lag monitor (a
// lagging replica is DOWN until it catches up), and drains finishing (DRAIN → MAINT once no client
// holds a connection to the server). MAINT and DRAIN come from the admin console and are never
// overwritten here: every change is a compare-and-swap from the state that was read.

import type { Config } from '../config/types';
import type { ServerConn, ServerLogin } from '../pool/server-conn';
import { openServerConn } from '../pool/server-login';
import type { Slots } from '../pool/slots';
import { REASON, SERVER_STATE, SERVER_STATE_NAMES, STATE_REASON, STATE_SIGNAL } from '../shared/layout';
import type { SharedState } from '../shared/state';
import { log } from '../log';
import { monitorLogin, slotsOf } from './monitor-login';

interface CheckNode {
  login: ServerLogin;
  pool: string;
  slots: number[];
  conn: ServerConn | null;
  busy: boolean;
  /** > 0: passes in a row; < 0: failures in a row. */
  streak: number;
}

const DRAIN_POLL_MS = 100;

export class ServerStates {
  private nodes = new Map<string, CheckNode>();
  private timer: NodeJS.Timeout | null = null;
  private drainTimer: NodeJS.Timeout | null = null;
  /** Slots whose checks fell (check_fall failures in a row) and have not risen since. */
  private readonly checkDown = new Set<number>();
  /** Slots of replicas the lag monitor finds over max_replica_lag(_ms). */
  private readonly lagging = new Set<number>();
  /** Every server slot of the current config (the drain watcher scans them). */
  private allSlots: number[] = [];
  /** host:port (pool) of each slot, for the log. */
  private labels = new Map<number, string>();
  private rise = 2;
  private fall = 3;
  private stopped = false;

  constructor(private readonly shared: SharedState) {
    // A DRAIN set by the console is watched until it ends; nothing runs while nobody drains.
    shared.onSignal(
      STATE_SIGNAL,
      () => this.watchDrains(),
      () => this.stopped,
    );
  }

  update(cfg: Config, slots: Slots): void {
    const g = cfg.general;
    this.rise = g.check_rise;
    this.fall = g.check_fall;
    this.allSlots = Object.values(slots.servers);
    this.labels = new Map(
      Object.entries(slots.servers).map(([key, slot]) => {
        const [pool, , , server] = key.split('\0');
        return [slot, `${server} (pool ${pool})`];
      }),
    );
    const keep = new Map<string, CheckNode>();
    if (g.check_interval > 0) {
      for (const pool of cfg.pools) {
        if (pool.users.length === 0) continue;
        for (const shard of pool.shards) {
          for (const a of shard.servers) {
            const key = `${pool.name}\0${shard.index}\0${a.host}:${a.port}`;
            const node = this.nodes.get(key) ?? {
              login: undefined as unknown as ServerLogin,
              pool: pool.name,
              slots: [],
              conn: null,
              busy: false,
              streak: 0,
            };
            const timeout = Math.min(pool.connect_timeout, g.healthcheck_timeout);
            node.login = monitorLogin(cfg, pool, shard, a, 'openproxy check', timeout);
            node.slots = slotsOf(slots, pool, shard, a);
            keep.set(key, node);
          }
        }
      }
    }
    for (const [key, n] of this.nodes) if (!keep.has(key)) n.conn?.close('no longer checked');
    this.nodes = keep;
    // Servers no longer checked (checks off, server removed) are not held DOWN by old results.
    const checked = new Set([...keep.values()].flatMap((n) => n.slots));
    for (const slot of [...this.checkDown]) {
      if (checked.has(slot)) continue;
      this.checkDown.delete(slot);
      this.recompute(slot, REASON.checkPassed);
    }
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (keep.size > 0) {
      const sql = g.server_check_query || ';';
      this.timer = setInterval(() => this.tick(sql, g.healthcheck_timeout), g.check_interval);
      this.tick(sql, g.healthcheck_timeout);
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.drainTimer) clearInterval(this.drainTimer);
    for (const n of this.nodes.values()) n.conn?.close('stopping');
  }

  /** The lag monitor's verdict on a replica's slots (a change only). */
  lag(slots: number[], lagging: boolean): void {
    for (const slot of slots) {
      if (lagging) this.lagging.add(slot);
      else this.lagging.delete(slot);
      this.recompute(slot, lagging ? REASON.lag : REASON.caughtUp);
    }
  }

  private tick(sql: string, timeoutMs: number): void {
    for (const n of this.nodes.values()) if (!n.busy) void this.check(n, sql, timeoutMs);
  }

  private async check(n: CheckNode, sql: string, timeoutMs: number): Promise<void> {
    n.busy = true;
    const t0 = Date.now();
    let failure = 0;
    try {
      if (!n.conn || n.conn.closed) n.conn = await openServerConn(n.login);
      const r = await n.conn.run(sql, timeoutMs);
      if (!r.ok || n.conn.closed) failure = Date.now() - t0 >= timeoutMs ? REASON.checkTimeout : REASON.checkFailed;
    } catch (e) {
      failure = /timed out/.test((e as Error).message) ? REASON.checkTimeout : REASON.connectFailed;
      n.conn = null;
    }
    if (failure && n.conn && !n.conn.closed) n.conn.close('check failed');
    n.busy = false;
    if (this.stopped) return;
    const now = Date.now();
    n.streak = failure ? Math.min(n.streak, 0) - 1 : Math.max(n.streak, 0) + 1;
    for (const slot of n.slots) {
      this.shared.serverCheckAt[slot] = now;
      this.shared.serverCheckMs[slot] = now - t0;
      Atomics.store(this.shared.serverCheckStreak, slot, n.streak);
      if (n.streak <= -this.fall) this.checkDown.add(slot);
      else if (n.streak >= this.rise) this.checkDown.delete(slot);
    }
    const changed = n.slots.filter((slot) => this.recompute(slot, failure || REASON.checkPassed));
    if (changed.length > 0) {
      const state = SERVER_STATE_NAMES[Atomics.load(this.shared.serverState, changed[0])];
      const fields = {
        server: `${n.login.host}:${n.login.port}`,
        pool: n.pool,
        state,
        reason: STATE_REASON[failure || REASON.checkPassed],
        checks_in_a_row: Math.abs(n.streak),
      };
      if (state === 'DOWN') log.warn('server marked DOWN by its checks: it takes no new work', fields);
      else log.info('server is UP again', fields);
    }
  }

  /**
   * Brings a slot to the state its checks and lag call for (DOWN if either says so, else UP),
   * unless the admin holds it in MAINT or DRAIN; true if it changed.
   */
  private recompute(slot: number, reason: number): boolean {
    const cur = Atomics.load(this.shared.serverState, slot);
    if (cur === SERVER_STATE.maint || cur === SERVER_STATE.drain) return false;
    const want = this.checkDown.has(slot) || this.lagging.has(slot) ? SERVER_STATE.down : SERVER_STATE.up;
    return this.shared.setState(slot, cur, want, reason, Date.now());
  }

  /** While a slot drains, polls until no client holds a connection to it, then MAINT. */
  private watchDrains(): void {
    if (this.drainTimer || !this.anyDraining()) return;
    this.drainTimer = setInterval(() => {
      for (const slot of this.allSlots) {
        if (Atomics.load(this.shared.serverState, slot) !== SERVER_STATE.drain) continue;
        if (Atomics.load(this.shared.serverActive, slot) > 0) continue;
        if (this.shared.setState(slot, SERVER_STATE.drain, SERVER_STATE.maint, REASON.drained, Date.now()))
          log.info('server drained: no client holds a connection to it, now in MAINT', {
            server: this.labels.get(slot) ?? String(slot),
          });
      }
      if (!this.anyDraining() && this.drainTimer) {
        clearInterval(this.drainTimer);
        this.drainTimer = null;
      }
    }, DRAIN_POLL_MS);
  }

  private anyDraining(): boolean {
    return this.allSlots.some((slot) => Atomics.load(this.shared.serverState, slot) === SERVER_STATE.drain);
  }
}
