// Config table and loader: the seed's example and a PgCat file load; bad values are named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, configRows } from '../src/config/load';
import { ConfigError } from '../src/config/error';
import { CONFIG_TABLE } from '../src/config/table';
import { matchHba } from '../src/config/hba';
import { tlsVersions } from '../src/config/client-tls';

const SEED_EXAMPLE = `
[general]
port = 6432
admin_username = "postgres"
admin_password = "postgres"
autoreload = 5000
worker_threads = 3

[pools.postgres]
pool_mode = "transaction"
query_parser_enabled = true
query_parser_read_write_splitting = true

[pools.postgres.users.0]
username = "postgres"
password = "postgres"
server_username = "postgres"
server_password = "postgres"
pool_size = 10
statement_timeout = 0

[pools.postgres.shards.0]
database = "postgres"
servers = [
  ["172.176.0.2", 5432, "auto"],
  ["172.176.0.3", 5432, "auto"],
  ["172.176.0.4", 5432, "auto"]
]
use_patroni = true

## virtual-ip
[general.virtual_router]
interface = "eth0"
router_id = 50
priority = 50
advert_int = 3
vip_addresses = ["178.176.0.200/24"]
`;

// The shape of PgCat's own example pgcat.toml (abridged to the keys that matter).
const PGCAT_EXAMPLE = `
[general]
host = "0.0.0.0"
port = 6432
enable_prometheus_exporter = true
prometheus_exporter_port = 9930
connect_timeout = 5000
healthcheck_timeout = 1000
healthcheck_delay = 30000
shutdown_timeout = 60000
ban_time = 60
log_client_connections = false
log_client_disconnections = false
autoreload = 15000
worker_threads = 5
tcp_keepalives_idle = 5
tcp_keepalives_count = 5
tcp_keepalives_interval = 5
admin_username = "admin_user"
admin_password = "admin_pass"

[pools.sharded_db]
pool_mode = "transaction"
default_role = "any"
query_parser_enabled = true
primary_reads_enabled = true
sharding_function = "pg_bigint_hash"
automatic_sharding_key = "data.id"
idle_timeout = 40000
connect_timeout = 3000

[pools.sharded_db.users.0]
username = "sharding_user"
password = "sharding_user"
pool_size = 5
statement_timeout = 0

[pools.sharded_db.users.1]
username = "other_user"
password = "other_user"
pool_size = 21
min_pool_size = 1
pool_mode = "session"
server_lifetime = 60000

[pools.sharded_db.shards.0]
servers = [["127.0.0.1", 5432, "primary"], ["localhost", 5432, "replica"]]
database = "shard0"

[pools.sharded_db.shards.1]
servers = [["127.0.0.1", 5432, "primary"], ["localhost", 5432, "replica"]]
database = "shard1"
`;

test('the seed example config loads, with its alias spellings', () => {
  const c = parseConfig(SEED_EXAMPLE, 'seed.toml');
  assert.equal(c.general.port, 6432);
  assert.equal(c.general.admin_userpassword, 'postgres');
  assert.equal(c.general.renew_interval, 5000);
  assert.equal(c.general.worker_threads, 3);
  assert.equal(c.general.connect_timeout, 1000, 'default from the table');
  assert.equal(c.virtual_router?.router_id, 50);
  assert.deepEqual(c.virtual_router?.vip_addresses, ['178.176.0.200/24']);
  const p = c.pools[0];
  assert.equal(p.name, 'postgres');
  assert.equal(p.pool_mode, 'transaction');
  assert.equal(p.users[0].pool_size, 10);
  assert.equal(p.users[0].pool_mode, 'transaction', 'user inherits the pool mode');
  assert.deepEqual(
    p.shards[0].servers.map((s) => s.role),
    ['auto', 'auto', 'auto'],
  );
  assert.equal(p.shards[0].use_patroni, true);
  assert.deepEqual(c.warnings, []);
});

