// Reads a TOML file and validates it against the config table into an immutable snapshot.
// Every error names the key path, the bad value and what was expected.

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { CONFIG_TABLE, IGNORED_PGCAT_KEYS, type KeyDef, type Section, keysOf } from './table';
import { ConfigError } from './error';
import { type HbaRule, parseNetwork } from './hba';
import { checkClientTls } from './client-tls';
import { readAuthFile } from './auth-file';
import type {
  Config,
  GeneralConfig,
  ListenerConfig,
  PoolConfig,
  ServerAddress,
  ShardConfig,
  UserConfig,
  VirtualRouterConfig,
} from './types';

type Table = Record<string, unknown>;

const isTable = (v: unknown): v is Table =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v instanceof Date) return v.toISOString();
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function expected(d: KeyDef): string {
  switch (d.type) {
    case 'string':
      return 'a string';
    case 'bool':
      return 'true or false';
    case 'strings':
      return 'an array of strings';
    case 'servers':
      return 'an array of [host, port, role] (role primary, replica or auto) or { host, port, role, weight } tables';
    case 'enum':
      return `one of ${d.values!.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'int': {
      const unit = d.unit ? ` (${d.unit})` : '';
      if (d.min !== undefined && d.max !== undefined) return `an integer from ${d.min} to ${d.max}${unit}`;
      if (d.min !== undefined) return `an integer >= ${d.min}${unit}`;
      return `an integer${unit}`;
    }
  }
}

function fail(path: string, value: unknown, d: KeyDef | string): never {
  const exp = typeof d === 'string' ? d : expected(d);
  const shown = typeof d !== 'string' && d.secret ? `(a ${typeof value}, not shown: the key is secret)` : show(value);
  throw new ConfigError(`${path}: invalid value ${shown}; expected ${exp}`);
}

function convert(path: string, value: unknown, d: KeyDef): unknown {
  switch (d.type) {
    case 'string':
      if (typeof value !== 'string') fail(path, value, d);
      return value;
    case 'bool':
      if (typeof value !== 'boolean') fail(path, value, d);
      return value;
    case 'int': {
      const n = typeof value === 'bigint' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isSafeInteger(n)) fail(path, value, d);
      if ((d.min !== undefined && n < d.min) || (d.max !== undefined && n > d.max)) fail(path, value, d);
      return n;
    }
    case 'enum': {
      if (typeof value !== 'string') fail(path, value, d);
      const v = value.toLowerCase();
      if (!d.values!.includes(v)) fail(path, value, d);
      return v;
    }
    case 'strings':
      if (!Array.isArray(value) || !value.every((x) => typeof x === 'string')) fail(path, value, d);
      return value.slice();
    case 'servers':
      return convertServers(path, value, d);
  }
}

function convertServers(path: string, value: unknown, d: KeyDef): ServerAddress[] {
  if (!Array.isArray(value) || value.length === 0) fail(path, value, d);
  return value.map((entry, i) => {
    const at = `${path}[${i}]`;
    // [host, port, role, patroni_port, weight] or { host, port, role, patroni_port, weight }.
    let parts: unknown[];
    if (isTable(entry)) {
      for (const k of Object.keys(entry))
        if (!SERVER_FIELDS.includes(k)) fail(`${at}.${k}`, entry[k], `one of the fields ${SERVER_FIELDS.join(', ')}`);
      parts = SERVER_FIELDS.map((k) => entry[k]);
    } else if (Array.isArray(entry) && entry.length >= 2 && entry.length <= 5) parts = entry;
    else
      fail(at, entry, '[host, port, role] (role optional, default primary; optional 4th: Patroni port, 5th: weight)');
    const [host, port, role = 'primary', patroni, weight = 1] = parts;
    const field = (n: number) => (isTable(entry) ? `${at}.${SERVER_FIELDS[n]}` : `${at}[${n}]`);
    const int = (v: unknown) => (typeof v === 'bigint' ? Number(v) : v);
    if (typeof host !== 'string' || host === '') fail(field(0), host, 'a host name or address');
    const portN = int(port);
    if (typeof portN !== 'number' || !Number.isInteger(portN) || portN < 1 || portN > 65535)
      fail(field(1), port, 'a port from 1 to 65535');
    const r = typeof role === 'string' ? role.toLowerCase() : role;
    if (r !== 'primary' && r !== 'replica' && r !== 'auto') fail(field(2), role, '"primary", "replica" or "auto"');
    const w = int(weight);
    if (typeof w !== 'number' || !Number.isInteger(w) || w < 0 || w > 1000)
      fail(field(4), weight, 'a weight from 0 to 1000');
    const out: ServerAddress = { host, port: portN, role: r, weight: w };
    // 0 in the array form: no Patroni port of its own (the shard's patroni_port), so a weight can follow.
    const pn = int(patroni);
    if (patroni !== undefined && pn !== 0) {
      if (typeof pn !== 'number' || !Number.isInteger(pn) || pn < 1 || pn > 65535)
        fail(field(3), patroni, "a Patroni REST port from 1 to 65535 (0 = the shard's patroni_port)");
      out.patroni_port = pn;
    }
    return out;
  });
}

const SERVER_FIELDS = ['host', 'port', 'role', 'patroni_port', 'weight'];

/** Validates one TOML table against the keys of a section; `nested` keys are sub-tables handled by the caller. */
function readSection(section: Section, raw: Table, path: string, warnings: string[], nested: string[] = []): Table {
  const defs = keysOf(section);
  const out: Table = {};
  const seen = new Map<string, string>();
  for (const [name, value] of Object.entries(raw)) {
    if (nested.includes(name)) continue;
    const d = defs.find((x) => x.key === name || x.aliases?.includes(name));
    const at = `${path}.${name}`;
    if (!d) {
      warnings.push(
        IGNORED_PGCAT_KEYS.has(name)
          ? `${at}: PgCat key accepted but not used by openproxy`
          : `${at}: unknown key, ignored`,
      );
      continue;
    }
    if (seen.has(d.key))
      throw new ConfigError(`${at}: duplicates ${path}.${seen.get(d.key)} (same key, other spelling)`);
    seen.set(d.key, name);
    out[d.key] = convert(at, value, d);
  }
  for (const d of defs) {
    if (d.key in out) continue;
    if (d.required) throw new ConfigError(`${path}.${d.key}: missing; expected ${expected(d)}`);
    if (d.default !== undefined) out[d.key] = Array.isArray(d.default) ? d.default.slice() : d.default;
  }
  return out;
}

/** TOML arrays-of-tables or numbered sub-tables ([pools.x.users.0]) both become an ordered list. */
function numbered(raw: unknown, path: string): [string, Table][] {
  if (raw === undefined) return [];
  if (Array.isArray(raw))
    return raw.map((t, i) => {
      if (!isTable(t)) fail(`${path}[${i}]`, t, 'a table');
      return [String(i), t];
    });
  if (!isTable(raw)) fail(path, raw, `a table of numbered entries, e.g. [${path}.0]`);
  return Object.entries(raw)
    .map(([k, t]): [string, Table] => {
      if (!/^\d+$/.test(k)) fail(`${path}.${k}`, k, 'a numeric index (0, 1, …)');
      if (!isTable(t)) fail(`${path}.${k}`, t, 'a table');
      return [k, t];
    })
    .sort((a, b) => Number(a[0]) - Number(b[0]));
}

export function parseConfig(text: string, path: string): Config {
  let raw: Table;
  try {
    raw = parseToml(text) as Table;
  } catch (e) {
    throw new ConfigError(`${path}: TOML syntax error: ${(e as Error).message.split('\n')[0]}`);
  }
  const warnings: string[] = [];
  for (const k of Object.keys(raw))
    if (k !== 'general' && k !== 'pools') warnings.push(`${k}: unknown section, ignored`);

  const rawGeneral = raw.general ?? {};
  if (!isTable(rawGeneral)) fail('general', rawGeneral, 'a table');
  const general = readSection('general', rawGeneral, 'general', warnings, [
    'virtual_router',
    'hba',
    'listeners',
  ]) as unknown as GeneralConfig;
  checkClientTls(general);
  const authFile = general.auth_file ? readAuthFile(resolve(dirname(path), general.auth_file)) : null;
  if (!/^[0-7]{3,4}$/.test(general.unix_socket_mode))
    fail('general.unix_socket_mode', general.unix_socket_mode, 'an octal file mode such as "0777" or "0770"');
  const hba = numbered(rawGeneral.hba, 'general.hba').map(([k, rh]): HbaRule => {
    const rule = readSection('hba', rh, `general.hba.${k}`, warnings) as unknown as HbaRule;
    rule.net = parseNetwork(`general.hba.${k}.address`, rule.address);
    return rule;
  });
  const listeners = numbered(rawGeneral.listeners, 'general.listeners').map(
    ([k, rl]) => readSection('listener', rl, `general.listeners.${k}`, warnings) as unknown as ListenerConfig,
  );
  checkListeners(general, listeners);
  if ((general.tls_certificate === undefined) !== (general.tls_private_key === undefined)) {
    throw new ConfigError(
      `general.tls_certificate / general.tls_private_key: only one is set; expected both or neither`,
    );
  }
  let virtual_router: VirtualRouterConfig | undefined;
  if (rawGeneral.virtual_router !== undefined) {
    if (!isTable(rawGeneral.virtual_router)) fail('general.virtual_router', rawGeneral.virtual_router, 'a table');
    virtual_router = readSection(
      'virtual_router',
      rawGeneral.virtual_router,
      'general.virtual_router',
      warnings,
    ) as unknown as VirtualRouterConfig;
    virtual_router.vip_addresses.forEach((a, i) => {
      if (
        !/^(\d{1,3})(\.\d{1,3}){3}\/(\d|[12]\d|3[0-2])$/.test(a) ||
        a
          .split('/')[0]
          .split('.')
          .some((o) => Number(o) > 255)
      ) {
        fail(
          `general.virtual_router.vip_addresses[${i}]`,
          a,
          'an IPv4 address with prefix length, e.g. "192.168.35.200/24"',
        );
      }
    });
    (virtual_router.unicast_peers ?? []).forEach((a, i) => {
      if (!/^(\d{1,3})(\.\d{1,3}){3}$/.test(a) || a.split('.').some((o) => Number(o) > 255))
        fail(`general.virtual_router.unicast_peers[${i}]`, a, 'an IPv4 address, e.g. "192.168.35.11"');
    });
  }

  const rawPools = raw.pools ?? {};
  if (!isTable(rawPools)) fail('pools', rawPools, 'a table of pools, e.g. [pools.mydb]');
  const pools: PoolConfig[] = [];
  for (const [name, rp] of Object.entries(rawPools)) {
    const at = `pools.${name}`;
    if (!isTable(rp)) fail(at, rp, 'a table');
    const pool = readSection('pool', rp, at, warnings, ['users', 'shards']) as unknown as PoolConfig;
    pool.name = name;
    pool.own = Object.keys(pool);
    pool.users = numbered(rp.users, `${at}.users`).map(([k, ru], index) => {
      const user = readSection('user', ru, `${at}.users.${k}`, warnings) as unknown as UserConfig;
      user.index = index;
      user.own = Object.keys(user);
      if (user.password === undefined && authFile?.has(user.username)) user.password = authFile.get(user.username);
      user.server_username ??= user.username;
      user.server_password ??= user.password;
      if (user.min_pool_size > user.pool_size) {
        fail(`${at}.users.${k}.min_pool_size`, user.min_pool_size, `at most pool_size (${user.pool_size})`);
      }
      return user;
    });
    const names = new Set<string>();
    for (const [i, user] of pool.users.entries()) {
      if (names.has(user.username))
        throw new ConfigError(`${at}.users.${i}.username: ${show(user.username)} appears twice in pool ${name}`);
      names.add(user.username);
    }
    if (pool.users.length === 0) warnings.push(`${at}.users: no users; nobody can log in to this pool`);
    pool.shards = numbered(rp.shards, `${at}.shards`).map(([k, rs], index) => {
      const shard = readSection('shard', rs, `${at}.shards.${k}`, warnings) as unknown as ShardConfig;
      shard.index = index;
      checkEtcd(shard, `${at}.shards.${k}`);
      return shard;
    });
    if (pool.shards.length === 0)
      throw new ConfigError(`${at}.shards: missing; expected at least one [${at}.shards.0] with database and servers`);
    pools.push(pool);
  }
  inherit(general, pools);
  checkUserLimits(pools);
  return deepFreeze({ path, general, virtual_router, hba, listeners, pools, warnings });
}

/** etcd_hosts (the leader-key watch) needs a Patroni shard and its scope. */
function checkEtcd(shard: ShardConfig, at: string): void {
  if (shard.etcd_hosts.length === 0) return;
  if (!shard.use_patroni)
    throw new ConfigError(`${at}.etcd_hosts: set, but use_patroni is false (only Patroni's leader key is watched)`);
  if (!shard.patroni_scope)
    throw new ConfigError(`${at}.patroni_scope: missing; etcd_hosts needs Patroni's scope to find the leader key`);
  shard.etcd_hosts.forEach((h, i) => {
    if (!/^[^\s:]+:\d{1,5}$/.test(h)) fail(`${at}.etcd_hosts.${i}`, h, '"host:port"');
  });
}

/** Every listener needs its own address: not general's host:port, not another listener's. */
function checkListeners(general: GeneralConfig, listeners: ListenerConfig[]): void {
  const taken = new Map<string, string>([[`${general.host}:${general.port}`, 'general.port']]);
  listeners.forEach((l, i) => {
    const at = `${l.host ?? general.host}:${l.port}`;
    const other = taken.get(at) ?? (l.port === general.port ? 'general.port' : undefined);
    if (other) throw new ConfigError(`general.listeners.${i}.port: ${l.port} is already used by ${other} (${at})`);
    taken.set(at, `general.listeners.${i}`);
  });
}

/** Pool keys that default to [general]'s, and user keys that default to their pool's or [general]'s. */
const FROM_GENERAL = [
  'idle_timeout',
  'prepared_statements_cache_size',
  'connect_timeout',
  'server_lifetime',
  'max_db_connections',
  'reserve_pool_size',
] as const;
const USER_FROM_POOL = ['pool_mode', 'server_lifetime'] as const;

/** Effective values: whatever a pool or user does not set itself comes from above (also after SET). */
function inherit(general: GeneralConfig, pools: PoolConfig[]): void {
  for (const pool of pools) {
    const p = pool as unknown as Table;
    for (const k of FROM_GENERAL) if (!pool.own.includes(k)) p[k] = general[k];
    for (const user of pool.users) {
      const u = user as unknown as Table;
      for (const k of USER_FROM_POOL) if (!user.own.includes(k)) u[k] = pool[k];
      if (!user.own.includes('max_user_connections')) user.max_user_connections = general.max_user_connections;
    }
  }
}

/** max_user_connections counts a user across pools, so every entry of one user must agree. */
function checkUserLimits(pools: PoolConfig[]): void {
  const seen = new Map<string, { at: string; limit: number }>();
  for (const pool of pools) {
    for (const user of pool.users) {
      const at = `pools.${pool.name}.users.${user.index}.max_user_connections`;
      const first = seen.get(user.username);
      if (!first) seen.set(user.username, { at, limit: user.max_user_connections });
      else if (first.limit !== user.max_user_connections)
        fail(at, user.max_user_connections, `the same as ${first.at} (${first.limit}): one limit per user`);
    }
  }
}

/**
 * A user auth_query found, added to `pool` with auth_user's settings and the secret as both its
 * client and server password (SCRAM pass-through or md5 for the server login). A user already
 * there only gets the new secret.
 */
export function withUser(cfg: Config, pool: string, username: string, secret: string): Config {
  const next = JSON.parse(JSON.stringify(cfg)) as Config;
  const p = next.pools.find((x) => x.name === pool);
  const model = p?.users.find((u) => u.username === next.general.auth_user);
  if (!p || !model) throw new ConfigError(`pool "${pool}" has no auth_user "${next.general.auth_user}"`);
  const old = p.users.find((u) => u.username === username);
  if (old) {
    old.password = secret;
    old.server_password = secret;
  } else
    p.users.push({
      ...model,
      index: p.users.length,
      username,
      password: secret,
      server_username: username,
      server_password: secret,
      lookedUp: true,
    });
  return deepFreeze(next);
}

export function loadConfig(file: string): Config {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ConfigError(
      err.code === 'ENOENT' ? `config file ${path} not found` : `cannot read config file ${path}: ${err.message}`,
    );
  }
  return parseConfig(text, path);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** `key = value` rows for SHOW CONFIG and logs: secrets redacted. */
export function configRows(cfg: Config): { key: string; value: string; default: string; changeable: string }[] {
  const rows: { key: string; value: string; default: string; changeable: string }[] = [];
  const put = (key: string, d: KeyDef, v: unknown) =>
    rows.push({
      key,
      value: d.secret
        ? v === undefined
          ? ''
          : '********'
        : v === undefined
          ? d.key === 'query_parser_max_length'
            ? 'unlimited'
            : ''
          : Array.isArray(v)
            ? JSON.stringify(v)
            : String(v),
      default: d.default === undefined ? '-' : String(d.default),
      changeable: d.changeable ? 'yes' : 'no',
    });
  for (const d of keysOf('general')) put(d.key, d, (cfg.general as unknown as Table)[d.key]);
  cfg.hba.forEach((rule, i) => {
    for (const d of keysOf('hba')) put(`hba.${i}.${d.key}`, d, (rule as unknown as Table)[d.key]);
  });
  cfg.listeners.forEach((l, i) => {
    for (const d of keysOf('listener')) put(`listeners.${i}.${d.key}`, d, (l as unknown as Table)[d.key]);
  });
  for (const pool of cfg.pools) {
    for (const d of keysOf('pool')) put(`pools.${pool.name}.${d.key}`, d, (pool as unknown as Table)[d.key]);
    // The seed's two rows in PgCat's spelling: changed by a reload, not by SET.
    const row = (k: string, value: string) =>
      rows.push({ key: `pools."${pool.name}".${k}`, value, default: '-', changeable: 'yes' });
    row('users', pool.users.map((u) => u.username).join(', '));
    row('shard_count', String(pool.shards.length));
  }
  return rows;
}

export { CONFIG_TABLE };

/**
 * The admin console's SET key = value: a new snapshot with one [general] key, or one key of a pool
 * (`pools.NAME.key`, also PgCat's `pools."NAME".key`), changed. Only keys that a reload may change
 * are accepted; the value is checked like the file's; pools and users that inherit it follow.
 */
export function withSetting(cfg: Config, key: string, text: string): Config {
  const pm = /^pools\.(?:"([^"]+)"|([^."]+))\.([a-z_]+)$/.exec(key);
  const section = pm ? 'pool' : 'general';
  const name = pm ? pm[3] : key;
  const poolIndex = pm ? cfg.pools.findIndex((p) => p.name === (pm[1] ?? pm[2])) : -1;
  if (pm && poolIndex < 0) throw new ConfigError(`no pool named "${pm[1] ?? pm[2]}"; SHOW CONFIG lists them`);
  const d = keysOf(section).find((k) => k.key === name || k.aliases?.includes(name));
  if (!d) throw new ConfigError(`unknown setting "${key}"; SHOW CONFIG lists them`);
  const at = pm ? `pools.${cfg.pools[poolIndex].name}.${d.key}` : `general.${d.key}`;
  if (!d.changeable)
    throw new ConfigError(`${at} cannot be changed while openproxy runs (restart with a new config file)`);
  let value: unknown = text;
  if (d.type === 'int') value = /^-?\d+$/.test(text) ? Number(text) : text;
  else if (d.type === 'bool')
    value = /^(on|true|1|yes)$/i.test(text) ? true : /^(off|false|0|no)$/i.test(text) ? false : text;
  const converted = convert(at, value, d);
  const next = JSON.parse(JSON.stringify(cfg)) as Config;
  if (pm) {
    const pool = next.pools[poolIndex];
    (pool as unknown as Table)[d.key] = converted;
    if (!pool.own.includes(d.key)) pool.own.push(d.key); // set here now: no longer inherited
  } else (next.general as unknown as Table)[d.key] = converted;
  checkClientTls(next.general);
  inherit(next.general, next.pools);
  checkUserLimits(next.pools);
  return deepFreeze(next);
}
