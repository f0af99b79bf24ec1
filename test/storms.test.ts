// Storms and slow clients against a real PostgreSQL: a thousand logins stalled at every step of the
// handshake end at client_login_timeout while other clients are served; 20,000 connections past
// max_client_conn get PostgreSQL's "too many clients" answer while the established ones keep
// working; a client that stops reading a huge result holds neither openproxy's memory nor its
// worker (backpressure down to the server).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import type pg from 'pg';
import { serialize } from 'pg-protocol';
import { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, appBackends, client, createAppRole, sleep, until } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';
import { requestPacket, startupPacket, WireClient } from './helpers/wire';

let cluster: PgCluster;
before(async () => {
  cluster = await PgCluster.start();
  createAppRole(cluster);
});
after(() => cluster?.stop());

const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

/** Runs `SELECT 1` on `c` every few ms until stopped; counts successes and failures. */
function keepQuerying(c: pg.Client): { stop(): Promise<{ ok: number; failed: string[] }> } {
  let running = true;
  let ok = 0;
  const failed: string[] = [];
  const loop = (async () => {
    while (running) {
      try {
        await c.query('SELECT 1');
        ok++;
      } catch (e) {
        failed.push((e as Error).message);
      }
      await sleep(5);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { ok, failed };
    },
  };
}

interface Stalled {
  step: string;
  sock: net.Socket;
  got: Buffer[];
  closed: Promise<void>;
}

/** A connection that goes through `send` (each part after the proxy's reply to the previous) and then stalls. */
async function stall(port: number, step: string, parts: Buffer[]): Promise<Stalled> {
  const sock = net.connect(port, '127.0.0.1');
  const got: Buffer[] = [];
  let wake: (() => void) | null = null;
  sock.on('data', (b) => {
    got.push(b);
    wake?.();
  });
  sock.on('error', () => undefined);
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  await new Promise<void>((r, j) => sock.once('connect', r).once('error', j));
  for (const part of parts) {
    const before = got.length;
    sock.write(part);
    const t0 = Date.now();
    while (got.length === before) {
      if (Date.now() - t0 > 10000) throw new Error(`no reply at step ${step}`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 50);
      });
    }
  }
  return { step, sock, got, closed };
}

describe('a thousand stalled logins', () => {
  let proxy: Proxy;
  before(async () => {
    proxy = await startProxy((port) =>
      configFor(cluster, port, 'auth_type = "scram-sha-256"\nclient_login_timeout = 3000\nworker_threads = 2'),
    );
  });
  after(() => proxy?.stop());

  test('each step of the handshake stalled 200 times: all closed at the deadline, others served', async () => {
    const pid = proxy.proc.pid!;
    const warm = client(proxy.port);
    await warm.connect();
    await warm.query('SELECT 1');
    await warm.end();
    await sleep(200);
    const fdsBefore = fds(pid) - appBackends(cluster, cluster.primary);
    const startup = startupPacket({ user: APP_USER, database: 'postgres' });
    const clientFirst = serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', 'n,,n=,r=abcdefghijklmnopqrstuvwx');
    const steps: [string, Buffer[], Buffer | null][] = [
      ['nothing sent', [], null],
      ['half a length', [], Buffer.from([0, 0])],
      ['after SSLRequest', [requestPacket(80877103)], null],
      ['after the startup packet', [startup], null],
      ['after the SCRAM client-first message', [startup, clientFirst], null],
    ];
    const regular = client(proxy.port);
    await regular.connect();
    const load = keepQuerying(regular);
    const t0 = Date.now();
    const stalled: Stalled[] = [];
    for (const [step, parts, tail] of steps) {
      for (let i = 0; i < 200; i += 20) {
        const batch = await Promise.all(Array.from({ length: 20 }, () => stall(proxy.port, step, parts)));
        if (tail) for (const s of batch) s.sock.write(tail);
        stalled.push(...batch);
      }
    }
    assert.equal(stalled.length, 1000);
    const deadline = sleep(3000 + 5000 + (Date.now() - t0)).then(() => 'deadline');
    const ended = await Promise.race([Promise.all(stalled.map((s) => s.closed)), deadline]);
    assert.notEqual(ended, 'deadline', `${stalled.filter((s) => !s.sock.destroyed).length} stalled clients still open`);
    // Where the protocol allows an answer (the server has spoken), it is 08P01 naming the key.
    for (const s of stalled.filter((x) => x.step.startsWith('after'))) {
      const all = Buffer.concat(s.got).toString('latin1');
      assert.match(all, /C08P01\0Mclient_login_timeout \(3000 ms\)/, `${s.step}: ${JSON.stringify(all.slice(-120))}`);
    }
    const { ok, failed } = await load.stop();
    assert.deepEqual(failed, [], 'the regular client never failed');
    assert.ok(ok > 20, `the regular client ran ${ok} queries during the storm`);
    await regular.end();
    // Server connections may have been opened in the other worker meanwhile: count them out.
    const clientFds = () => fds(pid) - appBackends(cluster, cluster.primary);
    // A leak would show as hundreds; the runtime may open a pipe or two lazily under load.
    await until(() => clientFds() <= fdsBefore + 3, 5000, `openproxy's fds back to ${fdsBefore} (now ${clientFds()})`);
  });
});

