// The routing decision over a client's buffered batch (routing/batch.ts, routing/client-route.ts)
// and the read-retry window's judgement of server replies (session/replay.ts), as pure functions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { batchHead, batchVerdict, type BatchVerdict } from '../src/routing/batch';
import { Classifier, Verdict } from '../src/routing/classify';
import { ReadReplay, Reply, firstReply } from '../src/session/replay';
import { be, fe } from '../testing/scripted';

const judge = new Classifier();
const verdictOf = (buf: Buffer, texts: { textOf(n: string): string | undefined } | null = null) => {
  const out: BatchVerdict = { verdict: null, sql: '' };
  batchVerdict(out, buf, 0, buf.length, judge, 0, texts);
  return out;
};

test('batch verdict: a simple read, a write, and the first transaction only', () => {
  assert.deepEqual(verdictOf(fe.query('SELECT 1')), { verdict: Verdict.Read, sql: 'SELECT 1' });
  assert.equal(verdictOf(fe.query('INSERT INTO t VALUES (1)')).verdict, Verdict.Write);
  const two = Buffer.concat([fe.query('SELECT 1'), fe.query('DELETE FROM t')]);
  assert.equal(verdictOf(two).verdict, Verdict.Read, 'the second Query is judged when it is forwarded');
});

test('batch verdict: extended protocol is judged by the Parse text; a Bind of a known name by its text', () => {
  const unnamed = Buffer.concat([fe.parse('SELECT 1'), fe.bind(), fe.execute(), fe.sync()]);
  assert.equal(verdictOf(unnamed).verdict, Verdict.Read);
  const named = Buffer.concat([fe.parse('SELECT 2', 's1'), fe.bind('s1'), fe.execute(), fe.sync()]);
  assert.equal(verdictOf(named).verdict, Verdict.Read, 'Parse and Bind of one name in one batch: judged at the Parse');
  const later = Buffer.concat([fe.bind('s1'), fe.execute(), fe.sync()]);
  assert.equal(verdictOf(later).verdict, Verdict.Write, 'an unknown prepared statement goes to the primary');
  assert.equal(verdictOf(later, { textOf: () => 'SELECT 3' }).verdict, Verdict.Read, 'the cache knows its text');
  const mixed = Buffer.concat([fe.parse('SELECT 1'), fe.bind(), fe.parse('UPDATE t SET x = 1'), fe.sync()]);
  assert.equal(verdictOf(mixed).verdict, Verdict.Write, 'any write in the batch wins');
});

test('batch head: the first statement and its Bind parameters, for the sharding key', () => {
  const buf = Buffer.concat([fe.parse('SELECT * FROM a WHERE id = $1'), fe.bind('', ['42']), fe.sync()]);
  assert.deepEqual(batchHead(buf, 0, buf.length, null), { sql: 'SELECT * FROM a WHERE id = $1', params: ['42'] });
  const partial = fe.query('SELECT 1').subarray(0, 8);
  assert.deepEqual(batchHead(partial, 0, partial.length, null), { sql: '', params: null }, 'partial: nothing');
});

test('retry window: headers wait, a real answer ends it, a refusal or shutdown means retry', () => {
  assert.equal(firstReply(Buffer.concat([be.parseComplete(), be.rowDesc()]), true), Reply.Wait);
  assert.equal(firstReply(Buffer.concat([be.rowDesc(), be.dataRow('1')]), true), Reply.Forward);
  assert.equal(firstReply(be.error('25006', 'read-only'), true), Reply.Retry);
  assert.equal(firstReply(be.error('25006', 'read-only'), false), Reply.Forward, 'the primary refusing is final');
  assert.equal(firstReply(be.error('57P01', 'terminating'), false), Reply.RetryBan);
  assert.equal(firstReply(be.error('22012', 'division by zero'), true), Reply.Forward);
});

test('retry window: held headers are kept, never dropped, and go out once the answer starts', () => {
  const r = new ReadReplay();
  r.arm(0, 0);
  assert.equal(r.keep(fe.query('SELECT 1'), 0, fe.query('SELECT 1').length), true);
  assert.equal(r.judge(be.rowDesc(), true), Reply.Wait);
  assert.equal(r.judge(be.dataRow('1'), true), Reply.Forward);
  assert.equal(r.reply().length, be.rowDesc().length + be.dataRow('1').length, 'held RowDescription + DataRow');
  assert.equal(r.armed, false);
  r.arm(0, 0);
  r.flushed = true;
  assert.equal(r.judge(be.parseComplete(), true), Reply.Forward, 'after a Flush the headers are the answer');
  r.arm(0, 0);
  assert.equal(r.keep(Buffer.alloc(70000), 0, 70000), false, 'a batch over 64 KiB is not kept for a retry');
  r.arm(1, 2);
  const q = fe.query('SELECT 1');
  r.keep(q, 0, q.length);
  assert.deepEqual(r.takeForRetry(), q);
  assert.deepEqual([r.pendingReady, r.sinceSync, r.tries, r.armed], [1, 2, 1, false]);
});
