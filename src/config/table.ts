// The one declaration of every configuration key: type, default, unit, reload behaviour, docs.
// The loader validates against it, SHOW CONFIG lists it, and the man page and example config are
// checked against it by a test.

export type Section = 'general' | 'virtual_router' | 'pool' | 'user' | 'shard';
export type KeyType = 'string' | 'int' | 'bool' | 'enum' | 'strings' | 'servers';
export type Unit = 'ms' | 's' | 'count' | 'bytes';

export interface KeyDef {
  /** Key name as written in TOML. */
  key: string;
  section: Section;
  type: KeyType;
  /** Default when absent; undefined = optional with no value, see `required`. */
  default?: string | number | boolean | string[];
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

const g = (d: Omit<KeyDef, 'section'>): KeyDef => ({ section: 'general', ...d });
const vr = (d: Omit<KeyDef, 'section' | 'changeable'>): KeyDef => ({ section: 'virtual_router', changeable: false, ...d });
const p = (d: Omit<KeyDef, 'section'>): KeyDef => ({ section: 'pool', ...d });
const u = (d: Omit<KeyDef, 'section'>): KeyDef => ({ section: 'user', ...d });
const s = (d: Omit<KeyDef, 'section'>): KeyDef => ({ section: 'shard', ...d });

export const CONFIG_TABLE: readonly KeyDef[] = [
  g({ key: 'host', type: 'string', default: '0.0.0.0', changeable: false, doc: 'Address the client listener binds to.' }),
  g({ key: 'port', type: 'int', default: 6432, min: 1, max: 65535, changeable: false, doc: 'Port the client listener binds to.' }),
  g({ key: 'worker_threads', type: 'int', default: 5, min: 1, max: 256, changeable: false, doc: 'Proxy worker threads; set it to the number of CPU cores.' }),
  g({ key: 'connect_timeout', type: 'int', unit: 'ms', default: 1000, min: 1, changeable: true, doc: 'Deadline for opening a server connection.' }),
  g({ key: 'query_wait_timeout', type: 'int', unit: 'ms', default: 120000, min: 0, changeable: true, doc: "How long a client waits in line for a server connection while its pool is at pool_size, in session and transaction mode, before it gets 53300 naming the pool; 0 = no limit. PgBouncer's query_wait_timeout (there in seconds, default 120)." }),
  g({ key: 'idle_timeout', type: 'int', unit: 'ms', default: 600000, min: 0, changeable: true, doc: 'Close server connections idle this long (min_pool_size connections are kept). 0 = never.' }),
  g({ key: 'server_lifetime', type: 'int', unit: 'ms', default: 3600000, min: 0, changeable: true, doc: 'Close a server connection this old when it is next released. 0 = no limit.' }),
  g({ key: 'idle_client_in_transaction_timeout', type: 'int', unit: 'ms', default: 0, min: 0, changeable: true, doc: 'Disconnect clients idle inside a transaction this long. 0 = off.' }),
  g({ key: 'healthcheck_timeout', type: 'int', unit: 'ms', default: 1000, min: 1, changeable: true, doc: 'Deadline for a health-check reply; a server that misses it is banned.' }),
  g({ key: 'healthcheck_delay', type: 'int', unit: 'ms', default: 30000, min: 0, changeable: true, doc: 'A server connection idle this long is health-checked before it is used.' }),
  g({ key: 'shutdown_timeout', type: 'int', unit: 'ms', default: 60000, min: 0, changeable: true, doc: 'On SIGINT, wait this long for clients to leave before exiting.' }),
  g({ key: 'ban_time', type: 'int', unit: 's', default: 60, min: 0, changeable: true, doc: 'How long a failed server stays out of the pool.' }),
  g({ key: 'primary_wait_timeout', type: 'int', unit: 'ms', default: 5000, min: 0, changeable: true, doc: 'While no primary is known (failover), a write transaction waits this long for one before the client gets 08006; reads keep going to replicas.' }),
  g({ key: 'replica_lag_interval', type: 'int', unit: 'ms', default: 500, min: 50, changeable: true, doc: 'How often the HA thread measures replica lag (for max_replica_lag, max_replica_lag_ms and read_your_writes).' }),
  g({ key: 'tcp_keepalives_idle', type: 'int', unit: 's', default: 5, min: 0, changeable: true, doc: 'Server sockets: idle time before the first TCP keepalive probe.' }),
  g({ key: 'tcp_keepalives_interval', type: 'int', unit: 's', default: 5, min: 1, changeable: true, doc: 'Server sockets: time between TCP keepalive probes.' }),
  g({ key: 'tcp_keepalives_count', type: 'int', unit: 'count', default: 5, min: 1, changeable: true, doc: 'Server sockets: unanswered keepalive probes before the connection is dropped.' }),
  g({ key: 'auth_type', type: 'enum', values: ['md5', 'scram-sha-256'], default: 'md5', changeable: true, doc: 'How clients authenticate to openproxy.' }),
  g({ key: 'prepared_statements_cache_size', type: 'int', unit: 'count', default: 0, min: 0, changeable: true, doc: 'Transaction mode and routed sessions (session mode with read/write splitting): protocol-level named prepared statements are shared across server connections, each connection keeping at most this many (LRU, evicted ones are closed). 0 = off: unnamed statements only; a named one gets error 26000 saying so.' }),
  g({ key: 'admin_username', type: 'string', default: 'admin', changeable: true, doc: 'User name for the admin console (database openproxy).' }),
  g({ key: 'admin_userpassword', type: 'string', secret: true, aliases: ['admin_password'], changeable: true, doc: 'Password for the admin console.' }),
  g({ key: 'tls_certificate', type: 'string', changeable: false, doc: 'PEM certificate for client TLS; with tls_private_key, SSLRequest is answered S.' }),
  g({ key: 'tls_private_key', type: 'string', changeable: false, doc: 'PEM private key for client TLS.' }),
  g({ key: 'server_tls', type: 'bool', default: false, changeable: true, doc: 'Use TLS to PostgreSQL when the server offers it.' }),
  g({ key: 'verify_server_certificate', type: 'bool', default: false, changeable: true, doc: 'With server_tls: reject self-signed or unverifiable server certificates.' }),
  g({ key: 'renew_interval', type: 'int', unit: 'ms', default: 5000, min: 100, aliases: ['autoreload'], changeable: true, doc: 'Period to re-read the TOML (with reload_toml) and to refresh server roles.' }),
  g({ key: 'reload_toml', type: 'bool', default: true, changeable: true, doc: 'Re-read the TOML every renew_interval when the file changed.' }),
  g({ key: 'dns_cache_enabled', type: 'bool', default: false, changeable: false, doc: 'Resolve server host names at most once per dns_max_ttl (re-resolved in the background); when a name moves, new connections go to the new address and old ones drain (closed when released). A failed lookup keeps the last address.' }),
  g({ key: 'dns_max_ttl', type: 'int', unit: 's', default: 30, min: 1, aliases: ['dns_mas_ttl'], changeable: true, doc: 'How long a resolved server address is used before the name is resolved again.' }),
  g({ key: 'prometheus_exporter_port', type: 'int', default: 9930, min: 0, max: 65535, changeable: false, doc: 'Port of the Prometheus exporter. 0 = off.' }),
  g({ key: 'log_client_connections', type: 'bool', default: false, changeable: true, doc: 'Log every client login.' }),
  g({ key: 'log_client_disconnections', type: 'bool', default: false, changeable: true, doc: 'Log every client disconnect with its reason.' }),

  vr({ key: 'interface', type: 'string', required: true, doc: 'Network interface that holds the virtual IPs.' }),
  vr({ key: 'router_id', type: 'int', required: true, min: 1, max: 255, doc: 'VRRP virtual router id (VRID); separates clusters on one network.' }),
  vr({ key: 'priority', type: 'int', default: 100, min: 0, max: 255, doc: 'VRRP priority; the highest becomes MASTER.' }),
  vr({ key: 'advert_int', type: 'int', unit: 's', default: 1, min: 1, max: 255, doc: 'Seconds between VRRP advertisements.' }),
  vr({ key: 'vip_addresses', type: 'strings', required: true, doc: 'Virtual IPv4 addresses with prefix length, e.g. ["192.168.35.200/24"].' }),
  vr({ key: 'pre_promote_script', type: 'string', doc: 'Command (sh -c) run on the way to MASTER before the VIPs are added; environment OPENPROXY_VRRP_STATE, OPENPROXY_VRRP_REASON, OPENPROXY_VRRP_ROUTER_ID, OPENPROXY_VRRP_VIPS. A failure is logged; the transition goes ahead.' }),
  vr({ key: 'pre_demote_script', type: 'string', doc: 'Command (sh -c) run on the way out of MASTER before the VIPs are removed; same environment as pre_promote_script.' }),
  vr({ key: 'unicast_peers', type: 'strings', doc: 'Peer IPv4 addresses for unicast VRRP where multicast is unavailable.' }),

  p({ key: 'pool_mode', type: 'enum', values: ['session', 'transaction'], default: 'transaction', changeable: true, doc: 'session: one server connection per client; transaction: a server connection per transaction, with session state tracked and unmovable state pinned.' }),
  p({ key: 'load_balancing_mode', type: 'enum', values: ['random', 'loc', 'round_robin'], default: 'random', changeable: true, doc: 'How a replica is chosen for reads.' }),
  p({ key: 'default_role', type: 'enum', values: ['any', 'primary', 'replica'], default: 'any', changeable: true, doc: 'Role a query goes to when the parser does not decide.' }),
  p({ key: 'query_parser_enabled', type: 'bool', default: false, changeable: true, doc: 'Parse queries (routing, sharding keys).' }),
  p({ key: 'query_parser_read_write_splitting', type: 'bool', default: false, changeable: true, doc: 'Send reads to replicas and writes to the primary.' }),
  p({ key: 'query_parser_max_length', type: 'int', unit: 'bytes', min: 1, changeable: true, doc: 'Statements longer than this are not parsed (go to default_role). Absent = unlimited.' }),
  p({ key: 'max_replica_lag', type: 'int', unit: 'bytes', default: 0, min: 0, changeable: true, doc: 'A replica whose replay position is further than this behind the primary (pg_current_wal_insert_lsn - pg_last_wal_replay_lsn) takes no reads until it catches up. 0 = off.' }),
  p({ key: 'max_replica_lag_ms', type: 'int', unit: 'ms', default: 0, min: 0, changeable: true, doc: 'A replica that has not replayed WAL the primary wrote more than this many ms ago (measured every replica_lag_interval) takes no reads until it catches up. 0 = off.' }),
  p({ key: 'read_your_writes', type: 'bool', default: true, changeable: true, doc: "With read/write splitting: after a client's transaction on the primary commits, its later reads go only to replicas that have replayed past that point (or to the primary), so a client always sees its own writes. Costs no round trip: the HA thread's primary position (every replica_lag_interval) is the bound. Off: reads may reach a replica before it replays the client's write." }),
  p({ key: 'primary_reads_enabled', type: 'bool', default: false, changeable: true, doc: 'The primary also takes reads.' }),
  p({ key: 'sharding_function', type: 'enum', values: ['pg_bigint_hash', 'sha1'], default: 'pg_bigint_hash', changeable: true, doc: 'Maps a sharding key to a shard.' }),
  p({ key: 'automatic_sharding_key', type: 'string', changeable: true, doc: 'Column whose value in a query selects the shard.' }),
  p({ key: 'default_shard', type: 'string', default: 'shard.0', changeable: true, doc: 'Shard for queries without a sharding key.' }),
  p({ key: 'idle_timeout', type: 'int', unit: 'ms', min: 0, changeable: true, doc: 'Per-pool override of general.idle_timeout.' }),
  p({ key: 'connect_timeout', type: 'int', unit: 'ms', min: 1, changeable: true, doc: 'Per-pool override of general.connect_timeout.' }),
  p({ key: 'server_lifetime', type: 'int', unit: 'ms', min: 0, changeable: true, doc: 'Per-pool override of general.server_lifetime.' }),

  u({ key: 'username', type: 'string', required: true, changeable: true, doc: 'Name the client logs in with.' }),
  u({ key: 'password', type: 'string', secret: true, changeable: true, doc: 'Password the client must give (plain text, md5… or SCRAM-SHA-256$… verifier).' }),
  u({ key: 'server_username', type: 'string', changeable: true, doc: 'User openproxy logs in to PostgreSQL as; default: username.' }),
  u({ key: 'server_password', type: 'string', secret: true, changeable: true, doc: 'Password openproxy gives PostgreSQL; default: password.' }),
  u({ key: 'pool_size', type: 'int', unit: 'count', default: 10, min: 1, changeable: true, doc: 'Maximum server connections per server for this user, across all worker threads.' }),
  u({ key: 'min_pool_size', type: 'int', unit: 'count', default: 0, min: 0, changeable: true, doc: 'Server connections kept open even when idle.' }),
  u({ key: 'statement_timeout', type: 'int', unit: 'ms', default: 0, min: 0, changeable: true, doc: 'openproxy cancels a statement running longer than this on the server (the client gets 57014 and stays connected). 0 = off.' }),
  u({ key: 'pool_mode', type: 'enum', values: ['session', 'transaction'], changeable: true, doc: 'Per-user override of the pool mode.' }),
  u({ key: 'server_lifetime', type: 'int', unit: 'ms', min: 0, changeable: true, doc: 'Per-user override of server_lifetime.' }),

  s({ key: 'database', type: 'string', required: true, changeable: true, doc: 'Database name on the servers.' }),
  s({ key: 'servers', type: 'servers', required: true, changeable: true, doc: 'List of [host, port, role] with role primary, replica or auto (optional 4th element: Patroni REST port).' }),
  s({ key: 'use_patroni', type: 'bool', default: false, changeable: true, doc: 'Learn the role of auto servers from Patroni (GET /patroni), confirmed by pg_is_in_recovery(); a writable server Patroni does not call primary is fenced.' }),
  s({ key: 'patroni_port', type: 'int', default: 8008, min: 1, max: 65535, changeable: true, doc: 'Patroni REST API port of the servers (a server entry may carry its own as a fourth element).' }),
];

/** PgCat keys that load without error but have no effect in openproxy (warned by name). */
export const IGNORED_PGCAT_KEYS: ReadonlySet<string> = new Set([
  'enable_prometheus_exporter', 'log_level', 'server_round_robin', 'tcp_user_timeout', 'admin_auth_type', 'auth_query', 'auth_query_user', 'auth_query_password',
  'cleanup_server_connections', 'sharding_key_regex', 'shard_id_regex', 'regex_search_limit',
  'plugins', 'prepared_statements', 'mirrors', 'server_tls_verify', 'pool_name',
]);

export function keysOf(section: Section): KeyDef[] {
  return CONFIG_TABLE.filter((d) => d.section === section);
}
