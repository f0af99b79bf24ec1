// The VRRP virtual router on a real network: two openproxy instances and one keepalived, each in its
// own network namespace, joined by a bridge in a hub namespace that also runs PostgreSQL, plus a
// client namespace that reaches openproxy through the virtual IP. Nothing leaves the namespaces.
// A watcher reads every node's addresses every 25 ms: outside a deliberate partition, the VIP is
// never on two nodes at once.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { NetnsBed } from '../testing/netns';
import type { PgCluster } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, sleep, until } from './helpers/db';
import { type Proxy, startProxy, tempDir } from './helpers/proxy';
import { type Keepalived, VipWatcher, spawnKeepalived, startVrrpBed, stopVrrpBed } from './helpers/vrrp-bed';

const NET = '10.231.77';
const VIP = `${NET}.100`;
const VRID = 51;
let bed: NetnsBed;
let cluster: PgCluster;
let dir: string;
let keepalived: Keepalived | null = null;
let watcher: VipWatcher;
const proxies = new Map<string, Proxy>();
const measured: Record<string, number[]> = {};

/** Which of the nodes hold the VIP now. */
const holders = (names?: string[]) => watcher.holders(names);
const keepalivedLog = () => keepalived?.log() ?? '';

function config(name: string, priority: number, extra = ''): string {
  return `[general]\nhost = "0.0.0.0"\nport = 6432\nworker_threads = 1\nadmin_username = "admin"\n\
admin_password = "adminpass"\nprometheus_exporter_port = 9930\nrenew_interval = 300\nunix_socket_dir = ""\n
[general.virtual_router]\ninterface = "eth0"\nrouter_id = ${VRID}\npriority = ${priority}\nadvert_int = 1\n\
vip_addresses = ["${VIP}/24"]
pre_promote_script = "echo ${name} promote $OPENPROXY_VRRP_STATE >> ${join(dir, 'scripts.log')}"
pre_demote_script = "echo ${name} demote $OPENPROXY_VRRP_STATE >> ${join(dir, 'scripts.log')}"\n${extra}\n
[pools.postgres]\npool_mode = "transaction"\n
[pools.postgres.users.0]\nusername = "${APP_USER}"\npassword = "${APP_PASS}"\npool_size = 4\n
[pools.postgres.shards.0]\ndatabase = "postgres"\nservers = [["${NET}.254", ${cluster.primary.port}, "primary"]]\n`;
}

async function startNode(name: 'a' | 'b', priority: number): Promise<Proxy> {
  const p = await startProxy(config(name, priority), [], {}, /VRRP starting/, bed.members.get(name)!.ns);
  proxies.set(name, p);
  return p;
}

function startKeepalived(priority: number): void {
  keepalived = spawnKeepalived(bed, dir, { name: 'k', vrid: VRID, vip: VIP, priority });
}

/** From the client namespace, through the VIP: a query via openproxy, and which node answered (status.json). */
function viaVip(): { ok: boolean; node: string; state?: string } {
  const code =
    `require('http').get({host:'${VIP}',port:9930,path:'/status.json',auth:'admin:adminpass',timeout:300},r=>{let ` +
    `b='';r.on('data',d=>b+=d);r.on('end',()=>{const ` +
    `v=JSON.parse(b).vrrp;console.log(v.state+' ` +
    `'+v.detail)})}).on('error',()=>process.exit(1)).on('timeout',function(){this.destroy();process.exit(1)})`;
  const r = spawnSync('ip', ['netns', 'exec', bed.members.get('c')!.ns, process.execPath, '-e', code], {
    encoding: 'utf8',
    timeout: 3000,
  });
  const m = /on (\d+\.\d+\.\d+\.\d+)/.exec(r.stdout ?? '');
  return {
    ok: r.status === 0 && m !== null,
    node: m ? ([...bed.members].find(([, x]) => x.ip === m[1])?.[0] ?? '?') : '',
    ...(r.status === 0 ? { state: r.stdout.split(' ')[0] } : {}),
  };
}

