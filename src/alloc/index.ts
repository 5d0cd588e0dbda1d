/**
 * The contiguous unit allocator: a bitmap with hierarchical summaries, all
 * of it u32 words behind a WordStore. It knows bits, not files.
 */
export { ArrayWordStore, type WordStore } from './word-store.js';
export { BitmapAllocator, BitmapStateError, allocatorGeometry, type AllocatorGeometry } from './bitmap-allocator.js';
export { MAX_UNIT_COUNT, HEADER_WORDS, HEADER_UNIT_COUNT, HEADER_USED_UNITS } from './geometry.js';
export {
  FULL_WORD,
  WORD_BITS,
  WORD_SHIFT,
  alignUp,
  alignedPositions,
  bitRange,
  bitsFrom,
  bitsUpTo,
  ctz32,
  isPowerOfTwo,
  popcount32,
  runStarts,
  wordsFor,
} from './bits.js';
