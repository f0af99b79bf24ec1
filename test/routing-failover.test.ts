// Load balancing, health checks, bans and transparent read retries against a real primary and two
// streaming replicas, with replicas killed, stopped and hung under load.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { PgCluster, type PgNode } from '../testing/pg-cluster';
import { client, createAppRole, sleep, until } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';

let cluster: PgCluster;
let primaryPort: number;
let replicaPorts: number[];

before(async () => {
  cluster = await PgCluster.start({ replicas: 2 });
  createAppRole(cluster);
  primaryPort = cluster.primary.port;
  replicaPorts = cluster.replicas.map((r) => r.port);
});
after(() => cluster?.stop());

const SPLIT = 'query_parser_enabled = true\nquery_parser_read_write_splitting = true\n';

async function port(c: pg.Client): Promise<number> {
  return Number((await c.query('SELECT inet_server_port() AS port')).rows[0].port);
}

function counts(ports: number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const p of ports) m.set(p, (m.get(p) ?? 0) + 1);
  return m;
}

/** `clients` connections reading in a loop until stop() resolves; every error is kept. */
async function readLoad(proxyPort: number, clients: number) {
  const conns = await Promise.all(
    Array.from({ length: clients }, async () => {
      const c = client(proxyPort);
      await c.connect();
      return c;
    }),
  );
  const ports: number[] = [];
  const errors: string[] = [];
  // An error outside a query (a message the proxy should not have forwarded) is a failure too.
  for (const c of conns)
    c.on('error', (e: Error & { code?: string }) => errors.push(`unsolicited ${e.code}: ${e.message}`));
  let running = true;
  const loops = conns.map(async (c) => {
    while (running) {
      try {
        ports.push(await port(c));
      } catch (e) {
        errors.push(`${(e as { code?: string }).code}: ${(e as Error).message}`);
        return;
      }
    }
  });
  return {
    ports,
    errors,
    async stop() {
      running = false;
      await Promise.all(loops);
      await Promise.all(conns.map((c) => c.end().catch(() => undefined)));
    },
  };
}

async function restart(n: PgNode): Promise<void> {
  await until(
    () => {
      try {
        cluster.pids(n);
        return false;
      } catch {
        return true; // postmaster.pid gone: stopped
      }
    },
    20000,
    'node stopped',
  );
  cluster.startNode(n);
}

describe('load_balancing_mode', () => {
  test('random spreads reads over both replicas', async () => {
    const proxy = await startProxy((p) =>
      configFor(cluster, p, '', [{ pool_mode: 'transaction', extraPool: `${SPLIT}load_balancing_mode = "random"\n` }]),
    );
    try {
      const c = client(proxy.port);
      await c.connect();
      const seen: number[] = [];
      for (let i = 0; i < 200; i++) seen.push(await port(c));
      await c.end();
      const m = counts(seen);
      assert.deepEqual([...m.keys()].sort(), [...replicaPorts].sort());
      for (const n of m.values())
        assert.ok(n >= 60 && n <= 140, `random split of 200 reads: ${JSON.stringify([...m])}`);
    } finally {
      await proxy.stop();
    }
  });

  test('round_robin alternates exactly, counted across workers', async () => {
    const proxy = await startProxy((p) =>
      configFor(cluster, p, '', [
        { pool_mode: 'transaction', extraPool: `${SPLIT}load_balancing_mode = "round_robin"\n` },
      ]),
    );
    try {
      const cs = [client(proxy.port), client(proxy.port), client(proxy.port), client(proxy.port)];
      for (const c of cs) await c.connect();
      const seen: number[] = [];
      for (let i = 0; i < 25; i++) for (const c of cs) seen.push(await port(c));
      for (const c of cs) await c.end();
      const m = counts(seen);
      assert.deepEqual([...m.values()], [50, 50], JSON.stringify([...m]));
      for (let i = 1; i < seen.length; i++) assert.notEqual(seen[i], seen[i - 1], 'consecutive reads alternate');
    } finally {
      await proxy.stop();
    }
  });

  test('loc sends reads to the replica with the fewest held connections (all workers)', async () => {
    const proxy = await startProxy((p) =>
      configFor(cluster, p, '', [{ pool_mode: 'transaction', extraPool: `${SPLIT}load_balancing_mode = "loc"\n` }]),
    );
    try {
      const holder = client(proxy.port);
      await holder.connect();
      await holder.query('BEGIN READ ONLY');
      const busy = await port(holder);
      assert.ok(replicaPorts.includes(busy));
      const reader = client(proxy.port); // the other worker (fewest clients)
      await reader.connect();
      for (let i = 0; i < 20; i++)
        assert.notEqual(await port(reader), busy, 'the replica holding a transaction is avoided');
      await holder.query('COMMIT');
      const seen = new Set<number>();
      for (let i = 0; i < 40 && seen.size < 2; i++) seen.add(await port(reader));
      assert.equal(seen.size, 2, 'both replicas again once the transaction ended');
      await holder.end();
      await reader.end();
    } finally {
      await proxy.stop();
    }
  });
});

