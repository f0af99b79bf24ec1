// `npm run bench:scale`: 10,000 client connections held open at once through ~20 server
// connections, each logging in (md5) and running queries, against openproxy and against PgBouncer
// (transaction mode both). Reports errors, the time to serve every client and the pooler's RSS.
// A minimal raw-protocol client keeps the load generator light (no driver per connection).
//
// Environment: SCALE_CLIENTS (default 10000), SCALE_QUERIES per client (default 3), SCALE_POOL (20).

import { type ChildProcess, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, chmodSync } from 'node:fs';
import { writeSection } from './results';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { serialize } from 'pg-protocol';
import { FrameReader } from '../src/protocol/frame-reader';
import { md5Response, md5Stored } from '../src/protocol/md5';
import { PgCluster } from '../testing/pg-cluster';
import { startOpenproxy, startPgBouncer, teardown } from './poolers';

const CLIENTS = Number(process.env.SCALE_CLIENTS) || 10000;
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

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024);
}

async function drive(name: string, port: number, pid: number): Promise<string> {
  let release!: () => void;
  const hold = new Promise<void>((r) => (release = r));
  const rssBefore = rssMb(pid);
  const t0 = Date.now();
  const results: Promise<{ ok: boolean; err?: string }>[] = [];
  // Open in waves so the listen backlog is not the thing measured.
  for (let i = 0; i < CLIENTS; i++) {
    results.push(rawClient(port, hold));
    if (i % 500 === 499) await new Promise((r) => setTimeout(r, 20));
  }
  const all = await Promise.all(results);
  const elapsed = (Date.now() - t0) / 1000;
  const rssPeak = rssMb(pid);
  const errors = all.filter((r) => !r.ok);
  release();
  await new Promise((r) => setTimeout(r, 2000));
  const sample = [...new Set(errors.map((e) => e.err))].slice(0, 3).join('; ');
  process.stdout.write(
    `${name}: ${CLIENTS - errors.length}/${CLIENTS} served, ${errors.length} errors${sample ? ` (${sample})` : ''}, ` +
      `${elapsed.toFixed(1)} s, RSS ${rssBefore} → ${rssPeak} MB\n`,
  );
  return (
    `| ${name} | ${CLIENTS} | ${QUERIES} | ${CLIENTS - errors.length} | ` +
    `${errors.length} | ${elapsed.toFixed(1)} | ${rssBefore} | ${rssPeak} |`
  );
}

async function main(): Promise<void> {
  const limit = Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim());
  // Each process (this load generator, the pooler) holds one descriptor per client.
  if (limit < CLIENTS + 1000)
    throw new Error(
      `RLIMIT_NOFILE is ${limit}; run through \`npm run bench:scale\` (it ` +
        `raises it with ulimit -n) or lower SCALE_CLIENTS`,
    );
  const cluster = await PgCluster.start({ settings: { max_connections: POOL * 3 + 20 } });
  const work = mkdtempSync(join(os.tmpdir(), 'openproxy-scale-'));
  chmodSync(work, 0o777);
  const procs: ChildProcess[] = [];
  const finish = teardown(cluster, work, procs);
  try {
    cluster.psql(cluster.primary, `SET password_encryption = 'md5'; CREATE ROLE ${USER} LOGIN PASSWORD '${PASS}'`);
    const op = await startOpenproxy(work, cluster.primary.port, USER, PASS, 'transaction', POOL);
    procs.push(op.proc);
    const pb = await startPgBouncer(
      work,
      cluster.primary.port,
      USER,
      PASS,
      'transaction',
      POOL,
      CLIENTS + 1000,
      'query_wait_timeout = 120\n',
    );
    procs.push(pb.proc);
    const pbIni = join(work, 'pgbouncer.ini');
    const pbPid = Number(
      spawnSync('pgrep', ['-f', `pgbouncer ${pbIni}`], { encoding: 'utf8' })
        .stdout.trim()
        .split('\n')
        .pop(),
    );
    const opPort = op.port;
    const pbPort = pb.port;
    const rows = [await drive('openproxy', opPort, op.pid()), await drive('PgBouncer', pbPort, pbPid)];
    const pbv = spawnSync('/usr/sbin/pgbouncer', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
    const md = [
      '',
      '## Scale: 10,000 concurrent clients',
      '',
      `Generated by \`npm run bench:scale\` on ` +
        `${new Date().toISOString().slice(0, 10)} (${os.cpus().length} cores; ` +
        `${pbv}). Transaction mode, ${POOL} server connections; every client ` +
        `logs in (md5), runs ${QUERIES} × \`SELECT 1\` and stays connected ` +
        `until all are done. Time = first connect to last client served; RSS ` +
        `of the pooler process before and with all clients connected.`,
      '',
      '| pooler | clients | queries each | served | errors | seconds | RSS before MB | RSS at peak MB |',
      '|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
    ].join('\n');
    writeSection('Scale: 10,000 concurrent clients', md.split('\n').slice(3).join('\n'));
    process.stdout.write(md);
  } finally {
    await finish();
  }
}

main().catch((e) => {
  process.stderr.write(`scale bench failed: ${(e as Error).stack}\n`);
  process.exit(1);
});
