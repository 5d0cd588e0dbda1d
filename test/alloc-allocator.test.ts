import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ArrayWordStore,
  BitmapAllocator,
  HEADER_USED_UNITS,
  allocatorGeometry,
  type WordStore,
} from '../src/alloc/index.js';

function fresh(n: number): { a: BitmapAllocator; store: ArrayWordStore } {
  // Garbage first: format must not rely on zeroed memory.
  const store = new ArrayWordStore(new Uint32Array(allocatorGeometry(n).wordCount).fill(0xdeadbeef));
  return { a: BitmapAllocator.format(store, n), store };
}

/** Marks everything used except the listed [start, count) runs. */
function onlyFree(n: number, runs: [number, number][]): BitmapAllocator {
  const { a } = fresh(n);
  a.markUsed(0, n);
  for (const [s, c] of runs) a.markFree(s, c);
  assert.deepEqual(a.checkSummaries(), []);
  return a;
}

function runsOf(a: BitmapAllocator): [number, number][] {
  return [...a.freeRuns()].map((r) => [r.start, r.count]);
}

test('a formatted allocator is all free; tail bits beyond unitCount are never handed out', () => {
  for (const n of [1, 2, 31, 32, 33, 63, 64, 65, 1025]) {
    const { a } = fresh(n);
    assert.equal(a.unitCount, n);
    assert.equal(a.freeUnits(), n);
    assert.deepEqual(a.checkSummaries(), []);
    assert.deepEqual(runsOf(a), [[0, n]]);
    assert.equal(a.largestFreeRun(), n);
    assert.ok(a.isFree(0, n));
    const seen = new Set<number>();
    for (let i = 0; i < n; i++) {
      const u = a.alloc(1, 1);
      assert.ok(u >= 0 && u < n, `n=${n}: unit ${u}`);
      assert.ok(!seen.has(u));
      seen.add(u);
    }
    assert.equal(a.find(1, 1), -1);
    assert.equal(a.alloc(1, 1), -1);
    assert.equal(a.freeUnits(), 0);
    assert.equal(a.largestFreeRun(), 0);
    assert.deepEqual(runsOf(a), []);
    assert.ok(a.isUsed(0, n));
    assert.deepEqual(a.checkSummaries(), []);
  }
});

test('unitCount 1: one unit, any alignment; count 2 is out of range', () => {
  const { a } = fresh(1);
  assert.equal(a.find(1, 2 ** 20), 0);
  assert.equal(a.alloc(1, 1), 0);
  assert.equal(a.alloc(1, 1), -1);
  a.markFree(0, 1);
  assert.equal(a.alloc(1, 2 ** 32), 0);
  assert.throws(() => a.find(2, 1), RangeError);
});

test('whole-pool runs at 31, 32, 33 and 1025 units; a run never includes the tail', () => {
  for (const n of [31, 32, 33, 1025]) {
    const { a } = fresh(n);
    assert.equal(a.alloc(n, 1), 0, `n=${n}`);
    assert.equal(a.freeUnits(), 0);
    a.markFree(0, n);
    assert.equal(a.alloc(n - 1, 1), 0);
    assert.equal(a.find(2, 1), -1, `n=${n}: only the last unit is free`);
    assert.equal(a.find(1, 1), n - 1);
    a.markFree(0, n - 1);
    assert.equal(a.find(n, 2 ** 10), 0);
  }
});

test('align 1 .. 2^20 returns aligned starts, and finds the only aligned spot', () => {
  const n = 2 ** 21 + 77;
  const { a } = fresh(n);
  for (let k = 0; k <= 20; k++) {
    const align = 2 ** k;
    const s = a.alloc(3, align);
    assert.ok(s >= 0 && s % align === 0, `align ${align}: ${s}`);
    assert.ok(a.isUsed(s, 3));
  }
  assert.deepEqual(a.checkSummaries(), []);
  // Only [2^20 - 5, 2^20 + 40) free: align 2^20 fits only at 2^20.
  const b = onlyFree(n, [[2 ** 20 - 5, 45]]);
  assert.equal(b.find(40, 2 ** 20), 2 ** 20);
  assert.equal(b.find(41, 2 ** 20), -1);
  assert.equal(b.find(45, 1), 2 ** 20 - 5);
  assert.equal(b.find(44, 2), 2 ** 20 - 4);
  assert.equal(b.find(44, 4), 2 ** 20 - 4);
  assert.equal(b.find(44, 8), -1);
  assert.equal(b.find(1, 2 ** 21), -1);
});

