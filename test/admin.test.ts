// The admin console, driven with psql and node-postgres against a real primary + replica: every
// command, with the column names SPEC.md lists (PgBouncer's), and numbers from both workers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { PgCluster, freePort } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, adminClient, client, connectError, createAppRole, sleep, until } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';

let cluster: PgCluster;
before(async () => {
  cluster = await PgCluster.start({ replicas: 1 });
  createAppRole(cluster);
});
after(() => cluster?.stop());

const COLUMNS: Record<string, string[]> = {
  CONFIG: ['key', 'value', 'default', 'changeable'],
  DATABASES: [
    'name',
    'host',
    'port',
    'database',
    'force_user',
    'pool_size',
    'min_pool_size',
    'reserve_pool',
    'pool_mode',
    'max_connections',
    'current_connections',
    'paused',
    'disabled',
  ],
  POOLS: [
    'database',
    'user',
    'pool_mode',
    'cl_idle',
    'cl_active',
    'cl_waiting',
    'cl_cancel_req',
    'sv_active',
    'sv_idle',
    'sv_used',
    'sv_tested',
    'sv_login',
    'maxwait',
    'maxwait_us',
  ],
  CLIENTS: [
    'client_id',
    'database',
    'user',
    'application_name',
    'state',
    'transaction_count',
    'query_count',
    'error_count',
    'age_seconds',
    'maxwait',
    'maxwait_us',
    'local_port',
    'listener_role',
  ],
  SERVERS: [
    'server_id',
    'database_name',
    'user',
    'address_id',
    'application_name',
    'state',
    'transaction_count',
    'query_count',
    'bytes_sent',
    'bytes_received',
    'age_seconds',
    'prepare_cache_hit',
    'prepare_cache_miss',
    'prepare_cache_eviction',
    'prepare_cache_size',
  ],
  USERS: ['name', 'pool_mode', 'max_user_connections', 'current_connections'],
  LISTS: ['list', 'items'],
  STATS: [
    'instance',
    'database',
    'user',
    'total_xact_count',
    'total_query_count',
    'total_received',
    'total_sent',
    'total_xact_time',
    'total_query_time',
    'total_wait_time',
    'total_errors',
    'avg_xact_count',
    'avg_query_count',
    'avg_recv',
    'avg_sent',
    'avg_errors',
    'avg_xact_time',
    'avg_query_time',
    'avg_wait_time',
  ],
  VERSION: ['version'],
  STATS_TOTALS: [
    'database',
    'xact_count',
    'query_count',
    'bytes_received',
    'bytes_sent',
    'xact_time',
    'query_time',
    'wait_time',
  ],
  STATS_AVERAGES: [
    'database',
    'xact_count',
    'query_count',
    'bytes_received',
    'bytes_sent',
    'xact_time',
    'query_time',
    'wait_time',
  ],
  TOTALS: ['name', 'value'],
  BANS: ['host', 'port', 'role', 'reason', 'seconds_left'],
  SERVER_STATES: [
    'database',
    'shard',
    'host',
    'port',
    'role',
    'state',
    'since',
    'reason',
    'weight',
    'effective_weight',
    'checks',
    'last_check',
    'check_ms',
    'active',
  ],
};

function adminPsql(port: number, sql: string, db = 'openproxy') {
  return spawnSync(
    'psql',
    ['-X', '-h', '127.0.0.1', '-p', String(port), '-U', 'admin', '-d', db, '-A', '-F', '|', '-c', sql],
    { encoding: 'utf8', env: { ...process.env, PGPASSWORD: 'adminpass' }, timeout: 20000 },
  );
}

function admin(port: number): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port, user: 'admin', password: 'adminpass', database: 'openproxy' });
}

