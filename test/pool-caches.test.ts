/**
 * The per-open caches of free units (src/pool/caches.ts, docs/abi.md "Per-open
 * caches"): one-unit allocations made and released without the pool lock,
 * units that count as free and go back to the pool when it is full, at close
 * and at a handover; entries of dead opens dissolved; damage named by check()
 * and mended by repair; pools made before the caches left as they were.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readSync, openSync, closeSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { Pool, PoolError } from '../src/pool/index.js';
import { SUPERBLOCK_BACKUP_OFFSET, SUPERBLOCK_BYTES } from '../src/pool/layout.js';
import { MemoryRegion } from '../src/region/index.js';
import { poolInternals, type PoolParts } from '../src/pool/internals.js';
import { CACHE_BATCH, CACHE_ENTRIES, CACHE_ENTRY_BYTES, CACHE_ENTRY_LAYOUT, CACHE_MIN_RECORDS, CACHE_TABLE, CACHE_UNITS } from '../src/pool/caches.js';
import { crc32c } from '../src/util/crc32c.js';
import { expectError } from './support/expect.js';
import { withFailingBarrier } from './support/faults.js';
import { PMPOOL_ENTRY, shmPath, startModule } from './support/child.js';
import { Prng, testSeed } from './support/prng.js';

const MiB = 1024 * 1024;
/**
 * A pool small enough to copy, with a directory big enough for the caches; without bare units
 * (test/pool-bare-units.test.ts has those), so that every cached allocation has a record. The
 * worker and SIGKILL tests below use pools made with the defaults: records and bare units both.
 */
const CACHED = { size: MiB, maxAllocations: CACHE_MIN_RECORDS, bareUnits: false };

function cachedPool(): { region: MemoryRegion; pool: Pool } {
  const region = new MemoryRegion(MiB);
  return { region, pool: Pool.create(region, CACHED) };
}

/** The open's entry (the one whose owner word is its run id), or -1. */
function entryOf(pool: Pool): number {
  const { parts } = poolInternals(pool);
  for (let e = 0; e < CACHE_ENTRIES; e++) if (parts.caches.owner(e) === parts.control.runId) return e;
  return -1;
}

/** The cache table's bytes, from the control page of `bytes` (a whole region). */
function tableBytes(parts: PoolParts, bytes: Uint8Array): Uint8Array {
  const at = parts.geometry.areas.control.offset + CACHE_TABLE;
  return bytes.subarray(at, at + CACHE_ENTRIES * CACHE_ENTRY_BYTES);
}