/** GET a path of the HTTP side through the VIP, from the client namespace. */
function httpViaVip(path: string): string {
  const code =
    `require('http').get({host:'${VIP}',port:9930,path:'${path}',timeout:1000},r=>{r.pipe(process.stdout)})` +
    `.on('error',()=>process.exit(1))`;
  const r = spawnSync('ip', ['netns', 'exec', bed.members.get('c')!.ns, process.execPath, '-e', code], {
    encoding: 'utf8',
    timeout: 5000,
  });
  return r.stdout ?? '';
}

function psqlViaVip(sql: string): string {
  const r = spawnSync(
    'ip',
    [
      'netns',
      'exec',
      bed.members.get('c')!.ns,
      'psql',
      '-X',
      '-A',
      '-t',
      '-h',
      VIP,
      '-p',
      '6432',
      '-U',
      APP_USER,
      '-d',
      'postgres',
      '-c',
      sql,
    ],
    { encoding: 'utf8', timeout: 10000, env: { ...process.env, PGPASSWORD: APP_PASS, PGCONNECT_TIMEOUT: '3' } },
  );
  if (r.status !== 0) throw new Error(`psql via the VIP failed: ${r.stderr}`);
  return r.stdout.trim();
}

const scripts = () => (existsSync(join(dir, 'scripts.log')) ? readFileSync(join(dir, 'scripts.log'), 'utf8') : '');

/** Drops every VRRP packet in and out of a node (nftables in its namespace), or stops dropping. */
function vrrpBlocked(name: string, on: boolean): void {
  const ns = bed.members.get(name)!.ns;
  if (on) {
    bed.exec(ns, 'nft', ['add table inet opx_vrrp']);
    bed.exec(ns, 'nft', ['add chain inet opx_vrrp in { type filter hook input priority 0; }']);
    bed.exec(ns, 'nft', ['add chain inet opx_vrrp out { type filter hook output priority 0; }']);
    bed.exec(ns, 'nft', ['add rule inet opx_vrrp in ip protocol 112 drop']);
    bed.exec(ns, 'nft', ['add rule inet opx_vrrp out ip protocol 112 drop']);
  } else bed.exec(ns, 'nft', ['delete table inet opx_vrrp']);
}

function record(what: string, ms: number): void {
  (measured[what] ??= []).push(ms);
}

before(async () => {
  dir = tempDir('openproxy-vrrp-');
  ({ bed, cluster } = await startVrrpBed('t', NET, { a: 1, b: 2, k: 3, c: 9 }));
  watcher = new VipWatcher(bed, VIP, ['a', 'b', 'k']);
  watcher.start();
});

after(async () => {
  await stopVrrpBed({ bed, cluster }, watcher, proxies.values(), keepalived);
  console.log(`# VRRP timings (ms): ${JSON.stringify(measured)}`);
});

