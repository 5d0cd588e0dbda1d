/**
 * Processes in different PID namespaces sharing one pool (two containers with
 * one /dev/shm, a pod whose containers share a memory volume). A holder's pid
 * names nothing, or another process, in the other namespace's /proc: there
 * the holder must not be judged by it. Its open's liveness mark (an OFD lock
 * the kernel drops when the holder dies) says whether it lives.
 *
 * The holders run in PID namespaces of their own (support/pid-namespace.ts).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { Pool, PoolError } from '../src/index.js';
import { CACHE_ENTRIES } from '../src/pool/caches.js';
import { poolInternals } from '../src/pool/internals.js';
import { PMPOOL_ENTRY, shmPath, startModule } from './support/child.js';
import { inNewPidNamespace, killNamespace, untilReady } from './support/pid-namespace.js';

const INTERNALS = new URL('../src/pool/internals.js', import.meta.url).href;

describe('pools shared across PID namespaces', () => {
  test('a live holder in another PID namespace is waited for, not broken; once it is killed, its lock is broken', async () => {
    const { path, cleanup } = shmPath('pidns-lock');
    let holder: ChildProcess | undefined;
    try {
      Pool.create(path, { size: '8M' }).close();
      holder = await inNewPidNamespace(
        `import { Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
         import { poolInternals } from ${JSON.stringify(INTERNALS)};
         poolInternals(Pool.open(${JSON.stringify(path)})).parts.control.lock();
         process.stdout.write('ready\\n');
         setInterval(() => {}, 1000);`,
      );
      // The holder is pid 1 of its namespace, or some small pid: here that pid is another process, or none.
      assert.throws(
        () => Pool.open(path, { lockTimeoutMs: 300 }),
        (e: unknown) => e instanceof PoolError && e.code === 'LOCK_TIMEOUT',
        'the lock of a live holder in another PID namespace is not taken for a dead one',
      );
      await killNamespace(holder);
      holder = undefined;
      const pool = Pool.open(path, { lockTimeoutMs: 10_000 });
      try {
        assert.equal(pool.stats().lockBreaks, 1, 'the killed holder\'s lock was broken');
        assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
      } finally {
        pool.close();
      }
    } finally {
      if (holder) await killNamespace(holder);
      cleanup();
    }
  });

  test('the cache entry of a live open in another PID namespace is not taken for a dead one\'s when the table is full; once it is killed, it is', async () => {
    const { path, cleanup } = shmPath('pidns-cache');
    let owner: ChildProcess | undefined;
    const opens: Pool[] = [];
    try {
      Pool.create(path, { size: '64M', maxAllocations: 4096 }).close();
      owner = await inNewPidNamespace(
        `import { Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
         const pool = Pool.open(${JSON.stringify(path)});
         const kept = pool.alloc(1); // through the open's cache: an entry is claimed and filled
         process.stdout.write('ready\\n');
         setInterval(() => kept.bytes()[0]++, 50);`,
      );
      // Every other entry taken by an open of this process: the next open that wants one looks for
      // an entry whose owner is dead, to dissolve and take (caches.ts claimEntry).
      for (let i = 0; i < CACHE_ENTRIES - 1; i++) {
        const pool = Pool.open(path);
        opens.push(pool);
        pool.alloc(1);
      }
      const owners = (pool: Pool) => {
        const { parts } = poolInternals(pool);
        return Array.from({ length: CACHE_ENTRIES }, (_, e) => parts.caches.owner(e));
      };
      const full = owners(opens[0]!);
      assert.ok(full.every((runId) => runId !== 0), 'every entry is taken');
      const late = Pool.open(path);
      opens.push(late);
      late.alloc(1); // no entry to take: through the pool lock
      assert.deepEqual(owners(late), full, 'the live owner of another PID namespace kept its entry');
      assert.deepEqual(late.check(), { ok: true, problems: [], repaired: [] });
      await killNamespace(owner);
      owner = undefined;
      const after = Pool.open(path);
      opens.push(after);
      after.alloc(1); // takes the dead owner's entry, dissolved
      const now = owners(after);
      assert.equal(now.filter((runId) => !full.includes(runId)).length, 1, 'one entry changed hands');
      assert.ok(now.includes(poolInternals(after).parts.control.runId), 'to the new open');
      assert.deepEqual(after.check(), { ok: true, problems: [], repaired: [] });
      assert.equal(after.stats().allocations, CACHE_ENTRIES + 2, 'the dead open\'s allocation stays: it was committed');
    } finally {
      for (const pool of opens) pool.close();
      if (owner) await killNamespace(owner);
      cleanup();
    }
  });

  test('a namespace left in the control page by an earlier holder says nothing of the next one, which is judged by /proc', async () => {
    // A holder of this namespace whose record carries another run's namespace word, as a pmpool that
    // writes none leaves the last one that did: 112 names another namespace, 116 another run.
    const { path, cleanup } = shmPath('pidns-stale');
    let holder: ChildProcess | undefined;
    try {
      Pool.create(path, { size: '8M' }).close();
      holder = startModule(
        `import { Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
         import { poolInternals } from ${JSON.stringify(INTERNALS)};
         const pool = Pool.open(${JSON.stringify(path)});
         const { parts } = poolInternals(pool);
         pool.region.releaseLivenessMark(parts.control.runId); // as a pmpool that takes none
         parts.control.lock();
         const c = parts.geometry.areas.control.offset;
         parts.writer.store32(c + 112, 0x7fff0001); // a namespace of nobody here
         parts.writer.store32(c + 116, (0x80000000 | ((parts.control.runId % 0x7ffffffe) + 1)) >>> 0); // another run's, marked
         process.stdout.write('ready\\n');
         setInterval(() => {}, 1000);`,
      );
      await untilReady(holder);
      assert.throws(() => Pool.open(path, { lockTimeoutMs: 300 }), (e: unknown) => e instanceof PoolError && e.code === 'LOCK_TIMEOUT', 'the live holder is waited for');
      holder.kill('SIGKILL');
      await new Promise((resolve) => holder!.once('exit', resolve));
      holder = undefined;
      const pool = Pool.open(path, { lockTimeoutMs: 10_000 });
      assert.equal(pool.stats().lockBreaks, 1);
      pool.close();
    } finally {
      holder?.kill('SIGKILL');
      cleanup();
    }
  });

  test('a holder of another PID namespace that holds no liveness mark (its region has none) is taken for alive', async () => {
    const { path, cleanup } = shmPath('pidns-nomark');
    let holder: ChildProcess | undefined;
    try {
      Pool.create(path, { size: '8M' }).close();
      // A Region of the program's own that forwards to a FileRegion, without the optional marks.
      holder = await inNewPidNamespace(
        `import { FileRegion, Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
         import { poolInternals } from ${JSON.stringify(INTERNALS)};
         const file = FileRegion.open(${JSON.stringify(path)});
         const region = {
           kind: file.kind, path: file.path, size: file.size, pageSize: file.pageSize, durable: file.durable,
           get closed() { return file.closed; },
           map: (offset, length) => file.map(offset, length), windows: () => file.windows(), flush: () => file.flush(), close: () => file.close(),
         };
         poolInternals(Pool.open(region)).parts.control.lock();
         process.stdout.write('ready\\n');
         setInterval(() => {}, 1000);`,
      );
      assert.throws(
        () => Pool.open(path, { lockTimeoutMs: 300 }),
        (e: unknown) => e instanceof PoolError && e.code === 'LOCK_TIMEOUT' && /of another PID namespace/.test(e.message),
        'no mark to ask: taken for alive, not for dead',
      );
    } finally {
      if (holder) await killNamespace(holder);
      cleanup();
    }
  });
});
