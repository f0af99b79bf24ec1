// The connections one worker holds to one server slot (pool, user, shard, host:port), and the
// clients of this worker waiting for one. The limit (pool_size) is global: a connection is only
// opened after a slot was taken from the shared counter, and a freed slot wakes every worker.

import { log } from '../log';
import { type ConnGroups, type SharedState, TAKE } from '../shared/state';
import { STARVING_MS } from '../shared/layout';
import { SQLSTATE } from '../protocol/sqlstate';
import type { ServerConn, ServerLogin } from './server-conn';
import { openServerConn } from './server-login';
import { ServerConnError, type ServerLink } from './server-link';

/**
 * Per-server statistics of one worker (SHOW STATS rows per server, as seed 000 shows them): plain
 * stores, one writer. Bytes of live connections are on the connections; closed ones add theirs here.
 */
export const SERVER_STAT = {
  xacts: 0,
  queries: 1,
  /** Bytes from clients to the server. */
  received: 2,
  /** Bytes from the server to clients. */
  sent: 3,
  xact_us: 4,
  query_us: 5,
  wait_us: 6,
  errors: 7,
} as const;
export const SERVER_STAT_COUNT = 8;

export interface ServerPoolSettings {
  poolSize: number;
  minPoolSize: number;
  /** ms; 0 = never. */
  idleTimeout: number;
  /** ms; 0 = no limit. */
  lifetime: number;
  connectTimeout: number;
  /** query_wait_timeout: ms a client may wait in line for a connection; 0 = no limit. */
  waitTimeout: number;
  /** The pool (database) name, for the error a client gets when it waited too long. */
  poolName: string;
  login: ServerLogin;
  /** Label for logs and SHOW DATABASES: postgres_shard_0_primary. */
  label: string;
  /** The pool's and user's groups (max_db_connections, max_user_connections). */
  groups: ConnGroups;
  /** reserve_pool_size: connections beyond poolSize for a client that waited reserveTimeout ms. */
  reserveSize: number;
  reserveTimeout: number;
  /** Proxy worker threads: a worker holding more than pool_size / workers gives slots to waiters elsewhere. */
  workers: number;
}

/**
 * A client waiting for a connection. `grant` is called synchronously from `release` (no promise
 * per transaction on the hot path), so it must not assume anything about the caller's stack; a
 * transaction-mode client keeps one waiter object for its whole life.
 */
export interface PoolWaiter {
  grant(conn: ServerConn): void;
  fail(err: ServerConnError): void;
  /** Set by the pool when it queues the waiter. */
  deadline: number;
  /** Date.now() when it started waiting. */
  since: number;
  /** Counted in the shared serverStarving table. */
  starving: boolean;
}

/** A fresh waiter for `request` (its deadline and timestamps are set when it is queued). */
export function poolWaiter(grant: (conn: ServerConn) => void, fail: (err: ServerConnError) => void): PoolWaiter {
  return { grant, fail, deadline: 0, since: 0, starving: false };
}

export class ServerPool {
  /** Idle connections, most recently used last (reused first). */
  readonly idle: ServerConn[] = [];
  /** Every open connection of this worker for this slot, idle or not. */
  readonly all = new Set<ServerConn>();
  /** Connections being opened (sv_login). */
  opening = 0;
  private readonly waiters: PoolWaiter[] = [];
  /** One timer per pool for waiters' deadlines (FIFO, so the head expires first), not one per waiter. */
  private expiryTimer: NodeJS.Timeout | null = null;
  /** How many of `waiters` are counted as starving (they are the oldest, at the head). */
  private starvingHere = 0;
  private watching = false;
  /** What the last try to open a connection for a waiter ran into (a TAKE code). */
  private blocked: number = TAKE.ok;
  /** The group this pool is counted in groupWanted for (-1: none). */
  private wanting = -1;
  /** Prepared-statement cache counters of this pool's closed connections (metrics stay monotonic). */
  readonly closedPrepare = { hits: 0, misses: 0, evictions: 0 };
  /** SERVER_STAT counters of this worker for this server. */
  readonly stats = new Float64Array(SERVER_STAT_COUNT);
  /** Removed by a reload: connections close when released. */
  retired = false;
  /** How a connection is opened and logged in (unit tests put a scripted server here). */
  opener: (login: ServerLogin) => Promise<ServerConn> = openServerConn;
  /**
   * The ParameterStatus values the newest connection of this pool reported at its login: a
   * transaction-mode client can be logged in from them without taking a connection.
   */
  loginParams: ReadonlyMap<string, string> | null = null;

