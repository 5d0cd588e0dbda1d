/**
 * The contiguous unit allocator: a leaf bitmap (set = used) plus two
 * hierarchical summaries, all of it u32 words in a WordStore. It knows bits,
 * not files; the pool maps pages to units and stores the words in its region.
 *
 * The two summary trees (see geometry.ts for where they lie):
 *   full  level 0 bit w set  <=> leaf word w has no free unit
 *   part  level 0 bit w set  <=> leaf word w has a used unit (is not entirely free)
 *   both  level k+1 bit j set <=> level-k word j is all ones
 * Bits past the meaningful ones in the last word of a level ("padding") are
 * kept set, and so are the leaf bits past unitCount ("tail"): they read as
 * "used, nothing here" and need no bounds checks in the searches.
 *
 * A search for a zero bit in a tree finds, in O(levels), the next leaf word
 * with a free unit (full tree) or the next entirely free word (part tree) —
 * the same climb-then-descend as a radix tree's tagged lookup.
 *
 * Crash safety: the leaf bitmap is the truth; summaries and the used-unit
 * counter are derived and are written after the leaf words they describe.
 * A crash between any two stores leaves state that rebuildSummaries()
 * repairs. Searches may be misled by stale summaries (they then miss a run
 * or propose a used one), but markUsed/markFree check their precondition on
 * the leaf words themselves, so a stale summary can never double-allocate.
 */
import {
  FULL_WORD,
  WORD_SHIFT,
  alignUp,
  alignedPositions,
  ctz32,
  isPowerOfTwo,
  runStarts,
} from './bits.js';
import { allocatorGeometry, HEADER_USED_UNITS, type AllocatorGeometry } from './geometry.js';
import { checkState, formatState, rebuildState } from './summary-check.js';
import type { WordStore } from './word-store.js';

export { allocatorGeometry, type AllocatorGeometry } from './geometry.js';

/** Non-full words a small request examines near the rotor before it asks the part tree for an entirely free word. */
const SMALL_SCAN_BUDGET = 16;
/** scan() result: the budget ran out before the range did (distinct from -1, "none in the range"). */
const BUDGET_EXHAUSTED = -2;
/** Largest alignment accepted: every unit index is below 2^32. */
const MAX_ALIGN = 2 ** 32;

/**
 * The bitmap contradicts itself or a caller's precondition (a unit to mark is
 * already so): damaged state, told apart from a failing store underneath.
 */
export class BitmapStateError extends Error {
  override readonly name = 'BitmapStateError';
}

export class BitmapAllocator {
  readonly unitCount: number;
  readonly geometry: AllocatorGeometry;
  private readonly store: WordStore;
  private readonly leafOff: number;
  private readonly leafWords: number;
  /** Index of the top summary level (one word). */
  private readonly top: number;
  private readonly levelWords: number[];
  private readonly fullOff: number[];
  private readonly partOff: number[];
  /**
   * Next-fit rotors (leaf word indices), like the kernel's
   * bitmap_find_next_zero_area start hint: pure hints kept in JavaScript,
   * harmless to lose on a crash. Small and large requests rotate apart so
   * that single pages do not drag large searches across the pool.
   */
  private smallHint = 0;
  private largeHint = 0;
  /** Words scan() may still examine in the current find(). */
  private budget = 0;

  /** Attaches to state already in `store` (O(1): reads nothing). */
  constructor(store: WordStore, unitCount: number) {
    const geo = allocatorGeometry(unitCount);
    this.store = store;
    this.unitCount = unitCount;
    this.geometry = geo;
    this.leafOff = geo.leafOffset;
    this.leafWords = geo.leafWords;
    this.top = geo.levels - 1;
    this.levelWords = geo.levelWords.slice();
    this.fullOff = geo.fullOffsets.slice();
    this.partOff = geo.partOffsets.slice();
  }

  /** Writes the all-free state over whatever `store` holds (reads every word, writes those that differ). */
  static format(store: WordStore, unitCount: number): BitmapAllocator {
    const allocator = new BitmapAllocator(store, unitCount);
    formatState(store, allocator.geometry, false);
    return allocator;
  }

