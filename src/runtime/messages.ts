// Messages between the main thread and the proxy / HA threads (control plane only; hot-path
// numbers live in shared memory). One-way messages (fds, logs, config, cancels) are posted as
// they are; the two request/answer exchanges are comlink calls on the same port (MainApi,
// WorkerApi), which ignores the one-way messages.

import type { Config, ListenerRole } from '../config/types';
import type { Slots } from '../pool/slots';
import type { LogRecord, Level } from '../log';
import type { WorkerSnapshot } from '../shared/snapshot';
import type { AdminRequest, AdminResult, Control } from '../admin/requests';
import type { ScramKeysWire } from '../pool/pass-through';

export interface WorkerInit {
  index: number;
  count: number;
  sab: SharedArrayBuffer;
  logLevel: Level;
}

export type ToWorker =
  | { kind: 'config'; cfg: Config; slots: Slots }
  /** A client's socket; `role`: it came through a role port ([[general.listeners]]). */
  | { kind: 'fd'; fd: number; unix?: boolean; role?: ListenerRole }
  | { kind: 'cancel'; pid: number; secret: number }
  /** fast = disconnect every client now; otherwise only refuse new logins. */
  | { kind: 'shutdown'; fast: boolean }
  | { kind: 'control'; control: Control }
  /** SCRAM pass-through keys a client proved on some worker (every thread gets them). */
  | { kind: 'scramKeys'; verifier: string; keys: ScramKeysWire };

export type FromWorker =
  | { kind: 'log'; record: LogRecord }
  | { kind: 'ready' }
  | { kind: 'cancel'; worker: number; pid: number; secret: number }
  | { kind: 'stopped' }
  | { kind: 'scramKeys'; verifier: string; keys: ScramKeysWire };

/** What the main thread answers a proxy worker (its admin console's requests). */
export interface MainApi {
  admin(req: AdminRequest): Promise<AdminResult>;
}

/** What a proxy worker answers the main thread. */
export interface WorkerApi {
  /** This worker's clients, servers and pool counts, now. */
  snapshot(): WorkerSnapshot;
}
