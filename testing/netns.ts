// Network-namespace test beds for VRRP: a hub namespace holding a bridge, and member namespaces
// each joined to it by a veth pair (eth0 inside). Nothing is routed out of them. Namespaces outlive
// the process, so destroy() must run (tests call it in after/finally). Needs root.

import { type ChildProcess, execFileSync, spawn, type SpawnOptions } from 'node:child_process';

export interface Member {
  ns: string;
  ip: string;
  /** The hub-side veth end, to cut and heal this member's link. */
  port: string;
}

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export class NetnsBed {
  readonly hub: string;
  readonly members = new Map<string, Member>();
  private readonly nss: string[] = [];

  /** `subnet` is the first three octets, e.g. "10.77.3"; the hub's bridge gets .254. */
  constructor(
    readonly tag: string,
    readonly subnet: string,
  ) {
    this.hub = `opx-${tag}-hub`;
    this.addNs(this.hub);
    ip(['-n', this.hub, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    ip(['-n', this.hub, 'addr', 'add', `${subnet}.254/24`, 'dev', 'br0']);
    ip(['-n', this.hub, 'link', 'set', 'br0', 'up']);
  }

  private addNs(ns: string): void {
    try {
      ip(['netns', 'del', ns]); // a leftover of a killed run
    } catch {
      /* none */
    }
    ip(['netns', 'add', ns]);
    this.nss.push(ns);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
  }

  /** A namespace with eth0 = `${subnet}.${host}/24` on the bridge. */
  add(name: string, host: number): Member {
    const ns = `opx-${this.tag}-${name}`;
    this.addNs(ns);
    const port = `v${this.tag}${name}`.slice(0, 15);
    ip(['-n', this.hub, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    ip(['-n', this.hub, 'link', 'set', port, 'master', 'br0', 'up']);
    ip(['-n', ns, 'addr', 'add', `${this.subnet}.${host}/24`, 'dev', 'eth0']);
    ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
    const m = { ns, ip: `${this.subnet}.${host}`, port };
    this.members.set(name, m);
    return m;
  }

  /** Cuts (false) or heals (true) a member's link at the bridge. */
  link(name: string, up: boolean): void {
    execFileSync('bridge', [
      '-n',
      this.hub,
      'link',
      'set',
      'dev',
      this.members.get(name)!.port,
      'state',
      up ? '3' : '0',
    ]);
  }

  /** The IPv4 addresses on a namespace's eth0. */
  addresses(ns: string): string[] {
    const out = ip(['-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    return [...out.matchAll(/inet (\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1]);
  }

  /** Runs a command inside a namespace. */
  spawn(ns: string, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', ns, cmd, ...args], opts);
  }

  exec(ns: string, cmd: string, args: string[], timeout = 10000): string {
    return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], {
      encoding: 'utf8',
      timeout,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  destroy(): void {
    for (const ns of this.nss.reverse()) {
      try {
        ip(['netns', 'del', ns]);
      } catch {
        /* gone */
      }
    }
  }
}
