// The openproxy binary as an operator meets it: CLI answers, config errors before listening,
// log formats and rotation, SIGHUP / file-change reload, SIGINT graceful and SIGTERM fast stop.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { PgCluster, freePort } from '../testing/pg-cluster';
import { APP_PASS, client, connectError, createAppRole, query, sleep, until } from './helpers/db';
import { MAIN, configFor, startProxy, tempDir } from './helpers/proxy';

let cluster: PgCluster;
before(async () => {
  cluster = await PgCluster.start();
  createAppRole(cluster);
});
after(() => cluster?.stop());

const run = (args: string[], env: Record<string, string> = {}, cwd?: string) =>
  spawnSync(process.execPath, [MAIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    cwd,
    timeout: 20000,
  });

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });

describe('command line', () => {
  test('--version and -V print "openproxy <version>"', () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8'));
    for (const flag of ['--version', '-V']) {
      const r = run([flag]);
      assert.equal(r.status, 0);
      assert.equal(r.stdout, `openproxy ${pkg.version}\n`);
    }
  });

  test('a missing config file is named, with where to find an example and the demo', () => {
    const dir = tempDir('op-');
    const r = run([], {}, dir);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /openproxy\.toml not found/);
    assert.match(r.stderr, /config\/openproxy\.toml/);
    assert.match(r.stderr, /npm start/);
  });

  test('CONFIG_FILE from the environment; the argument wins', () => {
    const r = run([], { CONFIG_FILE: '/nonexistent/env.toml' });
    assert.match(r.stderr, /\/nonexistent\/env\.toml not found/);
    const r2 = run(['/nonexistent/arg.toml'], { CONFIG_FILE: '/nonexistent/env.toml' });
    assert.match(r2.stderr, /\/nonexistent\/arg\.toml not found/);
  });

  test('an invalid config exits non-zero before anything listens, naming key, value and expectation', async () => {
    const port = await freePort();
    const dir = tempDir('op-');
    const file = join(dir, 'bad.toml');
    writeFileSync(file, configFor(cluster, port).replace('pool_size = 5', 'pool_size = "lots"'));
    const r = run([file]);
    assert.equal(r.status, 78);
    assert.match(r.stderr, /pools\.postgres\.users\.0\.pool_size: invalid value "lots"; expected an integer >= 1/);
    assert.equal(await portOpen(port), false);
  });

  test('bad option values are usage errors', () => {
    const r = run(['--log-format', 'xml', 'x.toml']);
    assert.equal(r.status, 64);
    assert.match(r.stderr, /--log-format/);
  });
});

describe('logging', () => {
  test('structured format writes JSON lines to a file in --log-dir; passwords never appear', async () => {
    const dir = tempDir('op-logs-');
    const p = await startProxy(
      (port) => configFor(cluster, port, 'log_client_connections = true\nlog_client_disconnections = true'),
      ['--log-target', 'both', '--log-dir', dir, '-F', 'structured'],
    );
    try {
      await query(p.port, 'SELECT 1');
      await connectError(p.port, { password: 'not-the-password' });
      await until(
        () => readFileSync(join(dir, 'openproxy.log'), 'utf8').includes('client disconnected'),
        3000,
        'disconnect log',
      );
    } finally {
      await p.stop();
    }
    const lines = readFileSync(join(dir, 'openproxy.log'), 'utf8').trim().split('\n');
    const recs = lines.map((l) => JSON.parse(l));
    assert.ok(recs.some((r) => r.msg === 'openproxy listening' && r.level === 'INFO'));
    assert.ok(recs.some((r) => r.msg === 'client logged in' && r.user === 'app'));
    assert.ok(recs.some((r) => r.msg === 'client authentication failed'));
    const all = lines.join('\n');
    assert.ok(!all.includes(APP_PASS) && !all.includes('not-the-password') && !all.includes('adminpass'));
  });

  test('files rotate and at most --max-logfile-num are kept', async () => {
    const dir = tempDir('op-rot-');
    const p = await startProxy(
      (port) => configFor(cluster, port),
      ['--log-target', 'both', '--log-dir', dir, '--max-logfile-num', '3', '-l', 'debug'],
      { OPENPROXY_LOG_ROTATE_BYTES: '600' },
    );
    try {
      for (let i = 0; i < 15; i++) await query(p.port, 'SELECT 1');
    } finally {
      await p.stop();
    }
    const files = readdirSync(dir).filter((f) => f.startsWith('openproxy'));
    assert.equal(files.length, 3, files.join(','));
    assert.ok(files.includes('openproxy.log'));
  });

  test('text and debug formats', () => {
    const { formatRecord } = require('../src/log');
    const rec = {
      time: '2026-01-01T00:00:00.000Z',
      level: 'INFO',
      thread: 'main',
      msg: 'hello',
      fields: { a: 1, b: 'x y' },
    };
    assert.equal(formatRecord(rec, 'text'), '2026-01-01T00:00:00.000Z INFO  hello a=1 b="x y"\n');
    assert.match(formatRecord(rec, 'debug'), /\[main pid=\d+\] hello\n {4}a=1\n {4}b="x y"\n$/);
  });

  test('--log-level WARN drops INFO records and keeps warnings', async () => {
    const p = await startProxy((port) => configFor(cluster, port, 'not_a_key = 1'), ['-l', 'WARN'], {}, /unknown key/);
    try {
      // Listening (the ready line is INFO, so not printed): the port answers once the workers are up.
      await until(() => portOpen(p.port), 15000, 'openproxy to listen');
      assert.match(p.output(), /WARN {2}config: general\.not_a_key: unknown key, ignored/);
      assert.doesNotMatch(p.output(), /INFO|DEBUG/);
    } finally {
      await p.stop();
    }
  });
});

