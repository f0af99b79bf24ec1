// Property-based fuzzing of the client side (fast-check, seeded): generated sequences of startup
// packets, SSL/GSS/cancel requests, md5 answers (right and wrong), simple and extended protocol
// messages, COPY messages, random typed messages, truncated and oversized frames, sent to a running
// openproxy with a real PostgreSQL behind it (transaction mode, cache on). Properties:
//   - openproxy never crashes, and every reply it sends is well framed;
//   - a connection ends (error + close, or idle at ReadyForQuery) within a deadline once the client
//     stops sending, or is still waiting for the rest of a frame it was promised;
//   - a probe client keeps being served, sees no setting leaked from a fuzzed client, and nothing is
//     left running on the server.
// FUZZ_RUNS (default 10000) and FUZZ_SEED change the run; a failure prints the seed and the path.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { serialize } from 'pg-protocol';
import { PgCluster } from '../testing/pg-cluster';
import { FrameReader } from '../src/protocol/frame-reader';
import { md5Response, md5Stored } from '../src/protocol/md5';
import { APP_PASS, APP_USER, client, createAppRole } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';
import { requestPacket, startupPacket } from './helpers/wire';

const RUNS = Number(process.env.FUZZ_RUNS) || 10000;
const SEED = Number(process.env.FUZZ_SEED) || 20261202;

let cluster: PgCluster;
let proxy: Proxy;

before(async () => {
  cluster = await PgCluster.start();
  createAppRole(cluster);
  proxy = await startProxy((port) =>
    configFor(cluster, port, 'client_login_timeout = 2000\nprepared_statements_cache_size = 100\n', [
      { pool_mode: 'transaction', pool_size: 4 },
    ]),
  );
});
after(async () => {
  await proxy?.stop();
  cluster?.stop();
});

/** One thing the fuzzed client does. `login` answers the md5 request it got (or sends garbage). */
type Step =
  | { kind: 'bytes'; data: Uint8Array }
  | { kind: 'login'; right: boolean }
  | { kind: 'frame'; type: number; body: Uint8Array; lie: number };

const startup = startupPacket;
const request = requestPacket;

const SQL = [
  'SELECT 1',
  'SELECT pg_sleep(0.05)',
  'BEGIN',
  'COMMIT',
  'ROLLBACK',
  "SET statement_timeout = '7s'",
  'SET search_path = pg_catalog',
  'RESET ALL',
  'SELECT * FROM no_such_table',
  'SELEC broken',
  'COPY (SELECT 1) TO STDOUT',
  'CREATE TEMP TABLE t(x int)',
  'PREPARE p AS SELECT 1',
  'DISCARD ALL',
  'LISTEN ch',
  "SELECT set_config('application_name', 'x', false)",
  '',
];
const sql = fc.constantFrom(...SQL);
const name = fc.constantFrom('', 's1', 'P0_1', 'x'.repeat(70));
/** pg-protocol's serializer warns on stderr about names over 63 bytes; here they are meant. */
const parse = (n: string, text: string): Buffer => {
  const error = console.error;
  console.error = () => undefined;
  try {
    return serialize.parse({ name: n, text });
  } finally {
    console.error = error;
  }
};
const bytes = (max: number) => fc.uint8Array({ maxLength: max });

const steps: fc.Arbitrary<Step> = fc.oneof(
  // Startup-phase packets.
  fc
    .record({ user: fc.constantFrom(APP_USER, 'nobody', ''), db: fc.constantFrom('postgres', 'nope', 'openproxy') })
    .map(({ user, db }) => ({
      kind: 'bytes' as const,
      data: startup(user ? { user, database: db } : { database: db }),
    })),
  fc.constantFrom(
    { kind: 'bytes' as const, data: request(80877103) }, // SSLRequest
    { kind: 'bytes' as const, data: request(80877104) }, // GSSENCRequest
    { kind: 'bytes' as const, data: startup({ user: APP_USER }, 0x00020000) }, // protocol 2
  ),
  fc.tuple(fc.integer(), fc.integer()).map(([pid, key]) => ({
    kind: 'bytes' as const,
    data: request(80877102, Buffer.from(Int32Array.of(pid, key).buffer)),
  })),
  fc.boolean().map((right) => ({ kind: 'login' as const, right })),
  // Protocol messages, well formed.
  sql.map((q) => ({ kind: 'bytes' as const, data: serialize.query(q) })),
  fc.tuple(name, sql).map(([n, text]) => ({ kind: 'bytes' as const, data: parse(n, text) })),
  fc
    .tuple(name, fc.array(fc.constantFrom('1', 'x', ''), { maxLength: 3 }))
    .map(([n, values]) => ({ kind: 'bytes' as const, data: serialize.bind({ statement: n, values }) })),
  fc.constantFrom(
    { kind: 'bytes' as const, data: serialize.describe({ type: 'P' }) },
    { kind: 'bytes' as const, data: serialize.describe({ type: 'S', name: 's1' }) },
    { kind: 'bytes' as const, data: serialize.execute({}) },
    { kind: 'bytes' as const, data: serialize.sync() },
    { kind: 'bytes' as const, data: serialize.flush() },
    { kind: 'bytes' as const, data: serialize.close({ type: 'S', name: 's1' }) },
    { kind: 'bytes' as const, data: serialize.copyData(Buffer.from('1\n')) },
    { kind: 'bytes' as const, data: serialize.copyDone() },
    { kind: 'bytes' as const, data: serialize.copyFail('fuzz') },
    { kind: 'bytes' as const, data: serialize.end() },
  ),
  // Any type byte with any body, with a length that may lie (truncated or oversized frames).
  fc
    .record({ type: fc.integer({ min: 0, max: 255 }), body: bytes(64), lie: fc.constantFrom(0, 0, 0, -3, 5, 1 << 30) })
    .map((f) => ({ kind: 'frame' as const, ...f })),
  bytes(32).map((data) => ({ kind: 'bytes' as const, data })),
);

