// HAProxy-style server states against a real primary and two streaming replicas: active checks
// (check_interval / check_rise / check_fall) mark a replica DOWN and UP again, SHOW SERVER_STATES,
// the metrics and the status page show it, on_marked_down decides what happens to its sessions,
// and MAINT / DRAIN / READY from the console take servers out and back (the primary: writes wait).
// A check fails on demand without stopping the server: the check query divides by zero on the
// server whose port is listed in a table the primary replicates to every node.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { PgCluster, freePort } from '../testing/pg-cluster';
import { adminClient, client, createAppRole, sleep, until } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';

let cluster: PgCluster;
const CHECK = "SELECT 1 / (1 - (SELECT count(*)::int FROM op_down WHERE port = current_setting('port')::int))";

before(async () => {
  cluster = await PgCluster.start({ replicas: 2 });
  createAppRole(cluster);
  cluster.psql(cluster.nodes[0], 'CREATE TABLE op_down (port int); GRANT SELECT ON op_down TO PUBLIC');
});
after(() => cluster?.stop());

function fail(port: number | null): void {
  cluster.psql(cluster.nodes[0], `DELETE FROM op_down${port ? `; INSERT INTO op_down VALUES (${port})` : ''}`);
}

async function states(admin: pg.Client): Promise<Map<number, Record<string, string>>> {
  const r = await admin.query('SHOW SERVER_STATES');
  return new Map(r.rows.map((row: Record<string, string>) => [Number(row.port), row]));
}

async function stateOf(admin: pg.Client, port: number): Promise<string> {
  return (await states(admin)).get(port)?.state ?? 'missing';
}

function routed(
  general: string,
  pool: 'session' | 'transaction' = 'transaction',
  extraPool = '',
): (port: number) => string {
  return (port) =>
    configFor(cluster, port, `check_interval = 150\ncheck_rise = 2\ncheck_fall = 2\n${general}`, [
      {
        pool_mode: pool,
        extraPool: `query_parser_enabled = true\nquery_parser_read_write_splitting = true\n${extraPool}`,
      },
    ]).replace('[general]', `[general]\nserver_check_query = "${CHECK}"`);
}

async function landings(c: pg.Client, n: number): Promise<Set<number>> {
  const out = new Set<number>();
  for (let i = 0; i < n; i++) out.add((await c.query('SELECT inet_server_port() AS p')).rows[0].p as number);
  return out;
}

describe('active checks', () => {
  test('a failing replica is DOWN after check_fall, UP after check_rise; reads, SHOW, metrics follow', async () => {
    const [, r1, r2] = cluster.nodes;
    const http = await freePort();
    const p = await startProxy(routed(`prometheus_exporter_port = ${http}`));
    const admin = adminClient(p.port);
    const c = client(p.port);
    try {
      await admin.connect();
      await c.connect();
      await until(async () => (await states(admin)).get(r1.port)?.checks.endsWith('passed') ?? false, 5000, 'checks');
      fail(r1.port);
      await until(async () => (await stateOf(admin, r1.port)) === 'DOWN', 5000, 'r1 DOWN');
      const row = (await states(admin)).get(r1.port)!;
      assert.equal(row.reason, 'check failed');
      assert.match(row.checks, /^[2-9]\d* failed$/);
      assert.ok(Date.now() - Date.parse(row.since) < 5000, row.since);
      assert.deepEqual([...(await landings(c, 40))], [r2.port], 'reads avoid the DOWN replica');
      const metrics = await (await fetch(`http://127.0.0.1:${http}/metrics`)).text();
      assert.match(
        metrics,
        new RegExp(`openproxy_server_state\\{[^}]*server="127.0.0.1:${r1.port}",state="DOWN"\\} 1`),
      );
      const auth = { authorization: `Basic ${Buffer.from('admin:adminpass').toString('base64')}` };
      const status = (await (await fetch(`http://127.0.0.1:${http}/status.json`, { headers: auth })).json()) as {
        servers: { server: string; state: string; state_reason: string }[];
      };
      const s1 = status.servers.find((s) => s.server === `127.0.0.1:${r1.port}`)!;
      assert.deepEqual([s1.state, s1.state_reason], ['DOWN', 'check failed']);
      fail(null);
      await until(async () => (await stateOf(admin, r1.port)) === 'UP', 5000, 'r1 UP');
      assert.equal((await states(admin)).get(r1.port)!.reason, 'check passed');
      await until(async () => (await landings(c, 20)).has(r1.port), 5000, 'reads on r1 again');
      assert.match(p.output(), /server marked DOWN by its checks/);
    } finally {
      fail(null);
      await c.end().catch(() => undefined);
      await admin.end().catch(() => undefined);
      await p.stop();
    }
  });

  for (const mode of ['keep', 'shutdown-sessions'] as const) {
    test(`on_marked_down = "${mode}": a transaction on the replica marked DOWN`, async () => {
      const p = await startProxy(routed(`on_marked_down = "${mode}"`));
      const admin = adminClient(p.port);
      const c = client(p.port);
      const errors: (Error & { code?: string })[] = [];
      c.on('error', (e) => errors.push(e));
      try {
        await admin.connect();
        await c.connect();
        await c.query('BEGIN READ ONLY');
        const port = (await c.query('SELECT inet_server_port() AS p')).rows[0].p as number;
        assert.notEqual(port, cluster.nodes[0].port, 'the read-only transaction runs on a replica');
        fail(port);
        await until(async () => (await stateOf(admin, port)) === 'DOWN', 5000, 'DOWN');
        if (mode === 'keep') {
          assert.equal((await c.query('SELECT inet_server_port() AS p')).rows[0].p, port);
          await c.query('COMMIT');
        } else {
          await until(() => errors.length > 0, 3000, 'the client hears of it');
          assert.equal(errors[0].code, '08006', errors[0].message);
          await assert.rejects(c.query('SELECT 1'));
        }
      } finally {
        fail(null);
        await c.end().catch(() => undefined);
        await admin.end().catch(() => undefined);
        await p.stop();
      }
    });
  }
});

