// Prometheus exporter, /health and the status page, against a real primary + replica; the status
// page is loaded in headless chromium (Debian's) so its script really runs.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { PgCluster, freePort } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, client, createAppRole, until } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';

let cluster: PgCluster;
let proxy: Proxy;
let http: number;

before(async () => {
  cluster = await PgCluster.start({ replicas: 1 });
  createAppRole(cluster);
  http = await freePort();
  proxy = await startProxy((port) =>
    configFor(cluster, port, `prometheus_exporter_port = ${http}\nprepared_statements_cache_size = 10`, [
      {
        pool_mode: 'transaction',
        pool_size: 4,
        extraPool: 'query_parser_enabled = true\nquery_parser_read_write_splitting = true\n',
      },
    ]),
  );
  await proxy.waitFor(/metrics and status page listening/);
});
after(async () => {
  await proxy?.stop();
  cluster?.stop();
});

async function get(path: string): Promise<{ status: number; body: string; type: string }> {
  const r = await fetch(`http://127.0.0.1:${http}${path}`);
  return { status: r.status, body: await r.text(), type: r.headers.get('content-type') ?? '' };
}

function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[4]);
  }
  return undefined;
}

describe('metrics', () => {
  test('/metrics has openproxy and pgbouncer_exporter metrics with real values', async () => {
    const c = client(proxy.port);
    await c.connect();
    for (let i = 0; i < 20; i++) await c.query('SELECT 1');
    for (let i = 0; i < 5; i++) await c.query({ name: 'by-id', text: 'SELECT $1::int AS n', values: [i] });
    await c.query('BEGIN');
    await c.query('SELECT 2');
    const m = await get('/metrics');
    assert.equal(m.status, 200);
    assert.match(m.type, /text\/plain/);
    const t = m.body;
    const pool = { database: 'postgres', user: 'app' };
    assert.equal(sample(t, 'pgbouncer_up'), 1);
    assert.equal(sample(t, 'openproxy_up'), 1);
    assert.ok(sample(t, 'pgbouncer_stats_queries_pooled_total', { database: 'postgres' })! >= 25);
    assert.ok(sample(t, 'pgbouncer_stats_sql_transactions_pooled_total', { database: 'postgres' })! >= 25);
    assert.ok(sample(t, 'pgbouncer_stats_received_bytes_total', { database: 'postgres' })! > 0);
    assert.equal(sample(t, 'pgbouncer_pools_client_active_connections', pool), 1, 'the client inside BEGIN');
    assert.equal(sample(t, 'pgbouncer_pools_server_active_connections', pool), 1);
    assert.equal(sample(t, 'openproxy_clients', { ...pool, state: 'active' }), 1);
    assert.ok(sample(t, 'pgbouncer_databases_pool_size', { name: 'postgres_shard_0_primary' }) === 4);
    const count = sample(t, 'openproxy_query_duration_seconds_count', pool)!;
    assert.ok(count >= 25, `query histogram count ${count}`);
    assert.equal(sample(t, 'openproxy_query_duration_seconds_bucket', { ...pool, le: '+Inf' }), count);
    assert.ok(sample(t, 'openproxy_transaction_duration_seconds_count', pool)! >= 25);
    const hits = sample(t, 'openproxy_prepared_statement_cache_hits_total', pool)!;
    const misses = sample(t, 'openproxy_prepared_statement_cache_misses_total', pool)!;
    assert.ok(misses >= 1 && hits + misses >= 5, `prepared: ${hits} hits, ${misses} misses`);
    assert.equal(sample(t, 'openproxy_server_banned', { server: `127.0.0.1:${cluster.replicas[0].port}` }), 0);
    assert.ok(sample(t, 'openproxy_client_pins_total', pool) !== undefined);
    await c.query('COMMIT');
    await c.end();
  });

  test('/health is 200 while a primary is reachable and 503 when none is', async () => {
    const ok = await get('/health');
    assert.equal(ok.status, 200);
    assert.equal(ok.body, 'ok\n');
    cluster.stopNode(cluster.primary, 'fast');
    try {
      await until(async () => (await get('/health')).status === 503, 5000, '503 without a primary');
      assert.match((await get('/health')).body, /pool postgres shard 0: no primary reachable/);
    } finally {
      cluster.startNode(cluster.primary);
    }
    await until(async () => (await get('/health')).status === 200, 5000, '200 again');
  });

  test('the status page renders pools, servers (role, ban), clients and VRRP in headless chromium', async () => {
    const c = client(proxy.port, { application_name: 'status-page-probe' });
    await c.connect();
    try {
      await c.query('SELECT 1');
      const chromium = spawnSync(
        'chromium',
        [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-dev-shm-usage',
          '--virtual-time-budget=5000',
          '--dump-dom',
          `http://admin:adminpass@127.0.0.1:${http}/`,
        ],
        { encoding: 'utf8', timeout: 60000 },
      );
      assert.equal(chromium.status, 0, chromium.stderr);
      const dom = chromium.stdout;
      assert.match(dom, /updated \d{4}-\d\d-\d\dT/, 'the script ran and fetched /status.json');
      assert.match(dom, /<td>postgres_shard_0_primary<\/td>/);
      assert.match(
        dom,
        new RegExp(
          '<td>postgres_shard_0_replica_0</td><td>app</td><td>127\\.0\\.0\\.1:\\d+</td>' +
            '<td>replica</td><td>config</td><td>UP</td><td></td><td></td><td>false</td>',
        ),
      );
      assert.match(dom, /<td>status-page-probe<\/td>/);
      assert.match(dom, /id="vrrp">off/);
    } finally {
      await c.end();
    }
  });

  test('the status page and /status.json need credentials; metrics and health do not', async () => {
    const basic = (user: string, pass: string) => ({
      authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`,
    });
    for (const path of ['/', '/status.json']) {
      const open = await fetch(`http://127.0.0.1:${http}${path}`);
      assert.equal(open.status, 401, path);
      assert.match(open.headers.get('www-authenticate') ?? '', /^Basic realm="openproxy"/);
      assert.doesNotMatch(await open.text(), /status-page-probe|"clients"/);
      const wrong = await fetch(`http://127.0.0.1:${http}${path}`, { headers: basic('admin', 'nope') });
      assert.equal(wrong.status, 401, `${path} with a wrong password`);
      const app = await fetch(`http://127.0.0.1:${http}${path}`, { headers: basic(APP_USER, APP_PASS) });
      assert.equal(app.status, 401, `${path} as a pool user not in stats_users`);
      const admin = await fetch(`http://127.0.0.1:${http}${path}`, { headers: basic('admin', 'adminpass') });
      assert.equal(admin.status, 200, `${path} as admin`);
    }
    for (const path of ['/metrics', '/health']) assert.equal((await get(path)).status, 200, path);
  });

  test('unknown paths get 404 with the list of endpoints', async () => {
    const r = await get('/nope');
    assert.equal(r.status, 404);
    assert.match(r.body, /\/metrics/);
  });
});
