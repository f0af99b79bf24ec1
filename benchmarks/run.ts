// `npm run bench`: pgbench against PostgreSQL directly, through openproxy and through PgBouncer,
// interleaved in one run on one throwaway cluster; writes benchmarks/RESULTS.md with TPS and
// latency (p50 / p99 from pgbench's per-transaction logs) and the ratios between them.
//
// Environment: BENCH_SECONDS (per run, default 10), BENCH_CLIENTS (default "10,100"),
// BENCH_MODE (pool mode for both poolers, default session), BENCH_SCALE (pgbench -s, default 10).

import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { PgCluster, freePort } from '../src/testing/pg-cluster';

const SECONDS = Number(process.env.BENCH_SECONDS) || 10;
const CLIENTS = (process.env.BENCH_CLIENTS ?? '10,100').split(',').map(Number);
const MODE = process.env.BENCH_MODE ?? 'session';
const SCALE = Number(process.env.BENCH_SCALE) || 10;
const USER = 'bench';
const PASS = 'bench-pass';
const root = join(__dirname, '..', '..');

interface Result {
  tps: number;
  p50: number;
  p99: number;
  failed: number;
}

const isRoot = process.getuid?.() === 0;

function ensurePgBouncer(): string {
  const found = spawnSync('sh', ['-c', 'command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null'], { encoding: 'utf8' }).stdout.trim().split('\n')[0];
  if (found) return found;
  process.stdout.write('installing pgbouncer from Debian packages…\n');
  execFileSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null'], { stdio: 'inherit' });
  return '/usr/sbin/pgbouncer';
}

function waitPort(port: number, ms = 15000): Promise<void> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const tryOnce = () => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve()));
      s.once('error', () => (Date.now() - t0 > ms ? reject(new Error(`port ${port} not open`)) : setTimeout(tryOnce, 100)));
    };
    tryOnce();
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function pgbench(port: number, clients: number, protocol: string, selectOnly: boolean, logDir: string): Result {
  for (const f of readdirSync(logDir)) rmSync(join(logDir, f));
  const args = ['-n', '-c', String(clients), '-j', '2', '-T', String(SECONDS), '-M', protocol, '-l', '--sampling-rate', '0.2', '--log-prefix', join(logDir, 'pgb'), '-h', '127.0.0.1', '-p', String(port), '-U', USER];
  if (selectOnly) args.push('-S');
  args.push('postgres');
  const r = spawnSync('pgbench', args, { encoding: 'utf8', env: { ...process.env, PGPASSWORD: PASS }, timeout: (SECONDS + 60) * 1000 });
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout)?.[1] ?? NaN);
  const failed = Number(/number of failed transactions: (\d+)/.exec(r.stdout)?.[1] ?? (r.status === 0 ? 0 : NaN));
  const lat: number[] = [];
  for (const f of readdirSync(logDir)) {
    for (const line of readFileSync(join(logDir, f), 'utf8').split('\n')) {
      const v = line.split(' ');
      if (v.length > 3) lat.push(Number(v[2]));
    }
  }
  lat.sort((a, b) => a - b);
  if (r.status !== 0) process.stdout.write(`pgbench failed on port ${port}: ${r.stderr}\n`);
  return { tps, p50: percentile(lat, 50) / 1000, p99: percentile(lat, 99) / 1000, failed };
}