  /**
   * Writes the all-free state into a store whose words are all 0 already (a
   * fresh sparse file): O(levels) stores, no reads, touches no leaf page but
   * the last. Precondition (not checked): every word in [0, wordCount) is 0.
   */
  static formatZeroed(store: WordStore, unitCount: number): BitmapAllocator {
    const allocator = new BitmapAllocator(store, unitCount);
    formatState(store, allocator.geometry, true);
    return allocator;
  }

  // ---------------------------------------------------------------- queries

  /**
   * Finds `count` free units starting at a multiple of `align` (a power of
   * two); does not change state; -1 when none. Next-fit from a rotor, and
   * exact: when a fitting aligned run exists anywhere, one is returned.
   *
   * Every fitting run either spans at most two leaf words (found by scan(),
   * which visits non-full words) or spans three or more and so contains an
   * entirely free word (found by searchEmpty(), which visits runs of
   * entirely free words through the part tree). Which strategies run
   * depends on which kinds of fit can exist for this count and align.
   */
  find(count: number, align: number): number {
    this.checkRequest(count, align, 'find');
    if (count === 1 && align === 1) return this.findOne();
    if (count < 32) {
      // Fill partly used words near the rotor first; then any entirely free
      // word fits; only a pool without one needs the exhaustive scan.
      const near = this.scanWrapped(count, align, this.smallHint, SMALL_SCAN_BUDGET);
      if (near !== BUDGET_EXHAUSTED) return near;
      const empty = this.searchEmptyWrapped(count, align, this.smallHint);
      if (empty >= 0) return empty;
      return this.scanWrapped(count, align, this.smallHint, Number.MAX_SAFE_INTEGER);
    }
    const empty = this.searchEmptyWrapped(count, align, this.largeHint);
    // Runs of >= 65 units span >= 3 words; an aligned (>= 32) run of >= 32
    // units starts with a whole word: either way it contains a free word.
    if (empty >= 0 || count > 64 || align >= 32) return empty;
    return this.scanWrapped(count, align, this.largeHint, Number.MAX_SAFE_INTEGER);
  }

  /** find + markUsed; returns the first unit, or -1 when no fitting run exists. */
  alloc(count: number, align: number): number {
    const start = this.find(count, align);
    if (start < 0) return -1;
    this.markUsed(start, count);
    return start;
  }

  /** Marks `[start, start + count)` used. Precondition (asserted, nothing written when it fails): all free. */
  markUsed(start: number, count: number): void {
    if (count === 1 && start >>> 0 === start && start < this.unitCount) {
      this.markOneUsed(start);
      return;
    }
    this.checkRange(start, count, 'markUsed');
    const bad = this.firstLeafBit(start, start + count, false);
    if (bad >= 0) throw new BitmapStateError(`markUsed(${start}, ${count}): unit ${bad} is already used`);
    this.writeRange(start, start + count, true);
    this.store.store(HEADER_USED_UNITS, (this.store.load(HEADER_USED_UNITS) + count) >>> 0);
    // Next fit: the following search starts past this run. Here, not in alloc(),
    // so that callers who find() then markUsed() (the pool, which logs its
    // intent in between) move the rotor too.
    const lastWord = (start + count - 1) >>> WORD_SHIFT;
    if (count < 32) this.smallHint = lastWord;
    else this.largeHint = lastWord + 1 < this.leafWords ? lastWord + 1 : 0;
  }

  /** Marks `[start, start + count)` free. Precondition (asserted, nothing written when it fails): all used. */
  markFree(start: number, count: number): void {
    if (count === 1 && start >>> 0 === start && start < this.unitCount) {
      this.markOneFree(start);
      return;
    }
    this.checkRange(start, count, 'markFree');
    const bad = this.firstLeafBit(start, start + count, true);
    if (bad >= 0) throw new BitmapStateError(`markFree(${start}, ${count}): unit ${bad} is already free`);
    this.writeRange(start, start + count, false);
    this.store.store(HEADER_USED_UNITS, (this.store.load(HEADER_USED_UNITS) - count) >>> 0);
  }

  /** True when every unit of `[start, start + count)` is free (read from the leaf bitmap). */
  isFree(start: number, count: number): boolean {
    if (count === 1 && start >>> 0 === start && start < this.unitCount) {
      return (this.store.load(this.leafOff + (start >>> WORD_SHIFT)) & (1 << (start & 31))) === 0;
    }
    this.checkRange(start, count, 'isFree');
    return this.firstLeafBit(start, start + count, false) < 0;
  }