test('a PgCat config loads; PgCat-only keys are warned about by name', () => {
  const c = parseConfig(PGCAT_EXAMPLE, 'pgcat.toml');
  assert.equal(c.pools[0].shards.length, 2);
  assert.equal(c.pools[0].users[1].pool_mode, 'session');
  assert.equal(c.pools[0].users[1].server_lifetime, 60000);
  assert.equal(c.pools[0].users[0].server_username, 'sharding_user', 'server_username falls back to username');
  assert.equal(c.pools[0].connect_timeout, 3000);
  assert.ok(
    c.warnings.some((w) => w.startsWith('general.enable_prometheus_exporter')),
    c.warnings.join('\n'),
  );
});

const bad: [string, string, RegExp][] = [
  ['port as string', '[general]\nport = "x"', /general\.port: invalid value "x"; expected an integer from 1 to 65535/],
  ['port out of range', '[general]\nport = 70000', /general\.port: invalid value 70000/],
  [
    'negative timeout',
    '[general]\nconnect_timeout = -5',
    /general\.connect_timeout: invalid value -5; expected an integer >= 1 \(ms\)/,
  ],
  [
    'bad enum',
    '[general]\nauth_type = "trust"',
    /general\.auth_type: invalid value "trust"; expected one of "md5", "scram-sha-256"/,
  ],
  [
    'bool as string',
    '[general]\nserver_tls = "yes"',
    /general\.server_tls: invalid value "yes"; expected true or false/,
  ],
  ['pool without shards', '[pools.a]\n[pools.a.users.0]\nusername="u"\npassword="p"', /pools\.a\.shards: missing/],
  [
    'bad role',
    '[pools.a.users.0]\nusername="u"\n[pools.a.shards.0]\ndatabase="d"\nservers=[["h", 5432, "leader"]]',
    /pools\.a\.shards\.0\.servers\[0\]\[2\]: invalid value "leader"/,
  ],
  [
    'bad server port',
    '[pools.a.users.0]\nusername="u"\n[pools.a.shards.0]\ndatabase="d"\nservers=[["h", 0, "primary"]]',
    /servers\[0\]\[1\]: invalid value 0/,
  ],
  [
    'missing username',
    '[pools.a.users.0]\npassword="p"\n[pools.a.shards.0]\ndatabase="d"\nservers=[["h", 5432]]',
    /pools\.a\.users\.0\.username: missing/,
  ],
  [
    'min above max',
    '[pools.a.users.0]\nusername="u"\npool_size=2\nmin_pool_size=3\n[pools.a.shards.0]\ndatabase="d"\nservers=[["h", ' +
      '5432]]',
    /min_pool_size: invalid value 3; expected at most pool_size \(2\)/,
  ],
  [
    'duplicate user',
    '[pools.a.users.0]\nusername="u"\n[pools.a.users.1]\nusername="u"\n[pools.a.shards.0]\ndatabase="d"\n\
servers=[["h", ' + '5432]]',
    /appears twice/,
  ],
  ['alias and key both', '[general]\nadmin_password="a"\nadmin_userpassword="b"', /duplicates general\.admin_password/],
  [
    'bad vip',
    '[general.virtual_router]\ninterface="eth0"\nrouter_id=1\nvip_addresses=["10.0.0.1"]',
    /vip_addresses\[0\]: invalid value "10\.0\.0\.1"/,
  ],
  [
    'bad unicast peer',
    '[general.virtual_router]\ninterface="eth0"\nrouter_id=1\nvip_addresses=["10.0.0.1/24"]\n\
unicast_peers=["10.0.0.300"]',
    /unicast_peers\[0\]: invalid value "10\.0\.0\.300"/,
  ],
  [
    'router id range',
    '[general.virtual_router]\ninterface="eth0"\nrouter_id=300\nvip_addresses=["10.0.0.1/24"]',
    /router_id: invalid value 300; expected an integer from 1 to 255/,
  ],
  ['TOML syntax', '[general\nport = 1', /TOML syntax error/],
  ['only a certificate', '[general]\ntls_certificate = "/x.pem"', /only one is set/],
  [
    'users not numbered',
    '[pools.a.users.x]\nusername="u"\n[pools.a.shards.0]\ndatabase="d"\nservers=[["h", 5432]]',
    /pools\.a\.users\.x: invalid value "x"; expected a numeric index/,
  ],
];
for (const [name, toml, re] of bad) {
  test(`config error names key, value and expectation: ${name}`, () => {
    assert.throws(
      () => parseConfig(toml, 't.toml'),
      (e: unknown) => e instanceof ConfigError && re.test((e as Error).message),
    );
  });
}

