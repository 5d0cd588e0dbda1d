/**
 * docs/abi.md against the bytes of real pools: its layout tables (read from
 * the page itself, so that an edit of either side without the other fails
 * here), its checksums and hashes recomputed from their written
 * definitions, and the version rules — what a reader refuses, with which code.
 */
import { after, test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync } from 'node:fs';
import { Pool, PoolError } from '../src/pool/index.js';
import { MemoryRegion } from '../src/region/index.js';
import { SUPERBLOCK_BACKUP_OFFSET, SUPERBLOCK_BYTES } from '../src/pool/layout.js';
import { CONTROL_LAYOUT } from '../src/pool/control.js';
import { hashName, hashPfn, homeSlot } from '../src/pool/parts.js';
import { crc32c } from '../src/util/crc32c.js';
import { CACHE_BATCH, CACHE_ENTRIES, CACHE_ENTRY_BYTES, CACHE_ENTRY_LAYOUT, CACHE_MIN_RECORDS, CACHE_SEQ_BLOCK, CACHE_TABLE, CACHE_UNITS } from '../src/pool/caches.js';
import { poolInternals } from '../src/pool/internals.js';
import { expectError } from './support/expect.js';

const MiB = 1024 * 1024;

/** A closed 4 MiB pool in memory, its region's bytes to edit, and a way to reopen it. */
function closedPool(): { bytes: Uint8Array; open: () => Pool } {
  const region = new MemoryRegion(4 * MiB);
  Pool.create(region, { size: region.size }).close();
  return { bytes: new Uint8Array(region.buffer), open: () => Pool.open(region) };
}

/** Edits both superblock copies through `edit(view, copy)` and gives each a good checksum again. */
function editSuperblocks(bytes: Uint8Array, edit: (v: DataView, copy: Uint8Array) => void): void {
  for (const at of [0, SUPERBLOCK_BACKUP_OFFSET]) {
    const copy = bytes.subarray(at, at + SUPERBLOCK_BYTES);
    const v = new DataView(copy.buffer, copy.byteOffset, SUPERBLOCK_BYTES);
    edit(v, copy);
    v.setUint32(252, crc32c(copy, 0, 252), true);
  }
}

/** The inode number of this process's PID namespace, as /proc/self/ns/pid names it ("pid:[N]"). */
function pidNamespaceInode(): number {
  return Number(/^pid:\[(\d+)\]$/.exec(readlinkSync('/proc/self/ns/pid'))![1]);
}

describe('superblock versions (docs/abi.md, "Reading a superblock")', () => {
  for (const major of [1, 3]) {
    test(`a pool of ABI major ${major} ("PMPOOLv${major}") is refused as INCOMPATIBLE, not as no pool`, () => {
      const fx = closedPool();
      editSuperblocks(fx.bytes, (v, copy) => {
        copy[7] = 0x30 + major;
        v.setUint16(8, major, true);
      });
      const e = expectError(fx.open, PoolError, 'INCOMPATIBLE');
      assert.match(e.message, new RegExp(`ABI major ${major}\\b`));
    });
  }

  test('a magic suffix damaged alone is damage, not a version: the backup still opens the pool by repair', () => {
    const fx = closedPool();
    fx.bytes[7] = 0x33; // "PMPOOLv3", but the major at offset 8 still says 2
    const e = expectError(fx.open, PoolError, 'CORRUPT');
    assert.match(e.message, /backup superblock is intact/);
  });
});

describe('superblock feature flags', () => {
  test('an unknown incompat bit refuses the pool as INCOMPATIBLE', () => {
    const fx = closedPool();
    editSuperblocks(fx.bytes, (v) => v.setUint32(16, 1 << 5, true));
    assert.match(expectError(fx.open, PoolError, 'INCOMPATIBLE').message, /incompatible features 0x00000020/);
  });

  test('an unknown ro-compat bit refuses the pool as INCOMPATIBLE: every open may write, none is read-only', () => {
    const fx = closedPool();
    editSuperblocks(fx.bytes, (v) => v.setUint32(20, 1, true));
    assert.match(expectError(fx.open, PoolError, 'INCOMPATIBLE').message, /read-only-compatible features 0x00000001/);
  });

  test('an unknown compat bit is ignored: the pool opens and works', () => {
    const fx = closedPool();
    editSuperblocks(fx.bytes, (v) => v.setUint32(12, 1 << 31, true));
    const pool = fx.open();
    pool.alloc(1);
    assert.equal(pool.check().ok, true);
    pool.close();
  });
});

