// Transaction pooling against real PostgreSQL: session state that never crosses clients, dedicated
// mode for unmovable state, a server ending its session between transactions, statement_timeout.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { APP_USER, client, doomedClient, query, sleep, until, vanish } from './helpers/db';
import { startProxy } from './helpers/proxy';
import { startRelay } from './helpers/relay';
import { transactionCluster } from './helpers/tx-cluster';

const t = transactionCluster();
const tx = t.tx;

describe('session state never crosses clients', () => {
  test('two clients racing on one server connection each always see their own settings', async () => {
    const defaultTz = t.cluster.psql(t.cluster.primary, 'SHOW TimeZone');
    const proxy = await startProxy(tx(1, 'worker_threads = 1'));
    const a = client(proxy.port, { application_name: 'client-a' });
    const b = client(proxy.port, { application_name: 'client-b' });
    await a.connect();
    await b.connect();
    try {
      await a.query(
        "SET search_path = s_a; SET statement_timeout = '7s'; SET TIME ZONE 'Asia/Seoul'; SET work_mem = '8MB'",
      );
      await b.query('SET search_path = s_b');
      const check = async (c: pg.Client, want: Record<string, string>) => {
        const r = (
          await c.query(
            'SELECT (SELECT v FROM which) AS which, ' +
              "current_setting('statement_timeout') AS st, " +
              "current_setting('TimeZone') AS tz, current_setting('work_mem') AS wm, " +
              "current_setting('application_name') AS app, pg_backend_pid() AS pid",
          )
        ).rows[0];
        const { pid, ...rest } = r;
        assert.deepEqual(rest, want);
        return pid as number;
      };
      const pids = new Set<number>();
      for (let i = 0; i < 10; i++) {
        const [pa, pb] = await Promise.all([
          check(a, { which: 'a', st: '7s', tz: 'Asia/Seoul', wm: '8MB', app: 'client-a' }),
          check(b, { which: 'b', st: '0', tz: defaultTz, wm: '4MB', app: 'client-b' }),
        ]);
        pids.add(pa).add(pb);
      }
      assert.equal(pids.size, 1, 'both clients really shared one server connection');
      await a.query('RESET work_mem');
      await a.query('BEGIN; SET search_path = s_b; ROLLBACK');
      const r = (await a.query("SELECT (SELECT v FROM which) AS which, current_setting('work_mem') AS wm")).rows[0];
      assert.deepEqual(r, { which: 'a', wm: '4MB' }, 'RESET and a rolled-back SET are tracked');
      await a.query('RESET ALL');
      assert.equal(
        (await a.query("SELECT current_setting('application_name') AS app")).rows[0].app,
        'client-a',
        'RESET ALL returns to the startup value',
      );
      await a.query("SELECT set_config('search_path', 's_b', false)");
      assert.equal((await a.query('SELECT v FROM which')).rows[0].v, 'b', 'set_config with a literal name is tracked');
      assert.equal((await b.query('SELECT v FROM which')).rows[0].v, 'b');
    } finally {
      await a.end();
      await b.end();
      await proxy.stop();
    }
  });

  test('startup options (-c) and client_encoding follow the client onto any connection', async () => {
    const proxy = await startProxy(tx(1));
    const a = client(proxy.port, { options: '-c search_path=s_a -c client_encoding=LATIN1' } as never);
    const b = client(proxy.port);
    await a.connect();
    await b.connect();
    try {
      for (let i = 0; i < 3; i++) {
        assert.deepEqual((await a.query("SELECT v, current_setting('client_encoding') AS enc FROM which")).rows, [
          { v: 'a', enc: 'LATIN1' },
        ]);
        assert.deepEqual(
          (await b.query("SELECT current_setting('search_path') AS sp, current_setting('client_encoding') AS enc"))
            .rows,
          [{ sp: '"$user", public', enc: 'UTF8' }],
        );
      }
    } finally {
      await a.end();
      await b.end();
      await proxy.stop();
    }
  });
});

