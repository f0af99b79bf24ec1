// Socket options Node does not expose (TCP keepalive interval and count) and fd duplication,
// through koffi's FFI to libc. Loaded lazily; if libc cannot be loaded the options are skipped.

import type net from 'node:net';

const IPPROTO_TCP = 6;
const TCP_KEEPINTVL = 5;
const TCP_KEEPCNT = 6;

interface Libc {
  dup(fd: number): number;
  setsockopt(fd: number, level: number, name: number, value: Int32Array, len: number): number;
}

let libc: Libc | null | undefined;

function load(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const koffi = require('koffi');
    const lib = koffi.load('libc.so.6');
    libc = {
      dup: lib.func('int dup(int)'),
      setsockopt: lib.func('int setsockopt(int, int, int, _In_ int32_t *, uint32_t)'),
    };
  } catch {
    libc = null;
  }
  return libc;
}

export function socketFd(sock: net.Socket): number {
  const h = (sock as unknown as { _handle?: { fd?: number } })._handle;
  return h && typeof h.fd === 'number' ? h.fd : -1;
}

/** dup(2): a second descriptor for the same socket, to hand to another thread. */
export function dupFd(fd: number): number {
  const l = load();
  if (!l) throw new Error('koffi/libc not available: cannot hand sockets to worker threads');
  return l.dup(fd);
}

/** TCP keepalives: idle (s) before the first probe, interval (s) between probes, probe count. */
export function setKeepAlive(sock: net.Socket, idle: number, interval: number, count: number): void {
  if (idle <= 0) return;
  sock.setKeepAlive(true, idle * 1000);
  const fd = socketFd(sock);
  const l = load();
  if (fd < 0 || !l) return;
  l.setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, Int32Array.of(interval), 4);
  l.setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, Int32Array.of(count), 4);
}
