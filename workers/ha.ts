// HA thread entry: wires the HA runtime to this thread's port.
import { parentPort, workerData } from 'node:worker_threads';
import { runHaWorker } from '../src/runtime/ha-worker';

runHaWorker(parentPort!, workerData);
