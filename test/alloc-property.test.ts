/**
 * Property tests of the allocator against a naive model: a plain array of
 * booleans searched first-fit. After every operation the allocator's view
 * must equal the model's, find must fail exactly when the model finds no
 * fitting aligned run, and the summaries must check clean.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ArrayWordStore, BitmapAllocator, allocatorGeometry } from '../src/alloc/index.js';

class Model {
  readonly used: Uint8Array;
  constructor(readonly n: number) {
    this.used = new Uint8Array(n);
  }
  allFree(s: number, c: number): boolean {
    for (let i = s; i < s + c; i++) if (this.used[i]) return false;
    return true;
  }
  allUsed(s: number, c: number): boolean {
    for (let i = s; i < s + c; i++) if (!this.used[i]) return false;
    return true;
  }
  set(s: number, c: number, v: number): void {
    this.used.fill(v, s, s + c);
  }
  /** First fit: the lowest aligned start of `c` free units, or -1. */
  firstFit(c: number, align: number): number {
    for (let s = 0; s + c <= this.n; s += align) {
      let i = s;
      while (i < s + c && !this.used[i]) i++;
      if (i === s + c) return s;
      s = Math.floor(i / align) * align; // resume at the aligned start at or before the used unit
    }
    return -1;
  }
  freeCount(): number {
    let f = 0;
    for (let i = 0; i < this.n; i++) f += this.used[i] ? 0 : 1;
    return f;
  }
  runs(): [number, number][] {
    const out: [number, number][] = [];
    for (let i = 0; i < this.n; ) {
      if (this.used[i]) {
        i++;
        continue;
      }
      let j = i;
      while (j < this.n && !this.used[j]) j++;
      out.push([i, j - i]);
      i = j;
    }
    return out;
  }
}

type Op =
  | { kind: 'alloc'; count: number; align: number }
  | { kind: 'find'; count: number; align: number }
  | { kind: 'release'; pick: number }
  | { kind: 'markUsed'; at: number; count: number }
  | { kind: 'markFree'; at: number; count: number };

const countArb = fc.oneof(
  { arbitrary: fc.integer({ min: 1, max: 4 }), weight: 3 },
  { arbitrary: fc.integer({ min: 1, max: 40 }), weight: 4 },
  { arbitrary: fc.integer({ min: 30, max: 70 }), weight: 3 },
  { arbitrary: fc.integer({ min: 60, max: 3000 }), weight: 2 },
);
const alignArb = fc.oneof(
  { arbitrary: fc.constant(1), weight: 3 },
  { arbitrary: fc.integer({ min: 0, max: 12 }).map((k) => 2 ** k), weight: 4 },
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('alloc' as const), count: countArb, align: alignArb }), weight: 5 },
  { arbitrary: fc.record({ kind: fc.constant('find' as const), count: countArb, align: alignArb }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('markUsed' as const), at: fc.nat(), count: countArb }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('markFree' as const), at: fc.nat(), count: countArb }), weight: 1 },
);

/**
 * How the pool starts: all free, or filled by a seeded pattern at some
 * density. meanRun > 0: alternating runs of mean length meanRun. meanRun 0:
 * word-shaped, each 32-unit word empty, full, or used only at its low end,
 * high end or at random bits, which puts many runs' edges at word edges.
 */
interface Fill {
  seed: number;
  density: number;
  meanRun: number;
}
const fillArb: fc.Arbitrary<Fill> = fc.record({
  seed: fc.integer(),
  density: fc.constantFrom(0, 0.3, 0.6, 0.9, 0.97),
  meanRun: fc.constantFrom(0, 0, 1, 3, 40, 300),
});

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface World {
  a: BitmapAllocator;
  store: ArrayWordStore;
  model: Model;
  live: [number, number][];
}