  /** True when every unit of `[start, start + count)` is used (read from the leaf bitmap). */
  isUsed(start: number, count: number): boolean {
    this.checkRange(start, count, 'isUsed');
    return this.firstLeafBit(start, start + count, true) < 0;
  }

  /** Free units, O(1): a counter kept in the store. */
  freeUnits(): number {
    return this.unitCount - this.store.load(HEADER_USED_UNITS);
  }

  /** The longest run of free units (alignment ignored). Skips full words through the full tree; O(runs * levels + words / 32). */
  largestFreeRun(): number {
    let largest = 0;
    let p = 0;
    while (largest < this.unitCount - p) {
      const start = this.nextFreeUnit(p);
      if (start < 0) break;
      const used = this.firstUsedUnit(start, this.unitCount);
      const end = used < 0 ? this.unitCount : used;
      if (end - start > largest) largest = end - start;
      p = end + 1;
    }
    return largest;
  }

  /**
   * The longest run of units that are free, or in `alsoFree`: used units, ascending (a pool's
   * units held in its opens' caches, which are marked used here and are any allocation's once
   * given back). One pass over the free runs, merging the extra units in as it goes: no run is
   * made an object, and nothing is sorted. O(runs * levels + words / 32 + alsoFree).
   */
  largestFreeRunWith(alsoFree: ArrayLike<number>): number {
    let largest = 0;
    let start = 0; // the run being extended: [start, end)
    let end = -1;
    let next = 0;
    let p = 0;
    for (;;) {
      const freeStart = p < this.unitCount ? this.nextFreeUnit(p) : -1;
      for (; next < alsoFree.length && (freeStart < 0 || alsoFree[next]! < freeStart); next++) {
        const u = alsoFree[next]!;
        if (u < end) continue; // within the run already counted (a free unit, or a repeat)
        if (u !== end) start = u;
        end = u + 1;
        if (end - start > largest) largest = end - start;
      }
      if (freeStart < 0) return largest;
      const used = this.firstUsedUnit(freeStart, this.unitCount);
      const freeEnd = used < 0 ? this.unitCount : used;
      if (freeStart !== end) start = freeStart;
      end = freeEnd;
      if (end - start > largest) largest = end - start;
      p = freeEnd + 1;
    }
  }

  /** Every maximal run of free units, lowest first (for stats and maps). */
  *freeRuns(): Iterable<{ start: number; count: number }> {
    let p = 0;
    while (p < this.unitCount) {
      const start = this.nextFreeUnit(p);
      if (start < 0) return;
      const used = this.firstUsedUnit(start, this.unitCount);
      const end = used < 0 ? this.unitCount : used;
      yield { start, count: end - start };
      p = end + 1;
    }
  }

  // ------------------------------------------------------ check and repair

  /** Every disagreement of the summaries, header and counter with the leaf bitmap; empty when consistent. O(words). */
  checkSummaries(): string[] {
    return checkState(this.store, this.geometry);
  }

  /** Recomputes the summaries, header, tail bits and counter from the leaf bitmap. O(words); writes only what changes. */
  rebuildSummaries(): void {
    rebuildState(this.store, this.geometry);
  }

  /**
   * Moves both next-fit rotors to the word of `unit`. Only a hint: searches
   * stay exact (they wrap around). Users sharing one state place their rotors
   * apart, so that each changes its own words.
   */
  setRotor(unit: number): void {
    const w = Math.min(this.leafWords - 1, Math.max(0, Math.floor(unit / 32)));
    this.smallHint = w;
    this.largeHint = w;
  }

  /** Clears everything to all-free (pool recovery then re-marks from its directory). O(words). */
  reset(): void {
    formatState(this.store, this.geometry, false);
    this.smallHint = 0;
    this.largeHint = 0;
  }

  // ------------------------------------------------------------ validation