describe('bans and transparent retries', () => {
  let proxy: Proxy;
  before(async () => {
    proxy = await startProxy((p) =>
      configFor(
        cluster,
        p,
        'ban_time = 3\nhealthcheck_delay = 300\nhealthcheck_timeout = 500\nconnect_timeout = 2000',
        [{ pool_mode: 'transaction', pool_size: 10, extraPool: SPLIT }],
      ),
    );
  });
  after(() => proxy?.stop());

  for (const [how, sig] of [
    ['killed (immediate shutdown)', 'SIGQUIT'],
    ['stopped (fast shutdown)', 'SIGINT'],
  ] as const) {
    test(`a replica ${how} under read load: no failed reads; banned, back after ban_time`, async () => {
      const victim = cluster.replicas[0];
      const load = await readLoad(proxy.port, 6);
      try {
        await sleep(700);
        assert.ok(load.ports.includes(victim.port), 'the victim took reads before');
        cluster.signal(victim, sig);
        await sleep(300); // the postmaster and its backends act on the signal
        const settled = load.ports.length;
        await sleep(1200);
        const afterKill = load.ports.slice(settled);
        assert.deepEqual(load.errors, [], 'no read failed');
        assert.ok(afterKill.length > 50, `reads kept flowing (${afterKill.length})`);
        assert.ok(!afterKill.includes(victim.port), 'no read on the dead replica');
        assert.ok(
          afterKill.every((p) => p === replicaPorts[1]),
          'reads went to the other replica, not the primary',
        );
        await restart(victim);
        const back = load.ports.length;
        await until(
          () => load.ports.slice(back).includes(victim.port),
          10000,
          'the replica takes reads again after ban_time',
        );
      } finally {
        await load.stop();
      }
      assert.deepEqual(load.errors, []);
      assert.match(proxy.output(), /server banned.*(connect failed|server closed the connection)/);
    });
  }

  test('a hung replica fails its health check within healthcheck_timeout and is banned; reads go on', async () => {
    const victim = cluster.replicas[1];
    const c = client(proxy.port);
    await c.connect();
    try {
      const seen = new Set<number>();
      for (let i = 0; i < 40 && seen.size < 2; i++) seen.add(await port(c));
      assert.ok(seen.has(victim.port));
      await sleep(400); // every pooled connection is now older than healthcheck_delay
      const pids = cluster.pids(victim);
      for (const pid of pids) process.kill(pid, 'SIGSTOP');
      try {
        const t0 = Date.now();
        const during: number[] = [];
        for (let i = 0; i < 20; i++) during.push(await port(c));
        assert.ok(!during.includes(victim.port), 'no read on the hung replica');
        assert.ok(Date.now() - t0 < 5000, 'at most a health-check timeout was spent');
      } finally {
        for (const pid of pids) process.kill(pid, 'SIGCONT');
      }
      assert.match(proxy.output(), /server banned.*health check (failed|timed out)/);
    } finally {
      await c.end();
    }
  });

  test('the primary is never banned, and when every replica is banned the bans are lifted', async () => {
    const c = client(proxy.port);
    await c.connect();
    try {
      await until(
        async () => {
          const seen = new Set<number>();
          for (let i = 0; i < 20; i++) seen.add(await port(c));
          return seen.size === 2;
        },
        15000,
        'both replicas serve again',
      );
      for (const r of cluster.replicas) cluster.signal(r, 'SIGQUIT');
      await sleep(300);
      // Both replicas down: reads fall back to the primary; writes work throughout.
      const r = await c.query('SELECT inet_server_port() AS port, pg_is_in_recovery() AS rec');
      assert.equal(Number(r.rows[0].port), primaryPort);
      // Both are banned now; the next read lifts the bans, finds them still down and falls back again.
      assert.equal(await port(c), primaryPort);
      assert.match(proxy.output(), /every replica is banned: lifting the bans/);
      assert.doesNotMatch(proxy.output(), new RegExp(`server banned[^\\n]*127\\.0\\.0\\.1:${primaryPort}`));
    } finally {
      await c.end();
      for (const r of cluster.replicas) await restart(r);
    }
  });
});
