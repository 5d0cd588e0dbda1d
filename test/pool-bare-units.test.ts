/**
 * Bare units (src/pool/bare-units.ts, docs/abi.md "Bare units"): one-unit
 * allocations without a name or an owner, recorded by a bit of the bare-unit
 * map and nothing else. Their layout in the superblock and the metadata;
 * what every entry point makes of them; two releases of one from two opens,
 * through caches and through the pool lock; an owner that died at each step
 * of a bare allocation or release; an exception at each barrier; every
 * single-bit flip of the map, and every way a bit can contradict the rest,
 * named by check() and mended by repair without losing an allocation.
 * The crash simulation (test/pool-crash-sim-cached.test.ts) crashes them at
 * every store; test/pool-sigkill.test.ts kills processes that make them.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Pool, PoolError, computeGeometry } from '../src/pool/index.js';
import { MemoryRegion } from '../src/region/index.js';
import { poolInternals, type PoolParts } from '../src/pool/internals.js';
import { CACHE_BATCH, CACHE_ENTRIES, CACHE_ENTRY_LAYOUT, CACHE_MIN_RECORDS } from '../src/pool/caches.js';
import { BARE_UNITS_MAX_UNITS, INCOMPAT_BARE_UNITS, INCOMPAT_OPEN_CACHES, SUPERBLOCK_BACKUP_OFFSET, SUPERBLOCK_BYTES } from '../src/pool/layout.js';
import { crc32c } from '../src/util/crc32c.js';
import { expectError } from './support/expect.js';
import { withFailingBarrier } from './support/faults.js';

const MiB = 1024 * 1024;
const BARE_RELEASE = 4;

function barePool(): { region: MemoryRegion; pool: Pool } {
  const region = new MemoryRegion(MiB);
  return { region, pool: Pool.create(region, { size: MiB, maxAllocations: CACHE_MIN_RECORDS }) };
}

/** The open's cache entry (the one whose owner word is its run id), or -1. */
function entryOf(pool: Pool): number {
  const { parts } = poolInternals(pool);
  for (let e = 0; e < CACHE_ENTRIES; e++) if (parts.caches.owner(e) === parts.control.runId) return e;
  return -1;
}

/** The word of the bare-unit map that holds `unit`, and its byte offset in the metadata. */
function mapWord(parts: PoolParts, unit: number): { offset: number; value: number } {
  const offset = parts.geometry.bareUnits!.offset + 4 * (unit >>> 4);
  return { offset, value: parts.writer.u32[offset >>> 2]! };
}

/** Makes entry `e` read as a dead owner's, stopped inside an operation `op` on `unit` with its lock held. */
function dieInside(parts: PoolParts, e: number, op: number, unit: number): void {
  const base = parts.caches.base(e);
  parts.writer.store32(base + CACHE_ENTRY_LAYOUT.OWNER + 4, 0); // pid 0: no process
  parts.writer.store32(base + CACHE_ENTRY_LAYOUT.UNIT, unit);
  parts.writer.store32(base + CACHE_ENTRY_LAYOUT.OP, op);
  parts.writer.atomicStore(base + CACHE_ENTRY_LAYOUT.LOCK, parts.control.runId);
}

const CLEAN = { ok: true, problems: [], repaired: [] };

/** A bare release of a new allocation of the victim's, whose owner dies at `stage` of it. */
function releaseStopped(stage: 'before its bit' | 'past its bit' | 'on the list') {
  return (victim: Pool, parts: PoolParts, e: number): { unit: number; stands: boolean } => {
    const unit = victim.alloc(1).pfn;
    dieInside(parts, e, BARE_RELEASE, unit);
    if (stage === 'before its bit') return { unit, stands: true };
    assert.equal(parts.bare.clear(unit), true);
    if (stage === 'on the list') {
      const k = parts.caches.count(e);
      parts.caches.setUnit(e, k, unit);
      parts.caches.setCount(e, k + 1);
    }
    return { unit, stands: false };
  };
}

