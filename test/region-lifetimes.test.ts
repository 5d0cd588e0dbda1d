/**
 * What a region promises about its mappings and its file over their
 * lifetimes: a view never outlives close() (even when the window object was
 * collected), a slice is read-only and closed with what it is cut from, a
 * file cut short is refused before it can be a SIGBUS, a file is removed
 * only while it is the one that was made, and a pool whose region was
 * closed under it says so. Crash-prone cases run in a child process.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { renameSync, readFileSync, truncateSync, writeFileSync, existsSync } from 'node:fs';
import { FileRegion, MemoryRegion, Pool, PoolError, RegionError, SubRegion } from '../src/index.js';
import { PMPOOL_ENTRY, runModule, shmPath } from './support/child.js';
import { expectError } from './support/expect.js';

const PAGE = 4096;
const GiB = 1024 ** 3;

/** Runs `body` (an ES module's text, with FileRegion, Pool, SubRegion and native in scope) in a child; returns its stdout, or fails with what killed it. */
function inChild(body: string, args: string[], nodeFlags: string[] = []): string {
  const child = runModule(
    `import { FileRegion, Pool, SubRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
     import { native } from ${JSON.stringify(new URL('../src/sys/native.js', PMPOOL_ENTRY).href)};
     const collect = async () => { for (let i = 0; i < 6; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 5)); } };
     ${body}`,
    args,
    nodeFlags,
  );
  assert.equal(child.signal, null, `the child was killed by ${child.signal}: ${child.stderr}`);
  assert.equal(child.status, 0, child.stderr);
  return child.stdout;
}

describe('views and close()', () => {
  test('a view whose window object was collected is unmapped by close(): empty, and the mapping gone', () => {
    const { path, cleanup } = shmPath('view-gc');
    try {
      const out = inChild(
        `const region = FileRegion.create(process.argv[1], { size: 1 << 20 });
         const baseline = native.mappings().count;
         const view = region.map(0, PAGE).bytes();   // the window itself is dropped at once
         view[0] = 1;
         await collect();
         region.close();
         process.stdout.write(JSON.stringify({ length: view.length, mappings: native.mappings().count - baseline }));`.replaceAll('PAGE', String(PAGE)),
        [path],
        ['--expose-gc'],
      );
      assert.deepEqual(JSON.parse(out), { length: 0, mappings: 0 }, 'the view is empty and its mapping released');
      assert.equal(readFileSync(path)[0], 1, 'what was written before the close is in the file');
    } finally {
      cleanup();
    }
  });

  test("an allocation's view across a 1 GiB chunk of the pool reads as empty after the pool's close", () => {
    const { path, cleanup } = shmPath('view-across');
    try {
      const out = inChild(
        `const pool = Pool.create(process.argv[1], { size: 2 * ${GiB} });
         const run = pool.alloc(300000);
         const across = run.bytes(${GiB} - run.pfn * ${PAGE} - 8, 16);   // a window of its own, held by the view alone
         across[0] = 7;
         await collect();
         pool.close();
         process.stdout.write(JSON.stringify({ length: across.length }));`,
        [path],
        ['--expose-gc'],
      );
      assert.deepEqual(JSON.parse(out), { length: 0 });
    } finally {
      cleanup();
    }
  });
});

describe('slices', () => {
  test("a slice of a read-only region is read-only: a pool on it is refused, not a SIGSEGV", () => {
    const { path, cleanup } = shmPath('slice-ro');
    try {
      Pool.create(path, { size: 1 << 20 }).close();
      const out = inChild(
        `const parent = FileRegion.open(process.argv[1], { readOnly: true });
         const slice = new SubRegion(parent, 0, parent.size);
         const codes = [];
         for (const attempt of [() => Pool.open(slice), () => Pool.create(slice, { size: parent.size })]) {
           try { attempt().alloc(1); codes.push('opened'); } catch (e) { codes.push(e.code); }
         }
         process.stdout.write(JSON.stringify({ readOnly: slice.readOnly, codes }));`,
        [path],
      );
      assert.deepEqual(JSON.parse(out), { readOnly: true, codes: ['BAD_ARGUMENT', 'BAD_ARGUMENT'] });
    } finally {
      cleanup();
    }
  });

  test('closing a slice closes the slices cut from it, and their windows; the parent stays open', () => {
    const region = new MemoryRegion(64 * PAGE);
    try {
      const middle = new SubRegion(region, 8 * PAGE, 32 * PAGE);
      let deepest = middle;
      for (let depth = 0; depth < 200; depth++) deepest = new SubRegion(deepest, 0, deepest.size);
      const w = deepest.map(0, PAGE);
      assert.equal(w.mapped, true);
      middle.close();
      assert.equal(deepest.closed, true);
      assert.equal(w.mapped, false);
      expectError(() => w.bytes(), RegionError, 'CLOSED');
      expectError(() => deepest.map(0, PAGE), RegionError, 'CLOSED');
      assert.equal(region.closed, false);
      assert.equal(new SubRegion(deepest, 0, PAGE).closed, true, 'a slice cut from a closed one is closed');
      assert.equal(region.map(0, PAGE).mapped, true);
    } finally {
      region.close();
    }
  });
});

