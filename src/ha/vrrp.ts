// The VRRP virtual router ([general.virtual_router]), in the HA thread: the RFC 3768 state machine
// (vrrp-machine.ts) on real timers, adverts over a raw IP socket (protocol 112, multicast
// 224.0.0.18 or unicast_peers), VIPs added and removed with iproute2, gratuitous ARPs through a
// packet socket, pre_promote_script / pre_demote_script run before the VIPs move. Beyond
// keepalived: stale VIPs left by a crash are removed at start, gratuitous ARPs go out with every
// advert while MASTER (a backup that yields after a partition heals cannot correct its clients'
// ARP caches; the master's next advert-time GARP does, within advert_int) and at once when another
// master shows up, and a node that reaches no primary drops its priority to 0 and gives the VIPs up.

import { execFileSync } from 'node:child_process';
import os from 'node:os';
import type { VirtualRouterConfig } from '../config/types';
import { log } from '../log';
import { VrrpMachine, type VrrpState } from './vrrp-machine';
import { decodeAdvert, encodeAdvert, gratuitousArp, ipString, VRRP_MULTICAST, VRRP_PROTOCOL } from './vrrp-packet';
import { PacketSocket, RawIpSocket } from './raw-socket';

export interface VrrpStatus {
  state: VrrpState | 'FAULT';
  priority: number;
  since: number;
  reason: string;
  localIp: string;
}

const vipAddr = (v: string) => v.split('/')[0];
/** How long a preempting router waits between its first advert and adding the VIPs. */
const PREEMPT_GRACE_MS = 150;

/** The interface's IPv4 addresses now (primary first, as the kernel lists them). */
function addressesOf(iface: string): string[] {
  return (os.networkInterfaces()[iface] ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address);
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 5000 });
}

export class VirtualRouter {
  private machine: VrrpMachine | null = null;
  private sock: RawIpSocket | null = null;
  private arp: PacketSocket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private localIp = '';
  private mac = '';
  private lowered = false;
  private reported = '';
  /** When a MASTER of lower priority last advertised while we were BACKUP (we are about to preempt it). */
  private lowerMasterAt = 0;
  private readonly vips: string[];
  private readonly peers: string[];
  /** Adverts on the wire: v2 in seconds, v3 in centiseconds. */
  private readonly version: 2 | 3;
  private readonly wireInt: number;

  constructor(
    private cfg: VirtualRouterConfig,
    private readonly onStatus: (s: VrrpStatus) => void,
  ) {
    this.vips = cfg.vip_addresses;
    this.peers = cfg.unicast_peers ?? [];
    this.version = cfg.version ?? 2;
    this.wireInt = this.version === 3 ? cfg.advert_int * 100 : cfg.advert_int;
  }

  /**
   * A reload: priority, scripts and nopreempt change in place (the VIPs stay where they are; a
   * BACKUP raised above the MASTER takes over by the protocol's own rules). Returns the keys that
   * differ and need a restart (interface, router_id, VIPs, advert_int, version, unicast_peers).
   */
  reconfigure(next: VirtualRouterConfig): string[] {
    const old = this.cfg;
    const restart = (
      ['interface', 'router_id', 'advert_int', 'vip_addresses', 'unicast_peers', 'version'] as const
    ).filter((k) => JSON.stringify(old[k]) !== JSON.stringify(next[k]));
    this.cfg = { ...next, ...Object.fromEntries(restart.map((k) => [k, old[k]])) };
    if (this.machine && next.nopreempt !== old.nopreempt) this.machine.setPreempt(!next.nopreempt);
    if (this.machine && next.priority !== old.priority) {
      if (!this.lowered) this.machine.setPriority(Date.now(), next.priority, 'priority changed by reload');
      log.info('VRRP priority changed by reload', { from: old.priority, to: next.priority, state: this.machine.state });
      this.after();
    }
    return restart;
  }

