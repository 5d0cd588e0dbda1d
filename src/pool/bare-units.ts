/**
 * Bare units: one-unit allocations without a name or an owner, recorded by a
 * bit and nothing else — the kernel RFC's pmpool, whose only record of an
 * allocation is its bitmap bit, for the allocations that need no more.
 *
 * A record costs a one-unit allocation and its release a 128-byte write,
 * a checksum, a claim and a wipe of a line that a release elsewhere in the
 * pool finds in no cache. Most of the time of a pair of them went there. A
 * bare unit is made and released through the opens' caches (caches.ts): its
 * allocation sets its bit, its release clears it, each one atomic
 * read-modify-write of a u32 of the bare-unit map, which is small enough to
 * stay in cache (2 bits a unit: 64 KiB for a 1 GiB pool of 4 KiB pages).
 *
 * Word `i` of the map holds units 16 i to 16 i + 15: bit j of its low half
 * is unit 16 i + j, and bit j of its high half is the same bit again. Every
 * change sets or clears both at once, so the halves of a sound word are
 * equal, and a single flipped bit anywhere shows as halves that differ
 * (check() names it; repair keeps the union: a unit that may be someone's
 * stays allocated).
 *
 * A bare unit is the map's truth, as a record is the directory's: it is
 * marked used in the unit bitmap, and holds its home slot (the slot bitmap
 * marks it, the record stays free), as a cached unit does — it came off a
 * list, and goes back onto one. Only a unit on a list becomes bare, and
 * only a cache or the pool lock's holder clears one; both do it with one
 * atomic AND, whose old value says which of two releases of the same unit
 * did it. The layout is in docs/abi.md ("Bare units").
 */
import { BARE_UNITS_PER_WORD, homeSlotOfUnit } from './layout.js';
import type { MetaWriter } from './meta-writer.js';
import type { PoolParts } from './parts.js';

/** Both copies of unit bit j of a word. */
function maskOf(unit: number): number {
  return 0x10001 << (unit & 15);
}

export class BareUnits {
  private readonly word0: number;
  /** Words in the map (0 when the pool has none). */
  readonly words: number;

  constructor(
    private readonly w: MetaWriter,
    offset: number,
    readonly unitCount: number,
    /** False when the pool has no map (a pool made before 2.2, or too big) or does not use caches: every allocation has a record. */
    readonly enabled: boolean,
    /** Whether the pool has a map at all (its words, even unused, are checked to be zero). */
    present: boolean,
  ) {
    this.word0 = offset >>> 2;
    this.words = present ? Math.ceil(unitCount / BARE_UNITS_PER_WORD) : 0;
  }

  /** Unit `unit` is a bare allocation (its low-half bit; check() compares the halves). Only where `enabled`: without a map, the word read is not one. */
  has(unit: number): boolean {
    return (this.w.u32[this.word0 + (unit >>> 4)]! & (1 << (unit & 15))) !== 0;
  }

  /** Makes `unit` a bare allocation: both bits set in one atomic store. */
  set(unit: number): void {
    this.w.atomicOr((this.word0 + (unit >>> 4)) << 2, maskOf(unit));
  }

  /**
   * Clears `unit`'s bits in one atomic store; true when this call released it (its bit was set),
   * false when it was not a bare allocation, or another release got there first.
   */
  clear(unit: number): boolean {
    return (this.w.atomicAnd((this.word0 + (unit >>> 4)) << 2, ~maskOf(unit)) & (1 << (unit & 15))) !== 0;
  }

  /** Word `i` as stored. */
  word(i: number): number {
    return this.w.u32[this.word0 + i]!;
  }

  /** Stores word `i` whole (recovery and repair, with every cache entry's lock held). */
  setWord(i: number, value: number): void {
    this.w.store32((this.word0 + i) << 2, value);
  }

  /** The bare allocations, in unit order (low halves: what allocations see). */
  units(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.words; i++) pushUnits(out, i, this.word(i) & 0xffff);
    return out;
  }

  /** How many bare allocations there are. */
  count(): number {
    let n = 0;
    for (let i = 0; i < this.words; i++) n += popcount16(this.word(i) & 0xffff);
    return n;
  }
}

function popcount16(x: number): number {
  x -= (x >>> 1) & 0x5555;
  x = (x & 0x3333) + ((x >>> 2) & 0x3333);
  x = (x + (x >>> 4)) & 0x0f0f;
  return (x + (x >>> 8)) & 0x1f;
}

/** Appends to `out` the units of word `i` whose bits are set in the 16-bit `mask`, in unit order. */
function pushUnits(out: number[], i: number, mask: number): void {
  for (let bits = mask; bits !== 0; bits &= bits - 1) out.push(i * BARE_UNITS_PER_WORD + (31 - Math.clz32(bits & -bits)));
}

