// The client-side fuzzer shared by the CI run (test/fuzz-client.test.ts) and the long run
// (test/long/fuzz.ts): generated client sessions (fast-check arbitraries), a player that sends one
// to openproxy and checks what comes back, a probe for leaked state, and the run itself (lanes
// of seeded fc.assert runs played concurrently).
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { serialize } from 'pg-protocol';
import type { PgCluster } from '../../testing/pg-cluster';
import { FrameReader } from '../../src/protocol/frame-reader';
import { FRONTEND_TYPES } from '../../src/protocol/messages';
import { md5Response, md5Stored } from '../../src/protocol/md5';
import { ScramClient } from '../../src/protocol/scram';
import { APP_PASS, APP_USER, client } from './db';
import type { Proxy } from './proxy';
import { requestPacket, startupPacket } from './wire';

/**
 * One thing the fuzzed client does. `login` answers the authentication request it got last — md5,
 * SCRAM's first or final message — rightly or with garbage / a wrong proof.
 */
export type Step =
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

const LOGIN: Step[] = [
  { kind: 'bytes', data: startupPacket({ user: APP_USER, database: 'postgres' }) },
  { kind: 'login', right: true },
  { kind: 'login', right: true },
];

export const steps: fc.Arbitrary<Step> = fc.oneof(
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

/**
 * A generated session: most start with a right login (startup, then up to two answers: md5, or
 * SCRAM's two messages) so the steps after it reach a logged-in session; the rest start anywhere.
 */
export const scripts: fc.Arbitrary<Step[]> = fc
  .tuple(
    fc.oneof({ weight: 3, arbitrary: fc.constant(LOGIN) }, { weight: 1, arbitrary: fc.constant([] as Step[]) }),
    fc.array(steps, { minLength: 1, maxLength: 12 }),
  )
  .map(([prefix, rest]) => [...prefix, ...rest]);

export const DEADLINE_MS = 4000;

/** Runs one generated session; resolves with whether it logged in, rejects on a property violation. */
export function play(port: number, script: Step[]): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const frames = new FrameReader(1 << 30);
    let salt: Buffer | null = null;
    let loggedIn = false;
    let sasl = false; // AuthenticationSASL came: SCRAM's first message is due
    let serverFirst: string | null = null; // AuthenticationSASLContinue came: the final message is due
    const scram = new ScramClient(APP_PASS);
    let typed = false; // the proxy has answered the startup: replies are typed messages from here on
    let lastType = 0;
    let closed = false;
    let failed: string | null = null;
    const fail = (why: string) => {
      failed ??= why;
    };
    // What the client sent since its last authentication answer: once logged in, the proxy may
    // wait for the rest of a frame this stream promised (as PostgreSQL would), and only then.
    const sent: Buffer[] = [];
    const send = (b: Buffer | Uint8Array) => {
      sent.push(Buffer.from(b));
      s.write(b);
    };
    // Waits end on the proxy's next bytes or close (no polling: the long run plays many at once).
    const waiters = new Set<() => void>();
    const wakeAll = () => {
      for (const w of [...waiters]) w();
    };
    const until = (cond: () => boolean, ms: number) =>
      new Promise<void>((resolve) => {
        if (cond()) return resolve();
        const finish = () => {
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const check = () => {
          if (cond()) finish();
        };
        const timer = setTimeout(finish, ms);
        waiters.add(check);
      });
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
          const code = body.length >= 4 ? body.readInt32BE(0) : -1;
          if (code === 5) salt = Buffer.from(body.subarray(4, 8));
          if (code === 10) sasl = true;
          if (code === 11) serverFirst = body.toString('utf8', 4);
          if (code === 0) loggedIn = true;
        }
      }
      if (frames.error) fail(`bad framing from the proxy: ${frames.error}`);
      frames.detach();
      wakeAll();
    });
    s.on('close', () => {
      closed = true;
      wakeAll();
    });
    const pendingAuth = () => salt !== null || sasl || serverFirst !== null;
    /** The answer to the pending authentication request; with none, nothing (right) or garbage. */
    const authAnswer = (right: boolean): Buffer | null => {
      if (salt) {
        const md5 = salt;
        salt = null;
        return serialize.password(right ? md5Response(md5Stored(APP_PASS, APP_USER), md5) : 'md5deadbeef');
      }
      if (serverFirst !== null) {
        const first = serverFirst;
        serverFirst = null;
        let final = 'c=biws,r=not-the-nonce,p=AAAA';
        try {
          if (right) final = scram.final(first);
        } catch {
          // a server-first message the client cannot use: the garbage answer goes
        }
        return serialize.sendSCRAMClientFinalMessage(final);
      }
      if (sasl) {
        sasl = false;
        return serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', right ? scram.first() : 'n,,n=,r=');
      }
      return right ? null : serialize.password('md5deadbeef');
    };
    s.on('connect', async () => {
      for (const st of script) {
        if (closed) break;
        if (st.kind === 'login') {
          // Answer the request the proxy sends next (or has sent): wait for it a moment (coverage
          // only: an answer that comes too late is a wrong login, still a valid case).
          await until(() => closed || pendingAuth() || loggedIn, 300);
          // An answer to a pending request starts the post-login stream afresh; garbage sent with no
          // request pending is part of that stream (seed 20261205, path 1754: it was not).
          const pending = pendingAuth();
          const answer = authAnswer(st.right);
          if (answer && pending) {
            s.write(answer);
            sent.length = 0;
          } else if (answer) send(answer);
        } else if (st.kind === 'frame') {
          const h = Buffer.alloc(5);
          h[0] = st.type;
          h.writeInt32BE(st.lie === 1 << 30 ? st.lie : 4 + st.body.length + st.lie, 1);
          send(Buffer.concat([h, st.body]));
        } else send(st.data);
        await new Promise((r) => setTimeout(r, 2));
      }
      // The client stops here. Within the deadline the proxy closes or the session sits at
      // ReadyForQuery; if it does neither it may be waiting for the rest of a frame the client
      // promised, so the client then sends Sync + a query: now it must answer or close.
      const done = () => closed || lastType === 0x5a;
      const wait = (ms: number) => until(() => done() || failed !== null, ms);
      await wait(DEADLINE_MS / 4);
      // A frame the client left open swallows the Sync + query (seed 20261264, path 1500: they
      // completed a CopyData after a failed Bind, so PostgreSQL too still waits for a Sync).
      let leftOpen = false;
      if (!done() && !failed) {
        leftOpen = promisesMore(Buffer.concat(sent));
        lastType = 0;
        send(Buffer.concat([serialize.sync(), serialize.query('SELECT 1')]));
        await wait(DEADLINE_MS);
      }
      s.destroy();
      if (failed) return reject(new Error(failed));
      const waiting = loggedIn && (leftOpen || promisesMore(Buffer.concat(sent)));
      if (!done() && !waiting) return reject(new Error(`stalled: no reply and no close within ${DEADLINE_MS} ms`));
      resolve(loggedIn);
    });
  });
}