  start(): void {
    const c = this.cfg;
    try {
      this.removeStaleVips();
      const own = addressesOf(c.interface).filter((a) => !this.vips.some((v) => vipAddr(v) === a));
      if (own.length === 0) throw new Error(`interface ${c.interface} has no IPv4 address of its own`);
      this.localIp = own[0];
      this.mac = (os.networkInterfaces()[c.interface] ?? [])[0]?.mac ?? '00:00:00:00:00:00';
      this.sock = new RawIpSocket(c.interface, VRRP_PROTOCOL);
      if (this.peers.length === 0) this.sock.joinGroup(VRRP_MULTICAST);
      this.arp = new PacketSocket(c.interface);
    } catch (e) {
      const msg = (e as Error).message;
      this.fault(
        `cannot start VRRP: ${msg}` +
          (/not permitted|EPERM|EACCES|denied/i.test(msg) ? ' (openproxy needs CAP_NET_RAW and CAP_NET_ADMIN)' : ''),
      );
      return;
    }
    this.machine = new VrrpMachine(
      {
        priority: c.priority,
        advertIntMs: c.advert_int * 1000,
        preempt: !c.nopreempt,
        localIp: this.localIp,
        garpRefreshMs: c.advert_int * 1000,
      },
      {
        advertise: (p) => this.advertise(p),
        becomeMaster: (why) => this.takeVips(why),
        leaveMaster: (why) => this.releaseVips(why),
        garp: () => this.garp(),
      },
    );
    log.info('VRRP starting', {
      interface: c.interface,
      router_id: c.router_id,
      priority: c.priority,
      advert_int_s: c.advert_int,
      version: this.version,
      local_ip: this.localIp,
      mode: this.peers.length ? `unicast to ${this.peers.join(', ')}` : `multicast ${VRRP_MULTICAST}`,
    });
    this.sock.receive(
      (p) => this.onPacket(p),
      (e) => log.error('VRRP receive failed', { error: e.message }),
    );
    this.machine.start(Date.now());
    this.after();
  }

  /** Priority 0 while no primary is reachable (the VIPs go to a node that can serve), back after. */
  setPrimaryReachable(ok: boolean): void {
    if (!this.machine || ok === !this.lowered) return;
    this.lowered = !ok;
    const now = Date.now();
    if (this.lowered) this.machine.setPriority(now, 0, 'no primary reachable');
    else this.machine.setPriority(now, this.cfg.priority, 'a primary is reachable again');
    log.warn(
      this.lowered
        ? 'VRRP priority lowered to 0: no primary reachable'
        : 'VRRP priority restored: a primary is reachable',
      { priority: this.machine.currentPriority },
    );
    this.after();
  }

