// The data path's roles without a process: a real ClientSession and real ServerConns on in-memory
// sockets (testing/scripted.ts). Each check feeds client messages and scripted server replies
// and asserts exactly what was forwarded to which server and what reached the client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BAN } from '../src/shared/layout';
import { be, fe, harness } from '../testing/scripted';

const TX = 'pool_mode = "transaction"';
const ROUTED = `${TX}\nquery_parser_enabled = true\nquery_parser_read_write_splitting = true`;

test('transaction mode: a query is forwarded as sent, its answer as received, then the server goes back', async () => {
  const h = await harness(TX);
  assert.equal(h.servers.length, 1, 'the login opened one server connection');
  const s = h.servers[0];
  assert.equal(h.session.server, null, 'no server held between transactions');
  h.send(fe.query('SELECT 1'));
  assert.equal(s.sent(), 'Q');
  assert.equal(h.session.server, s.conn);
  s.answer(be.rowDesc(), be.dataRow('1'), be.complete('SELECT 1'), be.ready());
  assert.equal(h.received(), 'TDCZ');
  assert.equal(h.session.server, null, 'released at ReadyForQuery I');
  assert.equal(h.session.transactions, 1);
});

test('a lone Flush with no server held is answered by silence and takes no server', async () => {
  const h = await harness(TX);
  h.send(fe.flush());
  await h.settle();
  assert.equal(h.received(), '');
  assert.equal(h.servers[0].sent(), '');
  assert.equal(h.session.server, null);
});

test('routing on: a Flush-terminated describe-first batch gets its header replies at once', async () => {
  const h = await harness(ROUTED, [5001, 5002]);
  h.send(fe.parse('SELECT 1'), fe.describe(), fe.flush());
  await h.settle();
  const [replica] = h.at(5002).filter((s) => s.conn.owner !== null);
  assert.ok(replica, 'the read went to the replica');
  assert.equal(replica.sent(), 'PDH');
  replica.answer(be.parseComplete(), be.paramDesc(), be.rowDesc());
  assert.equal(h.received(), '1tT', 'ParseComplete, ParameterDescription, RowDescription are not held back');
  h.send(fe.bind(), fe.execute(), fe.sync());
  assert.equal(replica.sent(), 'BES', 'the rest of the statement goes to the same server');
  replica.answer(be.bindComplete(), be.dataRow('1'), be.complete('SELECT 1'), be.ready());
  assert.equal(h.received(), '2DCZ');
  assert.equal(h.session.server, null);
});

test('an error mid-pipeline: the server is held until every Sync is answered', async () => {
  const h = await harness(TX);
  const s = h.servers[0];
  const one = [fe.parse('SELECT 1/0'), fe.bind(), fe.execute(), fe.sync()];
  const two = [fe.parse('SELECT 2'), fe.bind(), fe.execute(), fe.sync()];
  h.send(...one, ...two);
  assert.equal(s.sent(), 'PBESPBES');
  s.answer(be.parseComplete(), be.bindComplete(), be.error('22012', 'division by zero'), be.ready());
  assert.equal(h.received(), '12EZ');
  assert.equal(h.session.server, s.conn, 'the second Sync is still owed');
  s.answer(be.parseComplete(), be.bindComplete(), be.dataRow('2'), be.complete('SELECT 1'), be.ready());
  assert.equal(h.received(), '12DCZ');
  assert.equal(h.session.server, null);
  assert.equal(h.session.errors, 1);
});

test('retry before the first reply: a replica that dies costs a retry elsewhere, not an error', async () => {
  const h = await harness(`${ROUTED}\nprimary_reads_enabled = false`, [5001, 5002, 5003]);
  h.send(fe.query('SELECT 1'));
  await h.settle();
  const first = h.servers.find((s) => s.conn.owner !== null)!;
  assert.notEqual(first.port, 5001, 'a replica takes the read');
  assert.equal(first.sent(), 'Q');
  first.die();
  await h.settle();
  await h.settle();
  const second = h.servers.find((s) => s.conn.owner !== null)!;
  assert.ok(second && second !== first, 'another server holds the retried read');
  assert.notEqual(second.port, first.port);
  assert.equal(second.sent(), 'Q', 'the same bytes, sent again');
  second.answer(be.rowDesc(), be.dataRow('1'), be.complete('SELECT 1'), be.ready());
  assert.equal(h.received(), 'TDCZ', 'the client sees one answer and no error');
  const slot = h.ctx.registry.userPools()[0].shards[0].find((e) => e.address.port === first.port)!.pool.slot;
  assert.equal(h.ctx.shared.serverBanReason[slot], BAN.closed, 'the dead replica is banned');
  assert.ok(h.ctx.shared.banned(slot, Date.now()));
});