describe('dedicated mode (pinning) for state that cannot move', () => {
  test('a temp table keeps its client on one server; nobody else sees it, nothing survives the client', async () => {
    const proxy = await startProxy(tx(2));
    const a = client(proxy.port);
    const b = client(proxy.port);
    await a.connect();
    await b.connect();
    try {
      await a.query('CREATE TEMP TABLE mine(x int)');
      await a.query('INSERT INTO mine VALUES (42)');
      for (let i = 0; i < 5; i++) {
        assert.deepEqual((await a.query('SELECT x FROM mine')).rows, [{ x: 42 }]);
        assert.deepEqual((await b.query("SELECT to_regclass('pg_temp.mine') IS NULL AS gone")).rows, [{ gone: true }]);
      }
      await a.end();
      await sleep(200);
      const c = client(proxy.port);
      await c.connect();
      const seen = await Promise.all(
        [0, 1, 2, 3].map(() =>
          c.query(
            "SELECT to_regclass('pg_temp.mine') IS NULL AS gone, (SELECT " +
              "count(*)::int FROM pg_class WHERE relpersistence = 't') AS temps",
          ),
        ),
      );
      for (const r of seen) assert.deepEqual(r.rows, [{ gone: true, temps: 0 }]);
      await c.end();
      assert.match(proxy.output(), /client pinned to its server connection .*reason=temp_table/);
    } finally {
      await b.end();
      await proxy.stop();
    }
  });

  test('a session advisory lock is released when its client vanishes', async () => {
    const proxy = await startProxy(tx(2));
    try {
      const a = await doomedClient(proxy.port);
      await a.query('SELECT pg_advisory_lock(777)');
      await a.query('SELECT 1');
      vanish(a);
      await sleep(300);
      assert.deepEqual(await query(proxy.port, 'SELECT pg_try_advisory_lock(777) AS got'), [{ got: true }]);
      assert.match(proxy.output(), /reason=advisory_lock/);
    } finally {
      await proxy.stop();
    }
  });

  test('LISTEN keeps its connection, so notifications arrive', async () => {
    const proxy = await startProxy(tx(2));
    const a = client(proxy.port);
    const b = client(proxy.port);
    await a.connect();
    await b.connect();
    try {
      const got = new Promise<string>((resolve) => a.on('notification', (n) => resolve(n.payload ?? '')));
      await a.query('LISTEN chan');
      await b.query('SELECT 1');
      await b.query("NOTIFY chan, 'hello'");
      assert.equal(await got, 'hello');
    } finally {
      await a.end();
      await b.end();
      await proxy.stop();
    }
  });

  test('SQL PREPARE / EXECUTE and WITH HOLD cursors work across transactions', async () => {
    const proxy = await startProxy(tx(2));
    const a = client(proxy.port);
    const b = client(proxy.port);
    await a.connect();
    await b.connect();
    try {
      await a.query('PREPARE twice(int) AS SELECT $1 * 2 AS v');
      await b.query('SELECT 1');
      assert.deepEqual((await a.query('EXECUTE twice(21)')).rows, [{ v: 42 }]);
      await a.query('BEGIN; DECLARE cur CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 3) g; COMMIT');
      await b.query('SELECT 1');
      assert.deepEqual((await a.query('FETCH 2 FROM cur')).rows, [{ g: 1 }, { g: 2 }]);
    } finally {
      await a.end();
      await b.end();
      await proxy.stop();
    }
  });

  test('a client killed mid-transaction leaves no rows and no open transaction behind', async () => {
    const proxy = await startProxy(tx(1));
    try {
      const a = await doomedClient(proxy.port);
      await a.query('BEGIN');
      await a.query('INSERT INTO tx_rows VALUES (99)');
      vanish(a);
      await sleep(200);
      assert.deepEqual(
        await query(
          proxy.port,
          'SELECT count(*)::int AS n, now() = statement_timestamp() AS fresh FROM tx_rows WHERE x = 99',
        ),
        [{ n: 0, fresh: true }],
      );
    } finally {
      await proxy.stop();
    }
  });
});

