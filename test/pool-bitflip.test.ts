/**
 * Check and repair against single-bit damage (issue item 6): every bit of
 * the superblock (primary and backup) and of a directory record, live or
 * free, flipped in turn. Each flip is detected — an open refuses a damaged
 * primary, check() reports everything else — nothing throws anything but a
 * PoolError, and repair restores what can be restored from an intact copy.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Pool, PoolError } from '../src/pool/index.js';
import { poolInternals } from '../src/pool/internals.js';
import { homeSlot } from '../src/pool/parts.js';
import { CONTROL_LAYOUT } from '../src/pool/control.js';
import { MemoryRegion } from '../src/region/index.js';
import { allocatorGeometry } from '../src/alloc/index.js';

const POOL_BYTES = 1024 * 1024;
const SUPERBLOCK_BYTES = 256;
const BACKUP_OFFSET = 2048;
const RECORD_BYTES = 128;

interface Fixture {
  region: MemoryRegion;
  allocations: string;
  /** Region offsets of a live record (named and owned), of a free record never used, and of a released one. */
  live: number;
  free: number;
  released: number;
}

function fixture(): Fixture {
  const region = new MemoryRegion(POOL_BYTES);
  // Nine records: the aligned run's home slot (its unit modulo 9) is the first one's, so it
  // takes another slot and has a pfn index entry; the others are in their home slots.
  const pool = Pool.create(region, { size: POOL_BYTES, maxAllocations: 9 });
  pool.alloc(2, { name: 'first' });
  const target = pool.alloc(3, { name: 'the-record-under-test', owner: 'kv-store' });
  const gone = pool.alloc(1, { name: 'released' });
  pool.alloc(5, { align: 4 });
  pool.release(gone.pfn, gone.count);
  const { parts } = poolInternals(pool);
  const d = parts.directory;
  let live = -1;
  let free = -1;
  let released = -1;
  for (let slot = 0; slot < d.capacity; slot++) {
    if (d.status(slot) === 'live' && d.name(slot) === 'the-record-under-test') live = d.offsetOf(slot);
  }
  // The released record's slot is its home slot, which the next one-page allocation (the lowest
  // free unit, the released one) takes again; a never-used one is the last.
  released = d.offsetOf(homeSlot(pool.geometry, gone.pfn));
  assert.equal(pool.geometry.maxRecords, 9);
  free = d.offsetOf(d.capacity - 1);
  assert.equal(d.status(d.capacity - 1), 'free');
  const allocations = JSON.stringify(pool.allocations());
  assert.equal(target.pfn, pool.find('the-record-under-test')!.pfn);
  pool.close();
  assert.ok(live > 0 && released > 0 && free > 0);
  return { region, allocations, live, free, released };
}

function flip(region: MemoryRegion, offset: number, bit: number): void {
  new Uint8Array(region.buffer)[offset + (bit >>> 3)]! ^= 1 << (bit & 7);
}

function bytesAt(region: MemoryRegion, offset: number, length: number): Uint8Array {
  return new Uint8Array(region.buffer, offset, length).slice();
}

/** Runs `fn`; a PoolError is an answer, anything else a crash of the library. */
function noPanic(label: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof PoolError)) assert.fail(`${label}: threw ${String(e)}\n${(e as Error).stack}`);
  }
}

