// Transparent retry of reads. The client bytes of a read transaction are kept until the server's
// first real reply, so a replica that dies (or refuses the read as a write) before anything reached
// the client costs a retry on another server instead of an error. Header replies (ParseComplete,
// RowDescription, …) are held meanwhile; a Flush inside the window ends it, because the client
// then waits for exactly those replies (describe-first drivers).

import { errorField } from '../protocol/backend';
import { EMPTY } from '../protocol/frame-reader';
import { BE } from '../protocol/messages';

/** What to do with a server reply while a retry is possible. */
export const enum Reply {
  /** The answer has begun: forward it, the window is over. */
  Forward,
  /** Only header messages so far: hold them. */
  Wait,
  /** A replica refused the read: retry elsewhere. */
  Retry,
  /** The server is going away: ban it and retry elsewhere. */
  RetryBan,
}

/** The largest batch kept for a retry; a bigger one is not retried. */
export const REPLAY_LIMIT = 65536;

/** Server going away: admin_shutdown, crash_shutdown, cannot_connect_now. */
export const GOING_AWAY = new Set(['57P01', '57P02', '57P03']);
/** A replica refusing a read: read_only_sql_transaction, serialization_failure (conflict with recovery). */
const REPLICA_REFUSAL = new Set(['25006', '40001']);
/** Header replies held in a retry window at most (a notice storm ends the window instead of growing it). */
const HOLD_MAX = 64 * 1024;

export class ReadReplay {
  /** A retry is still possible: the server has not answered for real yet. */
  armed = false;
  /** Retries of the current read so far (at most 2). */
  tries = 0;
  /** Between dropping the failed server and re-routing: its late bytes and close are ignored. */
  retrying = false;
  /** A Flush was forwarded inside the window: the next reply goes straight through. */
  flushed = false;
  /** Header replies held while a retry is still possible. */
  held: Buffer | null = null;
  /** The session's pendingReady / sinceSync when the window opened (restored on a retry). */
  pendingReady = 0;
  sinceSync = 0;
  private buf: Buffer = EMPTY;
  private len = 0;

  /** A read transaction starts on a server: keep its bytes from here. */
  arm(pendingReady: number, sinceSync: number): void {
    this.armed = true;
    this.flushed = false;
    this.len = 0;
    this.pendingReady = pendingReady;
    this.sinceSync = sinceSync;
  }

  /** Appends forwarded client bytes; false when the batch outgrew REPLAY_LIMIT (end the window). */
  keep(src: Buffer, from: number, to: number): boolean {
    const n = to - from;
    if (this.len + n > REPLAY_LIMIT) return false;
    if (this.buf.length < this.len + n) {
      const grown = Buffer.allocUnsafe(Math.max(1024, (this.len + n) * 2));
      this.buf.copy(grown, 0, 0, this.len);
      this.buf = grown;
    }
    src.copy(this.buf, this.len, from, to);
    this.len += n;
    return true;
  }

  /**
   * A server chunk inside the window: what to do with it. On Wait the chunk is held (copied);
   * otherwise `reply()` is the held bytes plus this chunk, to forward or to drop.
   */
  judge(chunk: Buffer, onReplica: boolean): Reply {
    const reply = this.held ? Buffer.concat([this.held, chunk]) : chunk;
    const next = firstReply(reply, onReplica);
    if (next === Reply.Wait && !this.flushed && reply.length <= HOLD_MAX) {
      this.held = Buffer.from(reply);
      return Reply.Wait;
    }
    this.held = null;
    this.pending = reply;
    if (next === Reply.Retry || next === Reply.RetryBan) return next;
    this.armed = false;
    this.tries = 0;
    return Reply.Forward;
  }

  /** The bytes judge() decided about (held replies first). */
  reply(): Buffer {
    const r = this.pending;
    this.pending = EMPTY;
    return r;
  }
  private pending: Buffer = EMPTY;

  /** Ends the window; returns the held header replies, which are still owed to the client. */
  end(): Buffer | null {
    this.armed = false;
    this.tries = 0;
    const held = this.held;
    this.held = null;
    return held;
  }

  /** Starts a retry: the window closes and a copy of the kept client bytes is returned. */
  takeForRetry(): Buffer {
    this.retrying = true;
    this.armed = false;
    this.held = null;
    this.tries++;
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}

/**
 * The start of a server's reply while a read may still be retried: skips header messages
 * (ParseComplete, BindComplete, NoData, ParameterDescription, RowDescription, notices, parameter
 * status); an ErrorResponse saying the server is going away (or, on a replica, refusing the read)
 * means retry; anything else means the answer has begun.
 */
export function firstReply(buf: Buffer, onReplica: boolean): Reply {
  let p = 0;
  while (p + 5 <= buf.length) {
    const t = buf[p];
    const len = buf.readInt32BE(p + 1);
    if (
      t === BE.PARSE_COMPLETE ||
      t === BE.BIND_COMPLETE ||
      t === BE.NO_DATA ||
      t === BE.PARAMETER_DESCRIPTION ||
      t === BE.ROW_DESCRIPTION ||
      t === BE.NOTICE ||
      t === BE.PARAMETER_STATUS
    ) {
      p += 1 + len;
      continue;
    }
    if (t !== BE.ERROR) return Reply.Forward;
    if (p + 1 + len > buf.length) return Reply.Wait;
    const code = errorField(buf.subarray(p + 5, p + 1 + len), 0x43);
    if (GOING_AWAY.has(code)) return Reply.RetryBan;
    return onReplica && REPLICA_REFUSAL.has(code) ? Reply.Retry : Reply.Forward;
  }
  return Reply.Wait;
}
