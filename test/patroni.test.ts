// Following the primary with Patroni (use_patroni): a real 3-member Patroni 3 cluster on etcd, in
// synchronous mode so that an acknowledged commit survives a failover. Writers run through
// openproxy during a planned switchover, a crash of the whole leader node, and a crash of only
// Patroni on the (new) leader, whose PostgreSQL keeps running and accepting writes: a zombie.
// Checked each time: no acknowledged write is missing from the new primary (so none landed on a
// node that was no longer primary), nothing was written through openproxy to the zombie after it
// was fenced, and writes resume within renew_interval + 1 s of the new primary accepting writes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import pg from 'pg';
import { PatroniCluster, type PatroniMember } from '../testing/patroni-cluster';
import { SUPERPASS, SUPERUSER } from '../testing/pg-cluster';
import { APP_PASS, APP_USER, adminClient, sleep, until } from './helpers/db';
import { type Proxy, startProxy } from './helpers/proxy';

const RENEW = 500;
let cluster: PatroniCluster;
let proxy: Proxy;
const timings: { trial: string; outage: number; afterWritable: number }[] = [];
let trials = 0;

function direct(m: PatroniMember): pg.Client {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: m.pgPort,
    user: SUPERUSER,
    password: SUPERPASS,
    database: 'postgres',
    connectionTimeoutMillis: 2000,
    query_timeout: 2000,
  });
  c.on('error', () => undefined);
  return c;
}

async function sql(m: PatroniMember, text: string): Promise<pg.QueryResult> {
  const c = direct(m);
  await c.connect();
  try {
    return await c.query(text);
  } finally {
    await c.end().catch(() => undefined);
  }
}

before(async () => {
  cluster = await PatroniCluster.start({ members: 3, ttl: 10, loopWait: 1, retryTimeout: 3, synchronous: true });
  const leader = (await cluster.leader())!;
  await sql(
    leader,
    `CREATE ROLE ${APP_USER} LOGIN PASSWORD '${APP_PASS}'; CREATE TABLE ` +
      `ledger (id bigint PRIMARY KEY, port int NOT NULL, at timestamptz NOT ` +
      `NULL DEFAULT clock_timestamp()); GRANT ALL ON ledger TO ${APP_USER}; ` +
      `GRANT ALL ON SCHEMA public TO ${APP_USER}`,
  );
  const init = spawnSync(
    'pgbench',
    ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(leader.pgPort), '-U', SUPERUSER, 'postgres'],
    { env: { ...process.env, PGPASSWORD: SUPERPASS }, encoding: 'utf8' },
  );
  assert.equal(init.status, 0, init.stderr);
  await sql(leader, `GRANT ALL ON ALL TABLES IN SCHEMA public TO ${APP_USER}`);
  const servers = cluster.members.map((m) => `["127.0.0.1", ${m.pgPort}, "auto", ${m.restPort}]`).join(', ');
  proxy = await startProxy(
    (port) => `[general]\nhost = "127.0.0.1"\nport = ${port}\nworker_threads = 2\nprometheus_exporter_port = 0\n\
renew_interval = ${RENEW}\nadmin_username = "admin"\nadmin_password = "adminpass"\nprimary_wait_timeout = 30000\n\
healthcheck_timeout = 1000\nconnect_timeout = 2000\nban_time = 2\n
[pools.postgres]\npool_mode = "transaction"\nquery_parser_enabled = true\nquery_parser_read_write_splitting = true\n
[pools.postgres.users.0]\nusername = "${APP_USER}"\npassword = "${APP_PASS}"\npool_size = 8\n
[pools.postgres.shards.0]\ndatabase = "postgres"\nuse_patroni = true\nservers = [${servers}]\n`,
  );
  await proxy.waitFor(/server role.*primary.*patroni/, 15000);
});
after(async () => {
  await proxy?.stop();
  cluster?.stop();
  if (timings.length) console.log(`# failover timings (ms): ${JSON.stringify(timings)}`);
});

