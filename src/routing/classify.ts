// Read/write classification of SQL text, lexically (no parse tree). A statement is a read only when
// it can be shown to be one: SELECT / VALUES / TABLE / SHOW / EXPLAIN of a read, COPY … TO, and a
// few utility statements that run anywhere; row locks (FOR UPDATE/SHARE), SELECT INTO,
// data-modifying CTEs and calls of functions that write or need a primary make it a write, and so
// does every statement this file does not recognise. Measured in benchmarks/RESULTS.md; decisions
// are cached by text (see Classifier).

export const enum Verdict {
  /** May run on a replica. */
  Read = 1,
  /** Must run on the primary. */
  Write = 2,
  /** BEGIN / START TRANSACTION without an access mode: read-only only if the session's default is. */
  Begin = 3,
  /** BEGIN READ ONLY (or BEGIN; SET TRANSACTION READ ONLY in one batch): the transaction may run on a replica. */
  ReadOnlyTx = 4,
}

/** Functions that write, take locks meant for writers, or fail during recovery. */
const PRIMARY_FUNCTIONS = new Set([
  'nextval',
  'setval',
  'txid_current',
  'pg_current_xact_id',
  'txid_current_if_assigned',
  'pg_advisory_lock',
  'pg_advisory_lock_shared',
  'pg_advisory_unlock',
  'pg_advisory_unlock_shared',
  'pg_advisory_unlock_all',
  'pg_advisory_xact_lock',
  'pg_advisory_xact_lock_shared',
  'pg_try_advisory_lock',
  'pg_try_advisory_lock_shared',
  'pg_try_advisory_xact_lock',
  'pg_try_advisory_xact_lock_shared',
  'pg_notify',
  'lo_create',
  'lo_creat',
  'lo_import',
  'lo_unlink',
  'lo_from_bytea',
  'lo_put',
  'lo_open',
  'lo_truncate',
  'lo_write',
  'lowrite',
  'pg_switch_wal',
  'pg_create_restore_point',
  'pg_current_wal_lsn',
  'pg_current_wal_insert_lsn',
  'pg_current_wal_flush_lsn',
  'pg_create_physical_replication_slot',
  'pg_create_logical_replication_slot',
  'pg_drop_replication_slot',
  'pg_logical_emit_message',
  'pg_replication_origin_create',
  'pg_replication_origin_drop',
  'pg_import_system_collations',
  'dblink_exec',
  'pg_backup_start',
  'pg_backup_stop',
  'pg_start_backup',
  'pg_stop_backup',
  'pg_promote',
]);

/** First words of statements that read or run anywhere (no data written, legal on a hot standby). */
const READ_FIRST = new Set([
  'select',
  'values',
  'table',
  'show',
  'fetch',
  'move',
  'close',
  'deallocate',
  'discard',
  'reset',
  'commit',
  'end',
  'rollback',
  'abort',
  'savepoint',
  'release',
  'unlisten',
  'load',
]);

/** Words that make a SELECT / WITH / EXPLAIN body a write. */
const WRITE_WORDS = new Set(['insert', 'update', 'delete', 'merge', 'into', 'create', 'drop', 'alter', 'truncate']);

const enum C {
  Tab = 9,
  Nl = 10,
  Cr = 13,
  Space = 32,
  Dq = 34,
  Dollar = 36,
  Sq = 39,
  LParen = 40,
  RParen = 41,
  Star = 42,
  Minus = 45,
  Slash = 47,
  Semi = 59,
  A = 65,
  Z = 90,
  Under = 95,
  a = 97,
  z = 122,
  d0 = 48,
  d9 = 57,
  E = 69,
  e = 101,
  Backslash = 92,
}

function isWordStart(c: number): boolean {
  return (c >= C.a && c <= C.z) || (c >= C.A && c <= C.Z) || c === C.Under || c > 127;
}

function isWordPart(c: number): boolean {
  return isWordStart(c) || (c >= C.d0 && c <= C.d9) || c === C.Dollar;
}

/**
 * The statements of `sql` as lists of lower-cased words (unquoted identifiers and keywords), with
 * '(' marking a call or group and ';' ending a statement. Quoted text, quoted identifiers and
 * comments are dropped. Returns null if the text ends inside a quote or comment.
 */
