// The end of each statement and transaction, as the held server reports it: ReadyForQuery
// accounting and statistics, errors (learning writes from a replica's 25006, the cache-off refusal
// of named statements), and at a transaction's end GUC capture, unpinning, read_your_writes and
// giving the connection back to its pool.

import { errorField, errorResponse } from '../protocol/backend';
import { TX_IDLE } from '../protocol/messages';
import { SQLSTATE } from '../protocol/sqlstate';
import type { ServerLink } from '../pool/server-link';
import { SERVER_STAT } from '../pool/server-pool';
import { roleOf } from '../pool/registry';
import { STAT } from '../shared/layout';
import { log } from '../log';
import { gucReadStatement, gucsMatch } from './guc-sync';
import { matchGucs } from './assign';
import { Phase, type Session } from './session';
import type { PinReason } from './state-effects';

/** The relation a refused named Parse names (forward.ts): its error is replaced by a clear one. */
export const NAMED_STATEMENT_MARKER = 'openproxy_named_statement_refused_3f9c2a';

/** ReadyForQuery from the held server; true ends the hold at this message. */
export function onReady(s: Session, status: number): boolean {
  const now = performance.now();
  const st = s.ctx.shared.stats;
  s.queries++;
  s.ps?.onReady();
  if (s.pendingReady > 0) s.pendingReady--;
  if (s.pendingReady === 0) s.namedRefused.length = 0; // settled: answered or skipped
  st[s.stat + STAT.query_count] += 1;
  const sv = s.serverPool?.stats;
  if (sv) sv[SERVER_STAT.queries] += 1;
  if (s.queryStart >= 0) {
    const us = Math.round((now - s.queryStart) * 1000);
    st[s.stat + STAT.query_time_us] += us;
    if (sv) sv[SERVER_STAT.query_us] += us;
    s.latency!.query.observe((now - s.queryStart) / 1000);
  }
  s.queryStart = -1;
  s.lastActivity = Date.now(); // idle (client_idle_timeout, idle in transaction) counts from the answer
  if (status === TX_IDLE) {
    s.transactions++;
    st[s.stat + STAT.xact_count] += 1;
    if (sv) sv[SERVER_STAT.xacts] += 1;
    if (s.xactStart >= 0) {
      const us = Math.round((now - s.xactStart) * 1000);
      st[s.stat + STAT.xact_time_us] += us;
      if (sv) sv[SERVER_STAT.xact_us] += us;
      s.latency!.xact.observe((now - s.xactStart) / 1000);
    }
    s.xactStart = -1;
    // Transaction mode: the server owes nothing more once every Sync/Query was answered.
    if (s.txMode && s.pendingReady === 0 && s.sinceSync === 0) s.releasePending = true;
  }
  if (s.routedSession && s.implicitReads && s.pendingReady === 0 && s.sinceSync === 0 && s.frames.pending > 0) {
    // Statements held back on a replica-bound session (see forward.ts): decide after this answer.
    s.releasePending = true;
    return status === TX_IDLE && s.pins.size === 0;
  }
  return s.releasePending && staysUnpinned(s);
}

/** No pin outlives the end of this transaction (LISTEN etc. keep server bytes flowing to the client). */
function staysUnpinned(s: Session): boolean {
  if (s.pins.size === 0) return true;
  for (const r of s.pins) if (!s.unpinLater.has(r)) return false;
  return true;
}

/** An ErrorResponse from the held server. */
export function onServerError(s: Session, body: Buffer): void {
  s.errors++;
  // A "read" a replica refused as a write (e.g. SELECT of a function that writes): remember it,
  // so this text goes to the primary from now on.
  const sql = s.route.sql;
  if (sql && s.entry && roleOf(s.entry) === 'replica' && errorField(body, 0x43) === '25006') {
    s.ctx.classifier.learnWrite(sql);
    log.info('statement sent to a replica needs the primary; routing it there from now on', {
      client: s.remote,
      statement: sql.slice(0, 200),
    });
  }
  // The server skips to the next Sync: refused Parses after this error produce no error of their own.
  if (s.namedRefused.length && !errorField(body, 0x4d).includes(NAMED_STATEMENT_MARKER)) s.namedRefused.length = 0;
  s.ctx.shared.stats[s.stat + STAT.errors] += 1;
  if (s.ps) {
    s.ps.onError();
    // The server's plan for a cached statement went stale (the table changed): drop them all
    // before this connection is used again, so the next Parse prepares afresh.
    if (
      s.server &&
      errorField(body, 0x43) === '0A000' &&
      /cached plan must not change result type/.test(errorField(body, 0x4d))
    ) {
      s.server.stalePlans = true;
    }
  }
}

/** The error of a refused named statement (cache off), in place of the probe's; null = keep the server's. */
export function replaceError(s: Session, body: Buffer): Buffer | null {
  if (s.namedRefused.length === 0 || !errorField(body, 0x4d).includes(NAMED_STATEMENT_MARKER)) return null;
  const name = s.namedRefused.shift()!;
  const where = s.txMode ? 'transaction pooling' : 'a routed session (read/write splitting moves it between servers)';
  return errorResponse({
    severity: 'ERROR',
    code: SQLSTATE.INVALID_SQL_STATEMENT_NAME,
    message:
      `prepared statement "${name}" cannot be used: named prepared ` +
      `statements need prepared_statements_cache_size > 0 in ${where}`,
    hint:
      `Set prepared_statements_cache_size for pool "${s.userPool?.pool.name}" or in [general] (e.g. 500), ` +
      `or use unnamed ` +
      `statements${s.txMode ? ', or pool_mode = "session"' : ''}.`,
  });
}