describe('max_client_conn', () => {
  let proxy: Proxy;
  before(async () => {
    proxy = await startProxy((port) =>
      configFor(cluster, port, 'max_client_conn = 20\nworker_threads = 2', [{ pool_mode: 'transaction' }]),
    );
  });
  after(() => proxy?.stop());

  test('20,000 connections past the limit get 53300; established clients keep working', async () => {
    const admin = client(proxy.port, { user: 'admin', password: 'adminpass', database: 'openproxy' });
    await admin.connect();
    const established = await Promise.all(
      Array.from({ length: 19 }, async () => {
        const c = client(proxy.port);
        await c.connect();
        return c;
      }),
    );
    const loads = established.slice(0, 4).map(keepQuerying);
    const answers = new Map<string, number>();
    let next = 0;
    const attempt = () =>
      new Promise<void>((resolve) => {
        const s = net.connect(proxy.port, '127.0.0.1');
        const got: Buffer[] = [];
        const t = setTimeout(() => s.destroy(), 10000);
        s.on('connect', () => s.write(startupPacket({ user: APP_USER, database: 'postgres' })));
        s.on('data', (b) => got.push(b));
        s.on('error', () => undefined);
        s.on('close', () => {
          clearTimeout(t);
          const text = Buffer.concat(got).toString('latin1');
          const key = /C53300\0Mno more connections allowed \(max_client_conn = 20\)/.test(text) ? '53300' : text;
          answers.set(key, (answers.get(key) ?? 0) + 1);
          resolve();
        });
      });
    const worker = async () => {
      while (next++ < 20000) await attempt();
    };
    await Promise.all(Array.from({ length: 100 }, worker));
    assert.deepEqual([...answers], [['53300', 20000]]);
    // libpq (psql) reports the refusal; its default sslmode sends an SSLRequest first.
    const r = spawnSync(
      'psql',
      ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', APP_USER, '-d', 'postgres', '-c', 'SELECT 1'],
      { env: { ...process.env, PGPASSWORD: APP_PASS, PGSSLMODE: 'prefer', PGCONNECT_TIMEOUT: '10' }, encoding: 'utf8' },
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /no more connections allowed \(max_client_conn = 20\)/);
    const results = await Promise.all(loads.map((l) => l.stop()));
    assert.deepEqual(
      results.flatMap((x) => x.failed),
      [],
    );
    const lists = await admin.query('SHOW LISTS');
    const refused = lists.rows.find((row) => row.list === 'refused_clients');
    assert.equal(Number(refused.items), 20001);
    // A slot frees when a client leaves.
    await established[18].end();
    await until(
      async () => {
        const c = client(proxy.port);
        try {
          await c.connect();
          await c.end();
          return true;
        } catch {
          return false;
        }
      },
      5000,
      'a new client to get the freed place',
    );
    await Promise.all(established.slice(0, 18).map((c) => c.end()));
    await admin.end();
  });
});

describe('a client that stops reading', () => {
  let proxy: Proxy;
  before(async () => {
    proxy = await startProxy((port) =>
      configFor(cluster, port, 'worker_threads = 1', [{ pool_mode: 'transaction', pool_size: 4 }]),
    );
  });
  after(() => proxy?.stop());

  test('a 2 GB result to a paused client: bounded memory, the worker serves others, the backend ends', async () => {
    const pid = proxy.proc.pid!;
    const slow = await WireClient.connect(proxy.port);
    slow.send(serialize.query("SELECT repeat('x', 1000) FROM generate_series(1, 2000000) /* slow reader */"));
    for (let i = 0; i < 1000; i++) await slow.next(10000);
    slow.pause();
    const base = rssMb(pid);
    const other = client(proxy.port);
    await other.connect();
    for (let i = 0; i < 50; i++) assert.deepEqual((await other.query('SELECT 1 AS x')).rows, [{ x: 1 }]);
    await sleep(1500);
    const grew = rssMb(pid) - base;
    assert.ok(grew < 40, `openproxy grew ${grew.toFixed(0)} MB while its client was not reading`);
    const running = () =>
      cluster.psql(
        cluster.primary,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%slow reader%' AND pid <> pg_backend_pid()",
      );
    assert.equal(running(), '1', 'the server is blocked on the paused client, not finished');
    await slow.close();
    await until(() => running() === '0', 10000, 'the slow reader’s backend to end');
    assert.deepEqual((await other.query('SELECT 2 AS x')).rows, [{ x: 2 }]);
    await other.end();
  });
});
