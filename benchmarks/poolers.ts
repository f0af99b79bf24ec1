// Starting the poolers the benchmarks compare: openproxy from this checkout and PgBouncer from
// Debian's package, both in front of one PostgreSQL primary on loopback.

import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { chownSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { type PgCluster, freePort } from '../testing/pg-cluster';

const root = join(__dirname, '..', '..');

export interface Started {
  port: number;
  proc: ChildProcess;
  /** PID of the pooler process itself (PgBouncer runs under setpriv as root). */
  pid(): number;
}

export function waitPort(port: number, ms = 15000): Promise<void> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const tryOnce = () => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve()));
      s.once('error', () =>
        Date.now() - t0 > ms ? reject(new Error(`port ${port} not open`)) : setTimeout(tryOnce, 100),
      );
    };
    tryOnce();
  });
}

export function pgbouncerBinary(): string {
  const found = spawnSync('sh', ['-c', 'command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null'], {
    encoding: 'utf8',
  })
    .stdout.trim()
    .split('\n')[0];
  if (found) return found;
  process.stdout.write('installing pgbouncer from Debian packages…\n');
  execFileSync(
    'sh',
    ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null'],
    { stdio: 'inherit' },
  );
  return '/usr/sbin/pgbouncer';
}

/** openproxy's worker_threads in the benchmarks: BENCH_WORKERS, else one per core. */
export const benchWorkers = (): number => Number(process.env.BENCH_WORKERS) || os.cpus().length;

export async function startOpenproxy(
  work: string,
  pgPort: number,
  user: string,
  pass: string,
  mode: string,
  pool: number,
  workers = benchWorkers(),
): Promise<Started> {
  const port = await freePort();
  const conf = join(work, `openproxy-${port}.toml`);
  writeFileSync(
    conf,
    `[general]\nhost = "127.0.0.1"\nport = ${port}\nworker_threads = ` +
      `${workers}\nprometheus_exporter_port = 0\nconnect_timeout = ` +
      `60000\nprepared_statements_cache_size = ` +
      `100\n\n[pools.postgres]\npool_mode = ` +
      `"${mode}"\n\n[pools.postgres.users.0]\nusername = "${user}"\npassword ` +
      `= "${pass}"\npool_size = ` +
      `${pool}\n\n[pools.postgres.shards.0]\ndatabase = "postgres"\nservers ` +
      `= [["127.0.0.1", ${pgPort}, "primary"]]\n`,
  );
  // BENCH_NODE_ARGS: extra node flags for openproxy, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile a run.
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = spawn(
    process.execPath,
    [...nodeArgs, join(root, 'dist', 'src', 'main.js'), conf, '--log-target', 'stdout', '-l', 'ERROR'],
    { stdio: 'inherit' },
  );
  await waitPort(port);
  return { port, proc, pid: () => proc.pid! };
}

/** The Node floor (benchmarks/floor.ts): transaction pooling and nothing else, same workers as openproxy. */
export async function startFloor(pgPort: number, user: string, pass: string, pool: number): Promise<Started> {
  const port = await freePort();
  const args = [String(port), String(pgPort), user, pass, String(benchWorkers()), String(pool)];
  const proc = spawn(process.execPath, [join(root, 'dist', 'benchmarks', 'floor.js'), ...args], { stdio: 'inherit' });
  await waitPort(port, 60000);
  return { port, proc, pid: () => proc.pid! };
}

/** PgBouncer with md5 auth; `extra` lines go into [pgbouncer]. */
export async function startPgBouncer(
  work: string,
  pgPort: number,
  user: string,
  pass: string,
  mode: string,
  pool: number,
  maxClients: number,
  extra = '',
): Promise<Started> {
  const bin = pgbouncerBinary();
  const port = await freePort();
  const ini = join(work, 'pgbouncer.ini');
  const userlist = join(work, 'userlist.txt');
  writeFileSync(userlist, `"${user}" "${pass}"\n`);
  writeFileSync(
    ini,
    `[databases]\npostgres = host=127.0.0.1 port=${pgPort} ` +
      `dbname=postgres\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port ` +
      `= ${port}\nunix_socket_dir =\nauth_type = md5\nauth_file = ` +
      `${userlist}\npool_mode = ${mode}\ndefault_pool_size = ` +
      `${pool}\nmax_client_conn = ${maxClients}\nlisten_backlog = ` +
      `4096\nlog_connections = 0\nlog_disconnections = 0\nlogfile = ` +
      `${join(work, 'pgbouncer.log')}\n${extra}`,
  );
  const isRoot = process.getuid?.() === 0;
  let proc: ChildProcess;
  if (isRoot) {
    // PgBouncer refuses root. setpriv, not runuser: runuser's PAM session resets the open-files
    // limit to 1024, which would cap PgBouncer at about 1000 clients.
    const id = execFileSync('id', ['postgres'], { encoding: 'utf8' });
    const uid = Number(/uid=(\d+)/.exec(id)![1]);
    const gid = Number(/gid=(\d+)/.exec(id)![1]);
    for (const f of [ini, userlist]) chownSync(f, uid, gid);
    proc = spawn('setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', bin, ini], { stdio: 'ignore' });
  } else proc = spawn(bin, [ini], { stdio: 'ignore' });
  await waitPort(port);
  return { port, proc, pid: () => proc.pid! };
}

/**
 * Stops the poolers, the cluster and removes the work dir, once: returns the function for the
 * script's `finally`, and runs it on SIGINT / SIGTERM too (then exits 130).
 */
export function teardown(cluster: PgCluster, work: string, procs: ChildProcess[]): () => Promise<void> {
  let done = false;
  const run = async () => {
    if (done) return;
    done = true;
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    cluster.stop();
    rmSync(work, { recursive: true, force: true });
  };
  const abort = () => void run().then(() => process.exit(130));
  process.once('SIGINT', abort);
  process.once('SIGTERM', abort);
  return run;
}
