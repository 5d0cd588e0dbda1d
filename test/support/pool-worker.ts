/**
 * A worker thread running churn() on a pool path (test/pool-workers.test.ts).
 * workerData: { options, gate?, parties? } — with a gate, the workers start
 * their loops together (a barrier on a shared counter), so they contend.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { churn, type ChurnOptions } from './pool-churn.js';

const { options, gate, parties } = workerData as { options: ChurnOptions; gate?: SharedArrayBuffer; parties?: number };
if (gate && parties) {
  const count = new Int32Array(gate);
  Atomics.add(count, 0, 1);
  Atomics.notify(count, 0);
  for (let seen = Atomics.load(count, 0); seen < parties; seen = Atomics.load(count, 0)) Atomics.wait(count, 0, seen, 1000);
}
const started = Date.now();
const result = churn(options);
parentPort!.postMessage({ ...result, started, ended: Date.now() });
