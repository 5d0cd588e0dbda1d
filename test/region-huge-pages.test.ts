/**
 * Huge pages under tmpfs windows (RegionWindow.preferHugePages,
 * Allocation.preferHugePages, and the PersistentMap that asks for them):
 * windows placed so that their 2 MiB extents can be PMD-mapped, extents
 * collapsed in the background by the addon's thread with no byte changed,
 * the huge pages kept by the file for the next process, and every request
 * that has nothing to do, or is cut short by an unmap, answered without
 * harm. What the kernel did is read back from /proc/self/smaps.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { FileRegion, MemoryRegion, PersistentMap, Pool, PoolError, RegionError, SubRegion } from '../src/index.js';
import { native } from '../src/sys/native.js';
import { PMPOOL_ENTRY, runModule, shmPath, tempDir } from './support/child.js';
import { expectError } from './support/expect.js';

const PAGE = 4096;
const EXTENT = 2 * 1024 * 1024;

/** MADV_COLLAPSE came with Linux 6.1: before it every extent is refused, which the tests then skip. */
const [major = 0, minor = 0] = release().split('.').map(Number);
const KERNEL_COLLAPSES = major > 6 || (major === 6 && minor >= 1);
const NO_COLLAPSE = `Linux ${release()} has no MADV_COLLAPSE (6.1)`;

interface FileMapping {
  start: number;
  fileOffset: number;
  pmdKiB: number;
}

/** This process's mappings of `path`, from /proc/self/smaps (or another process's, given its text). */
function mappingsOf(path: string, smaps = readSmaps()): FileMapping[] {
  const found: FileMapping[] = [];
  let current: FileMapping | null = null;
  for (const line of smaps.split('\n')) {
    const header = /^([0-9a-f]+)-[0-9a-f]+ \S+ ([0-9a-f]+) \S+ \d+\s+(.*)$/.exec(line);
    if (header) {
      current = header[3] === path ? { start: parseInt(header[1]!, 16), fileOffset: parseInt(header[2]!, 16), pmdKiB: 0 } : null;
      if (current) found.push(current);
      continue;
    }
    const pmd = /^ShmemPmdMapped:\s+(\d+) kB/.exec(line);
    if (pmd && current) current.pmdKiB = Number(pmd[1]);
  }
  return found;
}

function readSmaps(): string {
  return Buffer.from(native.readFile('/proc/self/smaps', 1 << 26, false, false).data).toString('latin1');
}