test('unknown keys and sections are warned about by name, never fatal', () => {
  const c = parseConfig(
    '[general]\nportt = ' +
      '1\n[extra]\nx=1\n[pools.a]\nfoo=1\n[pools.a.users.0]\nusername="u"\nbar=2\n[pools.a.shards.0]\ndatabase="d"\n\
servers=[["h", ' +
      '5432]]',
    't',
  );
  assert.deepEqual(
    [...c.warnings].sort(),
    [
      'extra: unknown section, ignored',
      'general.portt: unknown key, ignored',
      'pools.a.foo: unknown key, ignored',
      'pools.a.users.0.bar: unknown key, ignored',
    ].sort(),
  );
});

test('roles are case-insensitive and default to primary', () => {
  const c = parseConfig(
    '[pools.a.users.0]\nusername="u"\n[pools.a.shards.0]\ndatabase="d"\nservers=[["h", 5432, "Replica"], ["g", 5433]]',
    't',
  );
  assert.deepEqual(
    c.pools[0].shards[0].servers.map((s) => s.role),
    ['replica', 'primary'],
  );
});

test('SHOW CONFIG rows redact secrets and cover every general and pool key', () => {
  const c = parseConfig(SEED_EXAMPLE, 'seed.toml');
  const rows = configRows(c);
  assert.equal(rows.find((r) => r.key === 'admin_userpassword')?.value, '********');
  for (const d of CONFIG_TABLE.filter((x) => x.section === 'general'))
    assert.ok(
      rows.some((r) => r.key === d.key),
      d.key,
    );
  assert.equal(rows.find((r) => r.key === 'pools.postgres.query_parser_max_length')?.value, 'unlimited');
});

test('the config is frozen: a snapshot cannot be changed under a worker', () => {
  const c = parseConfig(SEED_EXAMPLE, 'seed.toml');
  assert.throws(() => {
    (c.general as { port: number }).port = 1;
  });
});

const POOL = '[pools.a.users.0]\nusername="u"\npassword="p"\n[pools.a.shards.0]\ndatabase="d"\nservers=[["h", 5432]]\n';

test('[[general.hba]] rules load in order with defaults; a bad address or method names the key and value', () => {
  const c = parseConfig(
    `[[general.hba]]\naddress = "127.0.0.2/32"\nmethod = "reject"\n` +
      `[[general.hba]]\ntype = "hostssl"\ndatabase = ["openproxy"]\nuser = ["admin"]\naddress = "::1/128"\n` +
      `method = "SCRAM-SHA-256"\n${POOL}`,
    't',
  );
  assert.deepEqual(
    c.hba.map((r) => [r.type, r.database, r.user, r.address, r.method]),
    [
      ['host', ['all'], ['all'], '127.0.0.2/32', 'reject'],
      ['hostssl', ['openproxy'], ['admin'], '::1/128', 'scram-sha-256'],
    ],
  );
  assert.equal(configRows(c).find((r) => r.key === 'hba.1.method')?.value, 'scram-sha-256');
  for (const [bad, re] of [
    ['address = "127.0.0.1"\nmethod = "md5"', /general\.hba\.0\.address: invalid value "127\.0\.0\.1"/],
    ['address = "10.0.0.0/33"\nmethod = "md5"', /general\.hba\.0\.address: invalid value "10\.0\.0\.0\/33"/],
    ['method = "peer"', /general\.hba\.0\.method: invalid value "peer"; expected one of "md5"/],
    ['address = "all"', /general\.hba\.0\.method: missing/],
  ] as const)
    assert.throws(() => parseConfig(`[[general.hba]]\n${bad}\n${POOL}`, 't'), re);
});

