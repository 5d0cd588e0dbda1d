/**
 * check(), repair and recovery over hostile metadata: indices with no empty entry or with entries
 * they must not hold, directories whose damaged records all claim the whole pool or are thousands,
 * a forged sequence number, a damaged INDEX_ALL word. In each case: what is reported, that a repair converges (a
 * second one changes nothing and reports what the first left), and that the honoured allocations
 * keep their bytes. Where damage once cost O(records × units) or O(records × index slots), the
 * pool is large enough that the old cost would take minutes: the test's own timeout is the bound.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Pool, PoolError } from '../src/pool/index.js';
import type { CountedCheckReport } from '../src/pool/pool.js';
import { MemoryRegion } from '../src/region/index.js';
import { poolInternals, type PoolParts } from '../src/pool/internals.js';
import { CONTROL_LAYOUT } from '../src/pool/control.js';
import type { Geometry } from '../src/pool/layout.js';
import { hashName, homeSlot } from '../src/pool/parts.js';
import { crc32c } from '../src/util/crc32c.js';
import { expectError } from './support/expect.js';

const MiB = 1024 * 1024;
// docs/abi.md, "Directory record": the state word, its CRC, pfn, page count, sequence number and name.
const RECORD_BYTES = 128;
const LIVE = 0x4556494c;
const REC_CRC = 4;
const REC_PFN = 8;
const REC_PAGES = 16;
const REC_SEQ = 24;
const REC_NAME = 64;
// docs/abi.md, "Control page": INDEX_ALL, and the intent op (4: a repair).
const INDEX_ALL = 164;
const INTENT_REPAIR = 4;
// check()'s cap on the lines one kind of damage adds (an index's, the directory's corrupt records:
// src/pool/check.ts); past it, a summary line.
const PROBLEM_LINES = 32;

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
/** The problems a report's lines stand for: one a line, N a "... and N more" line (no name here could forge one). */
function countedByLines(problems: string[]): number {
  return problems.reduce((sum, line) => sum + Number(/^\.\.\. and (\d+) more /.exec(line)?.[1] ?? 1), 0);
}

