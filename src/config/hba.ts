// Host-based access rules ([[general.hba]]), PostgreSQL's pg_hba.conf in TOML: the first rule that
// matches the connection type, database, user and client address decides the authentication
// method, or rejects the login before any password is exchanged. No rules: auth_type for everyone.

import { isIP } from 'node:net';
import { ConfigError } from './error';

export type HbaMethod = 'md5' | 'scram-sha-256' | 'trust' | 'reject';

export interface HbaRule {
  type: 'host' | 'hostssl' | 'hostnossl' | 'local';
  database: string[];
  user: string[];
  address: string;
  method: HbaMethod;
  /**
   * Parsed `address`: 16 bytes (IPv4 as IPv4-mapped IPv6; a plain array, so the snapshot survives
   * structured and JSON copies) and prefix length in bits; null = all.
   */
  net: { bytes: number[]; bits: number } | null;
}

/** Parses "addr/len" or "all" (throws a ConfigError naming the path). */
export function parseNetwork(path: string, value: string): HbaRule['net'] {
  if (value === 'all') return null;
  const m = /^([^/]+)\/(\d{1,3})$/.exec(value);
  const kind = m ? isIP(m[1]) : 0;
  const bits = m ? Number(m[2]) : -1;
  if (!m || kind === 0 || bits > (kind === 4 ? 32 : 128))
    throw new ConfigError(
      `${path}: invalid value ${JSON.stringify(value)}; expected an address with prefix length ` +
        '("192.168.0.0/16", "::1/128") or "all"',
    );
  return { bytes: Array.from(addressBytes(m[1])!), bits: kind === 4 ? bits + 96 : bits };
}

/** 16 bytes of an IPv4 (as ::ffff:a.b.c.d) or IPv6 address; null if it is neither. */
export function addressBytes(address: string): Uint8Array | null {
  const out = new Uint8Array(16);
  const v4 = /^(?:::ffff:)?(\d+)\.(\d+)\.(\d+)\.(\d+)$/i.exec(address);
  if (v4 && isIP(address.replace(/^::ffff:/i, '')) === 4) {
    out[10] = 0xff;
    out[11] = 0xff;
    for (let i = 0; i < 4; i++) out[12 + i] = Number(v4[i + 1]);
    return out;
  }
  if (isIP(address) !== 6) return null;
  const [head, tail = ''] = address.split('::');
  const words = (s: string) => (s === '' ? [] : s.split(':'));
  const h = words(head);
  const t = words(tail);
  const all = address.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  all.forEach((w, i) => {
    const n = Number.parseInt(w, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  });
  return out;
}

function inNetwork(addr: Uint8Array, net: NonNullable<HbaRule['net']>): boolean {
  for (let bit = 0; bit < net.bits; bit += 8) {
    const left = net.bits - bit;
    const mask = left >= 8 ? 0xff : (0xff << (8 - left)) & 0xff;
    if ((addr[bit >> 3] & mask) !== (net.bytes[bit >> 3] & mask)) return false;
  }
  return true;
}

export interface HbaLogin {
  address: string;
  /** Came through the Unix-domain socket (only `local` rules apply). */
  unix: boolean;
  tls: boolean;
  database: string;
  user: string;
}

/** The first matching rule, or null when none matches. */
export function matchHba(rules: readonly HbaRule[], login: HbaLogin): HbaRule | null {
  const addr = addressBytes(login.address);
  for (const r of rules) {
    if ((r.type === 'local') !== login.unix) continue;
    if (r.type === 'hostssl' && !login.tls) continue;
    if (r.type === 'hostnossl' && login.tls) continue;
    if (!r.database.includes('all') && !r.database.includes(login.database)) continue;
    if (!r.user.includes('all') && !r.user.includes(login.user)) continue;
    if (!login.unix && r.net && (addr === null || !inNetwork(addr, r.net))) continue;
    return r;
  }
  return null;
}
