// The read/write classifier against a corpus of real-world statements (ORM output, psql
// meta-queries, DDL, utility commands) with the route each must take.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Classifier, Verdict, classify } from '../src/routing/classify';
import { corpus } from './helpers/corpus';

const ROUTES: Record<string, Verdict> = { r: Verdict.Read, w: Verdict.Write, b: Verdict.Begin, ro: Verdict.ReadOnlyTx };
const NAMES: Record<number, string> = {
  [Verdict.Read]: 'r',
  [Verdict.Write]: 'w',
  [Verdict.Begin]: 'b',
  [Verdict.ReadOnlyTx]: 'ro',
};

test('corpus: at least 200 statements, every one routed as expected', () => {
  const entries = corpus();
  assert.ok(entries.length >= 200, `corpus has ${entries.length} statements`);
  const wrong: string[] = [];
  for (const e of entries) {
    assert.ok(e.route in ROUTES, `line ${e.line}: unknown route ${e.route}`);
    const got = classify(e.sql);
    if (got !== ROUTES[e.route])
      wrong.push(`line ${e.line}: expected ${e.route}, got ${NAMES[got]}: ${e.sql.slice(0, 120)}`);
  }
  assert.deepEqual(wrong, []);
});

test('corpus covers every route kind', () => {
  const kinds = new Set(corpus().map((e) => e.route));
  assert.deepEqual([...kinds].sort(), ['b', 'r', 'ro', 'w']);
});

test('classifier cache: hits, max length, learned writes, bounded size', () => {
  const c = new Classifier(3);
  assert.equal(c.verdict('SELECT 1', 0), Verdict.Read);
  assert.equal(c.verdict('SELECT 1', 0), Verdict.Read);
  assert.equal(c.size, 1);
  assert.equal(c.verdict('SELECT 12345', 5), null, 'longer than query_parser_max_length: not classified');
  c.learnWrite('SELECT my_writing_function()');
  assert.equal(c.verdict('SELECT my_writing_function()', 0), Verdict.Write);
  for (const s of ['SELECT 2', 'SELECT 3', 'SELECT 4']) c.verdict(s, 0);
  assert.equal(c.size, 3);
});
