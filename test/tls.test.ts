// TLS on both sides: clients negotiate TLS with openproxy (SSLRequest → S), and openproxy talks
// TLS to a PostgreSQL started with ssl = on, verifying the certificate when asked to.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync } from 'node:fs';
import { join } from 'node:path';
import { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, connectError, createAppRole, query } from './helpers/db';
import { configFor, startProxy, tempDir } from './helpers/proxy';

let cluster: PgCluster;
let certDir: string;

function selfSigned(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

before(async () => {
  certDir = tempDir('op-tls-');
  const srv = selfSigned(certDir, 'server');
  if (process.getuid?.() === 0) {
    const id = execFileSync('id', ['postgres'], { encoding: 'utf8' });
    const uid = Number(/uid=(\d+)/.exec(id)![1]);
    const gid = Number(/gid=(\d+)/.exec(id)![1]);
    chownSync(certDir, uid, gid);
    chownSync(srv.cert, uid, gid);
    chownSync(srv.key, uid, gid);
  }
  chmodSync(srv.key, 0o600);
  chmodSync(certDir, 0o755);
  cluster = await PgCluster.start({
    settings: { ssl: 'on', ssl_cert_file: `'${srv.cert}'`, ssl_key_file: `'${srv.key}'` },
  });
  createAppRole(cluster);
});
after(() => cluster?.stop());

test('clients negotiate TLS with openproxy when a certificate is configured', async () => {
  const { cert, key } = selfSigned(certDir, 'proxy');
  const p = await startProxy((port) =>
    configFor(cluster, port, `tls_certificate = "${cert}"\ntls_private_key = "${key}"`),
  );
  try {
    const r = spawnSync(
      'psql',
      ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(p.port), '-U', APP_USER, '-d', 'postgres', '-c', 'SELECT 1'],
      {
        encoding: 'utf8',
        env: { ...process.env, PGPASSWORD: APP_PASS, PGSSLMODE: 'require' },
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '1');
    const rows = await query(p.port, 'SELECT 2 AS x', { ssl: { rejectUnauthorized: false } });
    assert.deepEqual(rows, [{ x: 2 }]);
    assert.deepEqual(await query(p.port, 'SELECT 3 AS x'), [{ x: 3 }], 'plain connections still accepted');
  } finally {
    await p.stop();
  }
});

test('without a certificate, sslmode=require is refused by the client (openproxy answers N)', async () => {
  const p = await startProxy((port) => configFor(cluster, port));
  try {
    const r = spawnSync(
      'psql',
      ['-X', '-h', '127.0.0.1', '-p', String(p.port), '-U', APP_USER, '-d', 'postgres', '-c', 'SELECT 1'],
      {
        encoding: 'utf8',
        env: { ...process.env, PGPASSWORD: APP_PASS, PGSSLMODE: 'require' },
      },
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /server does not support SSL/);
  } finally {
    await p.stop();
  }
});

test('server_tls: openproxy connects to PostgreSQL over TLS', async () => {
  const p = await startProxy((port) => configFor(cluster, port, 'server_tls = true'));
  try {
    const rows = await query<{ ssl: boolean }>(p.port, 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    assert.deepEqual(rows, [{ ssl: true }]);
  } finally {
    await p.stop();
  }
});

test('verify_server_certificate rejects a self-signed server certificate with 08006', async () => {
  const p = await startProxy((port) => configFor(cluster, port, 'server_tls = true\nverify_server_certificate = true'));
  try {
    const e = await connectError(p.port);
    assert.equal(e.code, '08006');
    assert.match(e.message, /certificate/i);
  } finally {
    await p.stop();
  }
});
