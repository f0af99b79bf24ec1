// Access control against a real PostgreSQL, from two source addresses on loopback (127.0.0.1 and
// 127.0.0.2): host-based rules decide before any password is asked, follow a reload, and a client
// no rule admits gets 28000 naming its address.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import type pg from 'pg';
import { PgCluster } from '../testing/pg-cluster';
import { APP_USER, clientFrom, createAppRole } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';
import { startupPacket } from './helpers/wire';

let cluster: PgCluster;
before(async () => {
  cluster = await PgCluster.start();
  createAppRole(cluster);
});
after(() => cluster?.stop());

async function outcome(c: pg.Client): Promise<string> {
  c.on('error', () => undefined);
  try {
    await c.connect();
    const r = await c.query('SELECT 1 AS x');
    return r.rows[0].x === 1 ? 'ok' : 'wrong answer';
  } catch (e) {
    return `${(e as { code?: string }).code} ${(e as Error).message}`;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** The first message openproxy answers a startup packet from `from` with (its type letter and text). */
function firstReply(from: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
    s.on('connect', () => s.write(startupPacket({ user: APP_USER, database: 'postgres' })));
    s.once('data', (d) => {
      resolve(`${String.fromCharCode(d[0])} ${d.toString('latin1', 5)}`);
      s.destroy();
    });
    s.on('error', (e) => resolve(`error ${e.message}`));
  });
}

describe('host-based rules', () => {
  let proxy: Proxy;
  const rules =
    '[[general.hba]]\naddress = "127.0.0.2/32"\nuser = ["app"]\nmethod = "reject"\n' +
    '[[general.hba]]\naddress = "127.0.0.0/8"\nmethod = "scram-sha-256"\n';
  before(async () => {
    proxy = await startProxy((port) => configFor(cluster, port, '', [{ pool_mode: 'transaction' }]) + rules);
  });
  after(() => proxy?.stop());

  test('127.0.0.1 logs in with SCRAM; 127.0.0.2 is refused with 28000 before any password request', async () => {
    assert.equal(await outcome(clientFrom('127.0.0.1', proxy.port)), 'ok');
    const refused = await outcome(clientFrom('127.0.0.2', proxy.port));
    assert.match(refused, /^28000 rejected by an hba rule: host "127\.0\.0\.2", user "app", database "postgres"/);
    const first = await firstReply('127.0.0.2', proxy.port);
    assert.match(first, /^E .*28000/, 'an ErrorResponse, not an authentication request');
    assert.match(await firstReply('127.0.0.1', proxy.port), /^R /, 'an authentication request');
    // The admin from 127.0.0.2 is not rejected (the rule names app); SCRAM against its password.
    const admin = clientFrom('127.0.0.2', proxy.port, { user: 'admin', password: 'adminpass', database: 'openproxy' });
    await admin.connect();
    assert.ok((await admin.query('SHOW POOLS')).rows.length > 0);
    await admin.end();
  });

  test('a reload changes the rules; a client no rule admits gets 28000 naming its address', async () => {
    const good = readFileSync(proxy.configPath, 'utf8');
    try {
      writeFileSync(proxy.configPath, good.replace('address = "127.0.0.0/8"', 'address = "127.0.0.1/32"'));
      proxy.proc.kill('SIGHUP');
      await proxy.waitFor(/configuration reloaded/);
      assert.equal(await outcome(clientFrom('127.0.0.1', proxy.port)), 'ok');
      const admin = await outcome(
        clientFrom('127.0.0.2', proxy.port, { user: 'admin', password: 'adminpass', database: 'openproxy' }),
      );
      assert.match(admin, /^28000 no hba rule matches: host "127\.0\.0\.2", user "admin", database "openproxy"/);
    } finally {
      writeFileSync(proxy.configPath, good);
    }
  });
});
