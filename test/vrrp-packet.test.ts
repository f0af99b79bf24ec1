// VRRP advertisements and gratuitous ARPs against keepalived 2.2.7's own packets, captured on
// Debian 12 in network namespaces (test/fixtures/vrrp/*.pcap: multicast v2 and v3, unicast v2,
// v2 with a virtual MAC): every advert decodes with a valid checksum and re-encodes byte for byte,
// and every gratuitous ARP is the frame openproxy builds for the same MAC and address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { decodeAdvert, encodeAdvert, gratuitousArp, ipString, VRRP_PROTOCOL } from '../src/ha/vrrp-packet';

const DIR = join(__dirname, '..', '..', 'test', 'fixtures', 'vrrp');

/** Frames of a classic pcap file (Ethernet link type). */
function frames(file: string): Buffer[] {
  const b = readFileSync(file);
  const magic = b.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  assert.ok(le || b.readUInt32BE(0) === 0xa1b2c3d4, `${file}: not a pcap file`);
  const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  assert.equal(u32(20), 1, 'Ethernet link type');
  const out: Buffer[] = [];
  for (let o = 24; o + 16 <= b.length; ) {
    const len = u32(o + 8);
    out.push(b.subarray(o + 16, o + 16 + len));
    o += 16 + len;
  }
  return out;
}

const files = readdirSync(DIR).filter((f) => f.endsWith('.pcap'));

test('fixtures: four keepalived captures', () => {
  assert.deepEqual(files.sort(), ['mcast-v2.pcap', 'mcast-v3.pcap', 'unicast-v2.pcap', 'vmac-v2.pcap']);
});

test('every captured advertisement decodes with a valid checksum and re-encodes byte for byte', () => {
  let adverts = 0;
  const priorities = new Set<number>();
  for (const f of files) {
    for (const fr of frames(join(DIR, f))) {
      if (fr.readUInt16BE(12) !== 0x0800) continue;
      const ip = fr.subarray(14);
      if (ip[9] !== VRRP_PROTOCOL) continue;
      adverts++;
      const ihl = (ip[0] & 0x0f) * 4;
      const src = ipString(ip, 12);
      const dst = ipString(ip, 16);
      assert.equal(ip[8], 255, `${f}: TTL 255`);
      assert.equal(ip[1], 0xc0, `${f}: TOS 0xc0`);
      const msg = ip.subarray(ihl, ip.readUInt16BE(2));
      const d = decodeAdvert(msg, src, dst);
      assert.ok(!('error' in d), `${f}: ${'error' in d ? d.error : ''}`);
      if ('error' in d) continue;
      assert.ok(d.checksumOk, `${f}: checksum`);
      assert.equal(d.version, f.includes('v3') ? 3 : 2);
      assert.equal(d.vrid, 51);
      assert.deepEqual(d.addresses, ['10.231.0.100']);
      assert.equal(d.advertInt, d.version === 2 ? 1 : 100, 'advert_int 1 s');
      priorities.add(d.priority);
      const again = encodeAdvert(d, src, dst);
      assert.deepEqual(again, msg, `${f}: re-encoded advert is byte-identical`);
      if (f.startsWith('unicast')) assert.ok(!dst.startsWith('224.'), 'unicast peers');
      else assert.equal(dst, '224.0.0.18');
    }
  }
  assert.ok(adverts >= 40, `adverts seen: ${adverts}`);
  assert.ok(priorities.has(0), 'the priority-0 advert of a graceful stop');
  assert.ok(priorities.has(150) && priorities.has(100));
});

test('a corrupted advert fails its checksum; garbage is refused with a reason', () => {
  const good = encodeAdvert({ version: 2, vrid: 7, priority: 100, advertInt: 1, addresses: ['192.0.2.10'] });
  const bad = Buffer.from(good);
  bad[2] ^= 1;
  const d = decodeAdvert(bad);
  assert.ok(!('error' in d) && !d.checksumOk);
  assert.match((decodeAdvert(Buffer.from([0x11, 1, 2])) as { error: string }).error, /too short/);
  assert.match((decodeAdvert(Buffer.from([0x41, 1, 2, 0, 0, 0, 0, 0])) as { error: string }).error, /version 4/);
  assert.match(
    (decodeAdvert(Buffer.from([0x22, 1, 2, 0, 0, 0, 0, 0])) as { error: string }).error,
    /not an advertisement/,
  );
});

test('every captured gratuitous ARP is the frame openproxy builds', () => {
  let arps = 0;
  for (const f of files) {
    for (const fr of frames(join(DIR, f))) {
      if (fr.readUInt16BE(12) !== 0x0806) continue;
      // Gratuitous: a request whose sender and target address are the virtual IP (replies and
      // ordinary requests in the captures are the kernel's own).
      if (fr.readUInt16BE(20) !== 1 || ipString(fr, 28) !== ipString(fr, 38)) continue;
      arps++;
      const mac = [...fr.subarray(6, 12)].map((x) => x.toString(16).padStart(2, '0')).join(':');
      const ip = ipString(fr, 28);
      assert.deepEqual(gratuitousArp(mac, ip), fr.subarray(0, 42), `${f}: GARP for ${ip} from ${mac}`);
    }
  }
  assert.ok(arps >= 10, `gratuitous ARPs seen: ${arps}`);
});
