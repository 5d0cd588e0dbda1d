/**
 * Verification, repair and formatting of the allocator's state: everything
 * that recomputes the summaries from the leaf bitmap. Kept apart from the
 * allocation policy (as fdt_check.c is from fdt_ro.c); all of it is O(words).
 *
 * The leaf bitmap is the truth; the header's unit count, the used-unit
 * counter, the tail bits and both summary trees are derived from it and can
 * always be rebuilt.
 */
import { FULL_WORD, popcount32, WORD_BITS } from './bits.js';
import {
  HEADER_UNIT_COUNT,
  HEADER_USED_UNITS,
  paddingMask,
  tailMask,
  type AllocatorGeometry,
} from './geometry.js';
import type { WordStore } from './word-store.js';

/** The two summary trees, named for what a set level-0 bit says about its leaf word. */
export type SummaryTree = 'full' | 'part';

/** Reports stop after this many problems (one corrupt level could otherwise list millions). */
export const MAX_REPORTED_PROBLEMS = 64;

const hex = (x: number): string => '0x' + (x >>> 0).toString(16).padStart(8, '0');

/** The leaf word `w` with the tail bits forced on (what it must look like). */
function leafWithTail(store: WordStore, geo: AllocatorGeometry, w: number): number {
  const x = store.load(geo.leafOffset + w);
  return w === geo.leafWords - 1 ? (x | tailMask(geo.unitCount)) >>> 0 : x;
}

/**
 * The value summary word `j` of `level` must have, computed from the level
 * below (the leaf bitmap for level 0) as it is in the store now.
 */
export function expectedSummaryWord(
  store: WordStore,
  geo: AllocatorGeometry,
  tree: SummaryTree,
  level: number,
  j: number,
): number {
  const first = j * WORD_BITS;
  const count = Math.min(WORD_BITS, geo.levelBits[level] - first);
  let value = 0;
  for (let b = 0; b < count; b++) {
    let set: boolean;
    if (level === 0) {
      const leaf = leafWithTail(store, geo, first + b);
      set = tree === 'full' ? leaf === FULL_WORD : leaf !== 0;
    } else {
      const offsets = tree === 'full' ? geo.fullOffsets : geo.partOffsets;
      set = store.load(offsets[level - 1] + first + b) === FULL_WORD;
    }
    if (set) value |= 1 << b;
  }
  if (j === geo.levelWords[level] - 1) value |= paddingMask(geo.levelBits[level]);
  return value >>> 0;
}

/** Used units according to the leaf bitmap (tail bits excluded). */
export function countUsedUnits(store: WordStore, geo: AllocatorGeometry): number {
  let used = 0;
  for (let w = 0; w < geo.leafWords; w++) used += popcount32(store.load(geo.leafOffset + w));
  const last = store.load(geo.leafOffset + geo.leafWords - 1);
  return used - popcount32(last & tailMask(geo.unitCount));
}

/** Every disagreement between the derived state and the leaf bitmap; empty when consistent. */
export function checkState(store: WordStore, geo: AllocatorGeometry): string[] {
  const problems: string[] = [];
  let omitted = 0;
  const report = (message: string): void => {
    if (problems.length < MAX_REPORTED_PROBLEMS) problems.push(message);
    else omitted++;
  };
  const unitWord = store.load(HEADER_UNIT_COUNT);
  if (unitWord !== geo.unitCount) report(`header: unit count is ${unitWord}, expected ${geo.unitCount}`);
  const tail = tailMask(geo.unitCount);
  const last = store.load(geo.leafOffset + geo.leafWords - 1);
  if ((last & tail) >>> 0 !== tail) {
    report(`leaf word ${geo.leafWords - 1}: tail bits beyond unit ${geo.unitCount} are ${hex(last & tail)}, must be ${hex(tail)}`);
  }
  for (const tree of ['full', 'part'] as const) {
    const offsets = tree === 'full' ? geo.fullOffsets : geo.partOffsets;
    for (let level = 0; level < geo.levels; level++) {
      for (let j = 0; j < geo.levelWords[level]; j++) {
        const stored = store.load(offsets[level] + j);
        const expected = expectedSummaryWord(store, geo, tree, level, j);
        if (stored !== expected) {
          report(`${tree} summary level ${level} word ${j}: stored ${hex(stored)}, expected ${hex(expected)}`);
        }
      }
    }
  }
  const used = countUsedUnits(store, geo);
  const counter = store.load(HEADER_USED_UNITS);
  if (counter !== used) report(`header: used-unit counter is ${counter}, the leaf bitmap has ${used} used units`);
  if (omitted > 0) problems.push(`... and ${omitted} more problems`);
  return problems;
}

