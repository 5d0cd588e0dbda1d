import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
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
} from '../src/alloc/index.js';

/** Bit i of x, for unsigned or int32 x. */
const bit = (x: number, i: number): boolean => ((x >>> i) & 1) === 1;

test('ctz32: lowest set bit, 32 for zero, unsigned and signed inputs alike', () => {
  assert.equal(ctz32(0), 32);
  assert.equal(ctz32(1), 0);
  assert.equal(ctz32(0x80000000), 31);
  assert.equal(ctz32(-0x80000000), 31);
  assert.equal(ctz32(0xffffffff), 0);
  assert.equal(ctz32(-1), 0);
  for (let i = 0; i < 32; i++) assert.equal(ctz32((1 << i) >>> 0), i);
  for (let i = 0; i < 32; i++) assert.equal(ctz32((0xffffffff << i) >>> 0), i);
});

test('popcount32 counts bits of unsigned and signed words', () => {
  assert.equal(popcount32(0), 0);
  assert.equal(popcount32(0xffffffff), 32);
  assert.equal(popcount32(-1), 32);
  assert.equal(popcount32(0x80000001), 2);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffffffff }), (x) => {
      let n = 0;
      for (let i = 0; i < 32; i++) if (bit(x, i)) n++;
      return popcount32(x) === n;
    }),
  );
});

test('bitRange, bitsFrom, bitsUpTo cover exactly the named bits', () => {
  for (let lo = 0; lo < 32; lo++) {
    for (let hi = lo; hi < 32; hi++) {
      const m = bitRange(lo, hi);
      for (let i = 0; i < 32; i++) assert.equal(bit(m, i), i >= lo && i <= hi, `bitRange(${lo}, ${hi}) bit ${i}`);
    }
    const from = bitsFrom(lo);
    const upto = bitsUpTo(lo);
    for (let i = 0; i < 32; i++) {
      assert.equal(bit(from, i), i >= lo);
      assert.equal(bit(upto, i), i <= lo);
    }
  }
});

test('runStarts marks exactly the starts of in-word runs of the given length', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 1, max: 32 }), (x, len) => {
      const starts = runStarts(x, len);
      for (let b = 0; b < 32; b++) {
        let ok = b + len <= 32;
        for (let i = b; ok && i < b + len; i++) ok = bit(x, i);
        if (bit(starts, b) !== ok) return false;
      }
      return true;
    }),
    { numRuns: 2000 },
  );
  assert.equal(runStarts(-1, 32), 1);
  assert.equal(runStarts(0xfffffffe, 32), 0);
  assert.equal(runStarts(0, 1), 0);
});

test('alignedPositions: bits at multiples of align; other aligns rejected', () => {
  for (const align of [1, 2, 4, 8, 16, 32]) {
    const m = alignedPositions(align);
    for (let i = 0; i < 32; i++) assert.equal(bit(m, i), i % align === 0);
  }
  assert.throws(() => alignedPositions(3), RangeError);
  assert.throws(() => alignedPositions(64), RangeError);
});

test('isPowerOfTwo and alignUp', () => {
  for (let k = 0; k <= 52; k++) assert.equal(isPowerOfTwo(2 ** k), true, `2^${k}`);
  for (const n of [0, -1, -2, 3, 6, 12, 1.5, 0.5, NaN, Infinity, 2 ** 32 + 2 ** 31, 2 ** 53]) {
    assert.equal(isPowerOfTwo(n), false, String(n));
  }
  assert.equal(alignUp(0, 64), 0);
  assert.equal(alignUp(1, 64), 64);
  assert.equal(alignUp(64, 64), 64);
  assert.equal(alignUp(2 ** 32 - 1, 2 ** 31), 2 ** 32);
  assert.equal(alignUp(2 ** 33 + 5, 2 ** 20), 2 ** 33 + 2 ** 20);
  assert.equal(wordsFor(1), 1);
  assert.equal(wordsFor(32), 1);
  assert.equal(wordsFor(33), 2);
  assert.equal(wordsFor(2 ** 32 - 1), 2 ** 27);
});
