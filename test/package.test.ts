// Packaging: `npm pack` gives a tarball that installs with npm and whose `openproxy` binary runs
// from any directory, with its man pages, against a real PostgreSQL.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { PgCluster, freePort } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, createAppRole, query } from './helpers/db';
import { tempDir } from './helpers/proxy';

const ROOT = join(__dirname, '..', '..');
let cluster: PgCluster;
let bin: string;
let pkgDir: string;

before(async () => {
  const dir = tempDir('openproxy-pack-');
  const pack = spawnSync('npm', ['pack', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8', timeout: 180000 });
  assert.equal(pack.status, 0, pack.stderr);
  const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
  const inst = join(dir, 'inst');
  const install = spawnSync(
    'npm',
    ['install', '--prefer-offline', '--no-audit', '--no-fund', '--prefix', inst, join(dir, tgz)],
    { cwd: dir, encoding: 'utf8', timeout: 300000 },
  );
  assert.equal(install.status, 0, install.stderr);
  bin = join(inst, 'node_modules', '.bin', 'openproxy');
  pkgDir = join(inst, 'node_modules', 'openproxy');
  cluster = await PgCluster.start();
  createAppRole(cluster);
});
after(() => cluster?.stop());

test('the installed binary runs from any directory: --version, --help, a missing config', () => {
  const v = spawnSync(bin, ['--version'], { cwd: tmpdir(), encoding: 'utf8' });
  assert.equal(v.status, 0, v.stderr);
  assert.match(v.stdout, /^openproxy \d+\.\d+\.\d+/);
  const h = spawnSync(bin, ['--help'], { cwd: tmpdir(), encoding: 'utf8' });
  assert.match(h.stdout, /--log-target/);
  const missing = spawnSync(bin, ['/nonexistent/openproxy.toml'], { cwd: tmpdir(), encoding: 'utf8' });
  assert.equal(missing.status, 78);
});

test('the package carries the man pages, the example config and the systemd unit; man renders them', () => {
  for (const f of [
    'man/openproxy.1',
    'man/openproxy.toml.5',
    'config/openproxy.toml',
    'config/openproxy.service',
    'README.md',
  ])
    assert.ok(existsSync(join(pkgDir, f)), f);
  for (const page of ['man/openproxy.1', 'man/openproxy.toml.5']) {
    const m = spawnSync('man', ['-l', join(pkgDir, page)], {
      encoding: 'utf8',
      env: { ...process.env, MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '80' },
    });
    assert.equal(m.status, 0, m.stderr);
    assert.match(m.stdout, /openproxy/);
  }
});

test('the installed binary proxies to a real PostgreSQL', async () => {
  const cfgDir = tempDir('openproxy-pkg-cfg-');
  const port = await freePort();
  const file = join(cfgDir, 'openproxy.toml');
  writeFileSync(
    file,
    `[general]\nhost = "127.0.0.1"\nport = ${port}\nworker_threads = ` +
      `2\nprometheus_exporter_port = ` +
      `0\n[pools.postgres]\n[pools.postgres.users.0]\nusername = ` +
      `"${APP_USER}"\npassword = ` +
      `"${APP_PASS}"\n[pools.postgres.shards.0]\ndatabase = ` +
      `"postgres"\nservers = [["127.0.0.1", ${cluster.primary.port}, ` +
      `"primary"]]\n`,
  );
  const p = spawn(bin, [file, '--log-target', 'stdout'], { cwd: tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (b) => (out += b));
  p.stderr.on('data', (b) => (out += b));
  try {
    for (let i = 0; i < 100 && !/openproxy listening/.test(out); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(out, /openproxy listening/);
    const rows = await query<{ n: number }>(port, 'SELECT 41 + 1 AS n');
    assert.equal(rows[0].n, 42);
  } finally {
    p.kill('SIGTERM');
    await new Promise((r) => p.once('exit', r));
  }
});
