/**
 * Concurrency (issue item 5): worker threads — and worker threads together
 * with other processes — allocating from one /dev/shm pool at once, each
 * through its own open (its own mapping, its own run id) and the robust
 * lock in the region. Every client checks its runs before releasing them
 * (nobody else wrote into them); at the end the survivors are all present,
 * pairwise disjoint and intact, check() is clean and the free count exact.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { Pool, PoolError } from '../src/pool/index.js';
import { shmPath, startModule } from './support/child.js';
import { sealState, type ChurnOptions, type ChurnResult } from './support/pool-churn.js';
import { testSeed } from './support/prng.js';

const WORKER_URL = new URL('./support/pool-worker.js', import.meta.url);
const HOLDER_URL = new URL('./support/pool-holder-worker.js', import.meta.url);
const CHURN_URL = new URL('./support/pool-churn.js', import.meta.url).href;

type Timed = ChurnResult & { started: number; ended: number };

function runWorker(options: ChurnOptions, gate?: { gate: SharedArrayBuffer; parties: number }): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_URL, { workerData: { options, ...gate } });
    let result: Timed | undefined;
    worker.once('message', (m: Timed) => (result = m));
    worker.once('error', reject);
    worker.once('exit', (code) => (code === 0 && result ? resolve(result) : reject(new Error(`worker ${options.prefix} exited with ${code}`))));
  });
}

function runProcess(options: ChurnOptions): Promise<ChurnResult> {
  const source = `
    import { churn } from ${JSON.stringify(CHURN_URL)};
    const result = churn(JSON.parse(process.argv[1]));
    process.stdout.write(JSON.stringify(result));
  `;
  return new Promise((resolve, reject) => {
    const child = startModule(source, [JSON.stringify(options)]);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as ChurnResult) : reject(new Error(`process ${options.prefix} exited with ${code}: ${err}`))));
  });
}

/** Everything the clients left is present, disjoint, intact; check() clean; the page counts exact. */
function verifySurvivors(path: string, results: ChurnResult[]): void {
  const pool = Pool.open(path);
  try {
    const report = pool.check();
    assert.deepEqual(report, { ok: true, problems: [], repaired: [] });
    const all = pool.allocations();
    const survivors = results.flatMap((r) => r.survivors);
    assert.equal(all.length, survivors.length, 'exactly the survivors are allocated');
    for (const s of survivors) {
      const a = pool.find(s.name);
      assert.ok(a, `${s.name} is present`);
      assert.deepEqual([a.pfn, a.count], [s.pfn, s.count], s.name);
      assert.equal(sealState(a, s.name), 'intact', `${s.name} holds its data`);
    }
    const sorted = [...all].sort((x, y) => x.pfn - y.pfn);
    for (let i = 1; i < sorted.length; i++) {
      assert.ok(sorted[i - 1]!.pfn + sorted[i - 1]!.count <= sorted[i]!.pfn, `allocations at pfn ${sorted[i - 1]!.pfn} and ${sorted[i]!.pfn} overlap`);
    }
    const s = pool.stats();
    const g = pool.geometry;
    const owned = all.reduce((n, a) => n + a.count, 0);
    assert.equal(s.free, s.pages - g.reservedUnits * 2 ** g.orderPerBit - s.tail - owned, 'free pages = pages - metadata - tail - allocated');
    assert.equal(s.lockBreaks, 0, 'no holder died, no lock was broken');
  } finally {
    pool.close();
  }
}

describe('concurrent clients on one pool', () => {
  test('worker threads allocate and release at once, safely', async (t) => {
    const seed = testSeed('PMPOOL_WORKERS_SEED');
    const { path, cleanup } = shmPath('workers');
    try {
      Pool.create(path, { size: '16M' }).close();
      const workers = 4;
      const gate = { gate: new SharedArrayBuffer(4), parties: workers };
      const results = await Promise.all(
        Array.from({ length: workers }, (_, i) => runWorker({ path, prefix: `w${i}`, iterations: 20_000, seed: seed + i }, gate)),
      );
      const ops = results.reduce((n, r) => n + r.allocs + r.releases, 0);
      // How long all four ran at once (a fact about this run, reported, not asserted).
      const overlap = Math.min(...results.map((r) => r.ended)) - Math.max(...results.map((r) => r.started));
      t.diagnostic(`seed ${seed}: ${workers} threads, ${ops} allocs and releases, all running together for ${overlap} ms, ${results.flatMap((r) => r.survivors).length} survivors`);
      verifySurvivors(path, results);
    } finally {
      cleanup();
    }
  });

  test('worker threads and other processes allocate from one pool at once', async (t) => {
    const seed = testSeed('PMPOOL_WORKERS_SEED');
    const { path, cleanup } = shmPath('mixed');
    try {
      Pool.create(path, { size: '16M' }).close();
      const results = await Promise.all([
        runWorker({ path, prefix: 't0', iterations: 10_000, seed }),
        runWorker({ path, prefix: 't1', iterations: 10_000, seed: seed + 1 }),
        runProcess({ path, prefix: 'p0', iterations: 10_000, seed: seed + 2 }),
        runProcess({ path, prefix: 'p1', iterations: 10_000, seed: seed + 3 }),
      ]);
      const ops = results.reduce((n, r) => n + r.allocs + r.releases, 0);
      t.diagnostic(`seed ${seed}: 2 threads + 2 processes, ${ops} allocs and releases`);
      verifySurvivors(path, results);
    } finally {
      cleanup();
    }
  });

  test('a worker thread terminated mid-operation, lock held, is detected as dead; its operation is repaired', async () => {
    const { path, cleanup } = shmPath('terminated');
    try {
      Pool.create(path, { size: '4M' }).close();
      for (const stopAt of [3, 12, 20]) {
        const worker = new Worker(HOLDER_URL, { workerData: { path, stopAt } });
        const state = await new Promise<{ stopped?: number; intent?: unknown; lockHeld?: boolean }>((resolve, reject) => {
          worker.once('message', resolve);
          worker.once('error', reject);
        });
        assert.ok(state.stopped === stopAt && state.lockHeld, `the worker stopped inside its alloc: ${JSON.stringify(state)}`);
        // While the thread lives, it is waited for, not broken.
        assert.throws(() => Pool.open(path, { lockTimeoutMs: 100 }), (e: unknown) => e instanceof PoolError && e.code === 'LOCK_TIMEOUT');
        await worker.terminate();
        // Its process lives on (this one), but the thread is gone: the next locker breaks the lock.
        const pool = Pool.open(path, { lockTimeoutMs: 5000 });
        try {
          assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
          if (state.intent) assert.ok(pool.recovered.some((r) => r.startsWith('repaired an interrupted alloc')), pool.recovered.join('; '));
          const victim = pool.find('victim');
          if (victim) pool.release(victim.pfn, victim.count);
        } finally {
          pool.close();
        }
      }
      const pool = Pool.open(path);
      assert.equal(pool.stats().lockBreaks, 3);
      pool.close();
    } finally {
      cleanup();
    }
  });
});
