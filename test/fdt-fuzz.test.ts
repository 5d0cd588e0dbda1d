/**
 * Property tests (fast-check): random trees round-trip exactly, and random
 * damage to valid blobs — bit flips, truncations, edits of lengths and
 * offsets, claimed sizes of gigabytes, strings with no NUL — either parses
 * or throws FdtError: never another exception, never a hang, and never a
 * read outside the buffer (the validator runs over a buffer that throws on
 * any out-of-range index).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import fc from 'fast-check';
import { Fdt, FdtError, checkFdt } from '../src/fdt/index.js';
import type { FdtValue } from '../src/fdt/index.js';
import { fdtArbitrary } from './support/fdt-arbitrary.js';

const VECTORS = new URL('../../test/fixtures/fdt-vectors/', import.meta.url);

// ---- random trees: any byte-string names (but '/', NUL), any values, duplicates of nothing.

const byteChar = (min: number): fc.Arbitrary<string> => fc.integer({ min, max: 0xff }).map((c) => String.fromCharCode(c));
/** Node names: any bytes except NUL, '/' and '@' (so each name only matches itself in a path). */
const nodeName = fc.string({ unit: byteChar(1).filter((c) => c !== '/' && c !== '@'), minLength: 1, maxLength: 12 });
const propName = fc.string({ unit: byteChar(1), minLength: 1, maxLength: 12 }).filter((n) => n !== 'name');
const value: fc.Arbitrary<FdtValue> = fc.oneof(
  fc.uint8Array({ maxLength: 40 }),
  fc.string({ maxLength: 12 }).map((s) => s.replace(/\0/g, '')),
  fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 6 }),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);

const treeArb: fc.Arbitrary<Fdt> = fdtArbitrary({ nodeName, propName, value });

describe('round trips', () => {
  test('parse(toBytes(tree)) equals the tree; encoding is a fixpoint', () => {
    fc.assert(
      fc.property(treeArb, (fdt) => {
        const bytes = fdt.toBytes();
        const back = Fdt.parse(bytes);
        assert.ok(back.equals(fdt));
        assert.deepEqual(back.toBytes(), bytes);
      }),
      { numRuns: 1000 },
    );
  });

  test('with free space and version 16, the tree is the same', () => {
    fc.assert(
      fc.property(treeArb, fc.integer({ min: 0, max: 300 }), fc.constantFrom<16 | 17>(16, 17), (fdt, freeSpace, version) => {
        const bytes = fdt.toBytes({ freeSpace, version, reserveSlots: freeSpace % 3 });
        assert.ok(Fdt.parse(bytes).equals(fdt));
      }),
      { numRuns: 100 },
    );
  });

  test('clone and copyNode leave the source untouched whatever is edited', () => {
    fc.assert(
      fc.property(treeArb, treeArb, (a, b) => {
        const snapshot = a.toBytes();
        const c = a.clone();
        c.copyNode(b, '/', '/grafted');
        c.set('/', 'edited', 1);
        for (const child of c.children('/')) c.remove(`/${child}`);
        assert.deepEqual(a.toBytes(), snapshot);
        assert.ok(Fdt.parse(snapshot).equals(a));
      }),
      { numRuns: 100 },
    );
  });
});

// ---- damage

/** Valid blobs to damage: the vectors that parse, and generated trees. */
const seedBlobs: Uint8Array[] = [...['valid', 'derived'].flatMap((d) =>
  readdirSync(new URL(`${d}/`, VECTORS))
    .filter((f) => f.endsWith('.dtb'))
    .map((f) => new Uint8Array(readFileSync(new URL(`${d}/${f}`, VECTORS)))),
)].filter((b) => {
  try {
    Fdt.parse(b);
    return true;
  } catch {
    return false;
  }
});

const blobArb = fc.oneof(fc.constantFrom(...seedBlobs), treeArb.map((t) => t.toBytes()));

