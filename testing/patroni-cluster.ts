// A throwaway Patroni 3 cluster for tests: one etcd and N Patroni members (Debian's `patroni` and
// `etcd-server` packages) on free loopback ports in a temp dir, with low ttl/loop_wait so that a
// failover takes seconds. Patroni and PostgreSQL run as the postgres system user when we are root.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, pgBinDir, SUPERPASS, SUPERUSER } from './pg-cluster';

export interface PatroniMember {
  name: string;
  pgPort: number;
  restPort: number;
  dir: string;
  config: string;
  log: string;
  proc: ChildProcess | null;
}

export interface PatroniOptions {
  members?: number;
  ttl?: number;
  loopWait?: number;
  retryTimeout?: number;
  /** Patroni's synchronous_mode: a commit is acknowledged only once a standby has it. */
  synchronous?: boolean;
}

export interface ClusterMember {
  name: string;
  role: string;
  state: string;
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

function pgUser(): { uid: number; gid: number } {
  const out = execFileSync('id', [SUPERUSER], { encoding: 'utf8' });
  return { uid: Number(/uid=(\d+)/.exec(out)![1]), gid: Number(/gid=(\d+)/.exec(out)![1]) };
}

/** One HTTP request to a Patroni REST API: status and parsed JSON body (null body when not JSON). */
export function patroniRequest(
  port: number,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 3000,
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        timeout: timeoutMs,
        headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {},
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* plain text */
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

export class PatroniCluster {
  readonly members: PatroniMember[] = [];
  private etcd: ChildProcess | null = null;
  etcdPort = 0;

  private constructor(
    readonly root: string,
    readonly opts: Required<PatroniOptions>,
  ) {}

  static async start(options: PatroniOptions = {}): Promise<PatroniCluster> {
    const opts: Required<PatroniOptions> = {
      members: 3,
      ttl: 10,
      loopWait: 1,
      retryTimeout: 3,
      synchronous: false,
      ...options,
    };
    const root = mkdtempSync(join(tmpdir(), 'openproxy-patroni-'));
    if (isRoot()) chownSync(root, pgUser().uid, pgUser().gid);
    const c = new PatroniCluster(root, opts);
    // A test process that is killed or force-exited before its after() must not leave the cluster running.
    process.once('exit', () => c.stop());
    try {
      await c.startEtcd();
      for (let i = 1; i <= opts.members; i++) await c.addMember(`pg${i}`);
      c.startMember(c.members[0]);
      await c.waitFor(
        async () => (await c.cluster()).some((m) => m.role === 'leader' && m.state === 'running'),
        60000,
        'a leader',
      );
      for (const m of c.members.slice(1)) c.startMember(m);
      await c.waitFor(
        async () =>
          (await c.cluster()).filter((m) => m.state === 'running' || m.state === 'streaming').length === opts.members,
        120000,
        'every member running',
      );
      if (opts.synchronous) await c.waitForSyncStandby();
    } catch (e) {
      c.stop();
      throw e;
    }
    return c;
  }

  private async startEtcd(): Promise<void> {
    this.etcdPort = await freePort();
    const peer = await freePort();
    const dir = join(this.root, 'etcd');
    const out = openSync(join(this.root, 'etcd.log'), 'a');
    this.etcd = spawn(
      '/usr/bin/etcd',
      [
        '--name',
        'e1',
        '--data-dir',
        dir,
        '--listen-client-urls',
        `http://127.0.0.1:${this.etcdPort}`,
        '--advertise-client-urls',
        `http://127.0.0.1:${this.etcdPort}`,
        '--listen-peer-urls',
        `http://127.0.0.1:${peer}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${peer}`,
        '--initial-cluster',
        `e1=http://127.0.0.1:${peer}`,
        '--enable-v2=true',
        '--unsafe-no-fsync',
        '--log-level',
        'warn',
      ],
      { stdio: ['ignore', out, out] },
    );
    await this.waitFor(
      async () => {
        try {
          return (await patroniRequest(this.etcdPort, 'GET', '/health')).status === 200;
        } catch {
          return false;
        }
      },
      20000,
      'etcd',
    );
  }

  private async addMember(name: string): Promise<void> {
    const pgPort = await freePort();
    const restPort = await freePort();
    const dir = join(this.root, name);
    const o = this.opts;
    const config = join(this.root, `${name}.yml`);
    writeFileSync(
      config,
      [
        `scope: openproxy-test`,
        `name: ${name}`,
        `log: {level: INFO}`,
        `restapi: {listen: '127.0.0.1:${restPort}', connect_address: '127.0.0.1:${restPort}'}`,
        `etcd3: {hosts: '127.0.0.1:${this.etcdPort}'}`,
        `bootstrap:`,
        `  dcs:`,
        `    ttl: ${o.ttl}`,
        `    loop_wait: ${o.loopWait}`,
        `    retry_timeout: ${o.retryTimeout}`,
        `    maximum_lag_on_failover: 1073741824`,
        `    synchronous_mode: ${o.synchronous}`,
        `    postgresql:`,
        `      use_pg_rewind: true`,
        `      parameters: {wal_level: replica, hot_standby: 'on', ` +
          `wal_log_hints: 'on', max_wal_senders: 10, max_replication_slots: 10, ` +
          `max_connections: 200, fsync: 'off', full_page_writes: 'off'}`,
        `  initdb: [{encoding: UTF8}, {locale: C}]`,
        `  pg_hba: ['local all all trust', 'host replication replicator ` +
          `127.0.0.1/32 md5', 'host all all 127.0.0.1/32 md5']`,
        `postgresql:`,
        `  listen: '127.0.0.1:${pgPort}'`,
        `  connect_address: '127.0.0.1:${pgPort}'`,
        `  data_dir: ${dir}`,
        `  bin_dir: ${pgBinDir()}`,
        `  pgpass: ${join(this.root, `${name}.pgpass`)}`,
        `  authentication:`,
        `    superuser: {username: ${SUPERUSER}, password: ${SUPERPASS}}`,
        `    replication: {username: replicator, password: replicator}`,
        `    rewind: {username: ${SUPERUSER}, password: ${SUPERPASS}}`,
        `  parameters: {unix_socket_directories: '${this.root}'}`,
        '',
      ].join('\n'),
    );
    if (isRoot()) chownSync(config, pgUser().uid, pgUser().gid);
    this.members.push({ name, pgPort, restPort, dir, config, log: join(this.root, `${name}.log`), proc: null });
  }

  /** Starts (or restarts) Patroni on a member; Patroni starts its PostgreSQL. */
  startMember(m: PatroniMember): void {
    const out = openSync(m.log, 'a');
    const ids = isRoot() ? pgUser() : undefined;
    if (!existsSync(m.dir)) mkdirSync(m.dir, { recursive: true, mode: 0o700 });
    if (ids) chownSync(m.dir, ids.uid, ids.gid);
    m.proc = spawn('/usr/bin/patroni', [m.config], {
      stdio: ['ignore', out, out],
      uid: ids?.uid,
      gid: ids?.gid,
      env: { ...process.env, HOME: this.root, PGPASSWORD: SUPERPASS },
    });
  }

  /** SIGKILL to Patroni only: its PostgreSQL keeps running (and, on the leader, accepting writes). */
  killPatroni(m: PatroniMember): void {
    if (m.proc?.pid && m.proc.exitCode === null) m.proc.kill('SIGKILL');
    m.proc = null;
  }

  /** The member's postmaster PID, or 0. */
  postmasterPid(m: PatroniMember): number {
    try {
      return Number(readFileSync(join(m.dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    } catch {
      return 0;
    }
  }

  /** The whole node dies at once: Patroni, the postmaster and every backend SIGKILLed. */
  killNode(m: PatroniMember): void {
    this.killPatroni(m);
    const pm = this.postmasterPid(m);
    if (pm <= 0) return;
    const pids = [pm];
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pm) pids.push(Number(d));
      } catch {
        /* gone */
      }
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }

  /** GET /cluster from any member that answers. */
  async cluster(): Promise<ClusterMember[]> {
    for (const m of this.members) {
      if (!m.proc) continue;
      try {
        const r = await patroniRequest(m.restPort, 'GET', '/cluster', undefined, 1000);
        if (r.status === 200)
          return ((r.body as { members?: ClusterMember[] }).members ?? []).map((x) => ({
            name: x.name,
            role: x.role,
            state: x.state,
          }));
      } catch {
        /* try the next one */
      }
    }
    return [];
  }

  async leader(): Promise<PatroniMember | undefined> {
    const l = (await this.cluster()).find((m) => m.role === 'leader' && m.state === 'running');
    return l ? this.members.find((m) => m.name === l.name) : undefined;
  }

  /** Synchronous mode: until Patroni has named a synchronous standby (commits wait for it). */
  async waitForSyncStandby(ms = 30000): Promise<ClusterMember> {
    let sync: ClusterMember | undefined;
    await this.waitFor(
      async () =>
        (sync = (await this.cluster()).find((m) => m.role === 'sync_standby' && m.state === 'running')) !== undefined,
      ms,
      'a synchronous standby',
    );
    return sync!;
  }

  /** Planned switchover through the REST API (Patroni's POST /switchover). */
  async switchover(from: PatroniMember, to: PatroniMember): Promise<{ status: number; body: unknown }> {
    return patroniRequest(from.restPort, 'POST', '/switchover', { leader: from.name, candidate: to.name }, 30000);
  }

  async waitFor(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await cond()) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`timed out after ${ms} ms waiting for ${what}; logs in ${this.root}`);
  }

  private stopped = false;

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const m of this.members) this.killNode(m);
    if (this.etcd?.pid && this.etcd.exitCode === null) this.etcd.kill('SIGKILL');
    if (!process.env.KEEP_PATRONI) rmSync(this.root, { recursive: true, force: true });
  }
}
