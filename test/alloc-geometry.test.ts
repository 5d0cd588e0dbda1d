import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ArrayWordStore,
  BitmapAllocator,
  HEADER_WORDS,
  MAX_UNIT_COUNT,
  allocatorGeometry,
  type WordStore,
} from '../src/alloc/index.js';

/** A store that refuses any index outside [0, size) and remembers the highest index it saw. */
class BoundedStore implements WordStore {
  readonly words: Uint32Array;
  highest = -1;
  constructor(size: number) {
    this.words = new Uint32Array(size);
  }
  private check(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.words.length) {
      throw new Error(`word index ${index} outside [0, ${this.words.length})`);
    }
    if (index > this.highest) this.highest = index;
  }
  load(index: number): number {
    this.check(index);
    return this.words[index];
  }
  store(index: number, value: number): void {
    this.check(index);
    assert.ok(Number.isInteger(value) && value >= 0 && value <= 0xffffffff, `stored ${value} is not a u32`);
    this.words[index] = value;
  }
}

/** A sparse store (absent words read 0): lets a 2^32-1 unit allocator run without 570 MB of words. */
class SparseStore implements WordStore {
  readonly words = new Map<number, number>();
  constructor(readonly size: number) {}
  load(index: number): number {
    assert.ok(index >= 0 && index < this.size, `load ${index} outside [0, ${this.size})`);
    return this.words.get(index) ?? 0;
  }
  store(index: number, value: number): void {
    assert.ok(index >= 0 && index < this.size, `store ${index} outside [0, ${this.size})`);
    assert.ok(Number.isInteger(value) && value >= 0 && value <= 0xffffffff, `stored ${value} is not a u32`);
    this.words.set(index, value);
  }
}

/** The word count by an independent route: header + leaf words + two trees of ceil(·/32) levels. */
function expectedWordCount(unitCount: number): number {
  const leaf = Math.ceil(unitCount / 32);
  let summary = 0;
  let bits = leaf;
  do {
    bits = Math.ceil(bits / 32);
    summary += bits;
  } while (bits > 1);
  return 2 + leaf + 2 * summary;
}

test('wordCount is exact at odd sizes (hand-computed)', () => {
  const cases: [number, number][] = [
    [1, 5], // header 2, leaf 1, one summary word per tree
    [31, 5],
    [32, 5],
    [33, 6],
    [1024, 36], // 32 leaf words: still one summary level
    [1025, 41], // 33 leaf words: 2 + 1 summary words per tree
    [1_000_003, 33_271], // 31,251 leaf words; levels 977, 31, 1
    [262_144, 8_724], // 1 GiB of 4 KiB pages: 8,192 leaf; levels 256, 8, 1
    [MAX_UNIT_COUNT, 142_876_940], // 2^27 leaf; levels 2^22, 2^17, 4096, 128, 4, 1
  ];
  for (const [units, words] of cases) {
    assert.equal(allocatorGeometry(units).wordCount, words, `unitCount ${units}`);
    assert.equal(expectedWordCount(units), words, `independent formula at ${units}`);
  }
});

test('geometry: levels, offsets contiguous and disjoint, over a sweep of sizes', () => {
  const sizes = [1, 2, 31, 32, 33, 63, 64, 65, 1023, 1024, 1025, 32767, 32768, 32769, 32 ** 3 + 1, 1_000_003, 2 ** 31, MAX_UNIT_COUNT];
  for (const n of sizes) {
    const g = allocatorGeometry(n);
    assert.equal(g.unitCount, n);
    assert.equal(g.wordCount, expectedWordCount(n), `n=${n}`);
    assert.ok(Number.isSafeInteger(g.wordCount));
    assert.equal(g.leafOffset, HEADER_WORDS);
    assert.equal(g.leafWords, Math.ceil(n / 32));
    assert.equal(g.levels, g.levelWords.length);
    assert.equal(g.levelWords[g.levels - 1], 1, 'the top level is one word');
    assert.equal(g.levelBits[0], g.leafWords);
    for (let k = 0; k < g.levels; k++) {
      assert.equal(g.levelWords[k], Math.ceil(g.levelBits[k] / 32));
      if (k > 0) assert.equal(g.levelBits[k], g.levelWords[k - 1]);
    }
    let offset = g.leafOffset + g.leafWords;
    for (const offsets of [g.fullOffsets, g.partOffsets]) {
      for (let k = 0; k < g.levels; k++) {
        assert.equal(offsets[k], offset, `n=${n} level ${k}`);
        offset += g.levelWords[k];
      }
    }
    assert.equal(offset, g.wordCount);
  }
  assert.equal(allocatorGeometry(MAX_UNIT_COUNT).levels, 6);
  assert.equal(allocatorGeometry(1).levels, 1);
});