export function words(sql: string): string[][] | null {
  const out: string[][] = [];
  let cur: string[] = [];
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === C.Space || c === C.Nl || c === C.Tab || c === C.Cr) {
      i++;
    } else if (isWordStart(c)) {
      let j = i + 1;
      while (j < n && isWordPart(sql.charCodeAt(j))) j++;
      // E'…' / e'…': escape-string constant.
      if (j === i + 1 && (c === C.E || c === C.e) && sql.charCodeAt(j) === C.Sq) {
        const end = skipQuoted(sql, j, C.Sq, true);
        if (end < 0) return null;
        i = end;
        cur.push("'");
        continue;
      }
      cur.push(sql.slice(i, j).toLowerCase());
      i = j;
    } else if (c === C.Sq || c === C.Dq) {
      const end = skipQuoted(sql, i, c, false);
      if (end < 0) return null;
      cur.push(c === C.Dq ? '"' : "'");
      i = end;
    } else if (c === C.Minus && sql.charCodeAt(i + 1) === C.Minus) {
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? n : nl + 1;
    } else if (c === C.Slash && sql.charCodeAt(i + 1) === C.Star) {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        const d = sql.charCodeAt(i);
        if (d === C.Slash && sql.charCodeAt(i + 1) === C.Star) depth++, (i += 2);
        else if (d === C.Star && sql.charCodeAt(i + 1) === C.Slash) depth--, (i += 2);
        else i++;
      }
      if (depth > 0) return null;
    } else if (c === C.Dollar) {
      const tag = dollarTag(sql, i);
      if (tag) {
        const end = sql.indexOf(tag, i + tag.length);
        if (end < 0) return null;
        i = end + tag.length;
        cur.push("'");
      } else i++; // $1 parameter
    } else if (c === C.Semi) {
      if (cur.length) out.push(cur);
      cur = [];
      i++;
    } else if (c === C.LParen) {
      cur.push('(');
      i++;
    } else {
      i++;
    }
  }
  if (cur.length) out.push(cur);
  return out;
}

function skipQuoted(sql: string, i: number, q: number, backslash: boolean): number {
  let j = i + 1;
  const n = sql.length;
  while (j < n) {
    const c = sql.charCodeAt(j);
    if (backslash && c === C.Backslash) j += 2;
    else if (c === q) {
      if (sql.charCodeAt(j + 1) === q) j += 2;
      else return j + 1;
    } else j++;
  }
  return -1;
}

/** `$tag$` or `$$` at i, or '' when i starts a parameter ($1) or nothing. */
function dollarTag(sql: string, i: number): string {
  let j = i + 1;
  const n = sql.length;
  if (j < n && sql.charCodeAt(j) === C.Dollar) return '$$';
  if (j >= n || !isWordStart(sql.charCodeAt(j))) return '';
  while (j < n && isWordPart(sql.charCodeAt(j)) && sql.charCodeAt(j) !== C.Dollar) j++;
  return j < n && sql.charCodeAt(j) === C.Dollar ? sql.slice(i, j + 1) : '';
}

/** A SELECT-like body: a read unless it locks rows, writes, or calls a primary-only function. */
function bodyVerdict(w: string[], from: number): Verdict {
  for (let i = from; i < w.length; i++) {
    const t = w[i];
    if (WRITE_WORDS.has(t)) return Verdict.Write;
    if (t === 'for') {
      const next = w[i + 1];
      if (next === 'update' || next === 'share' || next === 'no' || next === 'key') return Verdict.Write;
    } else if (w[i + 1] === '(' && PRIMARY_FUNCTIONS.has(t)) return Verdict.Write;
  }
  return Verdict.Read;
}

/** READ ONLY among a transaction's modes (BEGIN / START TRANSACTION / SET TRANSACTION). */
function accessMode(w: string[], from: number): 'ro' | 'rw' | '' {
  for (let i = from; i < w.length - 1; i++) {
    if (w[i] === 'read' && w[i + 1] === 'only') return 'ro';
    if (w[i] === 'read' && w[i + 1] === 'write') return 'rw';
  }
  return '';
}