  private checkRequest(count: number, align: number, op: string): void {
    if (!Number.isInteger(count) || count < 1 || count > this.unitCount) {
      throw new RangeError(`${op}: count must be an integer in 1 .. ${this.unitCount}, got ${count}`);
    }
    // Small powers of two pass the int32 test; the rest take the exact one.
    const smallPowerOfTwo = (align | 0) === align && align > 0 && (align & (align - 1)) === 0;
    if (!smallPowerOfTwo && (!isPowerOfTwo(align) || align > MAX_ALIGN)) {
      throw new RangeError(`${op}: align must be a power of two in 1 .. 2^32, got ${align}`);
    }
  }

  private checkRange(start: number, count: number, op: string): void {
    if (!Number.isInteger(start) || start < 0 || start >= this.unitCount) {
      throw new RangeError(`${op}: start must be an integer in 0 .. ${this.unitCount - 1}, got ${start}`);
    }
    if (!Number.isInteger(count) || count < 1 || count > this.unitCount - start) {
      throw new RangeError(`${op}: count must be an integer in 1 .. ${this.unitCount - start} at start ${start}, got ${count}`);
    }
  }

  /**
   * markUsed(u, 1), the pool's most common store: the same stores in the same
   * order as writeRange() makes for one unit (leaf word, summaries, counter),
   * without the range bookkeeping.
   */
  private markOneUsed(u: number): void {
    const store = this.store;
    const w = u >>> WORD_SHIFT;
    const i = this.leafOff + w;
    const old = store.load(i);
    const bit = 1 << (u & 31);
    if ((old & bit) !== 0) throw new BitmapStateError(`markUsed(${u}, 1): unit ${u} is already used`);
    const value = (old | bit) >>> 0;
    store.store(i, value);
    if (value === FULL_WORD) this.setUp(this.fullOff, w);
    if (old === 0) this.setUp(this.partOff, w);
    store.store(HEADER_USED_UNITS, (store.load(HEADER_USED_UNITS) + 1) >>> 0);
    this.smallHint = w;
  }

  /** markFree(u, 1): as markOneUsed(), the other way. */
  private markOneFree(u: number): void {
    const store = this.store;
    const w = u >>> WORD_SHIFT;
    const i = this.leafOff + w;
    const old = store.load(i);
    const bit = 1 << (u & 31);
    if ((old & bit) === 0) throw new BitmapStateError(`markFree(${u}, 1): unit ${u} is already free`);
    const value = (old & ~bit) >>> 0;
    store.store(i, value);
    if (old === FULL_WORD) this.clearUp(this.fullOff, w);
    if (value === 0) this.clearUp(this.partOff, w);
    store.store(HEADER_USED_UNITS, (store.load(HEADER_USED_UNITS) - 1) >>> 0);
  }

  // ------------------------------------------------------------ tree walks

  /**
   * The first bit >= p of level 0 of a tree that is clear (a leaf word with a
   * free unit for the full tree, an entirely free leaf word for the part
   * tree), or -1. Climbs while the rest of a word is all ones, then descends
   * along clear bits: O(levels) loads.
   */
  private nextZero(off: number[], p: number): number {
    if (p >= this.leafWords) return -1;
    const store = this.store;
    let level = 0;
    let idx = p;
    for (;;) {
      const wi = idx >>> WORD_SHIFT;
      if (wi >= this.levelWords[level]) return -1;
      const x = ~store.load(off[level] + wi) & (-1 << (idx & 31));
      if (x !== 0) {
        idx = wi * 32 + ctz32(x);
        break;
      }
      if (level === this.top) return -1;
      idx = wi + 1;
      level++;
    }
    while (level > 0) {
      level--;
      const x = ~store.load(off[level] + idx);
      // Invariant: a clear bit at level k+1 means its level-k word is not all ones.
      if (x === 0) throw this.corrupt(`summary level ${level} word ${idx} is all ones under a clear parent bit`);
      idx = idx * 32 + ctz32(x);
    }
    return idx;
  }

  /** Sets bit `idx` of level 0 of a tree; a word that becomes all ones sets its parent bit. */
  private setUp(off: number[], idx: number): void {
    const store = this.store;
    for (let level = 0; ; level++) {
      const i = off[level] + (idx >>> WORD_SHIFT);
      const old = store.load(i);
      const value = (old | (1 << (idx & 31))) >>> 0;
      if (value === old) return;
      store.store(i, value);
      if (value !== FULL_WORD || level === this.top) return;
      idx >>>= WORD_SHIFT;
    }
  }

