// Live configuration under load: pgbench runs through openproxy while RELOAD (admin console) and
// SIGHUP apply one change after another — pools resized, a pool and a user added and removed,
// routing switched on, a server removed and added back — with zero failed transactions.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, client, createAppRole, sleep } from './helpers/db';
import { startProxy } from './helpers/proxy';

let cluster: PgCluster;
before(async () => {
  cluster = await PgCluster.start({ replicas: 1 });
  createAppRole(cluster);
  cluster.psql(cluster.primary, "CREATE ROLE app2 LOGIN PASSWORD 'app2-secret'");
  cluster.psql(cluster.primary, `CREATE DATABASE otherdb OWNER ${APP_USER}`);
  const init = spawnSync(
    'pgbench',
    ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(cluster.primary.port), '-U', APP_USER, 'postgres'],
    { encoding: 'utf8', env: { ...process.env, PGPASSWORD: APP_PASS } },
  );
  assert.equal(init.status, 0, init.stderr);
});
after(() => cluster?.stop());

interface Shape {
  poolSize: number;
  routing: boolean;
  replica: boolean;
  otherPool: boolean;
  secondUser: boolean;
}

function config(port: number, s: Shape): string {
  const p = cluster.primary.port;
  const r = cluster.replicas[0].port;
  const servers = s.replica
    ? `[["127.0.0.1", ${p}, "primary"], ["127.0.0.1", ${r}, "replica"]]`
    : `[["127.0.0.1", ${p}, "primary"]]`;
  let out =
    `[general]\nhost = "127.0.0.1"\nport = ${port}\nworker_threads = ` +
    `2\nprometheus_exporter_port = 0\nadmin_username = ` +
    `"admin"\nadmin_password = "adminpass"\nconnect_timeout = 10000\n`;
  out +=
    `\n[pools.postgres]\npool_mode = ` +
    `"transaction"\n${s.routing ? 'query_parser_enabled = true\nquery_parser_read_write_splitting = true\n' : ''}`;
  out += `\n[pools.postgres.users.0]\nusername = "${APP_USER}"\npassword = "${APP_PASS}"\npool_size = ${s.poolSize}\n`;
  if (s.secondUser) out += `\n[pools.postgres.users.1]\nusername = "app2"\npassword = "app2-secret"\npool_size = 2\n`;
  out += `\n[pools.postgres.shards.0]\ndatabase = "postgres"\nservers = ${servers}\n`;
  if (s.otherPool)
    out +=
      `\n[pools.otherdb]\npool_mode = ` +
      `"transaction"\n[pools.otherdb.users.0]\nusername = ` +
      `"${APP_USER}"\npassword = "${APP_PASS}"\npool_size = ` +
      `2\n[pools.otherdb.shards.0]\ndatabase = "otherdb"\nservers = ` +
      `[["127.0.0.1", ${p}, "primary"]]\n`;
  return out;
}