/** Waits until the addon's thread has no extent left to collapse. */
async function settled(): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (native.hugePageWork().pending > 0) {
    if (Date.now() > deadline) throw new Error(`huge-page work still pending: ${JSON.stringify(native.hugePageWork())}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('huge pages on tmpfs', () => {
  test('a window of 2 MiB or more sits at an address congruent to its file offset modulo 2 MiB', () => {
    const { path, cleanup } = shmPath('huge-align');
    const region = FileRegion.create(path, { size: 32 * EXTENT });
    try {
      const windows = [
        region.map(0, 8 * EXTENT),
        region.map(3 * PAGE, EXTENT + 5 * PAGE),
        region.map(7 * EXTENT + 100, 3 * EXTENT),
        region.map(31 * EXTENT, EXTENT),
      ];
      const mapped = mappingsOf(path);
      assert.equal(mapped.length, windows.length);
      for (const m of mapped) assert.equal((m.start - m.fileOffset) % EXTENT, 0, `mapping at 0x${m.start.toString(16)} of offset ${m.fileOffset}`);
    } finally {
      region.close();
      cleanup();
    }
  });

  test('preferHugePages collapses the whole extents of a range in the background: no byte changes, and the next process maps them huge too', async (t) => {
    if (!KERNEL_COLLAPSES) return t.skip(NO_COLLAPSE);
    const { path, cleanup } = shmPath('huge-collapse');
    const region = FileRegion.create(path, { size: 4 * EXTENT });
    try {
      const w = region.map(0, 4 * EXTENT);
      const bytes = w.bytes();
      randomFillSync(bytes);
      const before = native.hugePageWork();
      // From the second page on: the first extent is not whole in the range, the other three are.
      assert.equal(w.preferHugePages(PAGE, 4 * EXTENT - PAGE), 3 * EXTENT);
      // Written while the thread collapses: every store lands, in whichever page holds the byte then.
      const words = new Uint32Array(w.buffer, w.byteOffset, w.length / 4);
      for (let round = 1; native.hugePageWork().pending > 0 && round < 1e6; round++) {
        for (let i = round % 4096; i < words.length; i += 4096) words[i] = round;
      }
      const expected = Buffer.from(bytes);
      await settled();
      const after = native.hugePageWork();
      assert.equal(after.collapsed - before.collapsed, 3, `collapsed ${after.collapsed - before.collapsed}, refused ${after.refused - before.refused}`);
      assert.equal(Buffer.compare(Buffer.from(bytes), expected), 0, 'the collapse changed no byte');
      assert.equal(mappingsOf(path)[0]!.pmdKiB, 3 * 2048);
      const child = runModule(
        `import { FileRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
         import { createHash } from 'node:crypto';
         import { readFileSync } from 'node:fs';
         const region = FileRegion.open(process.argv[1]);
         const bytes = region.map(0, region.size).bytes();
         const digest = createHash('sha256').update(bytes).digest('hex');
         const smaps = readFileSync('/proc/self/smaps', 'latin1');
         process.stdout.write(JSON.stringify({ digest, smaps }));
         region.close();`,
        [path],
      );
      assert.equal(child.status, 0, child.stderr);
      const seen = JSON.parse(child.stdout) as { digest: string; smaps: string };
      const { createHash } = await import('node:crypto');
      assert.equal(seen.digest, createHash('sha256').update(expected).digest('hex'));
      assert.equal(mappingsOf(path, seen.smaps)[0]!.pmdKiB, 3 * 2048, 'the huge pages stay with the file');
    } finally {
      region.close();
      cleanup();
    }
  });

  test('nothing to do is 0; a range outside the window is BAD_RANGE', () => {
    const { path, cleanup } = shmPath('huge-nothing');
    const { dir, cleanup: cleanupDir } = tempDir();
    const region = FileRegion.create(path, { size: 4 * EXTENT });
    const onDisk = FileRegion.create(join(dir, 'pool'), { size: 4 * EXTENT });
    const memory = new MemoryRegion(4 * EXTENT);
    try {
      const w = region.map(0, 4 * EXTENT);
      expectError(() => w.preferHugePages(EXTENT, 3 * EXTENT + 1), RegionError, 'BAD_RANGE');
      expectError(() => w.preferHugePages(-1, 1), RegionError, 'BAD_RANGE');
      assert.equal(w.preferHugePages(PAGE, EXTENT), 0, 'no whole extent in the range');
      assert.equal(region.map(0, EXTENT - PAGE).preferHugePages(), 0, 'a window shorter than an extent');
      assert.equal(onDisk.kind, 'file');
      assert.equal(onDisk.map(0, 4 * EXTENT).preferHugePages(), 0, "a disk file's writable pages are not collapsed");
      assert.equal(memory.map(0, 4 * EXTENT).preferHugePages(), 0, "a SharedArrayBuffer is V8's");
      assert.equal(new SubRegion(region, EXTENT, 2 * EXTENT).map(0, 2 * EXTENT).preferHugePages(), 2 * EXTENT, 'a sub-region asks through its parent');
      const gone = region.map(0, 4 * EXTENT);
      gone.unmap();
      assert.equal(gone.preferHugePages(), 0, 'an unmapped window');
    } finally {
      region.close();
      onDisk.close();
      memory.close();
      cleanupDir();
      cleanup();
    }
  });

  test('a window unmapped, or a region closed, with extents queued: the rest is dropped, nothing leaks', async () => {
    const { path, cleanup } = shmPath('huge-unmap');
    const baseline = native.mappings();
    const region = FileRegion.create(path, { size: 32 * EXTENT });
    try {
      for (let round = 0; round < 8; round++) {
        const w = region.map(0, 32 * EXTENT);
        const view = w.bytes();
        view.fill(round + 1);
        assert.equal(w.preferHugePages(), 32 * EXTENT);
        // At once, or once the thread has begun: the unmap waits for at most the extent under way.
        if (round % 2 === 1) await new Promise((r) => setTimeout(r, round));
        w.unmap();
        assert.equal(view.length, 0, 'the view of an unmapped window is empty');
      }
      const w = region.map(0, 32 * EXTENT);
      assert.ok(w.preferHugePages() > 0);
      region.close(); // unmaps it with its extents queued
      await settled();
      assert.deepEqual(native.mappings(), baseline);
      const again = FileRegion.open(path);
      assert.equal(again.map(31 * EXTENT, EXTENT).bytes()[EXTENT - 1], 8, 'the last round\'s bytes');
      again.close();
    } finally {
      region.close();
      cleanup();
    }
  });
});

describe('huge pages and unmapping', () => {
  test('an unmap waits for the extent under way, not for the rest of the queue: those are dropped', async (t) => {
    if (!KERNEL_COLLAPSES) return t.skip(NO_COLLAPSE);
    const { path, cleanup } = shmPath('huge-unmap-early');
    const extents = 64;
    const region = FileRegion.create(path, { size: extents * EXTENT });
    try {
      const w = region.map(0, extents * EXTENT);
      w.advise('populate');
      const before = native.hugePageWork();
      assert.equal(w.preferHugePages(), extents * EXTENT);
      // Once the first extent is done, the unmap: the one under way then is the last to be collapsed.
      while (native.hugePageWork().collapsed + native.hugePageWork().refused === before.collapsed + before.refused) {
        /* spin: no timer, so that the thread is seen as early as can be */
      }
      w.unmap();
      await settled();
      const after = native.hugePageWork();
      const done = after.collapsed - before.collapsed + (after.refused - before.refused);
      assert.ok(done < extents / 2, `${done} of ${extents} extents were collapsed for a window unmapped after the first`);
      assert.equal(after.pending, 0);
    } finally {
      region.close();
      cleanup();
    }
  });

  test('a window whose length is not whole pages leaves no reservation behind', () => {
    const { path, cleanup } = shmPath('huge-slop');
    const fd = native.open(path, true, true, false, 0o600);
    try {
      native.ftruncate(fd, 2 * EXTENT);
      const mappingsNow = () => readFileSync('/proc/self/maps', 'latin1').split('\n').length;
      const before = mappingsNow();
      for (let i = 0; i < 20; i++) native.munmap(native.mmap(fd, 0, EXTENT + 100, true, true));
      assert.equal(mappingsNow(), before);
    } finally {
      native.close(fd);
      cleanup();
    }
  });
});

describe('huge pages for allocations', () => {
  test('Allocation.preferHugePages asks for its whole extents; a closed pool is CLOSED', async (t) => {
    const { path, cleanup } = shmPath('huge-alloc');
    const pool = Pool.create(path, { size: 64 * EXTENT });
    const inMemory = Pool.create(new MemoryRegion(8 * EXTENT), { size: 8 * EXTENT });
    try {
      const extentPages = EXTENT / PAGE;
      const aligned = pool.alloc(4 * extentPages, { align: extentPages });
      assert.equal(aligned.preferHugePages(), 4 * EXTENT);
      assert.equal(pool.alloc(3).preferHugePages(), 0);
      const unaligned = pool.alloc(2 * extentPages + 1, { align: 1 });
      const whole = Math.floor((unaligned.pfn + unaligned.count) / extentPages) - Math.ceil(unaligned.pfn / extentPages);
      assert.equal(unaligned.preferHugePages(), Math.max(0, whole) * EXTENT);
      assert.equal(inMemory.alloc(extentPages, { align: extentPages }).preferHugePages(), 0);
      if (KERNEL_COLLAPSES) {
        aligned.bytes().fill(7);
        await settled();
        assert.equal(aligned.bytes().every((b) => b === 7), true);
        assert.equal(pool.check().ok, true);
      } else {
        t.diagnostic(NO_COLLAPSE);
      }
      pool.close();
      expectError(() => aligned.preferHugePages(), PoolError, 'CLOSED');
    } finally {
      pool.close();
      inMemory.close();
      cleanup();
    }
  });

  test('PersistentMap.preferHugePages asks for its table and full segments, not the segment being appended to', async (t) => {
    if (!KERNEL_COLLAPSES) return t.skip(NO_COLLAPSE);
    const { path, cleanup } = shmPath('huge-map');
    const pool = Pool.create(path, { size: '512M' });
    try {
      const map = PersistentMap.open(pool, 'm');
      const before = native.hugePageWork();
      const n = 150_000;
      for (let i = 0; i < n; i++) map.set(`key-${i}`, `value-${i}-`.padEnd(100, 'x'));
      await settled();
      assert.deepEqual(native.hugePageWork(), before, 'nothing asked before the map is');
      // A table of 2^19 slots (4 MiB) and full segments of up to 4 MiB, each on a 2 MiB boundary.
      const asked = map.preferHugePages();
      assert.ok(asked >= 4 * EXTENT && asked % EXTENT === 0, `asked ${asked}`);
      map.set('written while they collapse', 'and found after');
      await settled();
      const after = native.hugePageWork();
      assert.equal((after.collapsed - before.collapsed) * EXTENT, asked, `collapsed ${after.collapsed - before.collapsed}, refused ${after.refused - before.refused}`);
      assert.equal(map.get('written while they collapse'), 'and found after');
      assert.ok(mappingsOf(path).reduce((kib, m) => kib + m.pmdKiB, 0) >= 4 * 2048);
      for (let i = 0; i < n; i += 7) assert.equal(map.get(`key-${i}`), `value-${i}-`.padEnd(100, 'x'));
      assert.equal(map.check().ok, true);
      map.close();
      assert.equal(pool.check().ok, true);
    } finally {
      pool.close();
      cleanup();
    }
  });
});