describe('VRRP between two openproxy instances and keepalived', () => {
  test(
    'the highest priority becomes MASTER and holds the VIP; keepalived and ' +
      'the other openproxy stay BACKUP; clients reach it',
    async () => {
      await startNode('a', 150);
      await startNode('b', 100);
      await until(() => holders().join() === 'a', 10000, 'a holds the VIP');
      startKeepalived(120);
      await until(() => /Entering BACKUP STATE/.test(keepalivedLog()), 5000, 'keepalived started');
      await sleep(4000); // longer than Master_Down_Interval: nobody else takes it
      assert.deepEqual(holders(), ['a']);
      assert.equal(psqlViaVip('SELECT 1'), '1');
      assert.deepEqual(
        viaVip(),
        { ok: true, node: 'a', state: 'MASTER' },
        "the status page behind the VIP is a's, MASTER",
      );
      const metrics = httpViaVip('/metrics');
      assert.match(metrics, /openproxy_vrrp_state\{state="MASTER"\} 1/);
      assert.match(metrics, /openproxy_vrrp_state\{state="BACKUP"\} 0/);
      assert.match(metrics, /openproxy_vrrp_priority 150/);
      const show = spawnSync(
        'ip',
        [
          'netns',
          'exec',
          bed.members.get('c')!.ns,
          'psql',
          '-X',
          '-A',
          '-t',
          '-F',
          '|',
          '-h',
          VIP,
          '-p',
          '6432',
          '-U',
          'admin',
          '-d',
          'openproxy',
          '-c',
          'SHOW VRRP',
        ],
        { encoding: 'utf8', env: { ...process.env, PGPASSWORD: 'adminpass' } },
      );
      assert.match(
        show.stdout,
        new RegExp(`^MASTER\\|150\\|${NET.replace(/\./g, '\\.')}\\.1\\|${VIP.replace(/\./g, '\\.')}/24\\|`),
        show.stdout + show.stderr,
      );
      assert.match(keepalivedLog(), /Entering BACKUP STATE/);
      assert.doesNotMatch(keepalivedLog(), /Entering MASTER STATE/);
      assert.match(scripts(), /a promote MASTER/);
      assert.match(proxies.get('b')!.output(), /VRRP state.*to=BACKUP/);
    },
  );

  test('graceful stop: priority-0 advert, keepalived takes over within Skew_Time; pre_demote_script ran', async () => {
    const t0 = Date.now();
    await proxies.get('a')!.stop('SIGTERM');
    await until(() => holders().join() === 'k', 3000, 'keepalived holds the VIP');
    record('priority-0 handover', Date.now() - t0);
    assert.ok(Date.now() - t0 < 1000 + 150, `handover took ${Date.now() - t0} ms`);
    assert.match(scripts(), /a demote BACKUP/);
    assert.deepEqual(viaVip().ok, false, 'no openproxy behind the VIP on keepalived (a plain node)');
  });

  test(
    'preemption: openproxy with the higher priority takes the VIP back ' +
      'from keepalived (keepalived accepts its adverts)',
    async () => {
      const t0 = Date.now();
      await startNode('a', 150);
      await until(() => holders().join() === 'a', 8000, 'a holds the VIP again');
      record('preemption', Date.now() - t0);
      await until(
        () =>
          /Entering BACKUP STATE[\s\S]*Entering MASTER STATE[\s\S]*Entering BACKUP STATE|received higher prio/.test(
            keepalivedLog(),
          ),
        3000,
        'keepalived yields',
      );
      assert.deepEqual(viaVip(), { ok: true, node: 'a', state: 'MASTER' });
    },
  );

  test(
    'a crashed master (no priority-0 advert) is replaced within 3 x ' +
      'advert_int + Skew_Time (+150 ms); openproxy B accepts keepalived as ' +
      'master',
    async () => {
      const t0 = Date.now();
      watcher.partitioned = true; // the dead node's address stays on its interface
      proxies.get('a')!.proc.kill('SIGKILL');
      bed.link('a', false);
      await until(() => holders(['b', 'k']).length > 0, 8000, 'a new holder');
      const took = Date.now() - t0;
      record('takeover after a crash', took);
      const skew = ((256 - 120) * 1000) / 256;
      assert.ok(took <= 3 * 1000 + skew + 150, `takeover took ${took} ms`);
      assert.deepEqual(holders(['b', 'k']), ['k'], 'keepalived (120) beats openproxy B (100)');
      await sleep(1500);
      assert.deepEqual(holders(['b', 'k']), ['k'], 'B stays BACKUP under keepalived');
    },
  );

  test(
    'restart after a crash removes the stale VIP; a healed partition is ' + 'reachable through the VIP within 1 s',
    async () => {
      assert.deepEqual(holders(['a']), ['a'], 'the crashed node still has the VIP on its interface');
      const a = await startNode('a', 150);
      await a.waitFor(/removed a stale virtual IP/, 5000);
      assert.deepEqual(holders(['a']), [], 'stale VIP removed at start');
      // A VRRP-only partition: a reaches PostgreSQL and its clients, but no advert gets in or out.
      vrrpBlocked('a', true);
      bed.link('a', true);
      await until(
        () => holders(['a']).length === 1,
        10000,
        'a, hearing nobody, takes the VIP (two holders: a partition)',
      );
      assert.deepEqual(holders(), ['a', 'k']);
      await sleep(1500); // the client follows keepalived's or a's ARP, whichever came last
      const healed = Date.now();
      vrrpBlocked('a', false);
      let reached = 0;
      await until(
        () => {
          const r = viaVip();
          if (r.ok && r.node === 'a') reached = Date.now();
          return reached > 0;
        },
        5000,
        'the client reaches a through the VIP',
      );
      record('reachable after a partition heals', reached - healed);
      await until(() => holders().join() === 'a', 3000, 'keepalived gave the VIP up');
      watcher.partitioned = false;
      assert.ok(reached - healed <= 1000 + 300, `reachable ${reached - healed} ms after the heal`);
    },
  );

  test('a node that reaches no primary gives the VIP up (priority 0)', async () => {
    const t0 = Date.now();
    cluster.stopNode(cluster.primary, 'fast');
    try {
      await until(() => holders().join() === 'k', 8000, 'keepalived holds the VIP (openproxy gave it up)');
      record('gave up without a primary', Date.now() - t0);
      assert.match(proxies.get('a')!.output(), /VRRP priority lowered to 0: no primary reachable/);
    } finally {
      cluster.startNode(cluster.primary);
    }
    await until(() => holders().join() === 'a', 10000, 'a takes it back once the primary is back');
  });

  test('never two holders outside the partition', () => {
    assert.deepEqual(watcher.doubles, []);
  });
});

