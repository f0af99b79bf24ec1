// Where clients connect besides TCP (the Unix-domain socket, PostgreSQL's naming) and where their
// passwords may come from (auth_file): PgBouncer's keys, in [general].

import { type KeyDef, g } from './key-def';

export const SOCKET_KEYS: readonly KeyDef[] = [
  g({
    key: 'unix_socket_dir',
    type: 'string',
    default: '/tmp',
    changeable: false,
    doc:
      "Directory for the Unix-domain socket .s.PGSQL.<port> (PostgreSQL's name, so psql -h DIR -p PORT " +
      "finds it; Debian's psql looks in /var/run/postgresql by default). A stale socket file left by a " +
      "crash is replaced. Empty = no socket. PgBouncer's unix_socket_dir.",
  }),
  g({
    key: 'unix_socket_mode',
    type: 'string',
    default: '0777',
    changeable: false,
    doc: "File mode of the socket, octal. PgBouncer's unix_socket_mode.",
  }),
  g({
    key: 'auth_file',
    type: 'string',
    changeable: true,
    doc:
      'PgBouncer\'s userlist.txt: lines of "user" "password" (plain, md5 secret or SCRAM verifier); a pool ' +
      'user without password in this file takes it from there. Relative to the config file; re-read on reload.',
  }),
  g({
    key: 'unix_socket_group',
    type: 'string',
    changeable: false,
    doc: "Group (name or number) that owns the socket; default: openproxy's own. PgBouncer's unix_socket_group.",
  }),
];