test('small runs crossing a word boundary', () => {
  const a = onlyFree(1025, [[30, 5]]);
  assert.equal(a.find(5, 1), 30);
  assert.equal(a.find(5, 2), 30);
  assert.equal(a.find(4, 4), -1); // 32..35 is not all free
  assert.equal(a.find(3, 4), 32);
  assert.equal(a.find(2, 32), 32);
  assert.equal(a.find(6, 1), -1);
  assert.equal(a.alloc(5, 1), 30);
  assert.equal(a.freeUnits(), 0);
  // A crossing run of more than 32 units (33 .. 64) between two partial words.
  const b = onlyFree(1025, [[40, 50]]); // words 1 (bits 8..31) and 2 (bits 0..25)
  assert.equal(b.find(50, 1), 40);
  assert.equal(b.find(49, 16), -1);
  assert.equal(b.find(42, 16), 48);
  assert.equal(b.find(43, 16), -1);
  assert.equal(b.find(33, 8), 40);
});

test('a failed candidate resumes right after its used unit: the next run may begin in that same word', () => {
  // Word 10 free; word 11 used only at unit 352; word 12 free; word 13
  // free up to 419. The first candidate (word 10) fails at 352; the only
  // fit of 67, [353, 420), begins in word 11 and spans three words.
  const a = onlyFree(1025, [[320, 32], [353, 67]]);
  assert.equal(a.find(67, 1), 353);
  assert.equal(a.find(68, 1), -1);
  assert.equal(a.find(60, 8), 360);
  assert.equal(a.find(32, 32), 320);
  assert.equal(a.find(36, 32), 384);
  assert.equal(a.find(37, 32), -1);
});

test('runs crossing a summary-word boundary (1024 units) and spanning many words', () => {
  const n = 40_000; // three summary levels: 1250 leaf words, 40, 2, 1
  assert.equal(allocatorGeometry(n).levels, 3);
  const a = onlyFree(n, [[1000, 100], [5000, 30_000]]);
  assert.equal(a.find(100, 4), 1000);
  assert.equal(a.find(101, 1), 5000);
  assert.equal(a.find(30_000, 1), 5000);
  assert.equal(a.find(29_000, 1024), 5120);
  assert.equal(a.find(26_000, 4096), 8192);
  assert.equal(a.find(28_000, 4096), -1);
  assert.equal(a.find(30_001, 1), -1);
  assert.equal(a.largestFreeRun(), 30_000);
  assert.deepEqual(runsOf(a), [[1000, 100], [5000, 30_000]]);
  assert.equal(a.alloc(30_000, 8), 5000);
  assert.deepEqual(runsOf(a), [[1000, 100]]);
  assert.deepEqual(a.checkSummaries(), []);
  const deep = onlyFree(70_000, [[32_760, 20], [65_530, 4000]]); // three levels; crosses the level-1 word boundary at 32,768
  assert.equal(allocatorGeometry(70_000).levels, 3);
  assert.equal(deep.find(20, 4), 32_760);
  assert.equal(deep.find(21, 1), 65_530);
  assert.equal(deep.find(3000, 2048), 65_536);
  assert.equal(deep.find(3994, 2048), 65_536);
  assert.equal(deep.find(3995, 2048), -1);
});

test('next-fit: repeated allocations rotate instead of rescanning from 0', () => {
  const { a } = fresh(4096);
  const first = a.alloc(1, 1);
  a.markFree(first, 1);
  const second = a.alloc(1, 1);
  assert.equal(second, first, 'the rotor word still has the freed unit');
  const x = a.alloc(100, 1);
  const y = a.alloc(100, 1);
  assert.ok(y > x);
  a.markFree(x, 100);
  assert.ok(a.alloc(100, 1) > y, 'large requests continue after the last one');
});

