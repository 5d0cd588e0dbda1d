/**
 * Crash consistency by simulation (DESIGN.md §4; STYLE.md, TigerBeetle):
 * random sequences of pool operations on an in-memory region, crashed after
 * every single metadata store in turn — and in the middle of every store of
 * two words or more — then reopened. At every crash point:
 *   - the open repairs the crashed run (its holder is declared dead) and
 *     check() is clean: every page free or owned by exactly one record, the
 *     bitmaps, summaries and indices agreeing with the directory;
 *   - the pool (and each sub-pool) holds exactly the allocations of the
 *     operations completed before the crash, plus the one in flight either
 *     wholly or not at all; each operation has a single commit point (once
 *     its effect shows at some store, it shows at every later one);
 *   - data written into allocations before the crash is intact;
 *   - the page counts add up.
 * Some crash points also crash the recovery itself, at every store of it.
 * The pool here is small (every allocator summary a single word);
 * test/pool-crash-sim-deep.test.ts crashes a pool whose summaries have two
 * levels. The harness is test/support/pool-sim.ts.
 *
 * Replay one run: PMPOOL_SIM_SEED=<seed printed by a run> node --test dist/test/pool-crash-sim.test.js
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Pool, PoolError, type Allocation } from '../src/pool/index.js';
import { MemoryRegion } from '../src/region/index.js';
import { Prng, testSeed } from './support/prng.js';
import { crashPoints, traced, type CrashPoint } from './support/crash-sim.js';
import { poolInternals } from '../src/pool/internals.js';
import { describePoint, PAGE, POOL_BYTES, REOPEN, SCENARIOS, simulateMany, SMALL, SUBPOOL_OWNER } from './support/pool-sim.js';

describe('crash simulation', () => {
  test('every prefix of the stores of random operation sequences recovers to a consistent pool', async (t) => {
    const total = await simulateMany(t, SMALL, SCENARIOS);
    assert.ok(total.crashPoints >= 1000 * SCENARIOS / 6, `${total.crashPoints} crash points`);
  });
});

/* ---------------- crashes inside check({ repair: true }) ---------------- */

/** A pool with some allocations, released holes, names and owners; closed. */
function populated(seed: number): { region: MemoryRegion; allocations: string } {
  const region = new MemoryRegion(POOL_BYTES);
  const pool = Pool.create(region, { size: POOL_BYTES, maxAllocations: 24 });
  const rng = new Prng(seed);
  const made: Allocation[] = [];
  for (let i = 0; i < 14; i++) made.push(pool.alloc(rng.range(1, 6), { name: rng.chance(0.6) ? `r${i}` : undefined, owner: rng.chance(0.3) ? 'kv' : undefined }));
  for (const a of made) if (rng.chance(0.3)) pool.release(a.pfn, a.count, { owner: a.owner });
  const allocations = JSON.stringify(pool.allocations());
  pool.close();
  return { region, allocations };
}

function problemsOf(image: MemoryRegion): string[] {
  const pool = Pool.open(image, REOPEN);
  try {
    return pool.check().problems;
  } finally {
    pool.close();
  }
}

