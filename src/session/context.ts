// What a client session needs from the worker it lives in.

import type tls from 'node:tls';
import type { Registry } from '../pool/registry';
import type { SharedState } from '../shared/state';
import type { ClientSession } from './client';
import type { Classifier } from '../routing/classify';
import type { AdminRequest, AdminResult } from '../runtime/messages';
import type { PoolLatency } from '../metrics/histogram';

export interface WorkerContext {
  readonly index: number;
  readonly shared: SharedState;
  registry: Registry;
  /** Read/write decisions by statement text, shared by this worker's sessions. */
  readonly classifier: Classifier;
  /** Set when tls_certificate / tls_private_key are configured. */
  tls: tls.SecureContext | null;
  /** Live sessions by the BackendKeyData pid openproxy gave them. */
  readonly clients: Map<number, ClientSession>;
  /** 0 running, 1 graceful shutdown (no new logins), 2 fast shutdown. */
  shutdown: number;
  /** Admin console: ask the main thread (snapshots of every worker, reload, SET, shutdown, controls). */
  admin(req: AdminRequest): Promise<AdminResult>;
  /** PAUSE'd databases ("db") and pool users ("db\0user"): their clients get no server until RESUME. */
  readonly paused: Set<string>;
  /** Clients waiting for a RESUME, woken by it. */
  readonly pauseWaiters: Set<{ resume(): void }>;
  /** Latency histograms by stats slot (pool, user), summed across workers by the exporter. */
  readonly latency: Map<number, PoolLatency>;
  /** DISABLE'd databases: new logins are refused. */
  readonly disabled: Set<string>;
  /** A CancelRequest for a session owned by another worker: route it via main. */
  forwardCancel(worker: number, pid: number, secret: number): void;
}

/** BackendKeyData pid openproxy hands a client: owning worker in the high bits, so any worker can route a cancel. */
export const WORKER_SHIFT = 22;
export const encodePid = (worker: number, seq: number) => ((worker << WORKER_SHIFT) | (seq & ((1 << WORKER_SHIFT) - 1))) >>> 0;
export const workerOfPid = (pid: number) => pid >>> WORKER_SHIFT;
