// Throwaway PostgreSQL clusters for tests, benchmarks and the demo: a primary from initdb and
// streaming replicas from pg_basebackup -R, on free loopback ports in a temp dir. PostgreSQL
// refuses to run as root, so as root every command runs as the `postgres` system user.

import { execFileSync, spawnSync } from 'node:child_process';
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
  appendFileSync,
  readFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SUPERUSER = 'postgres';
export const SUPERPASS = 'postgres';

export function pgBinDir(): string {
  const fromEnv = process.env.PG_BINDIR;
  if (fromEnv && existsSync(join(fromEnv, 'initdb'))) return fromEnv;
  try {
    const d = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
    if (existsSync(join(d, 'initdb'))) return d;
  } catch {
    /* not on PATH */
  }
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions.length) return join(base, versions[0], 'bin');
  }
  throw new Error('PostgreSQL server binaries (initdb) not found: install the postgresql package or set PG_BINDIR');
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

function pgUser(): { uid: number; gid: number } {
  const out = execFileSync('id', [SUPERUSER], { encoding: 'utf8' });
  return { uid: Number(/uid=(\d+)/.exec(out)![1]), gid: Number(/gid=(\d+)/.exec(out)![1]) };
}

/** Runs a PostgreSQL binary, as the postgres user when we are root (inside `netns` when given). */
function run(bin: string, args: string[], env: Record<string, string> = {}, netns?: string): string {
  let cmd = isRoot() ? 'runuser' : bin;
  let argv = isRoot() ? ['-u', SUPERUSER, '--', bin, ...args] : args;
  if (netns) {
    argv = ['netns', 'exec', netns, cmd, ...argv];
    cmd = 'ip';
  }
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120000 });
  if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

export interface PgNode {
  port: number;
  dir: string;
  role: 'primary' | 'replica';
}

export interface ClusterOptions {
  replicas?: number;
  /** Extra postgresql.conf lines for every node. */
  settings?: Record<string, string | number>;
  /** Run the servers inside this network namespace (VRRP test beds). */
  netns?: string;
  /** Extra pg_hba.conf lines. */
  hba?: string[];
}

export class PgCluster {
  readonly nodes: PgNode[] = [];
  private netns?: string;
  private constructor(
    readonly root: string,
    readonly bin: string,
  ) {}

  get primary(): PgNode {
    return this.nodes[0];
  }

  get replicas(): PgNode[] {
    return this.nodes.slice(1);
  }

  static async start(opts: ClusterOptions = {}): Promise<PgCluster> {
    const bin = pgBinDir();
    const root = mkdtempSync(join(tmpdir(), 'openproxy-pg-'));
    const c = new PgCluster(root, bin);
    c.netns = opts.netns;
    // A test process that is force-exited before its after() must not leave servers running.
    process.once('exit', () => c.stop());
    if (isRoot()) {
      const { uid, gid } = pgUser();
      chownSync(root, uid, gid);
    }
    try {
      await c.initPrimary(opts);
      for (let i = 0; i < (opts.replicas ?? 0); i++) await c.addReplica(i);
    } catch (e) {
      c.stop();
      throw e;
    }
    return c;
  }

  private async initPrimary(opts: ClusterOptions): Promise<void> {
    const dir = join(this.root, 'primary');
    const pwfile = join(this.root, 'pwfile');
    writeFileSync(pwfile, `${SUPERPASS}\n`);
    if (isRoot()) {
      const { uid, gid } = pgUser();
      chownSync(pwfile, uid, gid);
    }
    run(join(this.bin, 'initdb'), [
      '-D',
      dir,
      '-U',
      SUPERUSER,
      `--pwfile=${pwfile}`,
      '--auth-local=trust',
      '--auth-host=md5',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
    ]);
    const port = await freePort();
    const conf = {
      listen_addresses: "'127.0.0.1'",
      port,
      unix_socket_directories: `'${this.root}'`,
      max_connections: 300,
      wal_level: 'replica',
      max_wal_senders: 10,
      hot_standby: 'on',
      fsync: 'off',
      full_page_writes: 'off',
      shared_buffers: '128MB',
      logging_collector: 'off',
      ...(opts.settings ?? {}),
    };
    if (opts.hba?.length) appendFileSync(join(dir, 'pg_hba.conf'), `\n${opts.hba.join('\n')}\n`);
    appendFileSync(
      join(dir, 'postgresql.conf'),
      `\n${Object.entries(conf)
        .map(([k, v]) => `${k} = ${v}`)
        .join('\n')}\n`,
    );
    this.nodes.push({ port, dir, role: 'primary' });
    this.startNode(this.nodes[0]);
  }

  private async addReplica(i: number): Promise<void> {
    const dir = join(this.root, `replica${i}`);
    run(
      join(this.bin, 'pg_basebackup'),
      [
        '-h',
        '127.0.0.1',
        '-p',
        String(this.primary.port),
        '-U',
        SUPERUSER,
        '-D',
        dir,
        '-R',
        '-X',
        'stream',
        '--no-sync',
      ],
      { PGPASSWORD: SUPERPASS },
      this.netns,
    );
    const port = await freePort();
    appendFileSync(join(dir, 'postgresql.conf'), `\nport = ${port}\n`);
    const node: PgNode = { port, dir, role: 'replica' };
    this.nodes.push(node);
    this.startNode(node);
  }

  startNode(n: PgNode): void {
    run(
      join(this.bin, 'pg_ctl'),
      ['-D', n.dir, '-l', join(n.dir, 'server.log'), '-w', '-t', '60', 'start'],
      {},
      this.netns,
    );
  }

  /** pg_ctl promote: a replica becomes a primary (waits until it accepts writes). */
  promote(n: PgNode): void {
    run(join(this.bin, 'pg_ctl'), ['-D', n.dir, '-w', '-t', '60', 'promote'], {}, this.netns);
  }

  stopNode(n: PgNode, mode: 'fast' | 'immediate' = 'immediate'): void {
    try {
      run(join(this.bin, 'pg_ctl'), ['-D', n.dir, '-m', mode, '-w', 'stop'], {}, this.netns);
    } catch {
      /* already stopped */
    }
  }

  /** The node's postmaster PID and its children's (backends, walreceiver, …), from postmaster.pid and /proc. */
  pids(n: PgNode): number[] {
    const pm = Number(readFileSync(join(n.dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const out = [pm];
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid === pm) out.push(Number(d));
      } catch {
        /* gone */
      }
    }
    return out;
  }

  /** Signals the postmaster without waiting: SIGQUIT = immediate shutdown, SIGINT = fast shutdown. */
  signal(n: PgNode, sig: NodeJS.Signals): void {
    process.kill(this.pids(n)[0], sig);
  }

  /** Runs SQL with psql as the superuser on a node; returns unaligned, tuples-only output. */
  psql(n: PgNode, sql: string): string {
    const args = [
      '-X',
      '-A',
      '-t',
      '-v',
      'ON_ERROR_STOP=1',
      '-h',
      '127.0.0.1',
      '-p',
      String(n.port),
      '-U',
      SUPERUSER,
      '-d',
      'postgres',
      '-c',
      sql,
    ];
    const r = spawnSync(
      this.netns ? 'ip' : 'psql',
      this.netns ? ['netns', 'exec', this.netns, 'psql', ...args] : args,
      {
        encoding: 'utf8',
        env: { ...process.env, PGPASSWORD: SUPERPASS },
      },
    );
    if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`);
    return r.stdout.trim();
  }

  private stopped = false;

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const n of [...this.nodes].reverse()) this.stopNode(n);
    rmSync(this.root, { recursive: true, force: true });
  }
}
