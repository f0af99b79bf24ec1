// The VRRP router state machine of RFC 3768 §6.4 (the same for v3, RFC 5798 §6.4, with the
// advertisement interval in centiseconds), without I/O: the caller feeds it time, received
// advertisements and stop requests, and it calls back to send advertisements, take or release
// the virtual IPs and send gratuitous ARPs. Deterministic, so it is tested on a simulated clock.
// Beyond the RFC (and keepalived's defaults): gratuitous ARPs are repeated every garpRefreshMs
// while MASTER, and the priority can be lowered at run time (a node that reaches no primary).

export type VrrpState = 'INIT' | 'BACKUP' | 'MASTER';

export interface VrrpSettings {
  /** 1–255 (255 = address owner: MASTER at once). */
  priority: number;
  /** Milliseconds between advertisements. */
  advertIntMs: number;
  /** A higher-priority backup takes over from a lower-priority master (RFC default true). */
  preempt: boolean;
  /** This router's own IPv4 address (ties between equal priorities go to the higher address). */
  localIp: string;
  /** Gratuitous ARPs repeated this often while MASTER (0 = only on takeover). */
  garpRefreshMs: number;
}

export interface VrrpActions {
  /** Send an advertisement with this priority (0 = leaving). */
  advertise(priority: number): void;
  /** Before becoming MASTER: add the VIPs (pre_promote_script runs here). */
  becomeMaster(reason: string): void;
  /** Before leaving MASTER: remove the VIPs (pre_demote_script runs here). */
  leaveMaster(reason: string): void;
  /** Gratuitous ARPs for every VIP. */
  garp(): void;
}

const ipNum = (ip: string) => ip.split('.').reduce((n, p) => n * 256 + Number(p), 0);

export class VrrpMachine {
  state: VrrpState = 'INIT';
  /** Why the last transition happened, and when (ms). */
  lastTransition = { at: 0, from: 'INIT' as VrrpState, to: 'INIT' as VrrpState, reason: 'not started' };
  private priority: number;
  private masterDownAt = Infinity;
  private advertAt = Infinity;
  private garpAt = Infinity;

  constructor(
    private s: VrrpSettings,
    private readonly act: VrrpActions,
  ) {
    this.priority = s.priority;
  }

  get currentPriority(): number {
    return this.priority;
  }

  /** Skew_Time: lower priorities wait longer before taking over. */
  skewMs(): number {
    return ((256 - this.priority) * this.s.advertIntMs) / 256;
  }

  /** Master_Down_Interval = 3 × Advertisement_Interval + Skew_Time. */
  masterDownIntervalMs(): number {
    return 3 * this.s.advertIntMs + this.skewMs();
  }

  start(now: number): void {
    if (this.state !== 'INIT') return;
    if (this.priority === 255) this.toMaster(now, 'address owner (priority 255)');
    else this.toBackup(now, 'started');
  }

  /** An advertisement from another router of this VRID. */
  onAdvert(now: number, priority: number, srcIp: string): void {
    if (this.state === 'BACKUP') {
      if (priority === 0) this.masterDownAt = now + this.skewMs();
      else if (!this.s.preempt || priority >= this.priority) this.masterDownAt = now + this.masterDownIntervalMs();
      // else: a lower-priority master and we preempt: let the master-down timer run out.
    } else if (this.state === 'MASTER') {
      if (priority === 0) {
        this.act.advertise(this.priority);
        this.advertAt = now + this.s.advertIntMs;
      } else if (priority > this.priority || (priority === this.priority && ipNum(srcIp) > ipNum(this.s.localIp))) {
        this.toBackup(now, `advertisement from ${srcIp} with priority ${priority}`);
      }
    }
  }

  /** Runs the timers due at `now`; returns the next deadline (ms) to call again at. */
  tick(now: number): number {
    if (this.state === 'BACKUP' && this.priority > 0 && now >= this.masterDownAt)
      this.toMaster(now, 'no advertisement within Master_Down_Interval');
    if (this.state === 'MASTER') {
      if (now >= this.advertAt) {
        this.act.advertise(this.priority);
        this.advertAt = now + this.s.advertIntMs;
      }
      if (now >= this.garpAt) {
        this.act.garp();
        this.garpAt = now + this.s.garpRefreshMs;
      }
    }
    return this.nextDeadline();
  }

  nextDeadline(): number {
    if (this.state === 'BACKUP') return this.masterDownAt;
    if (this.state === 'MASTER') return Math.min(this.advertAt, this.garpAt);
    return Infinity;
  }

  /**
   * Changes the priority at run time (e.g. lowered while no primary is reachable). A MASTER that
   * drops below 1 gives up at once with a priority-0 advertisement, so a backup takes over within
   * Skew_Time instead of Master_Down_Interval.
   */
  setPriority(now: number, priority: number, reason: string): void {
    this.priority = Math.max(0, Math.min(254, priority));
    if (this.state === 'MASTER' && this.priority === 0) {
      this.act.advertise(0);
      this.toBackup(now, reason);
      this.masterDownAt = Infinity; // priority 0: never take over while it lasts
    } else if (this.state === 'BACKUP' && this.priority === 0) this.masterDownAt = Infinity;
    else if (this.state === 'BACKUP' && this.masterDownAt === Infinity)
      this.masterDownAt = now + this.masterDownIntervalMs();
    else if (this.state === 'MASTER') this.act.advertise(this.priority);
  }

  /** keepalived's nopreempt changed by a reload: applies to the next advertisement. */
  setPreempt(preempt: boolean): void {
    this.s.preempt = preempt;
  }

  /** Graceful stop: a MASTER sends a priority-0 advertisement so a backup takes over at once. */
  stop(now: number): void {
    if (this.state === 'MASTER') {
      this.act.advertise(0);
      this.act.leaveMaster('stopping');
    }
    this.transition(now, 'INIT', 'stopping');
    this.masterDownAt = this.advertAt = this.garpAt = Infinity;
  }

  private toMaster(now: number, reason: string): void {
    // Advertise first: a lower-priority master releases the VIPs on hearing it, before they are
    // added here, so a preemption does not leave two holders for longer than the advert's flight.
    this.act.advertise(this.priority);
    this.act.becomeMaster(reason);
    this.act.garp();
    this.advertAt = now + this.s.advertIntMs;
    this.garpAt = this.s.garpRefreshMs > 0 ? now + this.s.garpRefreshMs : Infinity;
    this.masterDownAt = Infinity;
    this.transition(now, 'MASTER', reason);
  }

  private toBackup(now: number, reason: string): void {
    if (this.state === 'MASTER') this.act.leaveMaster(reason);
    this.advertAt = this.garpAt = Infinity;
    this.masterDownAt = now + this.masterDownIntervalMs();
    this.transition(now, 'BACKUP', reason);
  }

  private transition(now: number, to: VrrpState, reason: string): void {
    this.lastTransition = { at: now, from: this.state, to, reason };
    this.state = to;
  }
}
