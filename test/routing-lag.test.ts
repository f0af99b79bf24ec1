// Replica lag and read-your-writes against a real primary and two streaming replicas: replay is
// paused (pg_wal_replay_pause) or delayed (recovery_min_apply_delay) on the replicas.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { PgCluster } from '../testing/pg-cluster';
import { APP_USER, adminClient, client, createAppRole, sleep, until } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';
import { lagMs } from '../src/ha/lag-monitor';

test(
  'lag in ms: since the primary wrote the oldest WAL the replica has not ' +
    'replayed (not since its last replayed transaction)',
  () => {
    const h = [
      { at: 1000, lsn: 100 },
      { at: 1500, lsn: 100 },
      { at: 2000, lsn: 180 },
      { at: 2500, lsn: 260 },
    ];
    assert.equal(lagMs(h, 260, 3000), 0, 'caught up');
    assert.equal(lagMs(h, 100, 3000), 1500, 'behind since the sample at 1500 (the primary was at 100 then)');
    assert.equal(lagMs(h, 200, 3000), 1000);
    assert.equal(lagMs(h, 50, 3000), 2000, 'older than the history: its start');
    assert.equal(lagMs([], 50, 3000), 0);
  },
);

let cluster: PgCluster;
let replicaPorts: number[];
let primaryPort: number;

before(async () => {
  cluster = await PgCluster.start({ replicas: 2 });
  createAppRole(cluster);
  cluster.psql(
    cluster.primary,
    `CREATE TABLE lagged (id bigserial PRIMARY KEY, v int, pad text); ` +
      `GRANT ALL ON lagged TO ${APP_USER}; GRANT ALL ON SEQUENCE ` +
      `lagged_id_seq TO ${APP_USER}`,
  );
  replicaPorts = cluster.replicas.map((r) => r.port);
  primaryPort = cluster.primary.port;
});
after(() => cluster?.stop());

const SPLIT = 'query_parser_enabled = true\nquery_parser_read_write_splitting = true\n';

async function port(c: pg.Client): Promise<number> {
  return Number((await c.query('SELECT inet_server_port() AS port')).rows[0].port);
}

async function reads(c: pg.Client, n: number): Promise<Set<number>> {
  const seen = new Set<number>();
  for (let i = 0; i < n; i++) seen.add(await port(c));
  return seen;
}

describe('max_replica_lag', () => {
  for (const [key, value] of [
    ['max_replica_lag', 1024],
    ['max_replica_lag_ms', 300],
  ] as const) {
    test(`${key} = ${value}: a replica with paused replay takes no reads until it catches up`, async () => {
      const proxy: Proxy = await startProxy((p) =>
        configFor(cluster, p, 'replica_lag_interval = 100', [
          { pool_mode: 'transaction', extraPool: `${SPLIT}${key} = ${value}\n` },
        ]),
      );
      const c = client(proxy.port);
      await c.connect();
      const victim = cluster.replicas[0];
      try {
        await proxy.waitFor(/listening/);
        await sleep(300);
        assert.deepEqual([...(await reads(c, 40))].sort(), [...replicaPorts].sort(), 'both replicas read before');
        cluster.psql(victim, 'SELECT pg_wal_replay_pause()');
        await c.query("INSERT INTO lagged (v, pad) SELECT g, repeat('x', 200) FROM generate_series(1, 500) g");
        await proxy.waitFor(/replica lags behind the primary/, 5000);
        // The other replica replays the insert within moments; wait until it is measured caught up.
        await until(async () => (await reads(c, 5)).has(replicaPorts[1]), 5000, 'the other replica takes reads');
        const during = await reads(c, 40);
        assert.ok(!during.has(victim.port), 'the lagging replica took no reads');
        assert.ok(during.has(replicaPorts[1]), 'the other replica did');
        // The lag feeds the server state: DOWN for "replica lag", UP again when it catches up.
        const stateOf = async () => {
          const admin = adminClient(proxy.port);
          await admin.connect();
          const rows = (await admin.query('SHOW SERVER_STATES')).rows;
          await admin.end();
          const row = rows.find((r) => Number(r.port) === victim.port)!;
          return `${row.state} (${row.reason})`;
        };
        assert.equal(await stateOf(), 'DOWN (replica lag)');
        cluster.psql(victim, 'SELECT pg_wal_replay_resume()');
        await proxy.waitFor(/replica caught up/, 5000);
        assert.equal(await stateOf(), 'UP (replica caught up)');
        await sleep(300);
        assert.ok((await reads(c, 40)).has(victim.port), 'reads again after catching up');
      } finally {
        cluster.psql(victim, 'SELECT pg_wal_replay_resume()');
        await c.end();
        await proxy.stop();
      }
    });
  }
});

