// The one declaration of every configuration key: type, default, unit, reload behaviour, docs.
// The loader validates against it, SHOW CONFIG lists it, and the man page and example config are
// checked against it by a test.

import type { KeyDef, Section } from './key-def';
import { BALANCE_KEYS, LISTENER_KEYS } from './keys-balance';
import { GENERAL_KEYS } from './keys-general';
import { HBA_KEYS } from './keys-hba';
import { LIMIT_KEYS } from './keys-limits';
import { SOCKET_KEYS } from './keys-socket';
import { POOL_KEYS } from './keys-pool';

export type { KeyDef, KeyType, Section, Unit } from './key-def';

export const CONFIG_TABLE: readonly KeyDef[] = [
  ...GENERAL_KEYS,
  ...SOCKET_KEYS,
  ...LIMIT_KEYS,
  ...BALANCE_KEYS,
  ...HBA_KEYS,
  ...LISTENER_KEYS,
  ...POOL_KEYS,
];

/** PgCat keys that load without error but have no effect in openproxy (warned by name). */
export const IGNORED_PGCAT_KEYS: ReadonlySet<string> = new Set([
  'enable_prometheus_exporter',
  'log_level',
  'server_round_robin',
  'tcp_user_timeout',
  'admin_auth_type',
  'auth_query_user',
  'auth_query_password',
  'cleanup_server_connections',
  'sharding_key_regex',
  'shard_id_regex',
  'regex_search_limit',
  'plugins',
  'prepared_statements',
  'mirrors',
  'server_tls_verify',
  'pool_name',
]);

export function keysOf(section: Section): KeyDef[] {
  return CONFIG_TABLE.filter((d) => d.section === section);
}
