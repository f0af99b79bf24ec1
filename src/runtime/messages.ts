// Messages between the main thread and the proxy / HA threads (control plane only; hot-path
// numbers live in shared memory).

import type { Config } from '../config/types';
import type { Slots } from '../pool/slots';
import type { LogRecord, Level } from '../log';
import type { WorkerSnapshot } from '../shared/snapshot';
import type { AdminRequest, AdminResult, Control } from '../admin/requests';

export interface WorkerInit {
  index: number;
  count: number;
  sab: SharedArrayBuffer;
  logLevel: Level;
}

export type ToWorker =
  | { kind: 'config'; cfg: Config; slots: Slots }
  | { kind: 'fd'; fd: number }
  | { kind: 'cancel'; pid: number; secret: number }
  /** fast = disconnect every client now; otherwise only refuse new logins. */
  | { kind: 'shutdown'; fast: boolean }
  | { kind: 'snapshot'; reqId: number }
  | { kind: 'adminResult'; reqId: number; result: AdminResult }
  | { kind: 'control'; control: Control };

export type FromWorker =
  | { kind: 'log'; record: LogRecord }
  | { kind: 'ready' }
  | { kind: 'cancel'; worker: number; pid: number; secret: number }
  | { kind: 'stopped' }
  | { kind: 'snapshot'; reqId: number; snap: WorkerSnapshot }
  | { kind: 'admin'; reqId: number; worker: number; req: AdminRequest };
