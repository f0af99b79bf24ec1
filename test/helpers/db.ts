// Small client helpers for tests: real drivers only.

import { spawnSync } from 'node:child_process';
import net from 'node:net';
import pg from 'pg';
import postgres from 'postgres';
import type { PgCluster, PgNode } from '../../testing/pg-cluster';

export const APP_USER = 'app';
export const APP_PASS = 'app-secret';

/** A role the tests route through openproxy, so its server connections can be counted apart from the test's own. */
export function createAppRole(c: PgCluster): void {
  c.psql(c.primary, `CREATE ROLE ${APP_USER} LOGIN PASSWORD '${APP_PASS}'; GRANT ALL ON SCHEMA public TO ${APP_USER};`);
}

export function client(port: number, opts: Partial<pg.ClientConfig> = {}): pg.Client {
  return new pg.Client({
    host: '127.0.0.1',
    port,
    user: APP_USER,
    password: APP_PASS,
    database: 'postgres',
    connectionTimeoutMillis: 10000,
    ...opts,
  });
}

/** A client of openproxy's admin console (the test configs' admin / adminpass). */
export function adminClient(port: number): pg.Client {
  return client(port, { user: 'admin', password: 'adminpass', database: 'openproxy' });
}

export async function query<T = Record<string, unknown>>(
  port: number,
  sql: string,
  opts: Partial<pg.ClientConfig> = {},
): Promise<T[]> {
  const c = client(port, opts);
  await c.connect();
  try {
    return (await c.query(sql)).rows as T[];
  } finally {
    await c.end();
  }
}

/** The error a connection attempt fails with (throws if it succeeds). */
export async function connectError(
  port: number,
  opts: Partial<pg.ClientConfig> = {},
): Promise<{ code?: string; message: string }> {
  const c = client(port, opts);
  c.on('error', () => undefined);
  try {
    await c.connect();
  } catch (e) {
    return e as { code?: string; message: string };
  }
  await c.end();
  throw new Error('connection unexpectedly succeeded');
}

/** Server connections the app role holds on a node (seen directly, not through the proxy). */
export function appBackends(c: PgCluster, n: PgNode): number {
  return Number(
    c.psql(
      n,
      `SELECT count(*) FROM pg_stat_activity WHERE usename = '${APP_USER}' AND backend_type = 'client backend'`,
    ),
  );
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A connected client whose socket will be cut abruptly (errors swallowed). */
export async function doomedClient(port: number): Promise<pg.Client> {
  const c = client(port);
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

/** The client's TCP socket, for tests that cut or poison it. */
export function socketOf(c: pg.Client): net.Socket {
  return (c as unknown as { connection: { stream: net.Socket } }).connection.stream;
}

/** Cuts the client's connection without a Terminate, as a crashed application would. */
export function vanish(c: pg.Client): void {
  socketOf(c).destroy();
}

/** psql -X -A -t against openproxy on 127.0.0.1:port as `user`: the spawnSync result (20 s deadline). */
export function psqlAs(user: string, password: string) {
  return (port: number, sql: string, extra: string[] = [], env: Record<string, string> = {}) =>
    spawnSync(
      'psql',
      ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', 'postgres', ...extra, '-c', sql],
      { encoding: 'utf8', env: { ...process.env, PGPASSWORD: password, ...env }, timeout: 20000 },
    );
}

/** A postgres.js client for openproxy on 127.0.0.1:port as the app user (`opts` adds or overrides). */
export function pgjs(port: number, opts: postgres.Options<Record<string, postgres.PostgresType>> = {}) {
  return postgres({ host: '127.0.0.1', port, user: APP_USER, pass: APP_PASS, database: 'postgres', ...opts });
}

/** A pg client whose connection comes from `from` (a loopback address). */
export function clientFrom(from: string, port: number, opts: Partial<pg.ClientConfig> = {}): pg.Client {
  return client(port, {
    stream: () => {
      const sock = new net.Socket();
      const connect = sock.connect.bind(sock) as (o: net.TcpNetConnectOpts) => net.Socket;
      (sock as unknown as { connect: unknown }).connect = (p: number, host: string) =>
        connect({ port: p, host, localAddress: from });
      return sock;
    },
    ...opts,
  });
}
