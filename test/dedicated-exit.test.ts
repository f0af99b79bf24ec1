// Dedicated mode ends when the session objects are gone (Proxima's rule), seen from a second
// client: with pool_size 1, a pinned client holds the only server connection, so another client's
// query waits until the first one drops its last temp table, closes its last WITH HOLD cursor or
// releases its last session advisory lock — and not a statement earlier.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { PgCluster } from '../testing/pg-cluster';
import { client, createAppRole, sleep } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';

let cluster: PgCluster;
let proxy: Proxy;
before(async () => {
  cluster = await PgCluster.start();
  createAppRole(cluster);
  proxy = await startProxy((port) =>
    configFor(cluster, port, 'worker_threads = 1\nquery_wait_timeout = 20000', [
      { pool_mode: 'transaction', pool_size: 1 },
    ]),
  );
});
after(async () => {
  await proxy?.stop();
  cluster?.stop();
});

/** Whether a query of another client gets through within `ms` (it waits while the pin holds the server). */
async function othersServed(other: pg.Client, ms = 400): Promise<boolean> {
  let done = false;
  const q = other.query('SELECT 1').then(() => (done = true));
  await sleep(ms);
  if (!done) await q; // finish it before the next step (the caller releases the pin)
  return done;
}

const cases: { name: string; pin: string[]; release: string[] }[] = [
  {
    name: 'the last temp table dropped',
    pin: ['CREATE TEMP TABLE t1 (x int)', 'CREATE TEMP TABLE t2 (x int)'],
    release: ['DROP TABLE t1', 'DROP TABLE t2'],
  },
  {
    name: 'the last WITH HOLD cursor closed',
    pin: ['BEGIN', 'DECLARE c1 CURSOR WITH HOLD FOR SELECT 1', 'DECLARE c2 CURSOR WITH HOLD FOR SELECT 2', 'COMMIT'],
    release: ['CLOSE c1', 'CLOSE c2'],
  },
  {
    name: 'the last session advisory lock released',
    pin: ['SELECT pg_advisory_lock(101), pg_advisory_lock(102)'],
    release: ['SELECT pg_advisory_unlock(101)', 'SELECT pg_advisory_unlock(102)'],
  },
];

describe('dedicated mode ends with its objects', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const a = client(proxy.port);
      const b = client(proxy.port);
      await a.connect();
      await b.connect();
      try {
        for (const sql of c.pin) await a.query(sql);
        // While any object is left, the other client is not served.
        const [first, last] = c.release;
        const waiting = b.query('SELECT 1');
        await sleep(400);
        await a.query(first);
        let done = false;
        void waiting.then(() => (done = true));
        await sleep(400);
        assert.equal(done, false, `still pinned after "${first}": one object is left`);
        await a.query(last);
        await waiting;
        // Out of dedicated mode: the two clients now take turns on the one connection.
        assert.equal(await othersServed(b), true);
        assert.equal((await a.query('SELECT 2 AS n')).rows[0].n, 2);
        assert.match(proxy.output(), /client leaves dedicated mode/);
      } finally {
        await a.end();
        await b.end();
      }
    });
  }
});