  /** Clears bit `idx` of level 0 of a tree; a word that stops being all ones clears its parent bit. */
  private clearUp(off: number[], idx: number): void {
    const store = this.store;
    for (let level = 0; ; level++) {
      const i = off[level] + (idx >>> WORD_SHIFT);
      const old = store.load(i);
      const value = (old & ~(1 << (idx & 31))) >>> 0;
      if (value === old) return;
      store.store(i, value);
      if (old !== FULL_WORD || level === this.top) return;
      idx >>>= WORD_SHIFT;
    }
  }

  /**
   * Sets (or clears) bits [lo, hi] of `level` of a tree, then fixes the
   * parents of the words whose all-ones-ness changed. Those words form a
   * range whose inner words are wholly covered, so the parent update is a
   * range again: O(hi - lo) / 32 + levels stores, one per changed word.
   */
  private applyRange(off: number[], level: number, lo: number, hi: number, set: boolean): void {
    const store = this.store;
    for (;;) {
      let changedLo = -1;
      let changedHi = -1;
      const j1 = lo >>> WORD_SHIFT;
      const j2 = hi >>> WORD_SHIFT;
      for (let j = j1; j <= j2; j++) {
        let mask = -1;
        if (j === j1) mask &= -1 << (lo & 31);
        if (j === j2) mask &= -1 >>> (31 - (hi & 31));
        const i = off[level] + j;
        const old = store.load(i);
        const value = (set ? old | mask : old & ~mask) >>> 0;
        if (value === old) continue;
        store.store(i, value);
        if ((old === FULL_WORD) !== (value === FULL_WORD)) {
          if (changedLo < 0) changedLo = j;
          changedHi = j;
        }
      }
      if (changedLo < 0 || level === this.top) return;
      level++;
      lo = changedLo;
      hi = changedHi;
    }
  }

  /**
   * Writes the leaf bits of [start, end) (set = used), then the level-0
   * summary bits of the words whose fullness or emptiness changed. Leaf
   * words are written before the summaries that describe them.
   */
  private writeRange(start: number, end: number, used: boolean): void {
    const store = this.store;
    const w1 = start >>> WORD_SHIFT;
    const w2 = (end - 1) >>> WORD_SHIFT;
    if (w1 === w2) {
      // One word: the common case, without the range bookkeeping.
      const mask = (-1 << (start & 31)) & (-1 >>> (31 - ((end - 1) & 31)));
      const i = this.leafOff + w1;
      const old = store.load(i);
      const value = (used ? old | mask : old & ~mask) >>> 0;
      store.store(i, value);
      if (used) {
        if (value === FULL_WORD) this.setUp(this.fullOff, w1);
        if (old === 0) this.setUp(this.partOff, w1);
      } else {
        if (old === FULL_WORD) this.clearUp(this.fullOff, w1);
        if (value === 0) this.clearUp(this.partOff, w1);
      }
      return;
    }
    let fullLo = -1;
    let fullHi = -1;
    let partLo = -1;
    let partHi = -1;
    for (let w = w1; w <= w2; w++) {
      let mask = -1;
      if (w === w1) mask &= -1 << (start & 31);
      if (w === w2) mask &= -1 >>> (31 - ((end - 1) & 31));
      const i = this.leafOff + w;
      const old = store.load(i);
      const value = (used ? old | mask : old & ~mask) >>> 0;
      store.store(i, value);
      if ((old === FULL_WORD) !== (value === FULL_WORD)) {
        if (fullLo < 0) fullLo = w;
        fullHi = w;
      }
      if ((old === 0) !== (value === 0)) {
        if (partLo < 0) partLo = w;
        partHi = w;
      }
    }
    if (fullLo >= 0) this.applyRange(this.fullOff, 0, fullLo, fullHi, used);
    if (partLo >= 0) this.applyRange(this.partOff, 0, partLo, partHi, used);
  }

  // -------------------------------------------------------- leaf searches

