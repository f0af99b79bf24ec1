// HAProxy-style server checks and states, in [general]: active checks of every server
// (check_interval / check_rise / check_fall), what a DOWN server's sessions get (on_marked_down)
// and how a server coming back UP takes its share of reads (slow_start).

import { type KeyDef, g, l } from './key-def';

export const BALANCE_KEYS: readonly KeyDef[] = [
  g({
    key: 'check_interval',
    type: 'int',
    unit: 'ms',
    default: 0,
    min: 0,
    changeable: true,
    doc:
      'Active checks: every server of every pool is checked this often (server_check_query on a ' +
      'monitoring connection, within healthcheck_timeout), whether clients use it or not. 0 = off: ' +
      "servers are checked only when an idle connection is reused (healthcheck_delay). HAProxy's inter.",
  }),
  g({
    key: 'check_rise',
    type: 'int',
    default: 2,
    min: 1,
    changeable: true,
    doc: "Checks in a row that must pass before a DOWN server is UP again. HAProxy's rise.",
  }),
  g({
    key: 'check_fall',
    type: 'int',
    default: 3,
    min: 1,
    changeable: true,
    doc: "Checks in a row that must fail before an UP server is marked DOWN. HAProxy's fall.",
  }),
  g({
    key: 'on_marked_down',
    type: 'enum',
    values: ['keep', 'shutdown-sessions'],
    default: 'keep',
    changeable: true,
    doc:
      'What happens to connections to a server marked DOWN: "keep" (they run on; new transactions ' +
      'and logins go elsewhere) or "shutdown-sessions" (every connection to it closes at once: a ' +
      'client in a transaction there gets 08006, an idle transaction-mode client moves on at its next ' +
      "transaction). HAProxy's on-marked-down shutdown-sessions.",
  }),
  g({
    key: 'slow_start',
    type: 'int',
    unit: 's',
    default: 0,
    min: 0,
    changeable: true,
    doc:
      'A server coming back UP (after DOWN or MAINT) takes a share of reads that grows from almost 0 to ' +
      'its full weight over this many seconds, so a replica with cold caches is not flooded. 0 = at once. ' +
      "HAProxy's slowstart.",
  }),
];

/** One [[general.listeners]] entry: HAProxy's port per role (5000 writers, 5001 readers). */
export const LISTENER_KEYS: readonly KeyDef[] = [
  l({
    key: 'port',
    type: 'int',
    required: true,
    min: 1,
    max: 65535,
    doc: "TCP port of the extra listener (not general.port, not another listener's).",
  }),
  l({
    key: 'host',
    type: 'string',
    defaultDoc: 'general.host',
    doc: 'Address it listens on; absent = general.host.',
  }),
  l({
    key: 'role',
    type: 'enum',
    values: ['primary', 'replica', 'any'],
    required: true,
    doc:
      "Where clients of this port are sent, whatever the pool's routing: primary = every transaction to " +
      'the primary; replica = every transaction to a replica (a write gets 25006 from the replica; the ' +
      'primary serves them only when no replica can and primary_reads_enabled is true); any = routed by ' +
      'the query parser with the primary taking reads too. SET SERVER ROLE still changes it per client.',
  }),
];