describe('windows of a MemoryRegion', () => {
  test("an unmapped window is forgotten; a slice's dropped windows are not kept for the life of the region", () => {
    const out = inChild(
      `import { MemoryRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
       const region = new MemoryRegion(1 << 20);
       const slice = new SubRegion(region, 0, 1 << 19);
       for (let i = 0; i < 1000; i++) { region.map(0, 4096).unmap(); slice.map(0, 4096).unmap(); }
       const afterUnmaps = [region.windows().length, slice.windows().length];
       for (let i = 0; i < 1000; i++) slice.map(0, 4096);
       await collect();
       const afterDrops = slice.windows().length;
       const kept = region.map(0, 4096);
       region.close();
       process.stdout.write(JSON.stringify({ afterUnmaps, afterDrops, keptMapped: kept.mapped }));`,
      [],
      ['--expose-gc'],
    );
    assert.deepEqual(JSON.parse(out), { afterUnmaps: [0, 0], afterDrops: 0, keptMapped: false });
  });

  test("a slice's dropped window does not leave its window of the region behind; one still held stays mapped", () => {
    const out = inChild(
      `import { MemoryRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
       const region = new MemoryRegion(1 << 20);
       const slice = new SubRegion(region, 1 << 19, 1 << 19);
       const nested = new SubRegion(slice, 0, 1 << 18);
       const held = slice.map(0, 4096);
       for (let i = 0; i < 1000; i++) { slice.map(0, 4096); nested.map(4096, 4096); }
       await collect();
       const afterDrops = [region.windows().length, slice.windows().length, nested.windows().length];
       held.bytes()[0] = 7;
       const seen = [held.mapped, new Uint8Array(region.buffer)[1 << 19]];
       held.unmap();
       process.stdout.write(JSON.stringify({ afterDrops, seen, afterUnmap: region.windows().length }));`,
      [],
      ['--expose-gc'],
    );
    assert.deepEqual(JSON.parse(out), { afterDrops: [1, 1, 0], seen: [true, 7], afterUnmap: 0 });
  });
});

describe('files', () => {
  test('a window past the end of a file cut short under the region is refused, not a SIGBUS', () => {
    const { path, cleanup } = shmPath('shrunk');
    try {
      const out = inChild(
        `import { truncateSync } from 'node:fs';
         const region = FileRegion.create(process.argv[1], { size: 1 << 20 });
         truncateSync(process.argv[1], ${PAGE});
         const seen = [];
         try { region.map(65536, ${PAGE}).bytes()[0] = 1; seen.push('mapped'); } catch (e) { seen.push(e.code); }
         region.map(0, ${PAGE}).bytes()[0] = 2; seen.push('first page mapped');
         region.close();
         process.stdout.write(JSON.stringify(seen));`,
        [path],
      );
      assert.deepEqual(JSON.parse(out), ['TOO_LARGE', 'first page mapped']);
    } finally {
      cleanup();
    }
  });

  test("closeAndRemove removes the region's own file, never one renamed over its path", () => {
    const { path, cleanup } = shmPath('remove-own');
    const { path: other, cleanup: cleanupOther } = shmPath('remove-other');
    try {
      FileRegion.create(path, { size: PAGE }).closeAndRemove();
      assert.equal(existsSync(path), false);
      const region = FileRegion.create(path, { size: PAGE });
      writeFileSync(other, 'precious');
      renameSync(other, path);
      region.closeAndRemove();
      assert.equal(readFileSync(path, 'utf8'), 'precious', "another's file stays");
      assert.equal(region.closed, true);
    } finally {
      cleanup();
      cleanupOther();
    }
  });

  test('a path with a NUL is BAD_ARGUMENT, from every entry that takes one', () => {
    const path = '/dev/shm/pmpool-test-nul\0tail';
    expectError(() => FileRegion.create(path, { size: PAGE }), RegionError, 'BAD_ARGUMENT');
    expectError(() => FileRegion.open(path), RegionError, 'BAD_ARGUMENT');
    assert.throws(() => Pool.create(path, { size: 1 << 20 }), (e: unknown) => (e as { code?: string }).code === 'BAD_ARGUMENT');
    assert.throws(() => Pool.open(path), (e: unknown) => (e as { code?: string }).code === 'BAD_ARGUMENT');
    assert.equal(existsSync('/dev/shm/pmpool-test-nul'), false);
  });

  test('a MemoryRegion larger than the process can have is TOO_LARGE, not a RangeError', () => {
    expectError(() => new MemoryRegion(2 ** 45), RegionError, 'TOO_LARGE');
    expectError(() => Pool.create(new MemoryRegion(2 ** 45), { size: 2 ** 45 }), RegionError, 'TOO_LARGE');
  });
});

test('a pool whose region was closed under it is CLOSED for every operation, not a TypeError', () => {
  const { path, cleanup } = shmPath('closed-under');
  const region = FileRegion.create(path, { size: 1 << 20 });
  try {
    const pool = Pool.create(region, { size: 1 << 20 });
    const a = pool.alloc(1, { name: 'a' });
    region.close();
    for (const op of [() => pool.alloc(1), () => pool.release(a.pfn, 1), () => pool.find('a'), () => pool.stats(), () => pool.allocations(), () => a.bytes()]) {
      assert.throws(op, (e: unknown) => e instanceof PoolError || e instanceof RegionError ? (e as { code: string }).code === 'CLOSED' : false);
    }
    pool.close();
  } finally {
    region.close();
    cleanup();
  }
});
