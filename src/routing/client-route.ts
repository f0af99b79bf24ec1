// One client's routing state and decisions: its routing commands (SET SERVER ROLE, SET PRIMARY
// READS, SET SHARD / SHARDING KEY and their SHOWs, answered here), whether its transactions are
// routed at all, and for the batch at the head of its buffer the target (primary or read) and
// the shard. The session asks; nothing here touches a socket or a server.

import { commandComplete, dataRow, errorResponse, READY_IDLE, READY_IN_TX, rowDescription } from '../protocol/backend';
import type { FrameReader } from '../protocol/frame-reader';
import { FE } from '../protocol/messages';
import { SQLSTATE } from '../protocol/sqlstate';
import type { UserPool } from '../pool/registry';
import { type BatchVerdict, type Judge, type StatementTexts, batchHead, batchVerdict } from './batch';
import { Verdict } from './classify';
import { type Hint, type RoleHint, parseHint } from './hints';
import type { Target } from './router';
import type { ListenerRole } from '../config/types';
import { automaticKey, defaultShard, shardComment, shardOfKey } from './sharding';

export class ClientRoute {
  /** SET SERVER ROLE / SET PRIMARY READS / SET SHARD (null = the pool's setting). */
  role: RoleHint | null = null;
  primaryReadsHint: boolean | null = null;
  shardSetting: number | null = null;
  /** The batch that decided the current route: its verdict and first statement text. */
  readonly batch: BatchVerdict = { verdict: Verdict.Write, sql: '' };
  /** Shard of the transaction being routed. */
  shard = 0;
  /** The role of the listener the client came through ([[general.listeners]]); null = the main port. */
  port: ListenerRole | null = null;

  /** A client of a role port: the port's role is its starting routing command (SET SERVER ROLE may change it). */
  fromPort(role: ListenerRole | null): void {
    this.port = role;
    this.role = role;
  }

  /** Whether this client's transactions are routed (parser, default_role, or a routing command). */
  active(up: UserPool): boolean {
    const p = up.pool;
    return (
      this.role !== null ||
      p.default_role === 'replica' ||
      (p.query_parser_enabled && p.query_parser_read_write_splitting) ||
      up.shards.length > 1 ||
      up.hasAuto
    );
  }

  primaryReads(up: UserPool): boolean {
    return this.primaryReadsHint ?? (up.pool.primary_reads_enabled || this.role === 'any');
  }

  /** The verdict of the batch that decided the route (Write when no statement was judged). */
  get verdict(): Verdict {
    return this.batch.verdict ?? Verdict.Write;
  }

  /** Text of the statement that routed the current transaction (to learn from a replica's 25006). */
  get sql(): string {
    return this.batch.sql;
  }

  /**
   * Where the transaction at the head of the buffer [from, end) goes. `readOnly`: the client's
   * default_transaction_read_only is on (a plain BEGIN then reads).
   */
  target(
    up: UserPool,
    buf: Buffer,
    from: number,
    end: number,
    judge: Judge,
    texts: StatementTexts | null,
    readOnly: boolean,
  ): Target {
    const hint = this.role;
    const p = up.pool;
    const b = this.batch;
    b.verdict = Verdict.Write;
    b.sql = '';
    if (hint === 'primary') return 'primary';
    const parse = hint === 'auto' || hint === 'any' || (p.query_parser_enabled && p.query_parser_read_write_splitting);
    if (hint === 'replica' || (!parse && p.default_role === 'replica')) return 'read';
    if (!parse) return 'primary';
    batchVerdict(b, buf, from, end, judge, p.query_parser_max_length ?? 0, texts);
    const v = b.verdict as Verdict | null; // set by batchVerdict
    if (v === null) {
      b.verdict = Verdict.Write;
      return p.default_role === 'replica' ? 'read' : 'primary';
    }
    if (v === Verdict.Read || v === Verdict.ReadOnlyTx) return 'read';
    if (v === Verdict.Begin && readOnly) return 'read';
    return 'primary';
  }

