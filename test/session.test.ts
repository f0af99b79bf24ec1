// Session pooling against a real primary + two streaming replicas, through real drivers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { PgCluster, freePort } from '../testing/pg-cluster';
import {
  APP_PASS,
  APP_USER,
  appBackends,
  client,
  connectError,
  createAppRole,
  doomedClient,
  query,
  sleep,
  until,
  vanish,
  pgjs,
  psqlAs,
} from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';

let cluster: PgCluster;

before(async () => {
  cluster = await PgCluster.start({ replicas: 2 });
  createAppRole(cluster);
  cluster.psql(cluster.primary, "SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD 'md5pass'");
});
after(() => cluster?.stop());
const psql = psqlAs(APP_USER, APP_PASS);

describe('basic session pooling', () => {
  let proxy: Proxy;
  before(async () => {
    proxy = await startProxy((port) => configFor(cluster, port));
  });
  after(async () => {
    await proxy?.stop();
  });

  test('psql connects and its queries run on the primary', () => {
    const r = psql(proxy.port, 'SELECT inet_server_port(), pg_is_in_recovery(), current_user');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), `${cluster.primary.port}|f|${APP_USER}`);
  });

  test('node-postgres: simple and extended protocol, parameters, errors keep the session usable', async () => {
    const c = client(proxy.port);
    await c.connect();
    try {
      assert.deepEqual((await c.query('SELECT $1::int + $2::int AS s', [2, 3])).rows, [{ s: 5 }]);
      await assert.rejects(c.query('SELECT * FROM no_such_table'), (e: { code: string }) => e.code === '42P01');
      assert.deepEqual((await c.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
      await c.query('BEGIN');
      await c.query('CREATE TEMP TABLE t(x int)');
      await c.query('INSERT INTO t SELECT generate_series(1, 100000)');
      assert.deepEqual((await c.query('SELECT count(*)::int AS n FROM t')).rows, [{ n: 100000 }]);
      await c.query('COMMIT');
      const big = await c.query("SELECT repeat('x', 16 * 1024 * 1024) AS v");
      assert.equal((big.rows[0].v as string).length, 16 * 1024 * 1024);
      const many = await c.query('SELECT g FROM generate_series(1, 100000) g');
      assert.equal(many.rowCount, 100000);
    } finally {
      await c.end();
    }
  });

  test('postgres.js (named prepared statements) works', async () => {
    const sql = pgjs(proxy.port, { max: 3, idle_timeout: 1 });
    try {
      for (let i = 0; i < 20; i++) {
        const rows = await sql`SELECT ${i}::int AS i, inet_server_port() AS port`;
        assert.equal(rows[0].i, i);
        assert.equal(rows[0].port, cluster.primary.port);
      }
      const [{ n }] = await sql`SELECT count(*)::int AS n FROM generate_series(1, ${1000}::int)`;
      assert.equal(n, 1000);
    } finally {
      await sql.end();
    }
  });

  test('COPY FROM STDIN and COPY TO STDOUT pass through', () => {
    const r = spawnSync(
      'psql',
      [
        '-X',
        '-q',
        '-A',
        '-t',
        '-h',
        '127.0.0.1',
        '-p',
        String(proxy.port),
        '-U',
        APP_USER,
        '-d',
        'postgres',
        '-v',
        'ON_ERROR_STOP=1',
      ],
      {
        encoding: 'utf8',
        env: { ...process.env, PGPASSWORD: APP_PASS },
        input:
          'CREATE TEMP TABLE c(a int, b text);\nCOPY c FROM ' +
          'STDIN;\n1\tone\n2\ttwo\n\\.\nCOPY c TO STDOUT;\nSELECT count(*) FROM ' +
          'c;\n',
        timeout: 20000,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '1\tone\n2\ttwo\n2');
  });

  test('startup parameters reach the server: application_name, options -c, DateStyle', () => {
    const r = psql(
      proxy.port,
      "SELECT current_setting('application_name'), current_setting('search_path'), current_setting('DateStyle')",
      [],
      {
        PGAPPNAME: 'my-app',
        PGOPTIONS: '-c search_path=pg_catalog -c DateStyle=German',
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'my-app|pg_catalog|German, DMY');
  });

  test("an invalid startup option is refused with the server's own error", async () => {
    const e = await connectError(proxy.port, { options: '-c no_such_setting=1' } as never);
    assert.equal(e.code, '42704');
    const ok = await query(proxy.port, 'SELECT 1 AS x');
    assert.deepEqual(ok, [{ x: 1 }]);
  });

  test('cancel reaches the right server from whichever worker gets it', async () => {
    const sql = pgjs(proxy.port, { max: 1 });
    // Other idle clients so the cancel connection lands on varying workers.
    const idle = await Promise.all(
      [0, 1, 2].map(async () => {
        const c = client(proxy.port);
        await c.connect();
        return c;
      }),
    );
    try {
      for (let i = 0; i < 3; i++) {
        const t0 = Date.now();
        const q = sql`SELECT pg_sleep(10)`;
        q.catch(() => undefined);
        await sleep(300);
        q.cancel();
        await assert.rejects(q, (e: { code: string }) => e.code === '57014');
        assert.ok(Date.now() - t0 < 5000, 'cancelled well before the sleep ended');
        await sql`SELECT 1`;
      }
    } finally {
      await sql.end();
      await Promise.all(idle.map((c) => c.end()));
    }
  });
});

describe('authentication', () => {
  test('md5 (default): right password in, wrong password 28P01, unknown user 28000, unknown db 3D000', async () => {
    const proxy = await startProxy((port) => configFor(cluster, port));
    try {
      assert.deepEqual(await query(proxy.port, 'SELECT 1 AS x'), [{ x: 1 }]);
      assert.equal((await connectError(proxy.port, { password: 'wrong' })).code, '28P01');
      assert.equal((await connectError(proxy.port, { user: 'nobody' })).code, '28000');
      const db = await connectError(proxy.port, { database: 'nodb' });
      assert.equal(db.code, '3D000');
      assert.match(db.message, /nodb/);
      assert.ok(!proxy.output().includes(APP_PASS), 'password never logged');
    } finally {
      await proxy.stop();
    }
  });

  test('scram-sha-256 to clients, with psql and node-postgres', async () => {
    const proxy = await startProxy((port) => configFor(cluster, port, 'auth_type = "scram-sha-256"'));
    try {
      const r = psql(proxy.port, 'SELECT 42');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), '42');
      assert.deepEqual(await query(proxy.port, 'SELECT 1 AS x'), [{ x: 1 }]);
      assert.equal((await connectError(proxy.port, { password: 'wrong' })).code, '28P01');
    } finally {
      await proxy.stop();
    }
  });

  test("server login with md5 and with SCRAM; server_username/server_password differ from the client's", async () => {
    const extra = {
      username: 'alice',
      password: 'alice-pw',
      extraUser: 'server_username = "md5user"\nserver_password = "md5pass"',
    };
    const proxy = await startProxy((port) => configFor(cluster, port, '', [extra]));
    try {
      const rows = await query(proxy.port, 'SELECT current_user AS u', { user: 'alice', password: 'alice-pw' });
      assert.deepEqual(rows, [{ u: 'md5user' }]);
    } finally {
      await proxy.stop();
    }
  });

  test('a wrong server password is a clean 28P01 and the proxy keeps serving', async () => {
    const proxy = await startProxy((port) =>
      configFor(cluster, port, '', [
        { name: 'postgres' },
        { name: 'broken', username: 'app', password: APP_PASS, extraUser: 'server_password = "wrong"' },
      ]),
    );
    try {
      const e = await connectError(proxy.port, { database: 'broken' });
      assert.equal(e.code, '28P01');
      assert.deepEqual(await query(proxy.port, 'SELECT 1 AS x'), [{ x: 1 }]);
    } finally {
      await proxy.stop();
    }
  });
});