describe('bare units', () => {
  test('a one-unit allocation without a name or an owner is a bit, with no record; every entry point knows it', () => {
    const { pool } = barePool();
    try {
      const { parts } = poolInternals(pool);
      const named = pool.alloc(1, { name: 'state' });
      const owned = pool.alloc(1, { owner: 'kv' });
      const bare = pool.alloc(1);
      const zeroed = pool.alloc(1, { zero: true });
      for (const a of [bare, zeroed]) {
        assert.equal(parts.bare.has(a.pfn), true, 'its bit is set');
        assert.equal(parts.directory.state(a.pfn % parts.geometry.maxRecords), 0, 'its home record is free');
        assert.equal(parts.slots.isUsed(a.pfn % parts.geometry.maxRecords, 1), true, 'its home slot is held');
        assert.equal(parts.units.isUsed(a.pfn, 1), true);
      }
      for (const a of [named, owned]) assert.equal(parts.bare.has(a.pfn), false, 'a name or an owner needs a record');
      assert.ok(zeroed.bytes().every((b) => b === 0));
      assert.deepEqual(
        pool.allocations().map((a) => [a.pfn, a.count, a.name ?? null, a.owner ?? null]),
        [[named.pfn, 1, 'state', null], [owned.pfn, 1, null, 'kv'], [bare.pfn, 1, null, null], [zeroed.pfn, 1, null, null]],
        'the records by sequence number, then the bare units by pfn',
      );
      assert.deepEqual([pool.at(bare.pfn)?.pfn, pool.at(bare.pfn)?.count, pool.at(bare.pfn)?.owner], [bare.pfn, 1, undefined]);
      const s = pool.stats();
      assert.equal(s.allocations, 4);
      assert.deepEqual(s.byOwner[''], { allocations: 3, pages: 3 }, 'bare units count under no owner, as an untagged record does');
      assert.equal(pool.find('state')?.pfn, named.pfn);
      // A release under any owner, as of an untagged record; a wrong count is refused.
      expectError(() => pool.release(bare.pfn, 2), PoolError, 'NOT_ALLOCATED');
      pool.release(bare.pfn, 1, { owner: 'anyone' });
      expectError(() => pool.release(bare.pfn, 1), PoolError, 'NOT_ALLOCATED');
      assert.equal(parts.bare.has(bare.pfn), false);
      assert.equal(pool.at(bare.pfn), undefined);
      assert.deepEqual(pool.check(), CLEAN);
    } finally {
      pool.close();
    }
  });

  test('the layout: incompat bit 1, the map after the directory at 196/204 of the superblock, 2 bits a unit; which pools have none', () => {
    const { region, pool } = barePool();
    const g = pool.geometry;
    pool.close();
    const view = new DataView(region.buffer);
    assert.deepEqual([view.getUint16(8, true), view.getUint16(10, true)], [2, 2]);
    assert.equal(view.getUint32(16, true), INCOMPAT_OPEN_CACHES | INCOMPAT_BARE_UNITS);
    assert.ok(g.bareUnits !== null);
    assert.equal(g.bareUnits.offset, Math.ceil((g.areas.records.offset + g.areas.records.length) / 4096) * 4096, 'the next page after the directory');
    assert.equal(g.bareUnits.length, Math.ceil(g.unitCount / 16) * 4);
    assert.deepEqual([Number(view.getBigUint64(196, true)), Number(view.getBigUint64(204, true))], [g.bareUnits.offset, g.bareUnits.length]);
    assert.equal(g.metadataBytes, g.bareUnits.offset + g.bareUnits.length);
    // Without: asked for, a directory too small for the caches, or a pool past 2^28 units.
    const without = new MemoryRegion(MiB);
    Pool.create(without, { size: MiB, maxAllocations: CACHE_MIN_RECORDS, bareUnits: false }).close();
    assert.equal(new DataView(without.buffer).getUint32(16, true), INCOMPAT_OPEN_CACHES);
    assert.deepEqual([new DataView(without.buffer).getBigUint64(196, true), new DataView(without.buffer).getBigUint64(204, true)], [0n, 0n]);
    assert.equal(computeGeometry({ size: MiB, pageSize: 4096, orderPerBit: 0, maxRecords: CACHE_MIN_RECORDS - 1 }).bareUnits, null);
    const tib = computeGeometry({ size: BARE_UNITS_MAX_UNITS * 4096, pageSize: 4096, orderPerBit: 0 });
    assert.equal(tib.bareUnits?.length, 64 * MiB, 'a 1 TiB pool of 4 KiB pages: a 64 MiB map');
    assert.equal(computeGeometry({ size: 2 * BARE_UNITS_MAX_UNITS * 4096, pageSize: 4096, orderPerBit: 0 }).bareUnits, null);
    assert.ok(computeGeometry({ size: 2 * BARE_UNITS_MAX_UNITS * 4096, pageSize: 4096, orderPerBit: 1 }).bareUnits !== null, 'units, not pages, count');
    expectError(() => Pool.create(new MemoryRegion(MiB), { size: MiB, bareUnits: 1 as unknown as boolean }), PoolError, 'BAD_ARGUMENT');
    // The map's place is derived, never trusted: a superblock that moves it, or drops it, is refused.
    const bytes = new Uint8Array(region.buffer);
    for (const [what, edit] of [
      ['moved', (v: DataView) => v.setBigUint64(196, BigInt(g.bareUnits!.offset + 4096), true)],
      ['dropped', (v: DataView) => v.setUint32(16, INCOMPAT_OPEN_CACHES, true)],
    ] as const) {
      const saved = bytes.slice(0, 4096);
      for (const at of [0, SUPERBLOCK_BACKUP_OFFSET]) {
        const copy = bytes.subarray(at, at + SUPERBLOCK_BYTES);
        const v = new DataView(copy.buffer, copy.byteOffset, SUPERBLOCK_BYTES);
        edit(v);
        v.setUint32(252, crc32c(copy, 0, 252), true);
      }
      assert.match(expectError(() => Pool.open(region), PoolError, 'CORRUPT').message, /superblock layout fields disagree with its geometry/, what);
      bytes.set(saved, 0);
    }
    Pool.open(region).close();
  });

  test('two releases of one bare unit from two opens, through a cache and through the pool lock: one acts, the other is told', () => {
    const { region, pool } = barePool();
    // Eight opens take the eight cache entries; the ninth has none, and goes through the pool lock.
    const opens = [pool, ...Array.from({ length: CACHE_ENTRIES }, () => Pool.open(region))];
    try {
      const made = opens.slice(0, CACHE_ENTRIES).map((o) => o.alloc(1));
      const locked = opens[CACHE_ENTRIES]!;
      assert.equal(locked.alloc(1, { name: 'probe' }).count, 1);
      assert.equal(entryOf(locked), -1, 'the ninth open has no entry');
      // Released by another open's cache, then again: NOT_ALLOCATED, from either way.
      opens[1]!.release(made[0]!.pfn, 1);
      expectError(() => opens[0]!.release(made[0]!.pfn, 1), PoolError, 'NOT_ALLOCATED');
      expectError(() => locked.release(made[0]!.pfn, 1), PoolError, 'NOT_ALLOCATED');
      // Released through the pool lock (the ninth open), then again through a cache.
      locked.release(made[2]!.pfn, 1);
      assert.equal(poolInternals(pool).parts.units.isUsed(made[2]!.pfn, 1), false, 'freed in the bitmap, not cached');
      expectError(() => opens[2]!.release(made[2]!.pfn, 1), PoolError, 'NOT_ALLOCATED');
      expectError(() => locked.release(made[3]!.pfn, 2), PoolError, 'NOT_ALLOCATED');
      for (const i of [1, 3, 4, 5, 6, 7]) opens[(i + 3) % opens.length]!.release(made[i]!.pfn, 1);
      assert.deepEqual(pool.allocations().map((a) => a.name), ['probe']);
      assert.deepEqual(pool.check(), CLEAN);
    } finally {
      for (const o of opens) o.close();
    }
  });

  test('a release through the pool lock that finds the bitmap damaged: complete, the bitmaps rebuilt, and said so', () => {
    const { region, pool } = barePool();
    const opens = [pool, ...Array.from({ length: CACHE_ENTRIES }, () => Pool.open(region))];
    try {
      const made = opens.slice(0, CACHE_ENTRIES).map((o) => o.alloc(1));
      const locked = opens[CACHE_ENTRIES]!;
      locked.alloc(1, { name: 'probe' }); // no entry left for it
      const { parts } = poolInternals(pool);
      parts.units.markFree(made[0]!.pfn, 1); // damage: the bare unit's bit in the unit bitmap lost
      const e = expectError(() => locked.release(made[0]!.pfn, 1), PoolError, 'CORRUPT');
      assert.match(e.message, /the release is complete: its bit is cleared and the bitmaps were rebuilt from the directory/);
      assert.equal(parts.bare.has(made[0]!.pfn), false);
      assert.deepEqual(pool.check(), CLEAN);
      for (let i = 1; i < made.length; i++) locked.release(made[i]!.pfn, 1);
      assert.deepEqual(pool.allocations().map((a) => a.name), ['probe']);
    } finally {
      for (const o of opens) o.close();
    }
  });

  test('an open that died at each step of a bare allocation or release: the next open settles it, and the pool checks clean', () => {
    type Step = { what: string; set: (victim: Pool, parts: PoolParts, e: number) => { unit: number; stands: boolean } };
    const steps: Step[] = [
      {
        what: 'an allocation before its bit: the unit goes back',
        set: (victim, parts, e) => {
          const k = parts.caches.count(e);
          const unit = parts.caches.unit(e, k - 1);
          dieInside(parts, e, 1, unit);
          parts.caches.setCount(e, k - 1);
          return { unit, stands: false };
        },
      },
      {
        what: 'an allocation past its bit: it stands',
        set: (victim, parts, e) => {
          const k = parts.caches.count(e);
          const unit = parts.caches.unit(e, k - 1);
          dieInside(parts, e, 1, unit);
          parts.caches.setCount(e, k - 1);
          parts.bare.set(unit);
          return { unit, stands: true };
        },
      },
      { what: 'a release before its bit is cleared: the allocation stands', set: releaseStopped('before its bit') },
      { what: 'a release past its bit, before the list took the unit: the unit is no one\'s, and goes back', set: releaseStopped('past its bit') },
      { what: 'a release past its bit and onto the list: finished', set: releaseStopped('on the list') },
    ];
    for (const step of steps) {
      for (const during of ['open', 'lock'] as const) {
        const { region, pool: creator } = barePool();
        creator.close();
        const victim = Pool.open(region);
        const { parts } = poolInternals(victim);
        victim.alloc(1).bytes().fill(7); // claims an entry and fills it; an allocation that must come through untouched
        const e = entryOf(victim);
        const { unit, stands } = step.set(victim, parts, e);
        // Settled by the next open (it looks at every entry), or by an operation of a live open that takes every entry's lock.
        const next = during === 'open' ? Pool.open(region) : victim;
        try {
          if (during === 'open') assert.ok(next.recovered.includes(`dissolved cache entry ${e}: its open died in a cached operation`), `${step.what}: ${next.recovered.join('\n')}`);
          else next.stats();
          const listed = next.allocations().map((a) => a.pfn);
          assert.equal(listed.includes(unit), stands, `${step.what} (${during})`);
          assert.equal(listed.length, stands ? 2 : 1, `${step.what} (${during}): the other allocation stands, untouched`);
          assert.ok(next.allocations().every((a) => a.pfn === unit || a.bytes()[0] === 7));
          assert.deepEqual(next.check(), CLEAN, `${step.what} (${during})`);
          // Every page accounted for: all released, the pool is as new.
          for (const pfn of listed) next.release(pfn, 1);
          assert.equal(next.stats().free, next.stats().pages - next.stats().metadata - next.stats().tail, `${step.what} (${during}): no page leaked`);
        } finally {
          next.close();
          if (next !== victim) victim.close();
        }
      }
    }
  });

  test('an allocation a dead owner made, released since by another open it was handed to: dissolving the owner frees it no second time', () => {
    // The owner died between its allocation's bit (or commit) and the end of its intent; the pfn
    // reached another open before the entry was dissolved, which released it onto its own list.
    for (const owner of [undefined, 'kv']) {
      const { region, pool: creator } = barePool();
      creator.close();
      const victim = Pool.open(region);
      const other = Pool.open(region);
      try {
        const { parts } = poolInternals(victim);
        const options = owner === undefined ? undefined : { owner };
        const unit = victim.alloc(1, options).pfn;
        dieInside(parts, entryOf(victim), 1, unit);
        other.alloc(1); // the other open claims an entry
        other.release(unit, 1, options); // onto its list
        const op = poolInternals(other).parts;
        assert.ok(op.caches.units(entryOf(other)).includes(unit));
        const third = Pool.open(region); // dissolves the victim's entry
        try {
          assert.ok(third.recovered.some((line) => line.startsWith('dissolved cache entry')), third.recovered.join('\n'));
          assert.equal(op.units.isUsed(unit, 1), true, `${owner ?? 'bare'}: still the other open's cached unit`);
          assert.deepEqual(third.check(), CLEAN, owner ?? 'bare');
        } finally {
          third.close();
        }
      } finally {
        other.close();
        victim.close();
      }
    }
  });

  test('a release that died past its bit, when another open\'s release got there first: the unit is that open\'s, not freed twice', () => {
    const { region, pool: creator } = barePool();
    creator.close();
    const victim = Pool.open(region);
    const winner = Pool.open(region);
    try {
      const { parts } = poolInternals(victim);
      const unit = victim.alloc(1).pfn;
      winner.alloc(1); // the winner claims an entry
      winner.release(unit, 1); // onto the winner's cache
      dieInside(parts, entryOf(victim), BARE_RELEASE, unit); // the victim's release found the bit clear, and died
      const third = Pool.open(region);
      try {
        assert.ok(third.recovered.some((line) => line.startsWith('dissolved cache entry')), third.recovered.join('\n'));
        const wp = poolInternals(winner).parts;
        const listedByWinner = wp.caches.units(entryOf(winner));
        assert.ok(listedByWinner.includes(unit), 'still on the winner\'s list');
        assert.equal(wp.units.isUsed(unit, 1), true, 'marked used, as a cached unit is');
        assert.deepEqual(third.check(), CLEAN);
        // The winner's next allocation may take it: it is the winner's to hand out, and no one else's.
        const again = [winner.alloc(1), third.alloc(1)];
        assert.equal(new Set(again.map((a) => a.pfn)).size, 2);
        assert.deepEqual(third.check(), CLEAN);
      } finally {
        third.close();
      }
    } finally {
      winner.close();
      victim.close();
    }
  });

  test('a bare allocation or release stopped by an exception (a store that failed) is settled at the open\'s next operation', () => {
    for (const failAt of [1, 2, 3, 4]) {
      for (const op of ['alloc', 'release'] as const) {
        const { pool } = barePool();
        try {
          const held = pool.alloc(1);
          let threw = false;
          withFailingBarrier(pool, failAt, () => {
            try {
              if (op === 'alloc') pool.alloc(1);
              else pool.release(held.pfn, held.count);
            } catch (e) {
              assert.match(String(e), /EIO \(injected\)/);
              threw = true;
            }
          });
          assert.ok(threw || failAt > 3, `${op}, barrier ${failAt}: an operation of at most 3 barriers may finish`);
          const listed = pool.allocations().map((a) => a.pfn);
          if (op === 'release' && listed.includes(held.pfn)) pool.release(held.pfn, held.count);
          if (op === 'release') expectError(() => pool.release(held.pfn, held.count), PoolError, 'NOT_ALLOCATED');
          const after = pool.alloc(1);
          assert.deepEqual(pool.check(), CLEAN, `${op}, barrier ${failAt}`);
          const now = pool.allocations().map((a) => a.pfn);
          assert.ok(now.includes(after.pfn));
          for (const pfn of now) pool.release(pfn, 1);
          assert.deepEqual(pool.check(), CLEAN);
          assert.equal(pool.stats().allocations, 0);
        } finally {
          pool.close();
        }
      }
    }
  });

  test('every single-bit flip of a word of the map is named by check(); repair keeps every allocation', () => {
    const { pool } = barePool();
    try {
      const { parts } = poolInternals(pool);
      const kept = pool.alloc(1);
      kept.bytes().fill(9);
      const { offset, value } = mapWord(parts, kept.pfn);
      assert.equal(value, 0x10001 << (kept.pfn & 15) >>> 0, 'its bit, twice');
      for (let bit = 0; bit < 32; bit++) {
        parts.writer.store32(offset, (value ^ (1 << bit)) >>> 0);
        const report = pool.check();
        assert.ok(report.problems.some((p) => p.startsWith(`word ${kept.pfn >>> 4} of the bare-unit map is damaged: its halves differ`)), `bit ${bit}: ${report.problems.join('\n')}`);
        const repaired = pool.check({ repair: true });
        assert.deepEqual(repaired.problems, [], `bit ${bit}`);
        // The union of the halves is kept where it can be: a unit that may be someone's stays
        // allocated (the flipped bit was the allocation's own, or set another unit's, which is held
        // now and given back below); a stray unit that cannot be bare (here, in the metadata) is cleared.
        const stray = (bit & 15) + (kept.pfn & ~15);
        const mended = stray === kept.pfn || stray >= parts.geometry.reservedUnits ? 'made word' : `cleared bare unit ${stray}: it lies in the metadata`;
        assert.ok(repaired.repaired.some((line) => line.startsWith(mended)), `bit ${bit}: ${repaired.repaired.join('\n')}`);
        assert.equal(parts.bare.has(kept.pfn), true, `bit ${bit}: the allocation stands`);
        assert.equal(pool.at(kept.pfn)!.bytes()[0], 9);
        if (stray !== kept.pfn && parts.bare.has(stray)) pool.release(stray, 1);
        assert.deepEqual(pool.check(), CLEAN, `bit ${bit}`);
        assert.deepEqual(pool.allocations().map((a) => a.pfn), [kept.pfn], `bit ${bit}`);
      }
    } finally {
      pool.close();
    }
  });

  test('a bit that contradicts the rest is named by check(), and repair clears it: the record, the metadata and the first holder of a home slot win', () => {
    const cases: [string, (pool: Pool, parts: PoolParts) => number, RegExp][] = [
      ['over a record\'s pages', (pool) => pool.alloc(3, { name: 'run' }).pfn + 1, /bare unit \d+: a record holds its pages/],
      ['in the metadata', () => 0, /bare unit 0: it lies in the metadata/],
      ['over a home record that is not free', (pool, parts) => {
        const r = pool.alloc(2, { owner: 'kv' });
        assert.equal(parts.directory.state(r.pfn % parts.geometry.maxRecords) !== 0, true, 'the record is in its home slot');
        return findUnitWithHome(parts, r.pfn % parts.geometry.maxRecords, r.pfn);
      }, /its home record \d+ is not free/],
      ['sharing a home slot with another bare unit', (pool, parts) => {
        const a = pool.alloc(1);
        return findUnitWithHome(parts, a.pfn % parts.geometry.maxRecords, a.pfn);
      }, /its home slot \d+ is another bare unit's/],
    ];
    for (const [what, place, expected] of cases) {
      // Twice as many units as records: units 2,048 apart share a home slot.
      const region = new MemoryRegion(16 * MiB);
      const pool = Pool.create(region, { size: 16 * MiB, maxAllocations: CACHE_MIN_RECORDS });
      try {
        const { parts } = poolInternals(pool);
        const unit = place(pool, parts);
        assert.ok(unit >= 0, `${what}: a unit to damage`);
        const before = pool.allocations().map((a) => [a.pfn, a.count, a.name ?? null]);
        parts.bare.set(unit);
        const report = pool.check();
        assert.ok(report.problems.some((p) => expected.test(p)), `${what}: ${report.problems.join('\n')}`);
        const repaired = pool.check({ repair: true });
        assert.deepEqual(repaired.problems, [], what);
        assert.ok(repaired.repaired.some((line) => line.startsWith(`cleared bare unit ${unit}`)), `${what}: ${repaired.repaired.join('\n')}`);
        assert.equal(parts.bare.has(unit), false);
        assert.deepEqual(pool.allocations().map((a) => [a.pfn, a.count, a.name ?? null]), before, `${what}: every allocation as before`);
        assert.deepEqual(pool.check(), CLEAN, what);
      } finally {
        pool.close();
      }
    }
  });

  test('a map on a pool that does not use it is damage: named, and zeroed by repair', () => {
    // A directory too small for the caches, with incompat bit 1 forced: the map is laid out, and unused.
    const region = new MemoryRegion(MiB);
    const g = computeGeometry({ size: MiB, pageSize: 4096, orderPerBit: 0, maxRecords: 256, bareUnits: true });
    assert.ok(g.bareUnits !== null);
    const made = Pool.create(region, { size: MiB, maxAllocations: 256 });
    assert.equal(made.geometry.bareUnits, null, 'create gives a small directory none');
    made.close();
    const pool = Pool.create(new MemoryRegion(4 * MiB), { size: 4 * MiB, maxAllocations: CACHE_MIN_RECORDS });
    try {
      const { parts } = poolInternals(pool);
      const first = pool.alloc(1);
      // Past the pool's last unit, in the map's last word.
      const last = parts.geometry.unitCount;
      if (last % 16 !== 0) {
        parts.writer.store32(mapWord(parts, last).offset, (0x10001 << (last & 15)) >>> 0 | mapWord(parts, last).value);
        assert.match(pool.check().problems.join('\n'), new RegExp(`bare unit ${last}: it is past the pool's ${last} units`));
        assert.equal(pool.check({ repair: true }).ok, true);
      }
      assert.equal(parts.bare.has(first.pfn), true);
      assert.deepEqual(pool.check(), CLEAN);
    } finally {
      pool.close();
    }
  });

  test('cached bare units count as free; close gives them back; a full pool takes every cache back before NO_SPACE', () => {
    const { region, pool } = barePool();
    const other = Pool.open(region);
    try {
      const before = pool.stats();
      const a = pool.alloc(1);
      assert.equal(pool.stats().cached, CACHE_BATCH - 1);
      assert.equal(pool.stats().free, before.free - 1);
      other.alloc(1);
      const singles: number[] = [];
      for (;;) {
        try {
          singles.push(pool.alloc(1).pfn);
        } catch (e) {
          if (!(e instanceof PoolError) || e.code !== 'NO_SPACE') throw e;
          break;
        }
      }
      const s = pool.stats();
      assert.deepEqual([s.free, s.cached], [0, 0], 'every page allocated, bare: the other open\'s cache came back');
      assert.equal(s.allocations, singles.length + 2);
      assert.equal(s.byOwner['']!.allocations, singles.length + 2);
      for (const pfn of singles) other.release(pfn, 1);
      pool.release(a.pfn, 1);
      assert.deepEqual(pool.check(), CLEAN);
    } finally {
      other.close();
      pool.close();
    }
  });
});

/** A unit other than `except`, allocatable, whose home slot is `slot` (a unit modulo the directory). */
function findUnitWithHome(parts: PoolParts, slot: number, except: number): number {
  const g = parts.geometry;
  for (let unit = slot; unit < g.unitCount; unit += g.maxRecords) {
    if (unit !== except && unit >= g.reservedUnits && parts.units.isFree(unit, 1)) return unit;
  }
  return -1;
}

describe('bare units: a dead release whose unit moved on', () => {
  test('a release that died past a bit another open cleared first does not free the unit from inside a run allocated since', () => {
    const region = new MemoryRegion(4 * MiB);
    const maker = Pool.create(region, { size: 4 * MiB, maxAllocations: CACHE_MIN_RECORDS });
    const victim = Pool.open(region);
    const winner = Pool.open(region);
    const other = Pool.open(region); // allocates nothing before the run: its search starts at the pool's start
    try {
      // The maker's first two bare units are the pool's first two free units; the second is the one raced for.
      const first = maker.alloc(1).pfn;
      const unit = maker.alloc(1).pfn;
      assert.equal(unit, first + 1);
      maker.release(first, 1);
      for (const o of [victim, winner]) o.alloc(1); // each claims an entry, and a batch past the maker's
      winner.release(unit, 1); // onto the winner's list
      // The victim's release of the same unit found its bit clear, and died before it said so.
      dieInside(poolInternals(victim).parts, entryOf(victim), BARE_RELEASE, unit);
      // The maker's and the winner's lists go back to the bitmap, and a run is made over both units.
      maker.close();
      winner.close();
      const run = other.alloc(2, { name: 'run' });
      assert.equal(run.pfn, first, 'the run starts at the unit before the one raced for, and holds it');
      run.bytes().fill(5);
      other.stats(); // takes every entry's lock: the victim's entry is dissolved
      const { parts } = poolInternals(other);
      assert.equal(parts.units.isUsed(unit, 1), true, 'the run\'s second unit stays allocated');
      assert.deepEqual(other.check(), CLEAN);
    } finally {
      for (const o of [other, winner, victim, maker]) o.close();
    }
  });
});

describe('bare units: repair of a damaged word', () => {
  test('a bit flipped on in one half, for a unit whose home slot a sound bare unit holds: the sound one stays, the stray one goes', () => {
    // Twice as many units as records: units 2,048 apart share a home slot.
    const region = new MemoryRegion(16 * MiB);
    const pool = Pool.create(region, { size: 16 * MiB, maxAllocations: CACHE_MIN_RECORDS });
    try {
      const { parts } = poolInternals(pool);
      const g = parts.geometry;
      // A bare unit past the first 2,048 units, whose home slot a unit below it shares.
      const big = pool.alloc(CACHE_MIN_RECORDS + 64, { name: 'big' });
      const kept = pool.alloc(1);
      kept.bytes().fill(3);
      pool.release(big.pfn, big.count);
      const stray = kept.pfn - g.maxRecords;
      assert.ok(stray >= g.reservedUnits && parts.units.isFree(stray, 1), 'a free unit below it, with the same home slot');
      // One bit flipped: the stray unit's, in the low half of its word (a sound word before).
      const { offset, value } = mapWord(parts, stray);
      assert.equal(value, 0);
      parts.writer.store32(offset, 1 << (stray & 15));
      assert.ok(pool.check().problems.some((p) => p.startsWith(`word ${stray >>> 4} of the bare-unit map is damaged`)));
      const repaired = pool.check({ repair: true });
      assert.deepEqual(repaired.problems, []);
      assert.equal(parts.bare.has(kept.pfn), true, `the allocation stands: ${repaired.repaired.join('\n')}`);
      assert.equal(parts.bare.has(stray), false);
      assert.ok(repaired.repaired.some((line) => line.startsWith(`cleared bare unit ${stray}: its home slot`)), repaired.repaired.join('\n'));
      assert.deepEqual(pool.allocations().map((a) => a.pfn), [kept.pfn]);
      assert.equal(pool.at(kept.pfn)!.bytes()[0], 3);
      assert.deepEqual(pool.check(), CLEAN);
    } finally {
      pool.close();
    }
  });
});

describe('bare units: repair next to a damaged record', () => {
  test('a bit flipped in the state word of a bare unit\'s free home record: repair keeps the allocation, and the damaged record', () => {
    const { region, pool } = barePool();
    const opens: Pool[] = [];
    try {
      const { parts } = poolInternals(pool);
      const g = parts.geometry;
      const kept = pool.alloc(1);
      kept.bytes().fill(4);
      const home = kept.pfn % g.maxRecords;
      assert.equal(parts.directory.isFree(home), true);
      // One bit of the free record's state word: the record reads as corrupt, and stays so.
      parts.writer.store32(parts.directory.offsetOf(home), 1 << 9);
      const corruptLine = `record ${home} is corrupt (checksum or state word; at metadata offset ${parts.directory.offsetOf(home)}, 128 bytes)`;
      assert.ok(pool.check().problems.includes(corruptLine));
      const repaired = pool.check({ repair: true });
      assert.equal(parts.bare.has(kept.pfn), true, `the allocation stands: ${repaired.repaired.join('\n')}`);
      assert.deepEqual(repaired.problems, [corruptLine], 'only the damaged record, which repair never rewrites');
      assert.deepEqual(pool.allocations().map((a) => a.pfn), [kept.pfn]);
      assert.equal(pool.at(kept.pfn)!.bytes()[0], 4);
      // Its unit is no one else's: every other unit is handed out before NO_SPACE, and never it.
      const others: number[] = [];
      for (;;) {
        try {
          others.push(pool.alloc(1, { name: `n${others.length}` }).pfn);
        } catch (e) {
          if (!(e instanceof PoolError) || e.code !== 'NO_SPACE' && e.code !== 'NO_RECORDS') throw e;
          break;
        }
      }
      assert.ok(others.length > 0 && !others.includes(kept.pfn));
      for (const pfn of others) pool.release(pfn, 1);
      // Released (here through the pool lock: the open gave its cache entry back, and eight other
      // opens hold them all), the unit goes back; the damaged record's slot stays out of reuse.
      pool.quiesce();
      pool.resume();
      for (let i = 0; i < CACHE_ENTRIES; i++) {
        const o = Pool.open(region);
        opens.push(o);
        o.release(o.alloc(1).pfn, 1);
      }
      pool.release(kept.pfn, 1);
      assert.equal(entryOf(pool), -1, 'released without a cache');
      assert.equal(parts.units.isUsed(kept.pfn, 1), false, 'freed in the bitmap, not cached');
      assert.equal(parts.slots.isUsed(home, 1), true, 'the damaged record holds its slot');
      assert.deepEqual(pool.check().problems, [corruptLine]);
      assert.deepEqual(pool.allocations(), []);
    } finally {
      for (const o of opens) o.close();
      pool.close();
    }
  });
});

describe('bare units: two releases of one unit, and its next allocation', () => {
  test('the release whose atomic AND found the bit clear is refused, even when the unit has been allocated again since', () => {
    const { region, pool: winner } = barePool();
    const loser = Pool.open(region);
    try {
      const unit = winner.alloc(1).pfn;
      loser.alloc(1); // the loser claims an entry: its release goes through its cache
      const { parts } = poolInternals(loser);
      // Between the loser's look at the bit and its AND, the winner releases the unit; right after
      // the AND, the winner allocates again: its list's top is the unit it just released.
      const writer = parts.writer as unknown as { atomicAnd: (offset: number, bits: number) => number };
      const atomicAnd = writer.atomicAnd;
      let again = -1;
      writer.atomicAnd = function (this: unknown, offset: number, bits: number) {
        writer.atomicAnd = atomicAnd;
        winner.release(unit, 1);
        const seen = atomicAnd.call(this, offset, bits);
        again = winner.alloc(1).pfn;
        return seen;
      };
      expectError(() => loser.release(unit, 1), PoolError, 'NOT_ALLOCATED');
      assert.equal(again, unit, 'the unit was allocated again');
      assert.equal(parts.bare.has(unit), true, 'the new allocation stands');
      assert.ok(loser.allocations().some((a) => a.pfn === unit));
      assert.deepEqual(loser.check(), CLEAN);
    } finally {
      loser.close();
      winner.close();
    }
  });
});

describe('bare units: the superblock copies', () => {
  test('a valid superblock copy that gives the pool a bare-unit map it has not is another layout: repair does not take it', () => {
    const region = new MemoryRegion(4 * MiB);
    const pool = Pool.create(region, { size: 4 * MiB, maxAllocations: CACHE_MIN_RECORDS, bareUnits: false });
    let reopened: Pool | null = null;
    try {
      const g = pool.geometry;
      const withMap = computeGeometry({ size: 4 * MiB, pageSize: 4096, orderPerBit: 0, maxRecords: CACHE_MIN_RECORDS, bareUnits: true });
      const data = pool.alloc(4, { name: 'data' });
      data.bytes().fill(0xff);
      // Where a map would lie, this pool keeps its data.
      assert.ok(withMap.bareUnits!.offset >= g.metadataBytes && withMap.bareUnits!.offset < (data.pfn + data.count) * 4096);
      // The backup says the pool has a map: valid on its own (its checksum, its fields agree), and not this pool's layout.
      const bytes = new Uint8Array(region.buffer);
      const copy = bytes.subarray(SUPERBLOCK_BACKUP_OFFSET, SUPERBLOCK_BACKUP_OFFSET + SUPERBLOCK_BYTES);
      const v = new DataView(copy.buffer, copy.byteOffset, SUPERBLOCK_BYTES);
      v.setUint32(16, INCOMPAT_OPEN_CACHES | INCOMPAT_BARE_UNITS, true);
      v.setBigUint64(196, BigInt(withMap.bareUnits!.offset), true);
      v.setBigUint64(204, BigInt(withMap.bareUnits!.length), true);
      v.setBigUint64(64, BigInt(withMap.metadataPages), true);
      v.setUint32(252, crc32c(copy, 0, 252), true);
      const primary = bytes.slice(0, SUPERBLOCK_BYTES);
      assert.deepEqual(pool.check({ repair: true }).problems, []);
      assert.deepEqual(bytes.slice(0, SUPERBLOCK_BYTES), primary, 'the primary, this pool\'s own, is kept');
      assert.deepEqual(bytes.slice(SUPERBLOCK_BACKUP_OFFSET, SUPERBLOCK_BACKUP_OFFSET + SUPERBLOCK_BYTES), primary, 'and copied over the backup');
      pool.close();
      reopened = Pool.open(region);
      assert.equal(reopened.usesBareUnits, false);
      assert.deepEqual(reopened.allocations().map((a) => [a.name, a.count]), [['data', 4]]);
      assert.ok(reopened.find('data')!.bytes().every((b) => b === 0xff));
      assert.deepEqual(reopened.check(), CLEAN);
    } finally {
      reopened?.close();
      pool.close();
    }
  });
});
