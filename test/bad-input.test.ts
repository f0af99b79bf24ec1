// Hostile and broken clients cost nothing but their own connection: each gets a proper
// ErrorResponse where the protocol allows one, and a normal client is served right after.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { PgCluster } from '../testing/pg-cluster';
import { client, createAppRole, query, socketOf } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';
import { startupPacket } from './helpers/wire';

let cluster: PgCluster;
let proxy: Proxy;

before(async () => {
  cluster = await PgCluster.start();
  createAppRole(cluster);
  proxy = await startProxy((port) => configFor(cluster, port));
});
after(async () => {
  await proxy?.stop();
  cluster?.stop();
});

/** Sends bytes, collects everything until the proxy closes (or ms pass). */
function exchange(
  chunks: Buffer[],
  ms = 3000,
  closeAfterSend = false,
): Promise<{ data: Buffer; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(proxy.port, '127.0.0.1');
    const got: Buffer[] = [];
    let closedByServer = false;
    const t = setTimeout(() => s.destroy(), ms);
    s.on('data', (b) => got.push(b));
    s.on('end', () => (closedByServer = true));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(t);
      resolve({ data: Buffer.concat(got), closedByServer });
    });
    s.on('connect', async () => {
      for (const c of chunks) {
        s.write(c);
        await new Promise((r) => setTimeout(r, 20));
      }
      if (closeAfterSend) s.destroy();
    });
  });
}

function sqlstate(data: Buffer): string | null {
  if (data[0] !== 0x45) return null;
  const i = data.indexOf(Buffer.from('\0C'));
  return data.toString('latin1', i + 2, i + 7);
}

const startup = startupPacket;

const lengthPrefix = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
};

async function stillServes(): Promise<void> {
  assert.deepEqual(await query(proxy.port, 'SELECT 1 AS x'), [{ x: 1 }]);
}

test('garbage bytes: protocol violation, connection closed', async () => {
  const r = await exchange([Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]);
  assert.equal(sqlstate(r.data), '08P01');
  assert.ok(r.closedByServer);
  await stillServes();
});

test('startup length below 8 or above 10000: 08P01', async () => {
  for (const n of [0, 4, 7, 10001, 0x7fffffff, -1]) {
    const r = await exchange([lengthPrefix(n)]);
    assert.equal(sqlstate(r.data), '08P01', `length ${n}`);
  }
  await stillServes();
});

test('truncated startup packet and a client that leaves mid-handshake cost nothing', async () => {
  const pkt = startup({ user: 'app', database: 'postgres' });
  await exchange([pkt.subarray(0, 10)], 300, true);
  await exchange([pkt], 300, true); // leaves while the proxy waits for the password
  await stillServes();
});

test('unsupported protocol version: 0A000', async () => {
  const r = await exchange([startup({ user: 'app' }, 2 << 16)]);
  assert.equal(sqlstate(r.data), '0A000');
});

test('no user in the startup packet: 28000', async () => {
  const r = await exchange([startup({ database: 'postgres' })]);
  assert.equal(sqlstate(r.data), '28000');
});

test('SSLRequest and GSSENCRequest without TLS configured are answered N and startup continues', async () => {
  const ssl = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  const gss = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
  const r = await exchange([ssl, gss, startup({ user: 'app', database: 'postgres' })], 500);
  assert.equal(r.data.toString('latin1', 0, 2), 'NN');
  assert.equal(r.data[2], 0x52, 'then an authentication request');
});

test('a non-password message during authentication: 08P01', async () => {
  const q = Buffer.concat([Buffer.from('Q'), lengthPrefix(13), Buffer.from('select 1\0')]);
  const r = await exchange([startup({ user: 'app', database: 'postgres' }), q]);
  const err = r.data.subarray(r.data.indexOf(0x45));
  assert.equal(sqlstate(err), '08P01');
});

test('a hostile message length after login closes only that client', async () => {
  // Log in with a real driver, then poison its socket with a 2 GB message header.
  const pg = await import('pg');
  const cl = new pg.Client({
    host: '127.0.0.1',
    port: proxy.port,
    user: 'app',
    password: 'app-secret',
    database: 'postgres',
  });
  cl.on('error', () => undefined);
  await cl.connect();
  const sock = socketOf(cl);
  const closed = new Promise<Buffer>((resolve) => {
    const got: Buffer[] = [];
    sock.on('data', (b: Buffer) => got.push(b));
    sock.on('close', () => resolve(Buffer.concat(got)));
  });
  sock.write(Buffer.concat([Buffer.from('Q'), lengthPrefix(0x7ffffff0)]));
  const data = await closed;
  assert.equal(sqlstate(data.subarray(data.indexOf(0x45))), '08P01');
  await stillServes();
});