function makeWorld(n: number, fill: Fill): World {
  const store = new ArrayWordStore(new Uint32Array(allocatorGeometry(n).wordCount).fill(0x5a5a5a5a));
  const a = BitmapAllocator.format(store, n);
  const model = new Model(n);
  const live: [number, number][] = [];
  const rnd = prng(fill.seed);
  const use = (s: number, c: number): void => {
    if (c <= 0) return;
    a.markUsed(s, c);
    model.set(s, c, 1);
    live.push([s, c]);
  };
  if (fill.meanRun === 0) {
    for (let w = 0; w * 32 < n; w++) {
      const base = w * 32;
      const size = Math.min(32, n - base);
      if (rnd() >= fill.density) continue; // entirely free
      const shape = Math.floor(rnd() * 4);
      const cut = Math.floor(rnd() * (size + 1));
      if (shape === 0) use(base, size);
      else if (shape === 1) use(base, cut); // low end used, top free
      else if (shape === 2) use(base + cut, size - cut); // high end used, bottom free
      else for (let i = 0; i < size; i++) if (rnd() < 0.5) use(base + i, 1);
    }
    return { a, store, model, live };
  }
  // Alternate runs of used and free units with mean length meanRun; used runs take `density` of the units.
  for (let i = 0; i < n; ) {
    const len = Math.min(n - i, 1 + Math.floor(rnd() * 2 * fill.meanRun));
    if (rnd() < fill.density) use(i, len);
    i += len;
  }
  return { a, store, model, live };
}

function apply(w: World, op: Op): void {
  const { a, model, live } = w;
  const n = model.n;
  switch (op.kind) {
    case 'alloc':
    case 'find': {
      const count = Math.min(op.count, n);
      const expected = model.firstFit(count, op.align);
      const before = op.kind === 'find' ? w.store.words.slice() : null;
      const got = op.kind === 'alloc' ? a.alloc(count, op.align) : a.find(count, op.align);
      assert.equal(got < 0, expected < 0, `${op.kind}(${count}, ${op.align}) = ${got}, model first fit ${expected}`);
      if (got >= 0) {
        assert.equal(got % op.align, 0, 'aligned');
        assert.ok(got + count <= n, 'inside the pool');
        assert.ok(model.allFree(got, count), `${op.kind}(${count}, ${op.align}) = ${got} is not free`);
      }
      if (before) assert.deepEqual(w.store.words, before, 'find changed state');
      else if (got >= 0) {
        model.set(got, count, 1);
        live.push([got, count]);
      }
      return;
    }
    case 'release': {
      if (live.length === 0) return;
      const [s, c] = live.splice(op.pick % live.length, 1)[0];
      a.markFree(s, c);
      model.set(s, c, 0);
      return;
    }
    case 'markUsed':
    case 'markFree': {
      const s = op.at % n;
      const c = Math.min(op.count, n - s);
      const ok = op.kind === 'markUsed' ? model.allFree(s, c) : model.allUsed(s, c);
      const before = w.store.words.slice();
      if (ok) {
        a[op.kind](s, c);
        model.set(s, c, op.kind === 'markUsed' ? 1 : 0);
        if (op.kind === 'markUsed') live.push([s, c]);
        else {
          // Drop live records that now overlap free units (they are no longer whole allocations).
          for (let i = live.length - 1; i >= 0; i--) if (!model.allUsed(live[i][0], live[i][1])) live.splice(i, 1);
        }
      } else {
        assert.throws(() => a[op.kind](s, c), /already (used|free)/);
        assert.deepEqual(w.store.words, before, `refused ${op.kind} wrote nothing`);
      }
      return;
    }
  }
}

function assertAgrees(w: World, where: string): void {
  assert.deepEqual(w.a.checkSummaries(), [], `summaries after ${where}`);
  assert.equal(w.a.freeUnits(), w.model.freeCount(), `freeUnits after ${where}`);
  assert.deepEqual(
    [...w.a.freeRuns()].map((r) => [r.start, r.count]),
    w.model.runs(),
    `free runs after ${where}`,
  );
}

