// The client listener: accepts in the main thread and hands each connection's fd (a dup, so the
// main thread's handle can be closed) to the worker with the fewest live clients. Past
// max_client_conn live clients, a new connection gets PostgreSQL's "too many clients" answer (an
// ErrorResponse libpq reports whether it sent a startup packet or an SSLRequest first) and is closed.

import { chmodSync, chownSync, existsSync, readFileSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { dupFd, socketFd } from '../net/sockopt';
import { errorResponse } from '../protocol/backend';
import { GSSENC_REQUEST_CODE, SSL_REQUEST_CODE } from '../protocol/frontend';
import { SQLSTATE } from '../protocol/sqlstate';
import { log } from '../log';
import { REFUSED_CLIENTS } from '../shared/layout';
import type { SharedState } from '../shared/state';
import type { Supervisor } from './supervisor';
import type { ListenerRole } from '../config/types';

/** Live clients of every worker (handed off and not yet gone). */
export function liveClients(shared: SharedState, workers: number): number {
  let n = 0;
  for (let i = 0; i < workers; i++) n += Atomics.load(shared.workerClients, i);
  return n;
}

/** The connection handler both listeners share: refuse past max_client_conn, else hand the fd to a worker. */
export function handOff(
  shared: SharedState,
  sup: Supervisor,
  maxClients: () => number,
  unix: boolean,
  role: () => ListenerRole | undefined = () => undefined,
) {
  let lastWarned = 0;
  return (sock: net.Socket) => {
    const max = maxClients();
    if (max > 0 && liveClients(shared, sup.workers.length) >= max) {
      Atomics.add(shared.header, REFUSED_CLIENTS, 1);
      refuse(sock, max);
      if (Date.now() - lastWarned > 10_000) {
        lastWarned = Date.now();
        log.warn('max_client_conn reached: refusing new clients', { max_client_conn: max });
      }
      return;
    }
    const fd = socketFd(sock);
    let dup = -1;
    try {
      dup = fd >= 0 ? dupFd(fd) : -1;
    } catch (e) {
      log.error('cannot hand a client to a worker', { error: (e as Error).message });
    }
    sock.destroy();
    if (dup < 0) return;
    const w = shared.leastLoadedWorker(sup.workers.length);
    Atomics.add(shared.workerClients, w, 1);
    const r = role();
    sup.send(w, unix ? { kind: 'fd', fd: dup, unix } : r ? { kind: 'fd', fd: dup, role: r } : { kind: 'fd', fd: dup });
  };
}

export function serve(server: net.Server, at: net.ListenOptions): Promise<net.Server> {
  server.maxConnections = Infinity;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ ...at, backlog: 4096 }, () => {
      server.removeListener('error', reject);
      server.on('error', (e) => log.error('listener error', { error: e.message }));
      resolve(server);
    });
  });
}

export function listen(
  host: string,
  port: number,
  shared: SharedState,
  sup: Supervisor,
  maxClients: () => number,
): Promise<net.Server> {
  return serve(net.createServer({ pauseOnConnect: true }, handOff(shared, sup, maxClients, false)), { host, port });
}

/** PostgreSQL's socket name for a port: DIR/.s.PGSQL.PORT. */
export const socketPath = (dir: string, port: number) => join(dir, `.s.PGSQL.${port}`);

/**
 * The Unix-domain socket listener (unix_socket_dir): a socket file left by a crash (nobody
 * answers on it) is replaced; one that answers means another process owns the port, an error.
 */
export async function listenUnix(
  g: { unix_socket_dir: string; port: number; unix_socket_mode: string; unix_socket_group?: string },
  shared: SharedState,
  sup: Supervisor,
  maxClients: () => number,
): Promise<net.Server> {
  const path = socketPath(g.unix_socket_dir, g.port);
  if (existsSync(path)) {
    const alive = await new Promise<boolean>((resolve) => {
      const probe = net.connect(path, () => {
        probe.destroy();
        resolve(true);
      });
      probe.on('error', () => resolve(false));
    });
    if (alive) throw new Error(`${path} is in use by another process`);
    unlinkSync(path);
  }
  const server = await serve(net.createServer({ pauseOnConnect: true }, handOff(shared, sup, maxClients, true)), {
    path,
  });
  chmodSync(path, Number.parseInt(g.unix_socket_mode, 8));
  if (g.unix_socket_group !== undefined) chownSync(path, -1, groupId(g.unix_socket_group));
  return server;
}

/** A group's id from its number or its name in /etc/group. */
function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group) return Number(gid);
  }
  throw new Error(`unix_socket_group: no group named ${JSON.stringify(group)} in /etc/group`);
}

/**
 * As PostgreSQL and PgBouncer do it: an SSL or GSS request is declined ('N'), then the startup
 * packet is answered with the error (libpq shows it; an error in place of 'N' it would not).
 */
function refuse(sock: net.Socket, max: number): void {
  let got: Buffer = Buffer.alloc(0);
  sock.on('error', () => undefined);
  sock.setTimeout(5000, () => sock.destroy());
  sock.on('data', (d: Buffer) => {
    got = got.length === 0 ? d : Buffer.concat([got, d]);
    while (got.length >= 8 && !sock.writableEnded) {
      const len = got.readInt32BE(0);
      const code = got.readInt32BE(4);
      if ((code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) && len === 8) {
        sock.write('N');
        got = got.subarray(8);
        continue;
      }
      const message = `no more connections allowed (max_client_conn = ${max})`;
      sock.end(errorResponse({ severity: 'FATAL', code: SQLSTATE.TOO_MANY_CONNECTIONS, message }));
    }
  });
  sock.on('end', () => sock.destroy());
  sock.resume();
}