test(
  'pgbench through reloads (RELOAD and SIGHUP): resize, add/remove pool ' +
    'and user, routing on, server removed/added: 0 failed transactions',
  async () => {
    let shape: Shape = { poolSize: 6, routing: false, replica: true, otherPool: false, secondUser: false };
    const proxy = await startProxy((port) => config(port, shape));
    const adm = new pg.Client({
      host: '127.0.0.1',
      port: proxy.port,
      user: 'admin',
      password: 'adminpass',
      database: 'openproxy',
    });
    await adm.connect();
    try {
      const bench = spawn(
        'pgbench',
        [
          '-n',
          '-c',
          '8',
          '-j',
          '2',
          '-T',
          '9',
          '-h',
          '127.0.0.1',
          '-p',
          String(proxy.port),
          '-U',
          APP_USER,
          'postgres',
        ],
        { env: { ...process.env, PGPASSWORD: APP_PASS } },
      );
      let out = '';
      bench.stdout.on('data', (b) => (out += b));
      bench.stderr.on('data', (b) => (out += b));
      const exited = new Promise<number | null>((resolve) => bench.once('exit', resolve));
      const steps: [string, Partial<Shape>, 'RELOAD' | 'SIGHUP'][] = [
        ['resize 6 -> 3', { poolSize: 3 }, 'RELOAD'],
        ['add pool otherdb and user app2', { otherPool: true, secondUser: true }, 'SIGHUP'],
        ['routing on', { routing: true }, 'RELOAD'],
        ['replica removed', { replica: false }, 'RELOAD'],
        ['replica added back, pool 3 -> 8', { replica: true, poolSize: 8 }, 'SIGHUP'],
        ['pool otherdb and user app2 removed', { otherPool: false, secondUser: false }, 'RELOAD'],
      ];
      for (const [what, change, how] of steps) {
        await sleep(1000);
        shape = { ...shape, ...change };
        writeFileSync(proxy.configPath, config(proxy.port, shape));
        if (how === 'RELOAD') await adm.query('RELOAD');
        else proxy.proc.kill('SIGHUP');
        if (what.startsWith('add pool')) {
          await sleep(300);
          const c = client(proxy.port, { database: 'otherdb' });
          await c.connect();
          assert.equal((await c.query('SELECT current_database() AS d')).rows[0].d, 'otherdb', 'the added pool serves');
          await c.end();
        }
      }
      const code = await exited;
      assert.equal(code, 0, out);
      assert.match(out, /number of failed transactions: 0 /);
      const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1]);
      assert.ok(tps > 10, `pgbench kept running: ${tps} tps`);
      const dbs = (await adm.query('SHOW DATABASES')).rows;
      assert.deepEqual(
        dbs.map((d) => d.name),
        ['postgres_shard_0_primary', 'postgres_shard_0_replica_0'],
      );
      assert.ok(dbs.every((d) => d.pool_size === '8'));
      assert.ok((proxy.output().match(/configuration reloaded/g) ?? []).length >= steps.length, 'every step reloaded');
    } finally {
      await adm.end().catch(() => undefined);
      await proxy.stop();
    }
  },
);

test('pool_mode transaction -> session applies at the next transaction, which keeps its server', async () => {
  const toml = (port: number, mode: string) =>
    `[general]\nhost = "127.0.0.1"\nport = ${port}\nworker_threads = ` +
    `1\nprometheus_exporter_port = 0\nadmin_username = ` +
    `"admin"\nadmin_password = "adminpass"\n\n[pools.postgres]\npool_mode ` +
    `= "${mode}"\n[pools.postgres.users.0]\nusername = ` +
    `"${APP_USER}"\npassword = "${APP_PASS}"\npool_size = ` +
    `3\n[pools.postgres.shards.0]\ndatabase = "postgres"\nservers = ` +
    `[["127.0.0.1", ${cluster.primary.port}, "primary"]]\n`;
  const proxy = await startProxy((port) => toml(port, 'transaction'));
  const adm = new pg.Client({
    host: '127.0.0.1',
    port: proxy.port,
    user: 'admin',
    password: 'adminpass',
    database: 'openproxy',
  });
  await adm.connect();
  const a = client(proxy.port);
  await a.connect();
  try {
    const active = async () => Number((await adm.query('SHOW POOLS')).rows[0].sv_active);
    await a.query('SELECT 1');
    assert.equal(await active(), 0, 'transaction mode: no server held between transactions');
    writeFileSync(proxy.configPath, toml(proxy.port, 'session'));
    await adm.query('RELOAD');
    const pid = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p;
    assert.equal(await active(), 1, 'session mode from the next transaction: the server stays');
    for (let i = 0; i < 3; i++) assert.equal((await a.query('SELECT pg_backend_pid() AS p')).rows[0].p, pid);
    const b = client(proxy.port);
    await b.connect();
    await b.query('SELECT 1');
    assert.equal(await active(), 2, 'a new client is in session mode too');
    await b.end();
  } finally {
    await a.end();
    await adm.end();
    await proxy.stop();
  }
});
