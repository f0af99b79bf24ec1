// A raw protocol-3 client for wire-level tests: sends exactly the frontend messages a test lists
// (pg-protocol's serializer, an encoder independent of openproxy) and collects every backend
// message (pg-protocol's parser), with a deadline on each wait so a hang fails fast.
import net from 'node:net';
import { createHash } from 'node:crypto';
import { parse, serialize } from 'pg-protocol';
import type { BackendMessage } from 'pg-protocol/dist/messages';
import { APP_PASS, APP_USER } from './db';

/** The one-letter code of a backend message name, as the protocol documentation writes it. */
const CODES: Record<string, string> = {
  parseComplete: '1',
  bindComplete: '2',
  closeComplete: '3',
  noData: 'n',
  portalSuspended: 's',
  parameterDescription: 't',
  rowDescription: 'T',
  dataRow: 'D',
  commandComplete: 'C',
  readyForQuery: 'Z',
  error: 'E',
  notice: 'N',
  emptyQuery: 'I',
  parameterStatus: 'S',
  backendKeyData: 'K',
  authenticationOk: 'R',
  authenticationMD5Password: 'R',
  copyInResponse: 'G',
};

export class WireClient {
  private readonly sock: net.Socket;
  /** Every backend message received and not yet taken by expect(). */
  private readonly inbox: BackendMessage[] = [];
  private wake: (() => void) | null = null;
  private closed = false;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    void parse(sock, (m) => {
      this.inbox.push(m);
      this.wake?.();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    sock.on('error', () => undefined);
  }

  /** Connects and logs in as the app role (md5 or cleartext, openproxy's client auth here). */
  static async connect(port: number, database = 'postgres'): Promise<WireClient> {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((res, rej) => sock.once('connect', res).once('error', rej));
    const c = new WireClient(sock);
    sock.write(serialize.startup({ user: APP_USER, database }));
    const auth = await c.next(5000);
    if (auth.name === 'authenticationMD5Password') {
      const salt = (auth as unknown as { salt: Buffer }).salt;
      const inner = createHash('md5')
        .update(APP_PASS + APP_USER)
        .digest('hex');
      sock.write(serialize.password(`md5${createHash('md5').update(inner).update(salt).digest('hex')}`));
    } else if (auth.name !== 'authenticationOk') throw new Error(`unexpected auth message ${auth.name}`);
    for (;;) {
      const m = await c.next(10000);
      if (m.name === 'error') throw new Error(`login failed: ${(m as unknown as Error).message}`);
      if (m.name === 'readyForQuery') return c;
    }
  }

  /** Stops reading from the socket (a client that does not read its result). */
  pause(): void {
    this.sock.pause();
  }

  send(...messages: Buffer[]): void {
    this.sock.write(Buffer.concat(messages));
  }

  /** The next backend message, or an error after `ms`. */
  async next(ms: number): Promise<BackendMessage> {
    const deadline = Date.now() + ms;
    while (this.inbox.length === 0) {
      if (this.closed) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${ms} ms`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.wake = () => {
          clearTimeout(t);
          res();
        };
      });
      this.wake = null;
    }
    return this.inbox.shift()!;
  }

  /**
   * Takes exactly `codes` (one letter per message, e.g. "12DCZ") within `ms` and returns them;
   * throws naming what did arrive when they differ or time runs out.
   */
  async expect(codes: string, ms = 5000): Promise<BackendMessage[]> {
    const got: BackendMessage[] = [];
    try {
      while (got.length < codes.length) got.push(await this.next(ms));
    } catch (e) {
      throw new Error(`expected ${codes}, got ${codesOf(got)} then ${(e as Error).message}`);
    }
    if (codesOf(got) !== codes)
      throw new Error(
        `expected ${codes}, got ${codesOf(got)}: ${JSON.stringify(got.filter((m) => m.name === 'error'))}`,
      );
    return got;
  }

  /** Asserts that nothing arrives for `ms` (e.g. after a Flush with nothing pending). */
  async silence(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    if (this.inbox.length) throw new Error(`expected no reply, got ${codesOf(this.inbox)}`);
  }

  async close(): Promise<void> {
    if (!this.closed) this.sock.end(serialize.end());
    await new Promise((r) => setTimeout(r, 10));
    this.sock.destroy();
  }
}

export function codesOf(ms: BackendMessage[]): string {
  return ms.map((m) => CODES[m.name] ?? `?${m.name}`).join('');
}

/** Field values of the DataRow messages in `ms`. */
export function rowsOf(ms: BackendMessage[]): string[][] {
  return ms.filter((m) => m.name === 'dataRow').map((m) => (m as unknown as { fields: string[] }).fields);
}

/** An untyped startup-phase packet: a header (length, `code`) and `extra` bytes (SSLRequest, CancelRequest …). */
export function requestPacket(code: number, extra: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(8);
  h.writeInt32BE(8 + extra.length, 0);
  h.writeInt32BE(code, 4);
  return Buffer.concat([h, extra]);
}

/** A StartupMessage with `params` at protocol `version` (196608 = 3.0). */
export function startupPacket(params: Record<string, string>, version = 196608): Buffer {
  const body = Object.entries(params).map(([k, v]) => Buffer.from(`${k}\0${v}\0`));
  return requestPacket(version, Buffer.concat([...body, Buffer.from([0])]));
}