  /**
   * The first unit of [start, end) that is free (`wantClear`) or used
   * (otherwise), or -1. Reads only leaf words: this is what the
   * preconditions of markUsed/markFree trust. O((end - start) / 32).
   */
  private firstLeafBit(start: number, end: number, wantClear: boolean): number {
    const store = this.store;
    const w1 = start >>> WORD_SHIFT;
    const w2 = (end - 1) >>> WORD_SHIFT;
    for (let w = w1; w <= w2; w++) {
      let mask = -1;
      if (w === w1) mask &= -1 << (start & 31);
      if (w === w2) mask &= -1 >>> (31 - ((end - 1) & 31));
      const x = store.load(this.leafOff + w);
      const hit = (wantClear ? ~x : x) & mask;
      if (hit !== 0) return w * 32 + ctz32(hit);
    }
    return -1;
  }

  /**
   * The first used unit of [start, end), or -1. Inner words are skipped 32 at
   * a time through level 0 of the part tree: O(2 + (end - start) / 1024).
   */
  private firstUsedUnit(start: number, end: number): number {
    const store = this.store;
    const w1 = start >>> WORD_SHIFT;
    const w2 = (end - 1) >>> WORD_SHIFT;
    let x = store.load(this.leafOff + w1) & (-1 << (start & 31));
    if (w1 === w2) {
      x &= -1 >>> (31 - ((end - 1) & 31));
      return x === 0 ? -1 : w1 * 32 + ctz32(x);
    }
    if (x !== 0) return w1 * 32 + ctz32(x);
    const part0 = this.partOff[0];
    const lastInner = w2 - 1;
    let w = w1 + 1;
    while (w <= lastInner) {
      const j = w >>> WORD_SHIFT;
      let m = store.load(part0 + j) & (-1 << (w & 31));
      if (j === lastInner >>> WORD_SHIFT) m &= -1 >>> (31 - (lastInner & 31));
      if (m !== 0) {
        const u = j * 32 + ctz32(m);
        return u * 32 + ctz32(store.load(this.leafOff + u));
      }
      w = (j + 1) * 32;
    }
    x = store.load(this.leafOff + w2) & (-1 >>> (31 - ((end - 1) & 31)));
    return x === 0 ? -1 : w2 * 32 + ctz32(x);
  }

  /** The first free unit >= p, or -1; full words are skipped through the full tree. */
  private nextFreeUnit(p: number): number {
    let w = p >>> WORD_SHIFT;
    let x = ~this.store.load(this.leafOff + w) & (-1 << (p & 31));
    if (x === 0) {
      w = this.nextZero(this.fullOff, w + 1);
      if (w < 0) return -1;
      x = ~this.store.load(this.leafOff + w);
      if (x === 0) throw this.corrupt(`full summary says leaf word ${w} has a free unit; it has none`);
    }
    return w * 32 + ctz32(x);
  }

  // ------------------------------------------------------------- policy

  /** count 1, align 1: the rotor's word if it has a free unit, else the next such word (O(levels)). */
  private findOne(): number {
    let w = this.smallHint;
    let x = this.store.load(this.leafOff + w);
    if (x === FULL_WORD) {
      w = this.nextZero(this.fullOff, w + 1);
      if (w < 0) w = this.nextZero(this.fullOff, 0);
      if (w < 0) return -1;
      x = this.store.load(this.leafOff + w);
      if (x === FULL_WORD) throw this.corrupt(`full summary says leaf word ${w} has a free unit; it has none`);
    }
    return w * 32 + ctz32(~x);
  }

  /** scan() from `from` to the end, then from 0 to `from`, sharing one budget. */
  private scanWrapped(count: number, align: number, from: number, budget: number): number {
    this.budget = budget;
    const r = this.scan(count, align, from, this.leafWords);
    if (r !== -1 || from === 0) return r;
    return this.scan(count, align, 0, from);
  }

