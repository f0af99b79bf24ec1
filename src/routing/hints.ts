// Client routing commands as PgCat has them, answered by openproxy itself between transactions:
// SET SERVER ROLE TO 'primary' | 'replica' | 'any' | 'auto' | 'default', SHOW SERVER ROLE,
// SET PRIMARY READS TO on | off | default, SHOW PRIMARY READS.

export type RoleHint = 'primary' | 'replica' | 'any' | 'auto';

export type Hint =
  | { kind: 'set_role'; role: RoleHint | null }
  | { kind: 'show_role' }
  | { kind: 'set_primary_reads'; on: boolean | null }
  | { kind: 'show_primary_reads' };

const SET_ROLE = /^\s*set\s+server\s+role\s+(?:to|=)\s*'?(primary|replica|any|auto|default)'?\s*;?\s*$/i;
const SHOW_ROLE = /^\s*show\s+server\s+role\s*;?\s*$/i;
const SET_PRIMARY_READS = /^\s*set\s+primary\s+reads\s+(?:to|=)\s*'?(on|off|true|false|default)'?\s*;?\s*$/i;
const SHOW_PRIMARY_READS = /^\s*show\s+primary\s+reads\s*;?\s*$/i;

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
  return null;
}
