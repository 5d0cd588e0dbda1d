/**
 * extentFits(), the release path's check of a home record's extent, against
 * extentProblem(), the full check recovery and check() use: the same answer
 * for every pfn and page count, on pools of several unit sizes whose page
 * counts are not round.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Pool } from '../src/pool/index.js';
import { poolInternals } from '../src/pool/internals.js';
import { extentFits, extentProblem } from '../src/pool/recovery.js';
import { MemoryRegion } from '../src/region/index.js';

for (const orderPerBit of [0, 1, 3]) {
  test(`extentFits agrees with extentProblem (orderPerBit ${orderPerBit}, 1,003 pages)`, () => {
    const size = 1003 * 4096;
    const pool = Pool.create(new MemoryRegion(size), { size, orderPerBit });
    try {
      const { parts } = poolInternals(pool);
      const g = parts.geometry;
      const end = g.unitCount * parts.unitPages;
      const first = g.reservedUnits * parts.unitPages;
      // Edges by hand: both ends of the pool, runs that end exactly at the last whole unit or one past it.
      const near = (x: number) => [x - 1, x, x + 1];
      const pfns = [0, ...near(first), ...near(end - parts.unitPages), ...near(end), 2 ** 53 - 1];
      const counts = [0, 1, parts.unitPages, ...near(end - first), 2 ** 53, 2 ** 64];
      for (const pfn of pfns) for (const count of counts) {
        assert.equal(extentFits(parts, pfn, count), extentProblem(parts, pfn, count) === null, `pfn ${pfn}, ${count} pages`);
      }
      fc.assert(
        fc.property(fc.nat({ max: end + 64 }), fc.nat({ max: end + 64 }), (pfn, count) => {
          assert.equal(extentFits(parts, pfn, count), extentProblem(parts, pfn, count) === null);
        }),
        { numRuns: 3000 },
      );
    } finally {
      pool.close();
    }
  });
}
