// What the admin console asks of the main thread, and the controls main sends every worker.

import type { WorkerSnapshot } from '../shared/snapshot';

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
  | { op: 'vrrp' }
  /** A user found by auth_query: added to the pool (auth_user's settings) in every thread's config. */
  | { op: 'addUser'; pool: string; user: string; secret: string };

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

/** Sends an admin request to the main thread and waits for its answer. */
export type AskMain = (req: AdminRequest) => Promise<AdminResult>;