  constructor(
    readonly slot: number,
    public settings: ServerPoolSettings,
    private readonly shared: SharedState,
  ) {}

  get waiting(): number {
    return this.waiters.length;
  }

  /** A connection for a client: an idle one, a new one if the global limit allows, or wait FIFO. */
  acquire(): Promise<ServerConn> {
    return new Promise((resolve, reject) => {
      const conn = this.request(poolWaiter(resolve, reject));
      if (conn) resolve(conn);
    });
  }

  /**
   * An idle connection now, or null and `w` is granted one later (a new connection when the global
   * limit allows, else the next one released, FIFO) or failed after query_wait_timeout.
   */
  request(w: PoolWaiter): ServerConn | null {
    const conn = this.takeIdle();
    if (conn) return conn;
    if (this.waiters.length === 0 && this.mayTakeSlot() && this.take(false)) {
      this.openWithSlot().then(
        (c) => w.grant(c),
        (e) => w.fail(e as ServerConnError),
      );
      return null;
    }
    const now = Date.now();
    w.deadline = this.settings.waitTimeout > 0 ? now + this.settings.waitTimeout : Infinity;
    w.since = now;
    w.starving = false;
    this.waiters.push(w);
    Atomics.add(this.shared.serverWaiters, this.slot, 1);
    if (this.expiryTimer === null && w.deadline !== Infinity) this.armExpiry(w.deadline - now);
    this.watch();
    return null;
  }

  private armExpiry(ms: number): void {
    this.expiryTimer = setTimeout(
      () => {
        this.expiryTimer = null;
        const now = Date.now();
        // Usually only the head is due; a reload that shortened query_wait_timeout can make a later one due first.
        for (const w of this.waiters.filter((x) => x.deadline <= now)) this.expire(w);
        if (this.waiters.length === 0) return;
        let next = Infinity;
        for (const w of this.waiters) next = Math.min(next, w.deadline);
        if (next !== Infinity) this.armExpiry(Math.max(1, next - now));
      },
      Math.min(ms, 0x7fffffff),
    );
    this.expiryTimer.unref?.();
  }

  /** An idle connection right now, without waiting (undefined if none); the transaction-mode fast path. */
  takeIdleNow(): ServerConn | undefined {
    return this.waiters.length === 0 ? this.takeIdle() : undefined;
  }

  /** Most recently used idle connection that is still within server_lifetime. */
  private takeIdle(): ServerConn | undefined {
    const lifetime = this.settings.lifetime;
    while (this.idle.length > 0) {
      const conn = this.idle.pop()!;
      if (conn.closed) continue;
      if (lifetime > 0 && Date.now() - conn.createdAt >= lifetime) {
        conn.close('server_lifetime reached');
        continue;
      }
      this.lend(conn);
      return conn;
    }
    return undefined;
  }

  /** Counts a connection as held by a client (shared serverActive, for load_balancing_mode = "loc"). */
  private lend(conn: ServerConn): void {
    if (conn.lent) return;
    conn.lent = true;
    Atomics.add(this.shared.serverActive, this.slot, 1);
  }

  private unlend(conn: ServerConn): void {
    if (!conn.lent) return;
    conn.lent = false;
    Atomics.sub(this.shared.serverActive, this.slot, 1);
  }

