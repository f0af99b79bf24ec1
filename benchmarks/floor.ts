// The Node floor: the least a transaction pooler on this platform does, to measure openproxy's
// features against. The same hand-off and data path as openproxy (accept in the main thread, dup()
// the fd through koffi, post it to a worker thread; reads into one reused buffer per thread
// (`onread`), writes of views with writeView; openproxy's MessageScanner watching the server's
// ReadyForQuery). Each worker opens its share of the server connections before it takes clients;
// a client gets one at its transaction's first message and gives it back at ReadyForQuery 'I'.
// Nothing else: no auth (AuthenticationOk at once), no routing, no settings, no statistics. Its
// worker threads have the young generation openproxy gives its own (8 MB).
//
// Usage: node dist/benchmarks/floor.js PORT PG_PORT USER PASSWORD WORKERS POOL

import net from 'node:net';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { dupFd, socketFd } from '../src/net/sockopt';
import { onreadOptions, writeView } from '../src/net/read-buffer';
import { AUTH_OK, READY_IDLE, SSL_NO, backendKeyData, parameterStatus } from '../src/protocol/backend';
import { md5Response, md5Stored } from '../src/protocol/md5';
import { MessageScanner } from '../src/protocol/scanner';
import { serialize } from 'pg-protocol';

interface Setup {
  pgPort: number;
  user: string;
  password: string;
  pool: number;
}

/** A server connection: its socket, the client holding it, and its scanner. */
interface Server {
  sock: net.Socket;
  client: Client | null;
  scanner: MessageScanner;
}

interface Client {
  sock: net.Socket;
  server: Server | null;
  started: boolean;
  startup: Buffer;
  /** Bytes that arrived while no server was free (copied: the read buffer is reused). */
  queued: Buffer[];
}

const WANT_Z = MessageScanner.want('Z');

