// The validated, immutable configuration snapshot that every thread works from.

import type { HbaRule } from './hba';

export type PoolMode = 'session' | 'transaction';
export type Role = 'primary' | 'replica' | 'auto';

export interface GeneralConfig {
  host: string;
  port: number;
  worker_threads: number;
  connect_timeout: number;
  idle_timeout: number;
  server_lifetime: number;
  client_login_timeout: number;
  idle_client_in_transaction_timeout: number;
  query_timeout: number;
  client_idle_timeout: number;
  max_client_conn: number;
  stats_users: string[];
  prometheus_exporter_host: string;
  status_page_public: boolean;
  healthcheck_timeout: number;
  healthcheck_delay: number;
  shutdown_timeout: number;
  ban_time: number;
  replica_lag_interval: number;
  primary_wait_timeout: number;
  query_wait_timeout: number;
  tcp_keepalives_idle: number;
  tcp_keepalives_interval: number;
  tcp_keepalives_count: number;
  auth_type: 'md5' | 'scram-sha-256';
  prepared_statements_cache_size: number;
  admin_username: string;
  admin_userpassword?: string;
  tls_certificate?: string;
  tls_private_key?: string;
  client_tls_sslmode: 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
  client_tls_ca_file?: string;
  client_tls_protocols: string;
  server_tls: boolean;
  verify_server_certificate: boolean;
  renew_interval: number;
  reload_toml: boolean;
  dns_cache_enabled: boolean;
  dns_max_ttl: number;
  prometheus_exporter_port: number;
  log_client_connections: boolean;
  log_client_disconnections: boolean;
  auth_file?: string;
  auth_user?: string;
  auth_query: string;
  unix_socket_dir: string;
  unix_socket_mode: string;
  unix_socket_group?: string;
  max_db_connections: number;
  max_user_connections: number;
  reserve_pool_size: number;
  reserve_pool_timeout: number;
  server_check_query: string;
  server_reset_query: string;
  server_reset_query_always: boolean;
  check_interval: number;
  check_rise: number;
  check_fall: number;
  on_marked_down: 'keep' | 'shutdown-sessions';
  slow_start: number;
}

/** Routing forced on every client of a role port. */
export type ListenerRole = 'primary' | 'replica' | 'any';

export interface ListenerConfig {
  host?: string;
  port: number;
  role: ListenerRole;
}

export interface VirtualRouterConfig {
  interface: string;
  router_id: number;
  priority: number;
  advert_int: number;
  vip_addresses: string[];
  pre_promote_script?: string;
  pre_demote_script?: string;
  nopreempt: boolean;
  version: 2 | 3;
  unicast_peers?: string[];
}

export interface ServerAddress {
  host: string;
  port: number;
  role: Role;
  patroni_port?: number;
  /** Share of reads against the other servers (0 = none while another can serve); default 1. */
  weight: number;
}

export interface ShardConfig {
  index: number;
  database: string;
  servers: ServerAddress[];
  use_patroni: boolean;
  patroni_port: number;
  etcd_hosts: string[];
  patroni_scope: string;
  patroni_namespace: string;
}

export interface UserConfig {
  index: number;
  username: string;
  password?: string;
  server_username: string;
  server_password?: string;
  pool_size: number;
  min_pool_size: number;
  statement_timeout: number;
  /** Effective mode: the user's override or the pool's. */
  pool_mode: PoolMode;
  /** Effective lifetime in ms: user override, pool override, or general. */
  server_lifetime: number;
  /** Effective max_user_connections (0 = no limit): the user's override or general. */
  max_user_connections: number;
  /** Keys present after reading (set in the file, or a default of the user section's own); the rest inherit. */
  own: string[];
  /** Added by auth_query, not the file: looked up again at every login (a changed password counts). */
  lookedUp?: boolean;
}

export interface PoolConfig {
  name: string;
  pool_mode: PoolMode;
  load_balancing_mode: 'random' | 'loc' | 'round_robin' | 'source';
  default_role: 'any' | 'primary' | 'replica';
  query_parser_enabled: boolean;
  query_parser_read_write_splitting: boolean;
  query_parser_max_length?: number;
  primary_reads_enabled: boolean;
  max_replica_lag: number;
  max_replica_lag_ms: number;
  read_your_writes: boolean;
  sharding_function: 'pg_bigint_hash' | 'sha1';
  automatic_sharding_key?: string;
  default_shard: string;
  /** Effective values (pool override or general). */
  prepared_statements_cache_size: number;
  idle_timeout: number;
  connect_timeout: number;
  server_lifetime: number;
  /** 0 = no limit. */
  max_db_connections: number;
  reserve_pool_size: number;
  /** Keys present after reading (set in the file, or a default of the pool section's own); the rest inherit. */
  own: string[];
  users: UserConfig[];
  shards: ShardConfig[];
}

export interface Config {
  /** Absolute path of the file it was read from. */
  path: string;
  general: GeneralConfig;
  virtual_router?: VirtualRouterConfig;
  /** [[general.hba]] rules in order (empty: auth_type for every client). */
  hba: HbaRule[];
  /** [[general.listeners]]: extra ports bound to a role. */
  listeners: ListenerConfig[];
  pools: PoolConfig[];
  /** Non-fatal findings (unknown keys, ignored PgCat keys), by key path. */
  warnings: string[];
}
