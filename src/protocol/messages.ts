// Message type codes (one table for both directions) and the few frontend message fields the
// data path decodes: a Parse's name and text, a Bind's statement name and parameters. Everything
// else passes through as bytes.

/** Frontend (client → server) message types. Const enums: every use compiles to the number. */
export const enum FE {
  QUERY = 0x51, // Q
  PARSE = 0x50, // P
  BIND = 0x42, // B
  EXECUTE = 0x45, // E
  DESCRIBE = 0x44, // D
  CLOSE = 0x43, // C
  FLUSH = 0x48, // H
  SYNC = 0x53, // S
  FUNCTION_CALL = 0x46, // F
  TERMINATE = 0x58, // X
  PASSWORD = 0x70, // p (also SASL responses)
}

/** PostgreSQL's PQ_LARGE_MESSAGE_LIMIT and PQ_SMALL_MESSAGE_LIMIT (bytes, length word included). */
export const LARGE_MESSAGE_LIMIT = 0x3fffffff;
export const SMALL_MESSAGE_LIMIT = 10000;

/**
 * Every message type a client may send once the startup packet is done, with the longest body
 * PostgreSQL accepts for it (postgres.c: 1 GB for statements, bind values and COPY data, 10,000
 * bytes for the small control messages); 0 = not a frontend type. PostgreSQL rejects any other
 * type byte at once, before reading the length, and a length over the limit as soon as it is read.
 */
export const FRONTEND_TYPES: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (const c of 'QPBFdp') t[c.charCodeAt(0)] = LARGE_MESSAGE_LIMIT;
  for (const c of 'EDCHSXcf') t[c.charCodeAt(0)] = SMALL_MESSAGE_LIMIT;
  return t;
})();

/**
 * Every message type a server sends (PostgreSQL's protocol chapter, 3.0 and 3.2): a stream with any
 * other type byte is not PostgreSQL's and is cut there.
 */
export const BACKEND_TYPES: Uint8Array = (() => {
  const t = new Uint8Array(256);
  for (const c of 'RK23CdcGHWDIEVnNAtS1sTZv') t[c.charCodeAt(0)] = 1;
  return t;
})();

/** Backend (server → client) message types. */
export const enum BE {
  PARSE_COMPLETE = 0x31, // 1
  BIND_COMPLETE = 0x32, // 2
  CLOSE_COMPLETE = 0x33, // 3
  NO_DATA = 0x6e, // n
  PARAMETER_DESCRIPTION = 0x74, // t
  ROW_DESCRIPTION = 0x54, // T
  NOTICE = 0x4e, // N
  PARAMETER_STATUS = 0x53, // S
  ERROR = 0x45, // E
  DATA_ROW = 0x44, // D
  READY = 0x5a, // Z
}

/** ReadyForQuery transaction status bytes. */
export const TX_IDLE = 0x49; // I
export const TX_IN = 0x54; // T
export const TX_FAILED = 0x45; // E

/** A string as a NUL-terminated C string. */
export const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf8');

/** The statement name of a Parse message starting at `start` ('' = unnamed). */
export function parseName(buf: Buffer, start: number): string {
  const nameEnd = buf.indexOf(0, start + 5);
  return nameEnd > start + 5 ? buf.toString('utf8', start + 5, nameEnd) : '';
}

/** The query text of a Parse message starting at `start`. */
export function parseText(buf: Buffer, start: number): string {
  const nameEnd = buf.indexOf(0, start + 5);
  const textEnd = buf.indexOf(0, nameEnd + 1);
  return nameEnd > 0 && textEnd > nameEnd ? buf.toString('utf8', nameEnd + 1, textEnd) : '';
}

/** Where a Bind message starting at `start` names its statement: [name start, name end) (the parameters follow). */
export function bindStatement(buf: Buffer, start: number): [number, number] {
  const portalEnd = buf.indexOf(0, start + 5);
  return [portalEnd + 1, buf.indexOf(0, portalEnd + 1)];
}

/** A Bind's parameter values as text (binary int2/int4/int8 decoded; other binary values null). */
export function bindParams(buf: Buffer, from: number, end: number): (string | null)[] | null {
  let p = from;
  if (p + 2 > end) return null;
  const nFormats = buf.readInt16BE(p);
  p += 2;
  const formats: number[] = [];
  for (let i = 0; i < nFormats; i++, p += 2) formats.push(buf.readInt16BE(p));
  const n = buf.readInt16BE(p);
  p += 2;
  const out: (string | null)[] = [];
  for (let i = 0; i < n && p + 4 <= end; i++) {
    const len = buf.readInt32BE(p);
    p += 4;
    if (len < 0) {
      out.push(null);
      continue;
    }
    const binary = (nFormats === 1 ? formats[0] : (formats[i] ?? 0)) === 1;
    if (!binary) out.push(buf.toString('utf8', p, p + len));
    else if (len === 8) out.push(buf.readBigInt64BE(p).toString());
    else if (len === 4) out.push(String(buf.readInt32BE(p)));
    else if (len === 2) out.push(String(buf.readInt16BE(p)));
    else out.push(null);
    p += len;
  }
  return out;
}