describe('crash simulation of check({ repair: true })', () => {
  test('a crash anywhere in a repair leaves the damage as it was or repaired, never worse', (t) => {
    const seed = testSeed('PMPOOL_SIM_SEED');
    const { region, allocations } = populated(seed);
    // Damage what is derived from the directory, behind the pool's back: an allocation's
    // units marked free (its pages could be handed out twice), the name index emptied,
    // a live record's slot marked free.
    const pool = Pool.open(region);
    const { parts } = poolInternals(pool);
    const victim = pool.allocations()[2]!;
    const unitPages = 2 ** parts.geometry.orderPerBit;
    parts.units.markFree(victim.pfn / unitPages, Math.ceil(victim.count / unitPages));
    parts.nameIndex.clear();
    const someSlot = [...Array(parts.directory.capacity).keys()].find((slot) => parts.directory.status(slot) === 'live')!;
    parts.slots.markFree(someSlot, 1);
    pool.close();
    const damage = problemsOf(region.clone());
    assert.ok(damage.length >= 3, damage.join('\n'));

    const replay = (point: CrashPoint | null) => {
      const copy = region.clone();
      return traced(copy, point, () => {
        const p = Pool.open(copy, REOPEN);
        const report = p.check({ repair: true });
        if (point === null) assert.equal(report.ok, true, report.problems.join('\n'));
        p.close();
      });
    };
    const reference = replay(null);
    let repairedAt: number | null = null;
    let points = 0;
    for (const point of crashPoints(reference.stores!, true)) {
      const image = replay(point).image!;
      const problems = problemsOf(image.clone());
      const label = `seed ${seed}, ${describePoint(point)} ${point.k}/${reference.stores!.length} of a repair`;
      assert.ok(problems.length === 0 || JSON.stringify(problems) === JSON.stringify(damage), `${label}: the pool is worse than before the repair:\n${problems.join('\n')}`);
      if (problems.length === 0) repairedAt ??= point.k;
      else assert.equal(repairedAt, null, `${label}: repaired at store ${repairedAt}, damaged again later`);
      const again = Pool.open(image, REOPEN);
      assert.equal(JSON.stringify(again.allocations()), allocations, `${label}: the allocations changed`);
      again.close();
      points++;
    }
    t.diagnostic(`${points} crash points in a repair; repaired from store ${repairedAt}`);
  });

  test('a crash anywhere in the repair of a damaged superblock: refused as damaged before, clean after', (t) => {
    const { region, allocations } = populated(7);
    const good = new Uint8Array(region.buffer, 0, 256).slice();
    new Uint8Array(region.buffer)[100]! ^= 0x10; // a bit of the primary superblock's area table
    const replay = (point: CrashPoint | null) => {
      const copy = region.clone();
      return traced(copy, point, () => {
        const p = Pool.open(copy, { ...REOPEN, allowDamagedSuperblock: true });
        const report = p.check({ repair: true });
        if (point === null) assert.equal(report.ok, true, report.problems.join('\n'));
        p.close();
      });
    };
    const reference = replay(null);
    let cleanFrom: number | null = null;
    let points = 0;
    for (const point of crashPoints(reference.stores!, true)) {
      const image = replay(point).image!;
      const label = `${describePoint(point)} ${point.k}/${reference.stores!.length} of a superblock repair`;
      let pool: Pool;
      try {
        pool = Pool.open(image, REOPEN);
      } catch (e) {
        assert.ok(e instanceof PoolError && e.code === 'CORRUPT', `${label}: ${String(e)}`);
        assert.equal(cleanFrom, null, `${label}: refused after an earlier crash point opened clean`);
        points++;
        continue;
      }
      const report = pool.check();
      assert.equal(report.ok, true, `${label}: ${report.problems.join('\n')}`);
      assert.deepEqual(new Uint8Array(image.buffer, 0, 256), good, `${label}: the primary superblock is restored`);
      assert.equal(JSON.stringify(pool.allocations()), allocations, label);
      pool.close();
      cleanFrom ??= point.k;
      points++;
    }
    assert.notEqual(cleanFrom, null);
    t.diagnostic(`${points} crash points in a superblock repair; clean from store ${cleanFrom}`);
  });
});

describe('sub-pools and the pages they leave behind', () => {
  test('a sub-pool created in the pages of a released one starts empty (never the stale pool)', () => {
    for (const [first, second] of [[40, 40], [40, 36], [32, 48]] as const) {
      const region = new MemoryRegion(POOL_BYTES);
      const creator = Pool.create(region, { size: POOL_BYTES, maxAllocations: 24 });
      const a = creator.subpool('a', { count: first, maxAllocations: 8 });
      a.alloc(2, { name: 'stale' });
      const run = creator.find('a')!;
      a.close();
      creator.release(run.pfn, run.count, { owner: SUBPOOL_OWNER });
      creator.close();
      // A new open searches from the start (the next-fit rotor is per open), so 'b' lands on a's pages.
      const pool = Pool.open(region);
      const b = pool.subpool('b', { count: second, maxAllocations: 8 });
      assert.equal(pool.find('b')!.pfn, run.pfn, 'the new sub-pool reuses the pages');
      assert.deepEqual(b.allocations(), [], `${first} then ${second} pages`);
      assert.equal(b.pageCount, second);
      assert.ok(b.check().ok && pool.check().ok);
      pool.close();
      // And after a restart.
      const again = Pool.open(region);
      assert.deepEqual(again.subpool('b').allocations(), []);
      again.close();
    }
  });

  test('a committed sub-pool whose pool is gone is refused as CORRUPT, not silently reformatted', () => {
    const region = new MemoryRegion(POOL_BYTES);
    const pool = Pool.create(region, { size: POOL_BYTES, maxAllocations: 24 });
    pool.subpool('s', { count: 32 }).alloc(1, { name: 'precious' });
    const run = pool.find('s')!;
    pool.close();
    new Uint8Array(region.buffer, run.pfn * PAGE, PAGE).fill(0); // both superblock copies of the sub-pool
    const again = Pool.open(region);
    assert.throws(() => again.subpool('s'), (e: unknown) => e instanceof PoolError && e.code === 'CORRUPT');
    assert.ok(again.find('s'), 'the record is kept');
    again.close();
  });
});
