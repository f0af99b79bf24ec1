// No secret leaves openproxy: after a run with every kind of failure (wrong and unknown logins,
// a refused admin, a server that rejects its configured password, invalid reloads whose bad
// values are secrets, protocol garbage), no password — configured, attempted or as its md5
// hash — appears in the log, any SHOW listing, the status JSON, the metrics or an error message.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { PgCluster, freePort } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, client, connectError, createAppRole, sleep } from './helpers/db';
import { type Proxy, configFor, startProxy } from './helpers/proxy';

const CLIENT_PASS = 'client-S3CRET-pass';
const WRONG_SERVER_PASS = 'wrong-server-S3CRET';
const ATTEMPTED = 'attempted-S3CRET';
const RELOADED_SECRET = '9876543210123';

let cluster: PgCluster;
let proxy: Proxy;
let http: number;
before(async () => {
  cluster = await PgCluster.start();
  createAppRole(cluster);
  http = await freePort();
  proxy = await startProxy((port) =>
    configFor(cluster, port, `prometheus_exporter_port = ${http}\nlog_client_connections = true`, [
      { password: CLIENT_PASS, extraUser: `server_username = "${APP_USER}"\nserver_password = "${APP_PASS}"` },
      { name: 'broken', password: CLIENT_PASS, extraUser: `server_password = "${WRONG_SERVER_PASS}"` },
    ]),
  );
  await proxy.waitFor(/metrics and status page listening/);
});
after(async () => {
  await proxy?.stop();
  cluster?.stop();
});

test('no password, attempted password or md5 secret in logs, SHOW, status, metrics or errors', async () => {
  const said: string[] = [];
  const errorOf = async (opts: Parameters<typeof connectError>[1]) => {
    const e = await connectError(proxy.port, opts);
    said.push(`${e.code} ${e.message}`);
  };
  await errorOf({ password: ATTEMPTED });
  await errorOf({ user: 'nobody', password: ATTEMPTED });
  await errorOf({ user: 'admin', database: 'openproxy', password: ATTEMPTED });
  await errorOf({ database: 'broken', password: CLIENT_PASS }).catch((e) => said.push(String(e)));
  const broken = client(proxy.port, { database: 'broken', password: CLIENT_PASS });
  await broken
    .connect()
    .then(() => broken.query('SELECT 1'))
    .catch((e) => said.push(`${e.code} ${e.message}`));
  await broken.end().catch(() => undefined);
  // Protocol garbage and a cancel with a made-up key.
  for (const bytes of [Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.from([0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1])]) {
    const s = net.connect(proxy.port, '127.0.0.1');
    s.on('error', () => undefined);
    s.on('data', (d) => said.push(d.toString('latin1')));
    s.end(bytes);
    await sleep(200);
  }
  // Reloads that fail on secret values: the error names the key, never the value.
  const admin = client(proxy.port, { user: 'admin', password: 'adminpass', database: 'openproxy' });
  await admin.connect();
  const good = readFileSync(proxy.configPath, 'utf8');
  for (const bad of [
    good.replace('admin_password = "adminpass"', `admin_password = ${RELOADED_SECRET}`),
    good.replace(`password = "${CLIENT_PASS}"`, `password = ${RELOADED_SECRET}`),
    good.replace(`server_password = "${APP_PASS}"`, `server_password = ["${RELOADED_SECRET}"]`),
  ]) {
    assert.notEqual(bad, good);
    writeFileSync(proxy.configPath, bad);
    await admin.query('RELOAD').then(
      () => assert.fail('an invalid reload succeeded'),
      (e: Error) => {
        assert.match(e.message, /password/, 'the error names the key');
        said.push(e.message);
      },
    );
  }
  writeFileSync(proxy.configPath, good);
  // Everything openproxy shows.
  const ok = client(proxy.port, { password: CLIENT_PASS });
  await ok.connect();
  await ok.query('SELECT 1');
  for (const item of ['CONFIG', 'USERS', 'POOLS', 'CLIENTS', 'SERVERS', 'DATABASES', 'STATS', 'LISTS', 'BANS'])
    said.push(JSON.stringify((await admin.query(`SHOW ${item}`)).rows));
  const auth = { authorization: `Basic ${Buffer.from('admin:adminpass').toString('base64')}` };
  said.push(await (await fetch(`http://127.0.0.1:${http}/metrics`)).text());
  said.push(await (await fetch(`http://127.0.0.1:${http}/status.json`, { headers: auth })).text());
  said.push(await (await fetch(`http://127.0.0.1:${http}/health`)).text());
  await ok.end();
  await admin.end();
  said.push(proxy.output());

  const md5 = (pass: string, user: string) =>
    createHash('md5')
      .update(pass + user)
      .digest('hex');
  const secrets = [CLIENT_PASS, APP_PASS, WRONG_SERVER_PASS, ATTEMPTED, RELOADED_SECRET, 'adminpass'];
  const forms = secrets.flatMap((s) => [s, md5(s, APP_USER), md5(s, 'admin')]);
  const all = said.join('\n');
  assert.match(all, /28P01/, 'the failures happened');
  assert.match(all, /admin_password/, 'the reload errors are in');
  assert.match(all, /openproxy_up/, 'the metrics are in');
  for (const f of forms) {
    const at = all.indexOf(f);
    assert.equal(at, -1, `secret ${JSON.stringify(f)} appears: …${all.slice(Math.max(0, at - 200), at + 40)}…`);
  }
});
