// Session mode with read/write splitting: a session whose first query chose a replica moves to the
// primary at a transaction boundary when a statement needs it, carrying its settings; state that
// cannot move gets a clear error. Real primary + two replicas; ports tell where a statement ran.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, client, createAppRole, until, pgjs } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';

let cluster: PgCluster;
let proxy: Proxy;
let replicaPorts: number[];
const SPLIT = 'query_parser_enabled = true\nquery_parser_read_write_splitting = true\n';

before(async () => {
  cluster = await PgCluster.start({ replicas: 2 });
  createAppRole(cluster);
  cluster.psql(
    cluster.primary,
    `CREATE TABLE sess_t (id serial PRIMARY KEY, who text, v int); GRANT ` +
      `ALL ON sess_t TO ${APP_USER}; GRANT ALL ON SEQUENCE sess_t_id_seq TO ` +
      `${APP_USER};`,
  );
  replicaPorts = cluster.replicas.map((r) => r.port);
  await until(
    () =>
      cluster.replicas.every(
        (r) => cluster.psql(r, "SELECT count(*) FROM pg_class WHERE relname = 'sess_t'").trim() === '1',
      ),
    10000,
    'replicas caught up',
  );
  proxy = await startProxy((port) =>
    configFor(cluster, port, 'connect_timeout = 20000\nprepared_statements_cache_size = 100', [
      { pool_mode: 'session', pool_size: 3, extraPool: SPLIT },
    ]),
  );
});
after(async () => {
  await proxy?.stop();
  cluster?.stop();
});

const port = async (c: { query(sql: string): Promise<{ rows: Record<string, unknown>[] }> }) =>
  Number((await c.query('SELECT inet_server_port() AS p')).rows[0].p);

describe('session mode with routing', () => {
  test('a session that read on a replica writes on the primary, keeps its settings, reads its write', async () => {
    const c = client(proxy.port, { application_name: 'sess-app' });
    await c.connect();
    try {
      assert.ok(replicaPorts.includes(await port(c)), 'first read on a replica');
      await c.query("SET statement_timeout = '4321ms'");
      await c.query("SET application_name = 'renamed'");
      const w = await c.query("INSERT INTO sess_t (who, v) VALUES ('moved', 1) RETURNING inet_server_port() AS p");
      assert.equal(Number(w.rows[0].p), cluster.primary.port, 'the write ran on the primary');
      assert.equal((await c.query('SHOW statement_timeout')).rows[0].statement_timeout, '4321ms');
      assert.equal((await c.query('SHOW application_name')).rows[0].application_name, 'renamed');
      const r = await c.query("SELECT count(*)::int AS n, inet_server_port() AS p FROM sess_t WHERE who = 'moved'");
      assert.equal(r.rows[0].n, 1, 'reads its own write');
      assert.equal(Number(r.rows[0].p), cluster.primary.port, 'the session stays on the primary');
    } finally {
      await c.end();
    }
  });

  test('a read-only transaction on the replica refuses a write inside it; after it the session moves', async () => {
    const c = client(proxy.port);
    await c.connect();
    try {
      await c.query('BEGIN READ ONLY');
      assert.ok(replicaPorts.includes(await port(c)));
      await assert.rejects(
        c.query("INSERT INTO sess_t (who, v) VALUES ('ro', 1)"),
        (e: { code?: string }) => e.code === '25006',
      );
      await c.query('ROLLBACK');
      await c.query("INSERT INTO sess_t (who, v) VALUES ('after-ro', 1)");
      assert.equal(await port(c), cluster.primary.port);
    } finally {
      await c.end();
    }
  });

  test('a read and a write pipelined (postgres.js): the write waits for the read, runs on the primary', async () => {
    const sql = pgjs(proxy.port, { max: 1, prepare: false });
    try {
      const [a, w, b] = await Promise.all([
        sql`SELECT inet_server_port() AS p`,
        sql`INSERT INTO sess_t (who, v) VALUES ('pipelined', 1) RETURNING inet_server_port() AS p`,
        sql`SELECT count(*)::int AS n FROM sess_t WHERE who = 'pipelined'`,
      ]);
      assert.ok(replicaPorts.includes(a[0].p), 'the first read on a replica');
      assert.equal(w[0].p, cluster.primary.port);
      assert.equal(b[0].n, 1);
    } finally {
      await sql.end({ timeout: 5 });
    }
  });

  test('state that cannot move (SQL PREPARE on the replica) gets an error naming it; the session goes on', async () => {
    const c = client(proxy.port);
    await c.connect();
    try {
      await c.query('PREPARE sess_p AS SELECT inet_server_port() AS p');
      const ran = Number((await c.query('EXECUTE sess_p')).rows[0].p);
      assert.ok(replicaPorts.includes(ran));
      await assert.rejects(
        c.query("INSERT INTO sess_t (who, v) VALUES ('pinned', 1)"),
        (e: { code?: string; message: string }) =>
          e.code === '25006' && /cannot move to the primary/.test(e.message) && /sql_prepare/.test(e.message),
      );
      assert.equal(Number((await c.query('EXECUTE sess_p')).rows[0].p), ran, 'still on its replica with its statement');
      // A pin on SQL PREPARE ends with DEALLOCATE ALL or DISCARD ALL, as in transaction mode.
      await c.query('DEALLOCATE ALL');
      await c.query("INSERT INTO sess_t (who, v) VALUES ('unpinned', 1)");
      assert.equal(await port(c), cluster.primary.port, 'once the state is gone the session moves');
    } finally {
      await c.end();
    }
    assert.match(proxy.output(), /routed session cannot move to the primary for a write/);
  });

  test('pgbench read-then-write sessions (-M simple, extended, prepared): no client fails', () => {
    const bin = join(cluster.bin, 'pgbench');
    const env = { ...process.env, PGPASSWORD: APP_PASS };
    const init = spawnSync(
      bin,
      ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(cluster.primary.port), '-U', APP_USER, 'postgres'],
      { env, encoding: 'utf8' },
    );
    assert.equal(init.status, 0, init.stderr);
    // Each client's first statement is a read (its session starts on a replica), then a write.
    const script = join(proxy.dir, 'read-then-write.sql');
    writeFileSync(
      script,
      '\\set aid random(1, 100000)\nSELECT abalance FROM pgbench_accounts ' +
        'WHERE aid = :aid;\nUPDATE pgbench_accounts SET abalance = abalance + ' +
        '1 WHERE aid = :aid;\n',
    );
    for (const mode of ['simple', 'extended', 'prepared']) {
      const r = spawnSync(
        bin,
        [
          '-n',
          '-c',
          '3',
          '-j',
          '3',
          '-t',
          '40',
          '-M',
          mode,
          '-f',
          script,
          '-h',
          '127.0.0.1',
          '-p',
          String(proxy.port),
          '-U',
          APP_USER,
          'postgres',
        ],
        { env, encoding: 'utf8', timeout: 120000 },
      );
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /number of transactions actually processed: 120\/120/, r.stdout);
    }
  });
});