test('geometry rejects unit counts outside 1 .. 2^32-1', () => {
  for (const n of [0, -1, 1.5, NaN, Infinity, 2 ** 32, 2 ** 40]) {
    assert.throws(() => allocatorGeometry(n), RangeError, String(n));
  }
});

test('the allocator touches exactly [0, wordCount): format reads every word, nothing reaches past the end', () => {
  for (const n of [1, 31, 32, 33, 1025, 33_000, 100_003]) {
    const words = allocatorGeometry(n).wordCount;
    const store = new BoundedStore(words);
    const a = BitmapAllocator.format(store, n);
    assert.equal(store.highest, words - 1, `format of ${n} reaches the last word`);
    // Fill it completely, then empty it: every summary path runs, all within bounds.
    let u: number;
    let count = 0;
    while ((u = a.alloc(1, 1)) >= 0) {
      assert.ok(u < n);
      count++;
    }
    assert.equal(count, n);
    assert.deepEqual(a.checkSummaries(), []);
    a.markFree(0, n);
    assert.equal(a.freeUnits(), n);
    assert.equal(a.alloc(n, 1), 0);
    assert.deepEqual(a.checkSummaries(), []);
  }
});

test('formatZeroed writes O(levels) words and yields the same state as format', () => {
  for (const n of [1, 31, 32, 33, 1024, 1025, 32 * 32 * 32, 32 * 32 * 32 + 1, 1_000_003]) {
    const g = allocatorGeometry(n);
    const a = new ArrayWordStore(new Uint32Array(g.wordCount).fill(0xa5a5a5a5));
    BitmapAllocator.format(a, n);
    let stores = 0;
    const zero = new Uint32Array(g.wordCount);
    const counting: WordStore = {
      load: (i) => zero[i],
      store: (i, v) => {
        stores++;
        zero[i] = v;
      },
    };
    BitmapAllocator.formatZeroed(counting, n);
    assert.deepEqual(zero, a.words, `n=${n}`);
    assert.ok(stores <= 2 + 2 * g.levels, `n=${n}: ${stores} stores`);
    assert.deepEqual(new BitmapAllocator(a, n).checkSummaries(), []);
  }
});

test('2^32-1 units: geometry without the bitmap, and unit numbers above 2^31 work', () => {
  const n = MAX_UNIT_COUNT;
  const g = allocatorGeometry(n);
  const store = new SparseStore(g.wordCount);
  const a = BitmapAllocator.formatZeroed(store, n);
  assert.equal(a.freeUnits(), n);
  assert.ok(store.words.size < 20, 'a fresh huge pool touches a handful of words');

  assert.equal(a.alloc(1, 1), 0);
  assert.equal(a.alloc(100, 2 ** 31), 2 ** 31);
  assert.ok(a.isUsed(2 ** 31, 100));
  assert.ok(a.isFree(2 ** 31 + 100, 1));

  // The last unit, the last word (31 valid units, 1 tail bit), above 2^31.
  a.markUsed(n - 5, 5);
  assert.ok(a.isUsed(n - 5, 5));
  assert.ok(a.isFree(n - 37, 32));
  assert.throws(() => a.markUsed(n - 1, 2), RangeError, 'past the end');
  a.markUsed(3_000_000_000, 5000);
  assert.ok(a.isUsed(3_000_000_000, 5000));
  assert.equal(a.freeUnits(), n - 1 - 100 - 5 - 5000);

  // A large aligned request lands on the next aligned free spot after the rotor.
  const big = a.alloc(70_000, 2 ** 30);
  assert.ok(big >= 0 && big % 2 ** 30 === 0);
  assert.ok(a.isUsed(big, 70_000));
  a.markFree(big, 70_000);
  a.markFree(3_000_000_000, 5000);
  a.markFree(n - 5, 5);
  assert.throws(() => a.markUsed(0, 1), /unit 0 is already used/);
  assert.equal(a.freeUnits(), n - 101);
  // The last word: 31 valid units then the tail bit, which no range may name.
  assert.ok(a.isFree(n - 31, 31));
  assert.throws(() => a.isFree(n - 31, 32), RangeError);
});