describe('admin console', () => {
  let proxy: Proxy;
  let adm: pg.Client;
  before(async () => {
    proxy = await startProxy((port) => configFor(cluster, port, '', [{ pool_mode: 'transaction', pool_size: 4 }]));
    adm = admin(proxy.port);
    await adm.connect();
  });
  after(async () => {
    await adm?.end().catch(() => undefined);
    await proxy?.stop();
  });

  test("every SHOW command answers with PgBouncer's columns in order (psql and node-postgres)", async () => {
    for (const [what, cols] of Object.entries(COLUMNS)) {
      const r = await adm.query(`SHOW ${what}`);
      assert.deepEqual(
        r.fields.map((f) => f.name),
        cols,
        `SHOW ${what}`,
      );
      const p = adminPsql(proxy.port, `SHOW ${what};`);
      assert.equal(p.status, 0, p.stderr);
      assert.equal(p.stdout.split('\n')[0], cols.join('|'), `psql SHOW ${what}`);
    }
    const help = adminPsql(proxy.port, 'SHOW HELP');
    assert.match(help.stderr, /NOTICE:\s+Console usage/);
    assert.match(help.stderr, /SHOW HELP\|CONFIG\|DATABASES/);
    for (const db of ['pgbouncer', 'pgcat'])
      assert.equal(adminPsql(proxy.port, 'SHOW VERSION', db).status, 0, `database ${db} reaches the console too`);
  });

  test('numbers are real and summed across both workers', async () => {
    const clients = [client(proxy.port), client(proxy.port), client(proxy.port)];
    for (const c of clients) await c.connect();
    try {
      for (const c of clients) for (let i = 0; i < 5; i++) await c.query('SELECT 1');
      await clients[0].query('BEGIN');
      await clients[0].query('SELECT 1');
      const cl = (await adm.query('SHOW CLIENTS')).rows.filter((r) => r.user === APP_USER);
      assert.equal(cl.length, 3, 'three clients, on two workers');
      assert.ok(cl.every((r) => /^0x[0-9a-f]+$/.test(r.client_id) && r.database === 'postgres'));
      assert.equal(cl.filter((r) => r.state === 'active').length, 1, 'the one inside a transaction holds a server');
      const pool = (await adm.query('SHOW POOLS')).rows.find((r) => r.user === APP_USER)!;
      assert.equal(Number(pool.cl_active), 1);
      assert.equal(Number(pool.cl_idle), 2);
      assert.equal(Number(pool.sv_active), 1);
      const servers = (await adm.query('SHOW SERVERS')).rows;
      assert.ok(servers.length >= 1 && servers.length <= 4, 'within pool_size');
      const ids = servers.map((s) => s.server_id);
      assert.equal(new Set(ids).size, ids.length, `server ids unique across workers: ${ids}`);
      assert.ok(servers.some((s) => s.state === 'active' && Number(s.query_count) > 0));
      // One row per server, named as seed 000 names them; these queries all ran on the primary.
      const statRows = (await adm.query('SHOW STATS')).rows.filter((r) => r.user === APP_USER);
      assert.deepEqual(
        statRows.map((r) => r.instance),
        ['postgres_shard_0_primary', 'postgres_shard_0_replica_0'],
      );
      const stats = statRows[0];
      assert.ok(Number(stats.total_query_count) >= 16, `query count ${stats.total_query_count}`);
      assert.ok(Number(stats.total_received) > 0 && Number(stats.total_sent) > 0);
      assert.ok(Number(stats.total_xact_count) >= 15 && Number(stats.total_query_time) > 0);
      const lists = Object.fromEntries((await adm.query('SHOW LISTS')).rows.map((r) => [r.list, Number(r.items)]));
      assert.equal(lists.used_clients, 3);
      const dbs = (await adm.query('SHOW DATABASES')).rows;
      assert.deepEqual(
        dbs.map((d) => d.name),
        ['postgres_shard_0_primary', 'postgres_shard_0_replica_0'],
      );
      assert.equal(Number(dbs[0].current_connections), servers.length);
      await clients[0].query('COMMIT');
    } finally {
      for (const c of clients) await c.end();
    }
  });

  test('SHOW CONFIG never shows a password; SET changes a changeable key and refuses others', async () => {
    const cfg = (await adm.query('SHOW CONFIG')).rows;
    assert.ok(
      !JSON.stringify(cfg).includes('adminpass') && !JSON.stringify(cfg).includes(APP_PASS),
      'no password in SHOW CONFIG',
    );
    await adm.query('SET idle_client_in_transaction_timeout = 12345');
    await until(
      async () =>
        (await adm.query('SHOW CONFIG')).rows.find((r) => r.key === 'idle_client_in_transaction_timeout')?.value ===
        '12345',
      3000,
      'SET visible',
    );
    await assert.rejects(adm.query('SET port = 1'), /cannot be changed while openproxy runs/);
    await assert.rejects(adm.query('SET no_such_key = 1'), /unknown setting "no_such_key"/);
    await assert.rejects(
      adm.query("SET healthcheck_timeout = 'soon'"),
      /healthcheck_timeout: invalid value "soon"; expected an integer/,
    );
  });

  test("SHOW CONFIG has the seed's pool rows; SET changes pool keys, and inherited values follow", async () => {
    const adm = adminClient(proxy.port);
    await adm.connect();
    try {
      const value = async (key: string) =>
        (await adm.query('SHOW CONFIG')).rows.find((r) => r.key === key)?.value as string | undefined;
      assert.equal(await value('pools."postgres".users'), APP_USER);
      assert.equal(await value('pools."postgres".shard_count'), '1');
      await adm.query('SET pools.postgres.load_balancing_mode = round_robin');
      await until(async () => (await value('pools.postgres.load_balancing_mode')) === 'round_robin', 3000, 'pool SET');
      await adm.query(`SET pools."postgres".primary_reads_enabled = off`);
      await until(async () => (await value('pools.postgres.primary_reads_enabled')) === 'false', 3000, 'quoted SET');
      // A [general] key the pool does not set itself reaches the pool.
      await adm.query('SET idle_timeout = 123456');
      await until(async () => (await value('pools.postgres.idle_timeout')) === '123456', 3000, 'inherited SET');
      await assert.rejects(adm.query('SET pools.nope.pool_mode = session'), /no pool named "nope"/);
      await assert.rejects(adm.query('SET pools.postgres.no_such = 1'), /unknown setting "pools\.postgres\.no_such"/);
      await assert.rejects(
        adm.query("SET pools.postgres.load_balancing_mode = 'sideways'"),
        /pools\.postgres\.load_balancing_mode: invalid value "sideways"/,
      );
    } finally {
      await adm.end();
    }
  });

  test('RELOAD applies a valid file and reports an invalid one (the old config stays)', async () => {
    const good = configFor(cluster, proxy.port, '', [{ pool_mode: 'transaction', pool_size: 4 }]);
    writeFileSync(proxy.configPath, good.replace('pool_size = 4', 'pool_size = 3'));
    await adm.query('RELOAD');
    assert.equal((await adm.query('SHOW DATABASES')).rows[0].pool_size, '3');
    writeFileSync(proxy.configPath, good.replace('pool_size = 4', 'pool_size = "many"'));
    await assert.rejects(adm.query('RELOAD'), /pool_size: invalid value "many"/);
    assert.equal((await adm.query('SHOW DATABASES')).rows[0].pool_size, '3', 'old config kept');
    writeFileSync(proxy.configPath, good);
    await adm.query('RELOAD');
  });

  test('PAUSE holds new transactions until RESUME; DISABLE refuses logins until ENABLE', async () => {
    const c = client(proxy.port);
    await c.connect();
    try {
      await adm.query('PAUSE postgres');
      assert.equal((await adm.query('SHOW DATABASES')).rows[0].paused, '1');
      let done = false;
      const q = c.query('SELECT 42 AS n').then((r) => ((done = true), r));
      await sleep(300);
      assert.equal(done, false, 'paused');
      assert.equal((await adm.query('SHOW CLIENTS')).rows.filter((r) => r.state === 'waiting').length, 1);
      await adm.query('RESUME postgres');
      assert.equal((await q).rows[0].n, 42);
      // PAUSE waits for running transactions to end, as PgBouncer's does.
      await c.query('BEGIN');
      await c.query('SELECT 1');
      let paused = false;
      const pause = adm.query('PAUSE postgres').then(() => (paused = true));
      await sleep(300);
      assert.equal(paused, false, 'PAUSE waits while a transaction holds a server');
      await c.query('COMMIT');
      await pause;
      assert.equal(paused, true);
      await adm.query('RESUME postgres');
      await adm.query('DISABLE postgres');
      const e = await connectError(proxy.port);
      assert.equal(e.code, '57P03');
      assert.match(e.message, /disabled/);
      assert.equal((await c.query('SELECT 1 AS n')).rows[0].n, 1, 'connected clients go on');
      await adm.query('ENABLE postgres');
      const c2 = client(proxy.port);
      await c2.connect();
      await c2.end();
      await assert.rejects(adm.query('PAUSE nosuchdb'), /no such database: nosuchdb/);
    } finally {
      await adm.query('RESUME');
      await adm.query('ENABLE postgres');
      await c.end();
    }
  });

  test('KILL_CLIENT and KILL disconnect clients with 57P01; RECONNECT + WAIT_CLOSE replace servers', async () => {
    const a = client(proxy.port);
    const b = client(proxy.port);
    const errs: string[] = [];
    for (const c of [a, b]) {
      c.on('error', (e) => errs.push((e as { code?: string }).code ?? e.message));
      await c.connect();
      await c.query('SELECT 1');
    }
    await a.query("SET application_name = 'victim'");
    let victim: { client_id: string } | undefined;
    await until(
      async () => !!(victim = (await adm.query('SHOW CLIENTS')).rows.find((r) => r.application_name === 'victim')),
      3000,
      'application_name tracked',
    );
    await adm.query(`KILL_CLIENT ${victim!.client_id}`);
    await until(() => errs.includes('57P01'), 3000, 'victim told');
    assert.equal((await b.query('SELECT 2 AS n')).rows[0].n, 2, 'the other client is untouched');
    await assert.rejects(adm.query('KILL_CLIENT 0x7fffffff'), /no client with id/);
    const before = (await adm.query('SHOW SERVERS')).rows.map((r) => r.server_id);
    await adm.query('RECONNECT postgres');
    await adm.query('WAIT_CLOSE postgres');
    await b.query('SELECT 3');
    const afterIds = (await adm.query('SHOW SERVERS')).rows.map((r) => r.server_id);
    assert.ok(
      afterIds.every((id) => !before.includes(id)),
      `new server connections: ${before} -> ${afterIds}`,
    );
    await adm.query('KILL postgres');
    await until(() => errs.filter((e) => e === '57P01').length >= 2, 3000, 'KILL told the other client');
    await a.end().catch(() => undefined);
    await b.end().catch(() => undefined);
  });

  test('BAN / UNBAN / SHOW BANS; the primary cannot be banned; unknown commands get a clear error', async () => {
    const replica = cluster.replicas[0].port;
    await adm.query(`BAN 127.0.0.1:${replica} 60`);
    const bans = (await adm.query('SHOW BANS')).rows;
    assert.equal(bans.length, 1);
    assert.deepEqual([bans[0].port, bans[0].role, bans[0].reason], [String(replica), 'replica', 'banned by admin']);
    assert.ok(Number(bans[0].seconds_left) > 55);
    await adm.query(`UNBAN 127.0.0.1:${replica}`);
    assert.equal((await adm.query('SHOW BANS')).rows.length, 0);
    await assert.rejects(adm.query(`BAN 127.0.0.1:${cluster.primary.port} 60`), /never bans the primary/);
    await assert.rejects(
      adm.query('FROBNICATE'),
      (e: { code?: string; message: string }) =>
        e.code === '42601' && /unknown admin command "FROBNICATE"/.test(e.message),
    );
    await assert.rejects(adm.query('SELECT $1::int', [1]), /simple query protocol only/);
  });

  test('SHOW VRRP without a [general.virtual_router] section says so', async () => {
    const r = await adm.query('SHOW VRRP');
    assert.deepEqual(
      r.fields.map((f) => f.name),
      ['state', 'priority', 'local_ip', 'vips', 'since', 'reason'],
    );
    assert.deepEqual([r.rows[0].state, r.rows[0].reason], ['off', 'no [general.virtual_router] section']);
  });

  test('only admin_username reaches the console, with its password', async () => {
    const notAdmin = await connectError(proxy.port, { database: 'openproxy' });
    assert.equal(notAdmin.code, '28000');
    const wrong = await connectError(proxy.port, { user: 'admin', password: 'nope', database: 'openproxy' });
    assert.equal(wrong.code, '28P01');
    assert.ok(!proxy.output().includes('adminpass'), 'the admin password is not logged');
  });
});