/** Writes `value` at `index` unless it is already there (a logged store costs more than a load). */
function put(store: WordStore, index: number, value: number): void {
  if (store.load(index) !== value) store.store(index, value);
}

/**
 * Recomputes, bottom-up, everything derived from the leaf bitmap: the header's
 * unit count, the tail bits, both summary trees and the used-unit counter.
 * Stores only words that change.
 */
export function rebuildState(store: WordStore, geo: AllocatorGeometry): void {
  put(store, HEADER_UNIT_COUNT, geo.unitCount);
  const lastIndex = geo.leafOffset + geo.leafWords - 1;
  put(store, lastIndex, (store.load(lastIndex) | tailMask(geo.unitCount)) >>> 0);
  for (let level = 0; level < geo.levels; level++) {
    for (let j = 0; j < geo.levelWords[level]; j++) {
      put(store, geo.fullOffsets[level] + j, expectedSummaryWord(store, geo, 'full', level, j));
      put(store, geo.partOffsets[level] + j, expectedSummaryWord(store, geo, 'part', level, j));
    }
  }
  put(store, HEADER_USED_UNITS, countUsedUnits(store, geo));
}

/**
 * Writes the all-free state. In that state every word is 0 except the header's
 * unit count, the tail bits of the last leaf word, and the last word of each
 * summary level (padding bits, plus any bit its all-ones child forces on).
 * With `zeroed` the caller promises every word is already 0 (a fresh sparse
 * file), and only those O(levels) words are written; otherwise every word is
 * read and the ones that differ are written.
 */
export function formatState(store: WordStore, geo: AllocatorGeometry, zeroed: boolean): void {
  const special = new Map<number, number>();
  special.set(HEADER_UNIT_COUNT, geo.unitCount);
  const lastLeaf = tailMask(geo.unitCount);
  special.set(geo.leafOffset + geo.leafWords - 1, lastLeaf);
  for (const tree of ['full', 'part'] as const) {
    const offsets = tree === 'full' ? geo.fullOffsets : geo.partOffsets;
    // Only the last word of each level can be non-zero; walk them bottom-up.
    let childLast = lastLeaf;
    let childIsLeaf = true;
    for (let level = 0; level < geo.levels; level++) {
      const j = geo.levelWords[level] - 1;
      const lastBit = geo.levelBits[level] - 1 - j * WORD_BITS;
      const childSet = childIsLeaf
        ? tree === 'full'
          ? childLast === FULL_WORD
          : childLast !== 0
        : childLast === FULL_WORD;
      const value = ((childSet ? 1 << lastBit : 0) | paddingMask(geo.levelBits[level])) >>> 0;
      special.set(offsets[level] + j, value);
      childLast = value;
      childIsLeaf = false;
    }
  }
  if (zeroed) {
    for (const [index, value] of special) if (value !== 0) store.store(index, value);
    return;
  }
  const indices = [...special.keys()].sort((a, b) => a - b);
  let i = 0;
  for (const index of indices) {
    for (; i < index; i++) put(store, i, 0);
    put(store, index, special.get(index) ?? 0);
    i = index + 1;
  }
  for (; i < geo.wordCount; i++) put(store, i, 0);
}