  /**
   * Runs that start in a non-full leaf word w in [from, limit) and end in w or
   * w + 1: the lowest aligned fitting start of the first word that has one.
   * Full words are skipped through the full tree. Returns the unit, -1 when
   * the range has none, BUDGET_EXHAUSTED when this.budget words were examined
   * in vain. With align > 32 only words at multiples of align / 32 qualify;
   * a non-full word passed over for its position costs budget too, or a
   * pool of partly used words between full aligned ones would be walked
   * whole before the part tree is asked for a free aligned word.
   */
  private scan(count: number, align: number, from: number, limit: number): number {
    const stride = align > 32 ? align / 32 : 1;
    let p = from;
    for (;;) {
      const w = this.nextZero(this.fullOff, p);
      if (w < 0 || w >= limit) return -1;
      if (stride > 1) {
        const rem = w % stride;
        if (rem !== 0) {
          if (--this.budget <= 0) return BUDGET_EXHAUSTED;
          p = w - rem + stride;
          continue;
        }
      }
      const start = this.fitInWord(w, count, align);
      if (start >= 0) return start;
      if (--this.budget <= 0) return BUDGET_EXHAUSTED;
      p = w + stride;
    }
  }

  /**
   * The lowest aligned start in leaf word w of a free run of `count` units
   * that ends in w or w + 1, or -1. For align > 32, w is aligned and only
   * its first unit is a candidate.
   */
  private fitInWord(w: number, count: number, align: number): number {
    const x = this.store.load(this.leafOff + w);
    if (align > 32) {
      if (count <= 32) return ctz32(x) >= count ? w * 32 : -1;
      if (x !== 0 || w + 1 >= this.leafWords) return -1;
      return ctz32(this.store.load(this.leafOff + w + 1)) >= count - 32 ? w * 32 : -1;
    }
    if (count <= 32) {
      const starts = runStarts(~x, count) & alignedPositions(align);
      if (starts !== 0) return w * 32 + ctz32(starts);
    }
    // A run crossing into w + 1 starts in the free top bits of w. The lowest
    // aligned start there needs the fewest units of w + 1; if it fails, all do.
    const freeTop = Math.clz32(x);
    if (freeTop === 0 || w + 1 >= this.leafWords) return -1;
    const b = alignUp(32 - freeTop, align);
    if (b >= 32) return -1;
    const need = count - (32 - b);
    if (need > 32) return -1;
    return ctz32(this.store.load(this.leafOff + w + 1)) >= need ? w * 32 + b : -1;
  }

  /** searchEmpty() from `from` to the end, then from 0 to `from`. */
  private searchEmptyWrapped(count: number, align: number, from: number): number {
    const r = this.searchEmpty(count, align, from, this.leafWords);
    if (r >= 0 || from === 0) return r;
    return this.searchEmpty(count, align, 0, from);
  }

  /**
   * Fitting runs that contain an entirely free leaf word whose run of free
   * words begins in [from, limit). Each candidate is an entirely free word
   * from the part tree: with align >= 32 the run must start there (at an
   * aligned word); otherwise it may start in the free top bits of the word
   * before it, at the lowest aligned unit. A candidate that fails stops at
   * its first used unit x; every later candidate lies beyond x, so the
   * search resumes after x's word. O(candidates * levels + span / 1024).
   *
   * When the first candidate is `from` itself, the free run may really begin
   * earlier; the wrapped second pass (from 0) sees that run whole.
   */
  private searchEmpty(count: number, align: number, from: number, limit: number): number {
    const n = this.unitCount;
    let p = from;
    if (align >= 32) {
      const stride = align / 32;
      for (;;) {
        const w = this.nextZero(this.partOff, p);
        if (w < 0 || w >= limit) return -1;
        const rem = w % stride;
        if (rem !== 0) {
          p = w - rem + stride;
          continue;
        }
        const start = w * 32;
        if (start + count > n) return -1;
        const used = this.firstUsedUnit(start, start + count);
        if (used < 0) return start;
        p = alignUp((used >>> WORD_SHIFT) + 1, stride);
      }
    }
    for (;;) {
      const w = this.nextZero(this.partOff, p);
      if (w < 0 || w >= limit) return -1;
      const freeBefore = w === 0 ? 0 : Math.clz32(this.store.load(this.leafOff + w - 1));
      const start = alignUp(w * 32 - freeBefore, align);
      // Candidates only move right, so one that overruns the pool ends the pass.
      if (start + count > n) return -1;
      const used = this.firstUsedUnit(start, start + count);
      if (used < 0) return start;
      p = (used >>> WORD_SHIFT) + 1;
    }
  }

  private corrupt(detail: string): Error {
    return new BitmapStateError(`pmpool/alloc: allocator state is inconsistent (${detail}); run checkSummaries()/rebuildSummaries()`);
  }
}
