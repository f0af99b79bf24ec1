// Following the primary without Patroni: servers configured as "auto" are probed over SQL by the
// HA thread; when the primary dies and a replica is promoted, writes wait (primary_wait_timeout)
// and then go to the new primary, reads keep flowing, and a client caught mid-transaction gets a
// clear error; a primary in the middle of shutting down (refusing new connections with 57P03)
// costs nobody their login. Real primary + replica; the replica is promoted with pg_ctl promote.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { PgCluster, SUPERPASS, SUPERUSER, freePort } from '../testing/pg-cluster';
import { APP_USER, client, connectError, createAppRole, sleep, until } from './helpers/db';
import { type Proxy, startProxy } from './helpers/proxy';
import { APP_PASS } from './helpers/db';

let cluster: PgCluster;
let proxy: Proxy;
let http: number;

before(async () => {
  cluster = await PgCluster.start({ replicas: 1 });
  createAppRole(cluster);
  cluster.psql(
    cluster.primary,
    `CREATE TABLE fo (id serial PRIMARY KEY, v int); GRANT ALL ON fo TO ` +
      `${APP_USER}; GRANT ALL ON SEQUENCE fo_id_seq TO ${APP_USER}`,
  );
  const servers = cluster.nodes.map((n) => `["127.0.0.1", ${n.port}, "auto"]`).join(', ');
  http = await freePort();
  proxy = await startProxy(
    (port) => `[general]\nhost = "127.0.0.1"\nport = ${port}\nworker_threads = 2\nprometheus_exporter_port = ${http}\n\
renew_interval = 300\nprimary_wait_timeout = 15000\nhealthcheck_timeout = 500\nban_time = 2\n
[pools.postgres]\npool_mode = "transaction"\nquery_parser_enabled = true\nquery_parser_read_write_splitting = true\n
[pools.postgres.users.0]\nusername = "${APP_USER}"\npassword = "${APP_PASS}"\npool_size = 5\n
[pools.postgres.shards.0]\ndatabase = "postgres"\nservers = [${servers}]\n`,
  );
  await proxy.waitFor(/server role.*to=primary|server role.*"to":"primary"/, 10000);
});
after(async () => {
  await proxy?.stop();
  cluster?.stop();
});

async function port(c: pg.Client, sql = 'SELECT inet_server_port() AS port'): Promise<number> {
  return Number((await c.query(sql)).rows[0].port);
}

test(
  'a primary shutting down (57P03 to new connections): logins go on from ' +
    'the replica, reads too, a write waits and lands on it once it is back',
  async () => {
    const primary = cluster.primary;
    // A session of its own keeps the smart shutdown pending: sessions go on, new connections get 57P03.
    const holder = new pg.Client({
      host: '127.0.0.1',
      port: primary.port,
      user: SUPERUSER,
      password: SUPERPASS,
      database: 'postgres',
    });
    holder.on('error', () => undefined);
    await holder.connect();
    const c = client(proxy.port);
    c.on('error', () => undefined);
    try {
      cluster.signal(primary, 'SIGTERM');
      await until(
        async () => (await connectError(primary.port).catch(() => ({ code: 'connected' }))).code === '57P03',
        5000,
        'the primary refusing new connections with 57P03',
      );
      await c.connect(); // openproxy's fresh pool meets the 57P03 at its first server login
      assert.equal(await port(c), cluster.replicas[0].port, 'the read went to the replica');
      let settled = false;
      const write = c
        .query('INSERT INTO fo (v) VALUES (0) RETURNING inet_server_port() AS port')
        .finally(() => (settled = true));
      await sleep(800);
      assert.equal(settled, false, 'the write waits while the primary refuses connections');
      cluster.stopNode(primary, 'fast');
      cluster.startNode(primary);
      assert.equal(
        Number((await write).rows[0].port),
        primary.port,
        'the write landed on the primary once it was back',
      );
    } finally {
      await c.end().catch(() => undefined);
      await holder.end().catch(() => undefined);
    }
  },
);

test('auto roles are discovered over SQL: writes to the primary, reads to the replica', async () => {
  const c = client(proxy.port);
  await c.connect();
  try {
    assert.equal(
      await port(c, 'INSERT INTO fo (v) VALUES (1) RETURNING inet_server_port() AS port'),
      cluster.primary.port,
    );
    await until(async () => (await port(c)) === cluster.replicas[0].port, 5000, 'reads on the replica');
  } finally {
    await c.end();
  }
});