test('a replica refusing a read as a write (25006): retried on the primary, learned for next time', async () => {
  const h = await harness(ROUTED, [5001, 5002]);
  h.send(fe.query('SELECT nextval_like_thing()'));
  await h.settle();
  const replica = h.servers.find((s) => s.conn.owner !== null)!;
  assert.equal(replica.port, 5002);
  replica.sent();
  replica.answer(be.error('25006', 'cannot execute nextval() in a read-only transaction'), be.ready());
  await h.settle();
  await h.settle();
  const primary = h.servers.find((s) => s.conn.owner !== null)!;
  assert.equal(primary.port, 5001);
  assert.equal(primary.sent(), 'Q');
  primary.answer(be.rowDesc(), be.dataRow('1'), be.complete('SELECT 1'), be.ready());
  assert.equal(h.received(), 'TDCZ', "the replica's refusal never reached the client");
  h.send(fe.query('SELECT nextval_like_thing()'));
  await h.settle();
  assert.equal(h.servers.find((s) => s.conn.owner !== null)?.port, 5001, 'the same text now goes to the primary');
});

test('after the first reply there is no retry: the client gets 08006 at a message boundary', async () => {
  const h = await harness(`${ROUTED}\nprimary_reads_enabled = false`, [5001, 5002, 5003]);
  h.send(fe.query('SELECT 1'));
  await h.settle();
  const first = h.servers.find((s) => s.conn.owner !== null)!;
  first.sent();
  first.answer(be.rowDesc(), be.dataRow('1'));
  assert.equal(h.received(), 'TD');
  first.die();
  await h.settle();
  const out = h.client.take();
  assert.equal(out[0], 0x45, 'an ErrorResponse');
  assert.match(out.toString('latin1'), /08006/);
  assert.equal(h.session.closed, true);
  assert.ok(
    h.servers.every((s) => s === first || s.sent() === ''),
    'nothing was sent again',
  );
});

test('pinning: a temp table keeps the server across transactions; DISCARD ALL gives it back', async () => {
  const h = await harness(TX);
  const s = h.servers[0];
  h.send(fe.query('CREATE TEMP TABLE t (x int)'));
  assert.equal(s.sent(), 'Q');
  s.answer(be.complete('CREATE TABLE'), be.ready());
  assert.equal(h.received(), 'CZ');
  assert.equal(h.session.server, s.conn, 'pinned: the server stays');
  assert.deepEqual([...h.session.pins], ['temp_table']);
  h.send(fe.query('SELECT * FROM t'));
  assert.equal(s.sent(), 'Q', 'the next transaction runs on the same connection');
  s.answer(be.rowDesc(), be.complete('SELECT 0'), be.ready());
  assert.equal(h.received(), 'TCZ');
  assert.equal(h.session.server, s.conn);
  h.send(fe.query('DISCARD ALL'));
  assert.equal(s.sent(), 'Q');
  s.answer(be.complete('DISCARD ALL'), be.ready());
  await h.settle();
  assert.equal(h.received(), 'CZ');
  assert.equal(h.session.pins.size, 0);
  assert.equal(h.session.server, null, 'unpinned: back to the pool');
});

test('SET in transaction mode: the value is read back on the held server, out of the client’s sight', async () => {
  const h = await harness(TX);
  const s = h.servers[0];
  h.send(fe.query("SET search_path = 'app'"));
  assert.equal(s.sent(), 'Q');
  s.answer(be.complete('SET'), be.ready());
  assert.equal(h.received(), 'CZ');
  assert.equal(s.sent(), 'Q', 'openproxy reads the setting back');
  assert.equal(h.session.server, s.conn, 'held while the read-back runs');
  h.send(fe.query('SELECT 2'));
  assert.equal(s.sent(), '', 'client messages wait for the read-back');
  s.answer(be.rowDesc(), be.dataRow('app'), be.complete('SELECT 1'), be.ready());
  await h.settle();
  assert.equal(h.received(), '', 'the read-back answer is not the client’s');
  assert.equal(h.session.gucs.get('search_path'), 'app');
  assert.equal(s.sent(), 'Q', 'then the waiting query goes out');
  s.answer(be.rowDesc(), be.dataRow('2'), be.complete('SELECT 1'), be.ready());
  assert.equal(h.received(), 'TDCZ');
  assert.equal(h.session.server, null);
});

test('Terminate ends the session and the idle server stays pooled', async () => {
  const h = await harness(TX);
  h.send(fe.terminate());
  await h.settle();
  assert.equal(h.session.closed, true);
  assert.equal(h.servers[0].conn.closed, false);
  assert.equal(h.servers[0].sent(), '');
});
