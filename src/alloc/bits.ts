/**
 * Pure bit helpers on 32-bit words, kept apart from allocation policy (as
 * lib/bitmap.c and lib/find_bit.c are kept apart from mm/cma.c).
 *
 * Convention: bit i of a word is unit (32 * word + i), so the lowest unit is
 * the least significant bit. Words read from a WordStore are unsigned; the
 * results of JavaScript bit operators are signed int32. Every helper accepts
 * either and says which it returns.
 */

export const WORD_BITS = 32;
/** log2(WORD_BITS): unit >>> WORD_SHIFT is its word. */
export const WORD_SHIFT = 5;
/** A word with every bit set, unsigned (compare loaded words against it). */
export const FULL_WORD = 0xffffffff;

/** Index of the lowest set bit of `x`; 32 when `x` is 0. */
export function ctz32(x: number): number {
  x |= 0;
  return x === 0 ? 32 : 31 - Math.clz32(x & -x);
}

/** Number of set bits of `x`. */
export function popcount32(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** Bits `lo..hi` (inclusive, 0 <= lo <= hi <= 31) set, as an int32. */
export function bitRange(lo: number, hi: number): number {
  return (-1 >>> (31 - hi)) & (-1 << lo);
}

/** Bits `from..31` set, as an int32 (the kernel's BITMAP_FIRST_WORD_MASK). */
export function bitsFrom(from: number): number {
  return -1 << from;
}

/** Bits `0..upto` (inclusive) set, as an int32 (the kernel's BITMAP_LAST_WORD_MASK). */
export function bitsUpTo(upto: number): number {
  return (-1 >>> (31 - upto)) | 0;
}

/**
 * Positions where a run of `length` (1..32) set bits of `bits` starts: bit b
 * of the result is set iff bits b .. b+length-1 of `bits` are all set (bits
 * above 31 count as clear, so a run never leaves the word). O(log length):
 * each step doubles the run length the result guarantees.
 */
export function runStarts(bits: number, length: number): number {
  let x = bits | 0;
  let have = 1;
  while (have < length && x !== 0) {
    const step = Math.min(have, length - have);
    x &= x >>> step;
    have += step;
  }
  return x;
}

/** The bit positions of a word that are multiples of `align` (a power of two, 1..32), as an int32. */
export function alignedPositions(align: number): number {
  switch (align) {
    case 1:
      return -1;
    case 2:
      return 0x55555555;
    case 4:
      return 0x11111111;
    case 8:
      return 0x01010101;
    case 16:
      return 0x00010001;
    case 32:
      return 1;
    default:
      throw new RangeError(`alignedPositions: align ${align} is not a power of two in 1..32`);
  }
}

/** True for 1, 2, 4, ... 2^52 (exact for every power of two a double holds). */
export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 2 ** 52 && 2 ** Math.round(Math.log2(n)) === n;
}

/** The smallest multiple of `align` (a power of two) that is >= x; exact for x < 2^53. */
export function alignUp(x: number, align: number): number {
  const rem = x % align;
  return rem === 0 ? x : x - rem + align;
}

/** Words of 32 bits needed for `bits` bits. */
export function wordsFor(bits: number): number {
  return Math.ceil(bits / WORD_BITS);
}