/**
 * Whether a logged-in client's byte stream ends inside a frame PostgreSQL would wait for: a valid
 * type whose length is within the type's limit but longer than what follows (or a partial header).
 * A frame PostgreSQL refuses at its type or length means the proxy must not be waiting.
 */
function promisesMore(buf: Buffer): boolean {
  for (let p = 0; p < buf.length; ) {
    const limit = FRONTEND_TYPES[buf[p]];
    if (limit === 0) return false;
    if (buf.length - p < 5) return true;
    const len = buf.readInt32BE(p + 1);
    if (len < 4 || len > limit) return false;
    if (p + 1 + len > buf.length) return true;
    p += 1 + len;
  }
  return false;
}

/** A probe of a proxy: what a fresh client sees; the first call records it, later ones must see the same. */
export function prober(port: number): () => Promise<void> {
  let baseline: unknown = null;
  return () =>
    probeOnce(port, (seen) => {
      baseline ??= seen;
      assert.deepEqual(seen, baseline, 'no setting or SQL PREPARE leaked from a fuzzed client');
    });
}

async function probeOnce(port: number, check: (seen: unknown) => void): Promise<void> {
  const c = client(port);
  await c.connect();
  try {
    const r = await c.query(
      "SELECT current_setting('statement_timeout') AS st, current_setting('search_path') AS sp, " +
        "current_setting('application_name') AS app, " +
        '(SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql) + ' +
        '(SELECT count(*) FROM pg_prepared_statements WHERE from_sql) * 1000 AS sql_prepared',
    );
    check({ ...r.rows[0], sql_prepared: Number(r.rows[0].sql_prepared) >= 1000 });
  } finally {
    await c.end();
  }
}

/** Server connections of the app role not idle (what a fuzzed client may have left running). */
export function runningOnServer(cluster: PgCluster): number {
  return Number(
    cluster
      .psql(
        cluster.primary,
        `SELECT count(*) FROM pg_stat_activity WHERE usename = '${APP_USER}' AND state NOT IN ('idle')`,
      )
      .trim(),
  );
}

export interface FuzzRun {
  /** Proxies to fuzz (each case picks one): md5 and SCRAM logins. */
  proxies: Proxy[];
  runs: number;
  seed: number;
  /** Cases played at once, each lane its own seeded fc.assert (seed + lane). */
  lanes: number;
  /** Replays one failing case: FUZZ_PATH as fast-check printed it (lane given by FUZZ_LANE). */
  path?: string;
  /** Called every `every` cases with the count so far. */
  progress?: (done: number) => void;
  every?: number;
}

/**
 * Plays `runs` generated sessions; throws on the first property violation (seed, lane and script
 * named). Returns the cases played and, per proxy, how many of them logged in.
 */
export async function fuzz(r: FuzzRun): Promise<{ cases: number; logins: number[] }> {
  const logins = r.proxies.map(() => 0);
  const probes = r.proxies.map((p) => prober(p.port));
  for (const probe of probes) await probe();
  let n = 0;
  const every = r.every ?? 250;
  const lane = async (i: number) => {
    const runs = Math.floor(r.runs / r.lanes) + (i < r.runs % r.lanes ? 1 : 0);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: r.proxies.length - 1 }), scripts, async (which, script) => {
        const proxy = r.proxies[which];
        const loggedIn = await play(proxy.port, script).catch((e: Error) => {
          const shown = script.map((st) =>
            'data' in st ? { ...st, data: Buffer.from(st.data).toString('latin1') } : st,
          );
          throw new Error(`${e.message}\nproxy ${which}, lane ${i}\nscript: ${JSON.stringify(shown)}`);
        });
        if (loggedIn) logins[which]++;
        for (const p of r.proxies) assert.equal(p.proc.exitCode, null, `openproxy exited: ${p.output().slice(-2000)}`);
        if (++n % every === 0) {
          for (const probe of probes) await probe();
          r.progress?.(n);
        }
      }),
      { numRuns: runs, seed: r.seed + i, endOnFailure: true, path: r.path, includeErrorInReport: true },
    );
  };
  await Promise.all(Array.from({ length: r.lanes }, (_, i) => lane(i)));
  for (const probe of probes) await probe();
  return { cases: n, logins };
}