  /**
   * The shard of the batch at the head of the buffer: a /* shard_id / sharding_key *\/ comment,
   * then the automatic_sharding_key's value in the statement (query parser on), then SET SHARD /
   * SET SHARDING KEY, then default_shard. A string is the error to answer the client with.
   */
  shardOf(up: UserPool, buf: Buffer, from: number, end: number, texts: StatementTexts | null): number | string {
    const p = up.pool;
    const n = up.shards.length;
    const head = batchHead(buf, from, end, texts);
    const sql = head.sql;
    const c = sql ? shardComment(sql) : null;
    let shard: number | null = null;
    if (c?.shardId !== undefined) shard = c.shardId;
    else if (c?.key !== undefined) shard = shardOfKey(p.sharding_function, c.key, n);
    else if (p.query_parser_enabled && p.automatic_sharding_key && sql) {
      const key = automaticKey(sql, p.automatic_sharding_key, head.params);
      if (key !== null) shard = shardOfKey(p.sharding_function, key, n);
    }
    shard ??= this.shardSetting ?? defaultShard(p.default_shard, n);
    if (shard >= n) return noSuchShard(shard, up);
    return shard;
  }

  /**
   * Answers routing commands at the head of the buffer (SET SERVER ROLE, SHOW PRIMARY READS, …),
   * consuming them; true if the buffer is now empty.
   */
  answerHints(f: FrameReader, up: UserPool, inTx: boolean, out: { write(reply: Buffer): unknown }): boolean {
    while (f.pending >= 5 && f.buf[f.off] === FE.QUERY) {
      const len = f.buf.readInt32BE(f.off + 1);
      if (len > 80 || f.pending < len + 1) return false;
      // Every hint starts with SET or SHOW: look at the first non-blank byte before decoding text.
      let i = f.off + 5;
      while (i < f.off + len && (f.buf[i] === 0x20 || (f.buf[i] >= 0x09 && f.buf[i] <= 0x0d))) i++;
      if ((f.buf[i] | 0x20) !== 0x73) return false;
      const hint = parseHint(f.buf.toString('utf8', f.off + 5, f.off + len));
      if (!hint) return false;
      f.next();
      out.write(this.apply(hint, up, inTx));
    }
    return f.pending === 0;
  }

  /** Carries out one routing command; the reply ends with ReadyForQuery. */
  apply(h: Hint, up: UserPool, inTx: boolean): Buffer {
    const ready = inTx ? READY_IN_TX : READY_IDLE;
    const rows = (column: string, value: string) =>
      Buffer.concat([rowDescription([column]), dataRow([value]), commandComplete('SHOW'), ready]);
    const fail = (message: string) =>
      Buffer.concat([errorResponse({ severity: 'ERROR', code: SQLSTATE.INVALID_PARAMETER_VALUE, message }), ready]);
    switch (h.kind) {
      case 'set_role':
        this.role = h.role ?? this.port;
        return Buffer.concat([commandComplete('SET'), ready]);
      case 'set_primary_reads':
        this.primaryReadsHint = h.on;
        return Buffer.concat([commandComplete('SET'), ready]);
      case 'show_role': {
        const p = up.pool;
        const splitting = p.query_parser_enabled && p.query_parser_read_write_splitting;
        return rows(
          'server_role',
          this.role ?? (splitting ? 'auto' : p.default_role === 'replica' ? 'replica' : 'primary'),
        );
      }
      case 'show_primary_reads':
        return rows('primary_reads', this.primaryReads(up) ? 'on' : 'off');
      case 'set_shard':
      case 'set_sharding_key': {
        const n = up.shards.length;
        const shard = h.kind === 'set_shard' ? h.shard : shardOfKey(up.pool.sharding_function, h.key, n);
        if (shard !== null && shard >= n) return fail(noSuchShard(shard, up));
        if (shard === null && h.kind === 'set_sharding_key')
          return fail(`sharding key ${h.key} is not a 64-bit integer`);
        this.shardSetting = shard;
        return Buffer.concat([commandComplete('SET'), ready]);
      }
      case 'show_shard':
        return rows('shard', this.shardSetting === null ? 'default' : String(this.shardSetting));
    }
  }
}

function noSuchShard(shard: number, up: UserPool): string {
  const n = up.shards.length;
  return `shard ${shard} does not exist: pool "${up.pool.name}" has ${n} shards (0 to ${n - 1})`;
}
