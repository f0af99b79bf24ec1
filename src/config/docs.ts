// Renders the config reference (man/openproxy.toml.5) and the commented example
// (config/openproxy.toml) from the config table, so docs cannot drift from the code.
// `npm run docs` rewrites both; a test fails when the committed files differ.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_TABLE, type KeyDef, type Section } from './table';
import { VERSION } from '../version';

const SECTIONS: { section: Section; toml: string; title: string; intro: string }[] = [
  { section: 'general', toml: 'general', title: '[general]', intro: 'Process-wide settings.' },
  {
    section: 'virtual_router',
    toml: 'general.virtual_router',
    title: '[general.virtual_router]',
    intro: 'VRRP virtual router holding virtual IPs. Omit the section to disable it.',
  },
  {
    section: 'hba',
    toml: 'general.hba',
    title: '[[general.hba]]',
    intro:
      'Host-based access rules, tried in order before any password is asked (as pg_hba.conf). Omit them ' +
      'to let every address log in with auth_type.',
  },
  {
    section: 'listener',
    toml: 'general.listeners',
    title: '[[general.listeners]]',
    intro:
      "Extra client ports, each bound to a role (HAProxy's 5000 for writers, 5001 for readers). Added, " +
      'changed and removed by reload; removing one stops new connections, its clients stay.',
  },
  {
    section: 'pool',
    toml: 'pools.NAME',
    title: '[pools.NAME]',
    intro: 'One pool per database name clients connect to.',
  },
  {
    section: 'user',
    toml: 'pools.NAME.users.N',
    title: '[pools.NAME.users.N]',
    intro: 'Users allowed to log in to the pool, numbered from 0.',
  },
  {
    section: 'shard',
    toml: 'pools.NAME.shards.N',
    title: '[pools.NAME.shards.N]',
    intro: 'The servers of the pool, numbered from 0.',
  },
];

/** Values shown in the example for keys without a default. */
const EXAMPLE: Record<string, string> = {
  'user.username': '"app"',
  'user.password': '"change-me"',
  'shard.database': '"postgres"',
  'shard.servers': '[\n  ["127.0.0.1", 5432, "primary"],\n  ["127.0.0.1", 5433, "replica"],\n]',
  'virtual_router.interface': '"eth0"',
  'virtual_router.router_id': '50',
  'virtual_router.vip_addresses': '["192.168.35.200/24"]',
  'virtual_router.unicast_peers': '["192.168.35.11", "192.168.35.12"]',
  'virtual_router.pre_promote_script': '"/usr/local/bin/before-promote"',
  'virtual_router.pre_demote_script': '"/usr/local/bin/before-demote"',
  'general.admin_userpassword': '"change-me-too"',
  'hba.method': '"scram-sha-256"',
  'listener.port': '6433',
  'listener.host': '"0.0.0.0"',
  'listener.role': '"replica"',
  'general.tls_certificate': '"/etc/openproxy/server.crt"',
  'general.tls_private_key': '"/etc/openproxy/server.key"',
  'general.client_tls_ca_file': '"/etc/openproxy/client-ca.crt"',
  'pool.query_parser_max_length': '1048576',
  'pool.automatic_sharding_key': '"data.id"',
  'pool.prepared_statements_cache_size': '500',
  'pool.idle_timeout': '600000',
  'pool.connect_timeout': '1000',
  'pool.server_lifetime': '3600000',
  'user.server_username': '"app"',
  'user.server_password': '"change-me"',
  'general.worker_threads': '4',
  'user.pool_mode': '"transaction"',
  'user.server_lifetime': '3600000',
  'pool.max_db_connections': '50',
  'pool.reserve_pool_size': '2',
  'user.max_user_connections': '20',
  'general.unix_socket_group': '"postgres"',
  'general.auth_file': '"userlist.txt"',
  'general.auth_user': '"pgbouncer_auth"',
};

function tomlValue(v: KeyDef['default']): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return JSON.stringify(v);
  return String(v);
}

function defaultText(d: KeyDef): string {
  if (d.defaultDoc !== undefined) return `default ${d.defaultDoc}`;
  return d.default !== undefined ? `default ${tomlValue(d.default)}` : d.required ? 'required' : 'optional';
}

