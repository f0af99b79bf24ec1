// Sharding: pg_bigint_hash agrees with PostgreSQL's own hash partitioning, and queries reach the
// shard their comment, sharding key or routing command names. Two shards are two databases on a
// real primary + replica; current_database() shows which shard ran a query.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, client, createAppRole } from './helpers/db';
import { type Proxy, startProxy } from './helpers/proxy';
import { automaticKey, pgBigintHash, shardOfKey } from '../src/routing/sharding';

let cluster: PgCluster;

before(async () => {
  cluster = await PgCluster.start({ replicas: 1 });
  createAppRole(cluster);
  for (const db of ['shard0db', 'shard1db', 'shard2db'])
    cluster.psql(cluster.primary, `CREATE DATABASE ${db} OWNER ${APP_USER}`);
});
after(() => cluster?.stop());

test('pg_bigint_hash puts every key where PARTITION BY HASH (bigint) puts it', () => {
  const keys: bigint[] = [];
  for (let i = -300n; i <= 300n; i++) keys.push(i);
  keys.push(2n ** 31n, -(2n ** 31n), 2n ** 32n + 5n, 9007199254740993n, 2n ** 63n - 1n, -(2n ** 63n), 123456789012345n);
  for (const modulus of [2, 3, 5, 8]) {
    const parts = Array.from(
      { length: modulus },
      (_, r) =>
        `CREATE TABLE hp${modulus}_${r} PARTITION OF hp${modulus} FOR VALUES ` +
        `WITH (MODULUS ${modulus}, REMAINDER ${r});`,
    ).join('');
    cluster.psql(
      cluster.primary,
      `CREATE TABLE hp${modulus} (id bigint) PARTITION BY HASH (id); ${parts} ` +
        `INSERT INTO hp${modulus} VALUES ${keys.map((k) => `(${k})`).join(',')}`,
    );
    const rows = cluster.psql(cluster.primary, `SELECT id, tableoid::regclass FROM hp${modulus}`).split('\n');
    assert.equal(rows.length, keys.length);
    for (const row of rows) {
      const [id, table] = row.split('|');
      const remainder = Number(table.split('_')[1]);
      assert.equal(Number(pgBigintHash(BigInt(id)) % BigInt(modulus)), remainder, `key ${id}, modulus ${modulus}`);
      assert.equal(shardOfKey('pg_bigint_hash', id, modulus), remainder);
    }
  }
});

test('sha1 sharding: the last 8 hex digits of sha1(key) modulo the shard count (PgCat)', () => {
  for (const k of ['1', '42', '-7', '9007199254740993']) {
    const hex = createHash('sha1').update(k).digest('hex');
    assert.equal(shardOfKey('sha1', k, 3), parseInt(hex.slice(-8), 16) % 3);
  }
  assert.equal(shardOfKey('sha1', 'abc', 3), null, 'keys are 64-bit integers');
});

test('automatic sharding key: equality with a literal or a parameter, single-row INSERT', () => {
  assert.equal(automaticKey('SELECT * FROM users WHERE id = 42', 'id', null), '42');
  assert.equal(automaticKey('SELECT * FROM users u WHERE u.id = $2 AND x = $1', 'users.id', ['a', '77']), '77');
  assert.equal(automaticKey('SELECT * FROM users WHERE "id" = \'-5\'', 'id', null), '-5');
  assert.equal(automaticKey('INSERT INTO users (name, id) VALUES ($1, 9001)', 'users.id', ['x']), '9001');
  assert.equal(automaticKey('INSERT INTO users (name, id) VALUES ($1, $2) RETURNING id', 'id', ['x', '12']), '12');
  assert.equal(automaticKey('SELECT * FROM users WHERE user_id = 42', 'id', null), null, 'another column');
  assert.equal(automaticKey('SELECT * FROM users WHERE id > 42', 'id', null), null, 'not one value');
  assert.equal(
    automaticKey('SELECT * FROM users WHERE id = 42', 'orders.id', null),
    '42',
    'a column matched without its table in the query',
  );
});

