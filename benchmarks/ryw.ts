// `npm run bench:ryw`: what read_your_writes costs. One primary and two streaming replicas on
// loopback, openproxy in transaction mode with read/write splitting, pgbench TPC-B-like and
// select-only with read_your_writes off and on, interleaved per round; TPS, pooler CPU per
// transaction and where the reads ran. Writes the "read_your_writes" section of RESULTS.md.
//
// Environment: BENCH_SECONDS (per run, default 8), BENCH_CLIENTS (default "10,100"),
// BENCH_ROUNDS (default 3, median reported), BENCH_SCALE (default 10), BENCH_WORKLOADS (default
// "tpcb-like,write-then-read,select-only"), BENCH_AA=1 (both proxies with read_your_writes off:
// the noise floor of the comparison).

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { PgCluster, freePort } from '../testing/pg-cluster';
import { writeSection } from './results';
import { type Started, benchWorkers, teardown, waitPort } from './poolers';

const SECONDS = Number(process.env.BENCH_SECONDS) || 8;
const CLIENTS = (process.env.BENCH_CLIENTS ?? '10,100').split(',').map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS) || 3;
const SCALE = Number(process.env.BENCH_SCALE) || 10;
const WORKLOADS = (process.env.BENCH_WORKLOADS ?? 'tpcb-like,write-then-read,select-only').split(',');
const USER = 'bench';
const PASS = 'bench-pass';
const POOL = 20;
const root = join(__dirname, '..', '..');

async function startRouted(work: string, cluster: PgCluster, ryw: boolean): Promise<Started> {
  const port = await freePort();
  const conf = join(work, `openproxy-${port}.toml`);
  const servers = cluster.nodes.map((n) => `["127.0.0.1", ${n.port}, "${n.role}"]`).join(', ');
  writeFileSync(
    conf,
    `[general]\nhost = "127.0.0.1"\nport = ${port}\nworker_threads = ` +
      `${benchWorkers()}\nprometheus_exporter_port = 0\nconnect_timeout = ` +
      `60000\nprepared_statements_cache_size = 100\n\n` +
      `[pools.postgres]\npool_mode = "transaction"\nquery_parser_enabled = ` +
      `true\nquery_parser_read_write_splitting = true\nread_your_writes = ` +
      `${ryw}\n\n` +
      `[pools.postgres.users.0]\nusername = "${USER}"\npassword = ` +
      `"${PASS}"\npool_size = ${POOL}\n\n[pools.postgres.shards.0]\ndatabase ` +
      `= "postgres"\nservers = [${servers}]\n`,
  );
  const proc = spawn(
    process.execPath,
    [join(root, 'dist', 'src', 'main.js'), conf, '--log-target', 'stdout', '-l', 'ERROR'],
    { stdio: 'inherit' },
  );
  await waitPort(port);
  return { port, proc, pid: () => proc.pid! };
}

function cpuMicros(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10_000;
}

/** Transactions run by the primary and the replicas (pg_stat_database, all users). */
function xacts(cluster: PgCluster): number[] {
  return cluster.nodes.map((n) =>
    Number(cluster.psql(n, "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'postgres'")),
  );
}

interface Row {
  tps: number;
  cpu: number;
  /** Share of the server-side transactions that ran on replicas. */
  replicaShare: number;
}

/**
 * pgbench arguments of a workload: the built-ins, or write-then-read (an autocommit UPDATE, then a SELECT of the same
 * row).
 */
function script(work: string, workload: string): string[] {
  if (workload !== 'write-then-read') return ['-b', workload];
  const f = join(work, 'write-then-read.sql');
  writeFileSync(
    f,
    '\\set aid random(1, 100000 * :scale)\nUPDATE pgbench_accounts SET ' +
      'abalance = abalance + 1 WHERE aid = :aid;\nSELECT abalance FROM ' +
      'pgbench_accounts WHERE aid = :aid;\n',
  );
  return ['-f', f];
}

