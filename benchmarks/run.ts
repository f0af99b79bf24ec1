// `npm run bench`: pgbench against PostgreSQL directly, through openproxy and through PgBouncer,
// interleaved in one run on one throwaway cluster; writes benchmarks/RESULTS.md with TPS and
// latency (p50 / p99 from pgbench's per-transaction logs) and the ratios between them.
//
// Environment: BENCH_SECONDS (per run, default 10), BENCH_CLIENTS (default "10,100,500"),
// BENCH_PROTOCOLS (default "simple,extended,prepared"), BENCH_MODE (pool mode for both poolers,
// default transaction), BENCH_POOL (server connections, default 20 in transaction mode, the client
// count in session mode), BENCH_SCALE (pgbench -s, default 10), BENCH_WORKERS (openproxy worker_threads, default one
// per core),
// BENCH_NODE_ARGS (extra node flags for openproxy, e.g. "--cpu-prof --cpu-prof-dir=DIR").

import { type ChildProcess, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, chmodSync } from 'node:fs';
import { writeHead, writeSection } from './results';
import os from 'node:os';
import { join } from 'node:path';
import { PgCluster } from '../testing/pg-cluster';
import { contextSwitches, cpuMicros } from './proc';
import { type CapacityRow, capacityModel } from './capacity';
import { benchWorkers, pgbouncerBinary, startFloor, startOpenproxy, startPgBouncer, teardown } from './poolers';

const SECONDS = Number(process.env.BENCH_SECONDS) || 10;
const CLIENTS = (process.env.BENCH_CLIENTS ?? '10,100,500').split(',').map(Number);
const PROTOCOLS = (process.env.BENCH_PROTOCOLS ?? 'simple,extended,prepared').split(',');
const MODE = process.env.BENCH_MODE ?? 'transaction';
const SCALE = Number(process.env.BENCH_SCALE) || 10;
const WORKLOADS = (process.env.BENCH_WORKLOADS ?? 'select-only,tpcb-like').split(',');
const USER = 'bench';
const PASS = 'bench-pass';

interface Result {
  tps: number;
  p50: number;
  p99: number;
  failed: number;
  /** Transactions pgbench completed. */
  xacts: number;
  /** CPU the pooler process used during the run (all threads, user + system), µs per transaction. */
  cpuPerXact: number;
  /** The pooler's voluntary and involuntary context switches per transaction (all threads). */
  csPerXact: [number, number];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * pgbench threads: 2, except TPC-B with -M prepared: pgbench prepares each statement with a
 * blocking PQprepare on first use, and in transaction pooling a thread blocked there while its
 * other clients hold server connections inside BEGIN … END stalls every pooler (measured: 1 tps
 * with 10 clients per thread and 20 connections). That row runs one client per thread.
 */
function threads(clients: number, protocol: string, selectOnly: boolean): number {
  if (protocol !== 'prepared' || selectOnly || MODE !== 'transaction') return Math.min(2, clients);
  return clients;
}

function pgbench(
  port: number,
  clients: number,
  protocol: string,
  selectOnly: boolean,
  logDir: string,
  jobs: number,
  poolerPid?: number,
): Result {
  for (const f of readdirSync(logDir)) rmSync(join(logDir, f));
  const cpu0 = cpuMicros(poolerPid);
  const cs0 = contextSwitches(poolerPid);
  const args = [
    '-n',
    '-c',
    String(clients),
    '-j',
    String(jobs),
    '-T',
    String(SECONDS),
    '-M',
    protocol,
    '-l',
    '--sampling-rate',
    '0.2',
    '--log-prefix',
    join(logDir, 'pgb'),
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-U',
    USER,
  ];
  if (selectOnly) args.push('-S');
  args.push('postgres');
  const r = spawnSync('pgbench', args, {
    encoding: 'utf8',
    env: { ...process.env, PGPASSWORD: PASS },
    timeout: (SECONDS + 60) * 1000,
  });
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout)?.[1] ?? NaN);
  const failed = Number(/number of failed transactions: (\d+)/.exec(r.stdout)?.[1] ?? (r.status === 0 ? 0 : NaN));
  const xacts = Number(/number of transactions actually processed: (\d+)/.exec(r.stdout)?.[1] ?? NaN);
  const cpuPerXact = (cpuMicros(poolerPid) - cpu0) / xacts;
  const cs1 = contextSwitches(poolerPid);
  const csPerXact: [number, number] = [(cs1[0] - cs0[0]) / xacts, (cs1[1] - cs0[1]) / xacts];
  const lat: number[] = [];
  for (const f of readdirSync(logDir)) {
    for (const line of readFileSync(join(logDir, f), 'utf8').split('\n')) {
      const v = line.split(' ');
      if (v.length > 3) lat.push(Number(v[2]));
    }
  }
  lat.sort((a, b) => a - b);
  if (r.status !== 0) process.stdout.write(`pgbench failed on port ${port}: ${r.stderr}\n`);
  return {
    tps,
    p50: percentile(lat, 50) / 1000,
    p99: percentile(lat, 99) / 1000,
    failed,
    xacts,
    cpuPerXact,
    csPerXact,
  };
}