  /** Takes a connection under pool_size (plus reserve_pool_size if `reserve`) and the group limits. */
  private take(reserve: boolean): boolean {
    const s = this.settings;
    this.blocked = this.shared.takeConn(this.slot, s.poolSize + (reserve ? s.reserveSize : 0), s.groups);
    if (this.blocked !== TAKE.ok) return false;
    if (reserve && Atomics.load(this.shared.serverConns, this.slot) > s.poolSize)
      log.info('taking a connection from the reserve pool', { server: s.label, reserve_pool_size: s.reserveSize });
    return true;
  }

  /** Counts this pool in groupWanted while its waiters are held back by max_db/user_connections. */
  private updateWant(): void {
    const g = this.settings.groups;
    const want =
      this.waiters.length === 0 ? -1 : this.blocked === TAKE.db ? g.db : this.blocked === TAKE.user ? g.user : -1;
    if (want >= 0) this.shared.signalStarving(); // other pools of the group close an idle connection for it
    if (want === this.wanting) return;
    if (this.wanting >= 0) Atomics.sub(this.shared.groupWanted, this.wanting, 1);
    this.wanting = want;
    if (want >= 0) Atomics.add(this.shared.groupWanted, want, 1);
  }

  /** Whether clients of another pool wait at a group limit this pool's connections count in. */
  private groupNeedsRoom(): boolean {
    const g = this.settings.groups;
    return this.shared.groupWants(g.db, g.dbMax) || this.shared.groupWants(g.user, g.userMax);
  }

  private async openWithSlot(): Promise<ServerConn> {
    this.opening++;
    try {
      let conn: ServerConn;
      try {
        conn = await this.opener(this.settings.login);
      } catch (e) {
        // Ended by the server as its login completed (pg_terminate_backend, a shutdown starting):
        // nothing was sent on it, so one fresh try is safe; a server going away refuses that one.
        if (!(e instanceof ServerConnError) || !e.endedAtLogin) throw e;
        log.debug('server ended a new connection at login; trying once more', {
          server: this.settings.label,
          reason: e.message,
        });
        conn = await this.opener(this.settings.login);
      }
      this.all.add(conn);
      this.loginParams = new Map(conn.params);
      conn.onClosed = (c, reason) => this.onConnClosed(c, reason);
      this.lend(conn);
      log.debug('server connection opened', { server: this.settings.label, server_id: conn.id });
      return conn;
    } catch (e) {
      this.shared.releaseConn(this.slot, this.settings.groups);
      throw e instanceof ServerConnError ? e : new ServerConnError((e as Error).message, SQLSTATE.CONNECTION_FAILURE);
    } finally {
      this.opening--;
    }
  }

  private onConnClosed(conn: ServerConn, reason: string): void {
    if (!this.all.delete(conn)) return;
    this.unlend(conn);
    this.closedPrepare.hits += conn.prepareHits;
    this.closedPrepare.misses += conn.prepareMisses;
    this.closedPrepare.evictions += conn.prepareEvictions;
    this.stats[SERVER_STAT.received] += conn.bytesSent;
    this.stats[SERVER_STAT.sent] += conn.bytesReceived;
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    this.shared.releaseConn(this.slot, this.settings.groups);
    log.debug('server connection closed', { server: this.settings.label, server_id: conn.id, reason });
    this.serveWaiters();
  }

  private dequeue(w: PoolWaiter): void {
    const i = this.waiters[0] === w ? 0 : this.waiters.indexOf(w);
    if (i < 0) return;
    if (i === 0) this.waiters.shift();
    else this.waiters.splice(i, 1);
    Atomics.sub(this.shared.serverWaiters, this.slot, 1);
    if (w.starving) {
      this.starvingHere--;
      Atomics.sub(this.shared.serverStarving, this.slot, 1);
    }
  }

  /** Marks local waiters older than STARVING_MS as starving in the shared count (FIFO: the oldest are first). */
  private markStarving(now: number): void {
    const before = this.starvingHere;
    for (let i = this.starvingHere; i < this.waiters.length; i++) {
      const w = this.waiters[i];
      if (w.starving) continue;
      if (now - w.since < STARVING_MS) break;
      w.starving = true;
      this.starvingHere++;
      Atomics.add(this.shared.serverStarving, this.slot, 1);
    }
    if (this.starvingHere > before) this.shared.signalStarving();
  }

