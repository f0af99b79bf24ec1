// A server that breaks the protocol (testing/bad-server.ts) costs one connection, never the
// proxy: the client gets a clear error (or, mid-message, a close) within a deadline, the broken
// server connection is discarded, the next client is served, and openproxy's memory stays bounded
// while huge or endless answers stream through — in session and transaction mode.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { serialize } from 'pg-protocol';
import { type BadServer, MISBEHAVIOUR as M, startBadServer } from '../testing/bad-server';
import { APP_PASS, APP_USER } from './helpers/db';
import { type Proxy, startProxy } from './helpers/proxy';
import { codesOf, WireClient } from './helpers/wire';

const QUERY_TIMEOUT = 4000;

function config(port: number, serverPort: number, mode: string): string {
  return `[general]
host = "127.0.0.1"
port = ${port}
worker_threads = 1
admin_username = "admin"
admin_password = "adminpass"
prometheus_exporter_port = 0
query_timeout = ${QUERY_TIMEOUT}
healthcheck_delay = 0

[pools.postgres]
pool_mode = "${mode}"

[pools.postgres.users.0]
username = "${APP_USER}"
password = "${APP_PASS}"
pool_size = 4

[pools.postgres.shards.0]
database = "postgres"
servers = [["127.0.0.1", ${serverPort}, "primary"]]
`;
}

/** Resident and peak resident memory of a process, in MB. */
function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)![1]);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Messages until the connection closes (or ms pass): the codes and any error fields. */
async function drain(
  c: WireClient,
  ms: number,
): Promise<{ codes: string; errors: { code?: string; message: string }[] }> {
  const got = [];
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      got.push(await c.next(Math.max(1, deadline - Date.now())));
    } catch (e) {
      if (/connection closed/.test((e as Error).message)) break;
      throw new Error(`${(e as Error).message} (got ${codesOf(got)})`);
    }
  }
  const errors = got.filter((m) => m.name === 'error') as unknown as { code?: string; message: string }[];
  return { codes: codesOf(got), errors };
}

