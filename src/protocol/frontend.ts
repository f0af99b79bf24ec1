// Decoders for the frontend (client → server) messages openproxy must understand before a
// server is attached: the untyped startup family, and PasswordMessage / SASL responses.

/** PostgreSQL's own limit for a startup packet (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_LENGTH = 10000;

export const PROTOCOL_3_0 = 196608; // 3 << 16
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

export type StartupPacket =
  | { kind: 'startup'; params: Map<string, string> }
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number }
  | { kind: 'invalid'; code: string; reason: string };

/**
 * Decodes one complete untyped startup-family packet (length included in `pkt`).
 * Never throws: bad input comes back as { kind: 'invalid' } with the SQLSTATE to answer.
 */
export function decodeStartup(pkt: Buffer): StartupPacket {
  if (pkt.length < 8) return { kind: 'invalid', code: '08P01', reason: 'startup packet too short' };
  const code = pkt.readInt32BE(4);
  if (code === SSL_REQUEST_CODE && pkt.length === 8) return { kind: 'ssl' };
  if (code === GSSENC_REQUEST_CODE && pkt.length === 8) return { kind: 'gssenc' };
  if (code === CANCEL_REQUEST_CODE) {
    if (pkt.length !== 16) return { kind: 'invalid', code: '08P01', reason: 'invalid CancelRequest length' };
    return { kind: 'cancel', pid: pkt.readInt32BE(8), secret: pkt.readInt32BE(12) };
  }
  if (code >> 16 !== 3) {
    return {
      kind: 'invalid',
      code: '0A000',
      reason: `unsupported frontend protocol ${code >> 16}.${code & 0xffff}: openproxy supports 3.0`,
    };
  }
  const params = new Map<string, string>();
  let i = 8;
  for (;;) {
    const kEnd = pkt.indexOf(0, i);
    if (kEnd < 0) return { kind: 'invalid', code: '08P01', reason: 'startup packet not terminated' };
    if (kEnd === i) break; // the empty name that ends the list
    const vEnd = pkt.indexOf(0, kEnd + 1);
    if (vEnd < 0) return { kind: 'invalid', code: '08P01', reason: 'startup parameter value not terminated' };
    params.set(pkt.toString('utf8', i, kEnd), pkt.toString('utf8', kEnd + 1, vEnd));
    i = vEnd + 1;
  }
  if (i !== pkt.length - 1) return { kind: 'invalid', code: '08P01', reason: 'bytes after the startup parameter list' };
  if (!params.get('user'))
    return { kind: 'invalid', code: '28000', reason: 'no PostgreSQL user name specified in startup packet' };
  return { kind: 'startup', params };
}

/** PasswordMessage body: a NUL-terminated string. */
export function decodePassword(body: Buffer): string | null {
  const end = body.indexOf(0);
  return end < 0 ? null : body.toString('utf8', 0, end);
}

/** SASLInitialResponse body: mechanism name, Int32 length (-1 = none), data. */
export function decodeSaslInitial(body: Buffer): { mechanism: string; data: string } | null {
  const end = body.indexOf(0);
  if (end < 0 || body.length < end + 5) return null;
  const len = body.readInt32BE(end + 1);
  if (len < -1 || end + 5 + Math.max(len, 0) !== body.length) return null;
  return { mechanism: body.toString('utf8', 0, end), data: len < 0 ? '' : body.toString('utf8', end + 5) };
}