async function main(): Promise<void> {
  const pgbouncerBin = ensurePgBouncer();
  const maxClients = Math.max(...CLIENTS);
  process.stdout.write(`bench: ${SECONDS}s per run, clients ${CLIENTS.join('/')}, pool mode ${MODE}\n`);
  const cluster = await PgCluster.start({ settings: { max_connections: maxClients * 3 + 50 } });
  const work = mkdtempSync(join(os.tmpdir(), 'openproxy-bench-'));
  chmodSync(work, 0o777);
  const procs: ChildProcess[] = [];
  const abort = () => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
    setTimeout(() => {
      cluster.stop();
      rmSync(work, { recursive: true, force: true });
      process.exit(130);
    }, 500);
  };
  process.once('SIGINT', abort);
  process.once('SIGTERM', abort);
  try {
    cluster.psql(cluster.primary, `SET password_encryption = 'md5'; CREATE ROLE ${USER} LOGIN PASSWORD '${PASS}'; GRANT CREATE ON DATABASE postgres TO ${USER}; GRANT ALL ON SCHEMA public TO ${USER}`);
    const init = spawnSync('pgbench', ['-i', '-q', '-s', String(SCALE), '-h', '127.0.0.1', '-p', String(cluster.primary.port), '-U', USER, 'postgres'], { encoding: 'utf8', env: { ...process.env, PGPASSWORD: PASS } });
    if (init.status !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);

    const opPort = await freePort();
    const opConf = join(work, 'openproxy.toml');
    writeFileSync(opConf, `[general]\nhost = "127.0.0.1"\nport = ${opPort}\nworker_threads = ${os.cpus().length}\n\n[pools.postgres]\npool_mode = "${MODE}"\n\n[pools.postgres.users.0]\nusername = "${USER}"\npassword = "${PASS}"\npool_size = ${MODE === 'session' ? maxClients : 20}\n\n[pools.postgres.shards.0]\ndatabase = "postgres"\nservers = [["127.0.0.1", ${cluster.primary.port}, "primary"]]\n`);
    const op = spawn(process.execPath, [join(root, 'dist', 'src', 'main.js'), opConf, '--log-target', 'stdout', '-l', 'ERROR'], { stdio: 'inherit' });
    procs.push(op);

    const pbPort = await freePort();
    const pbIni = join(work, 'pgbouncer.ini');
    const userlist = join(work, 'userlist.txt');
    writeFileSync(userlist, `"${USER}" "${PASS}"\n`);
    writeFileSync(pbIni, `[databases]\npostgres = host=127.0.0.1 port=${cluster.primary.port} dbname=postgres\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = ${pbPort}\nunix_socket_dir =\nauth_type = md5\nauth_file = ${userlist}\npool_mode = ${MODE}\ndefault_pool_size = ${MODE === 'session' ? maxClients : 20}\nmax_client_conn = ${maxClients * 2 + 100}\nlogfile = ${join(work, 'pgbouncer.log')}\npidfile = ${join(work, 'pgbouncer.pid')}\nlog_connections = 0\nlog_disconnections = 0\n`);
    if (isRoot) {
      const id = execFileSync('id', ['postgres'], { encoding: 'utf8' });
      const uid = Number(/uid=(\d+)/.exec(id)![1]);
      const gid = Number(/gid=(\d+)/.exec(id)![1]);
      for (const f of [pbIni, userlist]) chownSync(f, uid, gid);
    }
    const pb = isRoot ? spawn('runuser', ['-u', 'postgres', '--', pgbouncerBin, pbIni], { stdio: 'ignore' }) : spawn(pgbouncerBin, [pbIni], { stdio: 'ignore' });
    procs.push(pb);
    await Promise.all([waitPort(opPort), waitPort(pbPort)]);

    const logDir = join(work, 'pgbench-logs');
    spawnSync('mkdir', ['-p', logDir]);
    const targets: [string, number][] = [['direct', cluster.primary.port], ['openproxy', opPort], ['pgbouncer', pbPort]];
    const rows: string[] = [];
    for (const selectOnly of [true, false]) {
      for (const protocol of ['simple', 'extended']) {
        for (const clients of CLIENTS) {
          const res: Record<string, Result> = {};
          for (const [name, port] of targets) {
            res[name] = pgbench(port, clients, protocol, selectOnly, logDir);
            process.stdout.write(`${selectOnly ? 'select-only' : 'tpcb-like'} ${protocol} c=${clients} ${name}: ${res[name].tps.toFixed(0)} tps p99 ${res[name].p99.toFixed(2)} ms failed ${res[name].failed}\n`);
          }
          const d = res.direct;
          const o = res.openproxy;
          const b = res.pgbouncer;
          rows.push(
            `| ${selectOnly ? 'select-only' : 'tpcb-like'} | ${protocol} | ${clients} | ${d.tps.toFixed(0)} | ${o.tps.toFixed(0)} | ${b.tps.toFixed(0)} | **${(o.tps / b.tps).toFixed(2)}** | ${(o.tps / d.tps).toFixed(2)} | ${d.p99.toFixed(2)} / ${o.p99.toFixed(2)} / ${b.p99.toFixed(2)} | ${(o.p99 / b.p99).toFixed(2)} | ${o.failed + b.failed + d.failed} |`,
          );
        }
      }
    }
    const cpu = os.cpus()[0]?.model ?? 'unknown';
    const pgv = cluster.psql(cluster.primary, 'SHOW server_version');
    const pbv = spawnSync(pgbouncerBin, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
    const md = [
      '# Benchmark results',
      '',
      `Generated by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}.`,
      '',
      `- Machine: ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}; Node ${process.version}; PostgreSQL ${pgv}; ${pbv}.`,
      `- One PostgreSQL primary (fsync off) on loopback; pgbench scale ${SCALE}, \`-j 2 -T ${SECONDS}\`, latency from \`-l --sampling-rate 0.2\`.`,
      `- Pool mode **${MODE}** for both poolers; openproxy with worker_threads = ${os.cpus().length}, PgBouncer single process; pool size ${MODE === 'session' ? maxClients : 20}.`,
      '- Targets run interleaved (direct, openproxy, PgBouncer) for each row, on the same cluster; pgbench, the pooler and PostgreSQL share the same cores.',
      '',
      '| workload | protocol | clients | direct TPS | openproxy TPS | PgBouncer TPS | openproxy / PgBouncer | openproxy / direct | p99 ms direct / openproxy / PgBouncer | p99 openproxy / PgBouncer | failed |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
      'Command: `BENCH_SECONDS=' + SECONDS + ' BENCH_CLIENTS=' + CLIENTS.join(',') + ' BENCH_MODE=' + MODE + ' npm run bench`',
      '',
    ].join('\n');
    writeFileSync(join(root, 'benchmarks', 'RESULTS.md'), md);
    process.stdout.write('\n' + md);
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    cluster.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${(e as Error).stack}\n`);
  process.exit(1);
});