/** The rows `| offset | type | ...` of the first table in the `## <heading>...` section of docs/abi.md. */
function tableRows(heading: string): Array<[number, string]> {
  const doc = readFileSync(new URL('../../docs/abi.md', import.meta.url), 'utf8');
  const start = doc.indexOf(`\n## ${heading}`);
  assert.ok(start >= 0, `docs/abi.md has a section "## ${heading}..."`);
  const rows: Array<[number, string]> = [];
  for (const line of doc.slice(start + 1).split('\n').slice(1)) {
    const row = /^\| (\d+) \| ([^|]+?) \|/.exec(line);
    if (row) rows.push([Number(row[1]), row[2]!]);
    else if (rows.length > 0 || line.startsWith('## ')) break;
  }
  return rows;
}

describe('the layout tables of docs/abi.md, against a real pool', () => {
  // Unit 2 pages, 64 records: allocations land in their home slots, and the fields are not their defaults.
  const region = new MemoryRegion(4 * MiB);
  const pool = Pool.create(region, { size: region.size, orderPerBit: 1, maxAllocations: 64 });
  const named = pool.alloc(3, { name: 'state', owner: 'app' });
  const plain = pool.alloc(2);
  pool.setGeneration(5n);
  const bytes = new Uint8Array(region.buffer);
  const view = new DataView(region.buffer);
  const g = pool.geometry;
  after(() => pool.close());

  test('superblock: each field at its documented offset, the CRC-32C over [0, 252), the backup identical', () => {
    assert.deepEqual(tableRows('Superblock'), [
      [0, 'u8[8]'], [8, 'u16'], [10, 'u16'], [12, 'u32'], [16, 'u32'], [20, 'u32'], [24, 'u8[16]'],
      [40, 'u32'], [44, 'u32'], [48, 'u64'], [56, 'u64'], [64, 'u64'], [72, 'u32'], [76, 'u32'],
      [80, '6 × (u64 offset, u64 length)'], [176, 'u64'], [184, 'u64'], [192, 'u32'], [196, 'u64'], [204, 'u64'], [212, '—'], [252, 'u32'],
    ]);
    assert.equal(Buffer.from(bytes.subarray(0, 8)).toString('latin1'), 'PMPOOLv2');
    assert.deepEqual([view.getUint16(8, true), view.getUint16(10, true)], [2, 2]);
    // 64 records: too few for the caches, and so for bare units (the bare-unit map's fields are
    // tested with a pool that has one, in test/pool-bare-units.test.ts).
    assert.deepEqual([view.getUint32(12, true), view.getUint32(16, true), view.getUint32(20, true)], [0, 1, 0], 'incompat bit 0: the per-open caches');
    assert.equal(g.bareUnits, null);
    assert.deepEqual(bytes.slice(24, 40), pool.uuidBytes);
    assert.deepEqual([view.getUint32(40, true), view.getUint32(44, true)], [g.pageSize, g.orderPerBit]);
    const u64 = (at: number) => Number(view.getBigUint64(at, true));
    assert.deepEqual([u64(48), u64(56), u64(64)], [g.pageCount, g.unitCount, g.metadataPages]);
    assert.deepEqual([view.getUint32(72, true), view.getUint32(76, true)], [g.maxRecords, g.indexSlots]);
    const areas = ['control', 'unitBitmap', 'recordBitmap', 'pfnIndex', 'nameIndex', 'records'] as const;
    areas.forEach((name, i) => assert.deepEqual([u64(80 + 16 * i), u64(88 + 16 * i)], [g.areas[name].offset, g.areas[name].length], name));
    assert.equal(view.getBigUint64(176, true), 5n);
    assert.ok(Math.abs(u64(184) - Date.now()) < 60_000, 'created at: ms since the epoch');
    assert.equal(view.getUint32(192, true), 0);
    assert.ok(bytes.subarray(196, 252).every((b) => b === 0));
    assert.equal(view.getUint32(252, true), crc32c(bytes, 0, 252));
    assert.equal(view.getUint32(252, true), pool.superblockCrc);
    assert.deepEqual(bytes.slice(SUPERBLOCK_BACKUP_OFFSET, SUPERBLOCK_BACKUP_OFFSET + SUPERBLOCK_BYTES), bytes.slice(0, SUPERBLOCK_BYTES));
  });

  test('control page: the offsets the code uses are the documented ones, and hold what the table says', () => {
    assert.deepEqual(tableRows('Control page'), [
      [0, 'u32'], [64, 'u32'], [68, 'u32'], [72, 'u32'], [76, 'u32'], [80, 'u64'], [88, 'u32'], [96, 'u64'],
      [104, 'u32'], [108, 'u32'], [112, 'u32'], [116, 'u32'], [128, 'u64'], [136, 'u32'], [140, 'u32'], [144, 'u64'], [152, 'u64'], [160, 'u32'], [164, 'u32'],
      [CACHE_TABLE, `${CACHE_ENTRIES} × ${CACHE_ENTRY_BYTES} bytes`],
    ]);
    assert.deepEqual(CONTROL_LAYOUT, { LOCK_WORD: 0, OWNER_RUN_ID: 64, OWNER_PID: 68, LOCK_BREAKS: 104, NEXT_SEQ: 128, INTENT_OP: 136, INDEX_ALL: 164 });
    const c = g.areas.control.offset;
    assert.equal(view.getUint32(c, true), 0, 'lock word: free between operations');
    assert.notEqual(view.getUint32(c + 64, true), 0, 'the last holder run id');
    assert.equal(view.getUint32(c + 68, true), process.pid);
    let bootId = 'unknown-boot';
    try {
      bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim();
    } catch {
      /* no procfs: the documented fallback */
    }
    assert.equal(view.getUint32(c + 72, true), crc32c(Buffer.from(bootId, 'latin1')), 'boot hash: CRC-32C of boot_id without its newline');
    assert.equal(view.getUint32(c + 108, true), crc32c(readFileSync('/proc/self/auxv')) >>> 0, 'image id: CRC-32C of /proc/self/auxv');
    assert.equal(view.getUint32(c + 112, true), pidNamespaceInode(), 'PID namespace: the inode in /proc/self/ns/pid');
    assert.equal(view.getUint32(c + 116, true), view.getUint32(c + 64, true), 'the run id the namespace belongs to; bit 31 clear: an open of a MemoryRegion holds no liveness mark');
    assert.equal(view.getBigUint64(c + 128, true), 2n, 'the last sequence number handed out: two allocations');
    assert.equal(view.getUint32(c + 136, true), 0, 'no intent');
    assert.equal(view.getUint32(c + 164, true), 0, 'INDEX_ALL clear');
    for (const [from, to] of [[4, 64], [92, 96], [120, 128], [168, 4096]] /* this pool's directory is too small for caches: its table is zero too */) {
      assert.ok(bytes.subarray(c + from!, c + to!).every((b) => b === 0), `control bytes [${from}, ${to}) are zero`);
    }
  });

  test('cache entries: the offsets the code uses are the documented ones, and hold what the table says', () => {
    assert.deepEqual(tableRows('Per-open caches'), [
      [0, 'u32'], [4, 'u32'], [8, 'u32'], [12, 'u32'], [16, 'u64'], [24, 'u64'], [64, '56 bytes'], [128, `u32[${CACHE_UNITS}]`],
    ]);
    assert.deepEqual(CACHE_ENTRY_LAYOUT, { LOCK: 0, OP: 4, UNIT: 8, COUNT: 12, NEXT_SEQ: 16, END_SEQ: 24, OWNER: 64, UNITS: 128 });
    // A pool whose directory is big enough, one open with a cache: its entry as documented.
    const r = new MemoryRegion(MiB);
    const p = Pool.create(r, { size: MiB, maxAllocations: CACHE_MIN_RECORDS });
    const seqBefore = new DataView(r.buffer).getBigUint64(p.geometry.areas.control.offset + 128, true);
    const first = p.alloc(1, { owner: 'kv' });
    const v = new DataView(r.buffer);
    const e = p.geometry.areas.control.offset + CACHE_TABLE; // the first entry: this open's
    assert.equal(v.getUint32(e + 0, true), 0, 'the entry lock is free between operations');
    assert.deepEqual([v.getUint32(e + 4, true), v.getUint32(e + 8, true)], [0, first.pfn], 'no intent; the unit of the last one');
    assert.equal(v.getUint32(e + 12, true), CACHE_BATCH - 1, 'a batch, less the unit allocated');
    const units = Array.from({ length: CACHE_BATCH - 1 }, (_, i) => v.getUint32(e + 128 + 4 * i, true));
    assert.deepEqual(units, Array.from({ length: CACHE_BATCH - 1 }, (_, i) => first.pfn + CACHE_BATCH - 1 - i), 'highest first: the next to allocate last');
    const next = v.getBigUint64(e + 16, true);
    assert.deepEqual([next, v.getBigUint64(e + 24, true)], [seqBefore + 2n, seqBefore + 1n + BigInt(CACHE_SEQ_BLOCK)], 'the block after the control page\'s last, one number used');
    assert.equal(v.getBigUint64(p.geometry.areas.control.offset + 128, true), seqBefore + BigInt(CACHE_SEQ_BLOCK), 'the control page handed the block out');
    const record = p.geometry.areas.records.offset + (first.pfn % p.geometry.maxRecords) * 128;
    assert.equal(v.getBigUint64(record + 24, true), seqBefore + 1n, 'the record took the block\'s first');
    assert.equal(v.getUint32(e + 64, true), poolInternals(p).parts.control.runId, 'the owner: this open');
    assert.equal(v.getUint32(e + 68, true), process.pid);
    assert.equal(v.getUint32(e + 108, true), crc32c(readFileSync('/proc/self/auxv')) >>> 0, 'the owner\'s image id');
    assert.equal(v.getUint32(e + 112, true), pidNamespaceInode(), 'the owner\'s PID namespace');
    assert.equal(v.getUint32(e + 116, true), poolInternals(p).parts.control.runId, 'the run id it belongs to, no mark (a MemoryRegion)');
    assert.ok(new Uint8Array(r.buffer, e + CACHE_ENTRY_BYTES, (CACHE_ENTRIES - 1) * CACHE_ENTRY_BYTES).every((b) => b === 0), 'the other entries are zero');
    p.close();
    assert.ok(new Uint8Array(r.buffer, e, CACHE_ENTRY_BYTES).every((b) => b === 0), 'given back at close: zero');
  });

  test('directory records: fields, the CRC-32C over their documented concatenation, home slots', () => {
    assert.deepEqual(tableRows('Directory record'), [
      [0, 'u32'], [4, 'u32'], [8, 'u64'], [16, 'u64'], [24, 'u64'], [32, 'u32'], [36, 'u8'], [37, 'u8'], [38, 'u16'], [40, 'u8[24]'], [64, 'u8[64]'],
    ]);
    const records = [
      { a: named, seq: 1n, owner: 'app', name: 'state' },
      { a: plain, seq: 2n, owner: '', name: '' },
    ];
    for (const { a, seq, owner, name } of records) {
      const slot = Math.floor(a.pfn / 2 ** g.orderPerBit) % g.maxRecords;
      assert.equal(slot, homeSlot(g, a.pfn));
      const at = g.areas.records.offset + slot * 128;
      const r = bytes.subarray(at, at + 128);
      const rv = new DataView(region.buffer, at, 128);
      assert.equal(Buffer.from(r.subarray(0, 4)).toString('latin1'), 'LIVE');
      assert.deepEqual([rv.getBigUint64(8, true), rv.getBigUint64(16, true), rv.getBigUint64(24, true)], [BigInt(a.pfn), BigInt(a.count), seq]);
      assert.equal(a.count % 2 ** g.orderPerBit, 0, 'a whole number of units');
      assert.deepEqual([rv.getUint32(32, true), r[36], r[37], rv.getUint16(38, true)], [0, owner.length, name.length, 0]);
      assert.equal(Buffer.from(r.subarray(40, 40 + owner.length)).toString(), owner);
      assert.equal(Buffer.from(r.subarray(64, 64 + name.length)).toString(), name);
      const covered = Buffer.concat([r.subarray(0, 4), r.subarray(8, 40), r.subarray(40, 40 + owner.length), r.subarray(64, 64 + name.length)]);
      assert.equal(rv.getUint32(4, true), crc32c(covered));
    }
  });

  test('indices: the name hash is the CRC-32C of the name; hashPfn is the documented formula', () => {
    assert.equal(hashName(Buffer.from('state')), crc32c(Buffer.from('state')));
    const documented = (pfn: number): number => {
      const w = BigInt(pfn) >> 3n;
      let h = Number(((w & 0xffffffffn) ^ (w >> 32n)) * 0x9e3779b1n & 0xffffffffn);
      h = (h ^ (h >>> 16)) >>> 0;
      h = Number((BigInt(h) * 0x85ebca6bn) & 0xffffffffn);
      h = (h ^ (h >>> 13)) >>> 0;
      return Number(((BigInt(h) << 3n) | BigInt(pfn & 7)) & 0xffffffffn);
    };
    for (const pfn of [0, 1, 7, 8, 9, 1234, 2 ** 31 + 5, 2 ** 32 + 3, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER]) {
      assert.equal(hashPfn(pfn), documented(pfn), `hashPfn(${pfn})`);
    }
  });
});
