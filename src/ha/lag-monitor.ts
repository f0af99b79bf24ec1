// Replica lag, measured in the HA thread every replica_lag_interval for pools that use it
// (max_replica_lag, max_replica_lag_ms, read_your_writes): one monitoring connection per server
// (pool's first user, shard database) asks each node for its WAL position; a replica's lag is the
// primary's insert position minus its replay position. Results go to the shared table, where the
// proxy workers read them when they choose a replica.

import type { Config, PoolConfig } from '../config/types';
import type { ServerConn, ServerLogin } from '../pool/server-conn';
import { openServerConn } from '../pool/server-login';
import type { Slots } from '../pool/slots';
import { monitorLogin, slotsOf } from './monitor-login';
import type { SharedState } from '../shared/state';
import { log } from '../log';

/** In recovery?, and the replay (replica) or insert (primary) position in bytes. */
const PROBE = `SELECT pg_is_in_recovery(),
  (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END
    - '0/0'::pg_lsn)::text`;

interface Node {
  key: string;
  login: ServerLogin;
  /** Shared slots of this host:port (every user of the pool, this shard). */
  slots: number[];
  conn: ServerConn | null;
  connecting: boolean;
  maxBytes: number;
  maxMs: number;
  /** Over a limit at the last measurement (logged on each change). */
  lagging: boolean;
}

interface Shard {
  nodes: Node[];
  /** The primary's WAL position at each measurement, oldest first (the last 10 minutes). */
  history: { at: number; lsn: number }[];
}

/**
 * How long ago the primary wrote the oldest WAL a replica has not replayed: the time of the last
 * measurement at which the primary was still at or behind the replica's replay position. (Not
 * now() - pg_last_xact_replay_timestamp(): on a quiet primary that grows although nothing is missing.)
 */
export function lagMs(history: { at: number; lsn: number }[], replayLsn: number, now: number): number {
  if (history.length === 0 || replayLsn >= history[history.length - 1].lsn) return 0;
  for (let i = history.length - 1; i >= 0; i--) if (history[i].lsn <= replayLsn) return now - history[i].at;
  return now - history[0].at;
}

export function usesLag(p: PoolConfig): boolean {
  return p.max_replica_lag > 0 || p.max_replica_lag_ms > 0 || (p.read_your_writes && splitsReads(p));
}

/** read_your_writes matters only where reads can leave the primary: splitting on, and more than one server. */
function splitsReads(p: PoolConfig): boolean {
  const routed = (p.query_parser_enabled && p.query_parser_read_write_splitting) || p.default_role === 'replica';
  return routed && p.shards.some((s) => s.servers.length > 1);
}

export class LagMonitor {
  private shards: Shard[] = [];
  private nodes = new Map<string, Node>();
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(
    private readonly shared: SharedState,
    /** Told when a replica starts or stops lagging past its limits (server states: DOWN while it lags). */
    private readonly onLagging: (slots: number[], lagging: boolean) => void = () => {},
  ) {}

  update(cfg: Config, slots: Slots): void {
    const keep = new Map<string, Node>();
    this.shards = [];
    for (const pool of cfg.pools) {
      if (!usesLag(pool) || pool.users.length === 0) continue;
      for (const shard of pool.shards) {
        const nodes: Node[] = [];
        for (const a of shard.servers) {
          const key = `${pool.name}\0${shard.index}\0${a.host}:${a.port}`;
          const old = this.nodes.get(key);
          const node: Node = old ?? {
            key,
            login: undefined as unknown as ServerLogin,
            slots: [],
            conn: null,
            connecting: false,
            maxBytes: 0,
            maxMs: 0,
            lagging: false,
          };
          node.maxBytes = pool.max_replica_lag;
          node.maxMs = pool.max_replica_lag_ms;
          node.login = monitorLogin(cfg, pool, shard, a, 'openproxy lag monitor', pool.connect_timeout);
          node.slots = slotsOf(slots, pool, shard, a);
          keep.set(key, node);
          nodes.push(node);
        }
        const old = this.shards.find(
          (sh) => sh.nodes.length === nodes.length && sh.nodes.every((n, i) => n === nodes[i]),
        );
        this.shards.push({ nodes, history: old?.history ?? [] });
      }
    }
    for (const [key, n] of this.nodes) if (!keep.has(key)) n.conn?.close('no longer monitored');
    this.nodes = keep;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.shards.length > 0) {
      this.timer = setInterval(() => void this.tick(), cfg.general.replica_lag_interval);
      void this.tick();
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    for (const n of this.nodes.values()) n.conn?.close('stopping');
  }

  private async tick(): Promise<void> {
    if (this.running) return; // the previous round is still waiting on a slow server
    this.running = true;
    try {
      await Promise.all(this.shards.map((s) => this.measure(s)));
    } finally {
      this.running = false;
    }
  }

  private async measure(shard: Shard): Promise<void> {
    const sent = Date.now();
    const results = await Promise.all(shard.nodes.map((n) => this.probe(n)));
    const now = Date.now();
    const primary = results.find((r) => r && !r.recovery);
    if (primary) {
      shard.history.push({ at: now, lsn: primary.lsn });
      while (shard.history.length > 1 && now - shard.history[0].at > 600000) shard.history.shift();
    }
    for (let i = 0; i < shard.nodes.length; i++) {
      const r = results[i];
      const n = shard.nodes[i];
      if (r?.recovery && primary) {
        const bytes = Math.max(0, primary.lsn - r.lsn);
        const ms = bytes === 0 ? 0 : lagMs(shard.history, r.lsn, now);
        const lagging = (n.maxBytes > 0 && bytes > n.maxBytes) || (n.maxMs > 0 && ms > n.maxMs);
        if (lagging !== n.lagging) {
          n.lagging = lagging;
          const fields = {
            server: `${n.login.host}:${n.login.port}`,
            lag_bytes: bytes,
            lag_ms: ms,
            max_replica_lag: n.maxBytes,
            max_replica_lag_ms: n.maxMs,
          };
          if (lagging) log.warn('replica lags behind the primary: it takes no reads until it catches up', fields);
          else log.info('replica caught up: it takes reads again', fields);
          this.onLagging(n.slots, lagging);
        }
      }
      for (const slot of n.slots) {
        if (!r || (r.recovery && !primary)) {
          // Unknown: not measured now. Readers treat a stale measurement as lagging.
          continue;
        }
        const lagBytes = r.recovery ? Math.max(0, primary!.lsn - r.lsn) : 0;
        this.shared.serverReplayLsn[slot] = r.lsn;
        this.shared.serverLagBytes[slot] = lagBytes;
        this.shared.serverLagMs[slot] = lagBytes === 0 ? 0 : lagMs(shard.history, r.lsn, now);
        this.shared.serverLagAt[slot] = now;
        this.shared.serverLsnSince[slot] = sent;
      }
    }
  }

  private async probe(n: Node): Promise<{ recovery: boolean; lsn: number } | null> {
    if (!n.conn || n.conn.closed) {
      if (n.connecting) return null;
      n.connecting = true;
      try {
        n.conn = await openServerConn(n.login);
      } catch (e) {
        log.debug('lag monitor cannot connect', {
          server: `${n.login.host}:${n.login.port}`,
          error: (e as Error).message,
        });
        n.conn = null;
        return null;
      } finally {
        n.connecting = false;
      }
    }
    const r = await n.conn.run(PROBE, n.login.connectTimeout);
    if (!r.ok || r.rows.length !== 1) return null;
    const [rec, lsn] = r.rows[0];
    return { recovery: rec === 't', lsn: Number(lsn) };
  }
}