describe('pool limits', () => {
  test('pool_size is global across workers, waiters are served, and pg_stat_activity never shows more', async () => {
    const proxy = await startProxy((port) => configFor(cluster, port, 'connect_timeout = 20000', [{ pool_size: 3 }]));
    try {
      let max = 0;
      let done = false;
      const watcher = (async () => {
        while (!done) {
          max = Math.max(max, appBackends(cluster, cluster.primary));
          await sleep(30);
        }
      })();
      const results = await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          const rows = await query<{ i: number }>(proxy.port, `SELECT ${i} AS i, pg_sleep(0.15)`);
          return rows[0].i;
        }),
      );
      done = true;
      await watcher;
      assert.deepEqual(
        results,
        Array.from({ length: 12 }, (_, i) => i),
      );
      assert.ok(max <= 3, `saw ${max} server connections, pool_size is 3`);
      assert.ok(max >= 2, `expected the pool to be used in parallel (saw ${max})`);
    } finally {
      await proxy.stop();
    }
  });

  test('a client that cannot get a connection within query_wait_timeout gets 53300 naming the pool', async () => {
    const proxy = await startProxy((port) => configFor(cluster, port, 'query_wait_timeout = 300', [{ pool_size: 1 }]));
    const holder = client(proxy.port);
    try {
      await holder.connect();
      const t0 = Date.now();
      const e = await connectError(proxy.port);
      assert.equal(e.code, '53300');
      assert.match(e.message, /query_wait_timeout = 300 ms: every one of pool "postgres"'s 1 connections/);
      assert.ok(Date.now() - t0 >= 250);
      await holder.end();
      assert.deepEqual(await query(proxy.port, 'SELECT 1 AS x'), [{ x: 1 }], 'the slot is free again');
    } finally {
      await proxy.stop();
    }
  });

  test('server down: 08006, and other pools keep working', async () => {
    const deadPort = await freePort();
    const proxy = await startProxy(
      (port) =>
        `${configFor(cluster, port, 'connect_timeout = 500', [{}])}\n[pools.dead]\npool_mode ` +
        `= "session"\n[pools.dead.users.0]\nusername = "${APP_USER}"\npassword ` +
        `= "${APP_PASS}"\n[pools.dead.shards.0]\ndatabase = ` +
        `"postgres"\nservers = [["127.0.0.1", ${deadPort}, "primary"]]\n`,
    );
    try {
      const e = await connectError(proxy.port, { database: 'dead' });
      assert.equal(e.code, '08006');
      assert.deepEqual(await query(proxy.port, 'SELECT 1 AS x'), [{ x: 1 }]);
    } finally {
      await proxy.stop();
    }
  });
});

