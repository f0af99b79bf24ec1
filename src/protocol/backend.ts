// Encoders for the backend (server → client) messages openproxy itself sends.
// Constant messages are built once; the rest are rare (login, errors) and built on demand.

import { cstr } from './messages';

export const AUTH_OK = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
export const SSL_NO = Buffer.from('N');
export const SSL_YES = Buffer.from('S');
/** ReadyForQuery with each transaction status byte: I idle, T in transaction, E failed transaction. */
export const READY_IDLE = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
export const READY_IN_TX = Buffer.from([0x5a, 0, 0, 0, 5, 0x54]);
export const READY_FAILED_TX = Buffer.from([0x5a, 0, 0, 0, 5, 0x45]);

/** Frames a body as one typed protocol message (either direction). */
export function message(type: string, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(body.length + 4, 1);
  body.copy(out, 5);
  return out;
}

export type Severity = 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'LOG' | 'INFO' | 'DEBUG';

export interface ErrorFields {
  severity: Severity;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function fields(f: ErrorFields): Buffer {
  const parts = [
    Buffer.from('S'),
    cstr(f.severity),
    Buffer.from('V'),
    cstr(f.severity),
    Buffer.from('C'),
    cstr(f.code),
    Buffer.from('M'),
    cstr(f.message),
  ];
  if (f.detail) parts.push(Buffer.from('D'), cstr(f.detail));
  if (f.hint) parts.push(Buffer.from('H'), cstr(f.hint));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export const errorResponse = (f: ErrorFields) => message('E', fields(f));
export const noticeResponse = (f: ErrorFields) => message('N', fields(f));

export function authRequest(code: number, extra?: Buffer): Buffer {
  const body = Buffer.allocUnsafe(4 + (extra?.length ?? 0));
  body.writeInt32BE(code, 0);
  extra?.copy(body, 4);
  return message('R', body);
}

/** AuthenticationMD5Password (5) with its 4-byte salt. */
export const authMd5 = (salt: Buffer) => authRequest(5, salt);
/** AuthenticationSASL (10): list of mechanisms, each NUL-terminated, then an empty one. */
export const authSasl = (mechanisms: string[]) =>
  authRequest(10, Buffer.concat([...mechanisms.map(cstr), Buffer.from([0])]));
export const authSaslContinue = (data: string) => authRequest(11, Buffer.from(data, 'utf8'));
export const authSaslFinal = (data: string) => authRequest(12, Buffer.from(data, 'utf8'));

export const parameterStatus = (name: string, value: string) => message('S', Buffer.concat([cstr(name), cstr(value)]));

export function backendKeyData(pid: number, secret: number): Buffer {
  const body = Buffer.allocUnsafe(8);
  body.writeInt32BE(pid | 0, 0);
  body.writeInt32BE(secret | 0, 4);
  return message('K', body);
}

/** For the admin console and tests: RowDescription of text columns. */
export function rowDescription(columns: string[]): Buffer {
  const parts: Buffer[] = [];
  const count = Buffer.allocUnsafe(2);
  count.writeInt16BE(columns.length, 0);
  parts.push(count);
  for (const c of columns) {
    const meta = Buffer.alloc(18);
    meta.writeInt32BE(25, 6); // type oid: text
    meta.writeInt16BE(-1, 10); // type size: variable
    meta.writeInt32BE(-1, 12); // type modifier
    parts.push(cstr(c), meta);
  }
  return message('T', Buffer.concat(parts));
}

export function dataRow(values: (string | null)[]): Buffer {
  const parts: Buffer[] = [];
  const count = Buffer.allocUnsafe(2);
  count.writeInt16BE(values.length, 0);
  parts.push(count);
  for (const v of values) {
    const len = Buffer.allocUnsafe(4);
    if (v === null) {
      len.writeInt32BE(-1, 0);
      parts.push(len);
    } else {
      const b = Buffer.from(v, 'utf8');
      len.writeInt32BE(b.length, 0);
      parts.push(len, b);
    }
  }
  return message('D', Buffer.concat(parts));
}

export const commandComplete = (tag: string) => message('C', cstr(tag));

/** Frontend Query message: openproxy's own statements to a server (reset, SET). */
export const queryMessage = (sql: string) => message('Q', cstr(sql));

/** A server's ErrorResponse body re-sent with another severity (a failed startup SET becomes FATAL). */
export function withSeverity(errorBody: Buffer, severity: Severity): Buffer {
  const fields: Buffer[] = [];
  let i = 0;
  while (i < errorBody.length && errorBody[i] !== 0) {
    const end = errorBody.indexOf(0, i + 1);
    if (end < 0) break;
    const t = errorBody[i];
    if (t === 0x53 || t === 0x56) fields.push(Buffer.from([t]), cstr(severity));
    else fields.push(errorBody.subarray(i, end + 1));
    i = end + 1;
  }
  fields.push(Buffer.from([0]));
  return message('E', Buffer.concat(fields));
}

/** One field (by its type byte: C code, M message) of an ErrorResponse body. */
export function errorField(body: Buffer, field: number): string {
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const end = body.indexOf(0, i + 1);
    if (end < 0) return '';
    if (body[i] === field) return body.toString('utf8', i + 1, end);
    i = end + 1;
  }
  return '';
}
