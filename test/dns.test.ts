// dns_cache_enabled: openproxy runs in its own network namespace, whose /etc/hosts (bind-mounted by
// `ip netns exec` from /etc/netns/<ns>/hosts) the test rewrites; PostgreSQL in the same namespace
// listens on every loopback address, and inet_server_addr() tells which address a connection used.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import readline from 'node:readline';
import { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, createAppRole, until } from './helpers/db';
import { type Proxy, startProxy } from './helpers/proxy';

const NS = `opx-dns-${process.pid % 100000}`;
const HOSTS = `/etc/netns/${NS}/hosts`;
let cluster: PgCluster;
let proxy: Proxy;

function pointTo(addr: string): void {
  writeFileSync(HOSTS, `127.0.0.1 localhost\n${addr} pgdns\n`); // rewritten in place: the bind mount sees it
}

/** One query through openproxy from inside the namespace (a new client, so a new transaction). */
function psql(sql: string, db = 'postgres', user = APP_USER, pass = APP_PASS): string {
  const r = spawnSync(
    'ip',
    [
      'netns',
      'exec',
      NS,
      'psql',
      '-X',
      '-A',
      '-t',
      '-h',
      '127.0.0.1',
      '-p',
      String(proxy.port),
      '-U',
      user,
      '-d',
      db,
      '-c',
      sql,
    ],
    { encoding: 'utf8', env: { ...process.env, PGPASSWORD: pass }, timeout: 10000 },
  );
  if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
  return r.stdout.trim();
}

/** A client that keeps its connection (and, in session mode, its server connection) open. */
function heldClient(): {
  ask(sql: string): Promise<{ rows?: Record<string, unknown>[]; error?: string }>;
  close(): Promise<void>;
  proc: ChildProcess;
} {
  const proc = spawn(
    'ip',
    ['netns', 'exec', NS, process.execPath, join(__dirname, 'helpers', 'line-client.js'), String(proxy.port)],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = readline.createInterface({ input: proc.stdout! });
  const waiting: ((v: Record<string, unknown>) => void)[] = [];
  lines.on('line', (l) => waiting.shift()?.(JSON.parse(l)));
  const next = () => new Promise<Record<string, unknown>>((r) => waiting.push(r));
  const ready = next();
  return {
    proc,
    ask: async (sql) => {
      await ready;
      const answer = next();
      proc.stdin!.write(`${sql}\n`);
      return (await answer) as { rows?: Record<string, unknown>[]; error?: string };
    },
    close: async () => {
      proc.stdin!.end();
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

before(async () => {
  execFileSync('ip', ['netns', 'add', NS]);
  execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
  mkdirSync(`/etc/netns/${NS}`, { recursive: true });
  pointTo('127.0.0.1');
  cluster = await PgCluster.start({
    netns: NS,
    settings: { listen_addresses: "'*'" },
    hba: ['host all all 127.0.0.0/8 md5'],
  });
  createAppRole(cluster);
  proxy = await startProxy(
    (port) => `[general]\nhost = "127.0.0.1"\nport = ${port}\nworker_threads = 2\nprometheus_exporter_port = 0\n\
admin_username = "admin"\nadmin_password = "adminpass"\ndns_cache_enabled = true\ndns_max_ttl = 1\n
[pools.postgres]\npool_mode = "session"\n
[pools.postgres.users.0]\nusername = "${APP_USER}"\npassword = "${APP_PASS}"\npool_size = 5\n
[pools.postgres.shards.0]\ndatabase = "postgres"\nservers = [["pgdns", ${cluster.primary.port}, "primary"]]\n`,
    [],
    {},
    /openproxy listening/,
    NS,
  );
});

after(async () => {
  await proxy?.stop();
  cluster?.stop();
  try {
    execFileSync('ip', ['netns', 'del', NS]);
  } catch {
    /* gone */
  }
  rmSync(`/etc/netns/${NS}`, { recursive: true, force: true });
});

test(
  'a host name is resolved and cached; when it moves, new connections ' +
    'follow within dns_max_ttl and old ones drain',
  async () => {
    const addr = 'SELECT host(inet_server_addr()) AS a';
    assert.equal(psql(addr), '127.0.0.1');
    const held = heldClient();
    try {
      assert.deepEqual((await held.ask(addr)).rows, [{ a: '127.0.0.1' }]);
      const t0 = Date.now();
      pointTo('127.0.0.2');
      await until(() => psql(addr) === '127.0.0.2', 5000, 'new connections on the new address');
      const took = Date.now() - t0;
      assert.ok(took < 1000 + 1500, `followed after ${took} ms (dns_max_ttl 1 s)`);
      // The connection opened before the move keeps serving its client.
      assert.deepEqual((await held.ask(addr)).rows, [{ a: '127.0.0.1' }]);
      const servers = psql('SHOW SERVERS', 'openproxy', 'admin', 'adminpass');
      assert.match(servers, /pgdns \(127\.0\.0\.1\):/, 'the held connection, on the old address');
      // SHOW LISTS counts the cache: the name, and the lookups made so far (at least the first and one refresh).
      const lists = psql('SHOW LISTS', 'openproxy', 'admin', 'adminpass');
      assert.match(lists, /dns_names\|[1-9]/);
      assert.match(lists, /dns_queries\|([2-9]|\d\d)/);
      await proxy.waitFor(/DNS: server address changed.*from=127\.0\.0\.1 to=127\.0\.0\.2/, 3000);
    } finally {
      await held.close();
    }
    // Released, it is closed instead of pooled: only new-address connections remain.
    await proxy.waitFor(/pgdns moved from 127\.0\.0\.1; draining/, 5000);
    await until(
      () => !/127\.0\.0\.1\)/.test(psql('SHOW SERVERS', 'openproxy', 'admin', 'adminpass')),
      5000,
      'no connection left on the old address',
    );
    assert.equal(psql(addr), '127.0.0.2');
  },
);

test('a failed lookup keeps the last address (stale answers beat no answers)', async () => {
  writeFileSync(HOSTS, '127.0.0.1 localhost\n'); // pgdns no longer resolves
  await proxy.waitFor(/DNS: lookup failed; keeping the last address/, 5000);
  assert.equal(psql('SELECT host(inet_server_addr()) AS a'), '127.0.0.2');
});