/** Units set in either half of `word`, as a 16-bit mask: those that may be someone's. */
export function eitherHalf(word: number): number {
  return (word | (word >>> 16)) & 0xffff;
}

/**
 * Why `unit` cannot be a bare allocation, given the units marked so far (the metadata's, the
 * honoured records') and the home slots taken so far; null when it can.
 */
export function bareUnitProblem(
  p: PoolParts,
  unit: number,
  units: { isFree(start: number, count: number): boolean },
  slotTaken: (slot: number) => boolean,
): string | null {
  const g = p.geometry;
  if (unit < g.reservedUnits) return 'it lies in the metadata';
  if (unit >= g.unitCount) return `it is past the pool's ${g.unitCount} units`;
  if (!units.isFree(unit, 1)) return 'a record holds its pages';
  const slot = homeSlotOfUnit(g, unit);
  // An intact record there contradicts the bit (the record has a checksum, the bit has none), and
  // so does one claimed by a release that stopped (recovery settles the claim first). A damaged
  // one does not: a bit flipped in a free record's state word must not cost a bare unit its
  // allocation. That record is kept as it is, and holds the slot with the bare unit.
  const d = p.directory;
  if (!d.isFree(slot) && (d.status(slot) === 'live' || d.claimedBy(slot) >= 0)) return `its home record ${slot} is not free`;
  if (slotTaken(slot)) return `its home slot ${slot} is another bare unit's`;
  return null;
}

/**
 * The units set in either half of the map, in the order recovery and check() take them: those set
 * in both halves first, then those set in one. Two units that contend for one home slot cannot
 * both be bare, and the first taken stays. A bit in one half only is a word's damage, as likely a
 * bit flipped on as one flipped off; one set twice was written by an allocation. Taken in unit
 * order instead, a single bit flipped on below a bare unit that shares its home slot would cost
 * that allocation its unit, and hand it out again.
 */
export function bareCandidates(b: BareUnits): number[] {
  const sound: number[] = [];
  const halves: number[] = [];
  for (let i = 0; i < b.words; i++) {
    const word = b.word(i);
    if (word === 0) continue;
    const both = word & (word >>> 16) & 0xffff;
    pushUnits(sound, i, both);
    pushUnits(halves, i, eitherHalf(word) & ~both);
  }
  return sound.length === 0 ? halves : halves.length === 0 ? sound : sound.concat(halves);
}

/**
 * Recovery's part (rebuildDerived, every cache entry's lock held, after the honoured records have
 * marked their units and slots, before the damaged records' extents and the lists): each bare
 * unit that can be one is marked used with its home slot (bareCandidates' order); one that cannot
 * is cleared, and a word whose halves differ is made whole with the union of its halves. Returns
 * a line per change.
 */
export function rebuildBareUnits(p: PoolParts): string[] {
  const changes: string[] = [];
  const b = p.bare;
  if (!b.enabled) {
    for (let i = 0; i < b.words; i++) {
      if (b.word(i) === 0) continue;
      b.setWord(i, 0);
      changes.push(`zeroed word ${i} of the bare-unit map: this pool ${p.caches.enabled ? 'has no bare units' : 'does not use caches'}`);
    }
    return changes;
  }
  // The units kept, by word (only words that hold any: the map of a large pool is mostly zero).
  const kept = new Map<number, number>();
  // The home slots of the units kept so far (the slot bitmap also marks the damaged records' slots).
  const homes = new Set<number>();
  for (const unit of bareCandidates(b)) {
    const why = bareUnitProblem(p, unit, p.units, (slot) => homes.has(slot));
    if (why !== null) {
      changes.push(`cleared bare unit ${unit}: ${why}`);
      continue;
    }
    const i = unit >>> 4;
    kept.set(i, (kept.get(i) ?? 0) | (1 << (unit & 15)));
    const home = homeSlotOfUnit(p.geometry, unit);
    homes.add(home);
    p.units.markUsed(unit, 1);
    if (p.slots.isFree(home, 1)) p.slots.markUsed(home, 1);
  }
  for (let i = 0; i < b.words; i++) {
    const stored = b.word(i);
    if (stored === 0) continue;
    const keep = kept.get(i) ?? 0;
    const word = (keep | (keep << 16)) >>> 0;
    if (word === stored) continue;
    b.setWord(i, word);
    const halves = (stored & 0xffff) ^ (stored >>> 16);
    if ((halves & keep) !== 0) changes.push(`made word ${i} of the bare-unit map whole (its halves differed): units ${unitList(i, halves & keep)} kept allocated`);
  }
  return changes;
}

/** The units of word `i` whose bits are set in `mask`, as text. */
export function unitList(i: number, mask: number): string {
  const out: number[] = [];
  pushUnits(out, i, mask);
  return out.join(', ');
}