describe('signals and reload', () => {
  test('SIGHUP adds a pool; an invalid file is rejected and the running config stays', async () => {
    const p = await startProxy((port) => configFor(cluster, port));
    try {
      assert.equal((await connectError(p.port, { database: 'second' })).code, '3D000');
      const base = readFileSync(p.configPath, 'utf8');
      writeFileSync(p.configPath, configFor(cluster, p.port, '', [{}, { name: 'second' }]));
      p.proc.kill('SIGHUP');
      await p.waitFor(/configuration reloaded/);
      assert.deepEqual(await query(p.port, 'SELECT 1 AS x', { database: 'second' }), [{ x: 1 }]);
      writeFileSync(p.configPath, base.replace('pool_size = 5', 'pool_size = -1'));
      p.proc.kill('SIGHUP');
      await p.waitFor(/config reload rejected/);
      assert.match(p.output(), /pools\.postgres\.users\.0\.pool_size: invalid value -1/);
      assert.deepEqual(
        await query(p.port, 'SELECT 1 AS x', { database: 'second' }),
        [{ x: 1 }],
        'old config still serves',
      );
    } finally {
      await p.stop();
    }
  });

  test('reload_toml: a changed file is re-read every renew_interval; connected clients stay', async () => {
    const p = await startProxy((port) => configFor(cluster, port, 'renew_interval = 200'));
    try {
      const held = client(p.port);
      await held.connect();
      await sleep(50);
      writeFileSync(p.configPath, configFor(cluster, p.port, 'renew_interval = 200', [{}, { name: 'third' }]));
      await p.waitFor(/configuration reloaded.*file changed/);
      assert.deepEqual(await query(p.port, 'SELECT 1 AS x', { database: 'third' }), [{ x: 1 }]);
      assert.deepEqual(
        (await held.query('SELECT 2 AS y')).rows,
        [{ y: 2 }],
        'a client connected before the reload keeps working',
      );
      await held.end();
    } finally {
      await p.stop();
    }
  });

  test('SIGINT: stops accepting, waits for connected clients, then exits 0', async () => {
    const p = await startProxy((port) => configFor(cluster, port, 'shutdown_timeout = 10000'));
    const held = client(p.port);
    await held.connect();
    p.proc.kill('SIGINT');
    await p.waitFor(/graceful shutdown/);
    await sleep(200);
    assert.equal(await portOpen(p.port), false, 'listener closed');
    assert.deepEqual((await held.query('SELECT 3 AS z')).rows, [{ z: 3 }], 'connected client still served');
    assert.equal(p.proc.exitCode, null, 'still running while a client is connected');
    await held.end();
    assert.equal(await p.stop('SIGINT'), 0);
  });

  test('SIGINT with a client that stays: disconnected with 57P01 after shutdown_timeout', async () => {
    const p = await startProxy((port) => configFor(cluster, port, 'shutdown_timeout = 500'));
    const held = client(p.port);
    const errors: { code?: string }[] = [];
    held.on('error', (e) => errors.push(e as { code?: string }));
    await held.connect();
    p.proc.kill('SIGINT');
    const code = await p.stop('SIGINT');
    assert.equal(code, 0);
    await until(() => errors.length > 0, 3000, 'client error');
    assert.equal(errors[0].code, '57P01');
  });

  test('SIGTERM: fast shutdown, clients get 57P01, exit 0', async () => {
    const p = await startProxy((port) => configFor(cluster, port));
    const held = client(p.port);
    const errors: { code?: string }[] = [];
    held.on('error', (e) => errors.push(e as { code?: string }));
    await held.connect();
    const t0 = Date.now();
    assert.equal(await p.stop('SIGTERM'), 0);
    assert.ok(Date.now() - t0 < 5000);
    await until(() => errors.length > 0, 3000, 'client error');
    assert.equal(errors[0].code, '57P01');
    assert.ok(!existsSync(join(p.dir, 'logs')), 'stdout target writes no log files');
  });
});
