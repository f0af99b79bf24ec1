// The driver matrix (test/drivers-*.test.ts, one file per pool mode): every driver users run, with the statement shapes
// each really sends, through
// {session, transaction} x {routing off, on} x {prepared cache 0, 1000}, against a real primary and
// two streaming replicas, with more client connections than server connections (pool_size 2).
// Each workload checks where its reads ran, a parametrised loop, a large result, an error inside a
// batch, a rollback, and that it reads back its own committed write. Drivers that name their
// statements run as PgBouncer users run them where openproxy cannot keep names (transaction mode
// without the cache), and the named form gets openproxy's clear 26000 there.
// asyncpg, SQLAlchemy, psycopg 3, psycopg2 and pgjdbc come from Debian packages (.ci/run installs
// them); node-postgres and postgres.js from npm; pgbench from PostgreSQL.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PgCluster, SUPERPASS, SUPERUSER } from '../../testing/pg-cluster';
import { APP_PASS, APP_USER, createAppRole, until } from './db';
import { type Proxy, configFor, startProxy } from './proxy';
import { type DriverRun, nodePostgres, postgresJs, within } from './js-drivers';

const DIR = join(__dirname, '..', '..', '..', 'test', 'drivers');
const PYTHON = '/usr/bin/python3'; // Debian's, where the python3-* driver packages install
const SPLIT = 'query_parser_enabled = true\nquery_parser_read_write_splitting = true\n';
const POOL_SIZE = 2;
/** Deadline of one driver run (a hang fails here, with the driver's output so far). */
const RUN_MS = 120000;

let cluster: PgCluster;
let pgbench: string;

async function startCluster(): Promise<void> {
  cluster = await PgCluster.start({ replicas: 2 });
  createAppRole(cluster);
  cluster.psql(
    cluster.primary,
    `CREATE TABLE matrix_t (id serial PRIMARY KEY, who text NOT NULL, v ` +
      `int); GRANT ALL ON matrix_t TO ${APP_USER}; GRANT ALL ON SEQUENCE ` +
      `matrix_t_id_seq TO ${APP_USER};`,
  );
  pgbench = join(cluster.bin, 'pgbench');
  const init = spawnSync(
    pgbench,
    ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(cluster.primary.port), '-U', SUPERUSER, 'postgres'],
    { env: { ...process.env, PGPASSWORD: SUPERPASS }, encoding: 'utf8' },
  );
  assert.equal(init.status, 0, init.stderr);
  cluster.psql(
    cluster.primary,
    `GRANT ALL ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO ${APP_USER};`,
  );
  await until(
    () =>
      cluster.replicas.every(
        (r) =>
          cluster.psql(r, "SELECT count(*) FROM pg_class WHERE relname IN ('matrix_t', 'pgbench_history')").trim() ===
          '2',
      ),
    15000,
    'replicas caught up',
  );
}

/** Runs a driver's check program; its last line must be OK. Killed (and failed, with its output) after RUN_MS. */
function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (b) => (out += b));
    p.stderr.on('data', (b) => (out += b));
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} hung: killed after ${RUN_MS / 1000} s\n${out}`));
    }, RUN_MS);
    p.on('error', (e) => reject(e));
    p.on('close', (code) => {
      clearTimeout(t);
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}\n${out}`));
      else resolve(out);
    });
  });
}

async function runCheck(cmd: string, args: string[]): Promise<void> {
  const out = await run(cmd, args);
  assert.equal(out.trim().split('\n').pop(), 'OK', out);
}

/**
 * pgbench through openproxy, 30 transactions per client. pgbench connects every client before any
 * runs (its threads meet at a barrier), so in session mode, where each client holds a server for
 * its whole run, it runs as many clients as pool_size. With -M prepared it blocks a whole thread in
 * a synchronous PQprepare (Parse + Sync), so behind any transaction pooler a thread must not serve
 * more clients than can hold a server at once: one thread per client there; otherwise 6 clients
 * over pool_size 2, three on each of two threads.
 */
async function bench(port: number, mode: Mode, protocol: string, script: string[]): Promise<string> {
  const clients = mode === 'session' ? POOL_SIZE : 6;
  const threads = mode === 'session' || protocol === 'prepared' ? clients : 2;
  return run(
    pgbench,
    [
      '-n',
      '-c',
      String(clients),
      '-j',
      String(threads),
      '-t',
      '30',
      '-M',
      protocol,
      ...script,
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-U',
      APP_USER,
      'postgres',
    ],
    { PGPASSWORD: APP_PASS, PGCONNECT_TIMEOUT: '30' },
  );
}