function statementVerdict(w: string[]): Verdict {
  const first = w[0];
  switch (first) {
    case 'select':
    case 'values':
    case 'table':
    case 'with':
      return bodyVerdict(w, 1);
    case 'explain': {
      // EXPLAIN ANALYZE runs the statement; plain EXPLAIN only plans it, but either way a plan of a
      // write is sent to the primary (EXPLAIN INSERT fails on a standby only with ANALYZE; keep it simple).
      let i = 1;
      while (
        i < w.length &&
        ![
          'select',
          'values',
          'table',
          'with',
          'insert',
          'update',
          'delete',
          'merge',
          'create',
          'execute',
          'declare',
        ].includes(w[i])
      )
        i++;
      if (i >= w.length) return Verdict.Write;
      const v = statementVerdict(w.slice(i));
      return v === Verdict.Read ? Verdict.Read : Verdict.Write;
    }
    case 'begin':
    case 'start': {
      if (first === 'start' && w[1] !== 'transaction') return Verdict.Write;
      const mode = accessMode(w, 1);
      return mode === 'ro' ? Verdict.ReadOnlyTx : mode === 'rw' ? Verdict.Write : Verdict.Begin;
    }
    case 'set':
      if (w[1] === 'transaction' || (w[1] === 'local' && w[2] === 'transaction')) {
        const mode = accessMode(w, 2);
        return mode === 'ro' ? Verdict.ReadOnlyTx : mode === 'rw' ? Verdict.Write : Verdict.Read;
      }
      // SET ROLE / SET SESSION AUTHORIZATION change who later statements run as: harmless anywhere.
      return Verdict.Read;
    case 'copy': {
      // COPY (query) TO and COPY table TO read; COPY … FROM writes.
      if (w[1] === '(') return bodyVerdict(w, 2);
      for (let i = 1; i < w.length; i++) {
        if (w[i] === 'from') return Verdict.Write;
        if (w[i] === 'to') return Verdict.Read;
      }
      return Verdict.Write;
    }
    case 'declare': {
      // DECLARE c CURSOR … FOR <query>: the query decides.
      const at = w.indexOf('for');
      return at > 0 ? statementVerdict(w.slice(at + 1)) : Verdict.Write;
    }
    case 'prepare': {
      const at = w.indexOf('as');
      return at > 0 ? statementVerdict(w.slice(at + 1)) : Verdict.Write;
    }
    case 'commit':
    case 'rollback':
      // COMMIT PREPARED / ROLLBACK PREPARED finish a two-phase transaction: primary only.
      return w[1] === 'prepared' ? Verdict.Write : Verdict.Read;
    default:
      return READ_FIRST.has(first) ? Verdict.Read : Verdict.Write;
  }
}

/** One Query or Parse text: the verdict for the transaction it starts. Undecidable text is a write. */
export function classify(sql: string): Verdict {
  const stmts = words(sql);
  if (!stmts) return Verdict.Write;
  if (stmts.length === 0) return Verdict.Read;
  let result = Verdict.Read;
  let begin: Verdict | 0 = 0;
  for (const w of stmts) {
    const v = statementVerdict(w);
    if (v === Verdict.Begin) {
      if (begin === 0) begin = v;
    } else if (v === Verdict.ReadOnlyTx)
      begin = v; // BEGIN READ ONLY, or SET TRANSACTION READ ONLY after BEGIN
    else if (v === Verdict.Write) result = Verdict.Write;
  }
  return result === Verdict.Write ? Verdict.Write : begin || Verdict.Read;
}

/**
 * classify() with an LRU cache keyed by statement text. Texts longer than `maxLength` are not
 * classified (the caller's default applies: null). Learned writes (a "read" a replica refused with
 * 25006) overwrite the cached verdict.
 */
export class Classifier {
  private readonly cache = new Map<string, Verdict>();
  constructor(private readonly capacity = 10000) {}

  verdict(sql: string, maxLength: number): Verdict | null {
    if (maxLength > 0 && sql.length > maxLength) return null;
    const hit = this.cache.get(sql);
    if (hit !== undefined) return hit;
    const v = classify(sql);
    if (this.cache.size >= this.capacity) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(sql, v);
    return v;
  }

  /** A replica refused this text as a write (SQLSTATE 25006): route it to the primary from now on. */
  learnWrite(sql: string): void {
    this.cache.delete(sql);
    this.cache.set(sql, Verdict.Write);
  }

  get size(): number {
    return this.cache.size;
  }
}