test(
  'failover: the primary dies, the replica is promoted; writes wait and ' +
    'resume on it, reads never fail, a client mid-transaction gets 08006',
  async () => {
    const oldPrimary = cluster.primary;
    const replica = cluster.replicas[0];
    const writer = client(proxy.port);
    const inTx = client(proxy.port);
    const reader = client(proxy.port);
    // The client caught mid-transaction hears of the failover either as the answer to its next
    // statement or, when that statement finished before the postmaster's SIGQUIT reached its
    // backend, as an ErrorResponse out of the blue (pg emits it as an 'error' event).
    const txErrors: string[] = [];
    const codeOf = (e: unknown) => (e as { code?: string }).code ?? (e as Error).message;
    inTx.on('error', (e) => txErrors.push(codeOf(e)));
    for (const c of [writer, inTx, reader]) await c.connect();
    let reading = true;
    try {
      await writer.query('INSERT INTO fo (v) VALUES (2)');
      await inTx.query('BEGIN');
      await inTx.query('INSERT INTO fo (v) VALUES (3)');
      const readErrors: string[] = [];
      let reads = 0;
      const readLoop = (async () => {
        while (reading) {
          try {
            await reader.query('SELECT count(*) FROM fo');
            reads++;
          } catch (e) {
            readErrors.push((e as Error).message);
          }
          await sleep(20);
        }
      })();

      const demotions = () => (proxy.output().match(/no longer primary/g) ?? []).length;
      const before = demotions(); // the restart in the first test logged one already
      cluster.signal(oldPrimary, 'SIGQUIT');
      await inTx.query('INSERT INTO fo (v) VALUES (4)').catch((e) => txErrors.push(codeOf(e)));
      await until(() => demotions() > before, 5000, 'openproxy saw the primary go');
      // An idle client's write now waits for a primary…
      const t0 = Date.now();
      const write = writer.query('INSERT INTO fo (v) VALUES (5) RETURNING inet_server_port() AS port');
      await sleep(1000);
      const promotedAt = Date.now();
      cluster.promote(replica);
      const r = await write;
      const resumedAfter = Date.now() - promotedAt;
      assert.equal(Number(r.rows[0].port), replica.port, 'the write landed on the new primary');
      assert.ok(Date.now() - t0 >= 1000, 'it waited for the promotion');
      assert.ok(
        resumedAfter <= 300 + 1000 + 500,
        `writes resumed ${resumedAfter} ms after the promotion (renew_interval 300 ms)`,
      );
      reading = false;
      await readLoop;
      assert.deepEqual(readErrors, [], 'no read failed during the failover');
      assert.ok(reads > 20, `reads kept flowing (${reads})`);
      await until(async () => txErrors.length > 0, 5000, 'the client mid-transaction heard of it');
      assert.ok(
        ['08006', '57P01', '57P02'].includes(txErrors[0]),
        `clear error for the client mid-transaction: ${txErrors.join(', ')}`,
      );
      assert.equal(
        Number((await writer.query('SELECT count(*) AS n FROM fo WHERE v IN (3, 4)')).rows[0].n),
        0,
        'its transaction was not committed',
      );
      assert.equal(Number((await writer.query('SELECT count(*) AS n FROM fo WHERE v = 5')).rows[0].n), 1);
      // Where each role came from is visible in the metrics (and the status page).
      const metrics = await (await fetch(`http://127.0.0.1:${http}/metrics`)).text();
      assert.match(
        metrics,
        new RegExp(
          `openproxy_server_role\\{[^}]*server="127\\.0\\.0\\.1:${replica.port}",role="primary",source="sql ` +
            `probe"\\} 1`,
        ),
      );
      assert.match(
        metrics,
        new RegExp(
          `openproxy_server_role\\{[^}]*server="127\\.0\\.0\\.1:${oldPrimary.port}",role="unknown",source="sql ` +
            `probe"\\} 1`,
        ),
      );
    } finally {
      reading = false;
      for (const c of [writer, reader]) await c.end().catch(() => undefined);
      await inTx.end().catch(() => undefined);
    }
  },
);
