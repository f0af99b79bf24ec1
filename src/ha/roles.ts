// Role discovery for `auto` servers, in the HA thread every renew_interval: each one is asked
// pg_is_in_recovery() over a monitoring connection (the pool's first user, shard database) and,
// in a shard with use_patroni, its Patroni REST API at the same time (patroni.ts combines the two).
// The answer goes to the shared role table. A server that cannot be reached or does not answer is
// "unknown" — never its old role — so no worker sends writes to a node that may have been demoted.

import type { Config } from '../config/types';
import type { ServerConn, ServerLogin } from '../pool/server-conn';
import { openServerConn } from '../pool/server-login';
import type { Slots } from '../pool/slots';
import { monitorLogin, slotsOf } from './monitor-login';
import type { SharedState } from '../shared/state';
import { ROLE } from '../shared/layout';
import { log } from '../log';
import { decideRole, fetchPatroni } from './patroni';

interface Probed {
  login: ServerLogin;
  slots: number[];
  conn: ServerConn | null;
  role: number;
  /** A probe is running (a slow server must not pile probes up). */
  busy: boolean;
  /** use_patroni: the member's REST API. */
  patroni: { host: string; port: number } | null;
  why: string;
}

const NAMES = ['unknown', 'primary', 'replica'];

export class RoleMonitor {
  private nodes = new Map<string, Probed>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly shared: SharedState) {}

  update(cfg: Config, slots: Slots): void {
    const keep = new Map<string, Probed>();
    for (const pool of cfg.pools) {
      if (pool.users.length === 0) continue;
      for (const shard of pool.shards) {
        for (const a of shard.servers) {
          if (a.role !== 'auto') continue;
          const key = `${pool.name}\0${shard.index}\0${a.host}:${a.port}`;
          const node: Probed = this.nodes.get(key) ?? {
            login: undefined as unknown as ServerLogin,
            slots: [],
            conn: null,
            role: -1,
            busy: false,
            patroni: null,
            why: '',
          };
          node.patroni = shard.use_patroni ? { host: a.host, port: a.patroni_port ?? shard.patroni_port } : null;
          node.login = monitorLogin(
            cfg,
            pool,
            shard,
            a,
            'openproxy role probe',
            Math.min(pool.connect_timeout, cfg.general.healthcheck_timeout),
          );
          node.slots = slotsOf(slots, pool, shard, a);
          keep.set(key, node);
        }
      }
    }
    for (const [key, n] of this.nodes) if (!keep.has(key)) n.conn?.close('no longer probed');
    this.nodes = keep;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (keep.size > 0) {
      this.timer = setInterval(() => this.tick(cfg.general.healthcheck_timeout), cfg.general.renew_interval);
      this.tick(cfg.general.healthcheck_timeout);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    for (const n of this.nodes.values()) n.conn?.close('stopping');
  }

  private tick(timeoutMs: number): void {
    for (const n of this.nodes.values()) if (!n.busy) void this.probe(n, timeoutMs);
  }

  private async probe(n: Probed, timeoutMs: number): Promise<void> {
    n.busy = true;
    let inRecovery: boolean | null = null;
    let sqlWhy = '';
    const rest = n.patroni ? fetchPatroni(n.patroni.host, n.patroni.port, timeoutMs) : null;
    try {
      if (!n.conn || n.conn.closed) n.conn = await openServerConn(n.login);
      const r = await n.conn.run('SELECT pg_is_in_recovery()', timeoutMs);
      if (r.ok && r.rows.length === 1) inRecovery = r.rows[0][0] === 't';
      else sqlWhy = 'no answer to pg_is_in_recovery()';
    } catch (e) {
      sqlWhy = (e as Error).message;
      n.conn = null;
    }
    let role: number;
    let why: string;
    if (rest) ({ role, why } = decideRole(await rest, inRecovery, sqlWhy));
    else {
      role = inRecovery === null ? ROLE.unknown : inRecovery ? ROLE.replica : ROLE.primary;
      why = sqlWhy;
    }
    n.busy = false;
    const now = Date.now();
    for (const slot of n.slots) {
      Atomics.store(this.shared.serverRole, slot, role);
      this.shared.serverRoleAt[slot] = now;
    }
    if (role !== n.role || (n.patroni && why !== n.why)) {
      const fields = {
        server: `${n.login.host}:${n.login.port}`,
        from: n.role < 0 ? 'not probed' : NAMES[n.role],
        to: NAMES[role],
        source: n.patroni ? 'patroni + sql probe' : 'sql probe',
        ...(why ? { reason: why } : {}),
      };
      if (n.role === ROLE.primary && role !== ROLE.primary)
        log.warn('server is no longer primary: its connections are closed, writes wait for a primary', fields);
      else if (role !== n.role) log.info('server role', fields);
      else log.debug('server role reason', fields);
      n.role = role;
      n.why = why;
    }
  }
}
