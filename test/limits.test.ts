// PgBouncer's connection limits on a real primary: max_db_connections and max_user_connections
// counted from pg_stat_activity under load (an idle connection of another user is closed to make
// room), the reserve pool used only after reserve_pool_timeout and closed again, and the SHOW
// DATABASES / SHOW USERS columns that report them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, adminClient, client, sleep, until } from './helpers/db';
import { type Proxy, startProxy } from './helpers/proxy';

const OTHER = 'app_other';
let cluster: PgCluster;
before(async () => {
  cluster = await PgCluster.start();
  cluster.psql(
    cluster.primary,
    `CREATE ROLE ${APP_USER} LOGIN PASSWORD '${APP_PASS}'; CREATE ROLE ${OTHER} LOGIN PASSWORD '${APP_PASS}';`,
  );
});
after(() => cluster?.stop());

/** Server connections openproxy holds now, per role (every client backend but the test's own psql). */
function backends(): Record<string, number> {
  const out = cluster.psql(
    cluster.primary,
    "SELECT usename, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' " +
      'AND pid <> pg_backend_pid() GROUP BY 1',
  );
  return Object.fromEntries(
    out
      .split('\n')
      .filter(Boolean)
      .map((l) => [l.split('|')[0], Number(l.split('|')[1])]),
  );
}
const total = () => Object.values(backends()).reduce((a, b) => a + b, 0);

/** Pools `names`, each with users APP_USER and OTHER (`other`: its extra keys), transaction mode, on the primary. */
function config(port: number, general: string, names: string[], pool = '', other = ''): string {
  let out =
    `[general]\nhost = "127.0.0.1"\nport = ${port}\nworker_threads = 2\nadmin_username = "admin"\n` +
    `admin_password = "adminpass"\nprometheus_exporter_port = 0\n${general}\n`;
  for (const name of names) {
    out += `[pools.${name}]\npool_mode = "transaction"\n${pool}\n`;
    [APP_USER, OTHER].forEach((u, i) => {
      out += `[pools.${name}.users.${i}]\nusername = "${u}"\npassword = "${APP_PASS}"\npool_size = 5\n`;
      out += u === OTHER ? `${other}\n` : '\n';
    });
    const server = `["127.0.0.1", ${cluster.primary.port}, "primary"]`;
    out += `[pools.${name}.shards.0]\ndatabase = "postgres"\nservers = [${server}]\n`;
  }
  return out;
}

/** `n` clients of `user` on `db`, each inside a transaction that has run a statement (holding a connection). */
async function holders(p: Proxy, n: number, user: string, db = 'pool_a'): Promise<pg.Client[]> {
  const cs = Array.from({ length: n }, () => client(p.port, { user, database: db }));
  await Promise.all(cs.map((c) => c.connect()));
  await Promise.all(cs.map((c) => c.query('BEGIN').then(() => c.query('SELECT 1'))));
  return cs;
}
const endAll = async (cs: pg.Client[]) => {
  for (const c of cs) await c.end().catch(() => undefined);
};

describe('max_db_connections', () => {
  let p: Proxy;
  before(async () => {
    p = await startProxy((port) =>
      config(port, 'query_wait_timeout = 3000\nidle_timeout = 600000', ['pool_a'], 'max_db_connections = 3'),
    );
  });
  after(() => p?.stop());

  test('all users of a pool together stay at the limit; waiters get in as others commit', async () => {
    // Logged in first: a login may need a server connection for its parameters.
    const late = client(p.port, { user: OTHER, database: 'pool_a' });
    await late.connect();
    const held = await holders(p, 2, APP_USER);
    const other = await holders(p, 1, OTHER);
    assert.equal(total(), 3);
    // A fourth transaction (pool_size 5 would allow it) waits for the pool's limit.
    let done = false;
    const q = late.query('SELECT 42 AS n').then((r) => {
      done = true;
      return r;
    });
    await sleep(400);
    assert.equal(done, false, 'the fourth waits while three are in use');
    assert.equal(total(), 3);
    await held[0].query('COMMIT');
    assert.equal((await q).rows[0].n, 42);
    assert.ok(total() <= 3, `at most 3 server connections, saw ${JSON.stringify(backends())}`);
    await endAll([...held, ...other, late]);
  });

  test("an idle connection of one user is closed for another user's waiting client", async () => {
    // Fill the pool's limit with idle connections of APP_USER (transactions done, connections pooled).
    const cs = await holders(p, 3, APP_USER);
    for (const c of cs) await c.query('COMMIT');
    await until(() => backends()[APP_USER] === 3, 5000, 'three idle connections of app');
    const t0 = Date.now();
    const o = client(p.port, { user: OTHER, database: 'pool_a' });
    await o.connect();
    assert.equal((await o.query('SELECT current_user AS u')).rows[0].u, OTHER);
    assert.ok(Date.now() - t0 < 2000, `served in ${Date.now() - t0} ms, not at query_wait_timeout`);
    const b = backends();
    assert.equal(b[OTHER], 1);
    assert.ok((b[APP_USER] ?? 0) <= 2 && total() <= 3, JSON.stringify(b));
    await endAll([...cs, o]);
  });

  test('a client that waits past query_wait_timeout gets 53300 naming max_db_connections', async () => {
    const c = client(p.port, { user: OTHER, database: 'pool_a' });
    c.on('error', () => undefined); // the proxy closes the client after the error, as PgBouncer does
    await c.connect();
    const held = await holders(p, 3, APP_USER);
    const err = await c.query('SELECT 1').then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    assert.equal(err?.code, '53300');
    assert.match(err!.message, /max_db_connections = 3/);
    await endAll([...held, c]);
  });

  test('SHOW DATABASES shows max_db_connections as max_connections', async () => {
    const adm = adminClient(p.port);
    await adm.connect();
    const rows = (await adm.query('SHOW DATABASES')).rows;
    assert.ok(rows.length === 2 && rows.every((r) => Number(r.max_connections) === 3 && Number(r.reserve_pool) === 0));
    await adm.end();
  });
});

