/**
 * check(), repair and recovery over hostile metadata: indices with no empty entry or with entries
 * they must not hold, directories whose damaged records all claim the whole pool, a forged sequence
 * number, a damaged INDEX_ALL word. In each case: what is reported, that a repair converges (a
 * second one changes nothing and reports what the first left), and that the honoured allocations
 * keep their bytes. Where damage once cost O(records × units) or O(records × index slots), the
 * pool is large enough that the old cost would take minutes: the test's own timeout is the bound.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Pool, PoolError } from '../src/pool/index.js';
import { MemoryRegion } from '../src/region/index.js';
import { poolInternals, type PoolParts } from '../src/pool/internals.js';
import { CONTROL_LAYOUT } from '../src/pool/control.js';
import type { Geometry } from '../src/pool/layout.js';
import { hashName, homeSlot } from '../src/pool/parts.js';
import { crc32c } from '../src/util/crc32c.js';
import { expectError } from './support/expect.js';

const MiB = 1024 * 1024;
// docs/abi.md, "Directory record": the state word, its CRC, pfn, page count and sequence number.
const RECORD_BYTES = 128;
const LIVE = 0x4556494c;
const REC_CRC = 4;
const REC_PFN = 8;
const REC_PAGES = 16;
const REC_SEQ = 24;
// docs/abi.md, "Control page": INDEX_ALL, and the intent op (4: a repair).
const INDEX_ALL = 164;
const INTENT_REPAIR = 4;
// check()'s cap on the lines one index adds (src/pool/check.ts), and its summary line.
const INDEX_PROBLEM_LINES = 32;

const expectPoolError = (fn: () => unknown, code: string): PoolError => expectError(fn, PoolError, code);

interface Fixture {
  region: MemoryRegion;
  pool: Pool;
  parts: PoolParts;
  g: Geometry;
  view: DataView;
  bytes: Uint8Array;
}

function fixture(size: number, options: { maxAllocations?: number } = {}): Fixture {
  const region = new MemoryRegion(size);
  const pool = Pool.create(region, { size, ...options });
  return { region, pool, parts: poolInternals(pool).parts, g: pool.geometry, view: new DataView(region.buffer), bytes: new Uint8Array(region.buffer) };
}

/** Overwrites an index with junk: every entry slot 0xfffffffe, hash 0xffffffff — no empty entry. */
function junkIndex(f: Fixture, area: 'pfnIndex' | 'nameIndex'): void {
  const { offset, length } = f.g.areas[area];
  f.bytes.fill(0xff, offset, offset + length);
}

function recordAt(g: Geometry, slot: number): number {
  return g.areas.records.offset + slot * RECORD_BYTES;
}

/** Rewrites the CRC of a committed record whose fields were changed (a hostile file, not a bit flip). */
function forgeCrc(f: Fixture, slot: number): void {
  const at = recordAt(f.g, slot);
  const ownerLength = f.bytes[at + 36]!;
  const nameLength = f.bytes[at + 37]!;
  const body = new Uint8Array([...f.bytes.subarray(at, at + 4), ...f.bytes.subarray(at + 8, at + 40), ...f.bytes.subarray(at + 40, at + 40 + ownerLength), ...f.bytes.subarray(at + 64, at + 64 + nameLength)]);
  f.view.setUint32(at + REC_CRC, crc32c(body), true);
}

/** Two repairs: the second changes nothing and leaves the problems the first left. Returns the first. */
function repairConverges(pool: Pool): { problems: string[]; repaired: string[] } {
  const first = pool.check({ repair: true });
  const second = pool.check({ repair: true });
  assert.deepEqual(second.repaired, [], 'a second repair finds nothing to change');
  assert.deepEqual(second.problems, first.problems, 'and leaves what the first left');
  assert.deepEqual(pool.check().problems, first.problems);
  return first;
}

describe('the INDEX_ALL word', () => {
  for (const word of [2, 3, 0xffffffff]) {
    test(`${word} is rewritten to the 1 the directory implies, and to the 0`, () => {
      const f = fixture(1 * MiB);
      const a = f.pool.alloc(2, { name: 'a' });
      a.bytes().fill(4);
      const flag = f.g.areas.control.offset + INDEX_ALL;
      // A clean directory implies 0.
      f.view.setUint32(flag, word, true);
      assert.ok(f.pool.check().problems.some((p) => /INDEX_ALL word is/.test(p)));
      assert.deepEqual(repairConverges(f.pool).problems, []);
      assert.equal(f.view.getUint32(flag, true), 0);
      // A record not honoured (a flipped bit in its pfn: a bad checksum) implies 1.
      const b = f.pool.alloc(1);
      const slotB = [...Array(f.g.maxRecords).keys()].find((s) => f.parts.directory.pfn(s) === b.pfn)!;
      const pfnByte = recordAt(f.g, slotB) + REC_PFN;
      f.bytes[pfnByte] = f.bytes[pfnByte]! ^ 1;
      f.pool.check({ repair: true });
      assert.equal(f.view.getUint32(flag, true), 1);
      f.view.setUint32(flag, word, true);
      const repaired = repairConverges(f.pool);
      assert.equal(f.view.getUint32(flag, true), 1);
      assert.ok(repaired.repaired.some((p) => /INDEX_ALL/.test(p)));
      assert.ok(!repaired.problems.some((p) => /INDEX_ALL/.test(p)), repaired.problems.join('\n'));
      assert.ok(a.bytes().every((x) => x === 4));
      f.pool.close();
    });
  }
});