describe('single-bit flips', () => {
  const fx = fixture();

  test('every bit of the primary superblock: open refuses; from the backup, check reports and repair restores', () => {
    const original = bytesAt(fx.region, 0, SUPERBLOCK_BYTES);
    for (let bit = 0; bit < SUPERBLOCK_BYTES * 8; bit++) {
      const label = `primary superblock bit ${bit} (byte ${bit >>> 3})`;
      const region = fx.region.clone();
      flip(region, 0, bit);
      let code = 'opened';
      try {
        Pool.open(region).close();
      } catch (e) {
        code = e instanceof PoolError ? e.code : String(e);
      }
      assert.ok(['CORRUPT', 'NOT_A_POOL', 'INCOMPATIBLE'].includes(code), `${label}: open gave ${code}`);

      const pool = Pool.open(region, { allowDamagedSuperblock: true });
      assert.equal(pool.damagedSuperblock, true, label);
      const report = pool.check();
      assert.equal(report.ok, false, label);
      assert.ok(report.problems.some((p) => p.startsWith('primary superblock')), `${label}: ${report.problems.join('; ')}`);
      const fixed = pool.check({ repair: true });
      assert.equal(fixed.ok, true, `${label}: ${fixed.problems.join('; ')}`);
      assert.ok(fixed.repaired.some((p) => p.startsWith('primary superblock')), `${label}: ${fixed.repaired.join('; ')}`);
      pool.close();
      assert.deepEqual(bytesAt(region, 0, SUPERBLOCK_BYTES), original, `${label}: restored byte for byte`);
      const again = Pool.open(region);
      assert.equal(JSON.stringify(again.allocations()), fx.allocations, label);
      again.close();
    }
  });

  test('every bit of the backup superblock: check reports, repair restores', () => {
    const original = bytesAt(fx.region, BACKUP_OFFSET, SUPERBLOCK_BYTES);
    for (let bit = 0; bit < SUPERBLOCK_BYTES * 8; bit++) {
      const label = `backup superblock bit ${bit}`;
      const region = fx.region.clone();
      flip(region, BACKUP_OFFSET, bit);
      const pool = Pool.open(region);
      const report = pool.check();
      assert.equal(report.ok, false, label);
      assert.ok(report.problems.some((p) => p.startsWith('backup superblock')), `${label}: ${report.problems.join('; ')}`);
      const fixed = pool.check({ repair: true });
      assert.equal(fixed.ok, true, `${label}: ${fixed.problems.join('; ')}`);
      pool.close();
      assert.deepEqual(bytesAt(region, BACKUP_OFFSET, SUPERBLOCK_BYTES), original, `${label}: restored byte for byte`);
    }
  });

  test('every bit of a live directory record is reported, and nothing panics', () => {
    const original = bytesAt(fx.region, fx.live, RECORD_BYTES);
    for (let bit = 0; bit < RECORD_BYTES * 8; bit++) {
      const label = `live record bit ${bit} (byte ${bit >>> 3})`;
      const region = fx.region.clone();
      flip(region, fx.live, bit);
      const pool = Pool.open(region);
      const report = pool.check();
      assert.equal(report.ok, false, `${label}: not detected`);
      assert.ok(report.problems.length > 0, label);
      // The pool stays usable and answers with PoolErrors at worst.
      noPanic(`${label}: stats`, () => pool.stats());
      noPanic(`${label}: allocations`, () => pool.allocations());
      noPanic(`${label}: find`, () => pool.find('the-record-under-test'));
      noPanic(`${label}: alloc/release`, () => {
        const a = pool.alloc(1);
        pool.release(a.pfn, a.count);
      });
      // Repair keeps a record it cannot trust (the directory is the source of truth:
      // it is reported, never silently dropped) and keeps reporting it.
      let repaired = { ok: true, problems: [] as string[], repaired: [] as string[] };
      noPanic(`${label}: repair`, () => {
        repaired = pool.check({ repair: true });
      });
      assert.equal(repaired.ok, false, `${label}: a damaged record is not repaired away`);
      // Flip it back: the record is whole again and repair makes the pool clean.
      new Uint8Array(region.buffer).set(original, fx.live);
      const healed = pool.check({ repair: true });
      assert.equal(healed.ok, true, `${label}: after the flip back: ${healed.problems.join('; ')}`);
      assert.equal(JSON.stringify(pool.allocations()), fx.allocations, label);
      pool.close();
    }
  });

  for (const which of ['free', 'released'] as const) {
    test(`every bit of a ${which} (all-zero) directory record is reported`, () => {
      const at = fx[which];
      assert.ok(bytesAt(fx.region, at, RECORD_BYTES).every((b) => b === 0));
      for (let bit = 0; bit < RECORD_BYTES * 8; bit++) {
        const label = `${which} record bit ${bit}`;
        const region = fx.region.clone();
        flip(region, at, bit);
        const pool = Pool.open(region);
        const report = pool.check();
        assert.equal(report.ok, false, `${label}: not detected`);
        // An allocation never writes over a record that is not empty. The released record's
        // slot is the next one alloc would take: it is refused (CORRUPT), not overwritten.
        let allocCode = 'ok';
        noPanic(`${label}: alloc`, () => {
          try {
            pool.alloc(1, { name: 'new' });
          } catch (e) {
            allocCode = (e as PoolError).code;
            throw e;
          }
        });
        assert.equal(allocCode, which === 'released' ? 'CORRUPT' : 'ok', label);
        noPanic(`${label}: repair`, () => {
          const fixed = pool.check({ repair: true });
          if (bit < 32) {
            // The state word is no longer 0: a record in an unknown state, kept and reported.
            assert.equal(fixed.ok, false, label);
          } else {
            // State 0 with a stray bit in the body: an uncommitted record, wiped — and the change reported.
            assert.equal(fixed.ok, true, `${label}: ${fixed.problems.join('; ')}`);
            assert.ok(fixed.repaired.some((r) => /wiped the uncommitted record/.test(r)), `${label}: ${fixed.repaired.join('; ')}`);
          }
        });
        // After the repair, allocations go on and make whole records.
        pool.alloc(1, { name: 'after-repair' });
        assert.deepEqual(pool.check().ok, bit >= 32, label);
        pool.close();
      }
    });
  }

  /** Flips every bit of `[offset, +bytes)` in turn: check() must report it, and repair make the pool clean again. */
  function flipAllReportedAndRepaired(what: string, offset: number, bytes: number, restoresBytes: boolean): number {
    const original = bytesAt(fx.region, offset, bytes);
    for (let bit = 0; bit < bytes * 8; bit++) {
      const label = `${what} bit ${bit} (byte ${bit >>> 3})`;
      const region = fx.region.clone();
      flip(region, offset, bit);
      const pool = Pool.open(region);
      const report = pool.check();
      assert.equal(report.ok, false, `${label}: not detected`);
      const fixed = pool.check({ repair: true });
      assert.equal(fixed.ok, true, `${label}: ${fixed.problems.join('; ')}`);
      assert.ok(fixed.repaired.length > 0, `${label}: the repair reports what it changed`);
      assert.equal(JSON.stringify(pool.allocations()), fx.allocations, label);
      pool.close();
      if (restoresBytes) assert.deepEqual(bytesAt(region, offset, bytes), original, `${label}: rebuilt word for word`);
    }
    return bytes * 8;
  }

  test('every bit of the allocator bitmaps — leaf words, summaries, header — is reported and rebuilt', () => {
    const pool = Pool.open(fx.region.clone());
    const g = pool.geometry;
    pool.close();
    flipAllReportedAndRepaired('unit bitmap', g.areas.unitBitmap.offset, allocatorGeometry(g.unitCount).wordCount * 4, true);
    flipAllReportedAndRepaired('record-slot bitmap', g.areas.recordBitmap.offset, allocatorGeometry(g.maxRecords).wordCount * 4, true);
  });

  test("every bit of the control page's sequence number: a flip that would reorder new records is reported and repaired", () => {
    const pool = Pool.open(fx.region.clone());
    const at = pool.geometry.areas.control.offset + CONTROL_LAYOUT.NEXT_SEQ;
    const d = poolInternals(pool).parts.directory;
    let newest = 0;
    for (let slot = 0; slot < d.capacity; slot++) if (d.status(slot) === 'live') newest = Math.max(newest, d.seq(slot));
    pool.close();
    // docs/abi.md: a u64, the last sequence number handed out.
    const seqOf = (region: MemoryRegion) => Number(new DataView(region.buffer).getBigUint64(at, true));
    const last = seqOf(fx.region);
    assert.ok(newest > 0 && last >= newest);
    const names = (p: Pool) => p.allocations().map((a) => a.name ?? a.pfn);
    for (let bit = 0; bit < 64; bit++) {
      const label = `sequence number bit ${bit}`;
      const region = fx.region.clone();
      flip(region, at, bit);
      const value = seqOf(region);
      const pool = Pool.open(region);
      // Harmless: a counter still at or above the newest record's, and exact.
      const harmful = value < newest || !Number.isSafeInteger(value);
      const report = pool.check();
      assert.equal(report.ok, !harmful, `${label}: ${report.problems.join('; ')}`);
      if (harmful) {
        const fixed = pool.check({ repair: true });
        assert.equal(fixed.ok, true, `${label}: ${fixed.problems.join('; ')}`);
        assert.ok(fixed.repaired.some((r) => /sequence number/.test(r)), `${label}: ${fixed.repaired.join('; ')}`);
        assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] }, label);
      }
      // New allocations come last, in the order they were made.
      const before = names(pool);
      pool.alloc(1, { name: 'next' });
      pool.alloc(1, { name: 'after' });
      assert.deepEqual(names(pool), [...before, 'next', 'after'], label);
      pool.close();
    }
  });

  test('every bit of an occupied index entry is reported and rebuilt', () => {
    const pool = Pool.open(fx.region.clone());
    const { parts } = poolInternals(pool);
    const entries = [
      ...[...parts.pfnIndex.entries()].map((e) => ['pfn index', pool.geometry.areas.pfnIndex.offset + e.position * 8] as const),
      ...[...parts.nameIndex.entries()].map((e) => ['name index', pool.geometry.areas.nameIndex.offset + e.position * 8] as const),
    ];
    pool.close();
    // Four live records, two of them named; one (the aligned run) away from its home slot.
    assert.deepEqual(entries.map(([what]) => what), ['pfn index', 'name index', 'name index']);
    for (const [what, at] of entries) flipAllReportedAndRepaired(`${what} entry at ${at}`, at, 8, false);
  });
});