test('hba matching: first rule wins; networks over IPv4, IPv4-mapped and IPv6; TLS types; all', () => {
  const c = parseConfig(
    `[[general.hba]]\nuser = ["blocked"]\nmethod = "reject"\n` +
      `[[general.hba]]\ntype = "hostssl"\naddress = "10.1.0.0/16"\nmethod = "trust"\n` +
      `[[general.hba]]\naddress = "10.0.0.0/8"\ndatabase = ["d"]\nmethod = "md5"\n` +
      `[[general.hba]]\naddress = "fd00::/8"\nmethod = "scram-sha-256"\n${POOL}`,
    't',
  );
  const m = (address: string, tls = false, user = 'u', database = 'd') =>
    matchHba(c.hba, { address, unix: false, tls, user, database })?.method ?? 'none';
  assert.equal(m('10.1.2.3', false, 'blocked'), 'reject');
  assert.equal(m('10.1.2.3', true), 'trust');
  assert.equal(m('::ffff:10.1.2.3', true), 'trust');
  assert.equal(m('10.1.2.3', false), 'md5');
  assert.equal(m('10.200.0.1', false, 'u', 'other'), 'none');
  assert.equal(m('11.0.0.1'), 'none');
  assert.equal(m('fd12:3456::1'), 'scram-sha-256');
  assert.equal(m('fe80::1'), 'none');
  assert.equal(m('not an address'), 'none');
});

