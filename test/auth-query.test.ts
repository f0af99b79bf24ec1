// auth_user + auth_query against a real PostgreSQL: a role created after openproxy started logs in
// (its SCRAM verifier from pg_shadow, SCRAM pass-through to the server) in session and transaction
// mode, is pooled per user, and gets 28P01 for a wrong password; a role that does not exist gets
// the very same answer (message and code), so the lookup does not tell which users exist.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PgCluster, SUPERPASS, SUPERUSER } from '../testing/pg-cluster';
import { adminClient, client, connectError } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';

let cluster: PgCluster;
before(async () => {
  cluster = await PgCluster.start();
});
after(() => cluster?.stop());

const proxy = (mode: 'session' | 'transaction', auth: string): Promise<Proxy> =>
  startProxy((port) =>
    configFor(cluster, port, `auth_type = "${auth}"\nauth_user = "${SUPERUSER}"`, [
      { pool_mode: mode, username: SUPERUSER, password: SUPERPASS, pool_size: 3 },
    ]),
  );

describe('auth_query', () => {
  const cases = [
    ['session', 'scram-sha-256'],
    ['transaction', 'scram-sha-256'],
    ['transaction', 'md5'],
  ] as const;
  for (const [mode, auth] of cases) {
    test(`${mode} mode, ${auth}: a role created after start logs in; wrong and unknown: same 28P01`, async () => {
      const p = await proxy(mode, auth);
      const role = `late_${mode}_${auth.slice(0, 3)}`;
      try {
        cluster.psql(
          cluster.primary,
          `SET password_encryption = '${auth}'; CREATE ROLE ${role} LOGIN PASSWORD 'late-pass'`,
        );
        const cs = [0, 1, 2].map(() => client(p.port, { user: role, password: 'late-pass' }));
        await Promise.all(cs.map((c) => c.connect()));
        for (const c of cs) assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, role);
        for (const c of cs) await c.end();
        // Pooled per user: SHOW POOLS has a row for it now.
        const adm = adminClient(p.port);
        await adm.connect();
        const pools = (await adm.query('SHOW POOLS')).rows.map((r) => r.user);
        await adm.end();
        assert.ok(pools.includes(role), `pools: ${pools}`);
        // A changed password counts at the next login (looked up again, not cached until a reload).
        cluster.psql(cluster.primary, `SET password_encryption = '${auth}'; ALTER ROLE ${role} PASSWORD 'new-pass'`);
        assert.equal((await connectError(p.port, { user: role, password: 'late-pass' })).code, '28P01');
        const again = client(p.port, { user: role, password: 'new-pass' });
        await again.connect();
        await again.end();
        const wrong = await connectError(p.port, { user: role, password: 'nope' });
        const unknown = await connectError(p.port, { user: 'nobody_here', password: 'nope' });
        assert.equal(wrong.code, '28P01');
        assert.equal(unknown.code, '28P01');
        assert.equal(unknown.message, wrong.message.replace(role, 'nobody_here'));
        assert.doesNotMatch(p.output(), /auth_query failed/);
      } finally {
        await p.stop();
        cluster.psql(cluster.primary, `DROP ROLE ${role}`);
      }
    });
  }

  test('a secret the login method cannot use answers as an unknown user does', async () => {
    const p = await proxy('transaction', 'md5');
    try {
      cluster.psql(
        cluster.primary,
        "SET password_encryption = 'scram-sha-256'; CREATE ROLE late_mismatch LOGIN PASSWORD 'x'",
      );
      const err = await connectError(p.port, { user: 'late_mismatch', password: 'x' });
      assert.equal(err.code, '28P01');
      assert.match(err.message, /password authentication failed for user "late_mismatch"/);
      await p.waitFor(/secret the login method cannot use/, 3000);
    } finally {
      await p.stop();
      cluster.psql(cluster.primary, 'DROP ROLE late_mismatch');
    }
  });

  test('an auth_query that fails is a clear error, not a hang', async () => {
    const p = await startProxy((port) =>
      configFor(cluster, port, `auth_user = "${SUPERUSER}"\nauth_query = "SELECT * FROM no_such_table WHERE x = $1"`, [
        { pool_mode: 'transaction', username: SUPERUSER, password: SUPERPASS },
      ]),
    );
    try {
      const err = await connectError(p.port, { user: 'someone', password: 'x' });
      assert.equal(err.code, '08006');
      assert.match(err.message, /could not look up user "someone": relation "no_such_table" does not exist/);
    } finally {
      await p.stop();
    }
  });
});
