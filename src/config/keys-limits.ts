// PgBouncer's connection limits, reserve pool and server check/reset keys, in [general] with
// per-pool ([pools.NAME]) and per-user ([pools.NAME.users.N]) overrides where PgBouncer has them.

import { type KeyDef, g, p, u } from './key-def';

export const LIMIT_KEYS: readonly KeyDef[] = [
  g({
    key: 'max_db_connections',
    type: 'int',
    unit: 'count',
    default: 0,
    min: 0,
    changeable: true,
    doc:
      'Most server connections of one pool (database) at once, all users, shards and servers together, ' +
      'across all worker threads; past it clients wait in line as at pool_size, and an idle connection of ' +
      "another user of the pool is closed to make room. PgBouncer's max_db_connections; 0 = no limit.",
  }),
  g({
    key: 'max_user_connections',
    type: 'int',
    unit: 'count',
    default: 0,
    min: 0,
    changeable: true,
    doc:
      'Most server connections of one user at once, all pools and servers together; as max_db_connections ' +
      "otherwise. PgBouncer's max_user_connections; 0 = no limit.",
  }),
  g({
    key: 'reserve_pool_size',
    type: 'int',
    unit: 'count',
    default: 0,
    min: 0,
    changeable: true,
    doc:
      'Extra server connections per server a pool may open beyond pool_size for clients that waited ' +
      'reserve_pool_timeout; they close when released with nobody waiting. Shown as reserve_pool in SHOW ' +
      "DATABASES. PgBouncer's reserve_pool_size; 0 = none.",
  }),
  g({
    key: 'reserve_pool_timeout',
    type: 'int',
    unit: 'ms',
    default: 5000,
    min: 0,
    changeable: true,
    doc: "How long a client waits before the reserve pool serves it. PgBouncer's (there in seconds, default 5).",
  }),
  g({
    key: 'server_check_query',
    type: 'string',
    default: '',
    changeable: true,
    doc:
      'Query that checks an idle server connection before reuse (after healthcheck_delay, within ' +
      'healthcheck_timeout); empty = the empty query, the cheapest round trip. ' +
      "PgBouncer's server_check_query.",
  }),
  g({
    key: 'server_reset_query',
    type: 'string',
    default: 'DISCARD ALL',
    changeable: true,
    doc:
      'Query run on a server connection when a session-mode client leaves, before another client gets it ' +
      '(a failure closes the connection). Empty = none: the next client inherits session state. ' +
      "PgBouncer's server_reset_query.",
  }),
  g({
    key: 'server_reset_query_always',
    type: 'bool',
    default: false,
    changeable: true,
    doc:
      'Also run server_reset_query after every transaction in transaction mode (for clients that rely on ' +
      'a clean session per transaction). It drops the server-side prepared statements and session ' +
      "settings openproxy tracks, so those are re-sent as needed and cost a round trip. PgBouncer's.",
  }),
  p({
    key: 'max_db_connections',
    type: 'int',
    unit: 'count',
    min: 0,
    changeable: true,
    doc: 'Per-pool override of general.max_db_connections.',
  }),
  p({
    key: 'reserve_pool_size',
    type: 'int',
    unit: 'count',
    min: 0,
    changeable: true,
    doc: 'Per-pool override of general.reserve_pool_size.',
  }),
  u({
    key: 'max_user_connections',
    type: 'int',
    unit: 'count',
    min: 0,
    changeable: true,
    doc:
      'Per-user override of general.max_user_connections (a user listed in several pools must give the ' +
      'same value in each).',
  }),
];
