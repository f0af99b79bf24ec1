// Real drivers that name their prepared statements, through transaction pooling with the
// prepared-statement cache and more client connections than server connections.
// asyncpg, psycopg 3 and the PostgreSQL JDBC driver come from Debian packages (.ci/run installs them).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PgCluster } from '../src/testing/pg-cluster';
import { createAppRole } from './helpers/db';
import { Proxy, configFor, startProxy } from './helpers/proxy';

const DIR = join(__dirname, '..', '..', 'test', 'drivers');
const PYTHON = '/usr/bin/python3'; // Debian's, where python3-asyncpg / python3-psycopg install
let cluster: PgCluster;
let proxy: Proxy;

before(async () => {
  cluster = await PgCluster.start();
  createAppRole(cluster);
  proxy = await startProxy((port) => configFor(cluster, port, 'connect_timeout = 20000\nprepared_statements_cache_size = 50', [{ pool_mode: 'transaction', pool_size: 2 }]));
});
after(async () => {
  await proxy?.stop();
  cluster?.stop();
});

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120000 });
  assert.equal(r.error, undefined, `${cmd}: ${r.error?.message}`);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}\n${r.stdout}\n${r.stderr}`);
  assert.equal(r.stdout.trim().split('\n').pop(), 'OK');
}

test('asyncpg (every statement named) with 8 connections over 2 server connections', () => {
  run(PYTHON, [join(DIR, 'asyncpg_check.py'), String(proxy.port)]);
});

test('psycopg 3 with prepare_threshold=0 with 6 connections over 2 server connections', () => {
  run(PYTHON, [join(DIR, 'psycopg_check.py'), String(proxy.port)]);
});

test('PostgreSQL JDBC past prepareThreshold with 5 connections over 2 server connections', () => {
  run('java', ['-cp', '/usr/share/java/postgresql.jar', join(DIR, 'JdbcCheck.java'), String(proxy.port)]);
});

test('none of them pinned a client: the cache served every named statement', () => {
  assert.doesNotMatch(proxy.output(), /client pinned/);
});