test('SHUTDOWN from the console stops openproxy (exit 0)', async () => {
  const proxy = await startProxy((port) => configFor(cluster, port, '', [{ pool_mode: 'transaction' }]));
  const adm = admin(proxy.port);
  await adm.connect();
  adm.on('error', () => undefined);
  await adm.query('SHUTDOWN').catch(() => undefined);
  const code = await new Promise<number | null>((resolve) => proxy.proc.once('exit', resolve));
  assert.equal(code, 0);
});

test('SHUTDOWN WAIT_FOR_CLIENTS refuses new clients and exits once the connected ones have left', async () => {
  const proxy = await startProxy((port) =>
    configFor(cluster, port, 'shutdown_timeout = 30000', [{ pool_mode: 'transaction' }]),
  );
  const c = client(proxy.port);
  await c.connect();
  const adm = admin(proxy.port);
  await adm.connect();
  adm.on('error', () => undefined);
  await adm.query('SHUTDOWN WAIT_FOR_CLIENTS');
  await adm.end().catch(() => undefined);
  let exited = false;
  const code = new Promise<number | null>((resolve) => proxy.proc.once('exit', (c2) => ((exited = true), resolve(c2))));
  await sleep(700);
  assert.equal(exited, false, 'still running while a client is connected');
  const refused = await connectError(proxy.port);
  assert.ok(refused.message.length > 0, 'a new client is refused');
  assert.equal((await c.query('SELECT 7 AS n')).rows[0].n, 7, 'the connected client is served');
  await c.end();
  assert.equal(await code, 0);
});

