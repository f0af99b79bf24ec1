// VRRP advertisements (RFC 3768 v2, RFC 5798 v3 for IPv4) and gratuitous ARP frames, as bytes: the
// wire format openproxy's virtual router sends and reads. Checked byte for byte against
// keepalived 2.2.7's own packets (test/fixtures/vrrp, captured on Debian 12).

export const VRRP_PROTOCOL = 112;
export const VRRP_MULTICAST = '224.0.0.18';

export interface Advert {
  version: 2 | 3;
  vrid: number;
  priority: number;
  /** v2: seconds; v3: centiseconds. */
  advertInt: number;
  addresses: string[];
}

export function ipBytes(ip: string): Buffer {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
    throw new Error(`not an IPv4 address: ${ip}`);
  return Buffer.from(parts);
}

export function ipString(b: Buffer, at = 0): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** RFC 1071 ones'-complement sum of 16-bit words, folded and complemented. */
export function inetChecksum(...parts: Buffer[]): number {
  let sum = 0;
  for (const b of parts) {
    for (let i = 0; i + 1 < b.length; i += 2) sum += (b[i] << 8) | b[i + 1];
    if (b.length % 2) sum += b[b.length - 1] << 8;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** v3's checksum covers an IPv4 pseudo-header (source, destination, protocol 112, length). */
function pseudoHeader(src: string, dst: string, length: number): Buffer {
  const p = Buffer.alloc(12);
  ipBytes(src).copy(p, 0);
  ipBytes(dst).copy(p, 4);
  p[9] = VRRP_PROTOCOL;
  p.writeUInt16BE(length, 10);
  return p;
}

/** The VRRP message (what follows the IP header). v3 needs the IP source and destination for its checksum. */
export function encodeAdvert(a: Advert, src = '', dst = VRRP_MULTICAST): Buffer {
  const n = a.addresses.length;
  const len = 8 + 4 * n + (a.version === 2 ? 8 : 0);
  const b = Buffer.alloc(len);
  b[0] = (a.version << 4) | 1;
  b[1] = a.vrid;
  b[2] = a.priority;
  b[3] = n;
  if (a.version === 2) {
    b[4] = 0; // no authentication
    b[5] = a.advertInt;
  } else {
    b.writeUInt16BE(a.advertInt & 0x0fff, 4);
  }
  a.addresses.forEach((ip, i) => ipBytes(ip).copy(b, 8 + 4 * i));
  const sum = a.version === 2 ? inetChecksum(b) : inetChecksum(pseudoHeader(src, dst, len), b);
  b.writeUInt16BE(sum, 6);
  return b;
}

export type Decoded = (Advert & { checksumOk: boolean }) | { error: string };

/** Parses and checks a VRRP message (v3 checksum needs the IP source and destination). */
export function decodeAdvert(b: Buffer, src = '', dst = VRRP_MULTICAST): Decoded {
  if (b.length < 8) return { error: `VRRP message too short (${b.length} bytes)` };
  const version = b[0] >> 4;
  if (version !== 2 && version !== 3) return { error: `VRRP version ${version} is not supported` };
  if ((b[0] & 0x0f) !== 1) return { error: `VRRP packet type ${b[0] & 0x0f} is not an advertisement` };
  const n = b[3];
  const need = 8 + 4 * n + (version === 2 ? 8 : 0);
  if (b.length < need) return { error: `VRRP message shorter than its ${n} addresses` };
  const msg = b.subarray(0, need);
  const addresses = Array.from({ length: n }, (_, i) => ipString(msg, 8 + 4 * i));
  const checksumOk = (version === 2 ? inetChecksum(msg) : inetChecksum(pseudoHeader(src, dst, need), msg)) === 0;
  return {
    version,
    vrid: b[1],
    priority: b[2],
    advertInt: version === 2 ? b[5] : b.readUInt16BE(4) & 0x0fff,
    addresses,
    checksumOk,
  };
}

/** A broadcast gratuitous ARP request for `ip` from `mac` (Ethernet frame, 42 bytes), as keepalived sends. */
export function gratuitousArp(mac: string, ip: string): Buffer {
  const m = Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
  if (m.length !== 6) throw new Error(`not a MAC address: ${mac}`);
  const a = ipBytes(ip);
  const f = Buffer.alloc(42);
  f.fill(0xff, 0, 6); // broadcast
  m.copy(f, 6);
  f.writeUInt16BE(0x0806, 12); // ARP
  f.writeUInt16BE(1, 14); // Ethernet
  f.writeUInt16BE(0x0800, 16); // IPv4
  f[18] = 6;
  f[19] = 4;
  f.writeUInt16BE(1, 20); // request
  m.copy(f, 22);
  a.copy(f, 28);
  f.fill(0xff, 32, 38); // target MAC as keepalived writes it
  a.copy(f, 38);
  return f;
}
