// Starts a real openproxy process on a config for one test, and stops it by PID.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, type PgCluster } from '../../testing/pg-cluster';
import { APP_PASS, APP_USER } from './db';

export const MAIN = join(__dirname, '..', '..', 'src', 'main.js');

const temps: string[] = [];
process.on('exit', () => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

/** A temp dir removed when the test process exits. */
export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  temps.push(d);
  return d;
}

export interface Proxy {
  port: number;
  proc: ChildProcess;
  configPath: string;
  dir: string;
  output(): string;
  waitFor(re: RegExp, ms?: number): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface PoolOptions {
  name?: string;
  pool_mode?: 'session' | 'transaction';
  pool_size?: number;
  min_pool_size?: number;
  extraPool?: string;
  extraUser?: string;
  username?: string;
  password?: string;
}

/** A config with one pool (default name "postgres") in front of the cluster's primary and replicas. */
export function configFor(cluster: PgCluster, port: number, general = '', pools: PoolOptions[] = [{}]): string {
  const servers = cluster.nodes.map((n) => `["127.0.0.1", ${n.port}, "${n.role}"]`).join(', ');
  const workers = /worker_threads/.test(general) ? '' : 'worker_threads = 2\n';
  // Tests run several proxies at once: the HTTP side only where a test asks for it.
  general = /prometheus_exporter_port/.test(general) ? general : `${general}\nprometheus_exporter_port = 0`;
  let out =
    `[general]\nhost = "127.0.0.1"\nport = ` +
    `${port}\n${workers}admin_username = "admin"\nadmin_password = ` +
    `"adminpass"\n${general}\n`;
  for (const p of pools) {
    const name = p.name ?? 'postgres';
    out += `\n[pools.${name}]\npool_mode = "${p.pool_mode ?? 'session'}"\n${p.extraPool ?? ''}\n`;
    out +=
      `\n[pools.${name}.users.0]\nusername = ` +
      `"${p.username ?? APP_USER}"\npassword = ` +
      `"${p.password ?? APP_PASS}"\npool_size = ` +
      `${p.pool_size ?? 5}\nmin_pool_size = ` +
      `${p.min_pool_size ?? 0}\n${p.extraUser ?? ''}\n`;
    out += `\n[pools.${name}.shards.0]\ndatabase = "postgres"\nservers = [${servers}]\n`;
  }
  return out;
}

/** `netns`: run it inside that network namespace (`ip netns exec` execs node itself, so the PID is openproxy's). */
export async function startProxy(
  toml: string | ((port: number) => string),
  args: string[] = [],
  env: Record<string, string> = {},
  ready = /openproxy listening/,
  netns?: string,
): Promise<Proxy> {
  const port = await freePort();
  const dir = tempDir('openproxy-test-');
  const configPath = join(dir, 'openproxy.toml');
  writeFileSync(configPath, typeof toml === 'string' ? toml : toml(port));
  const argv = [MAIN, configPath, '--log-target', 'stdout', '-l', 'debug', ...args];
  const proc = netns
    ? spawn('ip', ['netns', 'exec', netns, process.execPath, ...argv], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    : spawn(process.execPath, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (b) => (out += b));
  proc.stderr!.on('data', (b) => (out += b));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const p: Proxy = {
    port,
    proc,
    configPath,
    dir,
    output: () => out,
    waitFor: (re, ms = 15000) =>
      new Promise((resolve, reject) => {
        const t0 = Date.now();
        const tick = () => {
          if (re.test(out)) return resolve();
          if (proc.exitCode !== null)
            return reject(new Error(`openproxy exited (${proc.exitCode}) before ${re}:\n${out}`));
          if (Date.now() - t0 > ms) return reject(new Error(`timed out waiting for ${re}:\n${out}`));
          setTimeout(tick, 20);
        };
        tick();
      }),
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null) proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 15000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
  await p.waitFor(ready);
  return p;
}