async function main(): Promise<void> {
  const pgbouncerBin = pgbouncerBinary();
  const maxClients = Math.max(...CLIENTS);
  const pool = Number(process.env.BENCH_POOL) || (MODE === 'session' ? maxClients : 20);
  const pbVersion = spawnSync(pgbouncerBin, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
  const [maj, min] = (/(\d+)\.(\d+)/.exec(pbVersion) ?? ['', '1', '0']).slice(1).map(Number);
  // Protocol-level prepared statements in transaction mode arrived in PgBouncer 1.21 (max_prepared_statements).
  const pbPrepared = MODE !== 'transaction' || maj > 1 || min >= 21;
  process.stdout.write(`bench: ${SECONDS}s per run, clients ${CLIENTS.join('/')}, pool mode ${MODE}\n`);
  const cluster = await PgCluster.start({ settings: { max_connections: maxClients + 3 * pool + 50 } });
  const work = mkdtempSync(join(os.tmpdir(), 'openproxy-bench-'));
  chmodSync(work, 0o777);
  const procs: ChildProcess[] = [];
  const finish = teardown(cluster, work, procs);
  try {
    cluster.psql(
      cluster.primary,
      `SET password_encryption = 'md5'; CREATE ROLE ${USER} LOGIN PASSWORD ` +
        `'${PASS}'; GRANT CREATE ON DATABASE postgres TO ${USER}; GRANT ALL ON ` +
        `SCHEMA public TO ${USER}`,
    );
    const init = spawnSync(
      'pgbench',
      ['-i', '-q', '-s', String(SCALE), '-h', '127.0.0.1', '-p', String(cluster.primary.port), '-U', USER, 'postgres'],
      { encoding: 'utf8', env: { ...process.env, PGPASSWORD: PASS } },
    );
    if (init.status !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);

    const op = await startOpenproxy(work, cluster.primary.port, USER, PASS, MODE, pool);
    procs.push(op.proc);
    const pb = await startPgBouncer(work, cluster.primary.port, USER, PASS, MODE, pool, maxClients * 2 + 100);
    procs.push(pb.proc);
    const opPort = op.port;
    const pbPort = pb.port;
    // The Node floor only pools transactions (it has no session mode).
    const floor = MODE === 'transaction' ? await startFloor(cluster.primary.port, USER, PASS, pool) : null;
    if (floor) procs.push(floor.proc);
    const op1 = await startOpenproxy(work, cluster.primary.port, USER, PASS, MODE, pool, 1);
    procs.push(op1.proc);

    const logDir = join(work, 'pgbench-logs');
    spawnSync('mkdir', ['-p', logDir]);
    const targets: [string, number, number | undefined][] = [
      ['direct', cluster.primary.port, undefined],
      ['openproxy', opPort, op.pid()],
      ['pgbouncer', pbPort, pb.pid()],
      ...(floor ? [['floor', floor.port, floor.pid()] as [string, number, number]] : []),
      ['openproxy-1w', op1.port, op1.pid()],
    ];
    const rows: string[] = [];
    const na: Result = { tps: NaN, p50: NaN, p99: NaN, failed: 0, xacts: NaN, cpuPerXact: NaN, csPerXact: [NaN, NaN] };
    /** Per pooler and row: CPU and context switches per transaction (the second table). */
    const perXact: string[] = [];
    /** Per row: CPU per transaction of openproxy (2 and 1 workers) and PgBouncer, for the capacity model. */
    const capacity: CapacityRow[] = [];
    const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
    for (const selectOnly of [true, false].filter((x) => WORKLOADS.includes(x ? 'select-only' : 'tpcb-like'))) {
      for (const protocol of PROTOCOLS) {
        for (const clients of CLIENTS) {
          const jobs = threads(clients, protocol, selectOnly);
          const res: Record<string, Result> = {};
          for (const [name, port, pid] of targets) {
            res[name] =
              (name === 'pgbouncer' && protocol === 'prepared' && !pbPrepared) ||
              (name === 'floor' && protocol === 'prepared')
                ? na
                : pgbench(port, clients, protocol, selectOnly, logDir, jobs, pid);
            process.stdout.write(
              `${selectOnly ? 'select-only' : 'tpcb-like'} ${protocol} c=${clients} ` +
                `j=${jobs} ${name}: ${fmt(res[name].tps)} tps p99 ` +
                `${fmt(res[name].p99, 2)} ms failed ${res[name].failed} pooler CPU ` +
                `${fmt(res[name].cpuPerXact, 1)} µs/xact\n`,
            );
          }
          const d = res.direct;
          const o = res.openproxy;
          const b = res.pgbouncer;
          const f = res.floor ?? na;
          rows.push(
            `| ${selectOnly ? 'select-only' : 'tpcb-like'} | ${protocol} | ` +
              `${clients} | ${jobs} | ${fmt(d.tps)} | ${fmt(o.tps)} | ${fmt(b.tps)} | ${fmt(f.tps)} ` +
              `| **${fmt(o.tps / b.tps, 2)}** | ${fmt(o.tps / d.tps, 2)} | ` +
              `${fmt(d.p99, 2)} / ${fmt(o.p99, 2)} / ${fmt(b.p99, 2)} | ` +
              `${fmt(o.p99 / b.p99, 2)} | ${fmt(o.cpuPerXact, 1)} / ${fmt(f.cpuPerXact, 1)} / ` +
              `${fmt(b.cpuPerXact, 1)} | **${fmt(o.cpuPerXact / f.cpuPerXact, 2)}** | ` +
              `${o.failed + (Number.isFinite(b.tps) ? b.failed : 0) + d.failed} |`,
          );
          const cell = (r: Result | undefined) =>
            r && Number.isFinite(r.cpuPerXact)
              ? `${fmt(r.cpuPerXact, 1)} · ${fmt(r.csPerXact[0], 2)} · ${fmt(r.csPerXact[1], 2)}`
              : 'n/a';
          capacity.push({
            row: `${selectOnly ? 'select-only' : 'tpcb-like'} | ${protocol} | ${clients}`,
            op: o.cpuPerXact,
            op1: res['openproxy-1w']?.cpuPerXact ?? NaN,
            pb: b.cpuPerXact,
          });
          perXact.push(
            `| ${selectOnly ? 'select-only' : 'tpcb-like'} | ${protocol} | ${clients} | ${cell(o)} | ` +
              `${cell(res['openproxy-1w'])} | ${cell(res.floor)} | ${cell(b)} |`,
          );
        }
      }
    }
    const cpu = os.cpus()[0]?.model ?? 'unknown';
    const pgv = cluster.psql(cluster.primary, 'SHOW server_version');
    const pbv = pbVersion;
    const md = [
      '# Benchmark results',
      '',
      `Generated by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}.`,
      '',
      `- Machine: ${os.cpus().length} × ${cpu}, ` +
        `${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ` +
        `${os.release()}; Node ${process.version}; PostgreSQL ${pgv}; ${pbv}.`,
      `- One PostgreSQL primary (fsync off) on loopback; pgbench scale ` +
        `${SCALE}, \`-j 2 -T ${SECONDS}\`, latency from \`-l --sampling-rate ` +
        `0.2\`.`,
      `- Pool mode **${MODE}** for both poolers; openproxy with ` +
        `worker_threads = ${benchWorkers()} and prepared_statements_cache_size ` +
        `= 100, PgBouncer single process; ${pool} server connections.`,
      pbPrepared
        ? ''
        : `- ${pbVersion} predates protocol-level prepared statements in ` +
          `transaction mode (1.21, max_prepared_statements): its \`-M prepared\` ` +
          `rows are n/a.`,
      '- pgbench threads (`j`): 2, except TPC-B-like with `-M prepared`, one ' +
        'thread per client: pgbench prepares with a blocking PQprepare on ' +
        'first use, and a thread blocked there while its other clients hold ' +
        'server connections inside BEGIN … END stalls any transaction pooler ' +
        '(measured: 1 tps with 10 clients per thread).',
      '- Targets run interleaved (direct, openproxy, PgBouncer, the floor) for each ' +
        'row, on the same cluster; pgbench, the pooler and PostgreSQL share ' +
        'the same cores.',
      `- The floor (\`benchmarks/floor.ts\`, transaction mode only) is the least a Node ` +
        `transaction pooler does, with openproxy's hand-off and read/write path and ` +
        `${benchWorkers()} worker threads: server connections opened up front, one taken at a ` +
        `transaction's first message and given back at ReadyForQuery I, nothing else (no prepared ` +
        `statements: its \`-M prepared\` rows are n/a).`,
      '- Pooler CPU: user + system time of the pooler process (every thread) ' +
        'during the run, from /proc, divided by the transactions pgbench ' +
        'completed. On a machine where pgbench, PostgreSQL and the pooler ' +
        'compete for the same cores, the pooler that spends less CPU per ' +
        'transaction leaves more to the others; this column is what limits the ' +
        'TPS ratio.',
      '',
      '| workload | protocol | clients | j | direct TPS | openproxy TPS | ' +
        'PgBouncer TPS | floor TPS | openproxy / PgBouncer | openproxy / direct | p99 ms ' +
        'direct / openproxy / PgBouncer | p99 openproxy / PgBouncer | pooler ' +
        'CPU µs / xact, openproxy / floor / PgBouncer | CPU openproxy / floor | failed |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
      'Per transaction, each pooler: CPU µs · voluntary · involuntary context switches (all threads, from ' +
        `/proc). openproxy with ${benchWorkers()} worker threads and with 1.`,
      '',
      `| workload | protocol | clients | openproxy (${benchWorkers()} workers) | openproxy (1 worker) | floor | ` +
        'PgBouncer |',
      '|---|---|---|---|---|---|---|',
      ...perXact,
      '',
      `Command: \`BENCH_SECONDS=${SECONDS} ` +
        `BENCH_CLIENTS=${CLIENTS.join(',')} ` +
        `BENCH_PROTOCOLS=${PROTOCOLS.join(',')} BENCH_MODE=${MODE} npm run ` +
        `bench\``,
      '',
    ].join('\n');
    if (process.env.BENCH_WRITE !== '0') {
      writeHead(md); // the sections other scripts wrote stay
      writeSection('Capacity model', capacityModel(capacity, benchWorkers()));
    }
    process.stdout.write(`\n${md}`);
  } finally {
    await finish();
  }
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${(e as Error).stack}\n`);
  process.exit(1);
});
