// The HA thread: jobs that watch the servers rather than carry client traffic: the replica lag
// monitor, role discovery of `auto` servers (SQL probes, Patroni) and the VRRP virtual router.

import type { MessagePort } from 'node:worker_threads';
import { SharedState } from '../shared/state';
import { LagMonitor } from '../ha/lag-monitor';
import { RoleMonitor } from '../ha/roles';
import { ServerStates } from '../ha/server-states';
import { setThreadLogging } from '../log';
import type { Level } from '../log';
import type { Config } from '../config/types';
import type { Slots } from '../pool/slots';
import { VirtualRouter, type VrrpStatus } from '../ha/vrrp';
import { primaryReachable } from '../ha/primary-reachable';
import { type ScramKeysWire, keysFromWire, passThroughKeys } from '../pool/pass-through';

export interface HaInit {
  sab: SharedArrayBuffer;
  logLevel: Level;
}

export type ToHa =
  | { kind: 'config'; cfg: Config; slots: Slots }
  | { kind: 'releaseVip' }
  | { kind: 'stop' }
  | { kind: 'scramKeys'; verifier: string; keys: ScramKeysWire };
export type FromHa = { kind: 'vrrp'; status: VrrpStatus };

export function runHaWorker(port: MessagePort, init: HaInit): void {
  setThreadLogging(init.logLevel, 'ha');
  const shared = new SharedState(init.sab);
  const states = new ServerStates(shared);
  const lag = new LagMonitor(shared, (slots, lagging) => states.lag(slots, lagging));
  const roles = new RoleMonitor(shared);
  let router: VirtualRouter | null = null;
  let routerCfg = '';
  let watch: NodeJS.Timeout | null = null;
  let released = false;
  const configure = (cfg: Config, slots: Slots) => {
    states.update(cfg, slots);
    lag.update(cfg, slots);
    roles.update(cfg, slots);
    const vr = cfg.virtual_router;
    const key = vr ? JSON.stringify(vr) : '';
    if (router && key !== routerCfg) {
      if (vr) {
        // Priority, scripts and nopreempt apply now; the router's identity needs a restart (main warns).
        router.reconfigure(vr);
        routerCfg = key;
      } else {
        router.stop();
        router = null;
        routerCfg = '';
      }
    }
    if (!router && vr && !released) {
      router = new VirtualRouter(vr, (status) => port.postMessage({ kind: 'vrrp', status } satisfies FromHa));
      routerCfg = key;
      router.start();
    }
    if (watch) clearInterval(watch);
    watch = null;
    if (router) {
      let busy = false;
      watch = setInterval(() => {
        if (busy) return;
        busy = true;
        void primaryReachable(cfg, slots, shared).then((ok) => {
          busy = false;
          router?.setPrimaryReachable(ok);
        });
      }, cfg.general.renew_interval);
    }
  };
  port.on('message', (m: ToHa) => {
    if (m.kind === 'config') configure(m.cfg, m.slots);
    else if (m.kind === 'scramKeys') passThroughKeys.set(m.verifier, keysFromWire(m.keys));
    else if (m.kind === 'releaseVip') {
      // Shutting down: the peers take the VIPs over now, while connected clients finish here.
      released = true;
      if (watch) clearInterval(watch);
      router?.stop();
      router = null;
    } else if (m.kind === 'stop') {
      if (watch) clearInterval(watch);
      router?.stop();
      lag.stop();
      roles.stop();
      states.stop();
      setTimeout(() => process.exit(0), 50); // the log records posted above go out first
    }
  });
  port.postMessage({ kind: 'ready' });
}
