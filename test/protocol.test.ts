// Protocol codecs: framing proven by splitting a stream at every offset; startup decoding of
// hostile input; SCRAM and md5 checked against node-postgres' independent client implementation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameReader } from '../src/protocol/frame-reader';
import { MessageScanner } from '../src/protocol/scanner';
import { BACKEND_TYPES } from '../src/protocol/messages';
import { decodeStartup, decodeSaslInitial } from '../src/protocol/frontend';
import { ScramClient, ScramServer, scramSecret } from '../src/protocol/scram';
import { md5Response, md5Stored, md5Verify } from '../src/protocol/md5';
import { errorResponse, parameterStatus, backendKeyData } from '../src/protocol/backend';
// eslint-disable-next-line @typescript-eslint/no-var-requires
const pgSasl = require('pg/lib/crypto/sasl');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const pgUtils = require('pg/lib/crypto/utils');

/** Naive encoder, independent of the code under test. */
function msg(type: string, body: Buffer | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const h = Buffer.alloc(5);
  h.write(type, 0, 'latin1');
  h.writeUInt32BE(b.length + 4, 1);
  return Buffer.concat([h, b]);
}

const STREAM = [
  msg('Q', 'select 1\0'),
  msg('P', Buffer.alloc(300, 7)),
  msg('S', ''),
  msg('Z', 'I'),
  msg('D', Buffer.alloc(70000, 1)),
  msg('E', 'SERROR\0C42P01\0Mnope\0\0'),
  msg('Z', 'T'),
];
const WHOLE = Buffer.concat(STREAM);

test('FrameReader yields the same messages however the stream is split', () => {
  for (let cut = 0; cut <= WHOLE.length; cut += cut < 400 ? 1 : 997) {
    const r = new FrameReader(1 << 20);
    const seen: string[] = [];
    for (const part of [WHOLE.subarray(0, cut), WHOLE.subarray(cut)]) {
      if (part.length === 0) continue;
      r.push(part);
      while (r.next()) seen.push(`${String.fromCharCode(r.type)}:${r.body().length}`);
    }
    assert.deepEqual(seen, ['Q:9', 'P:300', 'S:0', 'Z:1', 'D:70000', 'E:21', 'Z:1'], `cut at ${cut}`);
    assert.equal(r.pending, 0);
  }
});

test('FrameReader survives one byte at a time and keeps bodies intact', () => {
  const r = new FrameReader(1 << 20);
  const bodies: Buffer[] = [];
  for (let i = 0; i < WHOLE.length; i++) {
    r.push(WHOLE.subarray(i, i + 1));
    while (r.next()) bodies.push(Buffer.from(r.body()));
  }
  assert.equal(bodies.length, STREAM.length);
  assert.ok(bodies[4].every((b) => b === 1));
  assert.equal(bodies[0].toString(), 'select 1\0');
});

test('FrameReader rejects hostile lengths before allocating', () => {
  for (const len of [-1, 0, 3, 2 ** 31 - 1]) {
    const r = new FrameReader(1 << 20);
    const b = Buffer.alloc(5);
    b.write('Q');
    b.writeInt32BE(len | 0, 1);
    r.push(b);
    assert.equal(r.next(), false);
    assert.match(r.error ?? '', /invalid message length/);
  }
});

test('MessageScanner reports watched messages at every split and skips the rest', () => {
  for (let cut = 0; cut <= WHOLE.length; cut += cut < 400 ? 1 : 997) {
    for (let cut2 = cut; cut2 <= Math.min(WHOLE.length, cut + 40); cut2 += 13) {
      const s = new MessageScanner(MessageScanner.want('ZE'), 1 << 20);
      const seen: string[] = [];
      const sink = {
        onMessage: (t: number, body: Buffer) => seen.push(String.fromCharCode(t) + body.toString('latin1', 0, 1)),
      };
      for (const part of [WHOLE.subarray(0, cut), WHOLE.subarray(cut, cut2), WHOLE.subarray(cut2)])
        assert.ok(s.scan(part, sink));
      assert.deepEqual(seen, ['ZI', 'ES', 'ZT'], `cuts ${cut}/${cut2}`);
      assert.ok(s.atBoundary);
    }
  }
});

