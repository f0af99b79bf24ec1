// `npm run bench:session`: CPU per transaction of openproxy's own data path, without sockets,
// PostgreSQL or pgbench: a real ClientSession and ServerConn in this thread on in-memory sockets
// (testing/scripted.ts; writes counted, not kept), transaction mode, prepared-statement cache on.
// It measures what a code change costs on the data path with far less noise than a pgbench run
// on a shared 2-core machine (which varies by ±25 % between rounds); the kernel and libuv costs
// per message are not in it.
//
// Environment: BENCH_TRANSACTIONS (measured per shape, default 200000; a tenth more first, to warm
// up the JIT), BENCH_SHAPES (default all: select-simple, select-extended, tpcb-simple, tpcb-prepared).

import { serialize } from 'pg-protocol';
import { type Harness, be, harness } from '../testing/scripted';
import { writeSection } from './results';

const N = Number(process.env.BENCH_TRANSACTIONS) || 200_000;
const SHAPES = (process.env.BENCH_SHAPES ?? 'select-simple,select-extended,tpcb-simple,tpcb-prepared').split(',');

const TPCB = [
  'BEGIN',
  'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2',
  'SELECT abalance FROM pgbench_accounts WHERE aid = $1',
  'UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2',
  'UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2',
  'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)',
  'END',
];

/** One transaction of a shape: client messages and the server's answers, statement by statement. */
function shape(name: string): { setup: [Buffer, Buffer][]; steps: [Buffer, Buffer][] } {
  const status = (i: number) => be.ready(i === TPCB.length - 1 ? 'I' : 'T');
  switch (name) {
    case 'select-simple':
      return {
        setup: [],
        steps: [
          [
            serialize.query('SELECT abalance FROM pgbench_accounts WHERE aid = 12345'),
            Buffer.concat([be.rowDesc(), be.dataRow('1'), be.complete('SELECT 1'), be.ready()]),
          ],
        ],
      };
    case 'select-extended': {
      const text = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1';
      const msgs = [
        serialize.parse({ text }),
        serialize.bind({ values: ['12345'] }),
        serialize.describe({ type: 'P' }),
        serialize.execute({}),
        serialize.sync(),
      ];
      const answer = [be.parseComplete(), be.bindComplete(), be.rowDesc(), be.dataRow('1'), be.complete('SELECT 1')];
      return { setup: [], steps: [[Buffer.concat(msgs), Buffer.concat([...answer, be.ready()])]] };
    }
    case 'tpcb-simple':
      return {
        setup: [],
        steps: TPCB.map((sql, i) => [
          serialize.query(sql.replace(/\$\d/g, '7')),
          Buffer.concat([...(i === 2 ? [be.rowDesc(), be.dataRow('1')] : []), be.complete('OK'), status(i)]),
        ]),
      };
    case 'tpcb-prepared': {
      const row = (i: number) => (i === 2 ? [be.dataRow('1')] : []);
      const exec = (i: number, values: string[]) => [
        serialize.bind({ statement: `P0_${i}`, values }),
        serialize.execute({}),
        serialize.sync(),
      ];
      return {
        setup: TPCB.map((text, i) => [
          Buffer.concat([serialize.parse({ name: `P0_${i}`, text }), ...exec(i, [])]),
          Buffer.concat([be.parseComplete(), be.bindComplete(), ...row(i), be.complete('OK'), status(i)]),
        ]),
        steps: TPCB.map((_, i) => [
          Buffer.concat(exec(i, ['1', '2'])),
          Buffer.concat([be.bindComplete(), ...row(i), be.complete('OK'), status(i)]),
        ]),
      };
    }
    default:
      throw new Error(`unknown shape ${name} (BENCH_SHAPES)`);
  }
}

function run(h: Harness, steps: [Buffer, Buffer][], n: number): void {
  const server = h.servers[0];
  for (let t = 0; t < n; t++) {
    for (const [client, answer] of steps) {
      h.send(client);
      server.answer(answer);
    }
  }
}

async function main(): Promise<void> {
  const lines = [`| shape | µs CPU per transaction (${N} transactions, in-process) |`, '|---|---|'];
  console.log(lines.join('\n'));
  for (const name of SHAPES) {
    const h = await harness('pool_mode = "transaction"', [5001], 'prepared_statements_cache_size = 500');
    h.client.keep = false;
    h.servers[0].socket.keep = false;
    const { setup, steps } = shape(name);
    run(h, setup, 1);
    run(h, steps, Math.ceil(N / 10));
    const done = h.session.transactions;
    const t0 = process.cpuUsage();
    run(h, steps, N);
    const used = process.cpuUsage(t0);
    if (h.session.transactions - done !== N) throw new Error(`${name}: ${h.session.transactions - done} of ${N} ran`);
    lines.push(`| ${name} | ${((used.user + used.system) / N).toFixed(2)} |`);
    console.log(lines[lines.length - 1]);
  }
  const about =
    'In-process CPU of the session data path (`npm run bench:session`): a real ClientSession and ' +
    'ServerConn on in-memory sockets, transaction mode, prepared-statement cache on; no kernel, ' +
    'libuv or PostgreSQL cost. Use it to compare code changes; pgbench rows above include everything.';
  if (process.env.BENCH_WRITE !== '0') writeSection('Data path CPU, in-process', `${about}\n\n${lines.join('\n')}`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