  /**
   * A worker at or above its share of the pool leaves freed slots to workers whose clients starve;
   * otherwise a slot given away would come straight back and connections would churn.
   */
  private mayTakeSlot(): boolean {
    return (
      this.all.size + this.opening < Math.ceil(this.settings.poolSize / this.settings.workers) ||
      this.remoteStarving() <= 0
    );
  }

  /** Starving waiters on other workers. */
  private remoteStarving(): number {
    return Atomics.load(this.shared.serverStarving, this.slot) - this.starvingHere;
  }

  private expire(w: PoolWaiter): void {
    this.dequeue(w);
    this.updateWant();
    const s = this.settings;
    const limit =
      this.blocked === TAKE.db
        ? `pool "${s.poolName}" is at max_db_connections = ${s.groups.dbMax}`
        : this.blocked === TAKE.user
          ? `its user is at max_user_connections = ${s.groups.userMax}`
          : `every one of pool "${s.poolName}"'s ${s.poolSize} connections (pool_size) stayed in use`;
    w.fail(
      new ServerConnError(
        `no server connection to ${s.label} became free within query_wait_timeout = ${s.waitTimeout} ms: ${limit}`,
        SQLSTATE.TOO_MANY_CONNECTIONS,
      ),
    );
  }

  /** Give waiters what can be had: idle connections first, then new slots. */
  private serveWaiters(): void {
    while (this.waiters.length > 0) {
      const conn = this.takeIdle();
      if (conn) {
        const w = this.waiters[0];
        this.dequeue(w);
        w.grant(conn);
        continue;
      }
      const s = this.settings;
      const reserve = s.reserveSize > 0 && Date.now() - this.waiters[0].since >= s.reserveTimeout;
      if (!this.mayTakeSlot() || !this.take(reserve)) return;
      const w = this.waiters[0];
      this.dequeue(w);
      this.openWithSlot().then(
        (c) => w.grant(c),
        (e) => w.fail(e as ServerConnError),
      );
    }
  }

  /** While this worker has waiters, wake whenever any worker frees a slot of this server. */
  private watch(): void {
    if (this.watching) return;
    this.watching = true;
    const loop = () => {
      if (this.waiters.length === 0) {
        this.watching = false;
        return;
      }
      // Wait on the signal of the limit that held the last try back: the slot's, or its group's.
      const g = this.settings.groups;
      const [arr, at] =
        this.blocked === TAKE.db
          ? [this.shared.groupSignal, g.db]
          : this.blocked === TAKE.user
            ? [this.shared.groupSignal, g.user]
            : [this.shared.serverSignal, this.slot];
      const seen = Atomics.load(arr, at);
      this.serveWaiters();
      this.updateWant();
      if (this.waiters.length === 0) {
        this.watching = false;
        return;
      }
      this.markStarving(Date.now());
      const r = Atomics.waitAsync(arr, at, seen, STARVING_MS);
      if (r.async) r.value.then(loop);
      else setImmediate(loop);
    };
    loop();
  }

