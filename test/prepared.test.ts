// Protocol-level prepared statements through transaction pooling: named statements from any
// client work on any server connection (prepared_statements_cache_size > 0).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import postgres from 'postgres';
import { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, client, pgjs } from './helpers/db';
import { configFor, startProxy } from './helpers/proxy';

let cluster: PgCluster;

before(async () => {
  cluster = await PgCluster.start();
  cluster.psql(
    cluster.primary,
    `CREATE ROLE ${APP_USER} LOGIN PASSWORD '${APP_PASS}'; GRANT ALL ON ` +
      `SCHEMA public TO ${APP_USER}; GRANT CREATE ON DATABASE postgres TO ` +
      `${APP_USER}; CREATE TABLE alter_me(a int); INSERT INTO alter_me ` +
      `VALUES (1); GRANT ALL ON alter_me TO ${APP_USER}`,
  );
  const init = spawnSync(
    'pgbench',
    ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(cluster.primary.port), '-U', APP_USER, 'postgres'],
    { encoding: 'utf8', env: { ...process.env, PGPASSWORD: APP_PASS } },
  );
  if (init.status !== 0) throw new Error(init.stderr);
});
after(() => cluster?.stop());

const cfg =
  (cache: number, size: number, general = '') =>
  (port: number) =>
    configFor(cluster, port, `connect_timeout = 10000\nprepared_statements_cache_size = ${cache}\n${general}`, [
      { pool_mode: 'transaction', pool_size: size },
    ]);

describe('with the cache on', () => {
  test('node-postgres named queries from 20 clients over 2 server connections on 2 workers', async () => {
    const proxy = await startProxy(cfg(100, 2));
    const clients = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const c = client(proxy.port);
        await c.connect();
        return c;
      }),
    );
    try {
      await Promise.all(
        clients.map(async (c, i) => {
          for (let k = 0; k < 10; k++) {
            const r = await c.query({ name: `add_${k % 3}`, text: `SELECT $1::int + ${k % 3} AS v`, values: [i] });
            assert.equal(r.rows[0].v, i + (k % 3));
          }
        }),
      );
      assert.doesNotMatch(proxy.output(), /reason=named_statement/, 'no pinning with the cache on');
    } finally {
      await Promise.all(clients.map((c) => c.end()));
      await proxy.stop();
    }
  });

  test('postgres.js (named by default) with more clients than server connections', async () => {
    const proxy = await startProxy(cfg(100, 2));
    const sqls = Array.from({ length: 6 }, () =>
      postgres({ host: '127.0.0.1', port: proxy.port, user: APP_USER, pass: APP_PASS, database: 'postgres', max: 2 }),
    );
    try {
      await Promise.all(
        sqls.map(async (sql, i) => {
          for (let k = 0; k < 15; k++) {
            const [r] = await sql`SELECT ${i}::int * ${k}::int AS v, current_setting('application_name') AS app`;
            assert.equal(r.v, i * k);
          }
          await sql.begin(async (t) => {
            const [r] = await t`SELECT ${i}::int AS v`;
            assert.equal(r.v, i);
          });
        }),
      );
    } finally {
      await Promise.all(sqls.map((s) => s.end()));
      await proxy.stop();
    }
  });

  test('pgbench -M prepared, select-only and TPC-B-like, more clients than server connections', async () => {
    const proxy = await startProxy(cfg(100, 2));
    try {
      for (const args of [
        ['-S', '-c', '12', '-j', '2'],
        ['-N', '-c', '6', '-j', '6'],
      ]) {
        // pgbench prepares with a blocking PQprepare on first use: with TPC-B's BEGIN holding a
        // connection, a thread must not serve two clients or it waits on itself (any pooler).
        const r = spawnSync(
          'pgbench',
          [
            '-n',
            '-M',
            'prepared',
            '-T',
            '2',
            ...args,
            '-h',
            '127.0.0.1',
            '-p',
            String(proxy.port),
            '-U',
            APP_USER,
            'postgres',
          ],
          { encoding: 'utf8', env: { ...process.env, PGPASSWORD: APP_PASS }, timeout: 60000 },
        );
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /number of failed transactions: 0 /, r.stdout);
      }
    } finally {
      await proxy.stop();
    }
  });

  test('LRU eviction keeps each server connection at the cache size and closes what it evicts', async () => {
    const proxy = await startProxy(cfg(2, 1, 'worker_threads = 1'));
    const c = client(proxy.port);
    await c.connect();
    try {
      for (let round = 0; round < 3; round++) {
        for (let k = 0; k < 5; k++) {
          const r = await c.query({ name: `s${k}`, text: `SELECT ${k} + $1::int AS v`, values: [round] });
          assert.equal(r.rows[0].v, k + round);
        }
      }
      const n = (await c.query("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name LIKE 'openproxy_%'"))
        .rows[0].n;
      assert.ok(n <= 2, `${n} server-side statements, cache size 2`);
    } finally {
      await c.end();
      await proxy.stop();
    }
  });

  test('DEALLOCATE ALL, then the same names again', async () => {
    const proxy = await startProxy(cfg(100, 1, 'worker_threads = 1'));
    const c = client(proxy.port);
    await c.connect();
    try {
      assert.equal((await c.query({ name: 'd1', text: 'SELECT 1 AS v' })).rows[0].v, 1);
      await c.query('DEALLOCATE ALL');
      (c as unknown as { connection: { parsedStatements: Record<string, unknown> } }).connection.parsedStatements = {};
      assert.equal((await c.query({ name: 'd1', text: 'SELECT 2 AS v' })).rows[0].v, 2);
    } finally {
      await c.end();
      await proxy.stop();
    }
  });

  test('"cached plan must not change result type" is recovered: the next execution re-prepares', async () => {
    const proxy = await startProxy(cfg(100, 1, 'worker_threads = 1'));
    const c = client(proxy.port);
    await c.connect();
    try {
      assert.deepEqual((await c.query({ name: 'all_cols', text: 'SELECT * FROM alter_me' })).rows, [{ a: 1 }]);
      cluster.psql(cluster.primary, 'ALTER TABLE alter_me ADD COLUMN b int DEFAULT 2');
      await assert.rejects(
        c.query({ name: 'all_cols', text: 'SELECT * FROM alter_me' }),
        /cached plan must not change result type/,
      );
      assert.deepEqual((await c.query({ name: 'all_cols', text: 'SELECT * FROM alter_me' })).rows, [{ a: 1, b: 2 }]);
    } finally {
      await c.end();
      await proxy.stop();
    }
  });
});

