// Role ports ([[general.listeners]]), HAProxy's port per role, on a real primary and two streaming
// replicas: a replica port sends everything to the replicas (a write gets 25006 from PostgreSQL),
// a primary port everything to the primary, an `any` port routes with the primary reading too,
// whatever the pool's routing says; in session and transaction mode, with pg and psql. The
// console and the metrics show the port a client came through; RELOAD adds and removes ports.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import type pg from 'pg';
import { PgCluster, freePort } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, adminClient, client, connectError, createAppRole, psqlAs } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';

let cluster: PgCluster;
before(async () => {
  cluster = await PgCluster.start({ replicas: 2 });
  createAppRole(cluster);
});
after(() => cluster?.stop());

interface Ports {
  replica: number;
  primary: number;
  any: number;
  http: number;
}

async function freePorts(): Promise<Ports> {
  return { replica: await freePort(), primary: await freePort(), any: await freePort(), http: await freePort() };
}

function config(port: number, ports: Ports, mode: 'session' | 'transaction', extraPool = '', more = ''): string {
  const listeners =
    `[[general.listeners]]\nport = ${ports.replica}\nrole = "replica"\n` +
    `[[general.listeners]]\nport = ${ports.primary}\nrole = "primary"\n` +
    `[[general.listeners]]\nport = ${ports.any}\nrole = "any"\n${more}`;
  // The pool itself does not route: the ports alone decide.
  return configFor(cluster, port, `prometheus_exporter_port = ${ports.http}\nprimary_wait_timeout = 1000\n`, [
    { pool_mode: mode, extraPool },
  ]).replace('\n[pools.', `\n${listeners}\n[pools.`);
}

async function landings(c: pg.Client, n: number): Promise<Set<number>> {
  const out = new Set<number>();
  for (let i = 0; i < n; i++) out.add((await c.query('SELECT inet_server_port() AS p')).rows[0].p as number);
  return out;
}

const sorted = (s: Iterable<number>) => [...s].sort((a, b) => a - b);

for (const mode of ['transaction', 'session'] as const) {
  describe(`role ports, ${mode} mode`, () => {
    let p: Proxy;
    let ports: Ports;
    before(async () => {
      ports = await freePorts();
      p = await startProxy((port) => config(port, ports, mode));
    });
    after(async () => p?.stop());

    test('replica port: reads on the replicas only; a write gets 25006 from the replica', async () => {
      const [, r1, r2] = cluster.nodes;
      const c = client(ports.replica);
      try {
        await c.connect();
        const got = await landings(c, mode === 'session' ? 1 : 40);
        for (const port of got) assert.ok([r1.port, r2.port].includes(port), `landed on ${port}`);
        if (mode === 'transaction') assert.deepEqual(sorted(got), sorted([r1.port, r2.port]));
        await assert.rejects(c.query('CREATE TABLE op_role_write (v int)'), (e: Error & { code?: string }) => {
          assert.equal(e.code, '25006', e.message);
          return true;
        });
        assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1, 'the session goes on');
      } finally {
        await c.end();
      }
    });

    test('primary port: reads and writes on the primary; any port: reads spread over all three', async () => {
      const [primary] = cluster.nodes;
      const w = client(ports.primary);
      const a = client(ports.any);
      try {
        await w.connect();
        await a.connect();
        assert.deepEqual(sorted(await landings(w, 20)), [primary.port]);
        await w.query('CREATE TABLE IF NOT EXISTS op_role_ok (v int)');
        await w.query('INSERT INTO op_role_ok VALUES (1)');
        if (mode === 'transaction') assert.equal((await landings(a, 60)).size, 3, 'any: primary and replicas read');
        await a.query('INSERT INTO op_role_ok VALUES (2)');
      } finally {
        await w.end();
        await a.end();
      }
    });

    test('psql on the replica port: a read works, a write gets 25006', () => {
      const run = (sql: string) => psqlAs(APP_USER, APP_PASS)(ports.replica, sql);
      const read = run('SELECT pg_is_in_recovery()');
      assert.equal(read.stdout.trim(), 't', read.stderr);
      const write = run('CREATE TABLE op_psql_write (v int)');
      assert.notEqual(write.status, 0);
      assert.match(write.stderr, /read-only transaction/);
    });

    test('SHOW CLIENTS and the metrics show the port and its role', async () => {
      const r = client(ports.replica);
      const plain = client(p.port);
      const admin = adminClient(p.port);
      try {
        await r.connect();
        await r.query('SELECT 1');
        await plain.connect();
        await admin.connect();
        const rows = (await admin.query('SHOW CLIENTS')).rows as Record<string, string>[];
        const mine = rows.find((row) => Number(row.local_port) === ports.replica);
        assert.equal(mine?.listener_role, 'replica', JSON.stringify(rows));
        assert.ok(rows.some((row) => Number(row.local_port) === p.port && row.listener_role === ''));
        const metrics = await (await fetch(`http://127.0.0.1:${ports.http}/metrics`)).text();
        assert.match(metrics, new RegExp(`openproxy_clients_by_port\\{port="${ports.replica}",role="replica"\\} 1`));
        assert.match(metrics, new RegExp(`openproxy_clients_by_port\\{port="${p.port}",role="main"\\} 1`));
      } finally {
        await r.end();
        await plain.end();
        await admin.end();
      }
    });
  });
}

