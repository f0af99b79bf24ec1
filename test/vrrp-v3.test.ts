// VRRP version 3 as a running mode, and [general.virtual_router] changes applied by reload, on a
// real network: two openproxy instances and keepalived (vrrp version 3) in their own network
// namespaces on one bridge, PostgreSQL in the hub namespace. Nothing leaves the namespaces. A
// watcher reads every node's addresses every 25 ms: the VIP is never on two nodes at once, and a
// reload that changes only priorities or scripts never takes it off its holder.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NetnsBed } from '../testing/netns';
import type { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, sleep, until } from './helpers/db';
import { type Proxy, startProxy, tempDir } from './helpers/proxy';
import { type Keepalived, VipWatcher, spawnKeepalived, startVrrpBed, stopVrrpBed } from './helpers/vrrp-bed';

const NET = '10.231.78';
const VIP = `${NET}.100`;
const VRID = 52;
let bed: NetnsBed;
let cluster: PgCluster;
let dir: string;
let keepalived: Keepalived | null = null;
let watcher: VipWatcher;
const proxies = new Map<string, Proxy>();

const readScripts = () => (existsSync(join(dir, 'scripts.log')) ? readFileSync(join(dir, 'scripts.log'), 'utf8') : '');
const holders = () => watcher.holders();

function config(priority: number, vr = ''): string {
  return `[general]\nhost = "0.0.0.0"\nport = 6432\nworker_threads = 1\nadmin_username = "admin"\n\
admin_password = "adminpass"\nprometheus_exporter_port = 0\nrenew_interval = 300\nunix_socket_dir = ""\n
[general.virtual_router]\ninterface = "eth0"\nrouter_id = ${VRID}\npriority = ${priority}\nadvert_int = 1\n\
version = 3\nvip_addresses = ["${VIP}/24"]\n${vr}
[pools.postgres]\npool_mode = "transaction"\n
[pools.postgres.users.0]\nusername = "${APP_USER}"\npassword = "${APP_PASS}"\npool_size = 4\n
[pools.postgres.shards.0]\ndatabase = "postgres"\nservers = [["${NET}.254", ${cluster.primary.port}, "primary"]]\n`;
}

async function startNode(name: 'a' | 'b', priority: number): Promise<Proxy> {
  const p = await startProxy(config(priority), [], {}, /VRRP starting/, bed.members.get(name)!.ns);
  proxies.set(name, p);
  return p;
}

/** Rewrites a node's config and sends SIGHUP (a reload). */
async function reload(name: 'a' | 'b', priority: number, vr = ''): Promise<void> {
  const p = proxies.get(name)!;
  writeFileSync(p.configPath, config(priority, vr));
  const before = (p.output().match(/configuration reloaded/g) ?? []).length;
  p.proc.kill('SIGHUP');
  await until(() => (p.output().match(/configuration reloaded/g) ?? []).length > before, 5000, `${name} reloaded`);
}

before(async () => {
  dir = tempDir('openproxy-vrrp3-');
  ({ bed, cluster } = await startVrrpBed('u', NET, { a: 1, b: 2, k: 3 }));
  watcher = new VipWatcher(bed, VIP, ['a', 'b', 'k']);
  watcher.start();
});

after(async () => {
  await stopVrrpBed({ bed, cluster }, watcher, proxies.values(), keepalived);
});

describe('VRRP version 3 and reloads', () => {
  test('version = 3: MASTER beside keepalived (version 3), which takes over when openproxy stops', async () => {
    const a = await startNode('a', 150);
    await until(() => holders().join() === 'a', 10000, 'a holds the VIP');
    keepalived = spawnKeepalived(bed, dir, { name: 'k', vrid: VRID, vip: VIP, priority: 100, version: 3 });
    await until(() => /Entering BACKUP STATE/.test(keepalived!.log()), 5000, 'keepalived started');
    await sleep(3500); // past Master_Down_Interval: keepalived hears a's v3 adverts and stays BACKUP
    assert.deepEqual(holders(), ['a']);
    assert.doesNotMatch(keepalived!.log(), /Entering MASTER STATE|invalid|checksum|version/i, keepalived!.log());
    assert.match(a.output(), /VRRP starting.*version=3/);
    assert.doesNotMatch(a.output(), /VRRP advert dropped/);
    await a.stop('SIGTERM');
    proxies.delete('a');
    await until(() => holders().join() === 'k', 5000, 'keepalived took the VIP');
    await until(() => /Entering MASTER STATE/.test(keepalived!.log()), 3000, 'keepalived logs MASTER');
    keepalived!.proc.kill('SIGTERM');
    await until(() => holders().length === 0, 5000, 'keepalived released the VIP');
  });

  test('reload: priority, scripts and nopreempt apply without dropping the VIP; a raised BACKUP preempts', async () => {
    const a = await startNode('a', 150);
    await until(() => holders().join() === 'a', 10000, 'a holds the VIP');
    const b = await startNode('b', 100);
    await sleep(3500);
    assert.deepEqual(holders(), ['a']);
    const mark = watcher.history.length;
    const script = `pre_demote_script = "echo a demote >> ${join(dir, 'scripts.log')}"\n`;
    await reload('a', 120, script);
    await sleep(3500);
    assert.deepEqual(watcher.history.slice(mark), [], 'the VIP never left a while its priority and scripts changed');
    assert.match(a.output(), /VRRP priority changed by reload.*from=150 to=120 state=MASTER/);
    assert.doesNotMatch(a.output(), /virtual IPs removed/);
    // nopreempt (keepalived's): raised above the MASTER, b still leaves it the VIP.
    const mark2 = watcher.history.length;
    await reload('b', 200, 'nopreempt = true\n');
    await sleep(4000);
    assert.deepEqual(watcher.history.slice(mark2), [], 'nopreempt: b (200) did not take the VIP from a (120)');
    await reload('b', 200);
    await until(() => holders().join() === 'b', 6000, 'b (now 200, preempting) took the VIP from a (120)');
    assert.match(b.output(), /VRRP priority changed by reload.*from=100 to=200/);
    await until(() => readScripts().includes('a demote'), 3000, "a's new pre_demote_script ran");
    writeFileSync(b.configPath, config(200).replace(`router_id = ${VRID}`, `router_id = ${VRID + 1}`));
    b.proc.kill('SIGHUP');
    await b.waitFor(/change only on restart.*general\.virtual_router\.router_id/, 5000);
    await sleep(2500);
    assert.deepEqual(holders(), ['b'], 'router_id is restart-only: b keeps serving under the old one');
    assert.deepEqual(watcher.doubles, [], 'never two holders');
  });
});
