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
import { selfSigned } from './helpers/tls';

let cluster: PgCluster;
let certDir: string;

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

/** A CA and certificates it signs (CN given), plus one self-signed impostor with CN app. */
function clientCerts(dir: string): {
  ca: string;
  cert(cn: string): { cert: string; key: string };
  impostor: { cert: string; key: string };
} {
  const ca = selfSigned(dir, 'client-ca');
  const cert = (cn: string) => {
    const key = join(dir, `client-${cn}.key`);
    const csr = join(dir, `client-${cn}.csr`);
    const crt = join(dir, `client-${cn}.crt`);
    execFileSync(
      'openssl',
      ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', key, '-out', csr],
      {
        stdio: 'ignore',
      },
    );
    execFileSync(
      'openssl',
      ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-out', crt],
      { stdio: 'ignore' },
    );
    chmodSync(key, 0o600);
    return { cert: crt, key };
  };
  const impostor = selfSigned(dir, 'impostor');
  chmodSync(impostor.key, 0o600);
  return { ca: ca.cert, cert, impostor };
}

/** psql through openproxy with libpq's TLS settings; exit status and stderr. */
function psqlTls(port: number, env: Record<string, string>, user = APP_USER): { status: number | null; out: string } {
  const r = spawnSync(
    'psql',
    ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', 'postgres', '-c', 'SELECT 1'],
    { encoding: 'utf8', env: { ...process.env, PGPASSWORD: APP_PASS, PGCONNECT_TIMEOUT: '10', ...env } },
  );
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

test('client_tls_sslmode: disable, require, verify-ca and verify-full, each refusal a clear 28000', async () => {
  const { cert, key } = selfSigned(certDir, 'proxy-modes');
  const certs = clientCerts(certDir);
  const app = certs.cert(APP_USER);
  const other = certs.cert('someone-else');
  const tlsKeys = `tls_certificate = "${cert}"\ntls_private_key = "${key}"\nclient_tls_ca_file = "${certs.ca}"`;
  const withCert = (c: { cert: string; key: string }) => ({ PGSSLCERT: c.cert, PGSSLKEY: c.key });
  const cases: [string, Record<string, string>, RegExp | null][] = [
    ['disable', { PGSSLMODE: 'require' }, /server does not support SSL/],
    ['disable', { PGSSLMODE: 'prefer' }, null],
    ['require', { PGSSLMODE: 'disable' }, /28000|TLS is required \(client_tls_sslmode = "require"\)/],
    ['require', { PGSSLMODE: 'require' }, null],
    ['verify-ca', { PGSSLMODE: 'require' }, /a client certificate signed by client_tls_ca_file is required/],
    [
      'verify-ca',
      { PGSSLMODE: 'require', ...withCert(certs.impostor) },
      /client certificate signed by client_tls_ca_file/,
    ],
    ['verify-ca', { PGSSLMODE: 'require', ...withCert(other) }, null],
    ['verify-full', { PGSSLMODE: 'require', ...withCert(other) }, /CN "someone-else" is not the user name "app"/],
    ['verify-full', { PGSSLMODE: 'require', ...withCert(app) }, null],
  ];
  for (const mode of ['disable', 'require', 'verify-ca', 'verify-full']) {
    const p = await startProxy((port) => configFor(cluster, port, `${tlsKeys}\nclient_tls_sslmode = "${mode}"`));
    try {
      for (const [m, env, refusal] of cases.filter((c) => c[0] === mode)) {
        const r = psqlTls(p.port, env);
        const what = `${m} with ${JSON.stringify(env)}: ${r.out}`;
        if (refusal === null) {
          assert.equal(r.status, 0, what);
          assert.equal(r.out.trim(), '1', what);
        } else {
          assert.notEqual(r.status, 0, what);
          assert.match(r.out, refusal, what);
        }
      }
    } finally {
      await p.stop();
    }
  }
});

test('client_tls_protocols = "tlsv1.3" refuses a TLS 1.2 client; the default (secure) takes both', async () => {
  const { cert, key } = selfSigned(certDir, 'proxy-protocols');
  const tlsKeys = `tls_certificate = "${cert}"\ntls_private_key = "${key}"`;
  const p13 = await startProxy((port) => configFor(cluster, port, `${tlsKeys}\nclient_tls_protocols = "tlsv1.3"`));
  const pDefault = await startProxy((port) => configFor(cluster, port, tlsKeys));
  try {
    const tls12 = { ssl: { rejectUnauthorized: false, maxVersion: 'TLSv1.2' as const } };
    await assert.rejects(query(p13.port, 'SELECT 1', tls12), /version|protocol|alert/i);
    assert.deepEqual(await query(p13.port, 'SELECT 1 AS x', { ssl: { rejectUnauthorized: false } }), [{ x: 1 }]);
    assert.deepEqual(await query(pDefault.port, 'SELECT 1 AS x', tls12), [{ x: 1 }]);
    const r = psqlTls(pDefault.port, { PGSSLMODE: 'require', PGSSLMAXPROTOCOLVERSION: 'TLSv1.1' });
    assert.notEqual(r.status, 0, 'TLS 1.1 is not in "secure"');
  } finally {
    await p13.stop();
    await pDefault.stop();
  }
});