for (const mode of ['session', 'transaction']) {
  describe(`a misbehaving server, ${mode} mode`, () => {
    let bad: BadServer;
    let proxy: Proxy;
    before(async () => {
      bad = await startBadServer();
      proxy = await startProxy((port) => config(port, bad.port, mode));
    });
    after(async () => {
      await proxy?.stop();
      await bad?.close();
    });

    /** A fresh client runs `select 1` through the proxy: the pool still serves. */
    async function stillServes(): Promise<void> {
      const c = await WireClient.connect(proxy.port);
      c.send(serialize.query('select 1'));
      await c.expect('TDCZ');
      await c.close();
    }

    /** `sql` breaks the connection: the client sees `codes` and then a close, the server conn is dropped. */
    async function breaks(sql: string, codes: RegExp, error: RegExp | null): Promise<void> {
      const closedBefore = bad.closed();
      const c = await WireClient.connect(proxy.port);
      c.send(serialize.query(sql));
      const r = await drain(c, QUERY_TIMEOUT + 5000);
      assert.match(r.codes, codes);
      if (error) {
        assert.equal(r.errors.length, 1, JSON.stringify(r.errors));
        assert.equal(r.errors[0].code, '08006');
        assert.match(r.errors[0].message, error);
      }
      await until('the broken server connection to be closed', () => bad.closed() > closedBefore);
      await stillServes();
    }

    test('a bad message length: 08006 naming it, connection discarded', () =>
      breaks(M.badLength, /^TE$/, /invalid message length 2/));

    test('an unknown message type: 08006 naming it, connection discarded', () =>
      breaks(M.badType, /^TE$/, /invalid message type 0x79/));

    test('a stall at a message boundary: query_timeout ends it with 08006', () =>
      breaks(M.stallAtBoundary, /^TE$/, /query_timeout \(4000 ms\)/));

    test('a stall mid-message: query_timeout closes the client (no error fits mid-message)', () =>
      breaks(M.stallMidMessage, /^T$/, null));

    test('an ErrorResponse between DataRows is passed on and the connection stays in use', async () => {
      const c = await WireClient.connect(proxy.port);
      const opened = bad.opened();
      c.send(serialize.query(M.errorMidRows));
      const ms = await c.expect('TDDEZ');
      assert.equal((ms[3] as unknown as { code: string }).code, '22012');
      c.send(serialize.query('select 1'));
      await c.expect('TDCZ');
      assert.equal(bad.opened(), opened, 'no new server connection was needed');
      await c.close();
    });

    test('a FATAL after ReadyForQuery: the answer arrives, the connection is not reused', async () => {
      const closedBefore = bad.closed();
      const c = await WireClient.connect(proxy.port);
      c.send(serialize.query(M.fatalAfterReady));
      await c.expect('TDCZ');
      await until('the dead server connection to be closed', () => bad.closed() > closedBefore);
      c.send(serialize.query('select 1'));
      if (mode === 'transaction') await c.expect('TDCZ');
      else {
        // Session mode: the client's own server went away; it gets the server's FATAL, then ours.
        const r = await drain(c, 5000);
        assert.deepEqual(
          r.errors.map((e) => e.code),
          ['57P01', '08006'],
          JSON.stringify(r),
        );
      }
      await c.close();
      await stillServes();
    });

    test('a huge ErrorResponse (8 MB) reaches the client whole; the connection stays in use', async () => {
      const c = await WireClient.connect(proxy.port);
      c.send(serialize.query(M.hugeError));
      const ms = await c.expect('EZ', 10000);
      assert.equal((ms[0] as unknown as { message: string }).message.length, 8 << 20);
      c.send(serialize.query('select 1'));
      await c.expect('TDCZ');
      await c.close();
    });

    test('a ParameterStatus storm passes through; memory bounded, connection retired', async () => {
      const closedBefore = bad.closed();
      const before = memory(proxy.proc.pid!);
      const c = await WireClient.connect(proxy.port);
      c.send(serialize.query(M.paramStorm));
      const got = [];
      for (;;) {
        const m = await c.next(10000);
        got.push(m.name);
        if (m.name === 'readyForQuery') break;
      }
      assert.equal(got.filter((n) => n === 'parameterStatus').length, 100_000);
      await c.close();
      await until('the storming server connection to be retired', () => bad.closed() > closedBefore);
      const grew = memory(proxy.proc.pid!).peak - before.rss;
      assert.ok(grew < 60, `openproxy grew ${grew.toFixed(0)} MB during the storm`);
      await stillServes();
    });

    test('a 64 MB NoticeResponse streams through without being buffered whole', async () => {
      const before = memory(proxy.proc.pid!);
      const c = await WireClient.connect(proxy.port);
      c.send(serialize.query(M.hugeNotice));
      await c.expect('NCZ', 20000);
      const grew = memory(proxy.proc.pid!).peak - before.peak;
      assert.ok(grew < 48, `openproxy's peak memory grew ${grew.toFixed(0)} MB for a 64 MB notice`);
      c.send(serialize.query('select 1'));
      await c.expect('TDCZ');
      await c.close();
    });

    test('an endless result to a client that stops reading: openproxy stops reading too', async () => {
      const closedBefore = bad.closed();
      const c = await WireClient.connect(proxy.port);
      c.send(serialize.query(M.endless));
      for (let i = 0; i < 2000; i++) await c.next(5000);
      c.pause();
      const paused = memory(proxy.proc.pid!).rss;
      await new Promise((r) => setTimeout(r, 1000));
      const grew = memory(proxy.proc.pid!).rss - paused;
      assert.ok(grew < 30, `openproxy grew ${grew.toFixed(0)} MB while its client was not reading`);
      await c.close();
      await until('the endless server connection to be closed', () => bad.closed() > closedBefore);
      await stillServes();
    });
  });
}
