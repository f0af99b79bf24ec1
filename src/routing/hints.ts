// Client routing commands as PgCat has them, answered by openproxy itself between transactions:
// SET SERVER ROLE TO 'primary' | 'replica' | 'any' | 'auto' | 'default', SHOW SERVER ROLE,
// SET PRIMARY READS TO on | off | default, SHOW PRIMARY READS, SET SHARD TO 'N' | 'default',
// SET SHARDING KEY TO 'K', SHOW SHARD.

export type RoleHint = 'primary' | 'replica' | 'any' | 'auto';

export type Hint =
  | { kind: 'set_role'; role: RoleHint | null }
  | { kind: 'show_role' }
  | { kind: 'set_primary_reads'; on: boolean | null }
  | { kind: 'show_primary_reads' }
  | { kind: 'set_shard'; shard: number | null }
  | { kind: 'set_sharding_key'; key: string }
  | { kind: 'show_shard' };

const SET_ROLE = /^\s*set\s+server\s+role\s+(?:to|=)\s*'?(primary|replica|any|auto|default)'?\s*;?\s*$/i;
const SHOW_ROLE = /^\s*show\s+server\s+role\s*;?\s*$/i;
const SET_PRIMARY_READS = /^\s*set\s+primary\s+reads\s+(?:to|=)\s*'?(on|off|true|false|default)'?\s*;?\s*$/i;
const SHOW_PRIMARY_READS = /^\s*show\s+primary\s+reads\s*;?\s*$/i;
const SET_SHARD = /^\s*set\s+shard\s+(?:to|=)\s*'?(\d+|default)'?\s*;?\s*$/i;
const SET_SHARDING_KEY = /^\s*set\s+sharding\s+key\s+(?:to|=)\s*'?(-?\d+)'?\s*;?\s*$/i;
const SHOW_SHARD = /^\s*show\s+shard\s*;?\s*$/i;

/** A routing command, or null for ordinary SQL. Cheap for ordinary SQL: one character test. */
export function parseHint(sql: string): Hint | null {
  if (sql.length > 64) return null;
  const c = sql.trimStart().charCodeAt(0) | 0x20;
  if (c !== 0x73) return null; // 's'
  let m = SET_ROLE.exec(sql);
  if (m) {
    const r = m[1].toLowerCase();
    return { kind: 'set_role', role: r === 'default' ? null : (r as RoleHint) };
  }
  if (SHOW_ROLE.test(sql)) return { kind: 'show_role' };
  m = SET_PRIMARY_READS.exec(sql);
  if (m) {
    const v = m[1].toLowerCase();
    return { kind: 'set_primary_reads', on: v === 'default' ? null : v === 'on' || v === 'true' };
  }
  if (SHOW_PRIMARY_READS.test(sql)) return { kind: 'show_primary_reads' };
  m = SET_SHARD.exec(sql);
  if (m) return { kind: 'set_shard', shard: m[1].toLowerCase() === 'default' ? null : Number(m[1]) };
  m = SET_SHARDING_KEY.exec(sql);
  if (m) return { kind: 'set_sharding_key', key: m[1] };
  if (SHOW_SHARD.test(sql)) return { kind: 'show_shard' };
  return null;
}
