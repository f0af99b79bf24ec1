// Proxy worker thread entry: wires the worker runtime to this thread's port.
import { parentPort, workerData } from 'node:worker_threads';
import { runProxyWorker } from '../src/runtime/proxy-worker';

runProxyWorker(parentPort!, workerData);