test('find reads a few words through the summaries, not the bitmap, when the only fit is far from the rotor', () => {
  // 2^20 units: 32,768 leaf words, three summary levels. Each pool is used everywhere but the
  // runs listed, at the far end from the rotor; a search that walked the leaf words (first-fit
  // over the bitmap, exact but O(pool size)) would load tens of thousands of words per find.
  const n = 2 ** 20;
  const cases: { free: [number, number][]; finds: [number, number, number][] }[] = [
    { free: [[n - 1, 1]], finds: [[1, 1, n - 1], [1, 2 ** 19, -1]] },
    { free: [[n - 70, 3], [n - 40, 9]], finds: [[9, 1, n - 40], [8, 8, n - 40], [3, 1, n - 70], [2, 2, n - 70], [10, 1, -1]] },
    { free: [[n - 96, 64]], finds: [[1, 1, n - 96], [20, 1, n - 96], [32, 32, n - 96], [40, 1, n - 96], [64, 32, n - 96], [50, 16, n - 96], [65, 1, -1]] },
    { free: [[n / 2 + 5, 20_000]], finds: [[20_000, 1, n / 2 + 5], [19_000, 1024, -1], [100, 64, n / 2 + 64], [1, 4096, n / 2 + 4096]] },
  ];
  for (const { free, finds } of cases) {
    const { a, store } = fresh(n);
    a.markUsed(0, n);
    for (const [s, c] of free) a.markFree(s, c);
    let loads = 0;
    const counting = new BitmapAllocator({ load: (i) => (loads++, store.load(i)), store: (i, v) => store.store(i, v) }, n);
    for (const [count, align, expected] of finds) {
      loads = 0;
      assert.equal(counting.find(count, align), expected, `find(${count}, ${align}) with ${JSON.stringify(free)} free`);
      assert.ok(loads <= 64, `find(${count}, ${align}) with ${JSON.stringify(free)} free loaded ${loads} words`);
    }
  }
});

test('a small request aligned past a word examines a few words near the rotor, not every partly used word', () => {
  // Even words full, odd words partly used (one used unit each): for align 64 only even
  // words qualify, and every odd word is a non-full word the near scan passes over. The one
  // fit is the entirely free even word near the end, which the part tree names at once.
  const words = 20_000;
  const n = words * 32;
  const { a, store } = fresh(n);
  const free = words - 2;
  for (let w = 0; w < words; w++) {
    if (w === free) continue;
    if (w % 2 === 0) a.markUsed(w * 32, 32);
    else a.markUsed(w * 32 + 16, 1);
  }
  let loads = 0;
  const counting = new BitmapAllocator({ load: (i) => (loads++, store.load(i)), store: (i, v) => store.store(i, v) }, n);
  assert.equal(counting.find(1, 64), free * 32);
  assert.ok(loads < 200, `find(1, 64) loaded ${loads} words of ${store.words.length}`);
  // When the only fit is in a partly used aligned word, the exhaustive pass still finds it.
  a.markUsed(free * 32 + 8, 24);
  assert.equal(counting.find(8, 64), free * 32);
  assert.equal(counting.find(9, 64), -1);
});

test('find does not change state', () => {
  const { a, store } = fresh(5000);
  a.markUsed(10, 500);
  a.markUsed(3000, 7);
  const before = store.words.slice();
  for (const [c, al] of [[1, 1], [7, 4], [40, 1], [64, 64], [2000, 2048], [4991, 1]]) a.find(c, al);
  assert.deepEqual(store.words, before);
});

