// The HTTP side on prometheus_exporter_port: /metrics (Prometheus), /health (for load balancers:
// 200 only while openproxy can serve: listening, and a primary of every pool reachable), and a
// live status page at / (pools, servers with role and ban state, clients, VRRP state) that
// refreshes itself from /status.json. The status page and /status.json name clients and users, so
// they ask for HTTP basic credentials (admin_username or one of stats_users) unless
// status_page_public opens them.

import { tcpReachable } from '../ha/primary-reachable';
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { Exporter } from './exporter';
import type { Config } from '../config/types';
import { STATUS_PAGE } from './status-page';
import { log } from '../log';

export interface HttpDeps {
  exporter: Exporter;
  cfg(): Config;
  listening(): boolean;
  /** VRRP state for the status page and /health text. */
  vrrp(): { state: string; detail: string };
}

/** TCP reachability of host:port within ms. */
export class HealthCheck {
  private cached: { at: number; ok: boolean; problems: string[] } | null = null;
  constructor(private readonly deps: HttpDeps) {}

  async check(): Promise<{ ok: boolean; problems: string[] }> {
    if (this.cached && Date.now() - this.cached.at < 1000) return this.cached;
    const problems: string[] = [];
    if (!this.deps.listening()) problems.push('not listening for clients');
    const cfg = this.deps.cfg();
    await Promise.all(
      cfg.pools.flatMap((p) =>
        p.shards.map(async (shard) => {
          const primaries = shard.servers.filter((s) => s.role !== 'replica');
          const ok = (
            await Promise.all(primaries.map((a) => tcpReachable(a.host, a.port, Math.min(1000, p.connect_timeout))))
          ).some(Boolean);
          if (!ok)
            problems.push(
              `pool ${p.name} shard ${shard.index}: no primary reachable ` +
                `(${primaries.map((a) => `${a.host}:${a.port}`).join(', ') || 'none configured'})`,
            );
        }),
      ),
    );
    this.cached = { at: Date.now(), ok: problems.length === 0, problems };
    return this.cached;
  }
}

export function startHttp(port: number, host: string, deps: HttpDeps): http.Server {
  const health = new HealthCheck(deps);
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const send = (code: number, type: string, body: string) => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    const fail = (e: unknown) => send(500, 'text/plain', `error: ${(e as Error).message}\n`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'GET only\n');
    switch (url) {
      case '/metrics':
        return void deps.exporter.metrics().then((body) => send(200, deps.exporter.contentType, body), fail);
      case '/health':
        return void health
          .check()
          .then((h) => send(h.ok ? 200 : 503, 'text/plain', h.ok ? 'ok\n' : `${h.problems.join('\n')}\n`), fail);
      case '/status.json':
        if (!allowed(deps.cfg(), req.headers.authorization)) return challenge(res);
        return void status(deps).then((s) => send(200, 'application/json', JSON.stringify(s)), fail);
      case '/':
        if (!allowed(deps.cfg(), req.headers.authorization)) return challenge(res);
        return send(200, 'text/html; charset=utf-8', STATUS_PAGE);
      default:
        return send(404, 'text/plain', 'not found: try /, /metrics, /health, /status.json\n');
    }
  });
  server.on('error', (e) => log.error('cannot serve metrics / status', { host, port, error: e.message }));
  server.listen(port, host, () => log.info('metrics and status page listening', { host, port }));
  return server;
}

function challenge(res: http.ServerResponse): void {
  res.writeHead(401, { 'www-authenticate': 'Basic realm="openproxy", charset="UTF-8"', 'content-type': 'text/plain' });
  res.end('credentials required: admin_username or one of stats_users (status_page_public opens this page)\n');
}

/** Basic credentials of admin_username or a stats_users entry (with its pool password), or an open page. */
export function allowed(cfg: Config, header: string | undefined): boolean {
  const g = cfg.general;
  if (g.status_page_public) return true;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header ?? '');
  if (!m) return false;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return false;
  const user = text.slice(0, colon);
  const given = text.slice(colon + 1);
  let expected: string | undefined;
  if (user === g.admin_username) expected = g.admin_userpassword;
  else if (g.stats_users.includes(user))
    expected = cfg.pools.flatMap((p) => p.users).find((u) => u.username === user && u.password)?.password;
  // Compared as digests: equal length, constant time, whatever the password's length.
  const digest = (v: string) => createHash('sha256').update(v).digest();
  return timingSafeEqual(digest(given), digest(expected ?? `\0${given}`)) && expected !== undefined;
}

async function status(deps: HttpDeps) {
  const ex = deps.exporter;
  await ex.refresh();
  return {
    generated: new Date().toISOString(),
    vrrp: deps.vrrp(),
    pools: ex.mergedPools().map((p) => ({
      database: p.database,
      user: p.user,
      pool_mode: p.pool_mode,
      cl_active: p.cl_active,
      cl_idle: p.cl_idle,
      cl_waiting: p.cl_waiting,
      sv_active: p.sv_active,
      sv_idle: p.sv_idle,
      sv_used: p.sv_used,
      sv_login: p.sv_login,
    })),
    servers: ex.serverRows().map((s) => ({
      name: s.label,
      user: s.user,
      server: s.server,
      role: s.currentRole,
      role_source: s.roleSource,
      configured_role: s.role,
      banned: s.banned,
      ban_reason: s.reason,
      state: s.state,
      state_since: s.stateSince > 0 ? new Date(s.stateSince).toISOString() : '',
      state_reason: s.stateReason,
      connections: s.conns,
      pool_size: s.poolSize,
      lag_bytes: s.lagAt > 0 ? s.lagBytes : null,
    })),
    clients: ex.clients().map((c) => ({
      id: `0x${c.id.toString(16)}`,
      database: c.database,
      user: c.user,
      application_name: c.application_name,
      state: c.state,
      transactions: c.transaction_count,
      queries: c.query_count,
      age_s: Math.floor((Date.now() - c.connected_at) / 1000),
    })),
  };
}
