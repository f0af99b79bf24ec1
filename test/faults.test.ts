// Network faults between openproxy and a real primary + replica (test/helpers/fault-relay.ts in
// front of each), under a steady load of routed reads and writes: latency and a bandwidth limit cost
// nothing but time; connections cut at message boundaries, mid-message or reset cost only the reads
// that were under way (a clear 08006, or a transparent retry), never a write on the healthy
// primary; cuts on the primary never lose an acknowledged write nor repeat one; a black-holed
// replica is detected (health check, connect and query timeouts) and banned while the primary's
// clients carry on.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, adminClient, client, createAppRole, sleep } from './helpers/db';
import { type Fault, type FaultRelay, startFaultRelay } from './helpers/fault-relay';
import { type Proxy, startProxy } from './helpers/proxy';

const CLIENTS = 6;
const BAN_MS = 4000;

let cluster: PgCluster;
let relayP: FaultRelay;
let relayR: FaultRelay;
let proxy: Proxy;
let nextId = 1;

before(async () => {
  cluster = await PgCluster.start({ replicas: 1 });
  createAppRole(cluster);
  cluster.psql(
    cluster.primary,
    `CREATE TABLE fault_writes(id bigint PRIMARY KEY); GRANT ALL ON fault_writes TO ${APP_USER}`,
  );
  relayP = await startFaultRelay(cluster.primary.port);
  relayR = await startFaultRelay(cluster.nodes[1].port);
  proxy = await startProxy(
    (port) => `[general]
host = "127.0.0.1"
port = ${port}
worker_threads = 2
admin_username = "admin"
admin_password = "adminpass"
prometheus_exporter_port = 0
healthcheck_timeout = 1000
healthcheck_delay = 500
connect_timeout = 2000
query_timeout = 3000
ban_time = ${BAN_MS}

[pools.postgres]
pool_mode = "transaction"
query_parser_enabled = true
query_parser_read_write_splitting = true

[pools.postgres.users.0]
username = "${APP_USER}"
password = "${APP_PASS}"
pool_size = 8

[pools.postgres.shards.0]
database = "postgres"
servers = [["127.0.0.1", ${relayP.port}, "primary"], ["127.0.0.1", ${relayR.port}, "replica"]]
`,
  );
});
after(async () => {
  await proxy?.stop();
  await relayP?.close();
  await relayR?.close();
  cluster?.stop();
});

interface Tally {
  ok: number;
  failed: Map<string, number>;
}
interface Outcome {
  reads: Tally;
  writes: Tally;
  okIds: number[];
  failedIds: number[];
}

const tally = (): Tally => ({ ok: 0, failed: new Map() });
const failures = (t: Tally) => [...t.failed.values()].reduce((a, b) => a + b, 0);
const codes = (t: Tally) => [...t.failed.keys()];

/** CLIENTS clients for `ms`: two reads (routed to the replica) to one write (the primary). */
async function load(ms: number, readSql = 'SELECT count(*) FROM pg_class'): Promise<Outcome> {
  const out: Outcome = { reads: tally(), writes: tally(), okIds: [], failedIds: [] };
  const end = Date.now() + ms;
  const fail = (t: Tally, e: unknown) => {
    const err = e as { code?: string; message: string };
    const key = `${err.code ?? 'no code'} ${err.message.slice(0, 90)}`;
    t.failed.set(key, (t.failed.get(key) ?? 0) + 1);
  };
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      let c: pg.Client | null = null;
      for (let n = i; Date.now() < end; n++) {
        const write = n % 3 === 0;
        const id = write ? nextId++ : 0;
        try {
          if (!c) {
            c = client(proxy.port);
            c.on('error', () => undefined);
            await c.connect();
          }
          if (write) {
            await c.query('INSERT INTO fault_writes VALUES ($1)', [id]);
            out.writes.ok++;
            out.okIds.push(id);
          } else {
            await c.query(readSql);
            out.reads.ok++;
          }
        } catch (e) {
          fail(write ? out.writes : out.reads, e);
          if (write) out.failedIds.push(id);
          await c?.end().catch(() => undefined);
          c = null;
        }
      }
      await c?.end().catch(() => undefined);
    }),
  );
  return out;
}

/** Runs the load under `fault` on one relay, then clears it and waits out any ban. */
async function under(relay: FaultRelay, fault: Fault, ms = 4000, readSql?: string): Promise<Outcome> {
  relay.set(fault);
  try {
    return await load(ms, readSql);
  } finally {
    relay.set({ kind: 'none' });
    await sleep(BAN_MS + 500);
  }
}

