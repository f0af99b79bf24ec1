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
    key: 'auth_user',
    type: 'string',
    changeable: true,
    doc:
      'A user of the pool (listed with its server credentials) whose server connection runs auth_query ' +
      'when a client logs in as a user the pool does not list; unset = no lookups. Found users get ' +
      "auth_user's pool settings and are kept until the next reload. PgBouncer's auth_user.",
  }),
  g({
    key: 'auth_query',
    type: 'string',
    default: 'SELECT usename, passwd FROM pg_shadow WHERE usename = $1',
    changeable: true,
    doc:
      'Query returning (name, password or secret) for the user in $1 (sent as a quoted literal). ' +
      "PgBouncer's default; pg_shadow needs a superuser, else use a SECURITY DEFINER function.",
  }),
  g({
    key: 'unix_socket_group',
    type: 'string',
    changeable: false,
    doc: "Group (name or number) that owns the socket; default: openproxy's own. PgBouncer's unix_socket_group.",
  }),
];