/** 32-bit values that break lengths and offsets: edges, gigabytes, small shifts. */
const nastyU32 = fc.oneof(
  fc.constantFrom(0, 1, 3, 4, 7, 8, 0x7ffffffc, 0x7fffffff, 0x80000000, 0xfffffffc, 0xffffffff, 0x40000000, 0x10000000),
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.integer({ min: 0, max: 4096 }),
);

type Mutation = (b: Uint8Array) => Uint8Array;

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  // Flip bits anywhere.
  fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 6 }).map((flips) => (b: Uint8Array) => {
    const c = b.slice();
    for (const [at, bit] of flips) c[at % c.length] ^= 1 << bit;
    return c;
  }),
  // Cut the blob short, anywhere.
  fc.nat().map((n) => (b: Uint8Array) => b.slice(0, n % (b.length + 1))),
  // Overwrite an aligned word (a header field, a token, a length, a name offset) with a nasty value.
  fc.tuple(fc.nat(), nastyU32).map(([at, v]) => (b: Uint8Array) => {
    const c = b.slice();
    const off = ((at % c.length) & ~3) >>> 0;
    if (off + 4 <= c.length) new DataView(c.buffer).setUint32(off, v >>> 0);
    return c;
  }),
  // Nudge a header field (offsets, sizes, version) by a little.
  fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: -16, max: 16 })).map(([field, delta]) => (b: Uint8Array) => {
    const c = b.slice();
    if (field * 4 + 4 > c.length) return c;
    const dv = new DataView(c.buffer);
    dv.setUint32(field * 4, (dv.getUint32(field * 4) + delta) >>> 0);
    return c;
  }),
  // Replace every NUL of the strings block's tail: names with no terminator.
  fc.integer({ min: 1, max: 32 }).map((n) => (b: Uint8Array) => {
    const c = b.slice();
    for (let i = Math.max(0, c.length - n); i < c.length; i++) if (c[i] === 0) c[i] = 0x41;
    return c;
  }),
  // Append garbage (beyond totalsize, or claimed by an enlarged totalsize).
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map((extra) => (b: Uint8Array) => {
    const c = new Uint8Array(b.length + extra.length);
    c.set(b);
    c.set(extra, b.length);
    return c;
  }),
);

const KNOWN_CODES = new Set(['TRUNCATED', 'BADMAGIC', 'BADVERSION', 'BADSTRUCTURE', 'BADOFFSET', 'ALIGNMENT']);

/** Parses, and checks the outcome is a tree that re-encodes, or an FdtError of a validation code with an offset. */
function parseOrRefuse(bytes: Uint8Array): Fdt | FdtError {
  let fdt: Fdt;
  try {
    fdt = Fdt.parse(bytes);
  } catch (e) {
    assert.ok(e instanceof FdtError, `not an FdtError: ${String(e)}`);
    assert.ok(KNOWN_CODES.has(e.code), `unexpected code ${e.code}`);
    assert.ok(e.offset !== undefined && e.offset >= 0 && e.offset <= Math.max(bytes.length, 0x7fffffff), 'an offset in the blob');
    return e;
  }
  const again = Fdt.parse(fdt.toBytes({ keepNameProperties: true }));
  assert.ok(again.equals(fdt), 'whatever parses re-encodes to the same tree');
  return fdt;
}

