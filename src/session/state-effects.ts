// What a statement does to session state, decided lexically (no parse): which GUCs it may set or
// reset, and which unmovable session objects it creates or drops (temp tables, session advisory
// locks, LISTEN, WITH HOLD cursors, SQL PREPARE, LOAD). Transaction pooling uses it to keep each
// server connection matching its client, and to pin ("dedicated mode") a client whose state
// cannot move. Statements that touch nothing of this return NO_EFFECT without allocating.

export type PinReason =
  | 'temp_table'
  | 'advisory_lock'
  | 'listen'
  | 'with_hold_cursor'
  | 'sql_prepare'
  | 'load'
  | 'set_config';

export interface StateEffects {
  /** GUC names (lower-case) a session-level SET / set_config may have changed. */
  gucs: string[];
  /** GUC names RESET to their session default (for a client: its startup value). */
  resets: string[];
  /** RESET ALL or DISCARD ALL: every GUC back to its default. */
  resetAll: boolean;
  pin: PinReason[];
  unpin: PinReason[];
  /**
   * Pins a statement may have ended without saying so lexically (DROP of what may be the last temp
   * table, CLOSE of a cursor, pg_advisory_unlock): asked of the server at the transaction's end.
   */
  recheck: PinReason[];
}

export const NO_EFFECT: StateEffects = Object.freeze({
  gucs: [],
  resets: [],
  resetAll: false,
  pin: [],
  unpin: [],
  recheck: [],
}) as StateEffects;

/**
 * Cheap pre-filter: can this text change session state at all? Most statements fail it in one
 * regex. The commands that matter (SET, RESET, DISCARD, LISTEN, DECLARE … WITH HOLD, PREPARE, …)
 * are looked for where a statement starts, so UPDATE … SET does not count; the function names and
 * TEMP anywhere. Text with comments gets the looser test (a comment may precede the command).
 */
const STATE_FUNCTIONS = 'pg_temp|advisory_lock|advisory_unlock|set_config';
const MAYBE_AT_START = new RegExp(
  `(?:^|;)\\s*(?:set|reset|discard|listen|unlisten|declare|prepare|deallocate|load|close|drop)\\b|` +
    `\\btemp(?:orary)?\\b|${STATE_FUNCTIONS}`,
  'i',
);
const MAYBE_ANYWHERE = new RegExp(
  `\\b(set|reset|discard|temp|temporary|listen|unlisten|declare|prepare|deallocate|load|close|drop)\\b|` +
    STATE_FUNCTIONS,
  'i',
);

function maybe(sql: string): boolean {
  return sql.includes('--') || sql.includes('/*') ? MAYBE_ANYWHERE.test(sql) : MAYBE_AT_START.test(sql);
}

/**
 * Splits SQL into statements, skipping quotes, dollar quotes and comments; returns each statement's text with comments
 * and quoted text blanked.
 */
export function statements(sql: string): string[] {
  const out: string[] = [];
  let cur = '';
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i];
    if (c === "'" || c === '"') {
      const end = closeQuote(sql, i, c);
      cur += c === '"' ? sql.slice(i, end) : "''";
      i = end;
    } else if (c === '-' && sql[i + 1] === '-') {
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? n : nl;
      cur += ' ';
    } else if (c === '/' && sql[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') depth++, (i += 2);
        else if (sql[i] === '*' && sql[i + 1] === '/') depth--, (i += 2);
        else i++;
      }
      cur += ' ';
    } else if (c === '$') {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 64));
      if (m) {
        const end = sql.indexOf(m[0], i + m[0].length);
        i = end < 0 ? n : end + m[0].length;
        cur += "''";
      } else {
        cur += c;
        i++;
      }
    } else if (c === ';') {
      if (cur.trim()) out.push(cur.trim());
      cur = '';
      i++;
    } else {
      cur += c;
      i++;
    }
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

function closeQuote(sql: string, i: number, q: string): number {
  let j = i + 1;
  while (j < sql.length) {
    if (sql[j] === q) {
      if (sql[j + 1] === q) j += 2;
      else return j + 1;
    } else j++;
  }
  return sql.length;
}

const SET_FORMS: [RegExp, string[]][] = [
  [/^set\s+(session\s+)?time\s+zone\b/, ['timezone']],
  [/^set\s+(session\s+)?names\b/, ['client_encoding']],
  [/^set\s+(session\s+)?schema\b/, ['search_path']],
  [/^set\s+(session\s+)?xml\s+option\b/, ['xmloption']],
  [/^set\s+(session\s+)?role\b/, ['role']],
  [/^set\s+session\s+authorization\b/, ['session_authorization', 'role']],
  [
    /^set\s+session\s+characteristics\b/,
    ['default_transaction_isolation', 'default_transaction_read_only', 'default_transaction_deferrable'],
  ],
];