function bench(cluster: PgCluster, work: string, p: Started, workload: string, clients: number): Row {
  const before = xacts(cluster);
  const cpu0 = cpuMicros(p.pid());
  const r = spawnSync(
    join(cluster.bin, 'pgbench'),
    [
      '-n',
      ...script(work, workload),
      '-c',
      String(clients),
      '-j',
      '2',
      '-T',
      String(SECONDS),
      '-h',
      '127.0.0.1',
      '-p',
      String(p.port),
      '-U',
      USER,
      'postgres',
    ],
    { encoding: 'utf8', env: { ...process.env, PGPASSWORD: PASS }, timeout: (SECONDS + 60) * 1000 },
  );
  const cpu = cpuMicros(p.pid()) - cpu0;
  const done = Number(/number of transactions actually processed: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  const tps = Number(/tps = ([\d.]+)/.exec(r.stdout)?.[1] ?? 0);
  const after = xacts(cluster);
  const delta = after.map((v, i) => v - before[i]);
  const total = delta.reduce((a, b) => a + b, 0) || 1;
  if (!done) process.stderr.write(r.stdout + r.stderr);
  return { tps, cpu: done ? cpu / done : NaN, replicaShare: (total - delta[0]) / total };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const work = mkdtempSync(join(os.tmpdir(), 'openproxy-ryw-'));
  const cluster = await PgCluster.start({ replicas: 2 });
  const procs: Started[] = [];
  const stop = teardown(cluster, work, []);
  try {
    cluster.psql(
      cluster.primary,
      `SET password_encryption = 'md5'; CREATE ROLE ${USER} LOGIN PASSWORD ` +
        `'${PASS}'; GRANT ALL ON SCHEMA public TO ${USER}`,
    );
    const init = spawnSync(
      join(cluster.bin, 'pgbench'),
      ['-i', '-q', '-s', String(SCALE), '-h', '127.0.0.1', '-p', String(cluster.primary.port), '-U', USER, 'postgres'],
      { encoding: 'utf8', env: { ...process.env, PGPASSWORD: PASS } },
    );
    if (init.status !== 0) throw new Error(init.stderr);
    const off = await startRouted(work, cluster, false);
    const on = await startRouted(work, cluster, !process.env.BENCH_AA);
    procs.push(off, on);
    const lines: string[] = [];
    for (const workload of WORKLOADS) {
      for (const clients of CLIENTS) {
        const runs: Record<'off' | 'on', Row[]> = { off: [], on: [] };
        for (let i = 0; i < ROUNDS; i++) {
          // Alternate which goes first, so drift over a round does not favour one side.
          const order: ('off' | 'on')[] = i % 2 === 0 ? ['off', 'on'] : ['on', 'off'];
          for (const k of order) runs[k].push(bench(cluster, work, k === 'off' ? off : on, workload, clients));
        }
        const m = (k: 'off' | 'on', f: keyof Row) => median(runs[k].map((r) => r[f]));
        lines.push(
          `| ${workload} | ${clients} | ${m('off', 'tps').toFixed(0)} | ` +
            `${m('on', 'tps').toFixed(0)} | ` +
            `**${(m('on', 'tps') / m('off', 'tps')).toFixed(2)}** | ` +
            `${m('off', 'cpu').toFixed(1)} / ${m('on', 'cpu').toFixed(1)} | ` +
            `${(100 * m('off', 'replicaShare')).toFixed(0)}% / ` +
            `${(100 * m('on', 'replicaShare')).toFixed(0)}% |`,
        );
        process.stdout.write(`${lines[lines.length - 1]}\n`);
      }
    }
    writeSection(
      'read_your_writes',
      [
        `Generated by \`npm run bench:ryw\` on ` +
          `${new Date().toISOString().slice(0, 10)} (${os.cpus().length} cores; ` +
          `Node ${process.version}).`,
        `One primary and two streaming replicas on loopback; openproxy ` +
          `(worker_threads = ${benchWorkers()}) in transaction mode with ` +
          `read/write splitting, pool_size ${POOL}; pgbench scale ${SCALE}, \`-j ` +
          `2 -T ${SECONDS}\`, simple protocol; write-then-read is an autocommit ` +
          `UPDATE of a random account followed by a SELECT of it; off and on ` +
          `interleaved (which runs first alternates per round), median of ` +
          `${ROUNDS} rounds. "Replica share" counts server transactions ` +
          `(pg_stat_database) that ran on the replicas.`,
        "With read_your_writes on, after a client's transaction on the primary " +
          'its reads stay on the primary until the HA thread has measured the ' +
          'primary since the commit (every replica_lag_interval, 500 ms) and a ' +
          'replica has replayed past it; no statement is added per transaction.',
        '',
        '| workload | clients | TPS off | TPS on | on / off | pooler CPU µs / xact off / on ' +
          '| replica share off / on |',
        '|---|---|---|---|---|---|---|',
        ...lines,
        '',
        `Command: \`BENCH_SECONDS=${SECONDS} ` +
          `BENCH_CLIENTS=${CLIENTS.join(',')} BENCH_ROUNDS=${ROUNDS} npm run ` +
          `bench:ryw\``,
      ].join('\n'),
    );
  } finally {
    for (const p of procs) p.proc.kill('SIGTERM');
    await stop();
  }
}

main().catch((e) => {
  process.stderr.write(`${String(e?.stack ?? e)}\n`);
  process.exit(1);
});