describe('with the cache off', () => {
  test('unnamed statements pool normally; a named one gets a clear 26000 error and the session goes on', async () => {
    const proxy = await startProxy(cfg(0, 2));
    try {
      const sql = pgjs(proxy.port, { max: 4, prepare: false });
      const rows = await Promise.all(Array.from({ length: 40 }, (_, i) => sql`SELECT ${i}::int AS i`));
      assert.deepEqual(
        rows.map((r) => r[0].i),
        Array.from({ length: 40 }, (_, i) => i),
      );
      await sql.end();
      const c = client(proxy.port);
      await c.connect();
      await assert.rejects(
        c.query({ name: 'n1', text: 'SELECT $1::int AS v', values: [1] }),
        (e: { code: string; message: string; hint?: string }) => {
          assert.equal(e.code, '26000');
          assert.match(
            e.message,
            /prepared statement "n1" cannot be used: named prepared statements need prepared_statements_cache_size > 0/,
          );
          assert.match(e.hint ?? '', /prepared_statements_cache_size/);
          return true;
        },
      );
      assert.deepEqual((await c.query('SELECT 2 AS v')).rows, [{ v: 2 }], 'the connection stays usable');
      assert.deepEqual((await c.query('SELECT $1::int AS v', [3])).rows, [{ v: 3 }], 'unnamed extended still works');
      await c.end();
      assert.doesNotMatch(proxy.output(), /client pinned/);
    } finally {
      await proxy.stop();
    }
  });
});

describe('per-pool cache size (seed 001 writes it in [pools.NAME])', () => {
  test('a pool with its own prepared_statements_cache_size uses it; [general] is the default for others', async () => {
    const proxy = await startProxy((port) =>
      configFor(cluster, port, 'connect_timeout = 10000\nprepared_statements_cache_size = 0', [
        { pool_mode: 'transaction', pool_size: 2, extraPool: 'prepared_statements_cache_size = 100' },
        { name: 'nocache', pool_mode: 'transaction', pool_size: 2 },
      ]),
    );
    const cached = client(proxy.port);
    const plain = client(proxy.port, { database: 'nocache' });
    await cached.connect();
    await plain.connect();
    try {
      for (let k = 0; k < 5; k++) {
        const r = await cached.query({ name: 'per_pool', text: 'SELECT $1::int * 2 AS v', values: [k] });
        assert.equal(r.rows[0].v, 2 * k);
      }
      await assert.rejects(plain.query({ name: 'per_pool', text: 'SELECT $1::int AS v', values: [1] }), (e: Error) => {
        assert.match(e.message, /need prepared_statements_cache_size > 0/);
        return true;
      });
      assert.doesNotMatch(proxy.output(), /unknown key/);
    } finally {
      await cached.end();
      await plain.end();
      await proxy.stop();
    }
  });
});