describe('role ports: fallback and reload', () => {
  test("session mode, main port: SET SERVER ROLE TO 'replica' then a write gets 25006 (it used to hang)", async () => {
    const ports = await freePorts();
    const routed = 'query_parser_enabled = true\nquery_parser_read_write_splitting = true\n';
    const p = await startProxy((port) => config(port, ports, 'session', routed));
    const c = client(p.port, { query_timeout: 5000 });
    try {
      await c.connect();
      await c.query("SET SERVER ROLE TO 'replica'");
      assert.equal((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r, true);
      await assert.rejects(c.query('CREATE TABLE op_hint_write (v int)'), (e: Error & { code?: string }) => {
        assert.equal(e.code, '25006', e.message);
        return true;
      });
    } finally {
      await c.end();
      await p.stop();
    }
  });

  test('a replica port falls back to the primary only with primary_reads_enabled', async () => {
    const ports = await freePorts();
    const [primary, r1, r2] = cluster.nodes;
    const p = await startProxy((port) => config(port, ports, 'transaction'));
    const admin = adminClient(p.port);
    const c = client(ports.replica);
    c.on('error', () => undefined); // the refusal is FATAL: the connection ends after it
    try {
      await admin.connect();
      await c.connect();
      await admin.query(`MAINT 127.0.0.1:${r1.port}`);
      await admin.query(`MAINT 127.0.0.1:${r2.port}`);
      await assert.rejects(c.query('SELECT 1'), (e: Error & { code?: string }) => {
        assert.equal(e.code, '08006', e.message);
        assert.match(e.message, /no server for reads/);
        return true;
      });
      writeFileSync(p.configPath, config(p.port, ports, 'transaction', 'primary_reads_enabled = true\n'));
      await admin.query('RELOAD');
      const again = client(ports.replica);
      await again.connect();
      assert.deepEqual(sorted(await landings(again, 10)), [primary.port], 'the primary serves the replica port');
      await again.end();
    } finally {
      await c.end().catch(() => undefined);
      await admin.end();
      await p.stop();
    }
  });

  test('RELOAD opens a new role port, closes a removed one (its clients stay), changes a role', async () => {
    const ports = await freePorts();
    const [primary] = cluster.nodes;
    const extra = await freePort();
    const p = await startProxy((port) => config(port, ports, 'transaction'));
    const admin = adminClient(p.port);
    const stays = client(ports.any);
    try {
      await admin.connect();
      await stays.connect();
      assert.equal((await connectError(extra)).code, 'ECONNREFUSED');
      const base = config(p.port, ports, 'transaction');
      writeFileSync(
        p.configPath,
        base
          .replace(`port = ${ports.any}\nrole = "any"\n`, `port = ${extra}\nrole = "primary"\n`)
          .replace(`port = ${ports.replica}\nrole = "replica"`, `port = ${ports.replica}\nrole = "primary"`),
      );
      await admin.query('RELOAD');
      const fresh = client(extra);
      await fresh.connect();
      assert.deepEqual(sorted(await landings(fresh, 5)), [primary.port], 'the new port is a primary port');
      await fresh.end();
      const changed = client(ports.replica);
      await changed.connect();
      assert.deepEqual(sorted(await landings(changed, 5)), [primary.port], 'the changed port sends to the primary');
      await changed.end();
      assert.equal((await connectError(ports.any)).code, 'ECONNREFUSED', 'the removed port takes no one');
      assert.equal((await stays.query('SELECT 1 AS one')).rows[0].one, 1, 'its client stays');
    } finally {
      await stays.end().catch(() => undefined);
      await admin.end();
      await p.stop();
    }
  });

  test('a listener on a port already in use by the config is an error naming the key', async () => {
    const ports = await freePorts();
    const p = await startProxy((port) =>
      config(port, ports, 'transaction', '', `[[general.listeners]]\nport = ${ports.replica}\nrole = "any"\n`),
    ).catch((e: Error) => e);
    assert.ok(p instanceof Error, 'openproxy refused to start');
    assert.match(p.message, /general\.listeners\.3\.port: \d+ is already used by general\.listeners\.0/);
  });
});
