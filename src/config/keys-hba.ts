// Keys of one host-based access rule ([[general.hba]]): who may log in from where, and how.

import { type KeyDef, h } from './key-def';

export const HBA_KEYS: KeyDef[] = [
  h({
    key: 'type',
    type: 'enum',
    values: ['host', 'hostssl', 'hostnossl', 'local'],
    default: 'host',
    doc:
      'Which connections the rule is for: host = any TCP client, hostssl = TLS only, hostnossl = plain ' +
      'only, local = Unix-socket clients (address is then ignored).',
  }),
  h({
    key: 'database',
    type: 'strings',
    default: ['all'],
    doc: 'Database names the rule is for ("all" = any; the admin console is "openproxy" or "pgbouncer").',
  }),
  h({
    key: 'user',
    type: 'strings',
    default: ['all'],
    doc: 'User names the rule is for ("all" = any).',
  }),
  h({
    key: 'address',
    type: 'string',
    default: 'all',
    doc: 'Client network as an IPv4 or IPv6 address with prefix length ("10.0.0.0/8", "::1/128"), or "all".',
  }),
  h({
    key: 'method',
    type: 'enum',
    values: ['md5', 'scram-sha-256', 'trust', 'reject'],
    required: true,
    doc:
      'How a matching client authenticates (trust = no password), or reject: refused with 28000 before ' +
      'any password exchange. The first matching rule decides; with rules and none matching, the login ' +
      'is refused.',
  }),
];
