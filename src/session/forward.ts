// Client → server: every complete client message is forwarded to the held server, noting what
// each one obliges (Query, Sync and FunctionCall each get one ReadyForQuery; extended-protocol
// messages since the last Sync keep the server held) and what statements do to session state
// (noted for capture, or pinning the client). Named statements are rewritten for the
// prepared-statement cache, or refused when it is off. Bytes go out in one write per batch.

import type { FrameReader } from '../protocol/frame-reader';
import { message } from '../protocol/backend';
import { FE, parseText } from '../protocol/messages';
import { SQLSTATE } from '../protocol/sqlstate';
import { Verdict } from '../routing/classify';
import { STAT } from '../shared/layout';
import { log } from '../log';
import { NO_EFFECT, type PinReason, stateEffects } from './state-effects';
import { NAMED_STATEMENT_MARKER, captureGucs } from './transaction';
import { Phase, type Session, writable } from './session';

/**
 * Stands in for a named Parse when the prepared-statement cache is off: it fails at analysis
 * (a relation that cannot exist; the name is under 64 bytes, so no truncation notice) and that
 * error is replaced by a clear one in order with every other reply (transaction.ts).
 */
const NAMED_STATEMENT_PROBE = message('P', Buffer.from(`\0SELECT FROM ${NAMED_STATEMENT_MARKER}\0\0\0`, 'utf8'));

/** Commands that work on session objects: a pinned routed session runs them where the objects are. */
const STATE_COMMAND = /^\s*(?:execute|fetch|move|close|deallocate|discard|unlisten|reset|show)\b/i;

export function forwardToServer(s: Session): void {
  if (s.syncing) return;
  const f = s.frames;
  const server = s.server!;
  const ps = s.ps;
  let runStart = f.off;
  const batchStart = f.off;
  // Rewritten messages (prepared statements, refused names, DEALLOCATE) are spliced between
  // views of the client's bytes; the batch still goes out in one write (one syscall).
  let parts: Buffer[] | null = null;
  loop: while (f.next()) {
    switch (f.type) {
      case FE.TERMINATE:
        parts = splice(parts, f, runStart, f.start, null);
        if (parts.length > 0) server.write(Buffer.concat(parts));
        return s.disconnect('client sent Terminate');
      case FE.QUERY: {
        if (holdsForNext(s, f)) {
          f.off = f.start; // a write: it starts the next transaction, on the primary
          break loop;
        }
        s.pendingReady++;
        if (!s.movable) break;
        const sql = f.buf.toString('utf8', f.start + 5, f.msgEnd - 1);
        noteSql(s, sql);
        if (ps) {
          ps.noteSync();
          const out = ps.rewriteQuery(sql, server);
          if (out) {
            parts = splice(parts, f, runStart, f.start, out);
            runStart = f.msgEnd;
          }
        }
        break;
      }
      case FE.PARSE: {
        if (holdsForNext(s, f)) {
          f.off = f.start;
          break loop;
        }
        s.sinceSync++;
        if (!s.movable) break;
        const nameEnd = f.buf.indexOf(0, f.start + 5);
        if (nameEnd > f.start + 5 && !ps) {
          // Cache off: a named statement cannot follow the client to another connection. Send
          // a Parse that fails at analysis instead; its error is swapped for a clear one.
          parts = splice(parts, f, runStart, f.start, NAMED_STATEMENT_PROBE);
          s.namedRefused.push(f.buf.toString('utf8', f.start + 5, nameEnd));
          runStart = f.msgEnd;
          break;
        }
        const textEnd = f.buf.indexOf(0, nameEnd + 1);
        if (textEnd > nameEnd) noteSql(s, f.buf.toString('utf8', nameEnd + 1, textEnd));
        break;
      }
      case FE.SYNC:
        s.pendingReady++;
        s.sinceSync = 0;
        ps?.noteSync();
        break;
      case FE.FUNCTION_CALL:
        s.pendingReady++;
        ps?.noteSync();
        break;
      case FE.FLUSH:
        // Everything answered so far is owed to the client now (see the retry window). A Flush
        // leaves nothing behind on the server, so it does not keep the connection held.
        if (s.replay.armed) s.replay.flushed = true;
        break;
      case FE.BIND:
      case FE.EXECUTE:
      case FE.DESCRIBE:
      case FE.CLOSE:
        s.sinceSync++;
        break;
      default:
        break; // CopyData / CopyDone / CopyFail belong to the running COPY
    }
    if (ps && (f.type === FE.PARSE || f.type === FE.BIND || f.type === FE.DESCRIBE || f.type === FE.CLOSE)) {
      const out = ps.rewrite(f.type, f.view(f.start, f.msgEnd), server);
      if (out) {
        parts = splice(parts, f, runStart, f.start, out);
        runStart = f.msgEnd;
      }
    }
    if (s.queryStart < 0) {
      s.queryStart = performance.now();
      s.timeoutCancelled = false;
      if (s.xactStart < 0) s.xactStart = s.queryStart;
    }
  }
  if (f.error) return s.fatal(SQLSTATE.PROTOCOL_VIOLATION, f.error, 'bad message');
  if (s.replay.armed && f.off > batchStart && !s.replay.keep(f.buf, batchStart, f.off)) endReplay(s);
  // Header replies held back before this Flush are what the client now waits for.
  if (s.replay.flushed && s.replay.held) endReplay(s);
  // Complete messages only: a partial one stays buffered until its last byte arrives.
  if (parts !== null) {
    parts = splice(parts, f, runStart, f.off, null);
    if (!server.write(parts.length === 1 ? parts[0] : Buffer.concat(parts))) s.sock.pause();
  } else if (f.off > runStart && !server.write(f.view(runStart, f.off))) s.sock.pause();
  // Also called outside a read (a granted wait): an idle client keeps no buffer.
  f.detach();
}

