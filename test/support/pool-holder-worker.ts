/**
 * A worker thread that opens a pool and stops dead — spinning, lock held —
 * right after store `stopAt` of an alloc (test/pool-workers.test.ts then
 * terminates it, as worker.terminate() would mid-operation).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Pool } from '../../src/pool/index.js';
import { poolInternals, setAttachHook, type StoreRecord } from '../../src/pool/internals.js';

const { path, stopAt } = workerData as { path: string; stopAt: number };
// Attached under a hook, the pool gets a traced writer: its store log (set below) sees every store.
setAttachHook(() => {});
const pool = Pool.open(path);
setAttachHook(null);
const { parts } = poolInternals(pool);
let n = 0;
const push = (r: StoreRecord): number => {
  if (!('offset' in r)) return 0;
  if (++n === stopAt) {
    parentPort!.postMessage({ stopped: n, intent: parts.control.intent(), lockHeld: parts.control.held() });
    for (;;) {
      /* stopped dead, holding the lock */
    }
  }
  return 0;
};
parts.writer.log = { records: { push } as unknown as StoreRecord[] };
pool.alloc(2, { name: 'victim' });
parentPort!.postMessage({ finished: n });
