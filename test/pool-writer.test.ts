/**
 * The metadata writer a pool gets: a durable pool (a file on disk, its
 * sub-pools, however it was opened) must msync at every barrier what was
 * stored since the previous one — the file then always holds a prefix of an
 * operation (docs/abi.md, "Operations and crash consistency"); a pool on
 * /dev/shm or in memory, not traced, gets the plain writer, which keeps no log.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CONTROL_LAYOUT } from '../src/pool/control.js';
import { Pool } from '../src/pool/index.js';
import { poolInternals, type StoreRecord } from '../src/pool/internals.js';
import { FileRegion, MemoryRegion } from '../src/region/index.js';
import { shmPath, tempDir } from './support/child.js';

/**
 * Runs `op` on `pool`, checking that every barrier that follows stores msyncs
 * a range of the metadata window covering each of them, before any later store —
 * all but the lock word's, which only live processes read (a run id not this
 * open's is never trusted). Returns the number of barriers that flushed.
 */
function checkBarriersFlush(pool: Pool, op: () => void): number {
  const { writer } = poolInternals(pool).parts;
  const window = writer.window;
  const lockWord = pool.geometry.areas.control.offset + CONTROL_LAYOUT.LOCK_WORD;
  let pending: [number, number][] = [];
  let awaiting: [number, number][] | null = null;
  let flushed = 0;
  const flush = window.flush.bind(window);
  window.flush = (offset?: number, length?: number) => {
    if (awaiting !== null) {
      const from = offset ?? 0;
      const to = length === undefined ? window.length : from + length;
      for (const [at, n] of awaiting) assert.ok(at >= from && at + n <= to, `a store at ${at} (${n} bytes) outside the barrier's msync of [${from}, ${to})`);
      awaiting = null;
      flushed++;
    }
    flush(offset, length);
  };
  writer.log = {
    records: {
      push(r: StoreRecord): number {
        if (!('offset' in r)) {
          if (pending.length > 0) awaiting = pending;
          pending = [];
          return 0;
        }
        assert.equal(awaiting, null, `a store at ${r.offset} before the previous barrier's msync`);
        if (r.offset !== lockWord) pending.push([r.offset, r.bytes.length]);
        return 0;
      },
    } as unknown as StoreRecord[],
  };
  try {
    op();
  } finally {
    writer.log = null;
    delete (window as { flush?: unknown }).flush;
  }
  assert.equal(awaiting, null, 'the last barrier did not msync');
  return flushed;
}

function allocAndRelease(pool: Pool): void {
  // alloc and release each have four barriers after stores (docs/abi.md).
  let a: ReturnType<Pool['alloc']> | undefined;
  assert.ok(checkBarriersFlush(pool, () => (a = pool.alloc(2, { name: 'x', owner: 'o' }))) >= 4);
  assert.ok(checkBarriersFlush(pool, () => pool.release(a!.pfn, 2, { owner: 'o' })) >= 4);
  assert.ok(checkBarriersFlush(pool, () => pool.release(pool.alloc(1).pfn, 1)) >= 8);
}

test('a pool in a file msyncs every barrier: created, reopened, over a FileRegion, and its sub-pools', (t) => {
  const { dir, cleanup } = tempDir();
  try {
    const path = join(dir, 'pool');
    const created = Pool.create(path, { size: 8 * 1024 * 1024 });
    if (created.region.kind !== 'file') {
      created.close();
      t.skip(`the temporary directory is on ${created.region.kind}, not a durable file system`);
      return;
    }
    allocAndRelease(created);
    const sub = created.subpool('child', { count: 512 });
    assert.equal(sub.region.durable, true);
    allocAndRelease(sub);
    created.close();

    const opened = Pool.open(path);
    allocAndRelease(opened);
    const reopenedSub = opened.subpool('child');
    allocAndRelease(reopenedSub);
    opened.close();

    const region = FileRegion.create(join(dir, 'region'), { size: 4 * 1024 * 1024 });
    try {
      const over = Pool.create(region, { size: 4 * 1024 * 1024 });
      allocAndRelease(over);
      over.close();
      const again = Pool.open(region);
      allocAndRelease(again);
      again.close();
    } finally {
      region.close();
    }
  } finally {
    cleanup();
  }
});

test('a pool on /dev/shm or in memory, not traced, gets the plain writer: it keeps no store log and refuses one', () => {
  const { path, cleanup } = shmPath('pool-writer');
  try {
    const shm = Pool.create(path, { size: '4M' });
    const memory = Pool.create(new MemoryRegion(4 * 1024 * 1024), { size: 4 * 1024 * 1024 });
    for (const pool of [shm, memory]) {
      const { writer } = poolInternals(pool).parts;
      assert.equal(writer.log, null);
      assert.throws(() => {
        writer.log = { records: [] };
      }, /not traced/);
      // Its u64 stores write both words: values past 2^32, up to 2^53 (a free record's pfn field, zeroed after).
      const at = poolInternals(pool).parts.directory.offsetOf(0) + 8;
      assert.equal(writer.load64(at), 0);
      for (const v of [0xffffffff, 2 ** 32, 2 ** 32 + 1, 0x12345 * 2 ** 32 + 0xdeadbeef, 2 ** 53 - 1]) {
        writer.store64(at, v);
        assert.deepEqual([writer.u32[at >>> 2], writer.u32[(at >>> 2) + 1]], [v >>> 0, Math.floor(v / 2 ** 32)], `store64(${v})`);
        assert.equal(writer.load64(at), v);
      }
      writer.store64(at, 0);
      pool.release(pool.alloc(1).pfn, 1);
      assert.deepEqual(pool.check().problems, []);
      pool.close();
    }
  } finally {
    cleanup();
  }
});