test('MessageScanner flags a bad length', () => {
  const s = new MessageScanner(MessageScanner.want('Z'), 1000);
  assert.equal(s.scan(msg('D', Buffer.alloc(2000)), { onMessage: () => undefined }), false);
  assert.match(s.error!, /invalid message length 2004/);
});

test('MessageScanner refuses unknown types and odd ReadyForQuery lengths, naming where it stopped', () => {
  const sink = { onMessage: () => undefined };
  const ok = msg('C', Buffer.from('SELECT 1\0'));
  const s = new MessageScanner(MessageScanner.want('Z'), 1 << 20, BACKEND_TYPES);
  assert.equal(s.scan(Buffer.concat([ok, msg('y', Buffer.alloc(0))]), sink), false);
  assert.match(s.error!, /invalid message type 0x79/);
  assert.equal(s.errorAt, ok.length);
  const z = new MessageScanner(MessageScanner.want('Z'), 1 << 20, BACKEND_TYPES);
  assert.equal(z.scan(Buffer.concat([ok, ok, msg('Z', Buffer.from('II'))]), sink), false);
  assert.match(z.error!, /invalid message length 6 for message type 0x5a/);
  assert.equal(z.errorAt, 2 * ok.length);
});

test('MessageScanner hands over a watched body split across reads cut to watchMax', () => {
  const seen: Buffer[] = [];
  const s = new MessageScanner(MessageScanner.want('E'), 1 << 30, BACKEND_TYPES, 100);
  const body = Buffer.alloc(5000, 0x61);
  const whole = msg('E', body);
  for (let p = 0; p < whole.length; p += 700)
    assert.ok(s.scan(whole.subarray(p, p + 700), { onMessage: (_t, b) => seen.push(Buffer.from(b)) }));
  assert.equal(seen.length, 1);
  assert.deepEqual(seen[0], body.subarray(0, 100));
  assert.ok(s.atBoundary);
});

function startupPacket(code: number, params: [string, string][] = [], trailing = true): Buffer {
  const body = Buffer.concat([
    ...params.map(([k, v]) => Buffer.from(`${k}\0${v}\0`)),
    trailing ? Buffer.from([0]) : Buffer.alloc(0),
  ]);
  const h = Buffer.alloc(8);
  h.writeInt32BE(8 + body.length, 0);
  h.writeInt32BE(code, 4);
  return Buffer.concat([h, body]);
}

test('decodeStartup: startup, SSL, GSS, cancel and hostile packets', () => {
  const ok = decodeStartup(
    startupPacket(196608, [
      ['user', 'bob'],
      ['database', 'db'],
      ['application_name', 'x'],
    ]),
  );
  assert.equal(ok.kind, 'startup');
  assert.equal(ok.kind === 'startup' && ok.params.get('database'), 'db');
  assert.deepEqual(decodeStartup(startupPacket(80877103, [], false)), { kind: 'ssl' });
  assert.deepEqual(decodeStartup(startupPacket(80877104, [], false)), { kind: 'gssenc' });
  const cancel = Buffer.alloc(16);
  cancel.writeInt32BE(16, 0);
  cancel.writeInt32BE(80877102, 4);
  cancel.writeInt32BE(42, 8);
  cancel.writeInt32BE(-7, 12);
  assert.deepEqual(decodeStartup(cancel), { kind: 'cancel', pid: 42, secret: -7 });
  const invalid = (b: Buffer) => {
    const d = decodeStartup(b);
    assert.equal(d.kind, 'invalid');
    return d.kind === 'invalid' ? d.code : '';
  };
  assert.equal(invalid(startupPacket(196608, [['database', 'x']])), '28000');
  assert.equal(invalid(startupPacket(2 << 16, [['user', 'x']])), '0A000');
  assert.equal(invalid(startupPacket(196608, [['user', 'x']], false)), '08P01');
  assert.equal(invalid(Buffer.from([0, 0, 0, 8, 0, 3])), '08P01');
  const unterminated = startupPacket(196608, [['user', 'x']]);
  assert.equal(invalid(unterminated.subarray(0, unterminated.length - 3)), '08P01');
});

