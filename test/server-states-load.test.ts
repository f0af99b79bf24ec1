// Server states under load, on a real primary and two streaming replicas: pgbench (reads routed
// to the replicas, writes to the primary) runs through openproxy while one replica is drained and
// returned and the other put in MAINT and returned, with no failed transaction; and slow_start,
// counted by the second: a replica coming back UP takes a growing share of the reads.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, adminClient, client, createAppRole, sleep } from './helpers/db';
import { configFor, startProxy } from './helpers/proxy';

let cluster: PgCluster;
before(async () => {
  cluster = await PgCluster.start({ replicas: 2 });
  createAppRole(cluster);
  cluster.psql(cluster.nodes[0], 'SELECT 1');
  const init = spawn('pgbench', ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(cluster.nodes[0].port)], {
    env: { ...process.env, PGUSER: 'postgres', PGPASSWORD: 'postgres', PGDATABASE: 'postgres' },
  });
  await new Promise((r) => init.on('close', r));
  cluster.psql(cluster.nodes[0], `GRANT ALL ON ALL TABLES IN SCHEMA public TO ${APP_USER}`);
});
after(() => cluster?.stop());

const routing =
  (general = '') =>
  (port: number) =>
    configFor(cluster, port, `primary_wait_timeout = 10000\n${general}`, [
      {
        pool_mode: 'transaction',
        pool_size: 6,
        extraPool: 'query_parser_enabled = true\nquery_parser_read_write_splitting = true\n',
      },
    ]);

function pgbench(port: number, seconds: number, mode: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const args = ['-n', '-c', '6', '-T', String(seconds), '-M', mode, '-b', 'select-only@4', '-b', 'simple-update@1'];
    const p = spawn(
      'timeout',
      ['-k', '5', String(seconds + 30), 'pgbench', ...args, '-h', '127.0.0.1', '-p', String(port)],
      {
        env: { ...process.env, PGUSER: APP_USER, PGPASSWORD: APP_PASS, PGDATABASE: 'postgres' },
      },
    );
    let out = '';
    p.stdout.on('data', (b) => (out += b));
    p.stderr.on('data', (b) => (out += b));
    p.on('close', (code) => resolve({ code, out }));
  });
}

describe('server states under pgbench', () => {
  for (const mode of ['simple', 'extended'] as const) {
    test(`-M ${mode}: DRAIN / READY one replica, MAINT / READY the other: 0 failed transactions`, async () => {
      const [, r1, r2] = cluster.nodes;
      const p = await startProxy(routing());
      const admin = adminClient(p.port);
      try {
        await admin.connect();
        const run = pgbench(p.port, 7, mode);
        const seen: string[] = [];
        const state = async (port: number) =>
          (await admin.query('SHOW SERVER_STATES')).rows.find((r) => Number(r.port) === port)?.state as string;
        await sleep(1000);
        await admin.query(`DRAIN 127.0.0.1:${r1.port}`);
        await sleep(1200);
        seen.push(await state(r1.port));
        await admin.query(`READY 127.0.0.1:${r1.port}`);
        await sleep(1000);
        await admin.query(`MAINT 127.0.0.1:${r2.port}`);
        await sleep(1500);
        seen.push(await state(r2.port));
        await admin.query(`READY 127.0.0.1:${r2.port}`);
        const { code, out } = await run;
        assert.deepEqual(seen, ['MAINT', 'MAINT'], 'the drain finished under load; MAINT held');
        assert.equal(code, 0, out);
        assert.doesNotMatch(out, /aborted|error/i, out);
        assert.match(out, /number of failed transactions: 0 /, out);
        const done = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? 0);
        assert.ok(done > 500, `pgbench ran (${done} transactions)`);
        assert.match(p.output(), /server drained: no client holds a connection to it, now in MAINT/);
      } finally {
        await admin.end().catch(() => undefined);
        await p.stop();
      }
    });
  }
});

describe('slow_start', () => {
  test('a replica back from MAINT takes a share of reads that grows over slow_start = 3 s', async () => {
    const [, r1] = cluster.nodes;
    const p = await startProxy(routing('slow_start = 3'));
    const admin = adminClient(p.port);
    const clients = [0, 1, 2, 3].map(() => client(p.port));
    try {
      await admin.connect();
      await Promise.all(clients.map((c) => c.connect()));
      await admin.query(`MAINT 127.0.0.1:${r1.port}`);
      await admin.query(`READY 127.0.0.1:${r1.port}`);
      const t0 = Date.now();
      const row = (await admin.query('SHOW SERVER_STATES')).rows.find((r) => Number(r.port) === r1.port)!;
      assert.ok(Number(row.effective_weight) < 0.2, `effective_weight right after READY: ${row.effective_weight}`);
      // Reads per second since READY: [on r1, all].
      const buckets = [0, 1, 2, 3, 4].map(() => [0, 0]);
      await Promise.all(
        clients.map(async (c) => {
          for (;;) {
            const port = (await c.query('SELECT inet_server_port() AS p')).rows[0].p as number;
            const second = Math.floor((Date.now() - t0) / 1000);
            if (second >= buckets.length) return;
            buckets[second][1]++;
            if (port === r1.port) buckets[second][0]++;
          }
        }),
      );
      const share = buckets.map(([on, all]) => on / all);
      const text = share.map((s, i) => `${i}s: ${(s * 100).toFixed(1)} % of ${buckets[i][1]}`).join(', ');
      // Expected shares (weight × t/3 against the other replica's 1): about 14 %, 33 %, 45 %, then 50 %.
      assert.ok(share[0] < 0.25, text);
      assert.ok(share[0] < share[1] && share[1] < share[3], text);
      assert.ok(share[3] > 0.4 && share[4] > 0.4, text);
      console.log(`slow_start reads on the returning replica by second: ${text}`);
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      await admin.end().catch(() => undefined);
      await p.stop();
    }
  });
});
