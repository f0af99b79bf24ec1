// Main thread: starts the proxy workers and the HA thread, feeds them config snapshots, relays
// their logs and cross-worker cancels, and ends the process if a proxy worker dies (its server
// connections' shared slots cannot be reconciled; systemd's Restart=always brings it back).

import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { log } from '../log';
import type { Config } from '../config/types';
import type { Slots } from '../pool/slots';
import type { SharedState } from '../shared/state';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/umd/node-adapter';
import type { FromWorker, MainApi, ToWorker, WorkerApi, WorkerInit } from './messages';
import type { AdminRequest, AdminResult } from '../admin/requests';
import type { WorkerSnapshot } from '../shared/snapshot';
import type { FromHa, HaInit, ToHa } from './ha-worker';
import type { VrrpStatus } from '../ha/vrrp';
import type { Level } from '../log';

const WORKERS_DIR = join(__dirname, '..', '..', 'workers');

/**
 * A young generation of 8 MB per thread instead of V8's default (semi-spaces growing to 16 MB
 * each): a login storm otherwise grows every worker's new space to 32 MB that stays committed.
 * Measured (10,000 clients, 1 worker): peak RSS 202 → 160 MB; pgbench select-only CPU per
 * transaction unchanged within run-to-run noise (see the README's benchmark section).
 */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 8 };

export class Supervisor {
  readonly workers: Worker[] = [];
  private ha: Worker | null = null;
  /** SCRAM pass-through keys shared so far (sent again to a restarted HA thread). */
  private readonly scramKeys = new Map<string, Extract<FromWorker, { kind: 'scramKeys' }>>();
  private stopping = false;
  private stopped = 0;
  /** The config the HA thread gets when it (re)starts. */
  private lastConfig: { cfg: Config; slots: Slots } | null = null;
  onAllStopped?: () => void;
  /** Set by main: carries out an admin request that is not about snapshots. */
  onAdmin?: (req: AdminRequest) => Promise<AdminResult>;
  /** The virtual router's state as the HA thread last reported it (null: not configured or not started). */
  vrrp: VrrpStatus | null = null;
  /** Each proxy worker's answers (comlink on its port). */
  private readonly apis: Comlink.Remote<WorkerApi>[] = [];

  constructor(
    private readonly shared: SharedState,
    private readonly count: number,
    private readonly logLevel: Level,
  ) {}

  async start(cfg: Config, slots: Slots): Promise<void> {
    const ready: Promise<void>[] = [];
    for (let i = 0; i < this.count; i++) {
      const init: WorkerInit = { index: i, count: this.count, sab: this.shared.sab, logLevel: this.logLevel };
      const w = new Worker(join(WORKERS_DIR, 'proxy.js'), { workerData: init, resourceLimits: WORKER_LIMITS });
      this.workers.push(w);
      const endpoint = nodeEndpoint(w);
      this.apis.push(Comlink.wrap<WorkerApi>(endpoint));
      const api: MainApi = { admin: (req) => this.admin(req) };
      Comlink.expose(api, endpoint);
      ready.push(
        new Promise((resolve, reject) => {
          w.on('message', (m: FromWorker) => {
            if (m.kind === 'ready') resolve();
            else this.onMessage(m);
          });
          w.once('error', reject);
        }),
      );
      w.on('error', (e) => log.error('proxy worker crashed', { worker: i, error: e.stack ?? e.message }));
      w.on('exit', (code) => {
        if (this.stopping) return;
        log.error('proxy worker exited unexpectedly; stopping openproxy so it can be restarted cleanly', {
          worker: i,
          code,
        });
        process.exit(70);
      });
      this.send(i, { kind: 'config', cfg, slots });
    }
    this.lastConfig = { cfg, slots };
    this.startHa();
    await Promise.all(ready);
  }

  private startHa(): void {
    const init: HaInit = { sab: this.shared.sab, logLevel: this.logLevel };
    const ha = new Worker(join(WORKERS_DIR, 'ha.js'), { workerData: init, resourceLimits: WORKER_LIMITS });
    this.ha = ha;
    if (this.lastConfig) ha.postMessage({ kind: 'config', ...this.lastConfig } satisfies ToHa);
    for (const m of this.scramKeys.values()) ha.postMessage(m satisfies ToHa);
    ha.on('message', (m: FromWorker | FromHa) => {
      if (m.kind === 'vrrp') this.vrrp = m.status;
      else this.onMessage(m);
    });
    ha.on('error', (e) => log.error('HA thread crashed', { error: e.message }));
    ha.on('exit', (code) => {
      if (this.stopping) return;
      log.warn('HA thread exited; restarting it', { code });
      setTimeout(() => this.startHa(), 1000);
    });
  }

  private onMessage(m: FromWorker): void {
    switch (m.kind) {
      case 'log':
        return log.forward(m.record);
      case 'cancel':
        if (m.worker < this.workers.length) this.send(m.worker, { kind: 'cancel', pid: m.pid, secret: m.secret });
        return;
      case 'stopped':
        if (++this.stopped === this.workers.length) this.onAllStopped?.();
        return;
      case 'scramKeys':
        // Kept for an HA thread restarted later; every thread gets them now.
        this.scramKeys.set(m.verifier, m);
        for (let i = 0; i < this.workers.length; i++) this.send(i, m);
        this.ha?.postMessage(m satisfies ToHa);
        return;
      default:
        return;
    }
  }

  private async admin(req: AdminRequest): Promise<AdminResult> {
    try {
      if (req.op === 'snapshots') return { ok: true, snapshots: await this.snapshots() };
      if (!this.onAdmin) return { ok: false, error: 'not available' };
      return await this.onAdmin(req);
    } catch (e) {
      return { ok: false, error: (e as Error).message };
    }
  }

  /** Every worker's clients, servers and pool counts, now, in worker order. */
  snapshots(): Promise<WorkerSnapshot[]> {
    return Promise.all(this.apis.map((api) => api.snapshot()));
  }

  send(i: number, m: ToWorker): void {
    this.workers[i].postMessage(m);
  }

  broadcast(m: ToWorker): void {
    for (let i = 0; i < this.workers.length; i++) this.send(i, m);
    if (m.kind === 'config') {
      this.lastConfig = { cfg: m.cfg, slots: m.slots };
      this.ha?.postMessage({ kind: 'config', cfg: m.cfg, slots: m.slots } satisfies ToHa);
    }
  }

  /** Graceful shutdown begins: the virtual router hands the VIPs over (priority-0 advert). */
  releaseVip(): void {
    this.ha?.postMessage({ kind: 'releaseVip' } satisfies ToHa);
  }

  async terminate(): Promise<void> {
    this.stopping = true;
    const ha = this.ha;
    if (ha) {
      // A graceful stop: the virtual router sends its priority-0 advert and releases the VIPs.
      const exited = new Promise<void>((resolve) => ha.once('exit', () => resolve()));
      ha.postMessage({ kind: 'stop' } satisfies ToHa);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    }
    await Promise.all([...this.workers, ...(ha ? [ha] : [])].map((w) => w.terminate()));
  }
}
