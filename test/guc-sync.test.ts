// The statement that makes a server connection's GUCs match a client's, and the allocation-free
// check used on every transaction: they must agree on "nothing to send".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gucSyncStatement, gucsMatch } from '../src/session/guc-sync';

const m = (o: Record<string, string>) => new Map(Object.entries(o));

const cases: [string, Record<string, string>, Record<string, string>, Record<string, string>, string][] = [
  ['nothing set anywhere', {}, {}, {}, ''],
  [
    'the server already reports the wanted value',
    {},
    { application_name: 'pgbench' },
    { application_name: 'pgbench' },
    '',
  ],
  [
    'reported value differs',
    {},
    { application_name: 'a' },
    { application_name: 'b' },
    `SELECT set_config('application_name', 'a', false)`,
  ],
  ['set on the connection, same value', { timezone: 'UTC' }, { timezone: 'UTC' }, {}, ''],
  ['set on the connection, the client does not want it', { search_path: 's_a' }, {}, {}, 'RESET "search_path"'],
  [
    'quotes are escaped',
    {},
    { search_path: `"it's", public` },
    {},
    `SELECT set_config('search_path', '"it''s", public', false)`,
  ],
  [
    'reset one and set another',
    { search_path: 's_a' },
    { datestyle: 'ISO, DMY' },
    { datestyle: 'ISO, MDY' },
    `RESET "search_path"; SELECT set_config('datestyle', 'ISO, DMY', false)`,
  ],
];

for (const [name, have, want, reported, sql] of cases) {
  test(`GUC sync: ${name}`, () => {
    assert.equal(gucSyncStatement(m(have), m(want), m(reported)), sql);
    assert.equal(gucsMatch(m(have), m(want), m(reported)), sql === '');
  });
}