test('bad input throws RangeError and changes nothing', () => {
  const { a, store } = fresh(100);
  a.markUsed(5, 5);
  const before = store.words.slice();
  for (const count of [0, -1, NaN, 1.5, 101, Infinity]) {
    assert.throws(() => a.find(count, 1), RangeError, `find count ${count}`);
    assert.throws(() => a.alloc(count, 1), RangeError, `alloc count ${count}`);
  }
  for (const align of [0, -2, 3, 6, 1.5, NaN, Infinity, 2 ** 33]) {
    assert.throws(() => a.find(1, align), RangeError, `align ${align}`);
  }
  for (const [s, c] of [[-1, 1], [0, 0], [100, 1], [99, 2], [1.5, 1], [NaN, 1], [0, -3]]) {
    for (const op of ['markUsed', 'markFree', 'isFree', 'isUsed'] as const) {
      assert.throws(() => a[op](s, c), RangeError, `${op}(${s}, ${c})`);
    }
  }
  assert.match(String(assertThrows(() => a.find(0, 1))), /count must be an integer in 1 \.\. 100/);
  assert.deepEqual(store.words, before);
});

function assertThrows(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail('expected a throw');
}

test('markUsed on a used unit and markFree on a free unit are refused whole, before any store', () => {
  const { a, store } = fresh(300);
  a.markUsed(40, 100);
  const before = store.words.slice();
  assert.throws(() => a.markUsed(0, 41), /markUsed\(0, 41\): unit 40 is already used/);
  assert.throws(() => a.markUsed(139, 1), /unit 139 is already used/);
  assert.throws(() => a.markFree(30, 20), /markFree\(30, 20\): unit 30 is already free/);
  assert.throws(() => a.markFree(100, 41), /unit 140 is already free/);
  assert.deepEqual(store.words, before);
  assert.equal(a.isFree(0, 40), true);
  assert.equal(a.isFree(0, 41), false);
  assert.equal(a.isUsed(40, 100), true);
  assert.equal(a.isUsed(40, 101), false);
});

test('state lives only in the store: a second allocator attached to it sees the same pool', () => {
  const { a, store } = fresh(3000);
  const runs: number[] = [];
  for (let i = 0; i < 50; i++) runs.push(a.alloc(1 + (i % 37), 2 ** (i % 6)));
  a.markFree(runs[3], 1 + 3);
  const b = new BitmapAllocator(store, 3000);
  assert.equal(b.freeUnits(), a.freeUnits());
  assert.deepEqual(runsOf(b), runsOf(a));
  assert.deepEqual(b.checkSummaries(), []);
  const s = b.alloc(64, 64);
  assert.ok(a.isUsed(s, 64));
});

test('reset clears to all free; rebuildSummaries leaves a consistent state untouched', () => {
  const { a, store } = fresh(2000);
  a.alloc(700, 1);
  a.alloc(3, 1);
  const before = store.words.slice();
  let stores = 0;
  const counting = new BitmapAllocator(
    { load: (i) => store.load(i), store: (i, v) => (stores++, store.store(i, v)) } satisfies WordStore,
    2000,
  );
  counting.rebuildSummaries();
  assert.equal(stores, 0);
  assert.deepEqual(store.words, before);
  a.reset();
  assert.equal(a.freeUnits(), 2000);
  assert.deepEqual(runsOf(a), [[0, 2000]]);
  assert.deepEqual(store.words, fresh(2000).store.words);
});

test('checkSummaries names the broken word; rebuildSummaries repairs header, tail, trees and counter', () => {
  const n = 5000;
  const { a, store } = fresh(n);
  a.alloc(1000, 1);
  a.alloc(33, 1);
  const g = allocatorGeometry(n);
  const good = store.words.slice();

  store.store(g.fullOffsets[0] + 1, store.load(g.fullOffsets[0] + 1) ^ 4);
  assert.match(a.checkSummaries().join('\n'), /full summary level 0 word 1: stored/);
  a.rebuildSummaries();
  assert.deepEqual(store.words, good);

  store.store(g.partOffsets[1], store.load(g.partOffsets[1]) ^ 0x80000000); // a padding bit
  assert.match(a.checkSummaries().join('\n'), /part summary level 1 word 0/);
  a.rebuildSummaries();
  assert.deepEqual(store.words, good);

  store.store(HEADER_USED_UNITS, 7);
  assert.match(a.checkSummaries().join('\n'), /used-unit counter is 7, the leaf bitmap has 1033/);
  store.store(0, 4999);
  assert.match(a.checkSummaries().join('\n'), /unit count is 4999, expected 5000/);
  const last = g.leafOffset + g.leafWords - 1;
  store.store(last, 0); // clears the tail bits (5000 % 32 = 8 valid)
  assert.match(a.checkSummaries().join('\n'), /tail bits beyond unit 5000/);
  a.rebuildSummaries();
  assert.deepEqual(store.words, good);
  assert.deepEqual(a.checkSummaries(), []);
});