describe('through openproxy: three shards', () => {
  let proxy: Proxy;
  const servers = `[["127.0.0.1", ${0}, "primary"]]`;
  before(async () => {
    const nodes = cluster.nodes.map((n) => `["127.0.0.1", ${n.port}, "${n.role}"]`).join(', ');
    void servers;
    proxy = await startProxy(
      (port) => `[general]\nhost = "127.0.0.1"\nport = ${port}\nworker_threads = 2\n
[pools.app]\npool_mode = "transaction"\nquery_parser_enabled = true\nquery_parser_read_write_splitting = true\n\
automatic_sharding_key = "accounts.id"\ndefault_shard = "shard.1"\n
[pools.app.users.0]\nusername = "${APP_USER}"\npassword = "${APP_PASS}"\npool_size = 4\n
[pools.app.shards.0]\ndatabase = "shard0db"\nservers = [${nodes}]\n
[pools.app.shards.1]\ndatabase = "shard1db"\nservers = [${nodes}]\n
[pools.app.shards.2]\ndatabase = "shard2db"\nservers = [${nodes}]\n`,
    );
  });
  after(() => proxy?.stop());

  async function db(c: pg.Client, sql: string, params?: unknown[]): Promise<string> {
    return String((await c.query(sql, params)).rows[0].db);
  }

  test('default_shard, /* shard_id */ and /* sharding_key */ comments', async () => {
    const c = client(proxy.port, { database: 'app' });
    await c.connect();
    try {
      assert.equal(await db(c, 'SELECT current_database() AS db'), 'shard1db', 'default_shard = shard.1');
      for (let s = 0; s < 3; s++)
        assert.equal(await db(c, `/* shard_id: ${s} */ SELECT current_database() AS db`), `shard${s}db`);
      for (const k of [1, 2, 3, 100, -5, 123456789]) {
        assert.equal(
          await db(c, `/* sharding_key: ${k} */ SELECT current_database() AS db`),
          `shard${shardOfKey('pg_bigint_hash', String(k), 3)}db`,
        );
      }
      const err = await c.query('/* shard_id: 7 */ SELECT 1').then(
        () => null,
        (e) => e,
      );
      assert.equal(err?.code, '22023');
      assert.match(err.message, /shard 7 does not exist/);
      assert.equal(await db(c, 'SELECT current_database() AS db'), 'shard1db', 'the client goes on after the error');
    } finally {
      await c.end();
    }
  });

  test('SET SHARD TO, SET SHARDING KEY TO, SHOW SHARD', async () => {
    const c = client(proxy.port, { database: 'app' });
    await c.connect();
    try {
      assert.equal((await c.query('SHOW SHARD')).rows[0].shard, 'default');
      await c.query("SET SHARD TO '2'");
      assert.equal((await c.query('SHOW SHARD')).rows[0].shard, '2');
      for (let i = 0; i < 3; i++) assert.equal(await db(c, 'SELECT current_database() AS db'), 'shard2db');
      await c.query("SET SHARDING KEY TO '100'");
      const want = shardOfKey('pg_bigint_hash', '100', 3);
      assert.equal(await db(c, 'SELECT current_database() AS db'), `shard${want}db`);
      const err = await c.query("SET SHARD TO '3'").then(
        () => null,
        (e) => e,
      );
      assert.equal(err?.code, '22023');
      await c.query("SET SHARD TO 'default'");
      assert.equal(await db(c, 'SELECT current_database() AS db'), 'shard1db');
    } finally {
      await c.end();
    }
  });

  test('automatic_sharding_key: the shard comes from the key in the statement (simple and extended)', async () => {
    const c = client(proxy.port, { database: 'app' });
    await c.connect();
    try {
      for (const k of [7, 8, 9, 10, 11, 12]) {
        const want = `shard${shardOfKey('pg_bigint_hash', String(k), 3)}db`;
        assert.equal(
          await db(c, `SELECT current_database() AS db FROM (SELECT ${k} AS id) accounts WHERE accounts.id = ${k}`),
          want,
        );
        assert.equal(
          await db(
            c,
            'SELECT current_database() AS db FROM (SELECT $1::bigint AS id) accounts WHERE accounts.id = $1',
            [k],
          ),
          want,
        );
      }
    } finally {
      await c.end();
    }
  });
});
