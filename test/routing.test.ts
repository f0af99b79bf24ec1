// Query routing against a real primary and two streaming replicas: which server ran a statement is
// read back with inet_server_port() / pg_is_in_recovery().
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PgCluster } from '../testing/pg-cluster';
import { APP_USER, client, createAppRole, until, pgjs } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';

let cluster: PgCluster;
let primaryPort: number;
let replicaPorts: number[];

before(async () => {
  cluster = await PgCluster.start({ replicas: 2 });
  createAppRole(cluster);
  cluster.psql(
    cluster.primary,
    `CREATE TABLE routed (id serial PRIMARY KEY, v int); GRANT ALL ON routed TO ${APP_USER};
     GRANT ALL ON SEQUENCE routed_id_seq TO ${APP_USER};
     CREATE SEQUENCE routed_seq; GRANT ALL ON SEQUENCE routed_seq TO ${APP_USER};
     CREATE FUNCTION routed_writer() RETURNS int LANGUAGE sql AS 'INSERT INTO routed (v) VALUES (7) RETURNING 1';
     CREATE FUNCTION routed_port() RETURNS int LANGUAGE sql STABLE AS 'SELECT inet_server_port()';`,
  );
  primaryPort = cluster.primary.port;
  replicaPorts = cluster.replicas.map((r) => r.port);
  await until(
    () =>
      cluster.replicas.every(
        (r) => cluster.psql(r, "SELECT count(*) FROM pg_proc WHERE proname = 'routed_port'").trim() === '1',
      ),
    10000,
    'replicas caught up',
  );
});
after(() => cluster?.stop());

// These tests check where each statement goes; read_your_writes (on by default) would send reads
// right after a write to the primary on purpose, and is tested in routing-lag.test.ts.
const SPLIT = 'query_parser_enabled = true\nquery_parser_read_write_splitting = true\nread_your_writes = false\n';

async function portOf(
  c: { query(sql: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }> },
  sql = 'SELECT inet_server_port() AS port',
  params?: unknown[],
): Promise<number> {
  const r = await c.query(sql, params);
  return Number(r.rows[0].port);
}

