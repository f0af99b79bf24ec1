// `npm run soak` (not in `npm test`): SOAK_MINUTES (default 60) of mixed load through openproxy on a
// throwaway primary + replica, with client churn, reloads, cancels and one replica restart, sampled
// every minute: openproxy's RSS, worker heaps (SHOW MEM), open fds, server connections, and the
// transactions that succeeded or failed. Then the load stops and the fds and server connections
// must fall back to where they were before it. The curve and the verdict go to RESULTS.md ("Soak").
//
// Pass: RSS over the last third within 5 % of the second third (no upward trend after warm-up);
// fds and server connections back to their floor (fds within 2: each worker's event loop opens
// /dev/null once at its first TCP stream, libuv's EMFILE reserve); 0 failed transactions outside
// the fault windows (30 s from a replica restart on); every committed write present exactly once.

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import type pg from 'pg';
import { PgCluster } from '../testing/pg-cluster';
import { configFor, startProxy } from '../test/helpers/proxy';
import { APP_USER, adminClient, client, createAppRole, pgjs } from '../test/helpers/db';
import { rssMb } from './proc';
import { writeSection } from './results';

const MINUTES = Number(process.env.SOAK_MINUTES) || 60;
const STEADY = Number(process.env.SOAK_CLIENTS) || 16;
const FAULT_MS = 30_000;

