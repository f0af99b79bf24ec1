// Push-based role changes: openproxy watches Patroni's leader key in etcd (etcd_hosts,
// patroni_scope) on a real 3-member Patroni 3 cluster. With polling slowed to renew_interval =
// 10 s, switchovers still reach openproxy at once: writes land on the new primary within a second
// of it accepting writes (polling alone would take up to 10 s). The full 20-switchover comparison
// with polling is benchmarks/switchover.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { PatroniCluster } from '../testing/patroni-cluster';
import { SUPERPASS, SUPERUSER } from '../testing/pg-cluster';
import { measureSwitchover } from '../testing/switchover';
import { APP_PASS, APP_USER } from './helpers/db';
import { type Proxy, startProxy } from './helpers/proxy';

let cluster: PatroniCluster;
let proxy: Proxy;

before(async () => {
  cluster = await PatroniCluster.start({ members: 3, ttl: 10, loopWait: 1, retryTimeout: 3, synchronous: false });
  const leader = (await cluster.leader())!;
  const c = new pg.Client({ host: '127.0.0.1', port: leader.pgPort, user: SUPERUSER, password: SUPERPASS });
  await c.connect();
  await c.query(
    `CREATE ROLE ${APP_USER} LOGIN PASSWORD '${APP_PASS}'; CREATE TABLE watch_ledger (port int); ` +
      `GRANT ALL ON watch_ledger TO ${APP_USER}`,
  );
  await c.end();
  const servers = cluster.members.map((m) => `["127.0.0.1", ${m.pgPort}, "auto", ${m.restPort}]`).join(', ');
  proxy = await startProxy(
    (port) =>
      `[general]\nhost = "127.0.0.1"\nport = ${port}\nworker_threads = 2\nprometheus_exporter_port = 0\n` +
      'renew_interval = 10000\nadmin_username = "admin"\nadmin_password = "adminpass"\n' +
      'primary_wait_timeout = 30000\nhealthcheck_timeout = 1000\nconnect_timeout = 2000\n' +
      `[pools.postgres]\npool_mode = "transaction"\n` +
      `[pools.postgres.users.0]\nusername = "${APP_USER}"\npassword = "${APP_PASS}"\npool_size = 4\n` +
      `[pools.postgres.shards.0]\ndatabase = "postgres"\nuse_patroni = true\nservers = [${servers}]\n` +
      `etcd_hosts = ["127.0.0.1:${cluster.etcdPort}"]\npatroni_scope = "openproxy-test"\n`,
  );
  await proxy.waitFor(/server role.*primary.*patroni/, 15000);
});
after(async () => {
  await proxy?.stop();
  cluster?.stop();
});

describe('etcd leader-key watch', () => {
  test('three switchovers with renew_interval = 10 s: writes follow each within 1 s', async () => {
    const got: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = await measureSwitchover(cluster, proxy.port, {
        user: APP_USER,
        password: APP_PASS,
        table: 'watch_ledger',
      });
      got.push(t.afterWritable);
      if (process.env.SWITCHOVER_DEBUG) console.log(proxy.output().split('\n').slice(-80).join('\n'));
      console.log(
        `# switchover ${t.from} -> ${t.to}: ${t.afterWritable} ms after writable ` +
          `(${t.writableAt}), outage ${t.outage} ms`,
      );
      assert.ok(t.afterWritable < 1000, `writes reached ${t.to} ${t.afterWritable} ms after it was writable`);
    }
    assert.match(proxy.output(), /Patroni leader key changed: probing the servers now/);
  });
});
