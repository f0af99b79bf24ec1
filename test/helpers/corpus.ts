// The statement corpus of test/corpus/routes.txt (real ORM output, psql meta-queries, DDL, utility
// commands), shared by the routing and session-state tests.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export function corpus(): { route: string; sql: string; line: number }[] {
  // The corpus sits next to the compiled test's source: dist/test/helpers → ../../../test/corpus.
  const text = readFileSync(join(__dirname, '..', '..', '..', 'test', 'corpus', 'routes.txt'), 'utf8');
  const out: { route: string; sql: string; line: number }[] = [];
  text.split('\n').forEach((l, i) => {
    if (l.startsWith('#') || l === '') return;
    if (l.startsWith('\t') && out.length) out[out.length - 1].sql += `\n${l.slice(1)}`;
    else {
      const tab = l.indexOf('\t');
      out.push({ route: l.slice(0, tab), sql: l.slice(tab + 1), line: i + 1 });
    }
  });
  return out;
}
