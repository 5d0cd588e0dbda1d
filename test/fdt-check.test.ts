/**
 * The validation rules of fdt_check_header and fdt_check_full, one by one,
 * on blobs assembled here byte by byte (not by our writer): each refusal
 * has libfdt's code and points at the offending offset.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Fdt, FdtError, checkFdt, checkFdtHeader } from '../src/fdt/index.js';
import { PmpoolError } from '../src/errors.js';
import type { FdtErrorCode } from '../src/fdt/index.js';

const BEGIN = 1;
const END_NODE = 2;
const PROP = 3;
const NOP = 4;
const END = 9;

/** Structure-block words and items: numbers are u32 tokens, strings NUL-terminated names padded to 4. */
type Item = number | string | Uint8Array;

function struct(...items: Item[]): Uint8Array {
  const parts: number[] = [];
  for (const it of items) {
    if (typeof it === 'number') parts.push(it >>> 24, (it >>> 16) & 255, (it >>> 8) & 255, it & 255);
    else {
      const bytes = typeof it === 'string' ? [...Buffer.from(it + '\0', 'latin1')] : [...it];
      parts.push(...bytes);
      while (parts.length % 4) parts.push(0);
    }
  }
  return new Uint8Array(parts);
}

/** A property item: FDT_PROP, len, nameoff, value padded. */
function prop(nameoff: number, value: Uint8Array | number[] = []): Item[] {
  const v = value instanceof Uint8Array ? value : new Uint8Array(value);
  return v.length ? [PROP, v.length, nameoff, v] : [PROP, 0, nameoff];
}

interface RawBlob {
  version?: number;
  lastComp?: number;
  rsv?: [bigint, bigint][];
  struct: Uint8Array;
  strings?: string;
  /** Bytes appended after the strings block (inside totalsize). */
  tail?: Uint8Array;
}

/** Header (40 bytes, or 32/36 for old versions), reserve map at 40, struct, strings: dtc's order. */
function assemble(raw: RawBlob): Uint8Array {
  const version = raw.version ?? 17;
  const rsv = raw.rsv ?? [];
  const strings = Buffer.from(raw.strings ?? '', 'latin1');
  const tail = raw.tail ?? new Uint8Array(0);
  const offRsv = 40;
  const offStruct = offRsv + (rsv.length + 1) * 16;
  const offStrings = offStruct + raw.struct.length;
  const total = offStrings + strings.length + tail.length;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 0xd00dfeed);
  dv.setUint32(4, total);
  dv.setUint32(8, offStruct);
  dv.setUint32(12, offStrings);
  dv.setUint32(16, offRsv);
  dv.setUint32(20, version);
  dv.setUint32(24, raw.lastComp ?? (version >= 16 ? 16 : 1));
  if (version >= 3) dv.setUint32(32, strings.length);
  if (version >= 17) dv.setUint32(36, raw.struct.length);
  rsv.forEach(([a, s], i) => {
    dv.setBigUint64(offRsv + i * 16, a);
    dv.setBigUint64(offRsv + i * 16 + 8, s);
  });
  out.set(raw.struct, offStruct);
  out.set(strings, offStrings);
  out.set(tail, offStrings + strings.length);
  return out;
}

/** The smallest valid blob: an empty root. */
const EMPTY = () => assemble({ struct: struct(BEGIN, '', END_NODE, END) });

function patch32(bytes: Uint8Array, offset: number, value: number): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setUint32(offset, value >>> 0);
  return copy;
}

