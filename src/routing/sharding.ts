// Sharding as PgCat does it: a sharding key maps to a shard with pg_bigint_hash (the same function
// PostgreSQL's PARTITION BY HASH uses for a bigint column, so a key lands on the shard whose number
// is its hash partition's remainder) or sha1; a query names its shard with /* shard_id: N */ or
// /* sharding_key: N */, or carries the key in the configured automatic_sharding_key column.

import { createHash } from 'node:crypto';

const M64 = (1n << 64n) - 1n;
/** HASH_PARTITION_SEED in PostgreSQL's partbounds.c. */
const HASH_PARTITION_SEED = 0x7a5b22367996dcfdn;

const rot = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

/** PostgreSQL's hash_uint32_extended (Bob Jenkins' lookup3 mix/final), as a uint64. */
function hashUint32Extended(k: number, seed: bigint): bigint {
  let a = (0x9e3779b9 + 4 + 3923095) >>> 0;
  let b = a;
  let c = a;
  if (seed !== 0n) {
    a = (a + Number(seed >> 32n)) >>> 0;
    b = (b + Number(seed & 0xffffffffn)) >>> 0;
    // mix(a, b, c)
    a = (a - c) >>> 0;
    a = (a ^ rot(c, 4)) >>> 0;
    c = (c + b) >>> 0;
    b = (b - a) >>> 0;
    b = (b ^ rot(a, 6)) >>> 0;
    a = (a + c) >>> 0;
    c = (c - b) >>> 0;
    c = (c ^ rot(b, 8)) >>> 0;
    b = (b + a) >>> 0;
    a = (a - c) >>> 0;
    a = (a ^ rot(c, 16)) >>> 0;
    c = (c + b) >>> 0;
    b = (b - a) >>> 0;
    b = (b ^ rot(a, 19)) >>> 0;
    a = (a + c) >>> 0;
    c = (c - b) >>> 0;
    c = (c ^ rot(b, 4)) >>> 0;
    b = (b + a) >>> 0;
  }
  a = (a + k) >>> 0;
  // final(a, b, c)
  c = (c ^ b) >>> 0;
  c = (c - rot(b, 14)) >>> 0;
  a = (a ^ c) >>> 0;
  a = (a - rot(c, 11)) >>> 0;
  b = (b ^ a) >>> 0;
  b = (b - rot(a, 25)) >>> 0;
  c = (c ^ b) >>> 0;
  c = (c - rot(b, 16)) >>> 0;
  a = (a ^ c) >>> 0;
  a = (a - rot(c, 4)) >>> 0;
  b = (b ^ a) >>> 0;
  b = (b - rot(a, 14)) >>> 0;
  c = (c ^ b) >>> 0;
  c = (c - rot(b, 24)) >>> 0;
  return (BigInt(b) << 32n) | BigInt(c);
}

/** hashint8extended(key, HASH_PARTITION_SEED) combined as compute_partition_hash_value does for one column. */
export function pgBigintHash(key: bigint): bigint {
  const v = BigInt.asIntN(64, key);
  const lo = Number(BigInt.asUintN(32, v));
  const hi = Number(BigInt.asUintN(32, v >> 32n));
  const lohalf = (lo ^ (v >= 0n ? hi : ~hi >>> 0)) >>> 0;
  const h = hashUint32Extended(lohalf, HASH_PARTITION_SEED);
  // hash_combine64(0, h)
  return (h + 0x49a0f4dd15e5a8e3n) & M64;
}

export type ShardingFunction = 'pg_bigint_hash' | 'sha1';

/** The shard (0 … shards-1) of a sharding key; null if the key is not a 64-bit integer. */
export function shardOfKey(fn: ShardingFunction, key: string, shards: number): number | null {
  const t = key.trim();
  if (!/^-?\d{1,20}$/.test(t)) return null;
  const k = BigInt(t);
  if (k < -(1n << 63n) || k >= 1n << 63n) return null;
  if (fn === 'sha1') {
    const hex = createHash('sha1').update(k.toString()).digest('hex');
    return parseInt(hex.slice(-8), 16) % shards;
  }
  return Number(pgBigintHash(k) % BigInt(shards));
}

const SHARD_ID_COMMENT = /\/\*\s*shard_id\s*:\s*(\d+)\s*\*\//i;
const SHARDING_KEY_COMMENT = /\/\*\s*sharding_key\s*:\s*(-?\d+)\s*\*\//i;

/** /* shard_id: N *\/ or /* sharding_key: K *\/ in a query's text. */
export function shardComment(sql: string): { shardId?: number; key?: string } | null {
  if (!sql.includes('/*')) return null;
  const id = SHARD_ID_COMMENT.exec(sql);
  if (id) return { shardId: Number(id[1]) };
  const key = SHARDING_KEY_COMMENT.exec(sql);
  return key ? { key: key[1] } : null;
}

/**
 * The value of `column` (automatic_sharding_key, optionally table-qualified: "users.id") in a
 * query: `column = 123`, `column = $1` (taken from the Bind's parameters), with any table qualifier
 * or alias (the column name decides), or a single-row
 * `INSERT … (…, column, …) VALUES (…)`. Null when the query does not pin it to one value.
 */
export function automaticKey(sql: string, column: string, params: (string | null)[] | null): string | null {
  const dot = column.lastIndexOf('.');
  const col = (dot >= 0 ? column.slice(dot + 1) : column).toLowerCase();
  const table = dot >= 0 ? column.slice(0, dot).toLowerCase() : '';
  const esc = col.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // Any qualifier: queries use aliases (FROM users u WHERE u.id = …).
  const qual = '(?:"?\\w+"?\\.)?';
  const eq = new RegExp(`(?:^|[^\\w."])${qual}"?${esc}"?\\s*=\\s*(?:'(-?\\d+)'|(-?\\d+)|\\$(\\d+))`, 'i').exec(sql);
  if (eq) return valueOf(eq[1] ?? eq[2], eq[3], params);
  const ins = /^\s*insert\s+into\s+("?[\w.]+"?)\s*\(([^)]*)\)\s*values\s*\(([^)]*)\)\s*(?:returning\b.*)?;?\s*$/is.exec(
    sql,
  );
  if (!ins) return null;
  if (table && ins[1].replace(/"/g, '').toLowerCase().split('.').pop() !== table.split('.').pop()) return null;
  const cols = ins[2].split(',').map((c) => c.trim().replace(/"/g, '').toLowerCase());
  const vals = ins[3].split(',').map((v) => v.trim());
  const i = cols.indexOf(col);
  if (i < 0 || cols.length !== vals.length) return null;
  const m = /^(?:'(-?\d+)'|(-?\d+)|\$(\d+))$/.exec(vals[i]);
  return m ? valueOf(m[1] ?? m[2], m[3], params) : null;
}

function valueOf(
  literal: string | undefined,
  param: string | undefined,
  params: (string | null)[] | null,
): string | null {
  if (literal !== undefined) return literal;
  const n = Number(param);
  return params && n >= 1 && n <= params.length ? params[n - 1] : null;
}

/** default_shard: "shard.N" / "shard_N" / "N", or "random". */
export function defaultShard(setting: string, shards: number): number {
  const m = /^(?:shard[._])?(\d+)$/i.exec(setting.trim());
  if (m) return Math.min(Number(m[1]), shards - 1);
  return Math.floor(Math.random() * shards);
}