describe('session state never crosses clients', () => {
  test('SET, temp tables and prepared statements are gone for the next client on the same server', async () => {
    const proxy = await startProxy((port) => configFor(cluster, port, '', [{ pool_size: 1 }]));
    try {
      const a = client(proxy.port);
      await a.connect();
      const pidA = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p;
      await a.query(
        "SET search_path = pg_catalog; SET statement_timeout = '5s'; CREATE " +
          'TEMP TABLE leak(x int); PREPARE p AS SELECT 1; SELECT ' +
          'pg_advisory_lock(42)',
      );
      await a.end();
      const b = client(proxy.port);
      await b.connect();
      const r = (
        await b.query(
          "SELECT pg_backend_pid() AS p, current_setting('search_path') AS sp, " +
            "current_setting('statement_timeout') AS st, (SELECT count(*)::int " +
            'FROM pg_prepared_statements) AS ps, (SELECT count(*)::int FROM ' +
            "pg_locks WHERE locktype = 'advisory') AS locks, " +
            "to_regclass('pg_temp.leak') IS NULL AS no_temp",
        )
      ).rows[0];
      await b.end();
      assert.equal(r.p, pidA, 'same server connection reused');
      assert.equal(r.sp, '"$user", public');
      assert.equal(r.st, '0');
      assert.equal(r.ps, 0);
      assert.equal(r.locks, 0);
      assert.equal(r.no_temp, true);
    } finally {
      await proxy.stop();
    }
  });

  test('a client that vanishes inside a transaction leaves nothing behind', async () => {
    cluster.psql(cluster.primary, 'CREATE TABLE IF NOT EXISTS vanish(x int); GRANT ALL ON vanish TO app');
    const proxy = await startProxy((port) => configFor(cluster, port, '', [{ pool_size: 1 }]));
    try {
      const a = await doomedClient(proxy.port);
      await a.query('BEGIN');
      await a.query('INSERT INTO vanish VALUES (1)');
      vanish(a);
      await sleep(200);
      const rows = await query<{ n: number; tx: string }>(
        proxy.port,
        "SELECT count(*)::int AS n, current_setting('transaction_isolation') AS tx FROM vanish",
      );
      assert.equal(rows[0].n, 0);
      await until(() => appBackends(cluster, cluster.primary) <= 1, 3000, 'the dirty connection to be closed');
    } finally {
      await proxy.stop();
    }
  });

  test('a server connection killed under an idle client: the client gets an error, the next client works', async () => {
    const proxy = await startProxy((port) => configFor(cluster, port, '', [{ pool_size: 2 }]));
    try {
      const a = await doomedClient(proxy.port);
      const pid = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p;
      cluster.psql(cluster.primary, `SELECT pg_terminate_backend(${pid})`);
      await assert.rejects(a.query('SELECT 1'));
      assert.deepEqual(await query(proxy.port, 'SELECT 1 AS x'), [{ x: 1 }]);
    } finally {
      await proxy.stop();
    }
  });
});