function typeText(d: KeyDef): string {
  if (d.type === 'enum') return d.values!.join(' | ');
  if (d.type === 'int') return d.unit ? `integer (${d.unit})` : 'integer';
  if (d.type === 'strings') return 'array of strings';
  if (d.type === 'servers') return 'array of [host, port, role]';
  return d.type === 'bool' ? 'boolean' : 'string';
}

export function renderExampleToml(): string {
  const out: string[] = [
    '# openproxy configuration: every key, with its default (generated from src/config/table.ts by `npm run docs`).',
    '# Lines starting with "# key =" are optional keys shown with an example value.',
    '# Units: ms = milliseconds, s = seconds. "reload: yes" = SIGHUP / RELOAD applies it to the running process.',
    '',
  ];
  for (const s of SECTIONS) {
    const list = s.section === 'hba' || s.section === 'listener';
    const vr = s.section === 'virtual_router' || list;
    const head = s.toml.replace('NAME', 'postgres').replace('.N', '.0');
    out.push(`# ${s.intro}`);
    out.push(vr ? `# ${list ? `[[${head}]]` : `[${head}]`}` : `[${head}]`);
    for (const d of CONFIG_TABLE.filter((x) => x.section === s.section)) {
      const meta = [typeText(d), defaultText(d), `reload: ${d.changeable ? 'yes' : 'no'}`];
      if (d.aliases?.length) meta.push(`also spelled ${d.aliases.join(', ')}`);
      out.push(`# ${d.doc} (${meta.join('; ')})`);
      const fixed = d.default !== undefined && d.defaultDoc === undefined;
      const value = fixed ? tomlValue(d.default) : EXAMPLE[`${d.section}.${d.key}`];
      const active = !vr && (fixed || d.required || `${d.section}.${d.key}` === 'user.password');
      out.push(`${active ? '' : '# '}${d.key} = ${active ? value : value.replace(/\n/g, '\n# ')}`);
    }
    out.push('');
  }
  return out.join('\n');
}

const roff = (s: string) => s.replace(/\\/g, '\\e').replace(/^\./gm, '\\&.').replace(/-/g, '\\-');

export function renderManPage5(): string {
  const out: string[] = [
    `.TH OPENPROXY.TOML 5 "" "openproxy ${VERSION}" "File Formats"`,
    '.\\" Generated from src/config/table.ts by `npm run docs`; do not edit.',
    '.SH NAME',
    'openproxy.toml \\- configuration file of openproxy',
    '.SH DESCRIPTION',
    'openproxy reads one TOML file (see',
    '.BR openproxy (1)).',
    "The format is OpenProxy's, a fork of PgCat's: a PgCat",
    '.I pgcat.toml',
    'loads unchanged; keys openproxy does not use are logged as warnings by name.',
    'Every error names the key path, the bad value and what was expected.',
    'Keys marked',
    '.I reload: yes',
    'take effect on SIGHUP or when the file changes (with reload_toml); the others need a restart.',
  ];
  for (const s of SECTIONS) {
    out.push(`.SH ${roff(s.title.toUpperCase())}`, roff(s.intro));
    for (const d of CONFIG_TABLE.filter((x) => x.section === s.section)) {
      const bits = [typeText(d), defaultText(d), `reload: ${d.changeable ? 'yes' : 'no'}`];
      if (d.aliases?.length) bits.push(`alias: ${d.aliases.join(', ')}`);
      out.push('.TP', `.B ${roff(d.key)}`, roff(`${d.doc} [${bits.join('; ')}]`));
    }
  }
  out.push(
    '.SH EXAMPLE',
    '.nf',
    roff(
      renderExampleToml()
        .split('\n')
        .filter((l) => !l.startsWith('#') && l !== '')
        .slice(0, 30)
        .join('\n'),
    ),
    '.fi',
    '.SH SEE ALSO',
    '.BR openproxy (1)',
    '',
  );
  return out.join('\n');
}

if (require.main === module) {
  const root = join(__dirname, '..', '..', '..');
  writeFileSync(join(root, 'config', 'openproxy.toml'), renderExampleToml());
  writeFileSync(join(root, 'man', 'openproxy.toml.5'), renderManPage5());
  process.stdout.write('wrote config/openproxy.toml and man/openproxy.toml.5\n');
}