function runProperty(sizeArb: fc.Arbitrary<number>, maxOps: number, numRuns: number): void {
  fc.assert(
    fc.property(sizeArb, fillArb, fc.array(opArb, { minLength: Math.floor(maxOps / 2), maxLength: maxOps, size: 'max' }), (n, fill, ops) => {
      const w = makeWorld(n, fill);
      assertAgrees(w, 'fill');
      ops.forEach((op, i) => {
        apply(w, op);
        assertAgrees(w, `op ${i} ${JSON.stringify(op)}`);
      });
      const largest = w.model.runs().reduce((m, [, c]) => Math.max(m, c), 0);
      assert.equal(w.a.largestFreeRun(), largest);
      // Some used units counted free as well (a pool's cached units): against the model with them freed.
      const alsoFree: number[] = [];
      for (let u = 0; u < n; u++) if (w.model.used[u] && Math.imul(u ^ fill.seed, 0x9e3779b1) >>> 29 < 3) alsoFree.push(u);
      const counted = new Set(alsoFree);
      let longest = 0;
      for (let u = 0, run = 0; u < n; u++) longest = Math.max(longest, (run = w.model.used[u] && !counted.has(u) ? 0 : run + 1));
      assert.equal(w.a.largestFreeRunWith(alsoFree), longest, `with ${alsoFree.length} used units counted free`);
      assert.equal(w.a.largestFreeRunWith([]), largest);
    }),
    { numRuns },
  );
}

test('property: agrees with a first-fit model at small and word-edge sizes', () => {
  runProperty(fc.constantFrom(1, 2, 31, 32, 33, 63, 64, 65, 97, 1024, 1025), 60, 400);
});

test('property: agrees with a first-fit model at sizes of 1 .. 5000 (two summary levels)', () => {
  runProperty(fc.integer({ min: 1, max: 5000 }), 60, 400);
});

test('property: agrees with a first-fit model at 33,000 .. 70,000 units (three summary levels)', () => {
  runProperty(fc.integer({ min: 33_000, max: 70_000 }), 30, 40);
});

test('property: find is exact in heavily fragmented pools (small and large, any alignment)', () => {
  // Only find: every (count, align) against a fixed fragmented pool.
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 6000 }),
      fc.record({ seed: fc.integer(), density: fc.constantFrom(0.5, 0.8, 0.9, 0.97), meanRun: fc.constantFrom(0, 0, 0, 1, 2, 20) }),
      fc.array(fc.record({ count: countArb, align: alignArb }), { minLength: 10, maxLength: 40, size: 'max' }),
      (n, fill, queries) => {
        const w = makeWorld(n, fill);
        for (const q of queries) apply(w, { kind: 'find', ...q });
      },
    ),
    { numRuns: 600 },
  );
});

test('corruption: any flipped summary or header bit is reported, and rebuildSummaries repairs it', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 5000 }),
      fillArb,
      fc.array(opArb, { maxLength: 10, size: 'max' }),
      fc.nat(),
      fc.integer({ min: 0, max: 31 }),
      (n, fill, ops, where, bit) => {
        const w = makeWorld(n, fill);
        for (const op of ops) apply(w, op);
        const g = w.a.geometry;
        // Every word but the leaf bitmap: header, then both trees.
        const derived = 2 + (g.wordCount - g.leafOffset - g.leafWords);
        const k = where % derived;
        const index = k < 2 ? k : g.leafOffset + g.leafWords + (k - 2);
        const leaf = w.store.words.slice(g.leafOffset, g.leafOffset + g.leafWords);
        w.store.store(index, (w.store.load(index) ^ (1 << bit)) >>> 0);
        assert.notDeepEqual(w.a.checkSummaries(), [], `flip of bit ${bit} of word ${index} went unreported`);
        w.a.rebuildSummaries();
        assert.deepEqual(w.store.words.slice(g.leafOffset, g.leafOffset + g.leafWords), leaf, 'repair keeps the leaf bitmap');
        assertAgrees(w, 'repair');
      },
    ),
    { numRuns: 300 },
  );
});

test('corruption: a flipped leaf bit is reported; repair trusts the leaf bitmap', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5000 }), fillArb, fc.nat(), (n, fill, where) => {
      const w = makeWorld(n, fill);
      const unit = where % n;
      const g = w.a.geometry;
      const index = g.leafOffset + Math.floor(unit / 32);
      w.store.store(index, (w.store.load(index) ^ (1 << unit % 32)) >>> 0);
      w.model.used[unit] ^= 1;
      assert.notDeepEqual(w.a.checkSummaries(), []);
      w.a.rebuildSummaries();
      assertAgrees(w, 'repair');
    }),
    { numRuns: 150 },
  );
});
