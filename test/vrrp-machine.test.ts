// The VRRP state machine on a simulated clock and an in-memory network: election, takeover
// timing (3 × advert_int + skew), priority-0 handover, preemption, ties, periodic gratuitous ARP,
// and giving up the VIP when no primary is reachable. Never two VIP holders.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VrrpMachine, type VrrpSettings } from '../src/ha/vrrp-machine';

interface Node {
  name: string;
  ip: string;
  m: VrrpMachine;
  up: boolean;
  garps: number;
}

class Sim {
  now = 0;
  nodes: Node[] = [];
  holders = new Set<string>();
  maxHolders = 0;
  log: string[] = [];

  add(name: string, ip: string, s: Partial<VrrpSettings>): Node {
    const node: Node = { name, ip, up: true, garps: 0, m: undefined as unknown as VrrpMachine };
    node.m = new VrrpMachine(
      { priority: 100, advertIntMs: 1000, preempt: true, localIp: ip, garpRefreshMs: 0, ...s },
      {
        advertise: (priority) => {
          for (const other of this.nodes) if (other !== node && other.up) other.m.onAdvert(this.now, priority, ip);
        },
        becomeMaster: (reason) => {
          this.holders.add(name);
          this.maxHolders = Math.max(this.maxHolders, this.holders.size);
          this.log.push(`${this.now} ${name} MASTER (${reason})`);
        },
        leaveMaster: (reason) => {
          this.holders.delete(name);
          this.log.push(`${this.now} ${name} leaves (${reason})`);
        },
        garp: () => node.garps++,
      },
    );
    this.nodes.push(node);
    return node;
  }

  /** Runs every timer up to `until` (ms), in deadline order. */
  run(until: number): void {
    for (;;) {
      const next = Math.min(...this.nodes.filter((n) => n.up).map((n) => n.m.nextDeadline()));
      if (!(next <= until)) break;
      this.now = Math.max(this.now, next);
      for (const n of this.nodes) if (n.up) n.m.tick(this.now);
    }
    this.now = until;
  }

  /** Who holds the VIP after the machines settle at `t`. */
  master(): string[] {
    return [...this.holders];
  }
}

/** Routers of priority 150 (10.0.0.1) and 100 (10.0.0.2), both started at 0 ms. */
function twoRouters(high: string, low: string): { sim: Sim; a: Node; b: Node } {
  const sim = new Sim();
  const a = sim.add(high, '10.0.0.1', { priority: 150 });
  const b = sim.add(low, '10.0.0.2', { priority: 100 });
  a.m.start(0);
  b.m.start(0);
  return { sim, a, b };
}

test('election: the higher priority becomes MASTER after Master_Down_Interval; never two masters', () => {
  const { sim, b } = twoRouters('a', 'b');
  sim.run(3413);
  assert.deepEqual(sim.master(), [], 'nobody before 3 × 1000 + skew(150) = 3414 ms');
  sim.run(3415);
  assert.deepEqual(sim.master(), ['a']);
  sim.run(60000);
  assert.deepEqual(sim.master(), ['a']);
  assert.equal(b.m.state, 'BACKUP');
  assert.equal(sim.maxHolders, 1);
});

test('a master that crashes is replaced within 3 × advert_int + skew; a graceful stop within skew', () => {
  const { sim, a } = twoRouters('a', 'b');
  sim.run(10000);
  a.up = false; // crash: no more adverts; its last one went out at 9414
  sim.holders.delete('a');
  const limit = 9414 + 3000 + ((256 - 100) * 1000) / 256;
  sim.run(limit - 1);
  assert.deepEqual(sim.master(), []);
  sim.run(limit + 1);
  assert.deepEqual(sim.master(), ['b'], 'takeover at 3 × advert_int + skew(100) after the last advert');

  const { sim: sim2, a: c } = twoRouters('c', 'd');
  sim2.run(10000);
  c.m.stop(10000); // priority-0 advert
  c.up = false;
  assert.deepEqual(sim2.master(), []);
  sim2.run(10000 + Math.ceil(((256 - 100) * 1000) / 256));
  assert.deepEqual(sim2.master(), ['d'], 'takeover within Skew_Time after a priority-0 advert');
  assert.equal(sim2.maxHolders, 1);
});

test('preemption: a higher priority router takes the VIP back; with preempt off it waits', () => {
  for (const preempt of [true, false]) {
    const sim = new Sim();
    const b = sim.add('b', '10.0.0.2', { priority: 100 });
    b.m.start(0);
    sim.run(5000);
    assert.deepEqual(sim.master(), ['b']);
    const a = sim.add('a', '10.0.0.1', { priority: 150, preempt });
    a.m.start(5000);
    sim.run(20000);
    assert.deepEqual(sim.master(), preempt ? ['a'] : ['b'], `preempt ${preempt}`);
    assert.equal(sim.maxHolders, 1);
  }
});

test('equal priorities: the higher address wins', () => {
  const sim = new Sim();
  const a = sim.add('a', '10.0.0.1', { priority: 100 });
  const b = sim.add('b', '10.0.0.9', { priority: 100 });
  a.m.start(0);
  sim.run(5000);
  assert.deepEqual(sim.master(), ['a']);
  b.m.start(5000);
  sim.run(5001);
  // b is BACKUP and hears a's adverts (equal priority): it would wait, but a hears b only when b is master.
  b.m.onAdvert(sim.now, 100, '10.0.0.1');
  a.m.onAdvert(sim.now, 100, '10.0.0.9');
  assert.equal(a.m.state, 'BACKUP', 'a master yields to an equal-priority advert from a higher address');
});

test('gratuitous ARPs on takeover and every garpRefreshMs while MASTER', () => {
  const sim = new Sim();
  const a = sim.add('a', '10.0.0.1', { priority: 150, garpRefreshMs: 5000 });
  a.m.start(0);
  sim.run(3500);
  assert.equal(a.garps, 1, 'on takeover');
  sim.run(3414 + 5000 * 4 + 1);
  assert.equal(a.garps, 5, 'and every 5 s after');
});

test('a master that reaches no primary gives the VIP up at once (priority 0) and takes it again when it does', () => {
  const { sim, a } = twoRouters('a', 'b');
  sim.run(10000);
  a.m.setPriority(10000, 0, 'no primary reachable');
  assert.equal(a.m.state, 'BACKUP');
  assert.equal(a.m.lastTransition.reason, 'no primary reachable');
  sim.run(10000 + Math.ceil(((256 - 100) * 1000) / 256));
  assert.deepEqual(sim.master(), ['b']);
  sim.run(30000);
  assert.deepEqual(sim.master(), ['b'], 'priority 0 never takes over');
  a.m.setPriority(30000, 150, 'primary reachable again');
  sim.run(40000);
  assert.deepEqual(sim.master(), ['a'], 'preempts back once healthy');
  assert.equal(sim.maxHolders, 1);
});