/**
 * Ends the retry window: header replies held so far go to the client now (they are never
 * dropped), and later replies pass straight through.
 */
export function endReplay(s: Session): void {
  const held = s.replay.end();
  if (!held) return;
  s.ctx.shared.stats[s.stat + STAT.sent] += held.length;
  if (!s.sock.write(held)) s.server?.pauseReading();
}

/**
 * On a replica between implicit (autocommit) reads: a statement (the Query or Parse just framed)
 * that needs another server waits for the next transaction. Not after sessionBoundary forwarded
 * into an open transaction.
 */
function holdsForNext(s: Session, f: FrameReader): boolean {
  if (!s.implicitReads || s.sinceSync !== 0) return false;
  // SET SERVER ROLE replica (or a replica port): every statement goes here, a write gets the replica's 25006.
  if (s.route.role === 'replica') return false;
  if (s.waitBypass) {
    s.waitBypass = false;
    return false;
  }
  const sql = f.type === FE.QUERY ? f.buf.toString('utf8', f.start + 5, f.msgEnd - 1) : parseText(f.buf, f.start);
  const v = s.ctx.classifier.verdict(sql, s.userPool!.pool.query_parser_max_length ?? 0);
  return v !== Verdict.Read && v !== Verdict.ReadOnlyTx;
}

/**
 * Session mode with routing, on a replica with nothing outstanding (the session's first query
 * chose it). A statement that needs the primary moves the session there at a transaction
 * boundary, carrying its settings as transaction mode does, and the session then stays on the
 * primary (it reads its own writes). State that cannot move (temp table, advisory lock, LISTEN,
 * WITH HOLD cursor, SQL PREPARE, LOAD) gets a clear error instead of the replica's raw 25006.
 */
