// A client session without a process: a real ClientSession and real ServerConns (with their
// scanner) in this thread, on in-memory sockets, with a worker context built from a real config.
// The test plays both sides: it writes client messages, reads exactly what the session forwarded
// to each scripted server, answers as the server, and reads exactly what reached the client.
// (A scripted server is right here: these tests check openproxy's state machine, not PostgreSQL.)

import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { serialize } from 'pg-protocol';
import { parseConfig } from '../src/config/load';
import { ServerConn, type ServerLogin } from '../src/pool/server-conn';
import { Registry } from '../src/pool/registry';
import { SlotAllocator } from '../src/pool/slots';
import { md5Response, md5Stored } from '../src/protocol/md5';
import { Classifier } from '../src/routing/classify';
import { ClientSession } from '../src/session/client';
import type { WorkerContext } from '../src/session/context';
import { SharedState } from '../src/shared/state';

/** In-memory socket: records what is written, lets the test emit what is read. */
export class MemorySocket extends EventEmitter {
  private chunks: Buffer[] = [];
  /** false: writes are counted, not kept (benchmarks). */
  keep = true;
  /** Bytes written so far. */
  written = 0;
  writable = true;
  writableLength = 0;
  destroyed = false;
  readonly remoteAddress = '127.0.0.1';
  readonly remotePort = 40000;
  write(data: Buffer | string): boolean {
    this.written += data.length;
    if (this.keep) this.chunks.push(Buffer.from(data));
    return true;
  }
  end(data?: Buffer): void {
    if (data) this.chunks.push(Buffer.from(data));
    this.writable = false;
  }
  destroy(): void {
    this.destroyed = true;
    this.writable = false;
  }
  pause(): void {}
  resume(): void {}
  setNoDelay(): void {}
  /** Everything written since the last take. */
  take(): Buffer {
    const out = Buffer.concat(this.chunks);
    this.chunks = [];
    return out;
  }
}

/** One scripted server connection: a real ServerConn on a MemorySocket. */
export class ScriptedServer {
  readonly socket = new MemorySocket();
  readonly conn: ServerConn;
  constructor(
    readonly host: string,
    readonly port: number,
    login: ServerLogin,
    params: Record<string, string>,
  ) {
    this.conn = new ServerConn(this.socket as unknown as net.Socket, login);
    for (const [k, v] of Object.entries(params)) {
      this.conn.params.set(k, v);
      this.conn.reported.set(k.toLowerCase(), v);
    }
    this.conn.attachStream();
  }
  /** What the session sent to this server since the last call, as message type letters. */
  sent(): string {
    return types(this.socket.take());
  }
  /** The server answers (bytes as PostgreSQL would send them). */
  answer(...msgs: Buffer[]): void {
    this.conn.onData(Buffer.concat(msgs));
  }
  /** The connection breaks. */
  die(): void {
    this.socket.emit('close');
  }
}

/** Message type letters of a buffer of typed messages, e.g. "PDH" (invalid framing throws). */
export function types(buf: Buffer): string {
  let out = '';
  for (let p = 0; p < buf.length; ) {
    if (p + 5 > buf.length) throw new Error(`partial message at ${p} of ${buf.length}`);
    out += String.fromCharCode(buf[p]);
    p += 1 + buf.readInt32BE(p + 1);
  }
  return out;
}

/** Backend messages for scripted answers. */
export const be = {
  parseComplete: () => Buffer.from([0x31, 0, 0, 0, 4]),
  bindComplete: () => Buffer.from([0x32, 0, 0, 0, 4]),
  noData: () => Buffer.from([0x6e, 0, 0, 0, 4]),
  paramDesc: () => Buffer.from([0x74, 0, 0, 0, 6, 0, 0]),
  rowDesc: (col = 'x') => typed('T', Buffer.concat([u16(1), cstr(col), Buffer.alloc(18)])),
  dataRow: (...vals: string[]) =>
    typed('D', Buffer.concat([u16(vals.length), ...vals.flatMap((v) => [u32(Buffer.byteLength(v)), Buffer.from(v)])])),
  complete: (tag: string) => typed('C', cstr(tag)),
  ready: (status: 'I' | 'T' | 'E' = 'I') => typed('Z', Buffer.from(status)),
  error: (code: string, message: string, severity = 'ERROR') =>
    typed(
      'E',
      Buffer.concat([fld('S', severity), fld('V', severity), fld('C', code), fld('M', message), Buffer.from([0])]),
    ),
};

