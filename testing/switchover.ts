// One measured Patroni switchover through openproxy: writers insert through openproxy while the
// candidate is polled directly every few ms; the result is how long after the new primary first
// accepted writes the first write through openproxy landed on it (openproxy's share of the
// outage) and the whole write outage seen by the writers. Shared by the tests and the benchmark.

import pg from 'pg';
import type { PatroniCluster, PatroniMember } from './patroni-cluster';
import { SUPERPASS, SUPERUSER } from './pg-cluster';

export interface SwitchoverTiming {
  from: string;
  to: string;
  /** New primary writable → first write through openproxy acknowledged by it (ms). */
  afterWritable: number;
  /** Switchover requested → first write through openproxy on the new primary (ms). */
  outage: number;
  /** When the new primary first answered pg_is_in_recovery() = false. */
  writableAt: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `table` must exist with a column `port int`; user/password log in through openproxy at `proxyPort`. */
export async function measureSwitchover(
  cluster: PatroniCluster,
  proxyPort: number,
  login: { user: string; password: string; table: string },
  writerCount = 2,
): Promise<SwitchoverTiming> {
  await cluster.waitFor(
    async () => {
      const ms = await cluster.cluster();
      const up = ms.filter((m) => m.state === 'running' || m.state === 'streaming');
      return up.length === cluster.members.length && ms.some((m) => m.role === 'leader');
    },
    60000,
    'every member running, one leader',
  );
  const from = (await cluster.leader())!;
  const to = cluster.members.find((m) => m !== from && m.proc !== null)!;
  let running = true;
  let landed = 0;
  let writable = 0;
  const writer = async () => {
    let c: pg.Client | null = null;
    while (running) {
      try {
        if (!c) {
          c = new pg.Client({
            host: '127.0.0.1',
            port: proxyPort,
            user: login.user,
            password: login.password,
            database: 'postgres',
            query_timeout: 20000,
          });
          c.on('error', () => undefined);
          await c.connect();
        }
        const r = await c.query(`INSERT INTO ${login.table} (port) VALUES (inet_server_port()) RETURNING port`);
        if (Number(r.rows[0].port) === to.pgPort && landed === 0 && t0 > 0) landed = Date.now();
      } catch {
        await c?.end().catch(() => undefined);
        c = null;
        await sleep(5);
      }
    }
    await c?.end().catch(() => undefined);
  };
  const watcher = async () => {
    let c: pg.Client | null = null;
    while (running && writable === 0) {
      try {
        if (!c) {
          c = direct(to);
          await c.connect();
        }
        if ((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r === false) writable = Date.now();
      } catch {
        await c?.end().catch(() => undefined);
        c = null;
        await sleep(20);
      }
      await sleep(2);
    }
    await c?.end().catch(() => undefined);
  };
  let t0 = 0;
  const loops = [...Array.from({ length: writerCount }, writer), watcher()];
  try {
    await sleep(300);
    t0 = Date.now();
    // Patroni refuses (412) while the members are still catching up after the last switchover.
    for (let tries = 0; ; tries++) {
      const r = await cluster.switchover(from, to);
      if (r.status === 200) break;
      if (r.status !== 412 || tries >= 60) throw new Error(`switchover refused: ${r.status} ${JSON.stringify(r.body)}`);
      await sleep(500);
      t0 = Date.now();
    }
    const end = Date.now() + 60000;
    while ((landed === 0 || writable === 0) && Date.now() < end) await sleep(10);
    if (landed === 0 || writable === 0) throw new Error(`no write on ${to.name} through openproxy within 60 s`);
  } finally {
    running = false;
    await Promise.all(loops);
  }
  return {
    from: from.name,
    to: to.name,
    afterWritable: landed - writable,
    outage: landed - t0,
    writableAt: new Date(writable).toISOString(),
  };
}

function direct(m: PatroniMember): pg.Client {
  return new pg.Client({
    host: '127.0.0.1',
    port: m.pgPort,
    user: SUPERUSER,
    password: SUPERPASS,
    database: 'postgres',
    connectionTimeoutMillis: 2000,
  });
}

/** p50, p95, mean and max of a list of ms. */
export function summary(ms: number[]): { p50: number; p95: number; mean: number; max: number } {
  const v = [...ms].sort((a, b) => a - b);
  const at = (q: number) => v[Math.min(v.length - 1, Math.ceil(q * v.length) - 1)];
  return {
    p50: at(0.5),
    p95: at(0.95),
    mean: Math.round(v.reduce((a, b) => a + b, 0) / v.length),
    max: v[v.length - 1],
  };
}