/**
 * At ReadyForQuery 'I' with nothing outstanding: read back GUCs the transaction may have changed,
 * apply unpins, then return the connection unless the client is pinned.
 */
export function endTransaction(s: Session): void {
  const conn = s.server;
  if (!conn || s.phase === Phase.Closed) return;
  if (conn.closed || conn.doomed) {
    // The server ended the session after its last answer (shutdown, idle timeout; its FATAL may
    // share a read with the ReadyForQuery): an unpinned client has everything it asked for and
    // goes on; a pinned one has lost the state it was pinned to.
    const why = conn.closed ? conn.closeReason : conn.doomed!;
    s.server = null;
    conn.letGo();
    if (!conn.closed) conn.close(why);
    if (s.pins.size > 0)
      return s.fatal(
        SQLSTATE.CONNECTION_FAILURE,
        `server connection lost with this session's state: ${why}`,
        'pinned server connection lost',
      );
    s.unpinLater.clear();
    s.sock.resume();
    if (s.frames.pending) s.beginTransaction();
    return;
  }
  if (s.touched.size > 0 || s.resets.size > 0 || s.resetAll) return captureGucs(s, conn);
  for (const r of s.unpinLater) s.pins.delete(r);
  s.unpinLater.clear();
  if (s.recheckLater.size > 0) return recheckPins(s, conn);
  // read_your_writes: the commit is done; a primary position measured after now covers it.
  if (s.ryw.pending) s.ryw.committed(s.entry?.pool.slot ?? -1);
  if (conn.stalePlans && conn.clean) {
    s.aside(conn.run('DEALLOCATE ALL', s.ctx.registry.general.healthcheck_timeout + 5000), (r) => {
      conn.stalePlans = false;
      conn.prepared.clear();
      if (!r.ok) conn.close('DEALLOCATE ALL failed');
      if (s.phase !== Phase.Closed) s.endTransaction();
    });
    return;
  }
  if (s.pins.size > 0 || !conn.clean) {
    // Pinned: the connection stays, but a RESET may have left it behind the client's settings.
    if (conn.clean && !gucsMatch(conn.gucs, s.gucs, conn.reported)) {
      s.aside(matchGucs(s, conn, false), (ok) => {
        if (ok && s.server === conn && s.frames.pending) s.forwardToServer();
      });
      return;
    }
    if (s.frames.pending) s.forwardToServer();
    return;
  }
  s.server = null;
  s.replay.tries = 0;
  s.sock.resume();
  if (s.ctx.registry.general.server_reset_query_always) s.releaseServer(conn, s.serverPool!);
  else {
    conn.letGo();
    s.serverPool!.release(conn);
  }
  if (s.frames.pending) s.beginTransaction();
}

/**
 * Dedicated mode ends once the session objects are gone (as Proxima does): after a DROP, CLOSE or
 * pg_advisory_unlock the server says whether any temp table, holdable cursor or session advisory
 * lock is left; a pin whose last object went is lifted. Then the transaction ends as usual.
 */
function recheckPins(s: Session, conn: ServerLink): void {
  const reasons = [...s.recheckLater].filter((r) => s.pins.has(r) && REMAINING[r] !== undefined);
  s.recheckLater.clear();
  if (reasons.length === 0 || !conn.clean) return endTransaction(s);
  const sql = `SELECT ${reasons.map((r) => REMAINING[r]).join(', ')}`;
  s.aside(conn.run(sql, s.ctx.registry.general.healthcheck_timeout + 5000), (r) => {
    if (s.phase === Phase.Closed) return;
    if (r.ok && r.rows.length === 1) {
      reasons.forEach((reason, i) => {
        if (r.rows[0][i] !== 'f') return;
        s.pins.delete(reason);
        log.info('client leaves dedicated mode: its session objects are gone', { client: s.remote, reason });
      });
    }
    endTransaction(s);
  });
}

/** Whether objects of a pin's kind remain in the server session (a boolean SQL expression). */
const REMAINING: Partial<Record<PinReason, string>> = {
  temp_table: 'EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = pg_my_temp_schema())',
  with_hold_cursor: 'EXISTS (SELECT 1 FROM pg_cursors WHERE is_holdable)',
  advisory_lock: "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())",
};

/**
 * After RESET / RESET ALL the connection is at its own defaults and the client wants its startup
 * values back (PostgreSQL's session defaults): record that, and let the next match apply them.
 * GUCs SET in the transaction are read back from the server, which also covers rollbacks.
 */
export function captureGucs(s: Session, conn: ServerLink, next: () => void = () => s.endTransaction()): void {
  if (s.resetAll) {
    s.gucs = s.startupGucs;
    conn.gucs.clear();
    s.resetAll = false;
  }
  for (const n of s.resets) {
    if (s.touched.has(n)) continue;
    conn.gucs.delete(n);
    const startup = s.startupGucs.get(n);
    if (startup === undefined) s.ownGucs().delete(n);
    else s.ownGucs().set(n, startup);
  }
  s.resets.clear();
  const names = [...s.touched];
  s.touched.clear();
  if (names.length === 0) return next();
  s.aside(conn.run(gucReadStatement(names), s.ctx.registry.general.healthcheck_timeout + 5000), (r) => {
    if (s.phase === Phase.Closed) return;
    if (!r.ok || r.rows.length !== 1)
      return s.fatal(SQLSTATE.INTERNAL_ERROR, 'openproxy could not read back session settings', 'GUC capture failed');
    const gucs = s.ownGucs();
    names.forEach((n, i) => {
      const v = r.rows[0][i];
      gucs.set(n, v);
      conn.gucs.set(n, v);
    });
    next();
  });
}