const cstr = (s: string) => Buffer.from(`${s}\0`);
const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const fld = (t: string, v: string) => Buffer.concat([Buffer.from(t), cstr(v)]);
function typed(t: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(t), u32(body.length + 4), body]);
}

/** Frontend messages, as pg-protocol serializes them. */
export const fe = {
  query: (sql: string) => serialize.query(sql),
  parse: (text: string, name = '') => serialize.parse({ name, text, types: [] }),
  bind: (statement = '', values: string[] = []) => serialize.bind({ statement, values }),
  describe: () => serialize.describe({ type: 'S', name: '' }),
  execute: () => serialize.execute({}),
  flush: () => serialize.flush(),
  sync: () => serialize.sync(),
  terminate: () => serialize.end(),
};

const USER = 'app';
const PASS = 'pw';

export interface Harness {
  session: ClientSession;
  client: MemorySocket;
  ctx: WorkerContext;
  /** Every scripted server opened so far, in order. */
  servers: ScriptedServer[];
  /** Servers opened for one configured port. */
  at(port: number): ScriptedServer[];
  /** Client bytes to the session. */
  send(...msgs: Buffer[]): void;
  /** What reached the client since the last call, as message type letters. */
  received(): string;
  /** Lets promises and microtasks run (the session's async steps). */
  settle(): Promise<void>;
}

/**
 * Starts a logged-in session on a config built from `pool` (TOML lines for [pools.app]) with
 * servers on the given ports (the first is the primary). In transaction mode the login's server
 * is back in its pool when this resolves.
 */
export async function harness(pool: string, ports = [5001], general = ''): Promise<Harness> {
  const servers = ports.map((p, i) => `["127.0.0.1", ${p}, "${i === 0 ? 'primary' : 'replica'}"]`).join(', ');
  const toml = `[general]\nhost = "127.0.0.1"\nport = 6432\nadmin_username = "admin"\nadmin_password = "x"\n\
auth_type = "md5"\nhealthcheck_delay = 0\n${general}\n[pools.app]\n${pool}\n\
[pools.app.users.0]\nusername = "${USER}"\npassword = "${PASS}"\npool_size = 2\n\
[pools.app.shards.0]\ndatabase = "db"\nservers = [${servers}]\n`;
  const cfg = parseConfig(toml, 'unit.toml');
  const shared = SharedState.create(1);
  const registry = new Registry(shared, 0, 1);
  registry.update(cfg, new SlotAllocator().assign(cfg));
  const opened: ScriptedServer[] = [];
  for (const sp of registry.servers.values()) {
    sp.opener = async (login) => {
      const s = new ScriptedServer(login.host, login.port, login, {
        server_version: '16.0',
        client_encoding: 'UTF8',
        in_hot_standby: login.port === ports[0] ? 'off' : 'on',
      });
      opened.push(s);
      return s.conn;
    };
  }
  const ctx: WorkerContext = {
    index: 0,
    shared,
    registry,
    classifier: new Classifier(),
    tls: null,
    clients: new Map(),
    shutdown: 0,
    forwardCancel: () => undefined,
    shareScramKeys: () => undefined,
    addUser: async () => undefined,
    openConsole: () => {
      throw new Error('no console in unit tests');
    },
    paused: new Set(),
    pauseWaiters: new Set(),
    latency: new Map(),
    disabled: new Set(),
  };
  const client = new MemorySocket();
  const session = new ClientSession(client as unknown as net.Socket, ctx);
  const settle = () => new Promise<void>((r) => setImmediate(r));
  const h: Harness = {
    session,
    client,
    ctx,
    servers: opened,
    at: (port) => opened.filter((s) => s.port === port),
    send: (...msgs) => client.emit('data', Buffer.concat(msgs)),
    received: () => types(client.take()),
    settle,
  };
  h.send(serialize.startup({ user: USER, database: 'app' }));
  const challenge = client.take(); // AuthenticationMD5Password: R, length, 5, salt
  const salt = challenge.subarray(9, 13);
  h.send(serialize.password(md5Response(md5Stored(PASS, USER), salt)));
  for (let i = 0; i < 20 && !h.received().endsWith('Z'); i++) await settle();
  return h;
}