  /**
   * A client is done with a connection that is clean (reset already done by the caller).
   * Local waiters get it directly; if other workers wait for this server, it is closed so that
   * its slot goes to them; otherwise it becomes idle. Takes the session's view of the connection:
   * every ServerLink a pool lends is one of its ServerConns.
   */
  release(link: ServerLink): void {
    const conn = link as ServerConn;
    conn.owner = null;
    if (conn.closed) return;
    this.unlend(conn);
    const now = Date.now();
    if (this.retired) return conn.close('pool removed by reload');
    if (conn.doomed) return conn.close(conn.doomed);
    if (conn.addressStale) return conn.close(`DNS: ${conn.login.host} moved from ${conn.address}; draining`);
    if (conn.closeNeeded) return conn.close('RECONNECT by admin');
    if (this.settings.lifetime > 0 && now - conn.createdAt >= this.settings.lifetime)
      return conn.close('server_lifetime reached');
    // Fairness across workers without churn: a slot moves (close here, open there) only to a client
    // that has waited longer than STARVING_MS, and only from a worker above its share of the pool.
    if (this.shouldGiveSlot(this.waiters.length === 0))
      return conn.close('slot handed to a client starving on another worker');
    if (this.waiters.length === 0 && Atomics.load(this.shared.serverConns, this.slot) > this.settings.poolSize)
      return conn.close('above pool_size (a reserve connection, or pool_size lowered) and nobody waiting');
    if (this.waiters.length === 0 && this.groupNeedsRoom())
      return conn.close('handed to a client waiting at max_db_connections / max_user_connections');
    if (this.waiters.length > 0) {
      const w = this.waiters[0];
      this.dequeue(w);
      this.lend(conn);
      w.grant(conn);
      return;
    }
    conn.lastUsed = now;
    this.idle.push(conn);
  }

  /** Janitor: idle timeout, lifetime, min_pool_size share, slots wanted by other workers. */
  sweep(now: number, minShare: number): void {
    const s = this.settings;
    for (let i = 0; i < this.idle.length; ) {
      const c = this.idle[i];
      const tooOld = s.lifetime > 0 && now - c.createdAt >= s.lifetime;
      const tooIdle = s.idleTimeout > 0 && now - c.lastUsed >= s.idleTimeout && this.all.size > minShare;
      const wanted = this.shouldGiveSlot(true);
      const moved = c.addressStale;
      if (this.retired || tooOld || tooIdle || wanted || moved) {
        c.close(
          this.retired
            ? 'pool removed by reload'
            : tooOld
              ? 'server_lifetime reached'
              : tooIdle
                ? 'idle_timeout reached'
                : moved
                  ? `DNS: ${c.login.host} moved from ${c.address}; draining`
                  : 'slot handed to a client starving on another worker',
        );
        continue; // close() removed it from idle
      }
      i++;
    }
    if (this.all.size + this.opening < minShare) this.openIdle('min_pool_size');
  }

  /** On every starving signal: an idle connection here while a client starves on another worker. */
  giveIdleToStarving(): void {
    if (this.idle.length === 0) return;
    if (this.shouldGiveSlot(true)) this.idle[0].close('slot handed to a client starving on another worker');
    else if (this.groupNeedsRoom())
      this.idle[0].close('handed to a client waiting at max_db_connections / max_user_connections');
  }

  /**
   * Whether to close one connection so a client starving on another worker gets the slot: only
   * from above this worker's share (above the floor share when nobody here needs it), so workers
   * converge on pool_size / workers each instead of trading connections.
   */
  private shouldGiveSlot(noneWaitingHere: boolean): boolean {
    if (this.remoteStarving() <= 0) return false;
    const per = this.settings.poolSize / this.settings.workers;
    return this.all.size > Math.ceil(per) || (noneWaitingHere && this.all.size > Math.floor(per));
  }

  /** A connection ahead of need (a server about to become primary), unless one is idle or opening. */
  warm(): void {
    if (this.idle.length === 0 && this.opening === 0) this.openIdle('a server about to become primary');
  }

  private openIdle(why: string): void {
    const s = this.settings;
    if (this.retired || this.shared.takeConn(this.slot, s.poolSize, s.groups) !== TAKE.ok) return;
    this.openWithSlot().then(
      (c) => this.release(c),
      (e) => log.warn(`cannot open a connection for ${why}`, { server: s.label, error: (e as Error).message }),
    );
  }

  /** Closes idle connections now (shutdown, reload removal). */
  closeIdle(reason: string): void {
    for (const c of this.idle.slice()) c.close(reason);
  }

  /** Rejects every waiter (shutdown). */
  rejectWaiters(err: ServerConnError): void {
    for (const w of this.waiters.slice()) {
      this.dequeue(w);
      w.fail(err);
    }
    this.updateWant();
  }
}
