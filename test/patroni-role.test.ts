// The rule that turns Patroni's answer and the SQL probe into a role (src/ha/patroni.ts), on the
// answers Patroni 3.0.2 gives (../shared/reference/patroni): a node is primary only when both agree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decideRole, type PatroniAnswer } from '../src/ha/patroni';
import { ROLE } from '../src/shared/layout';

const fixture = (name: string) =>
  JSON.parse(readFileSync(join(__dirname, '..', '..', 'test', 'fixtures', 'patroni', name), 'utf8')) as PatroniAnswer;

test('Patroni 3.0 "master" and later "primary" both mean primary, once the server is out of recovery', () => {
  const leader = fixture('patroni.leader.json');
  assert.equal(leader.role, 'master');
  assert.equal(decideRole(leader, false, '').role, ROLE.primary);
  assert.equal(decideRole({ role: 'primary', state: 'running' }, false, '').role, ROLE.primary);
});

test('Patroni says master while the node is still in recovery (promotion not finished): reads only', () => {
  const d = decideRole(fixture('patroni.leader.json'), true, '');
  assert.equal(d.role, ROLE.replica);
  assert.match(d.why, /still in recovery/);
});

test('a replica is a replica; a replica that accepts writes is fenced', () => {
  const replica = fixture('patroni.replica.json');
  assert.equal(replica.role, 'replica');
  assert.equal(decideRole(replica, true, '').role, ROLE.replica);
  assert.equal(decideRole(replica, false, '').role, ROLE.unknown);
  assert.equal(decideRole({ role: 'demoted', state: 'stopping' }, false, '').role, ROLE.unknown);
});

test('an unreachable API is never "unchanged": a writable node is fenced, a node in recovery serves reads only', () => {
  const fenced = decideRole(null, false, '');
  assert.equal(fenced.role, ROLE.unknown);
  assert.match(fenced.why, /fenced/);
  assert.equal(decideRole(null, true, '').role, ROLE.replica);
});

test('Patroni reports master but PostgreSQL does not answer (crashed under a running Patroni): unknown', () => {
  const d = decideRole(fixture('patroni.leader.json'), null, 'connect ECONNREFUSED');
  assert.equal(d.role, ROLE.unknown);
  assert.match(d.why, /ECONNREFUSED/);
  assert.equal(decideRole({ role: 'master', state: 'crashed' }, false, '').role, ROLE.unknown);
});