function repairConverges(pool: Pool): CountedCheckReport {
  const first = pool.checkCounted({ repair: true });
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

describe('an index with no empty entry', () => {
  test('a named alloc is refused with CORRUPT before anything is written, and repair makes room', () => {
    const f = fixture(4 * MiB);
    const kept = f.pool.alloc(1, { name: 'kept' });
    kept.bytes().fill(0x5a);
    junkIndex(f, 'nameIndex');
    f.pool.stats(); // the lock taken once: this open's identity is on the control page
    const before = f.bytes.slice(0, f.g.metadataBytes);
    const error = expectPoolError(() => f.pool.alloc(1, { name: 'new' }), 'CORRUPT');
    assert.match(error.message, /name index has no empty entry.*check --repair/);
    assert.deepEqual(f.bytes.slice(0, f.g.metadataBytes), before, 'no metadata byte changed: no record, no intent');
    assert.equal(f.pool.find('new'), undefined);
    // A sub-pool is a named allocation: refused the same way.
    expectPoolError(() => f.pool.subpool('sub', { count: 64 }), 'CORRUPT');
    assert.deepEqual(f.bytes.slice(0, f.g.metadataBytes), before);
    // The insert itself, should anything reach it, throws the same typed error.
    expectPoolError(() => f.parts.nameIndex.insert(hashName(new TextEncoder().encode('new')), 0), 'CORRUPT');

    const report = repairConverges(f.pool);
    assert.ok(report.repaired.length > 0);
    assert.deepEqual(report.problems, []);
    assert.equal(f.pool.alloc(1, { name: 'new' }).name, 'new');
    assert.equal(f.pool.find('kept')?.pfn, kept.pfn);
    assert.ok(kept.bytes().every((x) => x === 0x5a));
    assert.equal(f.pool.check().ok, true);
    f.pool.close();
  });

  test('an alloc away from its home slot is refused with CORRUPT when the pfn index has no room', () => {
    // 16 records for 256 units: units u and u + 16 share a home slot (and the pool has no caches).
    const f = fixture(1 * MiB, { maxAllocations: 16 });
    const a = f.pool.alloc(1);
    a.bytes().fill(0x11);
    f.pool.alloc(15);
    junkIndex(f, 'pfnIndex');
    f.pool.stats();
    const before = f.bytes.slice(0, f.g.metadataBytes);
    // The next unit's home slot is a's: its record would go elsewhere, and into the pfn index.
    assert.equal(homeSlot(f.g, a.pfn + 16), homeSlot(f.g, a.pfn));
    expectPoolError(() => f.pool.alloc(1), 'CORRUPT');
    assert.deepEqual(f.bytes.slice(0, f.g.metadataBytes), before);
    assert.equal(f.pool.allocations().length, 2);

    repairConverges(f.pool);
    assert.equal(f.pool.check().ok, true);
    const b = f.pool.alloc(1);
    assert.equal(homeSlot(f.g, b.pfn), homeSlot(f.g, a.pfn));
    assert.equal(f.pool.at(b.pfn)?.pfn, b.pfn);
    assert.ok(a.bytes().every((x) => x === 0x11));
    f.pool.close();
  });
});

describe('a committed record whose sequence number is past 2^53', () => {
  test('is not honoured, the counter is not blamed, and repair converges', () => {
    const f = fixture(1 * MiB);
    const kept = f.pool.alloc(2, { name: 'kept' });
    kept.bytes().fill(0x33);
    const forged = f.pool.alloc(2);
    const slot = [...Array(f.g.maxRecords).keys()].find((s) => f.parts.directory.pfn(s) === forged.pfn && f.parts.directory.isCommitted(s))!;
    f.view.setBigUint64(recordAt(f.g, slot) + REC_SEQ, 2n ** 60n, true);
    forgeCrc(f, slot);
    const lastSeq = f.parts.control.lastSeq();
    const report = f.pool.check();
    assert.ok(report.problems.some((p) => new RegExp(`record ${slot} .*sequence number \\d+ is past 2\\^53`).test(p)), report.problems.join('\n'));
    assert.ok(!report.problems.some((p) => /last sequence number/.test(p)), 'the counter is not to blame');
    const repaired = repairConverges(f.pool);
    assert.equal(repaired.problems.length, 1, repaired.problems.join('\n'));
    assert.equal(f.parts.control.lastSeq(), lastSeq, 'the counter is not raised to a number past 2^53');
    assert.equal(f.parts.control.indexAll(), true);
    assert.equal(f.pool.at(forged.pfn), undefined, 'not reached by pfn');
    // Its pages stay out of reuse, as a corrupt record's plausible extent does.
    const handedOut: number[] = [];
    for (;;) {
      try {
        handedOut.push(f.pool.alloc(1).pfn);
      } catch (e) {
        assert.ok(e instanceof PoolError && e.code === 'NO_SPACE', String(e));
        break;
      }
    }
    assert.ok(!handedOut.includes(forged.pfn) && !handedOut.includes(forged.pfn + 1));
    assert.ok(kept.bytes().every((x) => x === 0x33));
    for (const pfn of handedOut) f.pool.release(pfn, 1);
    assert.deepEqual(f.pool.check().problems, repaired.problems);
    // Recovery at open agrees with check().
    f.pool.close();
    f.view.setUint32(f.g.areas.control.offset + CONTROL_LAYOUT.INTENT_OP, INTENT_REPAIR, true);
    const reopened = Pool.open(f.region);
    assert.deepEqual(reopened.check().problems, repaired.problems);
    reopened.close();
  });
});

describe("damaged records' plausible extents: O(records + words), not O(records × units)", () => {
  // 131072 corrupt records, each claiming every unit of a 512 MiB pool: 2^34 unit tests at one
  // per unit per record, minutes; marked as one merged run, well under a second.
  const SIZE = 512 * MiB;
  const RECORDS = 131072;

  function everyRecordOverThePool(): Fixture {
    const f = fixture(SIZE, { maxAllocations: RECORDS });
    const { g } = f;
    f.pool.close();
    for (let slot = 0; slot < g.maxRecords; slot++) {
      const at = recordAt(g, slot);
      f.view.setUint32(at, LIVE, true);
      f.view.setUint32(at + REC_CRC, 0xdeadbeef, true); // a bad checksum: corrupt
      f.view.setBigUint64(at + REC_PFN, BigInt(g.reservedUnits), true); // a plausible extent: the whole pool
      f.view.setBigUint64(at + REC_PAGES, BigInt(g.unitCount - g.reservedUnits), true);
    }
    return f;
  }

  test('check() and repair', { timeout: 120_000 }, () => {
    const f = everyRecordOverThePool();
    const pool = Pool.open(f.region);
    const report = pool.check();
    // Each record is corrupt and in use in a slot marked free: the first of each named, the rest counted.
    const corrupt = [`... and ${RECORDS - PROBLEM_LINES} more corrupt records`];
    assert.deepEqual(report.problems.filter((p) => /corrupt/.test(p)), [...Array.from({ length: PROBLEM_LINES }, (_, slot) => `record ${slot} is corrupt (checksum or state word; at metadata offset ${f.parts.directory.offsetOf(slot)}, 128 bytes)`), ...corrupt]);
    assert.equal(report.problems.filter((p) => /^record slot \d+ is in use but marked free$/.test(p)).length, PROBLEM_LINES);
    assert.ok(report.problems.includes(`... and ${RECORDS - PROBLEM_LINES} more record-slot bitmap disagreements`), report.problems.slice(-5).join('\n'));
    const repaired = repairConverges(pool);
    assert.equal(repaired.problems.length, PROBLEM_LINES + 1);
    assert.deepEqual(repaired.problems.slice(-1), corrupt);
    assert.ok(repaired.problems.every((p) => /corrupt/.test(p)));
    expectPoolError(() => pool.alloc(1), 'NO_SPACE');
    pool.close();
  });

  test('recovery at open, after an interrupted repair', { timeout: 120_000 }, () => {
    const f = everyRecordOverThePool();
    f.view.setUint32(f.g.areas.control.offset + CONTROL_LAYOUT.INTENT_OP, INTENT_REPAIR, true);
    const pool = Pool.open(f.region);
    assert.ok(pool.recovered.length > 0);
    assert.equal(pool.stats().free, 0, 'every page a damaged record plausibly owns stays out of reuse');
    assert.deepEqual(pool.check({ repair: true }).repaired, []);
    pool.close();
  });

  test('the units kept out of reuse are those some damaged record plausibly claims, and free of honoured records', () => {
    const UNITS = 256;
    fc.assert(
      fc.property(
        fc.array(fc.record({ start: fc.integer({ min: 0, max: UNITS - 1 }), count: fc.integer({ min: 1, max: 40 }) }), { maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 9 }), { maxLength: 8 }),
        (claims, sizes) => {
          const f = fixture(UNITS * 4096, { maxAllocations: 64 });
          const { g } = f;
          const honoured = sizes.map((n) => f.pool.alloc(n));
          for (const [i, a] of honoured.entries()) a.bytes().fill(i + 1);
          // Damaged records in free slots, their checksums bad, their extents plausible or not.
          const used = new Set<number>();
          for (let u = 0; u < g.reservedUnits; u++) used.add(u);
          for (const a of honoured) for (let u = a.pfn; u < a.pfn + a.count; u++) used.add(u);
          let slot = 0;
          for (const claim of claims) {
            while (!f.parts.directory.isFree(slot)) slot++;
            const at = recordAt(g, slot++);
            f.view.setUint32(at, LIVE, true);
            f.view.setUint32(at + REC_CRC, 0xdeadbeef, true);
            f.view.setBigUint64(at + REC_PFN, BigInt(claim.start), true);
            f.view.setBigUint64(at + REC_PAGES, BigInt(claim.count), true);
            const plausible = claim.start >= g.reservedUnits && claim.start + claim.count <= g.unitCount;
            if (plausible) for (let u = claim.start; u < claim.start + claim.count; u++) used.add(u);
          }
          repairConverges(f.pool);
          for (let u = 0; u < g.unitCount; u++) assert.equal(f.parts.units.isUsed(u, 1), used.has(u), `unit ${u}`);
          for (const [i, a] of honoured.entries()) assert.ok(a.bytes().every((x) => x === i + 1));
          f.pool.close();
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('check() over a damaged index: one pass, a bounded report', () => {
  test('a name index of junk over 32768 named records: a few lines, and repair restores every name', () => {
    const n = 32768;
    const f = fixture((2 * n + 4096) * 4096, { maxAllocations: n });
    for (let i = 0; i < n; i++) f.pool.alloc(1, { name: `r${i}` });
    f.pool.find('r7')!.bytes().fill(7);
    junkIndex(f, 'nameIndex');
    const report = f.pool.checkCounted();
    const lines = report.problems.filter((p) => /name index/.test(p));
    assert.equal(lines.length, PROBLEM_LINES + 1, report.problems.slice(0, 3).join('\n'));
    // Every entry is stray, and every record missing.
    assert.equal(lines.at(-1), `... and ${f.g.indexSlots + n - PROBLEM_LINES} more problems of the name index`);
    assert.equal(report.problems.length, lines.length, 'nothing else is wrong');
    assert.equal(report.problemCount, f.g.indexSlots + n, 'each stray entry and each missing record counted once');

    const repaired = repairConverges(f.pool);
    assert.deepEqual(repaired.problems, []);
    assert.equal(repaired.problemCount, 0);
    for (let i = 0; i < n; i += 997) assert.ok(f.pool.find(`r${i}`), `r${i}`);
    assert.ok(f.pool.find('r7')!.bytes().every((x) => x === 7));
    f.pool.close();
  });

  test('a directory of 3000 damaged records: the first 32 named, one line counts the rest; repair and the pages held as before', () => {
    const n = 3000;
    const f = fixture(16 * MiB, { maxAllocations: 4096 });
    const kept = f.pool.alloc(4, { name: 'kept' });
    kept.bytes().fill(9);
    for (let i = 0; i < n; i++) f.pool.alloc(1, { name: `r${i}` });
    const free = f.pool.stats().free;
    const d = f.parts.directory;
    const slots: number[] = [];
    for (let slot = 0; slot < d.capacity; slot++) if (d.status(slot) === 'live' && d.pfn(slot) !== kept.pfn) slots.push(slot);
    assert.equal(slots.length, n);
    // One bit of each record's name flipped, as a bad write would: its checksum no longer matches,
    // and its extent, still plausible, stays out of reuse.
    for (const slot of slots) f.bytes[recordAt(f.g, slot) + REC_NAME]! ^= 0x01;
    const corruptLine = /^record (\d+) is corrupt \(checksum or state word; at metadata offset \d+, 128 bytes\)$/;
    const expectCorruptLines = (problems: string[]) => {
      // The first ones by slot, then one line with the exact count of the rest.
      const named = problems.filter((p) => corruptLine.test(p)).map((p) => Number(corruptLine.exec(p)![1]));
      assert.deepEqual(named, slots.slice(0, PROBLEM_LINES), problems.slice(0, 3).join('\n'));
      assert.deepEqual(problems.filter((p) => /more corrupt records/.test(p)), [`... and ${n - PROBLEM_LINES} more corrupt records`]);
    };
    const report = f.pool.checkCounted();
    assert.equal(report.ok, false);
    expectCorruptLines(report.problems);
    assert.ok(report.problems.length < 4 * (PROBLEM_LINES + 1), `a bounded report: ${report.problems.length} lines`);
    // Counted exactly all the same: each line one problem, a counting line the N it stands for.
    assert.equal(report.problemCount, countedByLines(report.problems));
    assert.ok(report.problemCount >= n, `${report.problemCount} problems: every damaged record among them`);

    const repaired = repairConverges(f.pool);
    expectCorruptLines(repaired.problems);
    assert.equal(repaired.problemCount, n, 'the damaged records, each counted once');
    assert.deepEqual(repaired.problems.filter((p) => !corruptLine.test(p) && !/more corrupt records/.test(p)), [], 'the records stay damaged, and nothing else');
    assert.equal(f.pool.stats().free, free, 'every damaged record\'s pages stay out of reuse');
    assert.ok(f.pool.find('kept')!.bytes().every((x) => x === 9));
    f.pool.close();
  });

  test('a sub-pool is checked whatever the name index holds', () => {
    const f = fixture(4 * MiB);
    const sub = f.pool.subpool('inner', { count: 256 });
    sub.alloc(2, { name: 'x' }).bytes().fill(3);
    const subControl = f.pool.find('inner')!.pfn * f.g.pageSize + sub.geometry.areas.control.offset;
    sub.close();
    // Damage inside the sub-pool (its INDEX_ALL word) and, in the parent, a name index of junk.
    f.view.setUint32(subControl + INDEX_ALL, 2, true);
    junkIndex(f, 'nameIndex');
    const report = f.pool.check();
    assert.ok(report.problems.some((p) => p.startsWith('sub-pool "inner"') && /INDEX_ALL/.test(p)), report.problems.join('\n'));
    const repaired = repairConverges(f.pool);
    assert.deepEqual(repaired.problems, []);
    const again = f.pool.subpool('inner');
    assert.ok(again.find('x')!.bytes().every((b) => b === 3));
    again.close();
    f.pool.close();
  });

  test('an entry past an empty one, and an entry held twice, are named', () => {
    const f = fixture(1 * MiB);
    const a = f.pool.alloc(1, { name: 'a' });
    a.bytes().fill(9);
    const [entry] = [...f.parts.nameIndex.entries()];
    assert.ok(entry);
    const mask = f.g.indexSlots - 1;
    const entryAt = (i: number) => f.g.areas.nameIndex.offset + (i & mask) * 8;
    const copy = (from: number, to: number) => f.bytes.copyWithin(entryAt(to), entryAt(from), entryAt(from) + 8);
    // Moved two entries on, past an empty one: present, but no lookup reaches it.
    copy(entry.position, entry.position + 2);
    f.bytes.fill(0, entryAt(entry.position), entryAt(entry.position) + 8);
    assert.equal(f.pool.find('a'), undefined);
    let report = f.pool.check();
    assert.ok(report.problems.some((p) => /"a" .* is in the name index \(entry \d+\) past an empty entry/.test(p)), report.problems.join('\n'));
    assert.deepEqual(repairConverges(f.pool).problems, []);
    assert.equal(f.pool.find('a')?.pfn, a.pfn);
    // A second entry for the same record: a release would remove one and leave the other.
    const [again] = [...f.parts.nameIndex.entries()];
    copy(again!.position, again!.position + 1);
    report = f.pool.check();
    assert.ok(report.problems.some((p) => /name index entry \d+ points at record \d+, which another entry points at too/.test(p)), report.problems.join('\n'));
    assert.deepEqual(repairConverges(f.pool).problems, []);
    assert.equal([...f.parts.nameIndex.entries()].length, 1);
    assert.ok(a.bytes().every((x) => x === 9));
    f.pool.close();
  });

  test('verify() agrees with find() on every table', () => {
    // A small index and arbitrary contents: each expected entry is reported missing or unreachable
    // exactly when find() does not return it; entries found but not expected are strays.
    const f = fixture(1 * MiB, { maxAllocations: 8 });
    const index = f.parts.pfnIndex;
    const slots = index.slots;
    const base = f.g.areas.pfnIndex.offset;
    fc.assert(
      fc.property(
        fc.array(fc.record({ slot: fc.integer({ min: 0, max: 9 }), hash: fc.integer({ min: 0, max: 2 * slots - 1 }) }), { minLength: slots, maxLength: slots }),
        fc.array(fc.boolean(), { minLength: slots, maxLength: slots }),
        fc.uniqueArray(fc.integer({ min: 0, max: 9 }), { maxLength: 10 }),
        (table, empty, expectedSlots) => {
          for (let i = 0; i < slots; i++) {
            f.view.setUint32(base + i * 8, empty[i] ? 0 : table[i]!.slot + 1, true);
            f.view.setUint32(base + i * 8 + 4, table[i]!.hash, true);
          }
          // Expected pairs: some held in the table, some not.
          const expected = new Map<number, number>();
          for (const slot of expectedSlots) {
            const held = table.findIndex((e, i) => !empty[i] && e.slot === slot);
            expected.set(slot, held >= 0 && slot % 2 === 0 ? table[held]!.hash : slot * 3);
          }
          const faults = new Map<number, string>();
          let strays = 0;
          index.verify(expected, (fault) => {
            if (fault.kind === 'stray') strays++;
            else if (fault.kind !== 'duplicate') faults.set(fault.slot, fault.kind);
          });
          for (const [slot, hash] of expected) {
            const found = index.find(hash, (s) => s === slot) === slot;
            const entries = [...index.entries()].filter((e) => e.slot === slot && e.hash === hash);
            // With one entry per pair, find() reaches it exactly when verify() has nothing to say.
            if (entries.length === 1) assert.equal(found, !faults.has(slot), `slot ${slot}`);
            if (entries.length === 0) assert.equal(faults.get(slot), 'missing');
          }
          const unexpected = [...index.entries()].filter((e) => expected.get(e.slot) !== e.hash).length;
          assert.equal(strays, unexpected);
        },
      ),
      { numRuns: 300 },
    );
    f.pool.close();
  });

  test('a name index entry for a record that is not honoured is reported, and its removal too', () => {
    const f = fixture(1 * MiB);
    const a = f.pool.alloc(4, { name: 'a' });
    const b = f.pool.alloc(4, { name: 'b' });
    a.bytes().fill(0xaa);
    const g = f.g;
    // b's record made to start at a's pfn, its checksum forged: b overlaps the older a.
    const slotB = [...Array(g.maxRecords).keys()].find((s) => f.parts.directory.pfn(s) === b.pfn && f.parts.directory.isCommitted(s))!;
    f.view.setBigUint64(recordAt(g, slotB) + REC_PFN, BigInt(a.pfn), true);
    forgeCrc(f, slotB);
    const first = f.pool.check({ repair: true });
    assert.ok(first.problems.some((p) => /"b" .* overlaps pages owned by an older record/.test(p)), first.problems.join('\n'));
    assert.ok(first.repaired.some((p) => /name index entry \d+ points at record \d+, which is not honoured/.test(p)), first.repaired.join('\n'));
    assert.equal(f.pool.find('b'), undefined);
    // The entry put back (damage again): find() would hand out a's pages as b's.
    f.parts.nameIndex.insert(hashName(new TextEncoder().encode('b')), slotB);
    assert.equal(f.pool.find('b')?.pfn, a.pfn);
    const report = f.pool.check();
    assert.ok(report.problems.some((p) => new RegExp(`name index entry \\d+ points at record ${slotB}, which is not honoured`).test(p)), report.problems.join('\n'));
    const repaired = repairConverges(f.pool);
    assert.ok(repaired.repaired.some((p) => /which is not honoured/.test(p)), 'the removal is reported');
    assert.equal(f.pool.find('b'), undefined);
    assert.equal(f.pool.find('a')?.pfn, a.pfn);
    assert.ok(a.bytes().every((x) => x === 0xaa));
    f.pool.close();
  });

});

describe('an index entry naming a slot past the directory', () => {
  test('matches nothing: its offset would wrap in the 32-bit word index onto another record', () => {
    const f = fixture(1 * MiB);
    // INDEX_ALL on: every record goes in the pfn index, as after a recovery that left one unhonoured.
    f.view.setUint32(f.g.areas.control.offset + INDEX_ALL, 1, true);
    const a = f.pool.alloc(2, { name: 'a' });
    a.bytes().fill(5);
    const [entry] = [...f.parts.pfnIndex.entries()];
    assert.ok(entry, 'the allocation is in the pfn index');
    // The same record, named 2^25 slots on: 2^25 records of 128 bytes are 2^32 bytes, a whole wrap.
    const at = f.g.areas.pfnIndex.offset + entry.position * 8;
    const wrapped = entry.slot + 2 ** 25;
    f.view.setUint32(at, wrapped + 1, true);
    assert.equal(f.pool.at(a.pfn), undefined, 'not found through an entry past the directory');
    expectPoolError(() => f.pool.release(a.pfn, 2, {}), 'NOT_ALLOCATED');
    assert.equal(a.bytes().every((b) => b === 5), true);
    assert.ok(f.pool.check().problems.length > 0, 'and check() names the entry');
    repairConverges(f.pool);
    assert.equal(f.pool.at(a.pfn)?.name, 'a');
    f.pool.close();
  });
});

describe('sub-pools nested past the limit', () => {
  // check()'s recursion is a few frames a level: a hostile file of thousands of levels ran out of
  // stack (a bare RangeError). Sub-pools nest at most 32 deep (src/pool/pool.ts MAX_SUBPOOL_NESTING).
  const MAX_NESTING = 32;

  test('subpool() refuses to nest deeper than the limit', () => {
    const region = new MemoryRegion(8 * MiB);
    const root = Pool.create(region, { size: 8 * MiB });
    let deepest = root;
    for (let depth = 1; depth <= MAX_NESTING; depth++) deepest = deepest.subpool('s', { count: deepest.stats().free - 8, maxAllocations: 4 });
    const before = deepest.stats();
    expectPoolError(() => deepest.subpool('s', { count: 8 }), 'BAD_ARGUMENT');
    assert.deepEqual(deepest.stats(), before, 'nothing allocated');
    assert.equal(root.check().ok, true);
    root.close();
  });

  test('a file nested deeper than the limit is checked to the limit, and the rest is named, not a RangeError', () => {
    // Built level by level: each level is a pool whose one allocation is the sub-pool of the next.
    const depth = MAX_NESTING + 8;
    const LEVEL = 8;
    const pagesTotal = (depth + 2) * LEVEL;
    const image = new MemoryRegion(pagesTotal * 4096);
    let base = 0;
    for (let k = 0, pages = pagesTotal; k <= depth; k++) {
      const scratch = new MemoryRegion(pages * 4096);
      const p = Pool.create(scratch, { size: pages * 4096, maxAllocations: 1 });
      const meta = p.geometry.metadataPages;
      if (k < depth) p.subpool('s', { count: pages - meta, maxAllocations: 1 }).close();
      p.close();
      new Uint8Array(image.buffer).set(new Uint8Array(scratch.buffer, 0, meta * 4096), base);
      base += meta * 4096;
      pages -= meta;
    }
    const pool = Pool.open(image);
    const report = pool.check();
    assert.equal(report.problems.length, 1, report.problems.join('\n'));
    assert.match(report.problems[0]!, new RegExp(`is nested ${MAX_NESTING + 1} deep, past the ${MAX_NESTING} levels sub-pools may nest: not checked$`));
    assert.equal(report.problems[0]!.split('sub-pool "s"').length - 1, MAX_NESTING + 1, 'named through every level above it');
    assert.deepEqual(pool.check({ repair: true }).repaired, []);
    pool.close();
  });
});