describe('stats_users and the HTTP listener address', () => {
  test('a stats_users login may SHOW (42501 otherwise) and read the status page; HTTP on its own address', async () => {
    const http = await freePort();
    const proxy = await startProxy((port) =>
      configFor(
        cluster,
        port,
        `stats_users = ["${APP_USER}"]\nprometheus_exporter_port = ${http}\nprometheus_exporter_host = "127.0.0.2"`,
      ),
    );
    const reader = client(proxy.port, { database: 'openproxy' });
    try {
      await reader.connect();
      const pools = await reader.query('SHOW POOLS');
      assert.ok(pools.rows.length > 0);
      const mem = await reader.query('SHOW MEM');
      assert.deepEqual(
        mem.rows.map((r) => r.thread),
        ['worker 0', 'worker 1'],
      );
      assert.ok(
        mem.rows.every((r) => Number(r.heap_used_kb) > 1000 && Number(r.heap_total_kb) >= Number(r.heap_used_kb)),
      );
      for (const cmd of ['PAUSE', 'RELOAD', 'SHUTDOWN', 'KILL postgres', 'SET max_client_conn = 5']) {
        await assert.rejects(reader.query(cmd), (e: { code: string; message: string }) => {
          assert.equal(e.code, '42501', cmd);
          assert.match(e.message, /stats_users login may only SHOW/);
          return true;
        });
      }
      assert.equal((await connectError(proxy.port, { database: 'openproxy', password: 'wrong' })).code, '28P01');
      await proxy.waitFor(/metrics and status page listening/);
      const auth = { authorization: `Basic ${Buffer.from(`${APP_USER}:${APP_PASS}`).toString('base64')}` };
      const r = await fetch(`http://127.0.0.2:${http}/status.json`, { headers: auth });
      assert.equal(r.status, 200);
      assert.ok(Array.isArray(((await r.json()) as { pools: unknown }).pools));
      await assert.rejects(fetch(`http://127.0.0.1:${http}/metrics`), 'nothing listens on the proxy address');
    } finally {
      await reader.end().catch(() => undefined);
      await proxy.stop();
    }
  });
});