function refused(bytes: Uint8Array, code: FdtErrorCode, offset?: number): FdtError {
  let error: unknown;
  try {
    Fdt.parse(bytes);
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof FdtError, `expected FdtError ${code}, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  if (offset !== undefined) assert.equal(error.offset, offset, error.message);
  return error;
}

describe('fdt_check_header', () => {
  test('the empty tree assembled here is valid', () => {
    assert.ok(Fdt.parse(EMPTY()).equals(new Fdt()));
  });

  test('fewer than 28 bytes: TRUNCATED', () => {
    refused(EMPTY().subarray(0, 27), 'TRUNCATED', 27);
    refused(new Uint8Array(0), 'TRUNCATED', 0);
  });

  test('a buffer too short for its version\'s header is TRUNCATED before the magic is looked at', () => {
    const bad = patch32(EMPTY(), 0, 0x12345678).subarray(0, 36); // v17 needs 40
    refused(bad, 'TRUNCATED', 36);
  });

  test('magic: BADMAGIC, also for an unfinished sequential-write blob', () => {
    refused(patch32(EMPTY(), 0, 0xfeedd00d), 'BADMAGIC', 0);
    refused(patch32(EMPTY(), 0, ~0xd00dfeed), 'BADMAGIC', 0);
  });

  test('versions: below 2, last_comp above 17, version below last_comp: BADVERSION', () => {
    refused(patch32(EMPTY(), 20, 1), 'BADVERSION', 20);
    refused(patch32(EMPTY(), 24, 18), 'BADVERSION', 24);
    refused(patch32(patch32(EMPTY(), 20, 16), 24, 17), 'BADVERSION', 20);
  });

  test('a later version compatible with 16 is read', () => {
    const later = patch32(EMPTY(), 20, 20);
    assert.equal(checkFdtHeader(later).version, 20);
    assert.ok(Fdt.parse(later).equals(new Fdt()));
  });

  test('totalsize below the header or above INT_MAX: TRUNCATED', () => {
    refused(patch32(EMPTY(), 4, 39), 'TRUNCATED', 4);
    refused(patch32(EMPTY(), 4, 0x80000000), 'TRUNCATED', 4);
    refused(patch32(EMPTY(), 4, 0xffffffff), 'TRUNCATED', 4);
  });

  test('a buffer shorter than totalsize: TRUNCATED', () => {
    const b = EMPTY();
    refused(b.subarray(0, b.length - 1), 'TRUNCATED', 4);
  });

  test('alignment: reserve map not 8-aligned, structure block not 4-aligned (1.8.x)', () => {
    refused(patch32(EMPTY(), 16, 44), 'ALIGNMENT', 16);
    refused(patch32(EMPTY(), 8, 58), 'ALIGNMENT', 8);
    // libfdt checks the reserve map's alignment first.
    refused(patch32(patch32(EMPTY(), 16, 44), 8, 58), 'ALIGNMENT', 16);
  });

  test('blocks outside [header, totalsize]: TRUNCATED at the field', () => {
    const b = EMPTY();
    refused(patch32(b, 16, 0), 'TRUNCATED', 16); // inside the header
    refused(patch32(b, 16, b.length + 8), 'TRUNCATED', 16);
    refused(patch32(b, 8, b.length + 4), 'TRUNCATED', 36); // v17: struct block checked with its size
    refused(patch32(b, 36, 0xfffffff0), 'TRUNCATED', 36); // a size of gigabytes
    refused(patch32(b, 12, b.length + 4), 'TRUNCATED', 32);
    refused(patch32(b, 32, 0x7fffffff), 'TRUNCATED', 32);
  });

  test('v16: the structure block\'s offset alone is bounded', () => {
    const v16 = assemble({ version: 16, struct: struct(BEGIN, '', END_NODE, END) });
    assert.equal(checkFdtHeader(v16).sizeDtStruct, undefined);
    refused(patch32(v16, 8, v16.length + 4), 'TRUNCATED', 8);
  });
});

describe('the reserve map', () => {
  test('entries up to the first of size 0, whatever its address', () => {
    const b = assemble({
      rsv: [
        [0x1000n, 0x2000n],
        [0xffffffffffffffffn, 1n],
      ],
      struct: struct(BEGIN, '', END_NODE, END),
    });
    assert.deepEqual(Fdt.parse(b).reservations, [
      { address: 0x1000n, size: 0x2000n },
      { address: 0xffffffffffffffffn, size: 1n },
    ]);
    // A terminator with a non-zero address still ends the map.
    const withAddress = b.slice();
    new DataView(withAddress.buffer).setBigUint64(40 + 32, 0x5555n);
    assert.equal(Fdt.parse(withAddress).reservations.length, 2);
  });

  test('no terminating entry before totalsize: TRUNCATED where the next entry would start', () => {
    // The map runs into the structure block, which has no 16 zero bytes... and then off the end.
    const b = assemble({ struct: struct(BEGIN, '', END_NODE, END) });
    const noEnd = b.slice();
    new DataView(noEnd.buffer).setBigUint64(48, 1n); // terminator's size := 1
    const e = refused(noEnd, 'TRUNCATED');
    assert.ok(e.offset !== undefined && e.offset + 16 > b.length);
  });
});

describe('fdt_check_full: the structure block', () => {
  test('a structure block that ends before FDT_END: TRUNCATED', () => {
    const b = assemble({ struct: struct(BEGIN, '', END_NODE, END) });
    refused(patch32(b, 36, 12), 'TRUNCATED', 56 + 12); // size_dt_struct excludes FDT_END
  });

  test('an unknown token: BADSTRUCTURE at the token', () => {
    refused(assemble({ struct: struct(BEGIN, '', 7, END_NODE, END) }), 'BADSTRUCTURE', 56 + 8);
  });

  test('FDT_END inside a node, FDT_END_NODE with no node open: BADSTRUCTURE', () => {
    refused(assemble({ struct: struct(BEGIN, '', BEGIN, 'a', END_NODE, END) }), 'BADSTRUCTURE', 56 + 20);
    refused(assemble({ struct: struct(END_NODE, BEGIN, '', END_NODE, END) }), 'BADSTRUCTURE', 56);
  });

  test('a node name with no NUL inside the structure block: BADSTRUCTURE', () => {
    const s = struct(BEGIN, '', BEGIN, new Uint8Array([0x61, 0x62, 0x63, 0x64]));
    refused(assemble({ struct: s }), 'BADSTRUCTURE', 56 + 8);
  });

  test('a property length of gigabytes: BADSTRUCTURE', () => {
    for (const len of [0x7ffffff0, 0x80000000, 0xffffffff, 1 << 20]) {
      const s = struct(BEGIN, '', PROP, len, 0, END_NODE, END);
      refused(assemble({ struct: s, strings: 'a\0' }), 'BADSTRUCTURE', 56 + 8);
    }
  });

  test('a name offset past the strings block or the blob: BADOFFSET at the nameoff field', () => {
    for (const nameoff of [2, 1000, 0x7fffffff, 0x80000000, 0xffffffff]) {
      const s = struct(BEGIN, '', ...prop(nameoff), END_NODE, END);
      refused(assemble({ struct: s, strings: 'a\0' }), 'BADOFFSET', 56 + 8 + 8);
    }
  });

  test('a property name with no NUL: TRUNCATED', () => {
    const s = struct(BEGIN, '', ...prop(0), END_NODE, END);
    refused(assemble({ struct: s, strings: 'abc' }), 'TRUNCATED', 56 + 16);
  });

  test('v17 bounds names by size_dt_strings; v16 only by totalsize (fdt_get_string)', () => {
    // "b" lives after the strings block, in what the header calls free space.
    const tail = new Uint8Array([0x62, 0]);
    const s = struct(BEGIN, '', ...prop(2), END_NODE, END);
    refused(assemble({ struct: s, strings: 'a\0', tail }), 'BADOFFSET');
    const v16 = Fdt.parse(assemble({ version: 16, struct: s, strings: 'a\0', tail }));
    assert.deepEqual(v16.props('/'), ['b']);
  });

  test('the root node must be unnamed; a second root is BADSTRUCTURE', () => {
    refused(assemble({ struct: struct(BEGIN, 'root', END_NODE, END) }), 'BADSTRUCTURE', 56);
    refused(assemble({ struct: struct(BEGIN, '', END_NODE, BEGIN, '', END_NODE, END) }), 'BADSTRUCTURE', 68);
    refused(assemble({ struct: struct(BEGIN, '', END_NODE, ...prop(0), END), strings: 'a\0' }), 'BADSTRUCTURE', 68);
  });

  test('NOPs anywhere (before the root, inside nodes, after the root) are skipped', () => {
    const s = struct(NOP, BEGIN, '', NOP, ...prop(0, [1, 2, 3, 4]), NOP, BEGIN, 'n', NOP, END_NODE, NOP, END_NODE, NOP, NOP, END);
    const fdt = Fdt.parse(assemble({ struct: s, strings: 'p\0' }));
    assert.deepEqual(fdt.props('/'), ['p']);
    assert.deepEqual(fdt.children('/'), ['n']);
  });

  test('bytes after FDT_END (within the block) are not looked at', () => {
    const s = struct(BEGIN, '', END_NODE, END, 0xdeadbeef, 7);
    assert.ok(Fdt.parse(assemble({ struct: s })).equals(new Fdt()));
  });

  test('properties after subnodes are valid; the tree keeps properties first', () => {
    const s = struct(BEGIN, '', BEGIN, 'n', END_NODE, ...prop(0, [0, 0, 0, 1]), END_NODE, END);
    const fdt = Fdt.parse(assemble({ struct: s, strings: 'late\0' }));
    assert.equal(fdt.getU32('/', 'late'), 1);
    assert.deepEqual(fdt.lint().map((f) => f.check), ['property_after_subnode']);
    const again = Fdt.parse(fdt.toBytes());
    assert.ok(again.equals(fdt));
    assert.deepEqual(again.lint(), []);
  });

  test('error offsets are absolute, wherever the blocks are', () => {
    const b = assemble({ struct: struct(BEGIN, '', 7, END_NODE, END) });
    // Move the structure block 8 bytes further (free space between rsvmap and struct).
    const moved = new Uint8Array(b.length + 8);
    moved.set(b.subarray(0, 56));
    moved.set(b.subarray(56), 64);
    const dv = new DataView(moved.buffer);
    dv.setUint32(4, moved.length);
    dv.setUint32(8, 64);
    dv.setUint32(12, dv.getUint32(12) + 8);
    refused(moved, 'BADSTRUCTURE', 64 + 8);
  });
});

describe('what passes fdt_check_full but no tree can hold (refused after libfdt\'s checks)', () => {
  test('a structure block with no node: BADSTRUCTURE', () => {
    const b = assemble({ struct: struct(NOP, END) });
    assert.doesNotThrow(() => checkFdt(b), 'libfdt\'s fdt_check_full accepts it');
    refused(b, 'BADSTRUCTURE', 56);
  });

  test('a property before the root: BADSTRUCTURE, unless libfdt finds an error later', () => {
    const b = assemble({ struct: struct(...prop(0), BEGIN, '', END_NODE, END), strings: 'a\0' });
    assert.doesNotThrow(() => checkFdt(b));
    refused(b, 'BADSTRUCTURE', 56);
    const later = assemble({ struct: struct(...prop(0), BEGIN, '', END_NODE), strings: 'a\0' });
    refused(later, 'TRUNCATED');
  });
});

describe('versions before 16: full paths, 8-aligned values', () => {
  /** A v2/v3 blob as dtc -V 3 writes it: nodes named by full path, values >= 8 bytes 8-aligned. */
  function oldBlob(version: number, rootName: string, childName: string): Uint8Array {
    const value = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    // Root at struct offset 0: BEGIN(4) + name(4) = 8; PROP header 12 -> value at 20, padded to 24.
    const s = struct(BEGIN, rootName, PROP, 8, 0, 0, value, BEGIN, childName, PROP, 4, 0, new Uint8Array([9, 9, 9, 9]), END_NODE, END_NODE, END);
    return assemble({ version, struct: s, strings: 'p\0' });
  }

  for (const version of [2, 3]) {
    test(`version ${version}: names are the last path component; the padding is skipped`, () => {
      const fdt = Fdt.parse(oldBlob(version, '/', '/child@1'));
      assert.deepEqual(fdt.children('/'), ['child@1']);
      assert.deepEqual(fdt.get('/', 'p'), new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
      assert.deepEqual(fdt.get('/child@1', 'p'), new Uint8Array([9, 9, 9, 9]));
      assert.equal(checkFdtHeader(oldBlob(version, '/', '/c')).headerSize, version === 2 ? 32 : 36);
    });
  }

  test('a root whose stored path is not empty after its last "/" is BADSTRUCTURE (fdt_get_name)', () => {
    refused(oldBlob(3, 'x', '/c'), 'BADSTRUCTURE', 56);
    refused(oldBlob(3, '/x', '/c'), 'BADSTRUCTURE', 56);
  });

  test('a non-root node with no "/" in its stored path is refused after the walk', () => {
    const b = oldBlob(3, '/', 'child');
    assert.doesNotThrow(() => checkFdt(b));
    refused(b, 'BADSTRUCTURE');
  });
});

describe('FdtError', () => {
  test('is a PmpoolError with libfdt\'s name, number and the offset', () => {
    const e = refused(patch32(EMPTY(), 0, 0), 'BADMAGIC', 0);
    assert.ok(e instanceof PmpoolError);
    assert.equal(e.name, 'FdtError');
    assert.equal(e.errnum, 9);
    assert.match(e.message, /magic/);
  });
});

describe('names that share one long string', () => {
  test('properties named by offsets inside one long string each get their suffix, in time linear in the blob', { timeout: 60_000 }, () => {
    // N properties whose names start at N offsets of one string of S bytes: each is a suffix of it
    // (libfdt hands out pointers). Read name by name, the blob cost N * S: minutes, then no memory.
    const S = 300_000;
    const N = 30_000;
    const strings = new Uint8Array(S + 1).fill(0x61);
    strings[S] = 0;
    strings.set([0x62, 0x63], S - 2); // "...aabc": every suffix is a different string
    const words = [1, 0]; // FDT_BEGIN_NODE, the root's empty name
    for (let i = 0; i < N; i++) words.push(3, 0, i * 10); // FDT_PROP, no value, name offset
    words.push(2, 9); // FDT_END_NODE, FDT_END
    const headerBytes = 40;
    const offStruct = headerBytes + 16; // after a reserve map of one terminating entry
    const offStrings = offStruct + words.length * 4;
    const blob = new Uint8Array(offStrings + strings.length);
    const v = new DataView(blob.buffer);
    [0xd00dfeed, blob.length, offStruct, offStrings, headerBytes, 17, 16, 0, strings.length, words.length * 4].forEach((w, i) => v.setUint32(i * 4, w));
    words.forEach((w, i) => v.setUint32(offStruct + i * 4, w));
    blob.set(strings, offStrings);
    const fdt = Fdt.parse(blob);
    const names = fdt.props('/');
    assert.equal(names.length, N);
    for (const i of [0, 1, N / 2, N - 1]) {
      const name = names[i]!;
      assert.equal(name.length, S - i * 10);
      assert.ok(name.endsWith('aabc') && /^a+bc$/.test(name), `property ${i}: the string's suffix from its offset`);
    }
  });
});