describe('timeouts', () => {
  test('idle_client_in_transaction_timeout disconnects with 25P03 and the connection is not pooled dirty', async () => {
    const proxy = await startProxy((port) =>
      configFor(cluster, port, 'idle_client_in_transaction_timeout = 300', [{ pool_size: 1 }]),
    );
    try {
      const a = client(proxy.port);
      const errors: { code?: string }[] = [];
      a.on('error', (e) => errors.push(e as { code?: string }));
      await a.connect();
      await a.query('BEGIN');
      await a.query('SELECT 1');
      await until(() => errors.length > 0, 3000, 'idle-in-transaction disconnect');
      assert.equal(errors[0].code, '25P03');
      // now() = statement_timestamp() only outside an earlier-started transaction block
      const rows = await query<{ fresh: boolean }>(proxy.port, 'SELECT now() = statement_timestamp() AS fresh');
      assert.deepEqual(rows, [{ fresh: true }], 'the next client is not inside the abandoned transaction');
      // a client that is idle but not in a transaction is left alone
      const b = client(proxy.port);
      await b.connect();
      await sleep(600);
      assert.deepEqual((await b.query('SELECT 1 AS x')).rows, [{ x: 1 }]);
      await b.end();
    } finally {
      await proxy.stop();
    }
  });
});

describe('pool maintenance', () => {
  test('min_pool_size connections are opened with no clients; idle_timeout closes the rest', async () => {
    const proxy = await startProxy((port) =>
      configFor(cluster, port, 'idle_timeout = 600', [{ pool_size: 5, min_pool_size: 2 }]),
    );
    try {
      await until(() => appBackends(cluster, cluster.primary) === 2, 5000, 'min_pool_size connections');
      const cs = await Promise.all(
        [0, 1, 2, 3].map(async () => {
          const c = client(proxy.port);
          await c.connect();
          await c.query('SELECT 1');
          return c;
        }),
      );
      assert.equal(appBackends(cluster, cluster.primary), 4);
      await Promise.all(cs.map((c) => c.end()));
      await until(
        () => appBackends(cluster, cluster.primary) === 2,
        5000,
        'idle connections above min_pool_size to close',
      );
      await sleep(1000);
      assert.equal(appBackends(cluster, cluster.primary), 2, 'min_pool_size connections stay');
    } finally {
      await proxy.stop();
    }
  });

  test('server_lifetime: an old connection is closed when released', async () => {
    const proxy = await startProxy((port) => configFor(cluster, port, 'server_lifetime = 300', [{ pool_size: 1 }]));
    try {
      const p1 = (await query<{ p: number }>(proxy.port, 'SELECT pg_backend_pid() AS p'))[0].p;
      await sleep(400);
      const p2 = (await query<{ p: number }>(proxy.port, 'SELECT pg_backend_pid() AS p'))[0].p;
      assert.notEqual(p1, p2);
    } finally {
      await proxy.stop();
    }
  });
});

describe('pgbench through openproxy (session mode)', () => {
  test('TPC-B-like with simple, extended and prepared protocol: no failed transactions', async () => {
    cluster.psql(cluster.primary, 'GRANT CREATE ON DATABASE postgres TO app');
    const init = spawnSync(
      'pgbench',
      ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(cluster.primary.port), '-U', APP_USER, 'postgres'],
      { encoding: 'utf8', env: { ...process.env, PGPASSWORD: APP_PASS } },
    );
    assert.equal(init.status, 0, init.stderr);
    const proxy = await startProxy((port) => configFor(cluster, port, '', [{ pool_size: 8 }]));
    try {
      for (const mode of ['simple', 'extended', 'prepared']) {
        const r = spawnSync(
          'pgbench',
          [
            '-n',
            '-c',
            '8',
            '-j',
            '2',
            '-T',
            '2',
            '-M',
            mode,
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
        assert.equal(r.status, 0, `${mode}: ${r.stderr}`);
        assert.match(r.stdout, /number of failed transactions: 0 /, r.stdout);
        const tps = Number(/tps = ([\d.]+)/.exec(r.stdout)?.[1]);
        assert.ok(tps > 0, r.stdout);
      }
    } finally {
      await proxy.stop();
    }
  });
});