test('an unknown pool answers 3D000 after login attempt, a cancel with a bogus key is ignored', async () => {
  const r = await exchange([startup({ user: 'app', database: 'nope' })]);
  assert.equal(sqlstate(r.data), '3D000');
  const cancel = Buffer.alloc(16);
  cancel.writeInt32BE(16, 0);
  cancel.writeInt32BE(80877102, 4);
  cancel.writeInt32BE(0x3fffff, 8);
  cancel.writeInt32BE(1, 12);
  const c = await exchange([cancel]);
  assert.equal(c.data.length, 0);
  assert.ok(c.closedByServer);
  await stillServes();
});

test('500 connections opened and dropped at once leave the proxy serving', async () => {
  await Promise.all(Array.from({ length: 500 }, (_, i) => exchange(i % 2 ? [Buffer.from([0, 0])] : [], 200, true)));
  await stillServes();
  assert.ok(proxy.proc.exitCode === null);
});

test('client_login_timeout: a client stalled at any step of the login gets 08P01 naming it', async () => {
  const short = await startProxy((port) => configFor(cluster, port, 'client_login_timeout = 600\n'));
  const stall = (chunks: Buffer[]) =>
    new Promise<{ data: Buffer; ms: number }>((resolve) => {
      const t0 = Date.now();
      const s = net.connect(short.port, '127.0.0.1');
      const got: Buffer[] = [];
      const guard = setTimeout(() => s.destroy(), 5000);
      s.on('data', (b) => got.push(b));
      s.on('error', () => undefined);
      s.on('close', () => {
        clearTimeout(guard);
        resolve({ data: Buffer.concat(got), ms: Date.now() - t0 });
      });
      s.on('connect', () => {
        for (const c of chunks) s.write(c);
      });
    });
  try {
    const pkt = startup({ user: 'app', database: 'postgres' });
    const steps: [string, Buffer[]][] = [
      ['nothing sent', []],
      ['half a startup packet', [pkt.subarray(0, 10)]],
      ['no password after the md5 request', [pkt]],
    ];
    const results = await Promise.all(steps.map(([, chunks]) => stall(chunks)));
    results.forEach((r, i) => {
      const what = steps[i][0];
      const error = r.data.subarray(r.data.indexOf(0x45));
      assert.equal(sqlstate(error), '08P01', `${what}: ${r.data.toString('latin1')}`);
      assert.match(error.toString('utf8'), /client_login_timeout \(600 ms\)/, what);
      assert.ok(r.ms >= 550 && r.ms < 3000, `${what}: closed after ${r.ms} ms`);
    });
    assert.deepEqual(await query(short.port, 'SELECT 1 AS x'), [{ x: 1 }], 'a normal login is unaffected');
  } finally {
    await short.stop();
  }
});

/** A logged-in client sends `bytes`: everything it gets until the proxy closes, and how long that took. */
async function afterLogin(bytes: Buffer): Promise<{ data: Buffer; ms: number }> {
  const c = client(proxy.port);
  await c.connect();
  const sock = socketOf(c);
  const got: Buffer[] = [];
  sock.removeAllListeners('data');
  sock.on('data', (b: Buffer) => got.push(b));
  c.on('error', () => undefined);
  const t0 = Date.now();
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  sock.write(bytes);
  await closed;
  return { data: Buffer.concat(got), ms: Date.now() - t0 };
}

test('an unknown message type after login: 08P01 at once, not after waiting for its length (fuzz seed 2)', async () => {
  // Found by test/fuzz-client.test.ts: a CancelRequest packet sent after login reads as type 0 with
  // a 2,052-byte length, and openproxy waited for that body. PostgreSQL refuses the type at once.
  const { data, ms } = await afterLogin(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]));
  assert.equal(sqlstate(data), '08P01', data.toString('latin1'));
  assert.match(data.toString('utf8'), /invalid frontend message type 0/);
  assert.ok(ms < 2000, `answered after ${ms} ms`);
  await stillServes();
});

test('a control message announcing a huge body: 08P01 at once, as PostgreSQL (fuzz seed 20261204)', async () => {
  // Found by the fuzzer once its sessions logged in: garbage starting with 'C' (Close) announced a
  // 246 MB body and openproxy waited for it. PostgreSQL allows Close, Describe, Execute, Flush,
  // Sync, Terminate, CopyDone and CopyFail at most 10,000 bytes and refuses a longer length at once.
  for (const type of 'CDEHScf') {
    const { data, ms } = await afterLogin(Buffer.from([type.charCodeAt(0), 0x0e, 0xaa, 0xae, 0xe6, 0x24, 0xe8]));
    assert.equal(sqlstate(data), '08P01', `${type}: ${data.toString('latin1')}`);
    assert.match(data.toString('utf8'), /invalid message length 246066918 for message type/);
    assert.ok(ms < 2000, `${type} answered after ${ms} ms`);
  }
  await stillServes();
});
