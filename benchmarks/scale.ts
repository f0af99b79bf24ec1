// `npm run bench:scale`: many client connections held open at once through 20 server
// connections, each logging in (md5) and running queries, against openproxy, PgBouncer and the
// Node floor (benchmarks/floor.ts; no auth), transaction mode. Reports errors, the time to serve
// every client, the pooler's RSS before and with everyone connected, and its CPU time.
// A minimal raw-protocol client keeps the load generator light (no driver per connection).
//
// Environment: SCALE_CLIENTS (default: 10000 and the most the open-files limit allows, up to
// 50000), SCALE_QUERIES per client (default 3), SCALE_POOL (20).

import { type ChildProcess, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, chmodSync } from 'node:fs';
import { writeSection } from './results';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { serialize } from 'pg-protocol';
import { FrameReader } from '../src/protocol/frame-reader';
import { md5Response, md5Stored } from '../src/protocol/md5';
import { PgCluster } from '../testing/pg-cluster';
import { type Started, startFloor, startOpenproxy, startPgBouncer, teardown } from './poolers';
import { cpuMicros, rssMb } from './proc';

const QUERIES = Number(process.env.SCALE_QUERIES) || 3;
const POOL = Number(process.env.SCALE_POOL) || 20;
const USER = 'scale';
const PASS = 'scale-pass';
const QUERY = Buffer.concat([Buffer.from('Q'), Buffer.from([0, 0, 0, 13]), Buffer.from('SELECT 1\0')]);

/** One raw client: login, then QUERIES simple queries; resolves when done (the socket stays open). */
function rawClient(port: number, hold: Promise<void>): Promise<{ ok: boolean; err?: string; sock?: net.Socket }> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const frames = new FrameReader(1 << 24);
    let left = QUERIES;
    let loggedIn = false;
    let done = false;
    const finish = (ok: boolean, err?: string) => {
      if (done) return;
      done = true;
      resolve({ ok, err, sock });
      if (!ok) sock.destroy();
      else void hold.then(() => sock.end());
    };
    sock.setTimeout(120000, () => finish(false, 'timeout'));
    sock.on('error', (e) => finish(false, e.message));
    sock.on('close', () => finish(false, 'closed'));
    sock.on('connect', () => sock.write(serialize.startup({ user: USER, database: 'postgres' })));
    sock.on('data', (chunk: Buffer) => {
      frames.push(chunk);
      while (frames.next()) {
        const body = frames.body();
        switch (frames.type) {
          case 0x52: // Authentication
            if (body.readInt32BE(0) === 5)
              sock.write(serialize.password(md5Response(md5Stored(PASS, USER), body.subarray(4, 8))));
            break;
          case 0x45:
            return finish(false, body.toString('utf8').replace(/\0/g, ' ').trim().slice(0, 120));
          case 0x5a: // ReadyForQuery
            if (!loggedIn) loggedIn = true;
            else left--;
            if (left === 0) return finish(true);
            sock.write(QUERY);
            break;
          default:
            break;
        }
      }
    });
  });
}

async function drive(name: string, port: number, pid: number, clients: number): Promise<string> {
  let release!: () => void;
  const hold = new Promise<void>((r) => (release = r));
  const rssBefore = rssMb(pid);
  const cpu0 = cpuMicros(pid);
  const t0 = Date.now();
  const results: Promise<{ ok: boolean; err?: string }>[] = [];
  // Open in waves so the listen backlog is not the thing measured.
  for (let i = 0; i < clients; i++) {
    results.push(rawClient(port, hold));
    if (i % 500 === 499) await new Promise((r) => setTimeout(r, 20));
  }
  const all = await Promise.all(results);
  const elapsed = (Date.now() - t0) / 1000;
  const cpu = (cpuMicros(pid) - cpu0) / 1e6;
  const rssPeak = rssMb(pid);
  const errors = all.filter((r) => !r.ok);
  release();
  await new Promise((r) => setTimeout(r, 3000));
  const sample = [...new Set(errors.map((e) => e.err))].slice(0, 3).join('; ');
  const perClient = ((rssPeak - rssBefore) * 1024) / clients;
  process.stdout.write(
    `${name}: ${clients - errors.length}/${clients} served, ${errors.length} errors${sample ? ` (${sample})` : ''}, ` +
      `${elapsed.toFixed(1)} s, CPU ${cpu.toFixed(1)} s, RSS ${rssBefore} → ${rssPeak} MB\n`,
  );
  return (
    `| ${name} | ${clients} | ${QUERIES} | ${clients - errors.length} | ${errors.length} | ${elapsed.toFixed(1)} | ` +
    `${cpu.toFixed(1)} | ${rssBefore} | ${rssPeak} | ${perClient.toFixed(1)} |`
  );
}

