// The long client fuzz run (`npm run fuzz:long`, not in `npm test`): the CI fuzzer
// (test/helpers/fuzz.ts) for FUZZ_RUNS cases (default 1,000,000), FUZZ_LANES at once (default 8),
// seeded by FUZZ_SEED, against two openproxies (md5 and SCRAM logins) on a throwaway cluster. It
// prints progress with the proxies' RSS and open fds, and writes the outcome to
// benchmarks/RESULTS.md ("Long client fuzz"), a failure's seed, path and script included.
// FUZZ_MINUTES ends the run early (the result then says how many cases were played).

import { readdirSync } from 'node:fs';
import { writeSection } from '../../benchmarks/results';
import { rssMb } from '../../benchmarks/proc';
import { PgCluster } from '../../testing/pg-cluster';
import { createAppRole } from '../helpers/db';
import { fuzz, runningOnServer } from '../helpers/fuzz';
import { type Proxy, configFor, startProxy } from '../helpers/proxy';

const RUNS = Number(process.env.FUZZ_RUNS) || 1_000_000;
const SEED = Number(process.env.FUZZ_SEED) || 20261203;
const LANES = Number(process.env.FUZZ_LANES) || 8;
const MINUTES = Number(process.env.FUZZ_MINUTES) || 0;

async function main(): Promise<void> {
  const cluster = await PgCluster.start();
  createAppRole(cluster);
  const proxies: Proxy[] = [];
  for (const auth of ['md5', 'scram-sha-256']) {
    // connect_timeout 10 s: with every core busy a server login can take over PgCat's default second.
    const general =
      `auth_type = "${auth}"\nclient_login_timeout = 2000\nprepared_statements_cache_size = 100\n` +
      'connect_timeout = 10000\n';
    const pools = [{ pool_mode: 'transaction' as const, pool_size: LANES + 4 }];
    proxies.push(await startProxy((port) => configFor(cluster, port, general, pools), ['-l', 'info']));
  }
  const mem = () =>
    proxies.map((p) => `${rssMb(p.proc.pid!).toFixed(0)} MB / ${readdirSync(`/proc/${p.proc.pid}/fd`).length} fds`);
  const start = mem();
  const t0 = Date.now();
  const deadline = MINUTES > 0 ? t0 + MINUTES * 60_000 : Number.POSITIVE_INFINITY;
  // An early end is a chunked run: RUNS is split into chunks that stop once the deadline passes.
  const chunk = MINUTES > 0 ? Math.min(RUNS, LANES * 2000) : RUNS;
  let played = 0;
  let inChunk = 0; // cases of the running chunk, as last reported (counted on a failure too)
  const logins = [0, 0];
  let outcome = 'passed';
  try {
    for (let seed = SEED; played < RUNS && Date.now() < deadline; seed += LANES) {
      const r = await fuzz({
        proxies,
        runs: Math.min(chunk, RUNS - played),
        seed,
        lanes: LANES,
        every: 1000,
        progress: (n) => {
          inChunk = n;
          if ((played + n) % 10_000 !== 0) return;
          const s = (Date.now() - t0) / 1000;
          console.log(`${played + n} cases, ${((played + n) / s).toFixed(0)}/s, proxies ${mem().join(', ')}`);
        },
      });
      played += r.cases;
      inChunk = 0;
      logins[0] += r.logins[0];
      logins[1] += r.logins[1];
    }
    const wait = Date.now();
    while (runningOnServer(cluster) > 0 && Date.now() - wait < 10000) await new Promise((r) => setTimeout(r, 200));
    if (runningOnServer(cluster) > 0) outcome = 'FAILED: server connections left busy after the run';
  } catch (e) {
    outcome = `FAILED: ${(e as Error).message}`;
    played += inChunk;
  }
  const minutes = ((Date.now() - t0) / 60_000).toFixed(1);
  const body = [
    `\`npm run fuzz:long\` (${new Date().toISOString().slice(0, 10)}): ${played} cases of the client-side fuzzer ` +
      `(test/helpers/fuzz.ts), ${LANES} at once, seeds ${SEED}…, in ${minutes} min` +
      `${played < RUNS ? ` (stopped by FUZZ_MINUTES=${MINUTES} before the ${RUNS} asked)` : ''}.`,
    '',
    `- Outcome: **${outcome.split('\n')[0]}**`,
    `- Sessions that logged in: md5 ${logins[0]}, SCRAM ${logins[1]}`,
    `- openproxy RSS / open fds (md5, SCRAM): at start ${start.join(', ')}; at the end ${mem().join(', ')}`,
  ];
  if (outcome !== 'passed') body.push('', '```', outcome.slice(0, 4000), '```');
  writeSection('Long client fuzz', body.join('\n'));
  console.log(body.join('\n'));
  for (const p of proxies) await p.stop();
  cluster.stop();
  process.exit(outcome === 'passed' ? 0 : 1);
}

void main();