interface Sample {
  minute: number;
  rss: number;
  heap: number;
  fds: number;
  servers: number;
  ok: number;
  failed: number;
  faultFailed: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** openproxy's TCP sockets as `ss` shows them (to name a socket left open). */
function sockets(pid: number): string[] {
  const r = spawnSync('ss', ['-tanp'], { encoding: 'utf8' });
  return (r.stdout ?? '')
    .split('\n')
    .filter((l) => l.includes(`pid=${pid},`))
    .map((l) => `    ${l.replace(/\s+/g, ' ')}`);
}

async function main(): Promise<void> {
  const cluster = await PgCluster.start({ replicas: 1 });
  createAppRole(cluster);
  cluster.psql(
    cluster.primary,
    `CREATE TABLE soak(id bigint PRIMARY KEY, at timestamptz); GRANT ALL ON soak TO ${APP_USER}`,
  );
  const pools = [
    {
      pool_mode: 'transaction' as const,
      pool_size: 10,
      extraPool: 'query_parser_enabled = true\nquery_parser_read_write_splitting = true\n',
    },
    { name: 'sessions', pool_mode: 'session' as const, pool_size: 10 },
  ];
  const general = 'prepared_statements_cache_size = 50\nidle_timeout = 20000\nworker_threads = 2';
  const proxy = await startProxy((port) => configFor(cluster, port, general, pools), ['-l', 'info']);
  const pid = proxy.proc.pid!;
  const fds = () => readdirSync(`/proc/${pid}/fd`).length;
  const serverConns = () =>
    cluster.nodes.reduce(
      (n, node) =>
        n + Number(cluster.psql(node, `SELECT count(*) FROM pg_stat_activity WHERE usename = '${APP_USER}'`).trim()),
      0,
    );
  const admin = adminClient(proxy.port);
  await admin.connect();
  const heapMb = async () =>
    (await admin.query('SHOW MEM')).rows.reduce((n, r) => n + Number(r.heap_used_kb), 0) / 1024;
  await sleep(1000);
  const fdList = () => readdirSync(`/proc/${pid}/fd`).map((fd) => `${fd}:${readlinkSync(`/proc/${pid}/fd/${fd}`)}`);
  const floorFds = fdList();
  const floor = { fds: fds(), servers: serverConns() };

  let running = true;
  let nextId = 1;
  const committed = new Set<number>();
  let faultUntil = 0;
  const counts = { ok: 0, failed: 0, faultFailed: 0 };
  const errors = new Map<string, number>();
  const failed = (e: unknown) => {
    if (Date.now() < faultUntil) counts.faultFailed++;
    else {
      counts.failed++;
      const m = (e as Error).message;
      errors.set(m, (errors.get(m) ?? 0) + 1);
    }
  };
  const connect = async (database = 'postgres') => {
    const c = client(proxy.port, { database });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };
  // Steady clients: reads (routed to the replica), writes, prepared statements.
  const steady = async (i: number) => {
    let c: pg.Client | null = null;
    while (running) {
      try {
        c ??= await connect(i % 4 === 0 ? 'sessions' : 'postgres');
        if (i % 3 === 0) {
          const id = nextId++;
          await c.query('INSERT INTO soak VALUES ($1, now())', [id]);
          committed.add(id);
        } else
          await c.query({ name: `read${i % 2}`, text: 'SELECT count(*) FROM pg_class WHERE oid > $1', values: [i] });
        counts.ok++;
      } catch (e) {
        failed(e);
        await c?.end().catch(() => undefined);
        c = null;
      }
      await sleep(5);
    }
    await c?.end().catch(() => undefined);
  };
  // Churn: a new client per short transaction.
  const churn = async () => {
    while (running) {
      try {
        const c = await connect();
        await c.query('BEGIN');
        await c.query("SELECT set_config('application_name', 'churn', true)");
        await c.query('COMMIT');
        await c.end();
        counts.ok++;
      } catch (e) {
        failed(e);
      }
      await sleep(20);
    }
  };
  // Cancels: a long statement cancelled every 10 s, the client reused after.
  const cancels = async () => {
    const sql = pgjs(proxy.port, { max: 1 });
    while (running) {
      const q = sql`SELECT pg_sleep(5)`;
      q.catch(() => undefined);
      await sleep(300);
      q.cancel();
      await q.then(
        () => failed(new Error('a cancelled statement finished')),
        (e: { code?: string }) => (e.code === '57014' ? counts.ok++ : failed(e)),
      );
      await sleep(10_000);
    }
    await sql.end();
  };
  const loads = [...Array.from({ length: STEADY }, (_, i) => steady(i)), churn(), churn(), cancels()];

  const samples: Sample[] = [];
  const t0 = Date.now();
  const config = readFileSync(proxy.configPath, 'utf8');
  let reloads = 0;
  let restarted = false;
  for (let minute = 1; minute <= MINUTES; minute++) {
    while (Date.now() < t0 + minute * 60_000) {
      await sleep(1000);
      const at = (Date.now() - t0) / 1000;
      // A reload every 5 minutes (pool_size 10 ↔ 12), the replica restarted at half time.
      if (at >= 150 + reloads * 300) {
        reloads++;
        writeFileSync(proxy.configPath, config.replace(/pool_size = 10/, `pool_size = ${reloads % 2 ? 12 : 10}`));
        proxy.proc.kill('SIGHUP');
      }
      if (!restarted && at >= (MINUTES * 60) / 2) {
        restarted = true;
        faultUntil = Date.now() + FAULT_MS;
        cluster.stopNode(cluster.nodes[1], 'fast');
        await sleep(3000);
        cluster.startNode(cluster.nodes[1]);
      }
    }
    const s: Sample = {
      minute,
      rss: rssMb(pid),
      heap: await heapMb(),
      fds: fds(),
      servers: serverConns(),
      ...counts,
    };
    counts.ok = counts.failed = counts.faultFailed = 0;
    samples.push(s);
    console.log(JSON.stringify(s));
  }
  running = false;
  await Promise.all(loads);
  // Load stopped: idle server connections close after idle_timeout (20 s).
  const stopAt = Date.now();
  while ((fds() > floor.fds + 2 || serverConns() > floor.servers) && Date.now() - stopAt < 60_000) await sleep(1000);
  const after = { fds: fds(), servers: serverConns(), seconds: Math.round((Date.now() - stopAt) / 1000) };
  const rows = cluster.psql(cluster.primary, 'SELECT count(*), count(DISTINCT id) FROM soak').trim().split('|');
  const stored = Number(rows[0]);

  const third = Math.max(1, Math.floor(samples.length / 3));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const mid = mean(samples.slice(third, 2 * third).map((s) => s.rss));
  const last = mean(samples.slice(2 * third).map((s) => s.rss));
  const growth = (last / mid - 1) * 100;
  const failedOutside = samples.reduce((n, s) => n + s.failed, 0);
  const checks = [
    [`RSS, last third vs second third: ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} % (≤ 5 %)`, growth <= 5],
    // Within 2 of the floor: libuv's EMFILE reserve (/dev/null), opened once per worker loop.
    [
      `fds after the load: ${after.fds} (floor ${floor.fds}, ≤ +2), ${after.seconds} s after it stopped`,
      after.fds <= floor.fds + 2,
    ],
    [`server connections after the load: ${after.servers} (floor ${floor.servers})`, after.servers <= floor.servers],
    [`failed transactions outside the fault windows: ${failedOutside}`, failedOutside === 0],
    [
      `committed writes: ${committed.size}, stored rows: ${stored}, distinct: ${rows[1]}`,
      stored === committed.size && Number(rows[1]) === stored,
    ],
  ] as const;
  const pass = checks.every((c) => c[1]);
  const body = [
    `\`npm run soak\` (${new Date().toISOString().slice(0, 10)}), ${MINUTES} min: ${STEADY} steady clients (reads ` +
      'routed to the replica, writes, named prepared statements; a quarter in session mode), two churning clients ' +
      '(a new connection per transaction), a cancelled statement every 10 s, a reload every 5 min from ' +
      `2.5 min (${reloads} in all), the replica restarted at minute ${Math.floor(MINUTES / 2)} (failures ` +
      `for ${FAULT_MS / 1000} s after count as injected).`,
    '',
    `**${pass ? 'Passed' : 'FAILED'}.**`,
    '',
    ...checks.map(([text, ok]) => `- ${ok ? 'ok' : '**not ok**'}: ${text}`),
    ...(after.fds > floor.fds + 2
      ? [
          '',
          `fds not there before the load: ${fdList()
            .filter((f) => !floorFds.includes(f))
            .join(', ')}`,
          ...sockets(pid),
        ]
      : []),
    ...(errors.size > 0
      ? ['', 'Errors outside the fault windows:', ...[...errors].map(([m, n]) => `- ${n} × ${m}`)]
      : []),
    '',
    '| minute | RSS MB | worker heaps MB | fds | server conns | ok | failed | failed (injected) |',
    '|---|---|---|---|---|---|---|---|',
    ...samples.map(
      (s) =>
        `| ${s.minute} | ${s.rss.toFixed(0)} | ${s.heap.toFixed(1)} | ${s.fds} | ${s.servers} | ` +
        `${s.ok} | ${s.failed} | ${s.faultFailed} |`,
    ),
  ];
  writeSection('Soak', body.join('\n'));
  console.log(body.join('\n'));
  await admin.end();
  await proxy.stop();
  cluster.stop();
  process.exit(pass ? 0 : 1);
}

void main();
