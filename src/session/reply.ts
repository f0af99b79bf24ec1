// Server → client: the held server's bytes are forwarded unchanged (a view of the thread's read
// buffer, written without a copy), except inside a read's retry window (replay.ts), where header
// replies are held and a refusal or shutdown turns into a retry on another server. A server lost
// under a client ends the client with 08006, at a message boundary when it can be sent.

import { writeView } from '../net/read-buffer';
import { SQLSTATE } from '../protocol/sqlstate';
import { roleOf } from '../pool/registry';
import { BAN } from '../routing/router';
import { STAT } from '../shared/layout';
import { log } from '../log';
import { Reply } from './replay';
import { Phase, type Session } from './session';

export function onServerData(s: Session, chunk: Buffer): void {
  const replay = s.replay;
  if (replay.retrying) return;
  if (replay.armed) {
    const next = replay.judge(chunk, s.entry !== null && roleOf(s.entry) !== 'primary');
    if (next === Reply.Wait) return;
    chunk = replay.reply();
    if (next === Reply.Retry) return retryRead(s, 'the replica refused the read', false);
    if (next === Reply.RetryBan) return retryRead(s, 'server is shutting down', true);
  }
  s.ctx.shared.stats[s.stat + STAT.sent] += chunk.length;
  if (!writeView(s.sock, chunk)) s.server?.pauseReading();
  if (s.releasePending) {
    s.releasePending = false;
    if (s.txMode) s.endTransaction();
    else s.sessionBoundary();
  }
}

/** The held server connection broke (not one openproxy closed itself). */
export function onServerClosed(s: Session, reason: string): void {
  if (s.replay.retrying) return;
  if (s.replay.armed) return retryRead(s, reason, true);
  const boundary = s.server?.atMessageBoundary ?? true;
  s.server = null;
  log.warn('server connection lost under a client', { client: s.remote, reason });
  if (boundary)
    s.fatal(SQLSTATE.CONNECTION_FAILURE, `server connection closed unexpectedly: ${reason}`, 'server connection lost');
  else s.disconnect(`server connection lost mid-message: ${reason}`);
}

/**
 * The server failed the read before the client saw a byte of the answer: drop that connection,
 * ban the server if it is going away, and send the same bytes through routing again (deferred:
 * this runs inside the server connection's callbacks).
 */
function retryRead(s: Session, reason: string, banIt: boolean): void {
  const conn = s.server;
  const entry = s.entry;
  const bytes = s.replay.takeForRetry();
  s.server = null;
  if (conn) {
    conn.letGo();
    if (!conn.closed) conn.close(`read retried on another server: ${reason}`);
  }
  if (banIt && entry) s.ban(entry, BAN.closed);
  log.warn('read retried on another server', {
    client: s.remote,
    server: entry ? `${entry.address.host}:${entry.address.port}` : '',
    reason,
  });
  s.pendingReady = s.replay.pendingReady;
  s.sinceSync = s.replay.sinceSync;
  s.releasePending = false;
  s.namedRefused.length = 0;
  s.ps?.resetReplies();
  queueMicrotask(() => {
    s.replay.retrying = false;
    if (s.phase === Phase.Closed) return;
    s.frames.unshift(bytes);
    s.sock.resume();
    s.beginTransaction();
  });
}