async function main(): Promise<void> {
  const limit = Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim());
  // Each process (this load generator, the pooler) holds one descriptor per client.
  const most = Math.min(50000, Math.floor((limit - 1000) / 1000) * 1000);
  const points = (process.env.SCALE_CLIENTS ?? `10000,${most}`)
    .split(',')
    .map(Number)
    .filter((n, i, a) => n > 0 && a.indexOf(n) === i);
  if (points.some((n) => n > limit - 1000))
    throw new Error(`RLIMIT_NOFILE is ${limit}: at most ${most} clients (raise it with ulimit -n)`);
  const cluster = await PgCluster.start({ settings: { max_connections: POOL * 3 + 20 } });
  const work = mkdtempSync(join(os.tmpdir(), 'openproxy-scale-'));
  chmodSync(work, 0o777);
  const procs: ChildProcess[] = [];
  const finish = teardown(cluster, work, procs);
  const rows: string[] = [];
  try {
    cluster.psql(cluster.primary, `SET password_encryption = 'md5'; CREATE ROLE ${USER} LOGIN PASSWORD '${PASS}'`);
    const pooler = async (name: string, start: () => Promise<Started>): Promise<Started> => {
      const p = await start();
      procs.push(p.proc);
      process.stdout.write(`${name} started\n`);
      return p;
    };
    for (const clients of points) {
      // A fresh pooler per point, so RSS before is the same empty process each time.
      const targets: [string, () => Promise<Started>][] = [
        ['openproxy', () => startOpenproxy(work, cluster.primary.port, USER, PASS, 'transaction', POOL)],
        [
          'PgBouncer',
          () =>
            startPgBouncer(
              work,
              cluster.primary.port,
              USER,
              PASS,
              'transaction',
              POOL,
              clients + 1000,
              'query_wait_timeout = 120\n',
            ),
        ],
        ['floor', () => startFloor(cluster.primary.port, USER, PASS, POOL)],
      ];
      for (const [name, start] of targets) {
        const p = await pooler(name, start);
        rows.push(await drive(name, p.port, p.pid(), clients));
        p.proc.kill('SIGTERM');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    const pbv = spawnSync('/usr/sbin/pgbouncer', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
    const md = [
      `Generated by \`npm run bench:scale\` on ` +
        `${new Date().toISOString().slice(0, 10)} (${os.cpus().length} cores; ${pbv}; openproxy with ` +
        `${os.cpus().length} worker threads). Transaction mode, ${POOL} server connections; every client ` +
        `logs in (md5; the floor asks for no password), runs ${QUERIES} × \`SELECT 1\` and stays connected ` +
        `until all are done. Time = first connect to last client served; CPU = the pooler's user + system ` +
        `time meanwhile; RSS of the pooler process before and with all clients connected; per client = ` +
        `(peak − before) / clients. The largest point is what the open-files limit (${limit}) allows ` +
        `(each process holds one descriptor per client).`,
      '',
      '| pooler | clients | queries each | served | errors | seconds | CPU s | RSS before MB | RSS at peak MB ' +
        '| kB per client |',
      '|---|---|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
    ].join('\n');
    writeSection('Scale: 10,000 concurrent clients', md);
    process.stdout.write(`${md}\n`);
  } finally {
    await finish();
  }
}

main().catch((e) => {
  process.stderr.write(`scale bench failed: ${(e as Error).stack}\n`);
  process.exit(1);
});