describe('read/write splitting, transaction mode', () => {
  let proxy: Proxy;
  before(async () => {
    proxy = await startProxy((port) => configFor(cluster, port, '', [{ pool_mode: 'transaction', extraPool: SPLIT }]));
  });
  after(() => proxy?.stop());

  test('simple and extended SELECTs outside a transaction go to a replica', async () => {
    const c = client(proxy.port);
    await c.connect();
    try {
      for (let i = 0; i < 6; i++) {
        assert.ok(replicaPorts.includes(await portOf(c)), 'simple-protocol SELECT on a replica');
        assert.ok(
          replicaPorts.includes(await portOf(c, 'SELECT inet_server_port() AS port WHERE $1::int = 1', [1])),
          'extended-protocol SELECT on a replica',
        );
      }
      const r = await c.query('SELECT pg_is_in_recovery() AS rec');
      assert.equal(r.rows[0].rec, true);
    } finally {
      await c.end();
    }
  });

  test('writes, explicit transactions, row locks, nextval and unknown statements go to the primary', async () => {
    const c = client(proxy.port);
    await c.connect();
    try {
      await c.query('INSERT INTO routed (v) VALUES ($1)', [1]);
      await c.query('INSERT INTO routed (v) VALUES (2)');
      assert.equal(await portOf(c, "SELECT inet_server_port() AS port, nextval('routed_seq')"), primaryPort);
      assert.equal(await portOf(c, 'SELECT inet_server_port() AS port FROM routed LIMIT 1 FOR UPDATE'), primaryPort);
      assert.equal(
        await portOf(
          c,
          'WITH d AS (UPDATE routed SET v = v RETURNING id) SELECT inet_server_port() AS port FROM d LIMIT 1',
        ),
        primaryPort,
      );
      await c.query('BEGIN');
      assert.equal(await portOf(c), primaryPort, 'explicit transaction on the primary');
      await c.query('INSERT INTO routed (v) VALUES (3)');
      await c.query('COMMIT');
      await c.query('START TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      assert.equal(await portOf(c), primaryPort);
      await c.query('COMMIT');
    } finally {
      await c.end();
    }
  });

  test('read-only transactions may go to a replica', async () => {
    const c = client(proxy.port);
    await c.connect();
    try {
      await c.query('BEGIN READ ONLY');
      const first = await portOf(c);
      assert.ok(replicaPorts.includes(first));
      assert.equal(await portOf(c), first, 'the transaction stays on its server');
      await c.query('COMMIT');
      await c.query('BEGIN; SET TRANSACTION READ ONLY');
      assert.ok(replicaPorts.includes(await portOf(c)));
      await c.query('COMMIT');
      // A session whose transactions default to read only: plain BEGIN may go to a replica too.
      await c.query('SET default_transaction_read_only = on');
      await c.query('BEGIN');
      assert.ok(replicaPorts.includes(await portOf(c)));
      await c.query('COMMIT');
      await c.query('SET default_transaction_read_only = off');
      await c.query('BEGIN');
      assert.equal(await portOf(c), primaryPort);
      await c.query('COMMIT');
    } finally {
      await c.end();
    }
  });

  test('a pipelined read, write, read batch (postgres.js) succeeds: the write waits for the primary', async () => {
    const sql = pgjs(proxy.port, { max: 1, prepare: false });
    try {
      for (let round = 0; round < 5; round++) {
        const [a, w] = await Promise.all([
          sql`SELECT inet_server_port() AS port`,
          sql`INSERT INTO routed (v) VALUES (${round}) RETURNING inet_server_port() AS port`,
          sql`SELECT inet_server_port() AS port`,
        ]);
        assert.ok(replicaPorts.includes(a[0].port));
        assert.equal(w[0].port, primaryPort);
      }
    } finally {
      await sql.end();
    }
  });

  test('a SELECT of a writing function is retried on the primary before the client sees the refusal', async () => {
    const c = client(proxy.port);
    await c.connect();
    try {
      const before = Number((await c.query('SELECT count(*) AS n FROM routed WHERE v = 7')).rows[0].n);
      const r = await c.query('SELECT routed_writer() AS n');
      assert.equal(r.rows[0].n, 1);
      const r2 = await c.query('SELECT routed_writer() AS n WHERE $1::int = 1', [1]);
      assert.equal(r2.rows[0].n, 1, 'extended protocol too');
      await until(
        async () => Number((await c.query('SELECT count(*) AS n FROM routed WHERE v = 7')).rows[0].n) === before + 2,
        5000,
        'both writes replicated',
      );
    } finally {
      await c.end();
    }
    assert.match(proxy.output(), /needs the primary; routing it there from now on/);
    assert.match(proxy.output(), /read retried on another server/);
  });
});

describe('routing settings', () => {
  test('primary_reads_enabled spreads reads over the primary and the replicas', async () => {
    const proxy = await startProxy((port) =>
      configFor(cluster, port, '', [
        {
          pool_mode: 'transaction',
          extraPool: `${SPLIT}primary_reads_enabled = true\nload_balancing_mode = "round_robin"\n`,
        },
      ]),
    );
    try {
      const c = client(proxy.port);
      await c.connect();
      const seen = new Map<number, number>();
      for (let i = 0; i < 30; i++) {
        const p = await portOf(c);
        seen.set(p, (seen.get(p) ?? 0) + 1);
      }
      await c.end();
      assert.deepEqual([...seen.keys()].sort(), [primaryPort, ...replicaPorts].sort());
      for (const n of seen.values())
        assert.equal(n, 10, `round robin over three servers: ${JSON.stringify([...seen])}`);
    } finally {
      await proxy.stop();
    }
  });

  test('default_role = "replica" without the parser sends every transaction to a replica', async () => {
    const proxy = await startProxy((port) =>
      configFor(cluster, port, '', [{ pool_mode: 'transaction', extraPool: 'default_role = "replica"\n' }]),
    );
    try {
      const c = client(proxy.port);
      await c.connect();
      for (let i = 0; i < 5; i++) assert.ok(replicaPorts.includes(await portOf(c)));
      await c.query('BEGIN');
      assert.ok(replicaPorts.includes(await portOf(c)));
      await c.query('ROLLBACK');
      await c.end();
    } finally {
      await proxy.stop();
    }
  });

  test('without routing every transaction goes to the primary', async () => {
    const proxy = await startProxy((port) => configFor(cluster, port, '', [{ pool_mode: 'transaction' }]));
    try {
      const c = client(proxy.port);
      await c.connect();
      for (let i = 0; i < 5; i++) assert.equal(await portOf(c), primaryPort);
      await c.end();
    } finally {
      await proxy.stop();
    }
  });

  test('statements longer than query_parser_max_length go to the default role (primary)', async () => {
    const proxy = await startProxy((port) =>
      configFor(cluster, port, '', [{ pool_mode: 'transaction', extraPool: `${SPLIT}query_parser_max_length = 60\n` }]),
    );
    try {
      const c = client(proxy.port);
      await c.connect();
      assert.ok(replicaPorts.includes(await portOf(c)));
      assert.equal(await portOf(c, `SELECT inet_server_port() AS port /* ${'x'.repeat(80)} */`), primaryPort);
      await c.end();
    } finally {
      await proxy.stop();
    }
  });

  test('session mode: the first query chooses the server for the whole session', async () => {
    const proxy = await startProxy((port) =>
      configFor(cluster, port, '', [{ pool_mode: 'session', extraPool: SPLIT }]),
    );
    try {
      const reader = client(proxy.port);
      await reader.connect();
      const p = await portOf(reader);
      assert.ok(replicaPorts.includes(p));
      for (let i = 0; i < 3; i++) assert.equal(await portOf(reader), p, 'same server for the session');
      await reader.end();
      const writer = client(proxy.port);
      await writer.connect();
      await writer.query('INSERT INTO routed (v) VALUES (9)');
      assert.equal(await portOf(writer), primaryPort, 'a session that began with a write stays on the primary');
      await writer.end();
    } finally {
      await proxy.stop();
    }
  });
});

describe('client routing commands', () => {
  let proxy: Proxy;
  before(async () => {
    proxy = await startProxy((port) => configFor(cluster, port, '', [{ pool_mode: 'transaction', extraPool: SPLIT }]));
  });
  after(() => proxy?.stop());

  test("SET SERVER ROLE TO 'primary' | 'replica' | 'auto' | 'default' and SHOW SERVER ROLE", async () => {
    const c = client(proxy.port);
    await c.connect();
    try {
      const show = async () => (await c.query('SHOW SERVER ROLE')).rows[0].server_role;
      assert.equal(await show(), 'auto');
      await c.query("SET SERVER ROLE TO 'primary'");
      assert.equal(await show(), 'primary');
      for (let i = 0; i < 3; i++) assert.equal(await portOf(c), primaryPort);
      await c.query("SET SERVER ROLE TO 'replica'");
      assert.equal(await show(), 'replica');
      for (let i = 0; i < 3; i++) assert.ok(replicaPorts.includes(await portOf(c)));
      await c.query('BEGIN');
      assert.ok(replicaPorts.includes(await portOf(c)), 'replica role: even an explicit transaction');
      await c.query('COMMIT');
      await c.query("SET SERVER ROLE TO 'auto'");
      await c.query('INSERT INTO routed (v) VALUES (11)');
      assert.ok(replicaPorts.includes(await portOf(c)));
      await c.query("SET SERVER ROLE TO 'default'");
      assert.equal(await show(), 'auto');
    } finally {
      await c.end();
    }
  });

  test("SET SERVER ROLE TO 'any' lets the primary take reads; writes still go to the primary", async () => {
    const c = client(proxy.port);
    await c.connect();
    try {
      await c.query("SET SERVER ROLE TO 'any'");
      const seen = new Set<number>();
      for (let i = 0; i < 60 && seen.size < 3; i++) seen.add(await portOf(c));
      assert.equal(seen.size, 3, 'reads on the primary and both replicas');
      await c.query('INSERT INTO routed (v) VALUES (12)');
    } finally {
      await c.end();
    }
  });

  test('SET PRIMARY READS TO on | off | default and SHOW PRIMARY READS', async () => {
    const c = client(proxy.port);
    await c.connect();
    try {
      const show = async () => (await c.query('SHOW PRIMARY READS')).rows[0].primary_reads;
      assert.equal(await show(), 'off');
      await c.query('SET PRIMARY READS TO on');
      assert.equal(await show(), 'on');
      const seen = new Set<number>();
      for (let i = 0; i < 60 && !seen.has(primaryPort); i++) seen.add(await portOf(c));
      assert.ok(seen.has(primaryPort), 'the primary takes reads');
      await c.query('SET PRIMARY READS TO default');
      assert.equal(await show(), 'off');
      for (let i = 0; i < 10; i++) assert.ok(replicaPorts.includes(await portOf(c)));
    } finally {
      await c.end();
    }
  });
});
