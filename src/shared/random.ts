// Cryptographically random bytes for logins (md5 salts), drawn from a per-thread pool that is
// refilled by one randomFillSync per 1,024 salts instead of one call per login.

import { randomFillSync } from 'node:crypto';

const pool = Buffer.alloc(4096);
let used = pool.length;

/** `n` (≤ 4096) fresh random bytes, copied out of the pool. */
export function randomBytesPooled(n: number): Buffer {
  if (used + n > pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  const out = Buffer.from(pool.subarray(used, used + n));
  pool.fill(0, used, used + n); // a byte is never handed out twice
  used += n;
  return out;
}
