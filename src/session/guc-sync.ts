// Making a server connection's GUCs match the client that is about to use it: the statement
// that gets from what the connection has to what the client wants, sending only differences.

const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;
const ident = (s: string) => `"${s.replace(/"/g, '""')}"`;

/**
 * `have`: GUCs set on the server connection beyond its defaults; `want`: what the client set;
 * `reported`: the connection's ParameterStatus values by lower-case name (already-equal ones need nothing).
 * Returns '' when they already match. set_config() takes the value as one string, exactly as
 * current_setting() reported it, so list values (search_path) round-trip.
 */
export function gucSyncStatement(
  have: ReadonlyMap<string, string>,
  want: ReadonlyMap<string, string>,
  reported?: ReadonlyMap<string, string>,
): string {
  const parts: string[] = [];
  for (const name of have.keys()) if (!want.has(name)) parts.push(`RESET ${ident(name)}`);
  const sets: string[] = [];
  for (const [name, value] of want) {
    const current = have.get(name) ?? reported?.get(name);
    if (current !== value) sets.push(`set_config(${literal(name)}, ${literal(value)}, false)`);
  }
  if (sets.length) parts.push(`SELECT ${sets.join(', ')}`);
  return parts.join('; ');
}

/** gucSyncStatement(...) === '', without building the statement (checked on every transaction). */
export function gucsMatch(
  have: ReadonlyMap<string, string>,
  want: ReadonlyMap<string, string>,
  reported?: ReadonlyMap<string, string>,
): boolean {
  if (have.size > 0) for (const name of have.keys()) if (!want.has(name)) return false;
  for (const [name, value] of want) if ((have.get(name) ?? reported?.get(name)) !== value) return false;
  return true;
}

/** The query reading back the current value of each GUC a transaction may have changed. */
export function gucReadStatement(names: string[]): string {
  return `SELECT ${names.map((n) => `current_setting(${literal(n)}, true)`).join(', ')}`;
}
