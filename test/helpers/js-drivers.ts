// The Node drivers' workloads for the driver matrix (test/drivers.test.ts), run in-process:
// node-postgres (named and unnamed statements, a pool) and postgres.js (its default named
// statements and `prepare: false`; both describe a statement before binding it, ending that
// batch with Flush). Each step has a deadline, so a hang fails with the step's name.
import assert from 'node:assert/strict';
import pg from 'pg';
import postgres from 'postgres';
import { APP_PASS, APP_USER } from './db';

export interface DriverRun {
  port: number;
  mode: 'session' | 'transaction';
  /** Reads go to replicas (routing on). */
  routing: boolean;
  /** Named statements may be used (session mode, or openproxy's prepared cache on). */
  named: boolean;
  poolSize: number;
  /** Tag of this run's rows in matrix_t. */
  who: string;
}

/** `p`, or an error naming `what` after `ms`. */
export function within<T>(p: Promise<T>, what: string, ms = 20000): Promise<T> {
  let t: NodeJS.Timeout;
  const limit = new Promise<never>(
    (_, rej) => (t = setTimeout(() => rej(new Error(`${what}: no answer within ${ms} ms (hang)`)), ms)),
  );
  return Promise.race([p, limit]).finally(() => clearTimeout(t));
}

const opts = (port: number) => ({ host: '127.0.0.1', port, user: APP_USER, password: APP_PASS, database: 'postgres' });

export async function nodePostgres(r: DriverRun): Promise<void> {
  const reader = async (i: number) => {
    const c = new pg.Client({ ...opts(r.port), connectionTimeoutMillis: 20000 });
    await within(c.connect(), 'pg connect');
    try {
      const rec = await within(c.query('SELECT pg_is_in_recovery() AS rec'), 'pg recovery check');
      assert.equal(rec.rows[0].rec, r.routing, 'read ran on the wrong kind of server');
      for (let k = 0; k < 10; k++) {
        const q = r.named
          ? { name: `mx_mul_${k % 3}`, text: 'SELECT $1::int * $2::int AS v', values: [i, k] }
          : { text: 'SELECT $1::int * $2::int AS v', values: [i, k] };
        assert.equal((await within(c.query(q), 'pg parametrised read')).rows[0].v, i * k);
      }
      const big = await within(
        c.query('SELECT g, md5(g::text) AS h FROM generate_series(1, $1::int) g', [20000]),
        'pg large result',
      );
      assert.equal(big.rows.length, 20000);
      await assert.rejects(
        within(c.query('SELECT 1 / $1::int', [0]), 'pg error'),
        (e: { code?: string }) => e.code === '22012',
      );
      assert.equal(
        (await within(c.query('SELECT $1::text AS t', ['after-error']), 'pg after error')).rows[0].t,
        'after-error',
      );
    } finally {
      await c.end();
    }
  };
  await Promise.all(Array.from({ length: r.poolSize + 4 }, (_, i) => reader(i)));

  const w = new pg.Client(opts(r.port));
  await within(w.connect(), 'pg connect');
  try {
    await within(w.query('BEGIN'), 'pg BEGIN');
    await within(w.query('INSERT INTO matrix_t (who, v) VALUES ($1, 1)', [r.who]), 'pg insert');
    await within(w.query('ROLLBACK'), 'pg ROLLBACK');
    await within(w.query('INSERT INTO matrix_t (who, v) VALUES ($1, 2)', [r.who]), 'pg autocommit insert');
    const n = await within(
      w.query('SELECT count(*)::int AS n FROM matrix_t WHERE who = $1', [r.who]),
      'pg read own write',
    );
    assert.equal(n.rows[0].n, 1, 'own committed write not read back');
    if (!r.named) {
      // Transaction mode without the cache: a named statement gets openproxy's clear 26000.
      await assert.rejects(
        within(w.query({ name: 'mx_refused', text: 'SELECT 1' }), 'pg named refused'),
        (e: { code?: string; message: string }) =>
          e.code === '26000' && /prepared_statements_cache_size/.test(e.message),
      );
    }
  } finally {
    await w.end();
  }

  const pool = new pg.Pool({
    ...opts(r.port),
    max: r.mode === 'transaction' ? 20 : r.poolSize,
    connectionTimeoutMillis: 30000,
  });
  try {
    const vals = await within(
      Promise.all(Array.from({ length: 100 }, (_, i) => pool.query('SELECT $1::int + 1 AS v', [i]))),
      'pg pool of 20',
    );
    vals.forEach((q, i) => assert.equal(q.rows[0].v, i + 1));
  } finally {
    await pool.end();
  }
}

export async function postgresJs(r: DriverRun, prepare: boolean): Promise<void> {
  const sql = postgres({
    ...opts(r.port),
    max: r.mode === 'transaction' ? 20 : r.poolSize,
    prepare,
    connect_timeout: 20,
    onnotice: () => undefined,
  });
  try {
    const one = postgres({ ...opts(r.port), max: 1, prepare, connect_timeout: 20 });
    try {
      // The first parameterised query on a fresh connection: Parse/Describe/Flush first.
      const [row] = await within(
        one`SELECT ${1}::int + 7 AS v, pg_is_in_recovery() AS rec`,
        'postgres.js first parameterised query',
      );
      assert.equal(row.v, 8);
      assert.equal(row.rec, r.routing, 'read ran on the wrong kind of server');
      const big = await within(
        one`SELECT g, md5(g::text) AS h FROM generate_series(1, ${20000}::int) g`,
        'postgres.js large result',
      );
      assert.equal(big.length, 20000);
      await assert.rejects(
        within(one`SELECT 1 / ${0}::int`, 'postgres.js error'),
        (e: { code?: string }) => e.code === '22012',
      );
      assert.equal(
        (await within(one`SELECT ${'after-error'}::text AS t`, 'postgres.js after error'))[0].t,
        'after-error',
      );
    } finally {
      await one.end({ timeout: 5 });
    }
    const vals = await within(
      Promise.all(Array.from({ length: 100 }, (_, i) => sql`SELECT ${i}::int * 2 AS v`)),
      'postgres.js 100 concurrent queries',
    );
    vals.forEach((q, i) => assert.equal(q[0].v, i * 2));
    await sql.end({ timeout: 5 }); // session mode: its sessions go back before the writer needs one
    const who = `${r.who}-${prepare ? 'named' : 'unnamed'}`;
    const w = postgres({ ...opts(r.port), max: 1, prepare, connect_timeout: 20 });
    try {
      await within(
        w.begin(async (tx) => {
          await tx`INSERT INTO matrix_t (who, v) VALUES (${who}, 1)`;
          throw new Error('roll back');
        }),
        'postgres.js rollback',
      ).catch((e: Error) => assert.equal(e.message, 'roll back'));
      await within(w`INSERT INTO matrix_t (who, v) VALUES (${who}, 2)`, 'postgres.js insert');
      const [n] = await within(
        w`SELECT count(*)::int AS n FROM matrix_t WHERE who = ${who}`,
        'postgres.js read own write',
      );
      assert.equal(n.n, 1, 'own committed write not read back');
    } finally {
      await w.end({ timeout: 5 });
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}