describe('read_your_writes', () => {
  before(() => {
    for (const r of cluster.replicas) {
      cluster.psql(r, "ALTER SYSTEM SET recovery_min_apply_delay = '400ms'");
      cluster.psql(r, 'SELECT pg_reload_conf()');
    }
  });
  after(() => {
    for (const r of cluster.replicas) {
      cluster.psql(r, 'ALTER SYSTEM RESET recovery_min_apply_delay');
      cluster.psql(r, 'SELECT pg_reload_conf()');
    }
  });

  /** Writes v = i, then reads the newest v right away; returns how many reads were older than the write. */
  async function staleReads(c: pg.Client, rounds: number): Promise<{ stale: number; ports: Set<number> }> {
    let stale = 0;
    const ports = new Set<number>();
    const base = Number((await c.query('SELECT coalesce(max(v), 0) AS m FROM lagged')).rows[0].m) + 1000;
    for (let i = 0; i < rounds; i++) {
      await c.query('INSERT INTO lagged (v) VALUES ($1)', [base + i]);
      const r = await c.query('SELECT coalesce(max(v), 0) AS m, inet_server_port() AS port FROM lagged');
      if (Number(r.rows[0].m) < base + i) stale++;
      ports.add(Number(r.rows[0].port));
    }
    return { stale, ports };
  }

  test('turned off, a read right after a write can miss the write (the problem exists here)', async () => {
    const proxy = await startProxy((p) =>
      configFor(cluster, p, '', [{ pool_mode: 'transaction', extraPool: `${SPLIT}read_your_writes = false\n` }]),
    );
    const c = client(proxy.port);
    await c.connect();
    try {
      const { stale } = await staleReads(c, 10);
      assert.ok(stale > 0, 'replicas 400 ms behind serve stale reads');
    } finally {
      await c.end();
      await proxy.stop();
    }
  });

  test(
    'by default (read_your_writes = true) a client never reads older data ' +
      'than it wrote, and reads return to replicas',
    async () => {
      const proxy = await startProxy((p) =>
        configFor(cluster, p, 'replica_lag_interval = 100', [{ pool_mode: 'transaction', extraPool: SPLIT }]),
      );
      const c = client(proxy.port);
      const other = client(proxy.port);
      await c.connect();
      await other.connect();
      try {
        await sleep(500);
        const { stale, ports } = await staleReads(c, 40);
        assert.equal(stale, 0, 'no stale read');
        assert.ok(ports.has(primaryPort), 'reads right after a write went to the primary');
        // Another client's reads are not held back by this client's writes.
        assert.ok(
          [...(await reads(other, 10))].every((p) => replicaPorts.includes(p)),
          'other clients read from replicas',
        );
        await sleep(1200); // the replicas replay past the last write
        const later = await reads(c, 10);
        assert.ok(
          [...later].some((p) => replicaPorts.includes(p)),
          'once the replicas caught up, this client reads from them again',
        );
      } finally {
        await c.end();
        await other.end();
        await proxy.stop();
      }
    },
  );
});
