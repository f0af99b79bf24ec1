// Server weights and load_balancing_mode = "source", counted where thousands of routed reads land
// on a real primary with two streaming replicas (weights 1 and 3; table and array server forms).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, clientFrom, createAppRole } from './helpers/db';
import { startProxy } from './helpers/proxy';

const READS = 2000;
let cluster: PgCluster;
before(async () => {
  cluster = await PgCluster.start({ replicas: 2 });
  createAppRole(cluster);
});
after(() => cluster?.stop());

function config(port: number, mode: string): string {
  const [primary, r1, r2] = cluster.nodes;
  return (
    `[general]\nhost = "127.0.0.1"\nport = ${port}\nworker_threads = 2\nadmin_username = "admin"\n` +
    'admin_password = "adminpass"\nprometheus_exporter_port = 0\n' +
    `[pools.postgres]\npool_mode = "transaction"\nquery_parser_enabled = true\n` +
    `query_parser_read_write_splitting = true\nload_balancing_mode = "${mode}"\n` +
    `[pools.postgres.users.0]\nusername = "${APP_USER}"\npassword = "${APP_PASS}"\npool_size = 4\n` +
    `[pools.postgres.shards.0]\ndatabase = "postgres"\nservers = [\n  ["127.0.0.1", ${primary.port}, "primary"],\n` +
    `  ["127.0.0.1", ${r1.port}, "replica", 0, 1],\n` +
    `  { host = "127.0.0.1", port = ${r2.port}, role = "replica", weight = 3 },\n]\n`
  );
}

/** Where `n` reads of one client land: server port → count. */
async function landings(c: pg.Client, n: number): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const port = (await c.query('SELECT inet_server_port() AS p')).rows[0].p as number;
    out.set(port, (out.get(port) ?? 0) + 1);
  }
  return out;
}

describe('server weights', () => {
  for (const mode of ['random', 'round_robin'] as const) {
    test(`${mode}: weights 1 and 3 split ${READS} reads about 1:3, none on the primary`, async () => {
      const p = await startProxy((port) => config(port, mode));
      const c = clientFrom('127.0.0.1', p.port);
      try {
        await c.connect();
        const got = await landings(c, READS);
        const [, r1, r2] = cluster.nodes;
        const light = got.get(r1.port) ?? 0;
        const heavy = got.get(r2.port) ?? 0;
        assert.equal(light + heavy, READS, `all reads on replicas: ${JSON.stringify([...got])}`);
        const share = light / READS;
        // random: 25 % expected, 1.9 % standard deviation at 2000 draws; round_robin: exact.
        const [lo, hi] = mode === 'random' ? [0.18, 0.32] : [0.24, 0.26];
        assert.ok(share >= lo && share <= hi, `weight-1 replica got ${(share * 100).toFixed(1)} %`);
        console.log(`# ${mode}: weight-1 replica ${light}, weight-3 replica ${heavy} of ${READS} reads`);
      } finally {
        await c.end();
        await p.stop();
      }
    });
  }

  test('loc with no load prefers the heavier replica; source keeps each client address on one replica', async () => {
    const p = await startProxy((port) => config(port, 'loc'));
    const c = clientFrom('127.0.0.1', p.port);
    try {
      await c.connect();
      const got = await landings(c, 200);
      assert.equal(got.get(cluster.nodes[2].port), 200, `idle replicas: load per weight decides: ${[...got]}`);
    } finally {
      await c.end();
      await p.stop();
    }
    const q = await startProxy((port) => config(port, 'source'));
    try {
      const seen = new Set<number>();
      for (const from of ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']) {
        const a = clientFrom(from, q.port);
        await a.connect();
        const got = await landings(a, 100);
        await a.end();
        assert.equal(got.size, 1, `${from} stays on one replica: ${JSON.stringify([...got])}`);
        seen.add([...got.keys()][0]);
      }
      assert.ok(!seen.has(cluster.nodes[0].port), 'never the primary');
    } finally {
      await q.stop();
    }
  });
});
