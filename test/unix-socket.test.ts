// The Unix-domain socket listener: psql's default connection (no -h: Debian's libpq looks in
// /var/run/postgresql) reaches openproxy, node-postgres in session and transaction mode, the
// socket's mode and group, a stale socket file from a crash, `local` hba rules, no TLS demand on
// the socket, and the file gone after shutdown.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import net from 'node:net';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, client, createAppRole } from './helpers/db';
import { configFor, startProxy, tempDir } from './helpers/proxy';
import { selfSigned } from './helpers/tls';

const DEBIAN_DIR = '/var/run/postgresql';
let cluster: PgCluster;
before(async () => {
  // Debian's postgresql-common makes it; a machine without it gets it here (the test runs as root).
  if (!existsSync(DEBIAN_DIR)) mkdirSync(DEBIAN_DIR, { recursive: true });
  cluster = await PgCluster.start();
  createAppRole(cluster);
});
after(() => cluster?.stop());

/** psql with libpq's defaults for the host (no -h, no PGHOST): the compiled-in socket directory. */
function psqlDefault(port: number, sql: string, extra: string[] = []) {
  const env: NodeJS.ProcessEnv = { ...process.env, PGPASSWORD: APP_PASS, PGCONNECT_TIMEOUT: '10' };
  delete env.PGHOST;
  return spawnSync('psql', ['-p', String(port), '-U', APP_USER, '-d', 'postgres', '-AtX', '-c', sql, ...extra], {
    env,
    encoding: 'utf8',
    timeout: 20000,
  });
}

const groupGid = (name: string) =>
  Number(execFileSync('getent', ['group', name], { encoding: 'utf8' }).split(':')[2].trim());

describe('unix_socket_dir', () => {
  test("psql's default connection and node-postgres in both pool modes reach openproxy", async () => {
    for (const mode of ['session', 'transaction'] as const) {
      const p = await startProxy((port) =>
        configFor(
          cluster,
          port,
          `unix_socket_dir = "${DEBIAN_DIR}"\nunix_socket_mode = "0770"\nunix_socket_group = "postgres"`,
          [{ pool_mode: mode }],
        ),
      );
      const path = join(DEBIAN_DIR, `.s.PGSQL.${p.port}`);
      try {
        const st = statSync(path);
        assert.ok(st.isSocket());
        assert.equal(st.mode & 0o777, 0o770);
        assert.equal(st.gid, groupGid('postgres'));
        // Answered by the PostgreSQL behind openproxy (its own port), though psql asked for openproxy's.
        const r = psqlDefault(p.port, "SELECT current_setting('port')");
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout.trim(), String(cluster.primary.port));
        const c = client(p.port, { host: DEBIAN_DIR });
        await c.connect();
        await c.query('BEGIN');
        const x = await c.query('SELECT $1::int * 2 AS n', [21]);
        await c.query('COMMIT');
        assert.equal(x.rows[0].n, 42);
        await c.end();
        assert.match(p.output(), new RegExp(`socket=${path.replace(/\./g, '\\.')}`));
      } finally {
        await p.stop();
      }
      assert.equal(existsSync(path), false, 'socket file removed at shutdown');
    }
  });

  test('a stale socket file left by a crash is replaced', async () => {
    const dir = tempDir('op-sock-');
    const p = await startProxy((port) => {
      // A process that bound the socket and died without removing it.
      const path = join(dir, `.s.PGSQL.${port}`);
      const js =
        `require('net').createServer().listen(${JSON.stringify(path)}, ` +
        "() => process.kill(process.pid, 'SIGKILL'))";
      spawnSync(process.execPath, ['-e', js], { timeout: 10000 });
      assert.ok(existsSync(path), 'stale socket file in place');
      return configFor(cluster, port, `unix_socket_dir = "${dir}"`);
    });
    try {
      const r = spawnSync(
        'psql',
        ['-h', dir, '-p', String(p.port), '-U', APP_USER, '-d', 'postgres', '-AtXc', 'SELECT 1'],
        {
          env: { ...process.env, PGPASSWORD: APP_PASS },
          encoding: 'utf8',
          timeout: 20000,
        },
      );
      assert.equal(r.stdout.trim(), '1', r.stderr);
    } finally {
      await p.stop();
    }
  });

  test('a socket another live process listens on is an error naming it, not taken over', async () => {
    const dir = tempDir('op-sock-');
    let other: net.Server | null = null;
    const err = await startProxy((port) => {
      other = net.createServer().listen(join(dir, `.s.PGSQL.${port}`));
      return configFor(cluster, port, `unix_socket_dir = "${dir}"`);
    }).then(
      (p) => p.stop().then(() => null),
      (e: Error) => e,
    );
    try {
      assert.ok(err, 'openproxy must not start');
      assert.match(err.message, /cannot listen.*is in use by another process/s);
    } finally {
      (other as net.Server | null)?.close();
    }
  });

  test('local hba rules apply to the socket only; TLS is not demanded there', async () => {
    const dir = tempDir('op-sock-');
    const { cert, key } = selfSigned(dir, 'server');
    const general =
      `unix_socket_dir = "${dir}"\ntls_certificate = "${cert}"\ntls_private_key = "${key}"\n` +
      'client_tls_sslmode = "require"\n' +
      '[[general.hba]]\ntype = "local"\nuser = ["nobody_else"]\nmethod = "trust"\n' +
      '[[general.hba]]\ntype = "local"\nmethod = "reject"\n' +
      '[[general.hba]]\ntype = "hostssl"\naddress = "127.0.0.1/32"\nmethod = "scram-sha-256"\n';
    const p = await startProxy((port) => configFor(cluster, port, general));
    const run = (host: string, sslmode: string) =>
      spawnSync(
        'psql',
        [`host=${host} port=${p.port} user=${APP_USER} dbname=postgres sslmode=${sslmode}`, '-AtXc', 'SELECT 1'],
        {
          env: { ...process.env, PGPASSWORD: APP_PASS },
          encoding: 'utf8',
          timeout: 20000,
        },
      );
    try {
      // The socket: no TLS asked for (client_tls_sslmode is for TCP), and the local reject rule refuses.
      const sock = run(dir, 'prefer');
      assert.notEqual(sock.status, 0);
      assert.match(sock.stderr, /rejected by an hba rule: local socket/);
      assert.doesNotMatch(sock.stderr, /TLS is required/);
      // TCP with TLS: the hostssl rule; local rules do not apply.
      const tcp = run('127.0.0.1', 'require');
      assert.equal(tcp.stdout.trim(), '1', tcp.stderr);
    } finally {
      await p.stop();
    }
  });
});