export function sessionBoundary(s: Session): void {
  s.releasePending = false;
  const conn = s.server;
  const f = s.frames;
  if (!conn || s.phase !== Phase.Active || s.syncing || f.pending < 5) return;
  if (conn.txStatus !== 0x49) {
    // Inside a transaction on the replica (BEGIN READ ONLY): everything goes to it.
    s.waitBypass = true;
    return forwardToServer(s);
  }
  if (f.pending < 1 + f.buf.readInt32BE(f.off + 1)) return; // judged when the message is whole
  const head = f.buf[f.off];
  // Only a statement can need the primary (Terminate, Sync, Flush, Describe, Close … stay here).
  if (head !== FE.QUERY && head !== FE.PARSE && head !== FE.BIND && head !== FE.FUNCTION_CALL)
    return forwardToServer(s);
  for (const r of s.unpinLater) s.pins.delete(r);
  s.unpinLater.clear();
  const up = s.userPool!;
  const readOnly = s.gucs.get('default_transaction_read_only') === 'on';
  if (s.route.target(up, f.buf, f.off, f.end, s.ctx.classifier, s.ps, readOnly) !== 'primary')
    return forwardToServer(s);
  if (s.pins.size > 0 && STATE_COMMAND.test(s.route.sql)) {
    // EXECUTE, FETCH, DEALLOCATE, …: they use the state that keeps the session here.
    s.waitBypass = true;
    return forwardToServer(s);
  }
  const where = s.entry ? `${s.entry.address.host}:${s.entry.address.port}` : 'a replica';
  if (s.pins.size > 0) {
    const reasons = [...s.pins].join(', ');
    s.countError();
    log.warn('routed session cannot move to the primary for a write: its state stays on the replica', {
      client: s.remote,
      user: up.user.username,
      server: where,
      state: reasons,
    });
    return s.rejectHead(
      SQLSTATE.READ_ONLY_SQL_TRANSACTION,
      `this session cannot move to the primary for this statement: it holds ${reasons} on replica ${where}`,
      'Write before creating session state (the session then stays on the ' +
        "primary), or SET SERVER ROLE TO 'primary' at the start of the session.",
    );
  }
  const move = () => {
    if (s.phase !== Phase.Active || s.server !== conn) return;
    log.debug('routed session moves to the primary', { client: s.remote, from: where });
    s.server = null;
    s.implicitReads = false;
    s.releaseServer(conn, s.serverPool!);
    s.beginTransaction();
  };
  if (s.touched.size > 0 || s.resets.size > 0 || s.resetAll) captureGucs(s, conn, move);
  else move();
}

/** Records what a statement does to session state (transaction mode, routed sessions). */
function noteSql(s: Session, sql: string): void {
  const fx = stateEffects(sql);
  if (fx === NO_EFFECT) return;
  if (fx.gucs.length > 0) s.touched = writable(s.touched);
  for (const g of fx.gucs) s.touched.add(g);
  if (fx.resets.length > 0) s.resets = writable(s.resets);
  for (const g of fx.resets) s.resets.add(g);
  if (fx.resetAll) s.resetAll = true;
  for (const r of fx.pin) pin(s, r);
  if (fx.unpin.length > 0) s.unpinLater = writable(s.unpinLater);
  for (const r of fx.unpin) s.unpinLater.add(r);
  for (const r of fx.recheck) {
    if (!s.pins.has(r)) continue; // nothing of that kind keeps this client here
    s.recheckLater = writable(s.recheckLater);
    s.recheckLater.add(r);
  }
  if (fx.unpin.includes('sql_prepare')) {
    // DEALLOCATE ALL / DISCARD ALL also remove the protocol-level statements on the server.
    s.server?.prepared.clear();
    s.ps?.forgetAll();
  }
}

/** Dedicated mode: this client keeps its server connection until the state is gone. */
function pin(s: Session, reason: PinReason): void {
  if (s.pins.has(reason)) return;
  s.pins = writable(s.pins);
  s.pins.add(reason);
  s.ctx.shared.stats[s.stat + STAT.pins] += 1;
  const what = s.txMode
    ? 'client pinned to its server connection'
    : 'routed session holds state that keeps it on its server';
  log.info(what, { client: s.remote, user: s.userPool?.user.username, reason, server_id: s.server?.id });
}

/**
 * Adds the client's bytes [from, to) and `insert` to a batch. Views of the read buffer are fine:
 * the batch is concatenated (copied) at once, and a lone view goes through writeView, which keeps
 * the buffer when the write is queued.
 */
function splice(parts: Buffer[] | null, f: FrameReader, from: number, to: number, insert: Buffer | null): Buffer[] {
  const p = parts ?? [];
  if (to > from) p.push(f.view(from, to));
  if (insert) p.push(insert);
  return p;
}
