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
import { decideRole, fetchPatroni, patroniSaysPrimary } from './patroni';
import { EtcdWatch } from './etcd-watch';

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
  /** When Patroni last called it primary (ms epoch): during a burst, SQL alone then confirms the promotion. */
  patroniPrimaryAt: number;
}

const NAMES = ['unknown', 'primary', 'replica'];
/** After a leader-key change: probe every BURST_EVERY_MS until a new primary is confirmed, at most BURST_MS. */
const BURST_EVERY_MS = 5;
const BURST_MS = 15000;
/** How long Patroni's "primary" stands in for a fresh REST answer during a burst. */
const REST_FRESH_MS = 500;

/** The servers of Patroni clusters whose leader key one etcd watch follows. */
interface Watched {
  watch: EtcdWatch;
  nodes: Probed[];
  /** Fast probing runs until then (0 = not bursting), since then. */
  until: number;
  since: number;
  /** host:port of the member the leader key names (from its member key's conn_url); '' = none or not known. */
  leader: string;
  timer: NodeJS.Timeout | null;
}

export class RoleMonitor {
  private nodes = new Map<string, Probed>();
  private timer: NodeJS.Timeout | null = null;
  private watched = new Map<string, Watched>();
  private timeoutMs = 1000;

  constructor(private readonly shared: SharedState) {}

  update(cfg: Config, slots: Slots): void {
    const keep = new Map<string, Probed>();
    const watches = new Map<string, Probed[]>();
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
            patroniPrimaryAt: 0,
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
          if (shard.etcd_hosts.length > 0) {
            const ns = shard.patroni_namespace.replace(/\/+$/, '');
            watches.set(`${shard.etcd_hosts.join(',')}\0${ns}/${shard.patroni_scope}/leader`, [
              ...(watches.get(`${shard.etcd_hosts.join(',')}\0${ns}/${shard.patroni_scope}/leader`) ?? []),
              node,
            ]);
          }
        }
      }
    }
    this.timeoutMs = cfg.general.healthcheck_timeout;
    this.updateWatches(watches);
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
    this.updateWatches(new Map());
  }

  /** One etcd watch per (etcd hosts, leader key); a watch no shard needs any more is stopped. */
  private updateWatches(wanted: Map<string, Probed[]>): void {
    for (const [key, w] of this.watched) {
      if (wanted.has(key)) continue;
      w.watch.stop();
      if (w.timer) clearTimeout(w.timer);
      this.watched.delete(key);
    }
    for (const [key, nodes] of wanted) {
      const have = this.watched.get(key);
      if (have) {
        have.nodes = nodes;
        continue;
      }
      const [hosts, leaderKey] = key.split('\0');
      const w: Watched = { watch: null as unknown as EtcdWatch, nodes, until: 0, since: 0, leader: '', timer: null };
      w.watch = new EtcdWatch(hosts.split(','), leaderKey, (leader) => {
        log.info('Patroni leader key changed: probing the servers now', { key: leaderKey, leader: leader || '(none)' });
        w.leader = '';
        if (leader) void this.leaderAddress(w, leaderKey.replace(/\/leader$/, `/members/${leader}`));
        this.burst(w);
      });
      this.watched.set(key, w);
      w.watch.start();
    }
  }

  /** Probes the watched servers every BURST_EVERY_MS until one becomes primary (or BURST_MS passed). */
  private burst(w: Watched): void {
    w.since = Date.now();
    w.until = w.since + BURST_MS;
    const loop = () => {
      w.timer = null;
      if (Date.now() >= w.until) return;
      for (const n of w.nodes) if (!n.busy) void this.probe(n, this.timeoutMs);
      w.timer = setTimeout(loop, BURST_EVERY_MS);
    };
    if (!w.timer) loop();
  }

  /** Where the new leader's PostgreSQL listens: its member key's conn_url. */
  private async leaderAddress(w: Watched, memberKey: string): Promise<void> {
    try {
      const member = JSON.parse(await w.watch.get(memberKey)) as { conn_url?: string };
      const u = new URL(member.conn_url ?? '');
      w.leader = `${u.hostname}:${u.port || 5432}`;
      // Workers open a connection to it now: one opened while it is a standby writes once it is promoted.
      const now = Date.now();
      for (const n of w.nodes) {
        if (`${n.login.host}:${n.login.port}` !== w.leader) continue;
        for (const slot of n.slots) this.shared.serverWarmAt[slot] = now;
      }
      this.shared.signalState();
    } catch {
      w.leader = ''; // REST answers decide, as without the watch
    }
  }

  /** The node is the one etcd's leader key names, during a burst. */
  private etcdLeader(n: Probed): boolean {
    const at = `${n.login.host}:${n.login.port}`;
    for (const w of this.watched.values())
      if (w.until > Date.now() && w.leader === at && w.nodes.includes(n)) return true;
    return false;
  }

  private bursting(n: Probed): boolean {
    for (const w of this.watched.values()) if (w.until > Date.now() && w.nodes.includes(n)) return true;
    return false;
  }

  /**
   * A probe that started at `sent` confirmed a primary: a burst ends when it became primary just
   * now, or was still primary a second into the burst (the leader key changed with no failover,
   * e.g. the watch reconnected).
   */
  private primaryFound(n: Probed, became: boolean, sent: number): void {
    for (const w of this.watched.values()) {
      if (w.until > 0 && w.nodes.includes(n) && (became || sent >= w.since + 1000)) w.until = 0;
    }
  }

  private tick(timeoutMs: number): void {
    for (const n of this.nodes.values()) if (!n.busy) void this.probe(n, timeoutMs);
  }

  private async probe(n: Probed, timeoutMs: number): Promise<void> {
    n.busy = true;
    const sent = Date.now();
    let inRecovery: boolean | null = null;
    let sqlWhy = '';
    // In a burst, a node Patroni called primary within REST_FRESH_MS needs only the SQL probe to
    // confirm that its promotion finished (Patroni's REST answer takes tens of ms; the SQL one ~1 ms).
    // The member etcd's leader key names is Patroni's leader as surely as its REST answer says so.
    const leader = n.patroni !== null && this.etcdLeader(n);
    const reuse = leader || (n.patroni !== null && this.bursting(n) && sent - n.patroniPrimaryAt < REST_FRESH_MS);
    const rest = !n.patroni
      ? null
      : reuse
        ? Promise.resolve({ role: 'primary', state: 'running' })
        : fetchPatroni(n.patroni.host, n.patroni.port, timeoutMs).then((a) => {
            if (a && patroniSaysPrimary(a)) n.patroniPrimaryAt = Date.now();
            return a;
          });
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
    if (leader && inRecovery !== null)
      why = `etcd's leader key names it; ${inRecovery ? 'still in recovery' : 'out of recovery'}`;
    n.busy = false;
    const now = Date.now();
    if (role === ROLE.primary && this.watched.size > 0) this.primaryFound(n, n.role !== ROLE.primary, sent);
    let changed = false;
    for (const slot of n.slots) {
      changed ||= Atomics.exchange(this.shared.serverRole, slot, role) !== role || this.shared.serverRoleAt[slot] === 0;
      this.shared.serverRoleAt[slot] = now;
    }
    // Writes waiting for a primary look again at once.
    if (changed) this.shared.signalState();
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
