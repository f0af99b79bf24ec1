// Secrets in place of passwords, against a real PostgreSQL: a user configured with only the SCRAM
// verifier PostgreSQL stores (pg_authid.rolpassword) logs clients in with SCRAM and reaches the
// server by SCRAM pass-through (the client's proved key), on every worker and in both pool modes;
// a user with an md5 secret logs in with md5 and the server login uses the secret.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PgCluster } from '../testing/pg-cluster';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminClient, client, connectError } from './helpers/db';
import { type Proxy, configFor, startProxy, tempDir } from './helpers/proxy';

const PASS = 'pass-through-secret';
let cluster: PgCluster;
let verifier: string;
let md5Secret: string;
before(async () => {
  cluster = await PgCluster.start();
  cluster.psql(
    cluster.primary,
    `SET password_encryption = 'scram-sha-256'; CREATE ROLE app_scram LOGIN PASSWORD '${PASS}';` +
      `SET password_encryption = 'md5'; CREATE ROLE app_md5 LOGIN PASSWORD '${PASS}';`,
  );
  const secret = (role: string) =>
    cluster.psql(cluster.primary, `SELECT rolpassword FROM pg_authid WHERE rolname = '${role}'`).trim();
  verifier = secret('app_scram');
  md5Secret = secret('app_md5');
  assert.match(verifier, /^SCRAM-SHA-256\$/);
  assert.match(md5Secret, /^md5[0-9a-f]{32}$/);
});
after(() => cluster?.stop());

const proxy = (auth: string, user: string, password: string, mode: 'session' | 'transaction'): Promise<Proxy> =>
  startProxy((port) =>
    configFor(cluster, port, `auth_type = "${auth}"`, [{ pool_mode: mode, username: user, password, pool_size: 4 }]),
  );

describe('SCRAM pass-through', () => {
  for (const mode of ['session', 'transaction'] as const) {
    test(`${mode} mode: clients on both workers reach a server that only has the verifier`, async () => {
      const p = await proxy('scram-sha-256', 'app_scram', verifier, mode);
      try {
        // Four clients at once land on both workers; every one needs a server login of its own in
        // session mode, and the first on each worker before any connection is pooled there.
        const cs = Array.from({ length: 4 }, () => client(p.port, { user: 'app_scram', password: PASS }));
        await Promise.all(cs.map((c) => c.connect()));
        const rows = await Promise.all(cs.map((c) => c.query('SELECT current_user AS u, pg_backend_pid() AS pid')));
        for (const r of rows) assert.equal(r.rows[0].u, 'app_scram');
        if (mode === 'session') assert.equal(new Set(rows.map((r) => r.rows[0].pid)).size, 4);
        for (const c of cs) await c.end();
        const err = await connectError(p.port, { user: 'app_scram', password: 'wrong' });
        assert.equal(err.code, '28P01');
        assert.doesNotMatch(p.output(), /pass-through.*not known/);
      } finally {
        await p.stop();
      }
    });
  }

  test('md5 client authentication cannot use a verifier: 28000 saying so', async () => {
    const p = await proxy('md5', 'app_scram', verifier, 'transaction');
    try {
      const err = await connectError(p.port, { user: 'app_scram', password: PASS });
      assert.equal(err.code, '28000');
      assert.match(err.message, /SCRAM verifier as password; md5 authentication cannot use it/);
    } finally {
      await p.stop();
    }
  });
});

describe('md5 secret', () => {
  test('clients log in with md5; the server login answers with the secret', async () => {
    for (const mode of ['session', 'transaction'] as const) {
      const p = await proxy('md5', 'app_md5', md5Secret, mode);
      try {
        const c = client(p.port, { user: 'app_md5', password: PASS });
        await c.connect();
        assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'app_md5');
        await c.end();
        const err = await connectError(p.port, { user: 'app_md5', password: 'wrong' });
        assert.equal(err.code, '28P01');
      } finally {
        await p.stop();
      }
    }
  });

  test('SCRAM client authentication cannot use an md5 secret: 28000 saying so', async () => {
    const p = await proxy('scram-sha-256', 'app_md5', md5Secret, 'session');
    try {
      const err = await connectError(p.port, { user: 'app_md5', password: PASS });
      assert.equal(err.code, '28000');
      assert.match(err.message, /md5 secret as password; SCRAM authentication cannot use it/);
    } finally {
      await p.stop();
    }
  });
});

describe('auth_file', () => {
  test("a pool user without password takes it from PgBouncer's userlist format; RELOAD re-reads it", async () => {
    const dir = tempDir('op-userlist-');
    const list = join(dir, 'userlist.txt');
    // A comment, a user with a quote in its password, and the verifier PostgreSQL stores.
    const write = (secret: string) =>
      writeFileSync(list, `; comment\n"someone" "with ""quotes"""\n"app_scram" "${secret}" extra fields ignored\n`);
    write(verifier);
    const toml = (port: number) =>
      configFor(cluster, port, `auth_file = "${list}"\nauth_type = "scram-sha-256"`, [
        { username: 'app_scram', pool_mode: 'transaction' },
      ]).replace(/\npassword = "[^"]*"\n/, '\n');
    const p = await startProxy(toml);
    try {
      assert.doesNotMatch(readFileSync(p.configPath, 'utf8'), /\npassword =/, 'no password in the TOML');
      const c = client(p.port, { user: 'app_scram', password: PASS });
      await c.connect();
      assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'app_scram');
      await c.end();
      // The file changes (a new plain password, which then also logs in to the server): RELOAD.
      cluster.psql(cluster.primary, "ALTER ROLE app_scram PASSWORD 'rotated'");
      write('rotated');
      const adm = adminClient(p.port);
      await adm.connect();
      await adm.query('RELOAD');
      await adm.end();
      const d = client(p.port, { user: 'app_scram', password: 'rotated' });
      await d.connect();
      assert.equal((await d.query('SELECT 1 AS one')).rows[0].one, 1);
      await d.end();
      assert.equal((await connectError(p.port, { user: 'app_scram', password: PASS })).code, '28P01');
    } finally {
      await p.stop();
      cluster.psql(cluster.primary, `ALTER ROLE app_scram PASSWORD '${PASS}'`);
    }
  });
});
