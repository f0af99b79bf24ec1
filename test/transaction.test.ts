// Transaction pooling against real PostgreSQL: the hold and release points, waiting for a server
// connection, fairness across worker threads. (Session state and pinning: transaction-state.test.ts.)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type pg from 'pg';
import { APP_PASS, APP_USER, appBackends, client, doomedClient, sleep, vanish, pgjs } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';
import { transactionCluster } from './helpers/tx-cluster';

const t = transactionCluster();
const tx = t.tx;

describe('hold and release points', () => {
  let proxy: Proxy;
  before(async () => {
    proxy = await startProxy(tx(2));
  });
  after(async () => {
    await proxy?.stop();
  });

  test('30 clients share 2 server connections; pg_stat_activity never shows more', async () => {
    let max = 0;
    let done = false;
    const watcher = (async () => {
      while (!done) {
        max = Math.max(max, appBackends(t.cluster, t.cluster.primary));
        await sleep(20);
      }
    })();
    const clients = await Promise.all(
      Array.from({ length: 30 }, async () => {
        const c = client(proxy.port);
        await c.connect();
        return c;
      }),
    );
    try {
      await Promise.all(
        clients.map(async (c, i) => {
          for (let k = 0; k < 5; k++) {
            const r = await c.query('SELECT $1::int * 10 AS v, pg_sleep(0.01)', [i + k]);
            assert.equal(r.rows[0].v, (i + k) * 10);
          }
        }),
      );
    } finally {
      done = true;
      await watcher;
      await Promise.all(clients.map((c) => c.end()));
    }
    assert.ok(max <= 2, `saw ${max} server connections for pool_size 2`);
  });

  test('an explicit transaction keeps its server connection until COMMIT, across round trips', async () => {
    const a = client(proxy.port);
    const b = client(proxy.port);
    await a.connect();
    await b.connect();
    try {
      await a.query('BEGIN');
      const p1 = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p;
      await b.query('SELECT 1'); // another client runs in between
      await a.query('INSERT INTO tx_rows VALUES (1)');
      const p2 = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p;
      assert.equal(p1, p2);
      await assert.rejects(a.query('SELECT 1/0'));
      await assert.rejects(a.query('SELECT 1'), /current transaction is aborted/, 'still the same failed transaction');
      await a.query('ROLLBACK');
      assert.deepEqual((await b.query('SELECT count(*)::int AS n FROM tx_rows')).rows, [{ n: 0 }]);
    } finally {
      await a.end();
      await b.end();
    }
  });

  test('pipelined extended-protocol queries (postgres.js, unnamed statements) all come back in order', async () => {
    const sql = pgjs(proxy.port, { max: 1, prepare: false });
    try {
      const results = await Promise.all(Array.from({ length: 100 }, (_, i) => sql`SELECT ${i}::int AS i`));
      assert.deepEqual(
        results.map((r) => r[0].i),
        Array.from({ length: 100 }, (_, i) => i),
      );
    } finally {
      await sql.end();
    }
  });

  test('portal suspension (cursor with row batches) passes through', async () => {
    const sql = pgjs(proxy.port, { max: 1, prepare: false });
    try {
      let seen = 0;
      let batches = 0;
      await sql.begin(async (t) => {
        for await (const rows of t`SELECT g FROM generate_series(1, 1000) g`.cursor(100)) {
          seen += rows.length;
          batches++;
        }
      });
      assert.equal(seen, 1000);
      assert.equal(batches, 10);
    } finally {
      await sql.end();
    }
  });

  test('large results, 16 MB values and COPY in both directions', async () => {
    const c = client(proxy.port);
    await c.connect();
    try {
      assert.equal((await c.query('SELECT g FROM generate_series(1, 150000) g')).rowCount, 150000);
      const v = (await c.query("SELECT repeat('y', 16 * 1024 * 1024) AS v")).rows[0].v as string;
      assert.equal(v.length, 16 * 1024 * 1024);
      const big = 'z'.repeat(16 * 1024 * 1024);
      assert.equal((await c.query('SELECT length($1::text) AS n', [big])).rows[0].n, big.length);
    } finally {
      await c.end();
    }
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
          'BEGIN;\nCREATE TEMP TABLE c(a int, b text) ON COMMIT DROP;\nCOPY c ' +
          'FROM STDIN;\n1\tone\n2\ttwo\n\\.\nCOPY c TO STDOUT;\nCOMMIT;\n',
        timeout: 20000,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '1\tone\n2\ttwo');
  });

  test('pgbench simple and extended through 2 server connections: no failed transactions', () => {
    const init = spawnSync(
      'pgbench',
      ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(t.cluster.primary.port), '-U', APP_USER, 'postgres'],
      { encoding: 'utf8', env: { ...process.env, PGPASSWORD: APP_PASS } },
    );
    assert.equal(init.status, 0, init.stderr);
    for (const mode of ['simple', 'extended']) {
      const r = spawnSync(
        'pgbench',
        [
          '-n',
          '-c',
          '12',
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
    }
  });
});