describe('a server ending its session between transactions', () => {
  test(
    'a FATAL arriving right behind ReadyForQuery (one TCP read) or on an ' +
      'idle pooled connection never reaches a client',
    async () => {
      const relay = await startRelay(t.cluster.primary.port);
      const proxy = await startProxy((p) =>
        tx(1)(p).replace(`"127.0.0.1", ${t.cluster.primary.port},`, `"127.0.0.1", ${relay.port},`),
      );
      const c = client(proxy.port);
      const unsolicited: string[] = [];
      c.on('error', (e: Error & { code?: string }) => unsolicited.push(`${e.code}: ${e.message}`));
      await c.connect();
      const backendPid = async () => Number((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
      const terminate = async (pid: number) => {
        assert.equal(t.cluster.psql(t.cluster.primary, `SELECT pg_terminate_backend(${pid})`), 't');
        await until(
          () => t.cluster.psql(t.cluster.primary, `SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`) === '0',
          5000,
          'backend gone',
        );
      };
      try {
        // 1. The answer to SELECT and the server's 57P01 FATAL arrive in one read.
        const first = await backendPid();
        relay.hold();
        const q = c.query('SELECT 42 AS answer');
        await sleep(150); // the answer is kept by the relay
        await terminate(first);
        await until(() => relay.heldCloses() === 1, 5000, 'the FATAL and the close are held too');
        relay.release();
        assert.deepEqual((await q).rows, [{ answer: 42 }]);
        await sleep(100);
        const second = await backendPid();
        assert.notEqual(second, first, 'a new server connection replaced the terminated one');
        // 2. The connection is idle in the pool when the server ends it.
        await terminate(second);
        await sleep(100);
        assert.notEqual(await backendPid(), second);
        assert.deepEqual(unsolicited, [], 'the client never saw an error it did not ask for');
      } finally {
        await c.end().catch(() => undefined);
        await proxy.stop();
        await relay.close();
      }
    },
  );

  test(
    "a FATAL in the same read as the answer to openproxy's own SET " +
      "(matching a client's settings): that connection is dropped, the query " +
      'runs on a fresh one',
    async () => {
      const relay = await startRelay(t.cluster.primary.port);
      const proxy = await startProxy((p) =>
        tx(
          1,
          'worker_threads = 1',
        )(p).replace(`"127.0.0.1", ${t.cluster.primary.port},`, `"127.0.0.1", ${relay.port},`),
      );
      const x = client(proxy.port, { application_name: 'client_x' });
      const y = client(proxy.port, { application_name: 'client_y' });
      for (const c of [x, y]) c.on('error', () => undefined);
      const appPids = () =>
        t.cluster
          .psql(
            t.cluster.primary,
            `SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE usename = '${APP_USER}'`,
          )
          .split(',')
          .filter(Boolean)
          .map(Number);
      try {
        await x.connect();
        await y.connect(); // the pool's one connection now carries y's application_name
        const [backend] = appPids();
        relay.hold();
        const q = x.query(`SELECT 7 AS n, current_setting('application_name') AS app`);
        await until(() => relay.heldBytes() > 0, 5000, 'the answer to the settings statement is held');
        assert.equal(t.cluster.psql(t.cluster.primary, `SELECT pg_terminate_backend(${backend})`), 't');
        await until(() => relay.heldCloses() === 1, 5000, 'the FATAL and the close are held too');
        relay.release();
        const answer = await Promise.race([q, sleep(10000).then(() => 'no answer within 10 s')]);
        assert.deepEqual(typeof answer === 'string' ? answer : answer.rows, [{ n: 7, app: 'client_x' }]);
        assert.deepEqual((await y.query(`SELECT current_setting('application_name') AS app`)).rows, [
          { app: 'client_y' },
        ]);
      } finally {
        await x.end().catch(() => undefined);
        await y.end().catch(() => undefined);
        await proxy.stop();
        await relay.close();
      }
    },
  );

  test(
    "a FATAL in the same read as a new connection's login: that connection " +
      'is never handed out, the query runs on a fresh one',
    async () => {
      const relay = await startRelay(t.cluster.primary.port);
      const proxy = await startProxy((p) =>
        tx(1)(p).replace(`"127.0.0.1", ${t.cluster.primary.port},`, `"127.0.0.1", ${relay.port},`),
      );
      const c = client(proxy.port);
      c.on('error', () => undefined);
      await c.connect();
      const appPids = () =>
        t.cluster
          .psql(
            t.cluster.primary,
            `SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE usename = '${APP_USER}'`,
          )
          .split(',')
          .filter(Boolean)
          .map(Number);
      const terminate = async (pid: number) => {
        assert.equal(t.cluster.psql(t.cluster.primary, `SELECT pg_terminate_backend(${pid})`), 't');
        await until(() => !appPids().includes(pid), 5000, 'backend gone');
      };
      try {
        // The pool's only connection goes, so the next query needs a new one.
        const first = Number((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
        await terminate(first);
        await sleep(100);
        relay.holdNextLogin();
        const q = c.query('SELECT 42 AS answer');
        await until(() => relay.heldLogins() === 1, 5000, "the new connection's login answer is held");
        const [fresh] = appPids();
        assert.ok(fresh > 0, 'the new backend');
        // Its session ends before openproxy has read its login answer: both arrive in one read.
        await terminate(fresh);
        await until(() => relay.heldCloses() === 1, 5000, 'the FATAL and the close are held too');
        relay.release();
        const answer = await Promise.race([q, sleep(10000).then(() => 'no answer within 10 s')]);
        assert.deepEqual(typeof answer === 'string' ? answer : answer.rows, [{ answer: 42 }]);
        assert.match(proxy.output(), /server ended a new connection at login; trying once more/);
      } finally {
        await c.end().catch(() => undefined);
        await proxy.stop();
        await relay.close();
      }
    },
  );
});

describe('timeouts', () => {
  test('per-user statement_timeout: the statement is cancelled on the server, the client keeps working', async () => {
    const proxy = await startProxy(tx(2, '', 'statement_timeout = 300'));
    const a = client(proxy.port);
    await a.connect();
    try {
      const t0 = Date.now();
      await assert.rejects(a.query('SELECT pg_sleep(5)'), (e: { code: string }) => e.code === '57014');
      assert.ok(Date.now() - t0 < 2500, `cancelled after ${Date.now() - t0} ms`);
      assert.deepEqual((await a.query('SELECT 1 AS x')).rows, [{ x: 1 }]);
      assert.match(proxy.output(), /statement_timeout reached/);
    } finally {
      await a.end();
      await proxy.stop();
    }
  });

  test('query_timeout on a real server: 08006, the backend is cancelled and gone, others served', async () => {
    const proxy = await startProxy(tx(2, 'query_timeout = 500'));
    const a = client(proxy.port);
    const errors: { code?: string }[] = [];
    a.on('error', (e) => errors.push(e as { code?: string }));
    await a.connect();
    try {
      const t0 = Date.now();
      await assert.rejects(a.query('SELECT pg_sleep(30)'), (e: { code: string; message: string }) => {
        assert.equal(e.code, '08006');
        assert.match(e.message, /query_timeout \(500 ms\)/);
        return true;
      });
      assert.ok(Date.now() - t0 < 3000, `ended after ${Date.now() - t0} ms`);
      const sleeping = () =>
        t.cluster.psql(t.cluster.primary, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'");
      await until(() => sleeping() === '0', 5000, 'the sleeping backend to be gone');
      assert.deepEqual(await query(proxy.port, 'SELECT 1 AS x'), [{ x: 1 }]);
    } finally {
      await a.end().catch(() => undefined);
      await proxy.stop();
    }
  });

  test('client_idle_timeout closes an idle client with 57P05; a busy or in-transaction one is left alone', async () => {
    const proxy = await startProxy(tx(2, 'client_idle_timeout = 800'));
    const idle = client(proxy.port);
    const busy = client(proxy.port);
    const inTx = client(proxy.port);
    const errors: { code?: string; message: string }[] = [];
    idle.on('error', (e) => errors.push(e as { code?: string; message: string }));
    try {
      for (const c of [idle, busy, inTx]) await c.connect();
      await inTx.query('BEGIN');
      // A statement longer than the timeout: idle time counts from its answer, not from the send.
      await busy.query('SELECT pg_sleep(1.5)');
      await busy.query('SELECT 1');
      await until(() => errors.length > 0, 5000, 'the idle client to be closed');
      assert.equal(errors[0].code, '57P05');
      assert.match(errors[0].message, /client_idle_timeout \(800 ms\)/);
      await inTx.query('COMMIT');
    } finally {
      for (const c of [idle, busy, inTx]) await c.end().catch(() => undefined);
      await proxy.stop();
    }
  });

  test('idle_client_in_transaction_timeout in transaction mode frees the held connection', async () => {
    const proxy = await startProxy(tx(1, 'idle_client_in_transaction_timeout = 300'));
    try {
      const a = client(proxy.port);
      const errors: { code?: string }[] = [];
      a.on('error', (e) => errors.push(e as { code?: string }));
      await a.connect();
      await a.query('BEGIN');
      await until(() => errors.length > 0, 3000, 'idle-in-transaction disconnect');
      assert.equal(errors[0].code, '25P03');
      assert.deepEqual(
        await query(proxy.port, 'SELECT 1 AS x'),
        [{ x: 1 }],
        'the only server connection is usable again',
      );
    } finally {
      await proxy.stop();
    }
  });
});
