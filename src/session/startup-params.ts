// The GUCs a client asks for in its startup packet (its own parameters and `options=-c …`).

/** Startup keys that are not GUCs. */
const NOT_GUC = new Set(['user', 'database', 'options', 'replication']);

/** `-c name=value` and `--name=value` pairs from the `options` startup parameter (backslash escapes spaces). */
export function parseOptions(options: string): [string, string][] | string {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  for (let i = 0; i < options.length; i++) {
    const ch = options[i];
    if (ch === '\\' && i + 1 < options.length) {
      cur += options[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  const out: [string, string][] = [];
  for (let i = 0; i < words.length; i++) {
    let w = words[i];
    if (w === '-c') w = words[++i] ?? '';
    else if (w.startsWith('-c')) w = w.slice(2);
    else if (w.startsWith('--')) w = w.slice(2);
    else {
      const supported = 'only -c name=value and --name=value are supported';
      return `unsupported startup option ${JSON.stringify(words[i])}: ${supported}`;
    }
    const eq = w.indexOf('=');
    if (eq <= 0) return `invalid startup option ${JSON.stringify(w)}: expected name=value`;
    out.push([w.slice(0, eq).replace(/-/g, '_'), w.slice(eq + 1)]);
  }
  return out;
}

/** The GUCs a client asked for at startup, in order, later ones winning. */
export function clientGucs(params: Map<string, string>): [string, string][] | string {
  const out = new Map<string, string>();
  for (const [k, v] of params) {
    if (NOT_GUC.has(k)) continue;
    out.set(k, v);
  }
  const opts = params.get('options');
  if (opts) {
    const parsed = parseOptions(opts);
    if (typeof parsed === 'string') return parsed;
    for (const [k, v] of parsed) out.set(k, v);
  }
  return [...out];
}
