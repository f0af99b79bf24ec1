// PgBouncer's auth_file (userlist.txt): one user per line, `"name" "password"`, each field in double
// quotes ("" inside a field is one quote), anything after the second field ignored; blank lines and
// lines starting with ; or # are skipped. The password may be plain text, an md5 secret or a SCRAM
// verifier. A pool user without `password` in the TOML takes it from here.

import { readFileSync } from 'node:fs';
import { ConfigError } from './error';

/** Users and passwords of an auth_file; a malformed line is a ConfigError naming file and line. */
export function readAuthFile(path: string): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`general.auth_file: cannot read ${path}: ${(e as Error).message}`);
  }
  const users = new Map<string, string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith(';') || line.startsWith('#')) return;
    const fields: string[] = [];
    let p = 0;
    while (fields.length < 2) {
      while (line[p] === ' ' || line[p] === '\t') p++;
      if (line[p] !== '"') break;
      let value = '';
      let q = p + 1;
      for (; q < line.length; q++) {
        if (line[q] !== '"') value += line[q];
        else if (line[q + 1] === '"') {
          value += '"';
          q++;
        } else break;
      }
      if (q >= line.length) break; // no closing quote
      fields.push(value);
      p = q + 1;
    }
    if (fields.length < 2)
      throw new ConfigError(
        `general.auth_file: ${path} line ${i + 1}: expected "user" "password" (each in double quotes)`,
      );
    users.set(fields[0], fields[1]);
  });
  return users;
}
