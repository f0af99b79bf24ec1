// The state of one client connection, shared by the files that each do one part of its work (as
// PgBouncer's PgSocket is shared by client.c, server.c and janitor.c):
//   startup.ts      startup packet, TLS, cancel, auth, the login server
//   assign.ts       a server for each transaction: pause, health check, bans, primary wait
//   forward.ts      client → server: framing, state notes, prepared-statement rewriting
//   transaction.ts  server → session: ReadyForQuery accounting, pins, GUC capture, giving back
//   replay.ts       the transparent read retry
//   client.ts       the ClientSession class: socket events and dispatch between these
// This file holds the fields, the ways out (fatal, disconnect) and the transitions the parts
// call on each other, declared abstract here and wired in client.ts, so no part imports another.

import type net from 'node:net';
import { randomInt } from 'node:crypto';
import { errorResponse, READY_IDLE } from '../protocol/backend';
import { EMPTY, FrameReader } from '../protocol/frame-reader';
import { FE, FRONTEND_TYPES } from '../protocol/messages';
import type { ServerLink, ServerOwner } from '../pool/server-link';
import { MAX_MESSAGE_LENGTH } from '../pool/server-conn';
import { type PoolWaiter, SERVER_STAT, type ServerPool } from '../pool/server-pool';
import type { ServerEntry, UserPool } from '../pool/registry';
import { BAN, banServer, sourceHash, type Target } from '../routing/router';
import { ClientRoute } from '../routing/client-route';
import { ReadYourWrites } from '../routing/ryw';
import type { PoolLatency } from '../shared/histogram';
import { STAT } from '../shared/layout';
import type { ClientAuth } from './auth';
import type { PinReason } from './state-effects';
import type { PreparedStatements } from './prepared';
import { ReadReplay } from './replay';
import { encodePid, type ConsoleClient, type ConsoleSession, type SessionInfo, type WorkerContext } from './context';
import { log } from '../log';

/** The shared empty set a session's sets start as; adding to it is a bug (use writable()). */
class SharedEmptySet extends Set<never> {
  override add(): this {
    throw new Error('add() on the shared empty set: take writable(set) first');
  }
}
const NONE: Set<never> = new SharedEmptySet();

/** A reset query that drops the server's prepared statements. */
const DEALLOCATES = /\b(DISCARD\s+ALL|DEALLOCATE\s+(PREPARE\s+)?ALL)\b/i;

/** `set` itself, or a new set of the session's own when it is still the shared empty one. */
export function writable<T>(set: Set<T>): Set<T> {
  return set === NONE ? new Set<T>() : set;
}

export const enum Phase {
  Startup,
  Auth,
  Waiting,
  Active,
  Closed,
}

let seq = 0;

export abstract class Session implements SessionInfo, ConsoleClient {
  sock: net.Socket;
  phase = Phase.Startup;
  readonly frames = new FrameReader(MAX_MESSAGE_LENGTH, FRONTEND_TYPES);
  /** The BackendKeyData openproxy gave this client. */
  readonly pid: number;
  readonly secret = randomInt(0, 0x7fffffff);
  readonly connectedAt = Date.now();
  /** Peer address, kept from the start (a destroyed socket no longer knows it). */
  readonly remote: string;
  /** The client address hashed, for load_balancing_mode = "source". */
  readonly source: number;
  /** Startup packet parameters. */
  params = new Map<string, string>();
  /** Set by the worker: called once after disconnect. */
  onGone?: () => void;

  // ---- login ----
  /** Startup-phase bytes (untyped packets) not yet decoded. */
  startupBuf: Buffer = EMPTY;
  auth: ClientAuth | null = null;
  /** Set for a session on the admin console. */
  console: ConsoleSession | null = null;

  // ---- pool and server ----
  userPool: UserPool | null = null;
  /** Registry generation userPool / home come from (a reload bumps it). */
  generation = 0;
  server: ServerLink | null = null;
  serverPool: ServerPool | null = null;
  /** The server entry of the connection held now, and the one the client logged in through. */
  entry: ServerEntry | null = null;
  home: ServerEntry | null = null;
  /** [home], kept so an unrouted transaction allocates nothing. */
  homeOrder: ServerEntry[] = [];
  /** Transaction pooling: the server is held per transaction, not per session. */
  txMode = false;
  /** Session mode with routing: the server is chosen by the first query and then kept. */
  routedSession = false;

  get localPort(): number {
    return this.unix ? 0 : (this.sock.localPort ?? 0);
  }

  get listenerRole(): string {
    return this.route.port ?? '';
  }