function runWorker(setup: Setup): void {
  const free: Server[] = [];
  const waiting: Client[] = [];
  let params: Buffer = Buffer.alloc(0);
  let servers = 0;
  let releaseAfter = false;
  const sink = { onMessage: (_t: number, body: Buffer) => (releaseAfter = body[0] === 0x49) };

  const give = (s: Server) => {
    const c = waiting.shift();
    if (!c) {
      s.client = null;
      free.push(s);
      return;
    }
    s.client = c;
    c.server = s;
    const bytes = c.queued.length === 1 ? c.queued[0] : Buffer.concat(c.queued);
    c.queued = [];
    s.sock.write(bytes);
  };

  const onServerBytes = (s: Server, chunk: Buffer) => {
    releaseAfter = false;
    s.scanner.scan(chunk, sink);
    const c = s.client;
    if (c) writeView(c.sock, chunk);
    if (releaseAfter && c && s.scanner.atBoundary) {
      c.server = null;
      give(s);
    }
  };

  const openServer = (): Promise<Server> =>
    new Promise((resolve, reject) => {
      let login = true;
      let pending = Buffer.alloc(0);
      const s: Server = {
        sock: null as unknown as net.Socket,
        client: null,
        scanner: new MessageScanner(WANT_Z, 0x3fffffff),
      };
      const onLogin = (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 5 && pending.length >= 1 + pending.readInt32BE(1)) {
          const len = pending.readInt32BE(1);
          const type = String.fromCharCode(pending[0]);
          const body = pending.subarray(5, 1 + len);
          pending = pending.subarray(1 + len);
          if (type === 'R' && body.readInt32BE(0) === 5) {
            const hash = md5Response(md5Stored(setup.password, setup.user), body.subarray(4, 8));
            s.sock.write(serialize.password(hash));
          } else if (type === 'R' && body.readInt32BE(0) !== 0) reject(new Error('floor: md5 or trust only'));
          else if (type === 'E') reject(new Error(`floor: login failed: ${body.toString('latin1')}`));
          else if (type === 'Z') {
            login = false;
            servers++;
            resolve(s);
          }
          if (type === 'S' && servers === 0) {
            // The first connection's ParameterStatus values are what every client is told at login.
            const k = body.indexOf(0);
            const status = parameterStatus(body.toString('utf8', 0, k), body.toString('utf8', k + 1, body.length - 1));
            params = Buffer.concat([params, status]);
          }
        }
      };
      const sock = net.connect({
        host: '127.0.0.1',
        port: setup.pgPort,
        noDelay: true,
        onread: onreadOptions(function (this: net.Socket, n: number, buf: Buffer) {
          const chunk = buf.subarray(0, n);
          if (login) onLogin(Buffer.from(chunk));
          else onServerBytes(s, chunk);
        }),
      } as net.NetConnectOpts);
      s.sock = sock;
      sock.once('error', reject);
      sock.once('connect', () => sock.write(serialize.startup({ user: setup.user, database: 'postgres' })));
    });

  const onClientBytes = (c: Client, chunk: Buffer) => {
    if (!c.started) {
      c.startup = Buffer.concat([c.startup, chunk]);
      if (c.startup.length < 8 || c.startup.length < c.startup.readInt32BE(0)) return;
      const len = c.startup.readInt32BE(0);
      const code = c.startup.readInt32BE(4);
      c.startup = c.startup.subarray(len);
      if (code === 80877103 || code === 80877104) c.sock.write(SSL_NO);
      else {
        c.started = true;
        c.sock.write(Buffer.concat([AUTH_OK, params, backendKeyData(1, 1), READY_IDLE]));
      }
      return;
    }
    if (c.server) {
      writeView(c.server.sock, chunk);
      return;
    }
    // Terminate between transactions ends the client; it must not reach (and end) a server session.
    if (chunk[0] === 0x58) {
      c.sock.end();
      return;
    }
    const s = free.pop();
    if (s) {
      s.client = c;
      c.server = s;
      writeView(s.sock, chunk);
      return;
    }
    if (c.queued.length === 0) waiting.push(c);
    c.queued.push(Buffer.from(chunk));
  };

  const adopt = (fd: number) => {
    const c: Client = {
      sock: null as unknown as net.Socket,
      server: null,
      started: false,
      startup: Buffer.alloc(0),
      queued: [],
    };
    c.sock = new net.Socket({
      fd,
      readable: true,
      writable: true,
      onread: onreadOptions((n, buf) => onClientBytes(c, buf.subarray(0, n))),
    } as net.SocketConstructorOpts);
    c.sock.setNoDelay(true);
    c.sock.on('error', () => undefined);
    c.sock.on('close', () => {
      const s = c.server;
      c.server = null;
      const w = waiting.indexOf(c);
      if (w >= 0) waiting.splice(w, 1);
      if (s) give(s);
    });
  };

  void (async () => {
    for (let i = 0; i < setup.pool; i++) free.push(await openServer());
    parentPort!.on('message', (m: { fd: number }) => adopt(m.fd));
    parentPort!.postMessage('ready');
  })();
}

async function main(): Promise<void> {
  const [port, pgPort, user, password, workers, pool] = process.argv.slice(2);
  const n = Number(workers);
  const threads: Worker[] = [];
  for (let i = 0; i < n; i++) {
    const share = Math.floor(Number(pool) / n) + (i < Number(pool) % n ? 1 : 0);
    const setup: Setup = { pgPort: Number(pgPort), user, password, pool: share };
    const w = new Worker(__filename, { workerData: setup, resourceLimits: { maxYoungGenerationSizeMb: 8 } });
    await new Promise((r) => w.once('message', r));
    threads.push(w);
  }
  let next = 0;
  const server = net.createServer({ pauseOnConnect: true }, (sock) => {
    const fd = dupFd(socketFd(sock));
    sock.destroy();
    threads[next++ % n].postMessage({ fd });
  });
  server.listen({ host: '127.0.0.1', port: Number(port), backlog: 4096 });
}

if (isMainThread) void main();
else runWorker(workerData as Setup);
