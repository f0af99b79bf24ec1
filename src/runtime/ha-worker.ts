// The HA thread: jobs that watch the servers rather than carry client traffic: the replica lag
// monitor and role discovery of `auto` servers (SQL probes). Patroni, VRRP and DNS belong here too.

import type { MessagePort } from 'node:worker_threads';
import { SharedState } from '../shared/state';
import { LagMonitor } from '../ha/lag-monitor';
import { RoleMonitor } from '../ha/roles';
import { setThreadLogging } from '../log';
import type { Level } from '../log';
import type { Config } from '../config/types';
import type { Slots } from '../pool/slots';

export interface HaInit {
  sab: SharedArrayBuffer;
  logLevel: Level;
}

export type ToHa = { kind: 'config'; cfg: Config; slots: Slots } | { kind: 'stop' };

export function runHaWorker(port: MessagePort, init: HaInit): void {
  setThreadLogging(init.logLevel, 'ha');
  const shared = new SharedState(init.sab);
  const lag = new LagMonitor(shared);
  const roles = new RoleMonitor(shared);
  port.on('message', (m: ToHa) => {
    if (m.kind === 'config') {
      lag.update(m.cfg, m.slots);
      roles.update(m.cfg, m.slots);
    } else if (m.kind === 'stop') {
      lag.stop();
      roles.stop();
      process.exit(0);
    }
  });
  port.postMessage({ kind: 'ready' });
}