describe('waiting for a server connection', () => {
  test(
    'queued transactions are served in arrival order; one queued past ' +
      'query_wait_timeout gets 53300; one that leaves while queued costs ' +
      'nothing',
    async () => {
      const proxy = await startProxy((port) =>
        configFor(t.cluster, port, 'query_wait_timeout = 1500\nworker_threads = 1', [
          { pool_mode: 'transaction', pool_size: 1 },
        ]),
      );
      const clients = Array.from({ length: 5 }, () => client(proxy.port));
      const quitter = await doomedClient(proxy.port);
      try {
        await Promise.all(clients.map((c) => c.connect()));
        const [holder, a, b, c, late] = clients;
        late.on('error', () => undefined); // its 53300 is a FATAL: the connection ends after it
        await holder.query('BEGIN');
        const order: string[] = [];
        const run = (cl: pg.Client, name: string) => cl.query('SELECT 1').then(() => order.push(name));
        const pa = run(a, 'a');
        await sleep(50);
        void quitter.query('SELECT 1').catch(() => undefined);
        await sleep(50);
        const pb = run(b, 'b');
        await sleep(50);
        const pc = run(c, 'c');
        await sleep(50);
        vanish(quitter); // gone while queued: its turn must pass to the next client
        await sleep(200);
        await holder.query('COMMIT');
        await Promise.all([pa, pb, pc]);
        assert.deepEqual(order, ['a', 'b', 'c'], 'FIFO');
        // Now hold the only connection past query_wait_timeout: the queued client gets 53300.
        await holder.query('BEGIN');
        const t0 = Date.now();
        const err = await late.query('SELECT 1').then(
          () => null,
          (e: { code?: string; message: string }) => e,
        );
        assert.equal(err?.code, '53300', `queued past query_wait_timeout: ${err?.message}`);
        assert.ok(Date.now() - t0 >= 1400, `it waited query_wait_timeout (${Date.now() - t0} ms)`);
        await holder.query('COMMIT');
        assert.deepEqual((await a.query('SELECT 2 AS x')).rows, [{ x: 2 }], 'the pool still serves');
      } finally {
        for (const cl of clients) await cl.end().catch(() => undefined);
        await proxy.stop();
      }
    },
  );
});

describe('fairness across worker threads', () => {
  test('a client on one worker is served while the other worker holds every connection idle', async () => {
    const proxy = await startProxy(tx(2));
    // Least-loaded hand-off with ties to the lowest index: clients alternate worker 0, 1, 0, 1.
    const cs = [];
    for (let i = 0; i < 4; i++) {
      const c = client(proxy.port);
      await c.connect();
      cs.push(c);
    }
    try {
      await Promise.all([cs[0].query('SELECT pg_sleep(0.2)'), cs[2].query('SELECT pg_sleep(0.2)')]);
      assert.equal(appBackends(t.cluster, t.cluster.primary), 2, 'worker 0 holds both connections');
      const t0 = Date.now();
      assert.deepEqual((await cs[1].query('SELECT 1 AS x')).rows, [{ x: 1 }]);
      assert.ok(Date.now() - t0 < 2000, `served after ${Date.now() - t0} ms (connect_timeout is 10 s)`);
      assert.ok(appBackends(t.cluster, t.cluster.primary) <= 2);
    } finally {
      await Promise.all(cs.map((c) => c.end()));
      await proxy.stop();
    }
  });
});

describe('logging in without a server connection', () => {
  test('with the pool busy, a client logs in from the cached parameters; other startup options wait', async () => {
    const proxy = await startProxy(tx(1, 'worker_threads = 1\n'));
    const holder = client(proxy.port);
    const fast = client(proxy.port, { application_name: 'fast-login' });
    const checked = client(proxy.port, { options: '-c search_path=s_b' });
    try {
      await holder.connect();
      await holder.query('BEGIN');
      await holder.query('SELECT 1'); // the only server connection is now held
      const t0 = Date.now();
      await fast.connect();
      assert.ok(Date.now() - t0 < 2000, `logged in while the pool was busy (${Date.now() - t0} ms)`);
      // search_path is not a parameter the server reports: that login goes through a server.
      let loggedIn = false;
      const pending = checked.connect().then(() => (loggedIn = true));
      await sleep(500);
      assert.equal(loggedIn, false, 'an unreported startup option waits for a server to check it');
      const fastQuery = fast.query("SELECT current_setting('application_name') AS a");
      await holder.query('COMMIT');
      await pending;
      assert.deepEqual((await fastQuery).rows, [{ a: 'fast-login' }], 'its application_name reached the server');
      assert.deepEqual((await checked.query('SELECT v FROM which')).rows, [{ v: 'b' }], 'search_path applied');
      assert.deepEqual((await holder.query('SHOW search_path')).rows, [{ search_path: '"$user", public' }]);
    } finally {
      for (const c of [holder, fast, checked]) await c.end().catch(() => undefined);
      await proxy.stop();
    }
  });
});
