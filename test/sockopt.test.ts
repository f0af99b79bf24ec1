// koffi-backed socket options really reach the kernel: read them back with getsockopt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { dupFd, setKeepAlive, socketFd } from '../src/net/sockopt';
// eslint-disable-next-line @typescript-eslint/no-var-requires
const koffi = require('koffi');
const libc = koffi.load('libc.so.6');
const getsockopt = libc.func('int getsockopt(int, int, int, _Out_ int32_t *, _Inout_ uint32_t *)');
const close = libc.func('int close(int)');

function opt(fd: number, level: number, name: number): number {
  const v = [0];
  const len = [4];
  assert.equal(getsockopt(fd, level, name, v, len), 0);
  return v[0];
}

test('setKeepAlive sets SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT', async () => {
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  setKeepAlive(sock, 7, 3, 4);
  const fd = socketFd(sock);
  assert.ok(fd > 0);
  assert.equal(opt(fd, 1, 9), 1, 'SO_KEEPALIVE');
  assert.equal(opt(fd, 6, 4), 7, 'TCP_KEEPIDLE');
  assert.equal(opt(fd, 6, 5), 3, 'TCP_KEEPINTVL');
  assert.equal(opt(fd, 6, 6), 4, 'TCP_KEEPCNT');
  const d = dupFd(fd);
  assert.ok(d > 0 && d !== fd);
  assert.equal(opt(d, 6, 6), 4, 'the dup is the same socket');
  close(d);
  sock.destroy();
  server.close();
});

test('client sockets get TCP keepalive too (tcp_keepalives_*): the kernel shows the timer', async () => {
  const { PgCluster } = await import('../testing/pg-cluster');
  const { createAppRole, client } = await import('./helpers/db');
  const { configFor, startProxy } = await import('./helpers/proxy');
  const cluster = await PgCluster.start();
  createAppRole(cluster);
  const proxy = await startProxy((port) => configFor(cluster, port, 'tcp_keepalives_idle = 7'));
  const c = client(proxy.port);
  try {
    await c.connect();
    const ss = spawnSync('ss', ['-tnoH', 'state', 'established', `( sport = :${proxy.port} )`], { encoding: 'utf8' });
    assert.match(ss.stdout, /timer:\(keepalive,[\d.]+(ms|sec)/, ss.stdout);
  } finally {
    await c.end();
    await proxy.stop();
    cluster.stop();
  }
});
