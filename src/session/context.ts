// What a client session needs from the worker it lives in.

import type tls from 'node:tls';
import type { Registry } from '../pool/registry';
import type { SharedState } from '../shared/state';
import type { Classifier } from '../routing/classify';
import type { PoolLatency } from '../shared/histogram';
import type { FrameReader } from '../protocol/frame-reader';
import type { UserPool } from '../pool/registry';
import type { ScramKeys } from '../protocol/scram';

/** What the worker, the janitor and the admin console may see of and do to a live session. */
export interface SessionInfo {
  readonly pid: number;
  readonly secret: number;
  readonly userPool: UserPool | null;
  /** login, waiting, active (holds a server), idle */
  readonly state: string;
  readonly gucs: ReadonlyMap<string, string>;
  readonly params: ReadonlyMap<string, string>;
  readonly transactions: number;
  readonly queries: number;
  readonly errors: number;
  readonly connectedAt: number;
  readonly waitSince: number;
  /** openproxy's port the client came through (0 = Unix socket) and that port's role ('' = main port). */
  readonly localPort: number;
  readonly listenerRole: string;
  fatal(code: string, message: string, reason: string): void;
  /** Cancels the statement running for this client on its server, if any. */
  cancelQuery(): void;
}

/** A console session as the admin console's message loop sees it. */
export interface ConsoleClient {
  readonly frames: FrameReader;
  /** The client is gone: nothing more may be written. */
  readonly closed: boolean;
  write(data: Buffer): void;
  disconnect(reason: string): void;
  fatal(code: string, message: string, reason: string): void;
}

/** The admin console's message loop for one client (admin/console-session.ts). */
export interface ConsoleSession {
  /** Client messages are buffered in the client's frames: handle what is complete. */
  onMessages(): void;
}

/** The databases that reach the admin console (unless a pool has that name). */
export const ADMIN_DATABASES: ReadonlySet<string> = new Set(['openproxy', 'pgbouncer', 'pgcat']);

export interface WorkerContext {
  readonly index: number;
  readonly shared: SharedState;
  registry: Registry;
  /** Read/write decisions by statement text, shared by this worker's sessions. */
  readonly classifier: Classifier;
  /** Set when tls_certificate / tls_private_key are configured. */
  tls: tls.SecureContext | null;
  /** Live sessions by the BackendKeyData pid openproxy gave them. */
  readonly clients: Map<number, SessionInfo>;
  /** 0 running, 1 graceful shutdown (no new logins), 2 fast shutdown. */
  shutdown: number;
  /**
   * Starts the admin console for a client that logged in to it (wired by the runtime: the console is a layer above).
   */
  openConsole(client: ConsoleClient, readOnly: boolean): ConsoleSession;
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
  /** Adds a user auth_query found to its pool in every thread (resolves once this worker has the config). */
  addUser(pool: string, user: string, secret: string): Promise<void>;
  /** SCRAM pass-through keys a client proved here, for every other thread. */
  shareScramKeys(verifier: string, keys: ScramKeys): void;
}

/** BackendKeyData pid openproxy hands a client: owning worker in the high bits, so any worker can route a cancel. */
export const WORKER_SHIFT = 22;
export const encodePid = (worker: number, seq: number) =>
  ((worker << WORKER_SHIFT) | (seq & ((1 << WORKER_SHIFT) - 1))) >>> 0;
export const workerOfPid = (pid: number) => pid >>> WORKER_SHIFT;
