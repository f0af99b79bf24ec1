// The [general.virtual_router], [pools.NAME], users and shards keys of the config table (see table.ts).

import { type KeyDef, p, s, u, vr } from './key-def';

export const POOL_KEYS: readonly KeyDef[] = [
  vr({ key: 'interface', type: 'string', required: true, doc: 'Network interface that holds the virtual IPs.' }),
  vr({
    key: 'router_id',
    type: 'int',
    required: true,
    min: 1,
    max: 255,
    doc: 'VRRP virtual router id (VRID); separates clusters on one network.',
  }),
  vr({
    key: 'priority',
    type: 'int',
    default: 100,
    min: 0,
    max: 255,
    changeable: true,
    doc:
      'VRRP priority; the highest becomes MASTER. A reload applies it at once without dropping the VIPs ' +
      '(a BACKUP raised above the MASTER takes over unless nopreempt).',
  }),
  vr({
    key: 'advert_int',
    type: 'int',
    unit: 's',
    default: 1,
    min: 1,
    max: 255,
    doc: 'Seconds between VRRP advertisements.',
  }),
  vr({
    key: 'vip_addresses',
    type: 'strings',
    required: true,
    doc: 'Virtual IPv4 addresses with prefix length, e.g. ["192.168.35.200/24"].',
  }),
  vr({
    key: 'pre_promote_script',
    changeable: true,
    type: 'string',
    doc:
      'Command (sh -c) run on the way to MASTER before the VIPs are added; ' +
      'environment OPENPROXY_VRRP_STATE, OPENPROXY_VRRP_REASON, ' +
      'OPENPROXY_VRRP_ROUTER_ID, OPENPROXY_VRRP_VIPS. A failure is logged; ' +
      'the transition goes ahead.',
  }),
  vr({
    key: 'pre_demote_script',
    changeable: true,
    type: 'string',
    doc:
      'Command (sh -c) run on the way out of MASTER before the VIPs are ' +
      'removed; same environment as pre_promote_script.',
  }),
  vr({
    key: 'nopreempt',
    changeable: true,
    type: 'bool',
    default: false,
    doc:
      "keepalived's nopreempt: a BACKUP of higher priority does not take the VIPs from a working MASTER " +
      '(it still takes over when the MASTER stops advertising or gives up).',
  }),
  vr({
    key: 'version',
    type: 'int',
    default: 2,
    min: 2,
    max: 3,
    doc:
      "VRRP version of the adverts sent and accepted: 2 (RFC 3768) or 3 (RFC 5798, IPv4; keepalived's " +
      'vrrp_version 3). Every router of one router_id must use the same.',
  }),
  vr({
    key: 'unicast_peers',
    type: 'strings',
    doc: 'Peer IPv4 addresses for unicast VRRP where multicast is unavailable.',
  }),

  p({
    key: 'pool_mode',
    type: 'enum',
    values: ['session', 'transaction'],
    default: 'transaction',
    changeable: true,
    doc:
      'session: one server connection per client; transaction: a server ' +
      'connection per transaction, with session state tracked and unmovable ' +
      'state pinned.',
  }),
  p({
    key: 'load_balancing_mode',
    type: 'enum',
    values: ['random', 'loc', 'round_robin', 'source'],
    default: 'random',
    changeable: true,
    doc:
      'How a replica is chosen for reads, by server weight: random (weighted draw), round_robin, loc ' +
      '(fewest held connections per unit of weight), source (the same replica for a client address while ' +
      'it is healthy).',
  }),
  p({
    key: 'default_role',
    type: 'enum',
    values: ['any', 'primary', 'replica'],
    default: 'any',
    changeable: true,
    doc: 'Role a query goes to when the parser does not decide.',
  }),
  p({
    key: 'query_parser_enabled',
    type: 'bool',
    default: false,
    changeable: true,
    doc: 'Parse queries (routing, sharding keys).',
  }),
  p({
    key: 'query_parser_read_write_splitting',
    type: 'bool',
    default: false,
    changeable: true,
    doc: 'Send reads to replicas and writes to the primary.',
  }),
  p({
    key: 'query_parser_max_length',
    type: 'int',
    unit: 'bytes',
    min: 1,
    changeable: true,
    doc: 'Statements longer than this are not parsed (go to default_role). Absent = unlimited.',
  }),
  p({
    key: 'max_replica_lag',
    type: 'int',
    unit: 'bytes',
    default: 0,
    min: 0,
    changeable: true,
    doc:
      'A replica whose replay position is further than this behind the ' +
      'primary (pg_current_wal_insert_lsn - pg_last_wal_replay_lsn) takes no ' +
      'reads until it catches up. 0 = off.',
  }),
  p({
    key: 'max_replica_lag_ms',
    type: 'int',
    unit: 'ms',
    default: 0,
    min: 0,
    changeable: true,
    doc:
      'A replica that has not replayed WAL the primary wrote more than this ' +
      'many ms ago (measured every replica_lag_interval) takes no reads ' +
      'until it catches up. 0 = off.',
  }),
  p({
    key: 'read_your_writes',
    type: 'bool',
    default: true,
    changeable: true,
    doc:
      "With read/write splitting: after a client's transaction on the " +
      'primary commits, its later reads go only to replicas that have ' +
      'replayed past that point (or to the primary), so a client always sees ' +
      "its own writes. Costs no round trip: the HA thread's primary position " +
      '(every replica_lag_interval) is the bound. Off: reads may reach a ' +
      "replica before it replays the client's write.",
  }),
  p({
    key: 'primary_reads_enabled',
    type: 'bool',
    default: false,
    changeable: true,
    doc: 'The primary also takes reads.',
  }),
  p({
    key: 'sharding_function',
    type: 'enum',
    values: ['pg_bigint_hash', 'sha1'],
    default: 'pg_bigint_hash',
    changeable: true,
    doc: 'Maps a sharding key to a shard.',
  }),
  p({
    key: 'automatic_sharding_key',
    type: 'string',
    changeable: true,
    doc: 'Column whose value in a query selects the shard.',
  }),
  p({
    key: 'default_shard',
    type: 'string',
    default: 'shard.0',
    changeable: true,
    doc: 'Shard for queries without a sharding key.',
  }),
  p({
    key: 'prepared_statements_cache_size',
    type: 'int',
    unit: 'count',
    min: 0,
    changeable: true,
    doc:
      'Per-pool override of general.prepared_statements_cache_size (as seed 001 writes it): statements ' +
      'each server connection of this pool keeps; a client may name any number, they map onto these.',
  }),
  p({
    key: 'idle_timeout',
    type: 'int',
    unit: 'ms',
    min: 0,
    changeable: true,
    doc: 'Per-pool override of general.idle_timeout.',
  }),
  p({
    key: 'connect_timeout',
    type: 'int',
    unit: 'ms',
    min: 1,
    changeable: true,
    doc: 'Per-pool override of general.connect_timeout.',
  }),
  p({
    key: 'server_lifetime',
    type: 'int',
    unit: 'ms',
    min: 0,
    changeable: true,
    doc: 'Per-pool override of general.server_lifetime.',
  }),

  u({ key: 'username', type: 'string', required: true, changeable: true, doc: 'Name the client logs in with.' }),
  u({
    key: 'password',
    type: 'string',
    secret: true,
    changeable: true,
    doc:
      'Password the client must give (plain text, md5… or SCRAM-SHA-256$… verifier); default: the ' +
      "user's line in general.auth_file.",
  }),
  u({
    key: 'server_username',
    type: 'string',
    changeable: true,
    doc: 'User openproxy logs in to PostgreSQL as; default: username.',
  }),
  u({
    key: 'server_password',
    type: 'string',
    secret: true,
    changeable: true,
    doc: 'Password openproxy gives PostgreSQL; default: password.',
  }),
  u({
    key: 'pool_size',
    type: 'int',
    unit: 'count',
    default: 10,
    min: 1,
    changeable: true,
    doc: 'Maximum server connections per server for this user, across all worker threads.',
  }),
  u({
    key: 'min_pool_size',
    type: 'int',
    unit: 'count',
    default: 0,
    min: 0,
    changeable: true,
    doc: 'Server connections kept open even when idle.',
  }),
  u({
    key: 'statement_timeout',
    type: 'int',
    unit: 'ms',
    default: 0,
    min: 0,
    changeable: true,
    doc:
      'openproxy cancels a statement running longer than this on the server ' +
      '(the client gets 57014 and stays connected). 0 = off.',
  }),
  u({
    key: 'pool_mode',
    type: 'enum',
    values: ['session', 'transaction'],
    changeable: true,
    doc: 'Per-user override of the pool mode.',
  }),
  u({
    key: 'server_lifetime',
    type: 'int',
    unit: 'ms',
    min: 0,
    changeable: true,
    doc: 'Per-user override of server_lifetime.',
  }),

  s({ key: 'database', type: 'string', required: true, changeable: true, doc: 'Database name on the servers.' }),
  s({
    key: 'servers',
    type: 'servers',
    required: true,
    changeable: true,
    doc:
      'List of [host, port, role] with role primary, replica or auto; optional 4th element: Patroni REST ' +
      'port (0 = patroni_port), 5th: weight (share of reads, default 1, 0 = fallback only). Or tables ' +
      '{ host, port, role, patroni_port, weight }. Weights are reloadable.',
  }),
  s({
    key: 'use_patroni',
    type: 'bool',
    default: false,
    changeable: true,
    doc:
      'Learn the role of auto servers from Patroni (GET /patroni), confirmed ' +
      'by pg_is_in_recovery(); a writable server Patroni does not call ' +
      'primary is fenced.',
  }),
  s({
    key: 'patroni_port',
    type: 'int',
    default: 8008,
    min: 1,
    max: 65535,
    changeable: true,
    doc: 'Patroni REST API port of the servers (a server entry may carry its own as a fourth element).',
  }),
  s({
    key: 'etcd_hosts',
    type: 'strings',
    default: [],
    changeable: true,
    doc:
      'With use_patroni: Patroni\'s etcd (v3 API), as "host:port" entries. openproxy watches the leader key ' +
      'and probes the servers at once when it changes, every few ms until the new primary is confirmed; ' +
      'polling every renew_interval stays as the fallback. Empty = polling only.',
  }),
  s({
    key: 'patroni_scope',
    type: 'string',
    default: '',
    changeable: true,
    doc: "Patroni's scope (cluster name) whose leader key is watched: NAMESPACE/SCOPE/leader.",
  }),
  s({
    key: 'patroni_namespace',
    type: 'string',
    default: '/service',
    changeable: true,
    doc: "Patroni's namespace in etcd.",
  }),
];
