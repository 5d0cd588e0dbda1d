/**
 * The superblock's version rules of docs/abi.md, on the bytes of real pools:
 * what a reader refuses, and with which code.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Pool, PoolError } from '../src/pool/index.js';
import { MemoryRegion } from '../src/region/index.js';
import { SUPERBLOCK_BACKUP_OFFSET, SUPERBLOCK_BYTES } from '../src/pool/layout.js';
import { crc32c } from '../src/util/crc32c.js';
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