describe('MAINT, DRAIN, READY', () => {
  let p: Proxy;
  let admin: pg.Client;
  before(async () => {
    p = await startProxy(routed('primary_wait_timeout = 3000'));
    admin = adminClient(p.port);
    await admin.connect();
  });
  after(async () => {
    await admin?.end().catch(() => undefined);
    await p?.stop();
  });

  test('DRAIN lets the running transaction finish, takes nothing new, then MAINT; READY brings it back', async () => {
    const [, r1, r2] = cluster.nodes;
    const holder = client(p.port);
    const other = client(p.port);
    try {
      await holder.connect();
      await other.connect();
      let on = 0;
      // A read-only transaction held open on r1 (retry until the balancer puts one there).
      for (let i = 0; i < 40 && on !== r1.port; i++) {
        await holder.query('BEGIN READ ONLY');
        on = (await holder.query('SELECT inet_server_port() AS p')).rows[0].p as number;
        if (on !== r1.port) await holder.query('COMMIT');
      }
      assert.equal(on, r1.port);
      await admin.query(`DRAIN 127.0.0.1:${r1.port}`);
      assert.equal(await stateOf(admin, r1.port), 'DRAIN');
      assert.deepEqual([...(await landings(other, 30))], [r2.port], 'no new transaction on the draining replica');
      await sleep(400);
      assert.equal(await stateOf(admin, r1.port), 'DRAIN', 'still draining while the transaction runs');
      assert.equal((await holder.query('SELECT inet_server_port() AS p')).rows[0].p, r1.port);
      await holder.query('COMMIT');
      await until(async () => (await stateOf(admin, r1.port)) === 'MAINT', 3000, 'MAINT after the drain');
      assert.equal((await states(admin)).get(r1.port)!.reason, 'drained');
      assert.deepEqual([...(await landings(other, 30))], [r2.port]);
      await admin.query(`READY 127.0.0.1:${r1.port}`);
      assert.equal(await stateOf(admin, r1.port), 'UP');
      await until(async () => (await landings(other, 20)).has(r1.port), 3000, 'reads on r1 again');
    } finally {
      await admin.query(`READY 127.0.0.1:${r1.port}`);
      await holder.end().catch(() => undefined);
      await other.end().catch(() => undefined);
    }
  });

  test('MAINT of the primary: a write waits for READY; past primary_wait_timeout it gets 08006', async () => {
    const primary = cluster.nodes[0];
    const c = client(p.port);
    c.on('error', () => undefined); // the refusal after primary_wait_timeout is FATAL
    try {
      await c.connect();
      await c.query('CREATE TABLE IF NOT EXISTS op_maint (v int)');
      await admin.query(`MAINT 127.0.0.1:${primary.port}`);
      const t0 = Date.now();
      const write = c.query('INSERT INTO op_maint VALUES (1)');
      await sleep(700);
      await admin.query(`READY 127.0.0.1:${primary.port}`);
      await write;
      assert.ok(Date.now() - t0 >= 650, `the write waited for READY (${Date.now() - t0} ms)`);
      await admin.query(`MAINT 127.0.0.1:${primary.port}`);
      const err = await c.query('INSERT INTO op_maint VALUES (2)').then(
        () => null,
        (e: Error & { code?: string }) => e,
      );
      assert.equal(err?.code, '08006', String(err?.message));
      assert.match(err!.message, /primary_wait_timeout = 3000 ms/);
    } finally {
      await admin.query(`READY 127.0.0.1:${primary.port}`);
      await c.end().catch(() => undefined);
    }
    assert.equal(cluster.psql(primary, 'SELECT count(*) FROM op_maint').trim(), '1');
  });

  test('errors: an unknown server gets 42704, a missing argument 42601', async () => {
    await assert.rejects(admin.query('MAINT 127.0.0.9:1'), (e: Error & { code?: string }) => e.code === '42704');
    await assert.rejects(admin.query('DRAIN'), (e: Error & { code?: string }) => e.code === '42601');
  });
});