describe('max_user_connections', () => {
  let p: Proxy;
  before(async () => {
    p = await startProxy((port) =>
      config(
        port,
        'query_wait_timeout = 10000\nmax_user_connections = 2',
        ['pool_a', 'pool_b'],
        '',
        'max_user_connections = 0',
      ),
    );
  });
  after(() => p?.stop());

  test('one user across two pools stays at the limit; other users are not held back', async () => {
    const third = client(p.port, { database: 'pool_b' });
    await third.connect();
    const a = await holders(p, 1, APP_USER, 'pool_a');
    const b = await holders(p, 1, APP_USER, 'pool_b');
    let done = false;
    const q = third.query('SELECT 7 AS n').then((r) => {
      done = true;
      return r;
    });
    // Another user is not limited by app's count.
    const others = await holders(p, 3, OTHER, 'pool_a');
    await sleep(300);
    assert.equal(done, false);
    assert.equal(backends()[APP_USER], 2);
    const adm = adminClient(p.port);
    await adm.connect();
    const users = Object.fromEntries((await adm.query('SHOW USERS')).rows.map((r) => [r.name, r]));
    assert.equal(Number(users[APP_USER].max_user_connections), 2);
    assert.equal(Number(users[APP_USER].current_connections), 2);
    assert.equal(Number(users[OTHER].current_connections), 3);
    await adm.end();
    await a[0].query('COMMIT');
    assert.equal((await q).rows[0].n, 7);
    assert.ok(backends()[APP_USER] <= 2);
    await endAll([...a, ...b, ...others, third]);
  });
});

describe('reserve_pool_size', () => {
  let p: Proxy;
  before(async () => {
    p = await startProxy((port) =>
      config(port, 'query_wait_timeout = 5000\nreserve_pool_timeout = 500', ['pool_a'], 'reserve_pool_size = 1'),
    );
  });
  after(() => p?.stop());

  test('a client that waited reserve_pool_timeout gets a reserve connection; it closes when released', async () => {
    const held = await holders(p, 5, APP_USER);
    assert.equal(backends()[APP_USER], 5);
    const c = client(p.port, { database: 'pool_a' });
    await c.connect();
    const t0 = Date.now();
    await c.query('BEGIN');
    await c.query('SELECT 1');
    const waited = Date.now() - t0;
    assert.ok(waited >= 450 && waited < 3000, `served from the reserve after ${waited} ms`);
    assert.equal(backends()[APP_USER], 6, 'pool_size + reserve_pool_size');
    // The reserve is spent: a seventh waits until a connection is released.
    const d = client(p.port, { database: 'pool_a' });
    await d.connect();
    let done = false;
    const q = d.query('SELECT 1').then(() => (done = true));
    await sleep(800);
    assert.equal(done, false);
    await c.query('COMMIT');
    await q;
    // Nobody waits any more: connections above pool_size close when released.
    await held[0].query('COMMIT');
    await until(() => backends()[APP_USER] === 5, 5000, 'back to pool_size');
    assert.match(p.output(), /taking a connection from the reserve pool/);
    await endAll([...held, c, d]);
  });

  test('without waiting reserve_pool_timeout no reserve connection opens', async () => {
    const held = await holders(p, 5, APP_USER);
    const c = client(p.port, { database: 'pool_a' });
    await c.connect();
    const q = c.query('SELECT 1');
    await sleep(300);
    assert.equal(backends()[APP_USER], 5);
    await held[0].query('COMMIT');
    await q;
    await endAll([...held, c]);
  });

  test('SHOW DATABASES shows reserve_pool', async () => {
    const adm = adminClient(p.port);
    await adm.connect();
    const rows = (await adm.query('SHOW DATABASES')).rows;
    assert.ok(rows.every((r) => Number(r.reserve_pool) === 1 && Number(r.max_connections) === 0));
    await adm.end();
  });
});
