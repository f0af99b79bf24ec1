// MD5 password authentication (PostgreSQL's "md5" method).

import { createHash, timingSafeEqual } from 'node:crypto';

const md5hex = (data: string | Buffer) => createHash('md5').update(data).digest('hex');

/** The stored form "md5" + md5(password + user); a configured password already in that form is kept. */
export function md5Stored(password: string, user: string): string {
  return /^md5[0-9a-f]{32}$/.test(password) ? password : `md5${md5hex(password + user)}`;
}

/** What a client answers to AuthenticationMD5Password: "md5" + md5(md5(password + user) + salt). */
export function md5Response(stored: string, salt: Buffer): string {
  return `md5${md5hex(Buffer.concat([Buffer.from(stored.slice(3)), salt]))}`;
}

export function md5Verify(stored: string, salt: Buffer, answer: string): boolean {
  const want = Buffer.from(md5Response(stored, salt));
  const got = Buffer.from(answer);
  return want.length === got.length && timingSafeEqual(want, got);
}
