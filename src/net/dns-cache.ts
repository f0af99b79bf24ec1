// dns_cache_enabled: server host names resolved once and reused for dns_max_ttl seconds, then
// re-resolved (also in the background, so a change is seen without new connections). A server
// connection remembers the address it went to; once the name points elsewhere, new connections go
// to the new address and the old ones drain (closed when their client releases them, or when idle).
// A failed lookup keeps the last address (logged), as resolvers serving stale answers do.

import dns from 'node:dns';
import net from 'node:net';
import { log } from '../log';

interface Entry {
  address: string;
  at: number;
}

export class DnsCache {
  private readonly entries = new Map<string, Entry>();
  private readonly pending = new Map<string, Promise<string>>();
  /** Lookups started (SHOW LISTS dns_queries). */
  queries = 0;

  constructor(public maxTtlMs: number) {}

  /** SHOW LISTS: names cached, lookups under way, lookups made. */
  counts(): { names: number; pending: number; queries: number } {
    return { names: this.entries.size, pending: this.pending.size, queries: this.queries };
  }

  /** The address to connect to for `host` (an IP literal is its own address). */
  resolve(host: string): Promise<string> {
    if (net.isIP(host)) return Promise.resolve(host);
    const e = this.entries.get(host);
    if (e && Date.now() - e.at < this.maxTtlMs) return Promise.resolve(e.address);
    return this.lookup(host);
  }

  /** The address `host` resolves to now, as far as the cache knows. */
  current(host: string): string | undefined {
    return net.isIP(host) ? host : this.entries.get(host)?.address;
  }

  /** Re-resolves every name whose entry is older than the TTL (called periodically). */
  refreshDue(): void {
    const now = Date.now();
    for (const [host, e] of this.entries)
      if (now - e.at >= this.maxTtlMs) void this.lookup(host).catch(() => undefined);
  }

  private lookup(host: string): Promise<string> {
    const running = this.pending.get(host);
    if (running) return running;
    this.queries++;
    const p = dns.promises.lookup(host, { family: 0 }).then(
      (r) => {
        const prev = this.entries.get(host);
        if (prev && prev.address !== r.address)
          log.info('DNS: server address changed; new connections go to the new address, old ones drain', {
            host,
            from: prev.address,
            to: r.address,
          });
        this.entries.set(host, { address: r.address, at: Date.now() });
        return r.address;
      },
      (err: Error) => {
        const prev = this.entries.get(host);
        if (!prev) throw err;
        prev.at = Date.now();
        log.warn('DNS: lookup failed; keeping the last address', { host, address: prev.address, error: err.message });
        return prev.address;
      },
    );
    const tracked = p.finally(() => this.pending.delete(host));
    this.pending.set(host, tracked);
    return tracked;
  }
}
