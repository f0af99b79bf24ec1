// One client connection: socket events, dispatch by phase, and the wiring between the parts of
// its work (session.ts lists them). A query flows:
//   socket → onData → frames → beginTransaction (assign.ts: route, take a server)
//     → forwardToServer (forward.ts) → server
//   server → onServerData (reply.ts) → socket; onReady (transaction.ts) → endTransaction
//     → the server goes back to its pool.
// Every disconnect goes through Session.disconnect(reason).

import type net from 'node:net';
import type { ServerConnError, ServerOwner } from '../pool/server-link';
import type { ServerConn } from '../pool/server-conn';
import type { PoolWaiter } from '../pool/server-pool';
import { SQLSTATE } from '../protocol/sqlstate';
import { BAN } from '../routing/router';
import { STAT } from '../shared/layout';
import { log } from '../log';
import { beginTransaction, onGranted, onGrantFailed } from './assign';
import type { WorkerContext } from './context';
import { forwardToServer, sessionBoundary } from './forward';
import { onServerClosed, onServerData } from './reply';
import { Phase, Session } from './session';
import { onAuthMessages, onStartupBytes } from './startup';
import { endTransaction, onReady, onServerError, replaceError } from './transaction';

const SESSION = Symbol('clientSession');
type SessionSocket = net.Socket & { [SESSION]?: ClientSession };

/** `onread` callback of plain client sockets (`this` is the socket). */
export function onClientRead(this: net.Socket, nread: number, buf: Buffer): void {
  (this as SessionSocket)[SESSION]?.onData(buf.subarray(0, nread));
}

// Socket events go to shared functions that find the session on the socket: no closures per client.
function onSocketData(this: SessionSocket, chunk: Buffer): void {
  this[SESSION]?.onData(chunk);
}
function onSocketError(this: SessionSocket, e: Error): void {
  this[SESSION]?.disconnect(`client socket error: ${e.message}`);
}
function onSocketClose(this: SessionSocket): void {
  this[SESSION]?.disconnect('client closed the connection');
}
function onSocketDrain(this: SessionSocket): void {
  this[SESSION]?.server?.resumeReading();
}

export class ClientSession extends Session implements ServerOwner, PoolWaiter {
  /** The session is its own place in a server pool's queue (PoolWaiter): nothing allocated per wait. */
  readonly waiter: PoolWaiter = this;
  deadline = 0;
  since = 0;
  starving = false;

  constructor(sock: net.Socket, ctx: WorkerContext, unix = false) {
    super(sock, ctx, unix);
    if (!unix) sock.setNoDelay(true);
    this.listen(sock);
  }

  readonly owner: ServerOwner = this;

  listen(sock: net.Socket): void {
    (sock as SessionSocket)[SESSION] = this;
    sock.on('data', onSocketData); // TLS sockets; plain ones use onread
    sock.on('error', onSocketError);
    sock.on('close', onSocketClose);
    sock.on('drain', onSocketDrain);
  }

  // ---- PoolWaiter ----

  grant(conn: ServerConn): void {
    onGranted(this, conn);
  }

  fail(err: ServerConnError): void {
    onGrantFailed(this, err);
  }

  /** Client bytes (possibly a view of the thread's reused read buffer: nothing may keep it). */
  onData(chunk: Buffer): void {
    this.lastActivity = Date.now();
    if (this.phase === Phase.Startup) onStartupBytes(this, Buffer.from(chunk));
    else if (this.phase !== Phase.Closed) {
      if (this.stat >= 0) this.ctx.shared.stats[this.stat + STAT.received] += chunk.length;
      this.frames.push(chunk);
      if (this.phase === Phase.Auth) onAuthMessages(this);
      else if (this.phase === Phase.Active) this.onClientBytes();
    }
    this.frames.detach();
  }

  onClientBytes(): void {
    if (this.console) return this.console.onMessages();
    if (this.server) {
      // A routed session on a replica with nothing outstanding: the next statement may need the primary.
      if (this.routedSession && this.implicitReads && this.pendingReady === 0 && this.sinceSync === 0)
        sessionBoundary(this);
      else forwardToServer(this);
    } else if (this.movable) beginTransaction(this);
  }

  // ---- the parts, wired (see session.ts) ----

  forwardToServer(): void {
    forwardToServer(this);
  }

  beginTransaction(): void {
    beginTransaction(this);
  }

  endTransaction(): void {
    endTransaction(this);
  }

  sessionBoundary(): void {
    sessionBoundary(this);
  }

  // ---- ServerOwner: what the held server connection reports ----

  onServerData(chunk: Buffer): void {
    onServerData(this, chunk);
  }

  onReady(status: number): boolean {
    return onReady(this, status);
  }

  onServerError(body: Buffer): void {
    onServerError(this, body);
  }

  onServerClosed(reason: string): void {
    onServerClosed(this, reason);
  }

  onServerDrain(): void {
    this.sock.resume();
  }

  dropResponse(type: number): boolean {
    return this.ps?.isOurs(type) === true;
  }

  replaceError(body: Buffer): Buffer | null {
    return replaceError(this, body);
  }

  /** Janitor: statement_timeout (cancel the statement) and query_timeout (drop the server connection). */
  checkStatementTimeout(now: number): void {
    const hard = this.ctx.registry.general.query_timeout;
    if (hard > 0 && this.server && this.queryStart >= 0 && now - this.queryStart >= hard) {
      log.warn('query_timeout reached; closing the server connection', {
        client: this.remote,
        server_id: this.server.id,
        query_timeout_ms: hard,
      });
      const message = `query_timeout (${hard} ms): the server did not finish its answer; connection closed`;
      this.cancelQuery(); // a live backend stops working on it; a dead one is closed anyway
      // A replica that stopped answering is banned like one that fails its health check.
      if (this.entry) this.ban(this.entry, BAN.queryTimeout);
      return this.fatal(SQLSTATE.CONNECTION_FAILURE, message, 'query_timeout');
    }
    const limit = this.userPool?.user.statement_timeout ?? 0;
    if (limit <= 0 || !this.server || this.queryStart < 0 || this.timeoutCancelled) return;
    if (now - this.queryStart < limit) return;
    this.timeoutCancelled = true;
    this.ctx.shared.stats[this.stat + STAT.statement_timeouts] += 1;
    const fields = {
      client: this.remote,
      user: this.userPool!.user.username,
      statement_timeout_ms: limit,
      server_id: this.server.id,
    };
    log.warn('statement_timeout reached; cancelling the statement on the server', fields);
    this.cancelQuery();
  }
}
