// Extended-protocol shapes on the wire, exactly as the protocol allows them (not only as our own
// drivers send them): describe-first batches ending in Flush, Describe portal, Close, Flush with
// nothing pending, pipelines of several Syncs, an error inside a pipeline, Execute then Flush.
// Each shape runs with routing off and on, in session and transaction mode, and asserts the exact
// replies; every wait has a deadline, so a reply held back fails in seconds, not at CI's limit.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { PgCluster } from '../testing/pg-cluster';
import { createAppRole, until } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';
import { WireClient, rowsOf } from './helpers/wire';

const SPLIT = 'query_parser_enabled = true\nquery_parser_read_write_splitting = true\n';
const P = serialize;

interface Config {
  mode: 'session' | 'transaction';
  routing: boolean;
  cache: number;
}
const CONFIGS: Config[] = [
  { mode: 'transaction', routing: false, cache: 1000 },
  { mode: 'transaction', routing: true, cache: 1000 },
  { mode: 'transaction', routing: true, cache: 0 },
  { mode: 'session', routing: false, cache: 1000 },
  { mode: 'session', routing: true, cache: 1000 },
];

let cluster: PgCluster;
before(async () => {
  cluster = await PgCluster.start({ replicas: 2 });
  createAppRole(cluster);
  await until(
    () =>
      cluster.replicas.every(
        (r) => cluster.psql(r, "SELECT count(*) FROM pg_roles WHERE rolname = 'app'").trim() === '1',
      ),
    10000,
    'replicas caught up',
  );
});
after(() => cluster?.stop());

/** A shape: what it sends and what it must get back. `named` shapes need statements that outlive a transaction. */
interface Shape {
  name: string;
  named?: boolean;
  run(c: WireClient, cfg: Config): Promise<void>;
}

