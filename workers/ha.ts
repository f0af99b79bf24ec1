// HA thread entry. Health checks, role probes, VRRP and DNS will live here; for now the thread
// exists, is supervised by main, and answers its control messages.
import { parentPort } from 'node:worker_threads';

parentPort!.on('message', (m: { kind: string }) => {
  if (m.kind === 'stop') process.exit(0);
});
parentPort!.postMessage({ kind: 'ready' });