/** Every acknowledged write is stored once; no write was applied twice (it would fail 23505). */
function writesIntact(o: Outcome): void {
  const stored = new Set(
    cluster
      .psql(cluster.primary, "SELECT string_agg(id::text, ',') FROM fault_writes")
      .split(',')
      .filter(Boolean)
      .map(Number),
  );
  const lost = o.okIds.filter((id) => !stored.has(id));
  assert.deepEqual(lost, [], 'acknowledged writes missing');
  assert.ok(!codes(o.writes).some((k) => k.startsWith('23505')), 'a write was repeated');
}

/**
 * Read failures, if any, are clear: 08006, or — when the server's answer broke off mid-message, where
 * no ErrorResponse can be put — the connection closed; never a wrong answer or a hang.
 */
function readsClear(o: Outcome, midMessage: boolean): void {
  const ok = midMessage ? /^(08006 |no code Connection terminated unexpectedly)/ : /^08006 /;
  for (const k of codes(o.reads)) assert.match(k, ok, `read failure ${k}`);
  assert.ok(o.reads.ok > 0, 'reads kept being served');
}

describe('faults between openproxy and PostgreSQL, under load', () => {
  test('no fault, latency 20 ms both ways, 100 kB/s to the replica: nothing fails', async () => {
    for (const [relays, fault, sql] of [
      [[relayP], { kind: 'none' }, undefined],
      [[relayP, relayR], { kind: 'latency', ms: 20 }, undefined],
      [[relayR], { kind: 'bandwidth', bytesPerSecond: 100_000 }, "SELECT repeat('x', 5000)"],
    ] as [FaultRelay[], Fault, string | undefined][]) {
      for (const r of relays) r.set(fault);
      const o = await load(3000, sql);
      for (const r of relays) r.set({ kind: 'none' });
      const what = `${fault.kind}: ${JSON.stringify([...o.reads.failed, ...o.writes.failed])}`;
      assert.equal(failures(o.reads) + failures(o.writes), 0, what);
      assert.ok(o.reads.ok > 10 && o.writes.ok > 5, `${fault.kind}: ${o.reads.ok} reads, ${o.writes.ok} writes`);
      writesIntact(o);
    }
  });

  for (const fault of [
    { kind: 'cut', at: 'boundary', every: 3 },
    { kind: 'cut', at: 'mid', every: 3 },
    { kind: 'reset' },
  ] as Fault[]) {
    test(`replica connections ${JSON.stringify(fault)}: reads fail clearly or retry, writes untouched`, async () => {
      const broken = relayR.broken();
      const o = await under(relayR, fault);
      assert.ok(relayR.broken() > broken, 'the fault happened');
      assert.equal(failures(o.writes), 0, JSON.stringify([...o.writes.failed]));
      readsClear(o, fault.kind === 'cut' && fault.at === 'mid');
      writesIntact(o);
    });
  }

  test('primary connections cut at boundaries and mid-message: no acknowledged write lost or repeated', async () => {
    for (const at of ['boundary', 'mid'] as const) {
      const o = await under(relayP, { kind: 'cut', at, every: 6 });
      assert.ok(o.writes.ok > 0, 'writes went through between cuts');
      const clear = at === 'mid' ? /^(08006 |no code Connection terminated unexpectedly)/ : /^08006 /;
      for (const k of codes(o.writes)) assert.match(k, clear, `write failure ${k}`);
      writesIntact(o);
      // Reads are balanced over the primary too: those cut there fail as clearly.
      readsClear(o, at === 'mid');
    }
  });

  test('a black-holed replica is banned; its stuck reads end by query_timeout; the primary carries on', async () => {
    const admin = adminClient(proxy.port);
    await admin.connect();
    try {
      relayR.set({ kind: 'blackhole' });
      let banned = false;
      const watch = (async () => {
        const t0 = Date.now();
        while (!banned && Date.now() - t0 < 8000) {
          const bans = await admin.query('SHOW BANS');
          banned = bans.rows.some((r) => Number(r.port) === relayR.port);
          await sleep(200);
        }
      })();
      const o = await load(8000);
      await watch;
      relayR.set({ kind: 'none' });
      assert.ok(
        banned,
        `the replica was banned: ${proxy
          .output()
          .split('\n')
          .filter((l) => /banned|query_timeout|health|timed out/.test(l))
          .slice(-15)
          .join('\n')}`,
      );
      assert.equal(failures(o.writes), 0, JSON.stringify([...o.writes.failed]));
      readsClear(o, false);
      // Reads stuck when the hole opened fail once each; after the ban ends (BAN_MS) they may once more.
      assert.ok(failures(o.reads) <= CLIENTS * 3, `read failures: ${JSON.stringify([...o.reads.failed])}`);
      writesIntact(o);
    } finally {
      await admin.end();
      await sleep(BAN_MS + 500);
    }
  });
});