describe('per-open caches', () => {
  test('one-unit allocations come from the open\'s cache and go back to it, without the pool lock', () => {
    const { region, pool: creator } = cachedPool();
    creator.close();
    // The liveness oracle says a holder lives: the holder below is this very thread's other open.
    const pool = Pool.open(region, { isAlive: () => true, lockTimeoutMs: 50 });
    const other = Pool.open(region);
    try {
      const first = pool.alloc(1);
      assert.equal(pool.stats().cached, CACHE_BATCH - 1, 'the first allocation filled the cache with a batch and took one');
      poolInternals(other).parts.control.lock(); // the pool lock is held by another open from here on
      const made = [];
      for (let i = 0; i < CACHE_BATCH - 1; i++) made.push(pool.alloc(1, { owner: 'kv', zero: i % 2 === 0 }));
      assert.deepEqual(made.map((a) => a.pfn - first.pfn), Array.from({ length: CACHE_BATCH - 1 }, (_, i) => i + 1), 'ascending, as from the bitmap');
      for (const a of made) a.bytes().fill(0xa5);
      for (const a of made) pool.release(a.pfn, a.count, { owner: 'kv' });
      pool.release(first.pfn, first.count);
      // Anything else goes through the pool lock: held, it times out.
      expectError(() => pool.alloc(1, { name: 'named' }), PoolError, 'LOCK_TIMEOUT');
      expectError(() => pool.alloc(2), PoolError, 'LOCK_TIMEOUT');
      poolInternals(other).parts.control.unlock();
      assert.equal(pool.stats().cached, CACHE_BATCH, 'every unit is back on the list');
      assert.equal(pool.allocations().length, 0);
      assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
    } finally {
      other.close();
      pool.close();
    }
  });

  test('cached pages count as free; close gives them back and leaves the entry zero', () => {
    const { region, pool } = cachedPool();
    const { parts } = poolInternals(pool);
    const before = pool.stats();
    const a = pool.alloc(1);
    const during = pool.stats();
    assert.equal(during.free, before.free - 1, 'one page allocated; the cached ones are free');
    assert.equal(during.cached, CACHE_BATCH - 1);
    assert.equal(during.largestFree, before.largestFree - 1, 'cached units join the free runs they touch');
    assert.equal(during.allocations, 1);
    pool.release(a.pfn, a.count);
    pool.close();
    assert.ok(tableBytes(parts, new Uint8Array(region.buffer)).every((b) => b === 0), 'the table is zero again');
    const again = Pool.open(region);
    assert.deepEqual({ ...again.stats(), generation: 0 }, { ...before, generation: 0 });
    again.close();
  });

  test('a full pool takes back every open\'s cached units, a live other open\'s too, before it says NO_SPACE', () => {
    const { region, pool } = cachedPool();
    const other = Pool.open(region);
    try {
      const mine = other.alloc(1); // the other open now caches a batch
      assert.ok(other.stats().cached > 0);
      const big: { pfn: number; count: number }[] = [];
      for (;;) {
        try {
          big.push(pool.alloc(7));
        } catch (e) {
          if (!(e instanceof PoolError) || e.code !== 'NO_SPACE') throw e;
          break;
        }
      }
      for (;;) {
        try {
          big.push(pool.alloc(1, { name: `n${big.length}` }));
        } catch (e) {
          if (!(e instanceof PoolError) || e.code !== 'NO_SPACE') throw e;
          assert.match(e.message, /the largest free run is 0 pages \(0 free in all\)/);
          break;
        }
      }
      const s = pool.stats();
      assert.deepEqual([s.free, s.cached], [0, 0], 'every page is allocated: the caches gave theirs back');
      expectError(() => other.alloc(1), PoolError, 'NO_SPACE');
      other.release(mine.pfn, mine.count);
      assert.equal(other.alloc(1).pfn, mine.pfn, 'the page released onto the other open\'s cache is its next');
      assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
    } finally {
      other.close();
      pool.close();
    }
  });

  test('a release by another open, and a second release, each act once', () => {
    const { region, pool } = cachedPool();
    const other = Pool.open(region);
    try {
      const a = pool.alloc(1, { owner: 'kv' });
      expectError(() => other.release(a.pfn, a.count, { owner: 'intruder' }), PoolError, 'WRONG_OWNER');
      expectError(() => other.release(a.pfn, a.count + 1, { owner: 'kv' }), PoolError, 'NOT_ALLOCATED');
      other.release(a.pfn, a.count, { owner: 'kv' }); // onto the other open's cache
      expectError(() => pool.release(a.pfn, a.count, { owner: 'kv' }), PoolError, 'NOT_ALLOCATED');
      expectError(() => other.release(a.pfn, a.count, { owner: 'kv' }), PoolError, 'NOT_ALLOCATED');
      const b = other.alloc(1, { owner: 'log' });
      assert.equal(b.pfn, a.pfn, 'made again from the other open\'s cache');
      expectError(() => pool.release(a.pfn, a.count, { owner: 'kv' }), PoolError, 'WRONG_OWNER'); // a stale release meets the new owner
      pool.release(b.pfn, b.count, { owner: 'log' });
      assert.equal(pool.allocations().length, 0);
      assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
    } finally {
      other.close();
      pool.close();
    }
  });

  test('an open that died in a cached operation: the next open dissolves its entry and says so; check() reports one that dies later', () => {
    const { region, pool: creator } = cachedPool();
    creator.close();
    for (const op of [1, 2, 3] as const) {
      const victim = Pool.open(region);
      const { parts } = poolInternals(victim);
      const kept = victim.alloc(1); // claims an entry, fills it
      kept.bytes().fill(1);
      const e = entryOf(victim);
      const base = parts.caches.base(e);
      const top = parts.caches.unit(e, parts.caches.count(e) - 1);
      // The victim "dies" inside an operation: its entry locked, its intent naming a unit, and its
      // identity that of no process (pid 0). An allocation stopped before its commit; a release
      // whose record it claimed (RELE, tagged with its entry), before its checks (op 2) and past
      // them (op 3).
      const unit = op === 1 ? top : kept.pfn;
      parts.writer.store32(base + CACHE_ENTRY_LAYOUT.OWNER + 4, 0);
      parts.writer.store32(base + CACHE_ENTRY_LAYOUT.UNIT, unit);
      parts.writer.store32(base + CACHE_ENTRY_LAYOUT.OP, op);
      if (op !== 1) parts.writer.store32(parts.directory.offsetOf(kept.pfn % parts.geometry.maxRecords), 0x454c4500 | (0x30 + e));
      parts.writer.atomicStore(base + CACHE_ENTRY_LAYOUT.LOCK, parts.control.runId);
      const next = Pool.open(region);
      assert.ok(next.recovered.some((line) => line === `dissolved cache entry ${e}: its open died in a cached operation`), next.recovered.join('\n'));
      assert.deepEqual(next.check(), { ok: true, problems: [], repaired: [] });
      if (op === 3) {
        // Past its checks, the release is finished: the allocation is gone, its page free.
        assert.deepEqual(next.allocations(), []);
        assert.equal(next.stats().cached, 0);
        next.close();
        continue;
      }
      // Not past them: the release did not happen, and the allocation stands.
      assert.deepEqual(next.allocations().map((a) => a.pfn), [kept.pfn]);
      assert.equal(next.at(kept.pfn)!.bytes()[0], 1);
      next.release(kept.pfn, 1);
      assert.equal(next.stats().cached, 1, 'the only units left cached: the one just released onto this open\'s cache');
      next.close();
    }
    // An owner that dies while another open is attached: check() names it; any locking operation, or a repair, settles it.
    const a = Pool.open(region);
    const b = Pool.open(region);
    b.alloc(1);
    const { parts } = poolInternals(b);
    const e = entryOf(b);
    parts.writer.store32(parts.caches.base(e) + CACHE_ENTRY_LAYOUT.OWNER + 4, 0);
    parts.writer.store32(parts.caches.base(e) + CACHE_ENTRY_LAYOUT.UNIT, parts.caches.unit(e, 0));
    parts.writer.store32(parts.caches.base(e) + CACHE_ENTRY_LAYOUT.OP, 1);
    parts.writer.atomicStore(parts.caches.base(e) + CACHE_ENTRY_LAYOUT.LOCK, parts.control.runId);
    const report = a.check();
    assert.ok(report.problems.includes(`cache entry ${e}: a cached operation was interrupted (op 1, unit ${parts.caches.unit(e, 0)})`), report.problems.join('\n'));
    const repaired = a.check({ repair: true });
    assert.equal(repaired.ok, true, repaired.problems.join('\n'));
    assert.ok(repaired.repaired.some((line) => line.startsWith(`dissolved cache entry ${e}`)), repaired.repaired.join('\n'));
    // An owner that dies in a release, its claim on the record left: another open's release of it
    // settles the claim first (the release did not happen), then releases it — not NOT_ALLOCATED.
    const c = Pool.open(region);
    const doomed = c.alloc(1);
    const cParts = poolInternals(c).parts;
    const ce = entryOf(c);
    cParts.writer.store32(cParts.caches.base(ce) + CACHE_ENTRY_LAYOUT.OWNER + 4, 0);
    cParts.writer.store32(cParts.caches.base(ce) + CACHE_ENTRY_LAYOUT.UNIT, doomed.pfn);
    cParts.writer.store32(cParts.caches.base(ce) + CACHE_ENTRY_LAYOUT.OP, 2);
    cParts.writer.store32(cParts.directory.offsetOf(doomed.pfn % cParts.geometry.maxRecords), 0x454c4500 | (0x30 + ce));
    cParts.writer.atomicStore(cParts.caches.base(ce) + CACHE_ENTRY_LAYOUT.LOCK, cParts.control.runId);
    a.release(doomed.pfn, doomed.count);
    expectError(() => a.release(doomed.pfn, doomed.count), PoolError, 'NOT_ALLOCATED');
    assert.deepEqual(a.check(), { ok: true, problems: [], repaired: [] });
    a.close();
  });

  test('a cached operation stopped by an exception (a store that failed) is settled at the open\'s next operation', () => {
    for (const failAt of [1, 2, 3, 4]) {
      for (const op of ['alloc', 'release'] as const) {
        const { pool } = cachedPool();
        try {
          const held = pool.alloc(1);
          withFailingBarrier(pool, failAt, () => {
            assert.throws(() => (op === 'alloc' ? pool.alloc(1) : pool.release(held.pfn, held.count)), /EIO \(injected\)/);
          });
          if (op === 'release') {
            // The open's own pool-lock paths settle what its failed release left: the allocation is
            // there or not, and a release of it acts once.
            const listed = pool.allocations().some((a) => a.pfn === held.pfn);
            assert.equal(pool.at(held.pfn)?.pfn, listed ? held.pfn : undefined, `${op}, barrier ${failAt}: at() agrees with allocations()`);
            if (listed) pool.release(held.pfn, held.count);
            expectError(() => pool.release(held.pfn, held.count), PoolError, 'NOT_ALLOCATED');
          }
          const after = pool.alloc(1);
          const report = pool.check();
          assert.deepEqual(report, { ok: true, problems: [], repaired: [] }, `${op}, barrier ${failAt}`);
          // The allocation stands or not, wholly: what the pool lists is what it holds.
          const listed = pool.allocations().map((a) => a.pfn).sort((a, b) => a - b);
          assert.ok(listed.includes(after.pfn), `${op}, barrier ${failAt}`);
          for (const pfn of listed) pool.release(pfn, 1);
          assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
        } finally {
          pool.close();
        }
      }
    }
  });

  test('a release the cache does not take is refused as before, its record untouched; under INDEX_ALL no cache is used', () => {
    const { pool } = cachedPool();
    const { parts } = poolInternals(pool);
    try {
      const run = pool.alloc(3);
      const slot = run.pfn % parts.geometry.maxRecords;
      expectError(() => pool.release(run.pfn, 1), PoolError, 'NOT_ALLOCATED');
      assert.equal(parts.directory.state(slot), 0x4556494c, 'still LIVE: never claimed');
      pool.release(run.pfn, run.count);
      // A damaged record's page count: recovery does not honour it, and sets INDEX_ALL (docs/abi.md).
      const victim = pool.alloc(1, { name: 'victim' });
      parts.writer.store64(parts.directory.offsetOf(victim.pfn % parts.geometry.maxRecords) + 16, 2);
      pool.check({ repair: true });
      assert.equal(parts.control.indexAll(), true);
      const made = Array.from({ length: 5 }, () => pool.alloc(1));
      for (const a of made) assert.equal(pool.at(a.pfn)?.pfn, a.pfn, 'every record reached through the pfn index');
      for (const a of made) pool.release(a.pfn, a.count);
      assert.deepEqual(pool.check().problems.filter((p) => !/corrupt/.test(p)), []);
    } finally {
      pool.close();
    }
  });

  test('INDEX_ALL set by a repair between an open\'s look at its cache and its lock: the allocation goes through the pool lock', () => {
    const { region, pool } = cachedPool();
    const other = Pool.open(region);
    try {
      pool.alloc(1); // a cache, filled
      const victim = other.alloc(1, { name: 'victim' });
      const parts = poolInternals(other).parts;
      parts.writer.store64(parts.directory.offsetOf(victim.pfn % parts.geometry.maxRecords) + 16, 2);
      // The repair runs just before the open takes its entry's lock.
      const internal = pool as unknown as { cacheOf: (p: PoolParts) => number };
      const cacheOf = internal.cacheOf;
      internal.cacheOf = function (this: unknown, p: PoolParts) {
        const e = cacheOf.call(this, p);
        other.check({ repair: true });
        return e;
      };
      let made;
      try {
        made = pool.alloc(1);
      } finally {
        internal.cacheOf = cacheOf;
      }
      assert.equal(parts.control.indexAll(), true);
      assert.equal(pool.at(made.pfn)?.pfn, made.pfn, 'reached through the pfn index');
      pool.release(made.pfn, made.count);
      assert.deepEqual(pool.check().problems.filter((p) => !/corrupt/.test(p)), []);
    } finally {
      other.close();
      pool.close();
    }
  });

  test('a full pool that cannot take back a live open\'s cache (its lock held past the timeout) says LOCK_TIMEOUT, and leaves no intent', () => {
    const { region, pool: holder } = cachedPool();
    const pool = Pool.open(region, { lockTimeoutMs: 50, isAlive: () => true });
    try {
      holder.alloc(1);
      const { parts } = poolInternals(holder);
      const e = entryOf(holder);
      assert.ok(parts.caches.tryLock(e, parts.control.runId), 'the holder "in" a cached operation');
      try {
        for (;;) pool.alloc(5);
      } catch (err) {
        assert.ok(err instanceof PoolError && err.code === 'LOCK_TIMEOUT', String(err));
      }
      assert.equal(parts.control.intent(), null, 'no intent left: nothing was half done');
      parts.caches.unlock(e);
      assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
    } finally {
      pool.close();
      holder.close();
    }
  });

  test('check() names a cached unit\'s home slot marked free, and repair marks it again', () => {
    const { pool } = cachedPool();
    try {
      pool.alloc(1);
      const { parts } = poolInternals(pool);
      const e = entryOf(pool);
      const slot = parts.caches.unit(e, 0) % parts.geometry.maxRecords;
      parts.slots.markFree(slot, 1);
      assert.ok(pool.check().problems.includes(`record slot ${slot} is the home slot of a cached unit but marked free`), pool.check().problems.join('\n'));
      assert.equal(pool.check({ repair: true }).ok, true);
      assert.equal(parts.slots.isUsed(slot, 1), true);
    } finally {
      pool.close();
    }
  });

  test('check() names each kind of damage to an entry, and repair mends it', () => {
    const damage: [string, (parts: PoolParts, e: number, pool: Pool) => void, RegExp][] = [
      ['a count past the list', (parts, e) => parts.writer.store32(parts.caches.base(e) + CACHE_ENTRY_LAYOUT.COUNT, CACHE_UNITS + 1), /its count 65 is past 64/],
      ['a unit a record holds', (parts, e, pool) => parts.caches.setUnit(e, 0, pool.allocations()[0]!.pfn), /lists unit \d+: a record, a bare unit, the metadata or another list holds it/],
      ['a unit of the metadata', (parts, e) => parts.caches.setUnit(e, 0, 0), /lists unit 0: unit 0 is not one of the pool's allocatable units/],
      ['one unit on two lists', (parts, e) => parts.caches.setUnit(e, 1, parts.caches.unit(e, 0)), /lists unit \d+: a record, a bare unit, the metadata or another list holds it/],
      ['stray bytes in a free entry', (parts, e) => parts.writer.store32(parts.caches.base((e + 1) % CACHE_ENTRIES) + CACHE_ENTRY_LAYOUT.COUNT, 3), /cache entry \d is not zero, though it has no owner/],
      ['sequence numbers never handed out', (parts, e) => parts.caches.setSeqBlock(e, 1e6, 1e6 + 10), /its sequence numbers \[1000000, 1000010\) were not handed out/],
    ];
    for (const [what, harm, expected] of damage) {
      const { pool } = cachedPool();
      try {
        pool.alloc(1);
        const { parts } = poolInternals(pool);
        harm(parts, entryOf(pool), pool);
        const report = pool.check();
        assert.ok(report.problems.some((p) => expected.test(p)), `${what}: ${report.problems.join('\n')}`);
        const repaired = pool.check({ repair: true });
        assert.deepEqual([repaired.ok, repaired.problems], [true, []], `${what}: repair`);
        assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] }, what);
        // And the pool goes on: a cycle through the cache, then every page accounted for.
        const a = pool.alloc(1);
        pool.release(a.pfn, a.count);
        assert.equal(pool.check().ok, true, what);
      } finally {
        pool.close();
      }
    }
  });

  test('a pool made before the caches, or with a small directory, uses none', () => {
    // Before: the same pool with its incompat bit 0 cleared, as a pmpool of ABI 2.0 made it.
    const region = new MemoryRegion(MiB);
    Pool.create(region, CACHED).close();
    const bytes = new Uint8Array(region.buffer);
    for (const at of [0, SUPERBLOCK_BACKUP_OFFSET]) {
      const copy = bytes.subarray(at, at + SUPERBLOCK_BYTES);
      const v = new DataView(copy.buffer, copy.byteOffset, SUPERBLOCK_BYTES);
      v.setUint16(10, 0, true);
      v.setUint32(16, 0, true);
      v.setUint32(252, crc32c(copy, 0, 252), true);
    }
    const small = new MemoryRegion(MiB);
    Pool.create(small, { size: MiB, maxAllocations: CACHE_MIN_RECORDS - 1 }).close();
    for (const r of [region, small]) {
      const pool = Pool.open(r);
      const { parts } = poolInternals(pool);
      assert.equal(parts.caches.enabled, false);
      assert.deepEqual([pool.abiVersion, pool.usesCaches], [r === region ? '2.0' : '2.2', false]);
      const made = Array.from({ length: 40 }, () => pool.alloc(1));
      assert.equal(pool.stats().cached, 0);
      for (const a of made) pool.release(a.pfn, a.count);
      assert.ok(tableBytes(parts, new Uint8Array(r.buffer)).every((b) => b === 0), 'the table is not written');
      assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
      // A table written on such a pool is damage, which repair clears.
      parts.writer.store32(parts.geometry.areas.control.offset + CACHE_TABLE + CACHE_ENTRY_LAYOUT.COUNT, 1);
      assert.match(pool.check().problems.join('\n'), /cache entry 0 is not zero, though this pool does not use caches/);
      assert.equal(pool.check({ repair: true }).ok, true);
      pool.close();
    }
  });

  test('more opens than entries: those past the table allocate through the pool lock', () => {
    const { region, pool } = cachedPool();
    const opens = [pool, ...Array.from({ length: CACHE_ENTRIES }, () => Pool.open(region))];
    try {
      const made = opens.map((o) => o.alloc(1));
      const cached = opens.map((o) => entryOf(o) >= 0);
      assert.equal(cached.filter(Boolean).length, CACHE_ENTRIES, 'each entry is one open\'s');
      assert.equal(cached[CACHE_ENTRIES], false, 'the last open has none, and allocated all the same');
      opens.forEach((o, i) => o.release(made[i]!.pfn, made[i]!.count));
      assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
      // An entry given back (a close) is the next open's.
      opens.pop();
      opens[1]!.close();
      const late = Pool.open(region);
      opens[1] = late;
      late.alloc(1);
      assert.ok(entryOf(late) >= 0);
    } finally {
      for (const o of opens) o.close();
    }
  });

  test('worker threads allocating and releasing through their caches at once leave a clean pool (records and bare units)', async () => {
    const { path, cleanup } = shmPath('caches-workers');
    try {
      Pool.create(path, { size: '64M' }).close();
      const source = `import { parentPort, workerData } from 'node:worker_threads';
        import { Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
        const pool = Pool.open(workerData.path);
        const held = [];
        let cached = 0;
        for (let i = 0; i < 20000; i++) {
          if (held.length < 100 && (held.length === 0 || (i * 2654435761 >>> 0) % 3 !== 0)) {
            // Without an owner, a bare unit (the pool has them): its release is a bit cleared by an atomic AND.
            const a = pool.alloc(1, workerData.owner === undefined ? undefined : { owner: workerData.owner });
            const w = new Uint32Array(a.bytes().buffer, a.bytes().byteOffset, 2);
            w[0] = a.pfn; w[1] = workerData.tag;
            held.push(a);
          } else {
            const a = held.splice((i * 40503) % held.length, 1)[0];
            const w = new Uint32Array(a.bytes().buffer, a.bytes().byteOffset, 2);
            if (w[0] !== a.pfn || w[1] !== workerData.tag) throw new Error('page ' + a.pfn + ' was written by another');
            pool.release(a.pfn, a.count, { owner: workerData.owner });
          }
          if (i === 10000) cached = pool.stats().cached;
        }
        for (const a of held) pool.release(a.pfn, a.count, { owner: workerData.owner });
        pool.close();
        parentPort.postMessage(cached);`;
      const runs = [1, 2, 3].map(
        (tag) =>
          new Promise<number>((resolve, reject) => {
            const w = new Worker(source, { eval: true, workerData: { path, owner: tag === 3 ? undefined : `w${tag}`, tag } });
            w.once('message', resolve);
            w.once('error', reject);
          }),
      );
      const cached = await Promise.all(runs);
      assert.ok(cached.every((n) => n > 0), `each worker used its cache: ${cached}`);
      const pool = Pool.open(path);
      assert.equal(pool.usesBareUnits, true);
      assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
      const s = pool.stats();
      assert.deepEqual([s.allocations, s.cached, s.free], [0, 0, s.pages - s.metadata - s.tail], 'every page free, every cache given back');
      pool.close();
    } finally {
      cleanup();
    }
  });

  test('processes killed in the middle of cached operations (records and bare units), over and over: every next open is clean, every page accounted for', async (t) => {
    const seed = testSeed('PMPOOL_CACHE_SIGKILL_SEED');
    const rng = new Prng(seed);
    const { path, cleanup } = shmPath('caches-sigkill');
    const KILLS = 40;
    let midOperation = 0;
    let dissolvedAtOpen = 0;
    try {
      Pool.create(path, { size: '64M' }).close();
      const control = Pool.open(path);
      const controlAt = control.geometry.areas.control.offset;
      control.close();
      for (let kill = 0; kill < KILLS; kill++) {
        const owner = `c${kill}`;
        // Every other child allocates without an owner: bare units, released with the owner all the same (anyone may).
        const bare = kill % 2 === 1;
        // Allocates and releases single pages for ever; each page it holds carries its pfn and the owner's tag.
        const child = startModule(
          `import { Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
           const pool = Pool.open(${JSON.stringify(path)});
           const held = [];
           let i = 0;
           process.stdout.write('ready\\n');
           for (;;) {
             if (held.length < 200 && (i++ & 3) !== 3) {
               const a = pool.alloc(1, ${bare ? 'undefined' : `{ owner: ${JSON.stringify(owner)} }`});
               const w = new Uint32Array(a.bytes().buffer, a.bytes().byteOffset, 2);
               w[0] = a.pfn; w[1] = ${kill + 1};
               held.push(a);
             } else {
               const a = held.shift();
               pool.release(a.pfn, a.count, { owner: ${JSON.stringify(owner)} });
             }
           }`,
        );
        await new Promise<void>((resolve, reject) => {
          child.stdout!.once('data', () => resolve());
          child.once('exit', (code) => reject(new Error(`the child exited (${code})`)));
        });
        await new Promise((r) => setTimeout(r, rng.range(5, 40)));
        child.kill('SIGKILL');
        await new Promise((r) => child.once('exit', r));
        // Was it inside a cached operation? An entry's intent says so.
        const table = Buffer.alloc(CACHE_ENTRIES * CACHE_ENTRY_BYTES);
        const fd = openSync(path, 'r');
        readSync(fd, table, 0, table.length, controlAt + CACHE_TABLE);
        closeSync(fd);
        for (let e = 0; e < CACHE_ENTRIES; e++) if (table.readUInt32LE(e * CACHE_ENTRY_BYTES + CACHE_ENTRY_LAYOUT.OP) !== 0) midOperation++;
        const pool = Pool.open(path);
        try {
          dissolvedAtOpen += pool.recovered.filter((line) => line.startsWith('dissolved cache entry')).length;
          assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] }, `after kill ${kill} (seed ${seed})`);
          for (const a of pool.allocations()) {
            assert.equal(a.owner, bare ? undefined : owner, `only the killed child's pages are left (seed ${seed})`);
            const w = new Uint32Array(a.bytes().buffer, a.bytes().byteOffset, 2);
            // A page allocated just before the kill may not be written yet; a written one is its own.
            if (w[1] === kill + 1) assert.equal(w[0], a.pfn, `page ${a.pfn} holds another page's mark (seed ${seed})`);
            pool.release(a.pfn, a.count, { owner });
          }
        } finally {
          pool.close();
        }
      }
      const pool = Pool.open(path);
      const s = pool.stats();
      pool.close();
      // Dead children's idle entries stay until needed (their units free all the same); a full table recycles them.
      assert.equal(s.free, s.pages - s.metadata - s.tail, 'every page is free, cached ones counted');
      assert.ok(midOperation > 0, `none of ${KILLS} kills landed inside a cached operation (seed ${seed})`);
      assert.equal(dissolvedAtOpen, midOperation, 'each interrupted operation was dissolved by the next open');
      t.diagnostic(`${midOperation} of ${KILLS} kills inside a cached operation`);
    } finally {
      cleanup();
    }
  });
});
