// The [general] keys of the config table (see table.ts).

import { availableParallelism } from 'node:os';
import { type KeyDef, g } from './key-def';

export const GENERAL_KEYS: readonly KeyDef[] = [
  g({
    key: 'host',
    type: 'string',
    default: '0.0.0.0',
    changeable: false,
    doc: 'Address the client listener binds to.',
  }),
  g({
    key: 'port',
    type: 'int',
    default: 6432,
    min: 1,
    max: 65535,
    changeable: false,
    doc: 'Port the client listener binds to.',
  }),
  g({
    key: 'max_client_conn',
    type: 'int',
    default: 0,
    min: 0,
    changeable: true,
    doc:
      'Most client connections at once (admin console included); one more gets FATAL 53300 ' +
      '"no more connections allowed" and is closed, counted in SHOW LISTS (refused_clients) and ' +
      "openproxy_clients_refused_total. PgBouncer's max_client_conn (default 100 there); 0 = only " +
      'the open-files limit.',
  }),
  g({
    key: 'worker_threads',
    type: 'int',
    default: Math.min(availableParallelism(), 256),
    defaultDoc: 'the number of CPU cores',
    min: 1,
    max: 256,
    changeable: false,
    doc:
      'Proxy worker threads. The default, one per CPU core, is measured best: more workers than cores cost ' +
      '13-24 % more CPU per transaction, fewer leave throughput unused (benchmarks/RESULTS.md).',
  }),
  g({
    key: 'connect_timeout',
    type: 'int',
    unit: 'ms',
    default: 1000,
    min: 1,
    changeable: true,
    doc: 'Deadline for opening a server connection.',
  }),
  g({
    key: 'query_wait_timeout',
    type: 'int',
    unit: 'ms',
    default: 120000,
    min: 0,
    changeable: true,
    doc:
      'How long a client waits in line for a server connection while its ' +
      'pool is at pool_size, in session and transaction mode, before it gets ' +
      "53300 naming the pool; 0 = no limit. PgBouncer's query_wait_timeout " +
      '(there in seconds, default 120).',
  }),
  g({
    key: 'idle_timeout',
    type: 'int',
    unit: 'ms',
    default: 600000,
    min: 0,
    changeable: true,
    doc: 'Close server connections idle this long (min_pool_size connections are kept). 0 = never.',
  }),
  g({
    key: 'server_lifetime',
    type: 'int',
    unit: 'ms',
    default: 3600000,
    min: 0,
    changeable: true,
    doc: 'Close a server connection this old when it is next released. 0 = no limit.',
  }),
  g({
    key: 'client_login_timeout',
    type: 'int',
    unit: 'ms',
    default: 60000,
    min: 0,
    changeable: true,
    doc:
      'Disconnect a client that has not finished logging in (startup, TLS, authentication) this long after ' +
      "connecting, with 08P01. PgBouncer's client_login_timeout (there in seconds, default 60). 0 = no limit.",
  }),
  g({
    key: 'query_timeout',
    type: 'int',
    unit: 'ms',
    default: 0,
    min: 0,
    changeable: true,
    doc:
      'A query whose answer has not ended this long after it was sent closes the client (08006) and the server ' +
      "connection: for servers that stop answering (set above the servers' statement_timeout). PgBouncer's " +
      'query_timeout (there in seconds). 0 = off.',
  }),
  g({
    key: 'client_idle_timeout',
    type: 'int',
    unit: 'ms',
    default: 0,
    min: 0,
    changeable: true,
    doc:
      "Disconnect a logged-in client idle this long outside a transaction, with 57P05 (PostgreSQL's " +
      "idle_session_timeout code). PgBouncer's client_idle_timeout (there in seconds). 0 = off.",
  }),
  g({
    key: 'idle_client_in_transaction_timeout',
    type: 'int',
    unit: 'ms',
    default: 0,
    min: 0,
    changeable: true,
    doc: 'Disconnect clients idle inside a transaction this long. 0 = off.',
  }),
  g({
    key: 'healthcheck_timeout',
    type: 'int',
    unit: 'ms',
    default: 1000,
    min: 1,
    changeable: true,
    doc: 'Deadline for a health-check reply; a server that misses it is banned.',
  }),
  g({
    key: 'healthcheck_delay',
    type: 'int',
    unit: 'ms',
    default: 30000,
    min: 0,
    changeable: true,
    doc:
      'A server connection idle this long is health-checked (server_check_query) before it is used; ' +
      "0 = never. PgBouncer's server_check_delay, where 0 means always: use 1 here for that.",
  }),
  g({
    key: 'shutdown_timeout',
    type: 'int',
    unit: 'ms',
    default: 60000,
    min: 0,
    changeable: true,
    doc: 'On SIGINT, wait this long for clients to leave before exiting.',
  }),
  g({
    key: 'ban_time',
    type: 'int',
    unit: 's',
    default: 60,
    min: 0,
    changeable: true,
    doc: 'How long a failed server stays out of the pool.',
  }),
  g({
    key: 'primary_wait_timeout',
    type: 'int',
    unit: 'ms',
    default: 5000,
    min: 0,
    changeable: true,
    doc:
      'While no primary is known (failover), a write transaction waits this ' +
      'long for one before the client gets 08006; reads keep going to ' +
      'replicas.',
  }),
  g({
    key: 'replica_lag_interval',
    type: 'int',
    unit: 'ms',
    default: 500,
    min: 50,
    changeable: true,
    doc: 'How often the HA thread measures replica lag (for max_replica_lag, max_replica_lag_ms and read_your_writes).',
  }),
  g({
    key: 'tcp_keepalives_idle',
    type: 'int',
    unit: 's',
    default: 5,
    min: 0,
    changeable: true,
    doc: 'Client and server sockets: idle time before the first TCP keepalive probe (0 = no keepalive).',
  }),
  g({
    key: 'tcp_keepalives_interval',
    type: 'int',
    unit: 's',
    default: 5,
    min: 1,
    changeable: true,
    doc: 'Client and server sockets: time between TCP keepalive probes.',
  }),
  g({
    key: 'tcp_keepalives_count',
    type: 'int',
    unit: 'count',
    default: 5,
    min: 1,
    changeable: true,
    doc: 'Client and server sockets: unanswered keepalive probes before the connection is dropped.',
  }),
  g({
    key: 'auth_type',
    type: 'enum',
    values: ['md5', 'scram-sha-256'],
    default: 'md5',
    changeable: true,
    doc: 'How clients authenticate to openproxy.',
  }),
  g({
    key: 'prepared_statements_cache_size',
    type: 'int',
    unit: 'count',
    default: 0,
    min: 0,
    changeable: true,
    doc:
      'Transaction mode and routed sessions (session mode with read/write ' +
      'splitting): protocol-level named prepared statements are shared ' +
      'across server connections, each connection keeping at most this many ' +
      '(LRU, evicted ones are closed). 0 = off: unnamed statements only; a ' +
      'named one gets error 26000 saying so.',
  }),
  g({
    key: 'admin_username',
    type: 'string',
    default: 'admin',
    changeable: true,
    doc: 'User name for the admin console (database openproxy).',
  }),
  g({
    key: 'admin_userpassword',
    type: 'string',
    secret: true,
    aliases: ['admin_password'],
    changeable: true,
    doc: 'Password for the admin console.',
  }),
  g({
    key: 'stats_users',
    type: 'strings',
    default: [],
    changeable: true,
    doc:
      'Users (pool users, with their password) who may log in to the admin console read-only (SHOW only; ' +
      "anything else gets 42501) and read the status page. PgBouncer's stats_users.",
  }),
  g({
    key: 'tls_certificate',
    type: 'string',
    changeable: false,
    aliases: ['client_tls_cert_file'],
    doc: 'PEM certificate for client TLS; with tls_private_key, SSLRequest is answered S.',
  }),
  g({
    key: 'tls_private_key',
    type: 'string',
    changeable: false,
    aliases: ['client_tls_key_file'],
    doc: 'PEM private key for client TLS.',
  }),
  g({
    key: 'client_tls_sslmode',
    type: 'enum',
    values: ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'],
    default: 'prefer',
    changeable: true,
    doc:
      "TLS for clients, PgBouncer's modes: disable = SSLRequest answered N; allow / prefer = TLS when the " +
      'client asks (needs tls_certificate); require = a login without TLS gets 28000; verify-ca = also a ' +
      'client certificate signed by client_tls_ca_file; verify-full = also its CN equal to the user name.',
  }),
  g({
    key: 'client_tls_ca_file',
    type: 'string',
    changeable: false,
    doc: 'PEM CA certificates that sign client certificates (verify-ca / verify-full).',
  }),
  g({
    key: 'client_tls_protocols',
    type: 'string',
    default: 'secure',
    changeable: false,
    doc:
      'TLS versions offered to clients: a list of tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3, or all, secure ' +
      '(= tlsv1.2,tlsv1.3), legacy (= all). The lowest to the highest named is allowed.',
  }),
  g({
    key: 'server_tls',
    type: 'bool',
    default: false,
    changeable: true,
    doc: 'Use TLS to PostgreSQL when the server offers it.',
  }),
  g({
    key: 'verify_server_certificate',
    type: 'bool',
    default: false,
    changeable: true,
    doc: 'With server_tls: reject self-signed or unverifiable server certificates.',
  }),
  g({
    key: 'renew_interval',
    type: 'int',
    unit: 'ms',
    default: 5000,
    min: 100,
    aliases: ['autoreload'],
    changeable: true,
    doc: 'Period to re-read the TOML (with reload_toml) and to refresh server roles.',
  }),
  g({
    key: 'reload_toml',
    type: 'bool',
    default: true,
    changeable: true,
    doc: 'Re-read the TOML every renew_interval when the file changed.',
  }),
  g({
    key: 'dns_cache_enabled',
    type: 'bool',
    default: false,
    changeable: false,
    doc:
      'Resolve server host names at most once per dns_max_ttl (re-resolved ' +
      'in the background); when a name moves, new connections go to the new ' +
      'address and old ones drain (closed when released). A failed lookup ' +
      'keeps the last address.',
  }),
  g({
    key: 'dns_max_ttl',
    type: 'int',
    unit: 's',
    default: 30,
    min: 1,
    aliases: ['dns_mas_ttl'],
    changeable: true,
    doc: 'How long a resolved server address is used before the name is resolved again.',
  }),
  g({
    key: 'prometheus_exporter_port',
    type: 'int',
    default: 9930,
    min: 0,
    max: 65535,
    changeable: false,
    doc: 'Port of the Prometheus exporter. 0 = off.',
  }),
  g({
    key: 'prometheus_exporter_host',
    type: 'string',
    default: '',
    changeable: false,
    doc: 'Address the HTTP side (metrics, health, status page) binds to; empty = the same as host.',
  }),
  g({
    key: 'status_page_public',
    type: 'bool',
    default: false,
    changeable: true,
    doc:
      'Serve the status page and /status.json without credentials. Off: they need HTTP basic auth as ' +
      'admin_username or one of stats_users (/metrics and /health stay open).',
  }),
  g({ key: 'log_client_connections', type: 'bool', default: false, changeable: true, doc: 'Log every client login.' }),
  g({
    key: 'log_client_disconnections',
    type: 'bool',
    default: false,
    changeable: true,
    doc: 'Log every client disconnect with its reason.',
  }),
];