  // ---- waiting for a server (assign.ts) ----
  acquiring = false;
  /** This client's place in a server pool's queue (one object for its life). */
  abstract readonly waiter: PoolWaiter;
  /** What the queued wait is for: the server entry, the route target, the candidates, the start (performance.now()). */
  waitEntry: ServerEntry | null = null;
  waitTarget: Target = 'primary';
  waitOrder: ServerEntry[] = [];
  waitStart = 0;
  /** ms epoch when this client started waiting for a server connection; 0 = not waiting. */
  waitSince = 0;
  /** Registered with the worker while a PAUSE holds this client's next transaction. */
  pauseWaiter: { resume(): void } | null = null;

  // ---- protocol accounting (forward.ts, transaction.ts) ----
  /** ReadyForQuery messages the server still owes (one per Query, Sync, FunctionCall forwarded). */
  pendingReady = 0;
  /** Extended-protocol messages forwarded since the last Sync. */
  sinceSync = 0;
  /** The transaction ended (ReadyForQuery 'I', nothing owed): give the server back after this chunk. */
  releasePending = false;
  /** openproxy's own statement runs on the held server: client messages wait. */
  syncing = false;
  /** The next forwarded statement goes to the held server even if it would need the primary (inside a transaction). */
  waitBypass = false;
  /**
   * The held connection is a replica chosen for implicit (autocommit) reads: a write waits for the next transaction.
   */
  implicitReads = false;

  // ---- session state (transaction.ts) ----
  /**
   * GUCs the client asked for at startup, and what it wants now (name → current_setting form).
   * `gucs` is the startup map itself until the client changes a setting (see ownGucs()).
   */
  readonly startupGucs = new Map<string, string>();
  gucs: Map<string, string> = this.startupGucs;
  // The sets below start as the one shared empty set and get their own at the first add
  // (writable()): most clients never use them, and an empty Set costs ~150 bytes.
  /** Why this client keeps its server connection between transactions (dedicated mode). */
  pins = NONE as Set<PinReason>;
  unpinLater = NONE as Set<PinReason>;
  /** Pins a DROP, CLOSE or pg_advisory_unlock may have ended: the server is asked at the transaction end. */
  recheckLater = NONE as Set<PinReason>;
  /** A user auth_query found: added to its pool once the client has authenticated. */
  lookedUp: { pool: string; secret: string } | null = null;
  /** GUCs the current transaction may have changed; RESET / RESET ALL / DISCARD ALL seen. */
  touched = NONE as Set<string>;
  resets = NONE as Set<string>;
  resetAll = false;
  /** Transaction mode with prepared_statements_cache_size > 0: named statements are rewritten. */
  ps: PreparedStatements | null = null;
  /** Cache off: names of refused named statements whose error is still to come, in order. */
  readonly namedRefused: string[] = [];

  // ---- routing ----
  readonly route = new ClientRoute();
  readonly ryw = new ReadYourWrites();
  readonly replay = new ReadReplay();

  // ---- statistics ----
  /** Stats row base index in the shared stats table (-1 before login). */
  stat = -1;
  /** This client's (pool, user) latency histograms on this worker. */
  latency: PoolLatency | null = null;
  /** performance.now() when the current query / transaction started; -1 = none running. */
  queryStart = -1;
  xactStart = -1;
  timeoutCancelled = false;
  transactions = 0;
  queries = 0;
  errors = 0;
  /** Last time the client sent anything (ms epoch); for idle-in-transaction checks. */
  lastActivity = Date.now();

  constructor(
    sock: net.Socket,
    readonly ctx: WorkerContext,
    /** Came through the Unix-domain socket: no TLS, only `local` hba rules. */
    readonly unix = false,
  ) {
    this.sock = sock;
    this.remote = unix ? 'unix' : `${sock.remoteAddress}:${sock.remotePort}`;
    this.source = unix ? 0 : sourceHash(sock.remoteAddress ?? '');
    this.pid = encodePid(ctx.index, ++seq);
  }

  // ---- transitions between the parts (wired in client.ts) ----

  /** New client bytes in the data phase. */
  abstract onClientBytes(): void;
  /** Forward every complete client message to the held server. */
  abstract forwardToServer(): void;
  /** Take a server for the transaction at the head of the buffer. */
  abstract beginTransaction(): void;
  /** The transaction ended: capture settings, unpin, give the server back. */
  abstract endTransaction(): void;
  /** Routed session on a replica: does the next statement move it to the primary? */
  abstract sessionBoundary(): void;
  /** Registers socket events (again, after a TLS upgrade). */
  abstract listen(sock: net.Socket): void;

  /** ConsoleClient: the client is gone. */
  get closed(): boolean {
    return this.phase === Phase.Closed;
  }

  /** ConsoleClient: bytes to the client. */
  write(data: Buffer): void {
    this.sock.write(data);
  }

