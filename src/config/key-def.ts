// The shape of one configuration key in the table (config/table.ts), and a constructor per section.

export type Section = 'general' | 'virtual_router' | 'hba' | 'listener' | 'pool' | 'user' | 'shard';
export type KeyType = 'string' | 'int' | 'bool' | 'enum' | 'strings' | 'servers';
export type Unit = 'ms' | 's' | 'count' | 'bytes';

export interface KeyDef {
  /** Key name as written in TOML. */
  key: string;
  section: Section;
  type: KeyType;
  /** Default when absent; undefined = optional with no value, see `required`. */
  default?: string | number | boolean | string[];
  /** How the docs describe a default that depends on the machine (the example config then shows the key commented). */
  defaultDoc?: string;
  required?: boolean;
  unit?: Unit;
  /** Allowed values for enum keys (compared case-insensitively, stored lower-case). */
  values?: string[];
  min?: number;
  max?: number;
  /** Whether a reload (SIGHUP / RELOAD) changes it for the running process. */
  changeable: boolean;
  /** Never printed (SHOW CONFIG, logs): passwords. */
  secret?: boolean;
  /** Other spellings accepted (the seed's own example uses some of them). */
  aliases?: string[];
  doc: string;
}

export const g = (d: Omit<KeyDef, 'section'>): KeyDef => ({ section: 'general', ...d });
/** [general.virtual_router]: restart-only unless a key says `changeable: true` (applied without dropping the VIPs). */
export const vr = (d: Omit<KeyDef, 'section' | 'changeable'> & { changeable?: boolean }): KeyDef => ({
  section: 'virtual_router',
  changeable: false,
  ...d,
});
export const p = (d: Omit<KeyDef, 'section'>): KeyDef => ({ section: 'pool', ...d });
export const u = (d: Omit<KeyDef, 'section'>): KeyDef => ({ section: 'user', ...d });
export const s = (d: Omit<KeyDef, 'section'>): KeyDef => ({ section: 'shard', ...d });
/** [[general.hba]] rules: reloadable like the rest of access control. */
export const h = (d: Omit<KeyDef, 'section' | 'changeable'>): KeyDef => ({ section: 'hba', changeable: true, ...d });
/** [[general.listeners]]: extra client ports bound to a role, added and removed by reload. */
export const l = (d: Omit<KeyDef, 'section' | 'changeable'>): KeyDef => ({
  section: 'listener',
  changeable: true,
  ...d,
});