/** A view that throws on any index outside [0, length): reading past the buffer becomes visible. */
function guarded(bytes: Uint8Array): Uint8Array {
  return new Proxy(bytes, {
    get(target, key) {
      if (typeof key === 'string' && /^-?\d/.test(key)) {
        const i = Number(key);
        if (!Number.isInteger(i) || i < 0 || i >= target.length) throw new RangeError(`read at index ${key} of ${target.length}`);
        return target[i];
      }
      const v: unknown = Reflect.get(target, key, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/** checkFdt's verdict as a comparable string. */
function verdict(run: () => unknown): string {
  try {
    run();
    return 'ok';
  } catch (e) {
    if (e instanceof FdtError) return `${e.code}@${e.offset}`;
    throw e;
  }
}

describe('damaged blobs', () => {
  test('parse or FdtError, never anything else', { timeout: 60_000 }, () => {
    fc.assert(
      fc.property(blobArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (blob, mutations) => {
        parseOrRefuse(mutations.reduce((b, m) => m(b), blob));
      }),
      { numRuns: 20_000 },
    );
  });

  test('validation never reads outside the buffer, and the buffer\'s surroundings change nothing', { timeout: 60_000 }, () => {
    fc.assert(
      fc.property(blobArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }), fc.uint8Array({ minLength: 1, maxLength: 16 }), (blob, mutations, junk) => {
        const bytes = mutations.reduce((b, m) => m(b), blob);
        const exact = verdict(() => checkFdt(bytes));
        assert.equal(verdict(() => checkFdt(guarded(bytes))), exact);
        // The same bytes as a view in the middle of a larger buffer full of junk.
        const big = new Uint8Array(bytes.length + 2 * junk.length);
        big.set(junk, 0);
        big.set(bytes, junk.length);
        big.set(junk, junk.length + bytes.length);
        const view = big.subarray(junk.length, junk.length + bytes.length);
        assert.equal(verdict(() => checkFdt(view)), exact);
        assert.equal(verdict(() => Fdt.parse(view)), verdict(() => Fdt.parse(bytes)));
      }),
      { numRuns: 3000 },
    );
  });

  test('claimed sizes of gigabytes in every length and offset field', () => {
    const base = seedBlobs[0];
    for (const field of [1, 2, 3, 4, 8, 9]) {
      for (const v of [0x7fffffff, 0x80000000, 0xfffffff8, 0x40000000]) {
        const c = base.slice();
        new DataView(c.buffer).setUint32(field * 4, v);
        const e = parseOrRefuse(c);
        assert.ok(e instanceof FdtError, `field ${field} = ${v} must be refused`);
      }
    }
  });

  test('a property claiming a gigabyte value, a name offset past the end, a name with no NUL', () => {
    const fdt = new Fdt();
    fdt.set('/', 'p', 1);
    const blob = fdt.toBytes();
    const { header } = checkFdt(blob);
    const prop = header.offDtStruct + 8; // FDT_PROP after the root's BEGIN_NODE and empty name
    const edit = (offset: number, v: number): Uint8Array => {
      const c = blob.slice();
      new DataView(c.buffer).setUint32(offset, v);
      return c;
    };
    assert.equal((parseOrRefuse(edit(prop + 4, 0x40000000)) as FdtError).code, 'BADSTRUCTURE');
    assert.equal((parseOrRefuse(edit(prop + 8, blob.length)) as FdtError).code, 'BADOFFSET');
    const noNul = blob.slice();
    noNul[blob.length - 1] = 0x41; // "p\0" -> "pA"
    assert.equal((parseOrRefuse(noNul) as FdtError).code, 'TRUNCATED');
  });

  test('a deep chain of nodes (20,000 levels, past any recursion limit) parses, writes, compares and lints', () => {
    const depth = 20_000;
    const words: number[] = [];
    for (let i = 0; i < depth + 1; i++) words.push(1, 0); // BEGIN_NODE, empty name (a NUL word)
    for (let i = 0; i < depth + 1; i++) words.push(2);
    words.push(9);
    const struct = new Uint8Array(words.length * 4);
    const sv = new DataView(struct.buffer);
    words.forEach((w, i) => sv.setUint32(i * 4, w));
    const blob = new Uint8Array(56 + struct.length);
    const dv = new DataView(blob.buffer);
    [0xd00dfeed, blob.length, 56, blob.length, 40, 17, 16, 0, 0, struct.length].forEach((v, i) => dv.setUint32(i * 4, v));
    blob.set(struct, 56);
    const fdt = Fdt.parse(blob);
    assert.deepEqual(fdt.toBytes(), blob);
    assert.ok(Fdt.parse(blob).equals(fdt));
    assert.equal(fdt.lint().filter((f) => f.check === 'node_name_format').length, depth);
  });
});