  get state(): string {
    if (this.phase === Phase.Waiting || this.acquiring || this.pauseWaiter) return 'waiting';
    if (this.phase !== Phase.Active) return 'login';
    return this.server ? 'active' : 'idle';
  }

  /** The client's session can move between server connections: transaction mode, or a routed session. */
  get movable(): boolean {
    return this.txMode || this.routedSession;
  }

  /** openproxy's own work on the held server (a statement, a GUC sync): client messages wait for it. */
  aside<T>(work: Promise<T>, then: (result: T) => void): void {
    this.syncing = true;
    void work.then((result) => {
      this.syncing = false;
      then(result);
    });
  }

  /** Counts an error in the client's and the pool's statistics. */
  countError(): void {
    this.errors++;
    if (this.stat >= 0) this.ctx.shared.stats[this.stat + STAT.errors] += 1;
    if (this.serverPool) this.serverPool.stats[SERVER_STAT.errors] += 1;
  }

  /** `gucs`, made the session's own (not the startup map) before it is changed. */
  ownGucs(): Map<string, string> {
    if (this.gucs === this.startupGucs) this.gucs = new Map(this.startupGucs);
    return this.gucs;
  }

  /** The session holds `conn`: its bytes come here. */
  attach(conn: ServerLink): void {
    this.server = conn;
    conn.hold(this.owner, this.ps !== null);
  }

  /** What receives the held server's bytes (the ClientSession itself). */
  abstract readonly owner: ServerOwner;

  /** Bans a failed server for ban_time (never the primary); true if it was banned. */
  ban(e: ServerEntry, reason: number = BAN.connect): boolean {
    return banServer(this.ctx.shared, this.ctx.registry.userPools(), e, reason, this.ctx.registry.general.ban_time);
  }

  /**
   * Answers the transaction at the head of the buffer with an error instead of running it: the
   * messages up to its Query or Sync are consumed and one ErrorResponse + ReadyForQuery is sent.
   */
  rejectHead(code: string, message: string, hint?: string): void {
    const f = this.frames;
    while (f.next()) if (f.type === FE.QUERY || f.type === FE.SYNC) break;
    this.sock.write(Buffer.concat([errorResponse({ severity: 'ERROR', code, message, hint }), READY_IDLE]));
    if (f.pending) queueMicrotask(() => this.onClientBytes());
  }

  /** Cancels the statement running for this client, if any (CancelRequest, statement_timeout). */
  cancelQuery(): void {
    if (this.server) void this.server.cancel();
  }

  /** Sends a FATAL ErrorResponse (only at a message boundary) and disconnects. */
  fatal(code: string, message: string, reason: string): void {
    if (this.phase === Phase.Closed) return;
    if (this.sock.writable && (this.server === null || this.server.atMessageBoundary)) {
      this.sock.write(errorResponse({ severity: 'FATAL', code, message }));
    }
    this.disconnect(`${reason}: ${message}`);
  }

  /** The one way out: frees the server connection (reset or closed), unregisters, closes the socket. */
  disconnect(reason: string): void {
    if (this.phase === Phase.Closed) return;
    const wasActive = this.phase === Phase.Active;
    this.phase = Phase.Closed;
    if (this.pauseWaiter) this.ctx.pauseWaiters.delete(this.pauseWaiter);
    this.ctx.clients.delete(this.pid);
    if (this.sock.writable) this.sock.end();
    setTimeout(() => this.sock.destroy(), 1000).unref();
    const server = this.server;
    this.server = null;
    if (server && this.serverPool) this.releaseServer(server, this.serverPool);
    if (wasActive && this.ctx.registry.general.log_client_disconnections) {
      const age_s = Math.round((Date.now() - this.connectedAt) / 1000);
      log.info('client disconnected', { client: this.remote, user: this.params.get('user'), reason, age_s });
    } else {
      log.debug('client disconnected', { client: this.remote, reason });
    }
    this.onGone?.();
  }

  /**
   * A clean server connection goes back to the pool after server_reset_query (none when it is
   * empty); anything else is closed. Session end, a routed session moving, and every transaction
   * end with server_reset_query_always.
   */
  releaseServer(conn: ServerLink, pool: ServerPool): void {
    conn.letGo();
    if (!conn.clean) {
      conn.close('client left mid-statement or inside a transaction');
      return;
    }
    const sql = this.ctx.registry.general.server_reset_query;
    if (!sql) return pool.release(conn);
    conn.run(sql, this.ctx.registry.general.healthcheck_timeout + 1000).then((r) => {
      // Settings are re-sent in full to the next client; statements are forgotten only if gone.
      conn.gucs.clear();
      if (DEALLOCATES.test(sql)) conn.prepared.clear();
      if (r.ok && conn.clean) pool.release(conn);
      else conn.close(`reset (server_reset_query) failed`);
    });
  }
}