const DEADLINE_MS = 4000;

/** Runs one generated session; resolves with what happened, rejects on a property violation. */
function play(port: number, script: Step[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const frames = new FrameReader(1 << 30);
    let salt: Buffer | null = null;
    let typed = false; // the proxy has answered the startup: replies are typed messages from here on
    let lastType = 0;
    let closed = false;
    let failed: string | null = null;
    const fail = (why: string) => {
      failed ??= why;
    };
    s.on('error', () => undefined);
    s.on('data', (chunk: Buffer) => {
      // Answers to SSLRequest / GSSENCRequest are one untyped byte ('N': no TLS configured).
      while (!typed && chunk.length > 0 && chunk[0] === 0x4e) chunk = chunk.subarray(1);
      if (chunk.length === 0) return;
      typed = true;
      frames.push(chunk);
      while (frames.next()) {
        lastType = frames.type;
        if (!/[RSKZEDTCINn123stAGHWcdVv]/.test(String.fromCharCode(frames.type)))
          fail(`unknown reply type 0x${frames.type.toString(16)}`);
        if (frames.type === 0x52) {
          const body = frames.body();
          if (body.readInt32BE(0) === 5) salt = Buffer.from(body.subarray(4, 8));
        }
      }
      if (frames.error) fail(`bad framing from the proxy: ${frames.error}`);
      frames.detach();
    });
    s.on('close', () => {
      closed = true;
    });
    s.on('connect', async () => {
      for (const st of script) {
        if (closed) break;
        if (st.kind === 'login') {
          const answer = st.right && salt ? md5Response(md5Stored(APP_PASS, APP_USER), salt) : 'md5deadbeef';
          s.write(serialize.password(answer));
        } else if (st.kind === 'frame') {
          const h = Buffer.alloc(5);
          h[0] = st.type;
          h.writeInt32BE(st.lie === 1 << 30 ? st.lie : 4 + st.body.length + st.lie, 1);
          s.write(Buffer.concat([h, st.body]));
        } else s.write(st.data);
        await new Promise((r) => setTimeout(r, 2));
      }
      // The client stops here. Within the deadline the proxy closes or the session sits at
      // ReadyForQuery; if it does neither it may be waiting for the rest of a frame the client
      // promised, so the client then sends Sync + a query: now it must answer or close.
      const done = () => closed || lastType === 0x5a;
      const wait = async (ms: number) => {
        const t0 = Date.now();
        while (!done() && !failed && Date.now() - t0 < ms) await new Promise((r) => setTimeout(r, 10));
      };
      await wait(DEADLINE_MS / 4);
      if (!done() && !failed) {
        lastType = 0;
        s.write(Buffer.concat([serialize.sync(), serialize.query('SELECT 1')]));
        await wait(DEADLINE_MS);
      }
      s.destroy();
      if (failed) return reject(new Error(failed));
      if (!done()) return reject(new Error(`stalled: no reply and no close within ${DEADLINE_MS} ms`));
      resolve();
    });
  });
}

/** What a fresh client sees; the first probe records it, later ones must see the same. */
let baseline: unknown = null;
async function probe(): Promise<void> {
  const c = client(proxy.port);
  await c.connect();
  try {
    const r = await c.query(
      "SELECT current_setting('statement_timeout') AS st, current_setting('search_path') AS sp, " +
        "current_setting('application_name') AS app, " +
        '(SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql) + ' +
        '(SELECT count(*) FROM pg_prepared_statements WHERE from_sql) * 1000 AS sql_prepared',
    );
    const seen = { ...r.rows[0], sql_prepared: Number(r.rows[0].sql_prepared) >= 1000 };
    baseline ??= seen;
    assert.deepEqual(seen, baseline, 'no setting or SQL PREPARE leaked from a fuzzed client');
  } finally {
    await c.end();
  }
}

test(`fuzzed clients (${RUNS} runs, seed ${SEED}) never crash or stall openproxy nor leak state`, {
  timeout: 900_000,
}, async () => {
  await probe();
  let n = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(steps, { minLength: 1, maxLength: 12 }), async (script) => {
      await play(proxy.port, script).catch((e: Error) => {
        const shown = script.map((st) =>
          'data' in st ? { ...st, data: Buffer.from(st.data).toString('latin1') } : st,
        );
        throw new Error(`${e.message}\nscript: ${JSON.stringify(shown)}`);
      });
      assert.equal(proxy.proc.exitCode, null, `openproxy exited: ${proxy.output().slice(-2000)}`);
      if (++n % 250 === 0) await probe();
    }),
    { numRuns: RUNS, seed: SEED, endOnFailure: true, path: process.env.FUZZ_PATH },
  );
  await probe();
  // Nothing a fuzzed client started is still running once they are all gone.
  const running = () =>
    Number(
      cluster
        .psql(
          cluster.primary,
          `SELECT count(*) FROM pg_stat_activity WHERE usename = '${APP_USER}' AND state NOT IN ('idle')`,
        )
        .trim(),
    );
  const t0 = Date.now();
  while (running() > 0 && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 200));
  assert.equal(running(), 0, 'server connections left busy');
});
