// `npm start`: openproxy in front of a throwaway local PostgreSQL primary + replica (initdb in a
// temp dir), with the psql line to connect. Everything is removed again on Ctrl-C.
// The openproxy binary itself never starts this: it is for trying openproxy out.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PgCluster, freePort } from './pg-cluster';

const DEMO_USER = 'demo';
const DEMO_PASS = 'demo';

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

async function demo(): Promise<void> {
  process.stdout.write('openproxy demo: starting a throwaway PostgreSQL primary + replica…\n');
  const cluster = await PgCluster.start({ replicas: 1 });
  cluster.psql(
    cluster.primary,
    `CREATE ROLE ${DEMO_USER} LOGIN PASSWORD '${DEMO_PASS}' CREATEDB; ` +
      `GRANT ALL ON SCHEMA public TO ${DEMO_USER}; GRANT CREATE ON DATABASE ` +
      `postgres TO ${DEMO_USER}`,
  );
  const port = Number(process.env.PORT) || ((await portFree(6432)) ? 6432 : await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'openproxy-demo-'));
  const config = join(dir, 'openproxy.toml');
  writeFileSync(
    config,
    `# Written by the openproxy demo; see config/openproxy.toml for every key.
[general]
host = "127.0.0.1"
port = ${port}
worker_threads = 2
admin_username = "admin"
admin_password = "admin"
prepared_statements_cache_size = 100

[pools.postgres]
pool_mode = "transaction"
query_parser_enabled = true
query_parser_read_write_splitting = true

[pools.postgres.users.0]
username = "${DEMO_USER}"
password = "${DEMO_PASS}"
pool_size = 20

[pools.postgres.shards.0]
database = "postgres"
servers = [
  ["127.0.0.1", ${cluster.primary.port}, "primary"],
  ["127.0.0.1", ${cluster.replicas[0].port}, "replica"],
]
`,
  );
  const proxy = spawn(process.execPath, [join(__dirname, '..', 'src', 'main.js'), config, '--log-target', 'stdout'], {
    stdio: 'inherit',
  });
  let cleaned = false;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    if (proxy.exitCode === null) proxy.kill('SIGTERM');
    cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stdout.write('\nopenproxy demo: stopping openproxy and removing the demo cluster…\n');
      proxy.once('exit', () => process.exit(0));
      cleanup();
      setTimeout(() => process.exit(0), 5000).unref();
    });
  }
  proxy.once('exit', (code) => {
    process.stdout.write(`openproxy exited (${code}); removing the demo cluster\n`);
    cleanup();
    process.exit(code ?? 1);
  });
  setTimeout(() => {
    process.stdout.write(
      [
        '',
        `openproxy demo is running (config: ${config})`,
        `  primary  127.0.0.1:${cluster.primary.port}   replica 127.0.0.1:${cluster.replicas[0].port}`,
        '',
        'Connect through openproxy:',
        `  PGPASSWORD=${DEMO_PASS} psql -h 127.0.0.1 -p ${port} -U ${DEMO_USER} postgres`,
        '',
        'Reads go to the replica, writes and transactions to the primary; see where a query ran with',
        '  SELECT inet_server_port(), pg_is_in_recovery();',
        '',
        'Ctrl-C stops openproxy and deletes the demo cluster.',
        '',
      ].join('\n'),
    );
  }, 1000);
}

demo().catch((e) => {
  process.stderr.write(`openproxy demo failed: ${(e as Error).message}\n`);
  process.exit(1);
});
