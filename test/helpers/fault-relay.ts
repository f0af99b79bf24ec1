// A TCP relay in front of a real PostgreSQL server that injects network faults on demand (the
// hold/release relay for coalesced reads is relay.ts): latency, a bandwidth limit, cuts at a server
// message boundary or in the middle of a message, resets (RST), and a black hole (bytes vanish in
// both directions, nothing is closed). Faults apply to every connection from the moment they are set.

import net from 'node:net';

export type Fault =
  | { kind: 'none' }
  | { kind: 'latency'; ms: number }
  | { kind: 'bandwidth'; bytesPerSecond: number }
  /**
   * After `every` server messages on a logged-in connection (counted from its first ReadyForQuery
   * or from when the fault was set): close it exactly there, or halfway into the next message.
   */
  | { kind: 'cut'; at: 'boundary' | 'mid'; every: number }
  /** The next server bytes on each connection turn into an RST both ways. */
  | { kind: 'reset' }
  | { kind: 'blackhole' };

export interface FaultRelay {
  port: number;
  set(f: Fault): void;
  /** Connections cut or reset so far. */
  broken(): number;
  /** Connections open now. */
  open(): number;
  close(): Promise<void>;
}

interface Conn {
  down: net.Socket; // openproxy's side
  up: net.Socket; // PostgreSQL's side
  /** Server messages seen since login or the fault was set (-1 while logging in), bytes left of the current one. */
  messages: number;
  toGo: number;
  header: number[];
  /** When the last delayed chunk goes out (latency / bandwidth keep the byte order). */
  busyUntil: number;
}

export function startFaultRelay(targetPort: number): Promise<FaultRelay> {
  let fault: Fault = { kind: 'none' };
  let broken = 0;
  const conns = new Set<Conn>();
  const kill = (c: Conn, reset: boolean) => {
    if (!conns.delete(c)) return;
    broken++;
    for (const s of [c.down, c.up]) reset ? s.resetAndDestroy() : s.destroy();
  };
  /** Sends `b` to `to` now or after the fault's delay, keeping the order. */
  const pass = (c: Conn, to: net.Socket, b: Buffer) => {
    let delay = 0;
    if (fault.kind === 'latency') delay = fault.ms;
    if (fault.kind === 'bandwidth') {
      const start = Math.max(Date.now(), c.busyUntil);
      c.busyUntil = start + (b.length * 1000) / fault.bytesPerSecond;
      delay = c.busyUntil - Date.now();
    } else if (delay > 0) c.busyUntil = Math.max(c.busyUntil, Date.now() + delay);
    else if (c.busyUntil > Date.now()) delay = c.busyUntil - Date.now();
    if (delay <= 0) to.write(b);
    else setTimeout(() => to.destroyed || to.write(b), delay);
  };
  /** Server → openproxy, watching message boundaries for cuts. */
  const fromServer = (c: Conn, b: Buffer) => {
    if (fault.kind === 'blackhole') return;
    if (fault.kind === 'reset') return kill(c, true);
    if (fault.kind !== 'cut') return pass(c, c.down, b);
    const cut = fault;
    for (let i = 0; i < b.length; ) {
      if (c.toGo > 0) {
        if (c.messages >= cut.every && cut.at === 'mid') {
          pass(c, c.down, b.subarray(0, i + Math.max(1, Math.floor(c.toGo / 2))));
          return kill(c, false);
        }
        const n = Math.min(c.toGo, b.length - i);
        c.toGo -= n;
        i += n;
        continue;
      }
      if (c.header.length === 0 && c.messages >= cut.every && cut.at === 'boundary') {
        pass(c, c.down, b.subarray(0, i));
        return kill(c, false);
      }
      c.header.push(b[i++]);
      if (c.header.length === 5) {
        c.toGo = Buffer.from(c.header).readInt32BE(1) - 4;
        if (c.messages >= 0) c.messages++;
        else if (c.header[0] === 0x5a) c.messages = 0; // the login's ReadyForQuery
        c.header = [];
      }
    }
    pass(c, c.down, b);
  };
  const server = net.createServer((down) => {
    const up = net.connect({ host: '127.0.0.1', port: targetPort });
    const c: Conn = { down, up, messages: -1, toGo: 0, header: [], busyUntil: 0 };
    conns.add(c);
    up.on('data', (b: Buffer) => fromServer(c, b));
    down.on('data', (b: Buffer) => {
      if (fault.kind === 'blackhole') return;
      if (fault.kind === 'latency') pass(c, up, b);
      else up.write(b);
    });
    const gone = () => {
      if (conns.delete(c)) {
        up.destroy();
        down.destroy();
      }
    };
    for (const s of [up, down]) {
      s.on('error', gone);
      s.on('close', gone);
    }
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        set: (f) => {
          fault = f;
          for (const c of conns) c.messages = 0;
        },
        broken: () => broken,
        open: () => conns.size,
        close: () =>
          new Promise<void>((done) => {
            for (const c of conns) kill(c, false);
            server.close(() => done());
          }),
      }),
    ),
  );
}
