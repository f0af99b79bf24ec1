// server_check_query, server_reset_query and server_reset_query_always on a real primary, seen
// from the server: sequences count how often each statement ran, backend pids show reuse, and
// node-postgres clients check that their prepared statements and settings survive a reset.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PgCluster } from '../testing/pg-cluster';
import { client, createAppRole, query, sleep, until } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';

let cluster: PgCluster;
before(async () => {
  cluster = await PgCluster.start();
  createAppRole(cluster);
  cluster.psql(
    cluster.primary,
    'CREATE SEQUENCE check_seq; CREATE SEQUENCE reset_seq; GRANT USAGE ON SEQUENCE check_seq, reset_seq TO app; ' +
      // Called once, so that last_value counts every later call.
      "SELECT nextval('check_seq'), nextval('reset_seq');",
  );
});
after(() => cluster?.stop());

const seq = (name: string) => Number(cluster.psql(cluster.primary, `SELECT last_value FROM ${name}`).trim());

/** One proxy with pool_size 1 (every client reuses the same server connection), one worker. */
function proxy(general: string, mode: 'session' | 'transaction'): Promise<Proxy> {
  return startProxy((port) =>
    configFor(cluster, port, `worker_threads = 1\n${general}`, [{ pool_mode: mode, pool_size: 1 }]),
  );
}

/** `n` sessions one after another, each running `sql`; returns each session's backend pid. */
async function sessions(p: Proxy, n: number, sql = 'SELECT 1'): Promise<number[]> {
  const pids: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = client(p.port);
    await c.connect();
    await c.query(sql);
    pids.push((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
    await c.end();
  }
  return pids;
}

describe('server_check_query', () => {
  test('runs on a reused connection after healthcheck_delay', async () => {
    const p = await proxy(`healthcheck_delay = 1\nserver_check_query = "SELECT nextval('check_seq')"`, 'session');
    try {
      const before = seq('check_seq');
      const pids = await sessions(p, 4);
      assert.equal(new Set(pids).size, 1, 'one server connection, reused');
      assert.ok(seq('check_seq') - before >= 3, `check ran ${seq('check_seq') - before} times for 3 reuses`);
    } finally {
      await p.stop();
    }
  });

  test('runs between transactions in transaction mode too', async () => {
    const p = await proxy(`healthcheck_delay = 1\nserver_check_query = "SELECT nextval('check_seq')"`, 'transaction');
    try {
      const before = seq('check_seq');
      const c = client(p.port);
      await c.connect();
      for (let i = 0; i < 4; i++) {
        await c.query('SELECT 1');
        await sleep(5);
      }
      await c.end();
      assert.ok(seq('check_seq') - before >= 3, `check ran ${seq('check_seq') - before} times for 4 transactions`);
    } finally {
      await p.stop();
    }
  });

  test('a failing check closes the connection; clients are served from a new one', async () => {
    const p = await proxy('healthcheck_delay = 1\nserver_check_query = "SELECT 1/0"', 'session');
    try {
      const pids = await sessions(p, 3);
      assert.equal(new Set(pids).size, 3, `a new server connection each time: ${pids}`);
      assert.match(p.output(), /health check failed/);
    } finally {
      await p.stop();
    }
  });
});

describe('server_reset_query', () => {
  test('the default DISCARD ALL drops session state between session-mode clients', async () => {
    const p = await proxy('', 'session');
    try {
      const c = client(p.port);
      await c.connect();
      await c.query('CREATE TEMP TABLE left_behind (x int)');
      await c.end();
      const r = await query(p.port, "SELECT to_regclass('pg_temp.left_behind') IS NULL AS gone");
      assert.equal(r[0].gone, true);
    } finally {
      await p.stop();
    }
  });

  test('a configured reset query runs instead, once per session end', async () => {
    const p = await proxy(`server_reset_query = "SELECT nextval('reset_seq')"`, 'session');
    try {
      const before = seq('reset_seq');
      const pids = await sessions(p, 3, 'CREATE TEMP TABLE IF NOT EXISTS kept (x int)');
      assert.equal(new Set(pids).size, 1);
      // The last session's reset runs as it leaves.
      await until(() => seq('reset_seq') - before === 3, 5000, 'three resets');
      // Not DISCARD ALL: the temp table stayed for the next client, as configured.
      const r = await query(p.port, "SELECT to_regclass('pg_temp.kept') IS NOT NULL AS kept");
      assert.equal(r[0].kept, true);
    } finally {
      await p.stop();
    }
  });

  test('transaction mode runs it only with server_reset_query_always', async () => {
    for (const always of [false, true]) {
      const p = await proxy(
        `server_reset_query = "SELECT nextval('reset_seq')"\nserver_reset_query_always = ${always}`,
        'transaction',
      );
      try {
        const before = seq('reset_seq');
        const c = client(p.port);
        await c.connect();
        for (let i = 0; i < 5; i++) await c.query('SELECT 1');
        await c.end();
        const ran = seq('reset_seq') - before;
        if (always) assert.ok(ran >= 5, `ran ${ran} times for 5 transactions`);
        else assert.equal(ran, 0);
      } finally {
        await p.stop();
      }
    }
  });

  test('with DISCARD ALL after every transaction, prepared statements and settings survive', async () => {
    for (const cache of [0, 100]) {
      const p = await proxy(
        `server_reset_query_always = true\nprepared_statements_cache_size = ${cache}`,
        'transaction',
      );
      try {
        const c = client(p.port);
        await c.connect();
        await c.query('SET search_path = pg_catalog, public');
        await c.query("SET application_name = 'reset-test'");
        for (let i = 0; i < 4; i++) {
          // Unnamed with the cache off (named ones need it in transaction mode); named with it on.
          const r = await c.query({
            ...(cache ? { name: 'two' } : {}),
            text:
              "SELECT $1::int + 1 AS n, current_setting('search_path') AS sp, " +
              "current_setting('application_name') AS app",
            values: [i],
          });
          assert.deepEqual(r.rows[0], { n: i + 1, sp: 'pg_catalog, public', app: 'reset-test' });
        }
        await c.end();
      } finally {
        await p.stop();
      }
    }
  });
});