/** Session state effects of one SQL text (a simple Query or a Parse). */
export function stateEffects(sql: string): StateEffects {
  return maybe(sql) ? analyze(sql) : NO_EFFECT;
}

/** stateEffects without the pre-filter (exported for the test that checks the filter loses nothing). */
export function analyze(sql: string): StateEffects {
  const fx: StateEffects = { gucs: [], resets: [], resetAll: false, pin: [], unpin: [], recheck: [] };
  for (const raw of statements(sql)) {
    const s = raw.toLowerCase().replace(/\s+/g, ' ');
    if (/^set\s+(local|transaction|constraints)\b/.test(s)) continue;
    if (s.startsWith('set ')) {
      const form = SET_FORMS.find(([re]) => re.test(s));
      if (form) fx.gucs.push(...form[1]);
      else {
        const m = /^set\s+(?:session\s+)?("(?:[^"]|"")+"|[a-z_][a-z0-9_$.]*)/.exec(s);
        if (m) fx.gucs.push(m[1].startsWith('"') ? m[1].slice(1, -1).replace(/""/g, '"') : m[1]);
      }
      continue;
    }
    if (s.startsWith('reset ')) {
      if (/^reset\s+all\b/.test(s)) fx.resetAll = true;
      else if (/^reset\s+session\s+authorization\b/.test(s)) fx.resets.push('session_authorization', 'role');
      else if (/^reset\s+time\s+zone\b/.test(s)) fx.resets.push('timezone');
      else {
        const m = /^reset\s+("(?:[^"]|"")+"|[a-z_][a-z0-9_$.]*)/.exec(s);
        if (m) fx.resets.push(m[1].startsWith('"') ? m[1].slice(1, -1) : m[1]);
      }
      continue;
    }
    if (/^discard\s+all\b/.test(s)) {
      fx.resetAll = true;
      fx.unpin.push('temp_table', 'advisory_lock', 'listen', 'with_hold_cursor', 'sql_prepare', 'set_config');
      continue;
    }
    if (/^discard\s+temp(orary)?\b/.test(s)) fx.unpin.push('temp_table');
    if (/^create\s+(or\s+replace\s+)?(global\s+|local\s+)?temp(orary)?\s/.test(s) && !/\bon\s+commit\s+drop\b/.test(s))
      fx.pin.push('temp_table');
    else if (/^create\s+(unlogged\s+)?(table|view|sequence)\s+pg_temp\./.test(s)) fx.pin.push('temp_table');
    else if (/^(select|with)\b.*\binto\s+(temp|temporary)\b/.test(s)) fx.pin.push('temp_table');
    if (/^listen\b/.test(s)) fx.pin.push('listen');
    if (/^unlisten\s+\*/.test(s)) fx.unpin.push('listen');
    if (/^declare\b.*\bwith\s+hold\b/.test(s)) fx.pin.push('with_hold_cursor');
    if (/^close\s+all\b/.test(s)) fx.unpin.push('with_hold_cursor');
    else if (/^close\s/.test(s)) fx.recheck.push('with_hold_cursor');
    if (/^drop\s/.test(s)) fx.recheck.push('temp_table');
    if (/\bpg_advisory_unlock(_shared)?\s*\(/.test(s)) fx.recheck.push('advisory_lock');
    if (/^prepare\s/.test(s)) fx.pin.push('sql_prepare');
    if (/^deallocate\s+(prepare\s+)?all\b/.test(s)) fx.unpin.push('sql_prepare');
    if (/^load\s/.test(s)) fx.pin.push('load');
    if (/\bpg_(try_)?advisory_lock(_shared)?\s*\(/.test(s)) fx.pin.push('advisory_lock');
    if (/\bpg_advisory_unlock_all\s*\(/.test(s)) fx.unpin.push('advisory_lock');
    if (/\bset_config\s*\(/.test(s)) setConfigNames(raw, sql, fx);
  }
  return fx;
}

/**
 * set_config(name, value, is_local) anywhere in a statement: its name when it is a literal; when it
 * is not (a column, a parameter), the GUC cannot be known and the client is pinned instead.
 * Quoted text is blanked in `blanked`, so literals are read from the original SQL.
 */
function setConfigNames(blanked: string, sql: string, fx: StateEffects): void {
  const calls = (blanked.match(/set_config\s*\(/gi) ?? []).length;
  const names = [...sql.matchAll(/set_config\s*\(\s*'((?:[^']|'')*)'/gi)].map((m) =>
    m[1].replace(/''/g, "'").toLowerCase(),
  );
  if (names.length >= calls) fx.gucs.push(...names);
  else fx.pin.push('set_config');
}

export function hasEffect(fx: StateEffects): boolean {
  return (
    fx !== NO_EFFECT &&
    (fx.gucs.length > 0 ||
      fx.resets.length > 0 ||
      fx.resetAll ||
      fx.pin.length > 0 ||
      fx.unpin.length > 0 ||
      fx.recheck.length > 0)
  );
}
