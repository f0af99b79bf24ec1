// What statements do to session state (transaction pooling keeps server connections matching their
// clients and pins clients whose state cannot move). The cheap pre-filter in front of the analysis
// must never hide an effect: checked on the route corpus and on statements made to trip it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NO_EFFECT, analyze, hasEffect, stateEffects } from '../src/session/state-effects';
import { corpus } from './helpers/corpus';

const tricky = [
  'SET search_path TO s_a',
  "  set   TIME ZONE  'UTC'",
  '/* app=web */ SET statement_timeout = 5',
  '-- note\nSET application_name = x',
  'BEGIN; SET LOCAL work_mem = 1',
  'SELECT 1;SET DateStyle = ISO',
  'RESET ALL',
  'reset search_path',
  'DISCARD ALL',
  'DISCARD TEMP',
  'CREATE TEMP TABLE t (x int)',
  'CREATE TEMPORARY TABLE t (x int) ON COMMIT DROP',
  'CREATE TABLE pg_temp.t (x int)',
  'SELECT * INTO TEMP t2 FROM t',
  'LISTEN ch',
  'UNLISTEN *',
  'DECLARE c CURSOR WITH HOLD FOR SELECT 1',
  'CLOSE ALL',
  'PREPARE p AS SELECT 1',
  'DEALLOCATE ALL',
  "LOAD 'auto_explain'",
  'SELECT pg_advisory_lock(1)',
  'SELECT pg_try_advisory_lock_shared(1)',
  'SELECT pg_advisory_unlock_all()',
  "SELECT set_config('search_path', 's_b', false)",
  'SELECT set_config($1, $2, false)',
  'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 7',
  "UPDATE t SET note = 'reset; discard' WHERE id = 1",
  'SELECT temp FROM weather',
  'SELECT 1 AS hold, 2 AS close, 3 AS load',
  '(SELECT 1)',
];

test('the pre-filter never hides an effect the full analysis finds (corpus and tricky statements)', () => {
  const texts = [...corpus().map((e) => e.sql), ...tricky];
  assert.ok(texts.length > 300);
  const lost: string[] = [];
  for (const sql of texts) {
    const full = analyze(sql);
    const fast = stateEffects(sql);
    if (hasEffect(full) && fast === NO_EFFECT) lost.push(sql);
    else if (fast !== NO_EFFECT) assert.deepEqual(fast, full, sql);
  }
  assert.deepEqual(lost, []);
});

test('UPDATE … SET and ordinary SELECTs take the cheap path; commands at a statement start do not', () => {
  for (const sql of [
    'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 7',
    'SELECT abalance FROM pgbench_accounts WHERE aid = 7',
    'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 1, CURRENT_TIMESTAMP)',
  ]) {
    assert.equal(stateEffects(sql), NO_EFFECT, sql);
  }
  assert.deepEqual(stateEffects('/* app */ SET statement_timeout = 5').gucs, ['statement_timeout']);
  assert.deepEqual(stateEffects('SELECT 1;SET DateStyle = ISO').gucs, ['datestyle']);
  assert.deepEqual(stateEffects('BEGIN; SET LOCAL work_mem = 1'), analyze('BEGIN; SET LOCAL work_mem = 1'));
  assert.deepEqual(stateEffects('DECLARE c CURSOR WITH HOLD FOR SELECT 1').pin, ['with_hold_cursor']);
  assert.deepEqual(stateEffects('SELECT pg_advisory_lock(1)').pin, ['advisory_lock']);
  assert.deepEqual(stateEffects('CREATE TEMP TABLE t (x int)').pin, ['temp_table']);
});

test('statements that may end a pin are marked for a server-side recheck', () => {
  assert.deepEqual(stateEffects('DROP TABLE t1').recheck, ['temp_table']);
  assert.deepEqual(stateEffects('drop view if exists v').recheck, ['temp_table']);
  assert.deepEqual(stateEffects('CLOSE c1').recheck, ['with_hold_cursor']);
  assert.deepEqual(stateEffects('CLOSE ALL').recheck, []);
  assert.deepEqual(stateEffects('CLOSE ALL').unpin, ['with_hold_cursor']);
  assert.deepEqual(stateEffects('SELECT pg_advisory_unlock(1)').recheck, ['advisory_lock']);
  assert.deepEqual(stateEffects('SELECT pg_advisory_unlock_shared(1)').recheck, ['advisory_lock']);
  assert.ok(hasEffect(stateEffects('DROP TABLE t1')));
  // Not a statement start: no recheck.
  assert.equal(stateEffects("SELECT 'drop table t'"), NO_EFFECT);
});