const SHAPES: Shape[] = [
  {
    name: 'Parse/Describe statement/Flush answers at once, then Bind/Execute/Sync (describe-first drivers)',
    async run(c, cfg) {
      c.send(
        P.parse({ text: 'SELECT pg_is_in_recovery()::text AS rec, $1::int + 1 AS v' }),
        P.describe({ type: 'S' }),
        P.flush(),
      );
      await c.expect('1tT');
      c.send(P.bind({ values: ['41'] }), P.execute({}), P.sync());
      const got = await c.expect('2DCZ');
      // A described-then-bound read is routed like any other read.
      assert.deepEqual(rowsOf(got), [[cfg.routing ? 'true' : 'false', '42']]);
    },
  },
  {
    name: 'named statement: Parse/Describe/Flush, then Bind/Execute/Sync twice',
    named: true,
    async run(c) {
      c.send(
        P.parse({ name: 'wire_s1', text: 'SELECT $1::int * 2 AS v' }),
        P.describe({ type: 'S', name: 'wire_s1' }),
        P.flush(),
      );
      await c.expect('1tT');
      for (const v of [3, 4]) {
        c.send(P.bind({ statement: 'wire_s1', values: [String(v)] }), P.execute({}), P.sync());
        assert.deepEqual(rowsOf(await c.expect('2DCZ')), [[String(v * 2)]]);
      }
    },
  },
  {
    name: 'named Parse and its Bind in one batch (postgres.js, pgjdbc) are routed by the statement text',
    named: true,
    async run(c, cfg) {
      c.send(
        P.parse({ name: 'wire_s3', text: 'SELECT pg_is_in_recovery()::text' }),
        P.describe({ type: 'S', name: 'wire_s3' }),
        P.bind({ statement: 'wire_s3' }),
        P.execute({}),
        P.sync(),
      );
      assert.deepEqual(rowsOf(await c.expect('1tT2DCZ')), [[cfg.routing ? 'true' : 'false']]);
    },
  },
  {
    name: 'Describe portal inside Parse/Bind/Describe/Execute/Sync',
    async run(c) {
      c.send(
        P.parse({ text: 'SELECT g FROM generate_series(1, 3) g' }),
        P.bind({}),
        P.describe({ type: 'P' }),
        P.execute({}),
        P.sync(),
      );
      assert.deepEqual(rowsOf(await c.expect('12TDDDCZ')), [['1'], ['2'], ['3']]);
    },
  },
  {
    name: 'Close statement and Close portal, each with Sync',
    named: true,
    async run(c) {
      c.send(P.parse({ name: 'wire_s2', text: 'SELECT 1' }), P.sync());
      await c.expect('1Z');
      c.send(P.close({ type: 'S', name: 'wire_s2' }), P.sync());
      await c.expect('3Z');
      c.send(P.close({ type: 'P', name: '' }), P.sync());
      await c.expect('3Z');
      // The statement is gone for the client: a Bind now fails (26000) and the session goes on.
      c.send(P.bind({ statement: 'wire_s2' }), P.execute({}), P.sync());
      const got = await c.expect('EZ');
      assert.equal((got[0] as unknown as { code: string }).code, '26000');
    },
  },
  {
    name: 'Flush with nothing pending gets no reply and the session goes on',
    async run(c) {
      c.send(P.flush());
      await c.silence(300);
      c.send(P.query('SELECT 7 AS v'));
      assert.deepEqual(rowsOf(await c.expect('TDCZ')), [['7']]);
    },
  },
  {
    name: 'a pipeline of three Syncs in one write gets three complete answers in order',
    async run(c) {
      const one = (v: number) => [P.parse({ text: `SELECT ${v} AS v` }), P.bind({}), P.execute({}), P.sync()];
      c.send(...one(1), ...one(2), ...one(3));
      assert.deepEqual(rowsOf(await c.expect('12DCZ12DCZ12DCZ')), [['1'], ['2'], ['3']]);
    },
  },
  {
    name: 'an error inside a pipeline fails only its own Sync',
    async run(c) {
      c.send(
        P.parse({ text: 'SELECT 1 AS v' }),
        P.bind({}),
        P.execute({}),
        P.sync(),
        P.parse({ text: 'SELECT 1 / $1::int' }),
        P.bind({ values: ['0'] }),
        P.execute({}),
        P.sync(),
        P.parse({ text: 'SELECT 3 AS v' }),
        P.bind({}),
        P.execute({}),
        P.sync(),
      );
      // 1/0 is folded while the plan is built: the error comes at Bind, and the server skips to Sync.
      const got = await c.expect('12DCZ1EZ12DCZ');
      assert.equal((got[6] as unknown as { code: string }).code, '22012');
      assert.deepEqual(rowsOf(got), [['1'], ['3']]);
    },
  },
  {
    name: 'Parse/Bind/Execute/Flush answers before the Sync; the Sync then ends it',
    async run(c) {
      c.send(P.parse({ text: 'SELECT 5 AS v' }), P.bind({}), P.execute({}), P.flush());
      assert.deepEqual(rowsOf(await c.expect('12DC')), [['5']]);
      c.send(P.sync());
      await c.expect('Z');
    },
  },
  {
    name: 'Execute with a row limit: PortalSuspended, then the rest after a Flush',
    async run(c) {
      c.send(P.parse({ text: 'SELECT g FROM generate_series(1, 3) g' }), P.bind({}), P.execute({ rows: 2 }), P.flush());
      assert.deepEqual(rowsOf(await c.expect('12DDs')), [['1'], ['2']]);
      c.send(P.execute({}), P.sync());
      assert.deepEqual(rowsOf(await c.expect('DCZ')), [['3']]);
    },
  },
];

/** Server connections held by clients now (SHOW POOLS sv_active on the admin console). */
async function serversHeld(port: number): Promise<number> {
  const adm = new pg.Client({ host: '127.0.0.1', port, user: 'admin', password: 'adminpass', database: 'openproxy' });
  await adm.connect();
  try {
    return (await adm.query('SHOW POOLS')).rows.reduce((n, r) => n + Number(r.sv_active), 0);
  } finally {
    await adm.end();
  }
}

for (const cfg of CONFIGS) {
  const label = `${cfg.mode} mode, routing ${cfg.routing ? 'on' : 'off'}, prepared cache ${cfg.cache}`;
  describe(label, () => {
    let proxy: Proxy;
    before(async () => {
      proxy = await startProxy((port) =>
        configFor(cluster, port, `connect_timeout = 20000\nprepared_statements_cache_size = ${cfg.cache}`, [
          { pool_mode: cfg.mode, pool_size: 2, extraPool: cfg.routing ? SPLIT : '' },
        ]),
      );
    });
    after(() => proxy?.stop());

    for (const shape of SHAPES) {
      if (shape.named && cfg.mode === 'transaction' && cfg.cache === 0) continue; // refused by design: prepared.test.ts
      test(shape.name, { timeout: 20000 }, async () => {
        const c = await WireClient.connect(proxy.port);
        try {
          await shape.run(c, cfg);
          // The session is still usable afterwards.
          c.send(P.query('SELECT 1'));
          await c.expect('TDCZ');
          // Transaction mode: between transactions the client holds no server connection.
          if (cfg.mode === 'transaction')
            assert.equal(await serversHeld(proxy.port), 0, 'server connections held after the last ReadyForQuery');
        } finally {
          await c.close();
        }
      });
    }
  });
}