test('SCRAM server accepts node-postgres as client and rejects a wrong password', async () => {
  for (const [stored, given, ok] of [
    ['secret', 'secret', true],
    ['secret', 'wrong', false],
  ] as const) {
    const server = new ScramServer(scramSecret(stored));
    const session = pgSasl.startSession(['SCRAM-SHA-256']);
    const first = server.first(session.response);
    assert.ok('reply' in first);
    await pgSasl.continueSession(session, given, (first as { reply: string }).reply);
    const final = server.final(session.response);
    if (ok) {
      assert.ok('reply' in final, JSON.stringify(final));
      pgSasl.finalizeSession(session, (final as { reply: string }).reply); // throws if our signature is wrong
    } else {
      assert.deepEqual(final, { error: 'password authentication failed', badPassword: true });
    }
  }
});

test('SCRAM server works from a stored verifier, and our client talks to our server', () => {
  const secret = scramSecret('pw');
  const b64 = (b: Buffer) => b.toString('base64');
  const keys = `${b64(secret.storedKey)}:${b64(secret.serverKey)}`;
  const verifier = `SCRAM-SHA-256$${secret.iterations}:${b64(secret.salt)}$${keys}`;
  const server = new ScramServer(scramSecret(verifier));
  const client = new ScramClient('pw');
  const first = server.first(client.first());
  assert.ok('reply' in first);
  const final = server.final(client.final((first as { reply: string }).reply));
  assert.ok('reply' in final);
  client.verify((final as { reply: string }).reply);
  assert.throws(() => client.verify('v=AAAA'), /signature/);
});

test('SCRAM server rejects malformed and channel-binding messages', () => {
  const s = new ScramServer(scramSecret('x'));
  assert.ok('error' in s.first('garbage'));
  assert.ok('error' in new ScramServer(scramSecret('x')).first('p=tls-server-end-point,,n=*,r=abc'));
  const s2 = new ScramServer(scramSecret('x'));
  s2.first('n,,n=*,r=abc');
  assert.deepEqual(s2.final('c=biws,r=other,p=AAAA'), { error: 'SCRAM nonce does not match' });
  assert.equal(decodeSaslInitial(Buffer.from('SCRAM-SHA-256\0\xff\xff\xff\xff', 'latin1'))?.data, '');
  assert.equal(decodeSaslInitial(Buffer.from('SCRAM')), null);
});

test('md5 matches node-postgres and accepts a pre-hashed password', async () => {
  const salt = Buffer.from([1, 2, 3, 4]);
  const theirs = await pgUtils.postgresMd5PasswordHash('bob', 'pw', salt);
  assert.equal(md5Response(md5Stored('pw', 'bob'), salt), theirs);
  const stored = md5Stored('pw', 'bob');
  assert.equal(md5Stored(stored, 'bob'), stored);
  assert.ok(md5Verify(stored, salt, theirs));
  assert.ok(!md5Verify(stored, salt, `md5${'0'.repeat(32)}`));
});

test('backend encoders produce well-formed messages', () => {
  const e = errorResponse({ severity: 'FATAL', code: '28P01', message: 'nope' });
  assert.equal(e[0], 0x45);
  assert.equal(e.readInt32BE(1), e.length - 1);
  assert.ok(e.includes(Buffer.from('C28P01\0')));
  const p = parameterStatus('a', 'b');
  assert.deepEqual([...p], [0x53, 0, 0, 0, 8, 0x61, 0, 0x62, 0]);
  const k = backendKeyData(5, -1);
  assert.equal(k.readInt32BE(5), 5);
  assert.equal(k.readInt32BE(9), -1);
});