type Mode = 'session' | 'transaction';

/** The matrix for one pool mode: {routing off, on} x {prepared cache 0, 1000}, every driver in each. */
export function driverMatrix(poolMode: Mode): void {
  before(startCluster);
  after(() => cluster?.stop());
  const CONFIGS: { mode: Mode; routing: boolean; cache: number }[] = [];
  for (const routing of [false, true]) for (const cache of [0, 1000]) CONFIGS.push({ mode: poolMode, routing, cache });

  for (const cfg of CONFIGS) {
    const label = `${cfg.mode} mode, routing ${cfg.routing ? 'on' : 'off'}, prepared cache ${cfg.cache}`;
    // Named statements can follow a client across server connections only with the cache on; a
    // session moves only when routing is on (its first read may bind it to a replica).
    const named = (cfg.mode === 'session' && !cfg.routing) || cfg.cache > 0;
    const tag = `${cfg.mode[0]}${cfg.routing ? 'r' : 'n'}${cfg.cache}`;
    describe(label, () => {
      let proxy: Proxy;
      let r: DriverRun;
      const argv = (who: string) => [
        String(proxy.port),
        cfg.mode,
        cfg.routing ? '1' : '0',
        named ? '1' : '0',
        String(POOL_SIZE),
        `${tag}-${who}`,
      ];
      before(async () => {
        proxy = await startProxy((port) =>
          configFor(
            cluster,
            port,
            `connect_timeout = 30000\nreplica_lag_interval = 100\nprepared_statements_cache_size = ${cfg.cache}`,
            [{ pool_mode: cfg.mode, pool_size: POOL_SIZE, extraPool: cfg.routing ? SPLIT : '' }],
          ),
        );
        r = { port: proxy.port, mode: cfg.mode, routing: cfg.routing, named, poolSize: POOL_SIZE, who: `${tag}-pg` };
      });
      after(() => proxy?.stop());

      test(`asyncpg (${named ? 'statement cache on' : 'statement_cache_size=0'}, pool, concurrent tasks)`, () =>
        runCheck(PYTHON, [join(DIR, 'asyncpg_check.py'), ...argv('asyncpg')]));
      test(`SQLAlchemy asyncio over asyncpg${named ? '' : ': refused with a clear 26000'}`, () =>
        runCheck(PYTHON, [join(DIR, 'sqlalchemy_check.py'), ...argv('sqlalchemy')]));
      test(`psycopg 3 (prepare_threshold=${named ? '0' : 'None'}, pipeline mode)`, () =>
        runCheck(PYTHON, [join(DIR, 'psycopg_check.py'), ...argv('psycopg')]));
      test('psycopg2', () => runCheck(PYTHON, [join(DIR, 'psycopg2_check.py'), ...argv('psycopg2')]));
      test(`pgjdbc (prepareThreshold=${named ? '5, run past it' : '0'})`, () =>
        runCheck('java', ['-cp', '/usr/share/java/postgresql.jar', join(DIR, 'JdbcCheck.java'), ...argv('jdbc')]));
      test(`node-postgres (${named ? 'named and unnamed' : 'unnamed; named refused with 26000'})`, () =>
        within(nodePostgres(r), 'node-postgres', RUN_MS));
      if (named)
        test('postgres.js (default: named statements)', () => within(postgresJs(r, true), 'postgres.js', RUN_MS));
      test('postgres.js (prepare: false)', () => within(postgresJs(r, false), 'postgres.js', RUN_MS));
      for (const m of ['simple', 'extended', 'prepared']) {
        if (m === 'prepared' && !named) {
          test('pgbench -M prepared: refused with the clear 26000', async () => {
            await assert.rejects(
              bench(proxy.port, cfg.mode, m, ['-S']),
              /named prepared statements need prepared_statements_cache_size > 0/,
            );
          });
          continue;
        }
        test(`pgbench -M ${m}: select-only and TPC-B-like`, async () => {
          for (const script of [['-S'], ['-b', 'tpcb-like']]) {
            const out = await bench(proxy.port, cfg.mode, m, script);
            const n = 30 * (cfg.mode === 'session' ? POOL_SIZE : 6);
            assert.match(out, new RegExp(`number of transactions actually processed: ${n}/${n}`), out);
            assert.match(out, /number of failed transactions: 0 /, out);
          }
        });
      }
      test('no client was pinned: named statements were served by the cache or the session', () => {
        assert.doesNotMatch(proxy.output(), /client pinned/);
      });
    });
  }
}