  /** Graceful stop: a MASTER sends priority 0 and releases the VIPs. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.machine) {
      this.machine.stop(Date.now());
      this.after();
    }
    this.sock?.close();
    this.arp?.close();
    this.sock = null;
    this.arp = null;
    this.machine = null;
  }

  private onPacket(p: Buffer): void {
    if (!this.machine || p.length < 20) return;
    const ihl = (p[0] & 0x0f) * 4;
    const ttl = p[8];
    const src = ipString(p, 12);
    const dst = ipString(p, 16);
    if (src === this.localIp) return;
    const a = decodeAdvert(p.subarray(ihl), src, dst);
    if ('error' in a) return log.debug('VRRP packet dropped', { from: src, reason: a.error });
    if (a.vrid !== this.cfg.router_id) return;
    if (ttl !== 255) return log.warn('VRRP advert dropped: TTL is not 255 (RFC 3768 7.1)', { from: src, ttl });
    if (!a.checksumOk) return log.warn('VRRP advert dropped: bad checksum', { from: src });
    if (a.version !== this.version)
      return log.warn(`VRRP advert dropped: version ${a.version} advert on a version ${this.version} router`, {
        from: src,
      });
    if (a.advertInt !== this.wireInt)
      return log.warn('VRRP advert dropped: advert_int differs', {
        from: src,
        theirs: this.version === 3 ? `${a.advertInt / 100} s` : `${a.advertInt} s`,
        ours: `${this.cfg.advert_int} s`,
      });
    const before = this.machine.state;
    if (before === 'BACKUP' && a.priority > 0 && a.priority < this.machine.currentPriority)
      this.lowerMasterAt = Date.now();
    this.machine.onAdvert(Date.now(), a.priority, src);
    // Another MASTER with a lower priority: a partition healed. It yields on our next advert; the
    // ARP caches of clients that followed it are corrected now, not after they expire.
    if (before === 'MASTER' && this.machine.state === 'MASTER' && a.priority > 0) {
      log.info('VRRP: another master with lower priority seen; asserting', { from: src, their_priority: a.priority });
      this.advertise(this.machine.currentPriority);
      this.garp();
    }
    this.after();
  }

  /** Re-arms the timer for the machine's next deadline and reports state changes. */
  private after(): void {
    const m = this.machine;
    if (!m) return;
    const t = m.lastTransition;
    const key = `${t.at}|${t.to}|${m.currentPriority}`;
    if (key !== this.reported) {
      this.reported = key;
      if (t.to !== t.from || t.at === 0)
        log.info('VRRP state', { from: t.from, to: t.to, reason: t.reason, priority: m.currentPriority });
      this.onStatus({
        state: m.state,
        priority: m.currentPriority,
        since: t.at || Date.now(),
        reason: t.reason,
        localIp: this.localIp,
      });
    }
    if (this.timer) clearTimeout(this.timer);
    const next = m.nextDeadline();
    if (next === Infinity) return;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        if (!this.machine) return;
        this.machine.tick(Date.now());
        this.after();
      },
      Math.max(0, next - Date.now()),
    );
  }

  private advertise(priority: number): void {
    if (!this.sock) return;
    const advert = {
      version: this.version,
      vrid: this.cfg.router_id,
      priority,
      advertInt: this.wireInt,
      addresses: this.vips.map(vipAddr),
    };
    // v3's checksum covers the IP source and destination: one message per destination.
    const to = (dst: string) => this.sock!.send(encodeAdvert(advert, this.localIp, dst), dst);
    try {
      if (this.peers.length === 0) to(VRRP_MULTICAST);
      else for (const peer of this.peers) to(peer);
    } catch (e) {
      log.warn('VRRP advert not sent', { error: (e as Error).message });
    }
  }

  private takeVips(why: string): void {
    this.runScript(this.cfg.pre_promote_script, 'pre_promote_script', 'MASTER', why);
    // Preempting a live MASTER: our advert just went out; give it PREEMPT_GRACE_MS to remove the
    // VIPs (after its pre_demote_script) before adding them here, so the two never hold them at once.
    if (Date.now() - this.lowerMasterAt < 3 * this.cfg.advert_int * 1000) {
      setTimeout(() => {
        if (this.machine?.state !== 'MASTER') return;
        this.addVips(why);
        this.garp();
      }, PREEMPT_GRACE_MS);
      return;
    }
    this.addVips(why);
  }

  private addVips(why: string): void {
    for (const v of this.vips) {
      try {
        ip(['-4', 'addr', 'replace', v, 'dev', this.cfg.interface]);
      } catch (e) {
        log.error('VRRP: cannot add virtual IP', {
          vip: v,
          interface: this.cfg.interface,
          error: (e as { stderr?: Buffer }).stderr?.toString().trim() ?? (e as Error).message,
        });
      }
    }
    log.info('VRRP: virtual IPs added', { vips: this.vips.join(', '), interface: this.cfg.interface, reason: why });
  }

  private releaseVips(why: string): void {
    this.runScript(this.cfg.pre_demote_script, 'pre_demote_script', 'BACKUP', why);
    for (const v of this.vips) {
      try {
        ip(['-4', 'addr', 'del', v, 'dev', this.cfg.interface]);
      } catch {
        /* not there */
      }
    }
    log.info('VRRP: virtual IPs removed', { vips: this.vips.join(', '), interface: this.cfg.interface, reason: why });
  }

  private garp(): void {
    if (!this.arp) return;
    for (const v of this.vips) {
      try {
        this.arp.send(gratuitousArp(this.mac, vipAddr(v)));
      } catch (e) {
        log.warn('VRRP: gratuitous ARP not sent', { vip: v, error: (e as Error).message });
      }
    }
  }

  /** A VIP on the interface at start can only be a leftover of a crash: nobody holds it for us yet. */
  private removeStaleVips(): void {
    const have = addressesOf(this.cfg.interface);
    for (const v of this.vips) {
      if (!have.includes(vipAddr(v))) continue;
      ip(['-4', 'addr', 'del', v, 'dev', this.cfg.interface]);
      log.warn('VRRP: removed a stale virtual IP left on the interface (a previous run did not release it)', {
        vip: v,
        interface: this.cfg.interface,
      });
    }
  }

  private runScript(script: string | undefined, key: string, to: string, why: string): void {
    if (!script) return;
    const t0 = Date.now();
    try {
      execFileSync('/bin/sh', ['-c', script], {
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: Math.max(2000, this.cfg.advert_int * 1000),
        env: {
          ...process.env,
          OPENPROXY_VRRP_STATE: to,
          OPENPROXY_VRRP_REASON: why,
          OPENPROXY_VRRP_ROUTER_ID: String(this.cfg.router_id),
          OPENPROXY_VRRP_VIPS: this.vips.join(' '),
        },
      });
      log.info(`VRRP: ${key} ran`, { script, ms: Date.now() - t0 });
    } catch (e) {
      // The transition goes ahead: a failing hook must not leave the VIPs with nobody.
      log.error(`VRRP: ${key} failed; going on with the transition`, {
        script,
        error: (e as { stderr?: Buffer }).stderr?.toString().trim() || (e as Error).message,
      });
    }
  }

  private fault(reason: string): void {
    log.error('VRRP fault', { reason });
    this.onStatus({ state: 'FAULT', priority: this.cfg.priority, since: Date.now(), reason, localIp: this.localIp });
  }
}
