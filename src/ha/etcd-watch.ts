// A watch on one etcd key over etcd's v3 JSON gateway (plain HTTP, no gRPC library): read the key
// (POST /v3/kv/range), then stream its changes from the next revision (POST /v3/watch). Used on
// Patroni's leader key, so a leader change is heard at once instead of at the next poll. Every
// change of the value (a new leader, the key deleted) is reported; refreshes of the same value
// (Patroni renews the key every loop_wait) are not. A broken stream is reopened on the next host
// after a pause, and reported as a change (something may have happened while it was down).

import http from 'node:http';
import { log } from '../log';

const RETRY_MS = 1000;

interface KeyValue {
  value?: string;
  mod_revision?: string;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined) => (s ? Buffer.from(s, 'base64').toString('utf8') : '');

export class EtcdWatch {
  private req: http.ClientRequest | null = null;
  private retry: NodeJS.Timeout | null = null;
  private stopped = false;
  private host = 0;
  /** The key's value as last seen ('' = absent), null before the first read. */
  private value: string | null = null;

  constructor(
    private readonly hosts: string[],
    private readonly key: string,
    /** Called with the new value ('' = deleted) on every change, and after a reconnect. */
    private readonly onChange: (value: string) => void,
  ) {}

  start(): void {
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.req?.destroy();
  }

  /** One key's value now ('' = absent), read from the host the watch uses. */
  async get(key: string): Promise<string> {
    const [host, port] = this.hosts[this.host % this.hosts.length].split(':');
    const r = (await post(host, Number(port), '/v3/kv/range', { key: b64(key) })) as { kvs?: KeyValue[] };
    return unb64(r.kvs?.[0]?.value);
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const [host, port] = this.hosts[this.host % this.hosts.length].split(':');
    try {
      const range = (await post(host, Number(port), '/v3/kv/range', { key: b64(this.key) })) as {
        header?: { revision?: string };
        kvs?: KeyValue[];
      };
      const value = unb64(range.kvs?.[0]?.value);
      const reconnect = this.value !== null;
      if (reconnect || value !== this.value) {
        this.value = value;
        this.onChange(value);
      }
      this.watch(host, Number(port), Number(range.header?.revision ?? 0) + 1);
    } catch (e) {
      this.failed(host, port, e as Error);
    }
  }

  private watch(host: string, port: number, fromRevision: number): void {
    const body = JSON.stringify({ create_request: { key: b64(this.key), start_revision: String(fromRevision) } });
    const req = http.request({ host, port, path: '/v3/watch', method: 'POST', agent: false }, (res) => {
      let pending = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        pending += chunk;
        // The gateway sends one JSON object per line.
        for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
          const line = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          if (line) this.onMessage(line);
        }
      });
      res.on('end', () => this.failed(String(host), String(port), new Error('watch stream ended')));
      res.on('error', (e) => this.failed(String(host), String(port), e));
    });
    req.on('error', (e) => this.failed(host, String(port), e));
    req.setNoDelay(true);
    req.end(body);
    this.req = req;
  }

  private onMessage(line: string): void {
    let m: { result?: { events?: { type?: string; kv?: KeyValue }[] }; error?: unknown };
    try {
      m = JSON.parse(line);
    } catch {
      return;
    }
    for (const ev of m.result?.events ?? []) {
      const value = ev.type === 'DELETE' ? '' : unb64(ev.kv?.value);
      if (value === this.value) continue;
      this.value = value;
      this.onChange(value);
    }
  }

  private failed(host: string, port: string, e: Error): void {
    if (this.stopped || this.retry) return;
    this.req?.destroy();
    this.req = null;
    log.warn('etcd watch lost; polling goes on, the watch is reopened', {
      etcd: `${host}:${port}`,
      key: this.key,
      error: e.message,
    });
    this.host++;
    this.retry = setTimeout(() => {
      this.retry = null;
      void this.connect();
    }, RETRY_MS);
  }
}

/** One JSON POST to the gateway, with a deadline. */
function post(host: string, port: number, path: string, body: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(
      {
        host,
        port,
        path,
        method: 'POST',
        agent: false,
        timeout: 3000,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('end', () => {
          try {
            if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
            resolve(JSON.parse(Buffer.concat(parts).toString('utf8')));
          } catch (e) {
            reject(e);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(data);
  });
}
