// What the VRRP tests share: a network-namespace bed with PostgreSQL in the hub, a keepalived
// node, and a watcher that samples every 25 ms which nodes hold the VIP (and records any moment
// two did, outside a deliberate partition).

import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NetnsBed } from '../../testing/netns';
import { PgCluster } from '../../testing/pg-cluster';
import { createAppRole, sleep } from './db';
import type { Proxy } from './proxy';

export interface VrrpBed {
  bed: NetnsBed;
  cluster: PgCluster;
}

/** A bed on NET.0/24 with these members (name → host number) and PostgreSQL in the hub namespace. */
export async function startVrrpBed(prefix: string, net: string, members: Record<string, number>): Promise<VrrpBed> {
  const bed = new NetnsBed(`${prefix}${process.pid % 100000}`, net);
  for (const [name, host] of Object.entries(members)) bed.add(name, host);
  const cluster = await PgCluster.start({
    netns: bed.hub,
    settings: { listen_addresses: "'*'" },
    hba: [`host all all ${net}.0/24 md5`],
  });
  createAppRole(cluster);
  return { bed, cluster };
}

export interface Keepalived {
  proc: ChildProcess;
  log(): string;
}

/** keepalived (state BACKUP, advert_int 1) for one VIP in member `name`'s namespace. */
export function spawnKeepalived(
  bed: NetnsBed,
  dir: string,
  o: { name: string; vrid: number; vip: string; priority: number; version?: 2 | 3 },
): Keepalived {
  const conf = join(dir, 'keepalived.conf');
  writeFileSync(
    conf,
    `global_defs {\n  router_id K\n}\nvrrp_instance VI {\n  state BACKUP\n${o.version === 3 ? '  version 3\n' : ''}` +
      `  interface eth0\n  virtual_router_id ${o.vrid}\n  priority ${o.priority}\n  advert_int 1\n` +
      `  virtual_ipaddress {\n    ${o.vip}/24\n  }\n}\n`,
  );
  const proc = bed.spawn(
    bed.members.get(o.name)!.ns,
    'keepalived',
    ['-n', '-l', '-D', '-P', '-f', conf, '-p', join(dir, 'k.pid'), '-r', join(dir, 'k-vrrp.pid')],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let text = '';
  proc.stdout!.on('data', (b) => (text += b));
  proc.stderr!.on('data', (b) => (text += b));
  return { proc, log: () => text };
}

/** Samples the VIP's holders every 25 ms until stop(); `partitioned` excuses two holders. */
export class VipWatcher {
  readonly doubles: string[] = [];
  readonly history: { at: number; who: string }[] = [];
  partitioned = false;
  private running = false;

  constructor(
    private readonly bed: NetnsBed,
    private readonly vip: string,
    private readonly names: string[],
  ) {}

  /** Which of `names` hold the VIP now. */
  holders(names = this.names): string[] {
    return names.filter((n) => this.bed.addresses(this.bed.members.get(n)!.ns).includes(this.vip));
  }

  start(): void {
    this.running = true;
    void (async () => {
      let last = '';
      while (this.running) {
        const h = this.holders().join(',');
        if (h !== last) this.history.push({ at: Date.now(), who: h });
        last = h;
        if (h.includes(',') && !this.partitioned) this.doubles.push(`${new Date().toISOString()} ${h}`);
        await sleep(25);
      }
    })();
  }

  stop(): void {
    this.running = false;
  }
}

/** Tears a bed down: the watcher, every openproxy and keepalived (SIGKILL), PostgreSQL, the namespaces. */
export async function stopVrrpBed(
  b: Partial<VrrpBed>,
  watcher: VipWatcher | undefined,
  proxies: Iterable<Proxy>,
  keepalived: Keepalived | null,
): Promise<void> {
  watcher?.stop();
  for (const p of proxies) await p.stop('SIGKILL').catch(() => undefined);
  if (keepalived && keepalived.proc.exitCode === null) keepalived.proc.kill('SIGKILL');
  b.cluster?.stop();
  b.bed?.destroy();
}
