// The client listener: accepts in the main thread and hands each connection's fd (a dup, so the
// main thread's handle can be closed) to the worker with the fewest live clients.

import net from 'node:net';
import { dupFd, socketFd } from '../net/sockopt';
import { log } from '../log';
import type { SharedState } from '../shared/state';
import type { Supervisor } from './supervisor';

export function listen(host: string, port: number, shared: SharedState, sup: Supervisor): Promise<net.Server> {
  const server = net.createServer({ pauseOnConnect: true }, (sock) => {
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
    sup.send(w, { kind: 'fd', fd: dup });
  });
  server.maxConnections = Infinity;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: 4096 }, () => {
      server.removeListener('error', reject);
      server.on('error', (e) => log.error('listener error', { error: e.message }));
      resolve(server);
    });
  });
}