interface Ack {
  id: number;
  port: number;
  at: number;
}

/** Writers through openproxy: unique ids, every acknowledged one kept with the port it landed on. */
function writers(n: number, base: number) {
  const acks: Ack[] = [];
  const errors: { at: number; code: string; message: string }[] = [];
  let running = true;
  let next = base;
  const loops = Array.from({ length: n }, async () => {
    let c: pg.Client | null = null;
    while (running) {
      try {
        if (!c) {
          // No write may hang the test: one stuck (say, a commit waiting for a synchronous standby) fails after 20 s.
          c = new pg.Client({
            host: '127.0.0.1',
            port: proxy.port,
            user: APP_USER,
            password: APP_PASS,
            database: 'postgres',
            connectionTimeoutMillis: 5000,
            query_timeout: 20000,
          });
          c.on('error', () => undefined);
          await c.connect();
        }
        const id = next++;
        const r = await c.query('INSERT INTO ledger (id, port) VALUES ($1, inet_server_port()) RETURNING port', [id]);
        acks.push({ id, port: Number(r.rows[0].port), at: Date.now() });
      } catch (e) {
        const err = e as { code?: string; message: string };
        errors.push({ at: Date.now(), code: err.code ?? '', message: err.message });
        await c?.end().catch(() => undefined);
        c = null; // a client that lost its server connection simply reconnects and retries
        await sleep(20);
      }
    }
    await c?.end().catch(() => undefined);
  });
  return {
    acks,
    errors,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Polls nodes directly from now on; for each, the first time it was out of recovery (accepts writes). */
function watchWritable(nodes: PatroniMember[]) {
  const first = new Map<PatroniMember, number>();
  let running = true;
  const loops = nodes.map(async (m) => {
    let c: pg.Client | null = null;
    while (running && !first.has(m)) {
      try {
        if (!c) {
          c = direct(m);
          await c.connect();
        }
        if ((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r === false) first.set(m, Date.now());
      } catch {
        await c?.end().catch(() => undefined);
        c = null; // restarting or gone: try again
        await sleep(50);
      }
      await sleep(10);
    }
    await c?.end().catch(() => undefined);
  });
  return {
    first,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** pgbench (TPC-B-like, simple protocol) through openproxy for `seconds`: transactions done and clients aborted. */
function pgbench(seconds: number): Promise<{ done: number; aborted: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(
      'timeout',
      [
        '-s',
        'INT',
        '-k',
        '5',
        String(seconds + 30),
        'pgbench',
        '-n',
        '-c',
        '4',
        '-T',
        String(seconds),
        '-h',
        '127.0.0.1',
        '-p',
        String(proxy.port),
        '-U',
        APP_USER,
        'postgres',
      ],
      { env: { ...process.env, PGPASSWORD: APP_PASS } },
    );
    let out = '';
    p.stdout.on('data', (b) => (out += b));
    p.stderr.on('data', (b) => (out += b));
    p.on('close', () => {
      const done = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? 0);
      resolve({ done, aborted: (out.match(/aborted in command/g) ?? []).length, out });
    });
  });
}

/**
 * One failover trial: writers and pgbench run through openproxy, `act` causes the failover, then
 * the invariants are checked once the new primary took writes through openproxy.
 */
async function trial(name: string, act: (leader: PatroniMember) => Promise<void>, fenced: boolean): Promise<void> {
  // Every commit acknowledged from here on is also on the synchronous standby, the only failover target.
  await cluster.waitForSyncStandby(60000); // after a node crash the survivor re-follows the new leader first
  const old = (await cluster.leader())!;
  assert.ok(old, 'a leader before the trial');
  const base = ++trials * 10_000_000;
  const w = writers(4, base);
  const benchStart = Date.now();
  const bench = pgbench(25);
  let t0 = 0;
  let accepts = 0;
  let next: PatroniMember | undefined;
  let watch: ReturnType<typeof watchWritable> | null = null;
  let stage = 'before the failover';
  try {
    await sleep(1500); // pgbench and the writers in full swing
    await until(
      () => w.acks.length > 20,
      10000,
      `writes flowing before the failover (errors: ${JSON.stringify(w.errors.slice(-3))})`,
    );
    watch = watchWritable(cluster.members.filter((m) => m !== old && m.proc !== null));
    await sleep(100);
    t0 = Date.now();
    await act(old);
    await until(
      async () => {
        next = await cluster.leader();
        return next !== undefined && next !== old;
      },
      60000,
      'a new leader',
    );
    await until(() => watch!.first.has(next!), 30000, `${next!.name} accepting writes`);
    stage = 'writes through openproxy on the new primary';
    accepts = watch.first.get(next!)!;
    await until(
      () => w.acks.some((a) => a.port === next!.pgPort && a.at >= t0),
      30000,
      'writes through openproxy on the new primary',
    );
    await sleep(500);
  } catch (e) {
    // What the cluster and openproxy looked like when it failed.
    const tail = proxy
      .output()
      .split('\n')
      .filter((l) => /role|primary|WARN|ERROR/.test(l))
      .slice(-25)
      .join('\n');
    throw new Error(
      `${name} failed at "${stage}": ${(e as Error).message}\ncluster: ` +
        `${JSON.stringify(await cluster.cluster())}\nlast write errors: ` +
        `${JSON.stringify(w.errors.slice(-5))}\nopenproxy:\n${tail}`,
    );
  } finally {
    await watch?.stop();
    await w.stop();
  }
  const resumed = w.acks.find((a) => a.port === next!.pgPort && a.at >= t0)!.at;
  // pgbench should end 25 s after it started; if it is still running 10 s later, record why first.
  let stuck = '';
  const late = setTimeout(
    () => void stuckReport(old).then((r) => (stuck = r)),
    Math.max(0, benchStart + 35_000 - Date.now()),
  );
  const b = await bench;
  clearTimeout(late);
  timings.push({ trial: name, outage: resumed - t0, afterWritable: resumed - accepts });

  // Every acknowledged write is on the new primary (it would be missing had it landed on a node
  // that was no longer primary: synchronous mode keeps every commit the old primary acknowledged).
  const present = new Set(
    (await sql(next!, `SELECT id FROM ledger WHERE id >= ${base}`)).rows.map((r) => Number(r.id)),
  );
  const missing = w.acks.filter((a) => !present.has(a.id));
  assert.deepEqual(missing, [], 'acknowledged writes missing from the new primary');
  // Once the old leader stopped being primary for Patroni, openproxy sent it nothing more.
  if (fenced) {
    const late = w.acks.filter((a) => a.port === old.pgPort && a.at > t0 + RENEW + 1000);
    assert.deepEqual(late, [], 'writes acknowledged by the fenced node after renew_interval + 1 s');
  }
  assert.ok(
    resumed - accepts <= RENEW + 1000,
    `writes resumed ${resumed - accepts} ms after ${next!.name} accepted writes (limit ${RENEW + 1000})`,
  );
  assert.ok(b.done > 0, `pgbench ran through the failover: ${b.out}\n${stuck}`);
  console.log(
    `# ${name}: ${old.name} -> ${next!.name}; write outage ${resumed - t0} ms, ` +
      `${resumed - accepts} ms after the new primary was writable; ${w.acks.length} writes acknowledged, ` +
      `${w.errors.length} failed (${[...new Set(w.errors.map((e) => `${e.code} ${e.message}`))].join('; ')}); ` +
      `pgbench ${b.done} transactions, ${b.aborted} clients aborted` +
      `${b.aborted ? ` (first: ${/aborted in command.*/.exec(b.out)?.[0]})` : ''}`,
  );
}

/** What a pgbench that outlived its -T waits for: the app's sessions on every node, openproxy's recent log. */
async function stuckReport(old: PatroniMember): Promise<string> {
  const lines = [`pgbench still running 10 s after -T (old leader ${old.name})`];
  for (const m of cluster.members) {
    try {
      const r = await sql(
        m,
        `SELECT pid, state, wait_event_type || ':' || wait_event AS wait, ` +
          `backend_xid IS NOT NULL AS xid, now() - xact_start AS xact_age, ` +
          `left(query, 60) AS query FROM pg_stat_activity WHERE usename = ` +
          `'${APP_USER}'`,
      );
      lines.push(`${m.name} (${m.pgPort}): ${JSON.stringify(r.rows)}`);
    } catch (e) {
      lines.push(`${m.name}: ${(e as Error).message}`);
    }
  }
  const admin = adminClient(proxy.port);
  admin.on('error', () => undefined);
  try {
    await admin.connect();
    for (const cmd of ['SHOW CLIENTS', 'SHOW SERVERS'])
      lines.push(`${cmd}: ${JSON.stringify((await admin.query(cmd)).rows)}`);
  } catch (e) {
    lines.push(`admin console: ${(e as Error).message}`);
  } finally {
    await admin.end().catch(() => undefined);
  }
  lines.push('openproxy:', ...proxy.output().split('\n').slice(-60));
  return lines.join('\n');
}

describe('use_patroni', () => {
  test('roles come from Patroni confirmed by SQL: writes go to the leader, reads to replicas', async () => {
    const leader = (await cluster.leader())!;
    const c = new pg.Client({
      host: '127.0.0.1',
      port: proxy.port,
      user: APP_USER,
      password: APP_PASS,
      database: 'postgres',
    });
    await c.connect();
    try {
      const wrote = await c.query('INSERT INTO ledger (id, port) VALUES (1, inet_server_port()) RETURNING port');
      assert.equal(Number(wrote.rows[0].port), leader.pgPort);
      // Another client: this one's reads right after its write stay on the primary (read_your_writes).
      const reader = new pg.Client({
        host: '127.0.0.1',
        port: proxy.port,
        user: APP_USER,
        password: APP_PASS,
        database: 'postgres',
      });
      await reader.connect();
      const seen = new Set<number>();
      try {
        for (let i = 0; i < 30; i++) seen.add(Number((await reader.query('SELECT inet_server_port() AS p')).rows[0].p));
      } finally {
        await reader.end();
      }
      assert.ok(!seen.has(leader.pgPort), 'reads go to replicas');
      assert.equal(seen.size, 2, 'both replicas take reads');
    } finally {
      await c.end();
    }
    assert.match(proxy.output(), /source="patroni \+ sql probe"/);
  });

  test('planned switchover', async () => {
    await trial(
      'switchover',
      async (leader) => {
        // Synchronous mode: Patroni switches over only to the synchronous standby.
        const sync = await cluster.waitForSyncStandby();
        const to = cluster.members.find((m) => m.name === sync.name)!;
        assert.ok(to, 'a synchronous standby');
        const r = await cluster.switchover(leader, to);
        assert.equal(r.status, 200, JSON.stringify(r.body));
      },
      false,
    );
  });

  test('the leader node crashes (Patroni and PostgreSQL killed)', async () => {
    await trial(
      'node crash',
      async (leader) => {
        cluster.killNode(leader);
      },
      false,
    );
  });

  test(
    'only Patroni dies on the leader: its still-writable PostgreSQL is ' +
      'fenced at once, the new leader takes the writes',
    async () => {
      let zombie: PatroniMember | undefined;
      await trial(
        'patroni crash',
        async (leader) => {
          zombie = leader;
          cluster.killPatroni(leader);
        },
        true,
      );
      // The zombie still accepts writes directly, so the fencing above was openproxy's doing.
      const r = await sql(zombie!, 'SELECT pg_is_in_recovery() AS r');
      assert.equal(r.rows[0].r, false, 'the old leader was still a writable primary');
    },
  );
});
