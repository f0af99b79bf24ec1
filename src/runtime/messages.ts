// Messages between the main thread and the proxy / HA threads (control plane only; hot-path
// numbers live in shared memory).

import type { Config } from '../config/types';
import type { Slots } from '../pool/slots';
import type { LogRecord, Level } from '../log';
import type { WorkerSnapshot } from '../admin/snapshot';

/** Admin console commands that act on every worker. */
export type Control =
  | { op: 'pause' | 'resume' | 'disable' | 'enable' | 'kill' | 'reconnect'; db?: string; user?: string }
  | { op: 'kill_client'; pid: number };

/** What an admin session asks the main thread for. */
export type AdminRequest =
  | { op: 'snapshots' }
  | { op: 'reload' }
  | { op: 'set'; key: string; value: string }
  | { op: 'shutdown'; waitForClients: boolean }
  | { op: 'control'; control: Control }
  | { op: 'vrrp' };

/** SHOW VRRP: the virtual router as the HA thread last reported it. */
export interface VrrpRow {
  state: string;
  priority: number;
  local_ip: string;
  vips: string;
  since: number;
  reason: string;
}

export type AdminResult = { ok: true; snapshots?: WorkerSnapshot[]; vrrp?: VrrpRow } | { ok: false; error: string };

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