test('client TLS: a mode needing a certificate or CA names both keys; bad protocols name the value', () => {
  const tls = 'tls_certificate = "/c.pem"\ntls_private_key = "/k.pem"\n';
  for (const [general, re] of [
    ['client_tls_sslmode = "require"', /client_tls_sslmode: "require" needs general\.tls_certificate/],
    [`${tls}client_tls_sslmode = "verify-ca"`, /client_tls_sslmode: "verify-ca" needs general\.client_tls_ca_file/],
    ['client_tls_protocols = "tlsv1.2, ssl3"', /client_tls_protocols: invalid value "tlsv1\.2, ssl3"/],
    ['client_tls_sslmode = "sometimes"', /client_tls_sslmode: invalid value "sometimes"; expected one of "disable"/],
  ] as const)
    assert.throws(() => parseConfig(`[general]\n${general}\n${POOL}`, 't'), re);
  const c = parseConfig(`[general]\nclient_tls_cert_file = "/c.pem"\nclient_tls_key_file = "/k.pem"\n${POOL}`, 't');
  assert.equal(c.general.tls_certificate, '/c.pem', "PgBouncer's spelling is accepted");
  assert.deepEqual(tlsVersions('tlsv1.3'), { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
  assert.deepEqual(tlsVersions('secure'), { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3' });
  assert.deepEqual(tlsVersions('legacy'), { minVersion: 'TLSv1', maxVersion: 'TLSv1.3' });
});

test('prepared_statements_cache_size per pool overrides [general]; absent, the general value applies', () => {
  const c = parseConfig(
    `[general]\nprepared_statements_cache_size = 7\n[pools.a]\nprepared_statements_cache_size = 500\n` +
      `[pools.a.users.0]\nusername="u"\npassword="p"\n[pools.a.shards.0]\ndatabase="d"\nservers=[["h", 5432]]\n` +
      `[pools.b.users.0]\nusername="u"\npassword="p"\n[pools.b.shards.0]\ndatabase="d"\nservers=[["h", 5432]]\n`,
    't',
  );
  assert.deepEqual(
    c.pools.map((p) => [p.name, p.prepared_statements_cache_size]),
    [
      ['a', 500],
      ['b', 7],
    ],
  );
  assert.deepEqual(c.warnings, []);
});

test('auth_file: userlist lines fill passwords, relative to the config file; bad lines name file and line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'op-auth-file-'));
  const pool = (password: string) =>
    `[pools.db]\n[pools.db.users.0]\nusername = "u1"\n${password}\n[pools.db.users.1]\nusername = "u 2"\n` +
    '[pools.db.shards.0]\ndatabase = "db"\nservers = [["127.0.0.1", 5432, "primary"]]\n';
  writeFileSync(join(dir, 'users.txt'), '# comment\n\n"u1" "from-file"\n  "u 2"   "say ""hi""" tail\n');
  const c = parseConfig(`[general]\nauth_file = "users.txt"\n${pool('')}`, join(dir, 'openproxy.toml'));
  assert.deepEqual(
    c.pools[0].users.map((u) => [u.password, u.server_password]),
    [
      ['from-file', 'from-file'],
      ['say "hi"', 'say "hi"'],
    ],
  );
  // A password in the TOML wins over the file.
  const d = parseConfig(`[general]\nauth_file = "users.txt"\n${pool('password = "toml"')}`, join(dir, 'o.toml'));
  assert.equal(d.pools[0].users[0].password, 'toml');
  writeFileSync(join(dir, 'bad.txt'), '"u1" "ok"\nu2 nope\n');
  assert.throws(
    () => parseConfig(`[general]\nauth_file = "bad.txt"\n${pool('')}`, join(dir, 'o.toml')),
    /general\.auth_file: .*bad\.txt line 2: expected "user" "password"/,
  );
  assert.throws(
    () => parseConfig(`[general]\nauth_file = "missing.txt"\n${pool('')}`, join(dir, 'o.toml')),
    /general\.auth_file: cannot read .*missing\.txt/,
  );
});

test('servers: weights in the array (5th) or table form; bad weights and fields name the place', () => {
  const toml = (servers: string) =>
    '[pools.db]\n[pools.db.users.0]\nusername = "u"\npassword = "p"\n' +
    `[pools.db.shards.0]\ndatabase = "db"\nservers = ${servers}\n`;
  const c = parseConfig(
    toml('[["h", 1, "primary"], ["h", 2, "replica", 0, 5], { host = "h", port = 3, role = "replica", weight = 0 }]'),
    't.toml',
  );
  assert.deepEqual(
    c.pools[0].shards[0].servers.map((s) => [s.port, s.weight, s.patroni_port]),
    [
      [1, 1, undefined],
      [2, 5, undefined],
      [3, 0, undefined],
    ],
  );
  assert.throws(
    () => parseConfig(toml('[["h", 2, "replica", 0, -1]]'), 't.toml'),
    /servers\[0\]\[4\]: invalid value -1; expected a weight/,
  );
  assert.throws(
    () => parseConfig(toml('[{ host = "h", port = 2, wieght = 3 }]'), 't.toml'),
    /servers\[0\]\.wieght: invalid value 3; expected one of the fields host, port, role, patroni_port, weight/,
  );
});

test('virtual_router.nopreempt: keepalived spelling, off by default', () => {
  const vr = (extra: string) =>
    `[general.virtual_router]\ninterface = "eth0"\nrouter_id = 7\nvip_addresses = ["10.0.0.9/24"]\n${extra}`;
  assert.equal(parseConfig(vr(''), 't.toml').virtual_router?.nopreempt, false);
  assert.equal(parseConfig(vr('nopreempt = true\n'), 't.toml').virtual_router?.nopreempt, true);
  assert.throws(
    () => parseConfig(vr('nopreempt = "yes"\n'), 't.toml'),
    /virtual_router\.nopreempt: invalid value "yes"/,
  );
});