describe('VRRP that cannot start', () => {
  test('a bad interface puts the router in FAULT (log, SHOW VRRP); openproxy serves on', async () => {
    const c = bed.members.get('c')!;
    const p = await startProxy(
      config('c', 100).replace('interface = "eth0"', 'interface = "nope0"').replace('port = 6432', 'port = 6439'),
      [],
      {},
      /openproxy listening/,
      c.ns,
    );
    try {
      await p.waitFor(/VRRP fault reason="cannot start VRRP: interface nope0 has no IPv4 address of its own"/, 5000);
      const run = (user: string, pass: string, db: string, sql: string) =>
        spawnSync(
          'ip',
          [
            'netns',
            'exec',
            c.ns,
            'psql',
            '-X',
            '-A',
            '-t',
            '-F',
            '|',
            '-h',
            '127.0.0.1',
            '-p',
            '6439',
            '-U',
            user,
            '-d',
            db,
            '-c',
            sql,
          ],
          { encoding: 'utf8', env: { ...process.env, PGPASSWORD: pass } },
        ).stdout.trim();
      assert.match(run('admin', 'adminpass', 'openproxy', 'SHOW VRRP'), /^FAULT\|100\|\|/);
      assert.equal(run(APP_USER, APP_PASS, 'postgres', 'SELECT 1'), '1');
      assert.ok(!bed.addresses(c.ns).includes(VIP), 'no VIP taken');
    } finally {
      await p.stop();
    }
  });
});

describe('VRRP in unicast mode', () => {
  test('unicast_peers: adverts go to the peer only; the backup takes over when the master stops', async () => {
    for (const p of proxies.values()) await p.stop('SIGTERM');
    if (keepalived && keepalived.proc.exitCode === null) keepalived.proc.kill('SIGTERM');
    await until(() => holders().length === 0, 5000, 'every VIP released');
    const a = await startProxy(
      config('a', 150, `unicast_peers = ["${NET}.2"]`),
      [],
      {},
      /VRRP starting/,
      bed.members.get('a')!.ns,
    );
    const b = await startProxy(
      config('b', 100, `unicast_peers = ["${NET}.1"]`),
      [],
      {},
      /VRRP starting/,
      bed.members.get('b')!.ns,
    );
    proxies.set('a', a);
    proxies.set('b', b);
    await until(() => holders(['a', 'b']).join() === 'a', 10000, 'a holds the VIP');
    assert.match(a.output(), /mode="unicast to 10\.231\.77\.2"/);
    await sleep(3500);
    assert.deepEqual(holders(['a', 'b']), ['a'], 'b hears a over unicast and stays BACKUP');
    const t0 = Date.now();
    await a.stop('SIGTERM');
    await until(() => holders(['a', 'b']).join() === 'b', 3000, 'b takes over');
    record('unicast priority-0 handover', Date.now() - t0);
  });
});