test('a crash between any two stores of an operation leaves state that rebuildSummaries repairs', () => {
  // Record the stores of each operation, replay every prefix onto a copy, repair, check.
  for (const [n, every] of [[3000, false], [70_000, true]] as const) crashEveryStore(n, every);
});

/** Replays every prefix (or, when `sampled`, about 40 prefixes) of each operation's stores. */
function crashEveryStore(n: number, sampled: boolean): void {
  const ops: ((a: BitmapAllocator) => void)[] = [
    (a) => a.markUsed(0, n), // every level changes
    (a) => a.markFree(1000, n - 2000),
    (a) => assert.ok(a.alloc(1, 1) >= 0),
    (a) => assert.ok(a.alloc(Math.floor(n / 4), 256) >= 0),
    (a) => a.markFree(0, 1000),
  ];
  const { store } = fresh(n);
  let log: [number, number][] = [];
  const logging: WordStore = {
    load: (i) => store.load(i),
    store: (i, v) => {
      log.push([i, v]);
      store.store(i, v);
    },
  };
  const a = new BitmapAllocator(logging, n);
  for (const op of ops) {
    const before = store.words.slice();
    log = [];
    op(a);
    const after = store.words.slice();
    const stepCount = log.length;
    // Leaf words (the truth) are written first, the counter last.
    const g = a.geometry;
    const isLeaf = (i: number): boolean => i >= g.leafOffset && i < g.leafOffset + g.leafWords;
    const firstDerived = log.findIndex(([i]) => !isLeaf(i));
    assert.ok(firstDerived > 0 && log.slice(firstDerived).every(([i]) => !isLeaf(i)), 'leaf stores precede summary stores');
    assert.equal(log[log.length - 1][0], HEADER_USED_UNITS, 'the counter is stored last');
    const stride = sampled ? Math.max(1, Math.floor(stepCount / 40)) : 1;
    for (let k = 0; k <= stepCount; k += stride) {
      const copy = new ArrayWordStore(before.slice());
      for (let i = 0; i < k; i++) copy.store(log[i][0], log[i][1]);
      const b = new BitmapAllocator(copy, n);
      b.rebuildSummaries();
      assert.deepEqual(b.checkSummaries(), [], `after ${k} of ${stepCount} stores`);
    }
    // The complete operation needs no repair.
    const whole = new ArrayWordStore(after);
    assert.deepEqual(new BitmapAllocator(whole, n).checkSummaries(), []);
  }
}

test('stale summaries may mislead a search but never hand out a used unit', () => {
  const n = 4096;
  const { a, store } = fresh(n);
  a.markUsed(0, n);
  a.markFree(2048, 32); // leaf word 64 free
  a.markFree(2112, 32); // leaf word 66 free; word 65 between them used
  const g = allocatorGeometry(n);
  // Lie: claim leaf word 65 is entirely free. A search skips inner words
  // through that summary, so it proposes [2048, 2144) ...
  store.store(g.partOffsets[0] + 2, store.load(g.partOffsets[0] + 2) & ~(1 << 1));
  assert.equal(a.find(96, 32), 2048);
  // ... but markUsed checks the leaf words themselves and refuses, writing nothing.
  const before = store.words.slice();
  assert.throws(() => a.alloc(96, 32), /markUsed\(2048, 96\): unit 2080 is already used/);
  assert.deepEqual(store.words, before, 'nothing was written');
  a.rebuildSummaries();
  assert.equal(a.find(96, 32), -1);
  assert.equal(a.alloc(32, 32), 2048);
});
