// Reading the batch at the head of a client's buffer without consuming it: the first transaction's
// messages up to its Query or Sync. Pure functions over [from, end) of a buffer, so the routing
// decision can be tested without a session.

import { FE, bindParams, bindStatement, parseName, parseText } from '../protocol/messages';
import { Verdict } from './classify';

/** Texts of the statements a client prepared earlier (the prepared-statement cache). */
export interface StatementTexts {
  textOf(name: string): string | undefined;
}

/** Verdicts by statement text (the worker's Classifier); null = not classified (longer than maxLength). */
export interface Judge {
  verdict(sql: string, maxLength: number): Verdict | null;
}

/** Filled in by batchVerdict (one object per client: no allocation per transaction). */
export interface BatchVerdict {
  /** null = some statement could not be classified. */
  verdict: Verdict | null;
  /** The first statement text that was judged ('' = none). */
  sql: string;
}

/**
 * Combined verdict of the first transaction's messages (up to a Query or Sync). A Bind of a
 * statement prepared in an earlier batch is judged by its text when the cache knows it, else as a
 * write; a Parse and Bind of the same name in one batch (postgres.js, pgjdbc) is judged at the Parse.
 */
export function batchVerdict(
  out: BatchVerdict,
  buf: Buffer,
  from: number,
  end: number,
  judge: Judge,
  maxLength: number,
  texts: StatementTexts | null,
): void {
  out.verdict = null;
  out.sql = '';
  let p = from;
  let result: Verdict | null = null;
  /** Statements named by a Parse in this batch: their Bind is already judged by that Parse. */
  let parsed: string[] | null = null;
  while (p + 5 <= end) {
    const len = buf.readInt32BE(p + 1);
    if (len < 4 || p + 1 + len > end) break;
    const type = buf[p];
    let v: Verdict | null = null;
    let sql = '';
    if (type === FE.QUERY) {
      sql = buf.toString('utf8', p + 5, p + len);
    } else if (type === FE.PARSE) {
      sql = parseText(buf, p);
      const name = parseName(buf, p);
      if (name) (parsed ??= []).push(name);
    } else if (type === FE.BIND) {
      const [nameStart, nameEnd] = bindStatement(buf, p);
      const name = buf.toString('utf8', nameStart, nameEnd);
      if (name && parsed?.includes(name)) v = null;
      else {
        const text = name && texts ? texts.textOf(name) : undefined;
        if (text === undefined) v = name || result === null ? Verdict.Write : null;
        else sql = text;
      }
    } else if (type === FE.FUNCTION_CALL) v = Verdict.Write;
    if (sql) {
      v = judge.verdict(sql, maxLength);
      if (v === null) return;
      if (!out.sql) out.sql = sql;
    }
    if (v !== null) result = result === null ? v : combine(result, v);
    p += 1 + len;
    // The first transaction ends here; later ones are checked as they are forwarded.
    if (type === FE.QUERY || type === FE.SYNC) break;
  }
  out.verdict = result ?? Verdict.Write;
}

export interface BatchHead {
  /** First statement text ('' = none known). */
  sql: string;
  /** Parameters of the first Bind, as text (for the sharding key), or null. */
  params: (string | null)[] | null;
}

/** First statement text and Bind parameters of the batch (for choosing a shard). */
export function batchHead(buf: Buffer, from: number, end: number, texts: StatementTexts | null): BatchHead {
  let p = from;
  let sql = '';
  let params: (string | null)[] | null = null;
  while (p + 5 <= end) {
    const len = buf.readInt32BE(p + 1);
    if (len < 4 || p + 1 + len > end) break;
    const type = buf[p];
    if (type === FE.QUERY && !sql) {
      sql = buf.toString('utf8', p + 5, p + len);
      break;
    }
    if (type === FE.PARSE && !sql) sql = parseText(buf, p);
    else if (type === FE.BIND) {
      const [nameStart, nameEnd] = bindStatement(buf, p);
      if (!sql && texts) sql = texts.textOf(buf.toString('utf8', nameStart, nameEnd)) ?? '';
      params = bindParams(buf, nameEnd + 1, p + 1 + len);
      break;
    } else if (type === FE.SYNC) break;
    p += 1 + len;
  }
  return { sql, params };
}

/** Verdicts of messages that will share one server: any write wins; a transaction start keeps its kind. */
export function combine(a: Verdict, b: Verdict): Verdict {
  if (a === Verdict.Write || b === Verdict.Write) return Verdict.Write;
  if (a === Verdict.Begin || a === Verdict.ReadOnlyTx) return a;
  if (b === Verdict.Begin || b === Verdict.ReadOnlyTx) return b;
  return Verdict.Read;
}
