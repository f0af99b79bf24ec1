// A client for tests that run inside a network namespace: one pg connection to 127.0.0.1:<port>,
// each line of stdin is a query, each answer is one line of JSON on stdout ({rows} or {error}).
import readline from 'node:readline';
import pg from 'pg';
import { APP_PASS, APP_USER } from './db';

async function main(): Promise<void> {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: Number(process.argv[2]),
    user: process.argv[3] ?? APP_USER,
    password: process.argv[4] ?? APP_PASS,
    database: process.argv[5] ?? 'postgres',
  });
  c.on('error', () => undefined);
  await c.connect();
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  for await (const line of readline.createInterface({ input: process.stdin })) {
    try {
      process.stdout.write(`${JSON.stringify({ rows: (await c.query(line)).rows })}\n`);
    } catch (e) {
      process.stdout.write(`${JSON.stringify({ error: (e as Error).message })}\n`);
    }
  }
  await c.end();
}

main().catch((e) => {
  process.stdout.write(`${JSON.stringify({ error: (e as Error).message })}\n`);
  process.exit(1);
});
