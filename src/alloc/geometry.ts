/**
 * Where each part of the allocator's state lies among the store's words.
 * Pure arithmetic: nothing here allocates or touches the bitmap, so the pool
 * can size its metadata for 2^32-1 units before any memory exists.
 *
 * Layout (word indices):
 *   [0]                    unitCount (lets a check notice a store sized for another pool)
 *   [1]                    usedUnits (the counter behind freeUnits())
 *   [leafOffset ..]        the leaf bitmap: bit u%32 of word u>>>5 is unit u; set = used
 *   [fullOffsets[k] ..]    summary "full" level k       } both trees: level 0 has one bit per leaf
 *   [partOffsets[k] ..]    summary "part-used" level k  } word, level k+1 one bit per level-k word
 */
import { WORD_BITS, wordsFor } from './bits.js';

/** Largest unit count: a 16 TiB pool of 4 KiB pages (units are numbered by u32 in the ABI). */
export const MAX_UNIT_COUNT = 2 ** 32 - 1;

/** Header words at the start of the allocator's state. */
export const HEADER_WORDS = 2;
/** Header word holding the unit count the state was formatted for. */
export const HEADER_UNIT_COUNT = 0;
/** Header word holding the number of used units (unitCount - freeUnits()). */
export const HEADER_USED_UNITS = 1;

export interface AllocatorGeometry {
  /** Allocation units managed, 1 .. 2^32-1. */
  readonly unitCount: number;
  /** Exact number of u32 words of state: indices [0, wordCount) are used, nothing beyond. */
  readonly wordCount: number;
  /** First word of the leaf bitmap. */
  readonly leafOffset: number;
  /** Words in the leaf bitmap, ceil(unitCount / 32). */
  readonly leafWords: number;
  /** Summary levels in each tree (>= 1; the top level is one word). */
  readonly levels: number;
  /** Bits that mean something at each summary level: levelBits[0] = leafWords, levelBits[k+1] = levelWords[k]. */
  readonly levelBits: readonly number[];
  /** Words at each summary level: ceil(levelBits[k] / 32). */
  readonly levelWords: readonly number[];
  /** First word of each level of the "full" tree (level-0 bit set = leaf word has no free unit). */
  readonly fullOffsets: readonly number[];
  /** First word of each level of the "part-used" tree (level-0 bit set = leaf word has a used unit). */
  readonly partOffsets: readonly number[];
}

/** The layout of the state for `unitCount` units. Pure; unitCount in 1 .. 2^32-1. */
export function allocatorGeometry(unitCount: number): AllocatorGeometry {
  if (!Number.isInteger(unitCount) || unitCount < 1 || unitCount > MAX_UNIT_COUNT) {
    throw new RangeError(`allocatorGeometry: unitCount must be an integer in 1 .. 2^32-1, got ${unitCount}`);
  }
  const leafOffset = HEADER_WORDS;
  const leafWords = wordsFor(unitCount);
  const levelBits: number[] = [];
  const levelWords: number[] = [];
  let bits = leafWords;
  for (;;) {
    const words = wordsFor(bits);
    levelBits.push(bits);
    levelWords.push(words);
    if (words === 1) break;
    bits = words;
  }
  const summaryWords = levelWords.reduce((sum, w) => sum + w, 0);
  const fullOffsets: number[] = [];
  const partOffsets: number[] = [];
  let offset = leafOffset + leafWords;
  for (const words of levelWords) {
    fullOffsets.push(offset);
    offset += words;
  }
  for (const words of levelWords) {
    partOffsets.push(offset);
    offset += words;
  }
  const wordCount = HEADER_WORDS + leafWords + 2 * summaryWords;
  if (offset !== wordCount) throw new Error(`allocatorGeometry: layout ends at ${offset}, expected ${wordCount}`);
  return {
    unitCount,
    wordCount,
    leafOffset,
    leafWords,
    levels: levelWords.length,
    levelBits,
    levelWords,
    fullOffsets,
    partOffsets,
  };
}

/** Bits of the last leaf word beyond unitCount (permanently "used"), as an unsigned mask; 0 when unitCount % 32 == 0. */
export function tailMask(unitCount: number): number {
  const valid = unitCount % WORD_BITS;
  return valid === 0 ? 0 : ((-1 << valid) >>> 0);
}

/** Bits of the last word of a summary level beyond its meaningful bits (kept set), as an unsigned mask. */
export function paddingMask(bits: number): number {
  return tailMask(bits);
}
