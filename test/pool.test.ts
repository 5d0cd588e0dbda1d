import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool, PoolError } from '../src/pool/index.js';
import { FileRegion, MemoryRegion, RegionError } from '../src/region/index.js';
import { kexec } from '../src/kexec/index.js';
import { computeGeometry, decodeSuperblock, encodeSuperblock, isSuperblockProblem, SUPERBLOCK_BACKUP_OFFSET, SUPERBLOCK_BYTES } from '../src/pool/layout.js';
import { HEADER_WORDS } from '../src/alloc/index.js';
import { poolInternals } from '../src/pool/internals.js';
import { hashPfn, homeSlot } from '../src/pool/parts.js';
import { CLI_PATH, PMPOOL_ENTRY, runModule, shmPath } from './support/child.js';
import { expectError, memoryPool as poolInMemory, NOT_OBJECTS, shown, statsText } from './support/expect.js';

const MiB = 1024 * 1024;

const memoryPool = (size = 16 * MiB, options: { orderPerBit?: number; maxAllocations?: number } = {}): Pool => poolInMemory(size, options);

const expectPoolError = (fn: () => unknown, code: string): PoolError => expectError(fn, PoolError, code);

describe('Pool basics', () => {
  test('alloc, find, release, reopen: allocations and their bytes survive', () => {
    const { path, cleanup } = shmPath('pool-basic');
    try {
      const pool = Pool.create(path, { size: '16M' });
      const a = pool.alloc(3, { name: 'state', owner: 'app' });
      const b = pool.alloc(64, { align: 64 });
      assert.equal(b.pfn % 64, 0);
      a.bytes().set([9, 8, 7], 100);
      pool.close();
      const again = Pool.open(path);
      const found = again.find('state');
      assert.ok(found);
      assert.deepEqual(found.toJSON(), { pfn: a.pfn, count: 3, name: 'state', owner: 'app' });
      assert.deepEqual([...found.bytes(100, 3)], [9, 8, 7]);
      assert.deepEqual(again.allocations().map((x) => x.pfn), [a.pfn, b.pfn]);
      again.release(a.pfn, 3, { owner: 'app' });
      assert.equal(again.find('state'), undefined);
      assert.deepEqual(again.check(), { ok: true, problems: [], repaired: [] });
      again.close();
    } finally {
      cleanup();
    }
  });

  test('metadata is reserved exactly, at odd sizes and orderPerBit > 0', () => {
    for (const [pages, orderPerBit] of [[1_000_003, 0], [1_000_003, 3], [4099, 1], [777, 0], [65_537, 5]] as const) {
      const size = pages * 4096;
      const g = computeGeometry({ size, pageSize: 4096, orderPerBit });
      const expectedPages = Math.ceil(g.metadataBytes / 4096);
      assert.equal(g.metadataPages, expectedPages);
      assert.equal(g.reservedUnits, Math.ceil(expectedPages / 2 ** orderPerBit));
      assert.equal(g.unitCount, Math.floor(pages / 2 ** orderPerBit));
      const pool = Pool.create(new MemoryRegion(Math.ceil(size / 4096) * 4096), { size, orderPerBit });
      const s = pool.stats();
      assert.equal(s.metadata, expectedPages);
      assert.equal(s.tail, pages - g.unitCount * 2 ** orderPerBit);
      assert.equal(s.used, g.reservedUnits * 2 ** orderPerBit + s.tail, 'only the metadata units (and the tail) are used');
      // The first allocation starts right after the metadata, on a unit boundary.
      const first = pool.alloc(1);
      assert.equal(first.pfn, g.reservedUnits * 2 ** orderPerBit);
      assert.equal(first.count, 2 ** orderPerBit);
      assert.ok(pool.check().ok);
      pool.close();
    }
  });

  test('stats(): allocations and byOwner agree with the allocations themselves, over random allocs and releases', () => {
    // Owners of every kind: none, ASCII, UTF-8, and two whose CRC-32C is the same (stats groups owners by it).
    // And the names an object keeps for itself: each owner is an entry of byOwner, never its prototype.
    const owners = [undefined, 'a', 'client-7', 'ö', '日本', 'o5a16fu-1m', 'o15tygfi-11', '__proto__', 'constructor', 'toString'];
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat({ max: owners.length - 1 }), fc.integer({ min: 1, max: 5 }), fc.nat()), { maxLength: 60 }), (ops) => {
        const pool = memoryPool(4 * MiB, { orderPerBit: 1 });
        try {
          const held: { pfn: number; count: number; owner?: string }[] = [];
          for (const [release, o, count, pick] of ops) {
            if (release && held.length > 0) {
              const [a] = held.splice(pick % held.length, 1);
              pool.release(a!.pfn, a!.count, a!.owner === undefined ? undefined : { owner: a!.owner });
            } else {
              const owner = owners[o];
              const a = pool.alloc(count, owner === undefined ? undefined : { owner });
              held.push({ pfn: a.pfn, count: a.count, owner });
            }
          }
          pool.subpool('sub', { count: 8 });
          const expected = new Map<string, { allocations: number; pages: number }>();
          const all = pool.allocations();
          for (const a of all) {
            const entry = expected.get(a.owner ?? '') ?? { allocations: 0, pages: 0 };
            expected.set(a.owner ?? '', entry);
            entry.allocations++;
            entry.pages += a.count;
          }
          const st = pool.stats();
          assert.equal(st.allocations, all.length);
          assert.deepEqual(new Map(Object.entries(st.byOwner)), expected);
          assert.equal(Object.getPrototypeOf(st.byOwner), Object.prototype);
          assert.equal(({} as Record<string, unknown>).allocations, undefined, 'Object.prototype untouched');
        } finally {
          pool.close();
        }
      }),
      { numRuns: 60 },
    );
  });

  test('bad arguments are refused with typed errors and change nothing', () => {
    const pool = memoryPool();
    const a = pool.alloc(4, { name: 'x', owner: 'me' });
    const before = JSON.stringify(pool.stats(), (_k, v) => (typeof v === 'bigint' ? String(v) : v));
    for (const count of [0, -1, Number.NaN, 1.5, Infinity, 10 ** 9, '3' as unknown as number]) {
      expectPoolError(() => pool.alloc(count), 'BAD_ARGUMENT');
    }
    for (const align of [0, 3, -2, 1.5, 2 ** 31 + 2, 2 ** 53, Infinity, Number.NaN, '2' as never]) expectPoolError(() => pool.alloc(1, { align }), 'BAD_ARGUMENT');
    // A power of two is a good alignment however large; past the pool no run starts on it: no space.
    for (const align of [2 ** 30, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 52]) {
      const e = expectPoolError(() => pool.alloc(1, { align }), 'NO_SPACE');
      assert.match(e.message, new RegExp(`aligned to ${align};`));
    }
    expectPoolError(() => pool.alloc(1, { name: 'x' }), 'NAME_TAKEN');
    expectPoolError(() => pool.alloc(1, { name: 'n'.repeat(65) }), 'BAD_ARGUMENT');
    expectPoolError(() => pool.alloc(1, { owner: 'o'.repeat(25) }), 'BAD_ARGUMENT');
    // A lone surrogate would be stored as U+FFFD: the name would read back as another string.
    for (const label of ['x\ud800', '\udc00y', `${'n'.repeat(60)}\ud83d`]) {
      expectPoolError(() => pool.alloc(1, { name: label }), 'BAD_ARGUMENT');
      expectPoolError(() => pool.alloc(1, { owner: label }), 'BAD_ARGUMENT');
      expectPoolError(() => pool.find(label), 'BAD_ARGUMENT');
    }
    expectPoolError(() => pool.release(a.pfn + 1, 1), 'NOT_ALLOCATED');
    expectPoolError(() => pool.release(a.pfn, 2, { owner: 'me' }), 'NOT_ALLOCATED');
    expectPoolError(() => pool.release(a.pfn, 4), 'WRONG_OWNER');
    expectPoolError(() => pool.release(a.pfn, 4, { owner: 'you' }), 'WRONG_OWNER');
    expectPoolError(() => pool.release(-1, 1), 'BAD_ARGUMENT');
    expectPoolError(() => pool.release(10 ** 12, 1), 'BAD_ARGUMENT');
    expectPoolError(() => pool.alloc(pool.stats().free + 1), 'NO_SPACE');
    const after = JSON.stringify(pool.stats(), (_k, v) => (typeof v === 'bigint' ? String(v) : v));
    assert.equal(after, before);
    pool.release(a.pfn, 4, { owner: 'me' });
    expectPoolError(() => pool.release(a.pfn, 4, { owner: 'me' }), 'NOT_ALLOCATED');
    pool.close();
    expectPoolError(() => pool.alloc(1), 'CLOSED');
    expectPoolError(() => pool.stats(), 'CLOSED');
    expectPoolError(() => pool.superblockCrc, 'CLOSED');
  });

  test('an all-ASCII name or owner, the usual label on every alloc and release, is not scanned for lone surrogates', () => {
    const pool = memoryPool();
    const proto = String.prototype as unknown as { isWellFormed?: () => boolean };
    const original = proto.isWellFormed;
    let scans = 0;
    proto.isWellFormed = function (this: string): boolean {
      scans++;
      return original !== undefined ? original.call(this) : true;
    };
    try {
      for (let i = 0; i < 10; i++) {
        const a = pool.alloc(1, { owner: 'kv', name: `n${i}` });
        pool.release(a.pfn, 1, { owner: 'kv' });
      }
      assert.equal(scans, 0, 'ASCII labels cost the hot path no scan');
      // Beyond ASCII the label is still checked: a well-formed one is taken, a lone surrogate refused.
      const b = pool.alloc(1, { owner: 'ключ', name: '名前😀' });
      assert.deepEqual(pool.find('名前😀')?.toJSON(), { pfn: b.pfn, count: 1, name: '名前😀', owner: 'ключ' });
      pool.release(b.pfn, 1, { owner: 'ключ' });
      expectPoolError(() => pool.alloc(1, { owner: 'ключ\ud800' }), 'BAD_ARGUMENT');
      assert.ok(scans > 0);
    } finally {
      proto.isWellFormed = original;
      pool.close();
    }
  });

  test('alloc { zero }: a run that held data is handed out zeroed; without it, as it was left', () => {
    const pool = memoryPool(4 * MiB);
    const pages = pool.stats().free;
    const first = pool.alloc(pages);
    first.bytes().fill(0xa5);
    pool.release(first.pfn, first.count);
    const stale = pool.alloc(pages);
    assert.equal(stale.pfn, first.pfn);
    assert.ok(stale.bytes().every((b) => b === 0xa5), 'the pool does not clear what a release gives back');
    pool.release(stale.pfn, stale.count);
    const zeroed = pool.alloc(pages, { zero: true, name: 'z' });
    assert.equal(zeroed.pfn, first.pfn);
    assert.ok(zeroed.bytes().every((b) => b === 0));
    const before = pool.stats();
    for (const zero of ['yes', 1, null]) expectPoolError(() => pool.alloc(1, { zero: zero as unknown as boolean }), 'BAD_ARGUMENT');
    assert.deepEqual(pool.stats(), before);
    assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
    pool.close();
  });

  test('populate(): the pages of a run are mapped in at once, its bytes untouched; a hint, nothing to do in memory', (t) => {
    const [major, minor] = readFileSync('/proc/sys/kernel/osrelease', 'utf8').split('.').map(Number);
    if (major! < 5 || (major === 5 && minor! < 14)) return t.skip('MADV_POPULATE_WRITE needs Linux 5.14');
    const { path, cleanup } = shmPath('populate');
    try {
      const pool = Pool.create(path, { size: 96 * MiB });
      const run = pool.alloc((64 * MiB) / pool.pageSize, { name: 'filled' });
      const head = run.bytes(0, 8);
      head.set([1, 2, 3, 4, 5, 6, 7, 8]);
      const before = rssShmemBytes();
      run.populate();
      const grew = rssShmemBytes() - before;
      assert.ok(grew >= 60 * MiB, `RssShmem grew by ${grew} bytes, not by the run's 64 MiB`);
      assert.deepEqual([...run.bytes(0, 8)], [1, 2, 3, 4, 5, 6, 7, 8], 'populating keeps what the pages hold');
      assert.equal(run.bytes().subarray(8).every((b) => b === 0), true);
      assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
      pool.close();
      expectPoolError(() => run.populate(), 'CLOSED');
      const inMemory = memoryPool(4 * MiB);
      const a = inMemory.alloc(4);
      a.populate();
      assert.equal(a.bytes().every((b) => b === 0), true);
      inMemory.close();
    } finally {
      cleanup();
    }
  });

  test("a view from bytes() is the memory itself: after a release it still maps the pages, after close() it reads as empty", () => {
    const { path, cleanup } = shmPath('views');
    try {
      const pool = Pool.create(path, { size: '4M' });
      const first = pool.alloc(1);
      const view = first.bytes();
      view[0] = 1;
      pool.release(first.pfn, first.count);
      // The next one-page allocation takes the same page: the old view sees the new owner's bytes.
      const second = pool.alloc(1);
      assert.equal(second.pfn, first.pfn);
      second.bytes()[0] = 2;
      assert.equal(view[0], 2);
      pool.close();
      assert.equal(view.length, 0);
      assert.equal(view[0], undefined);
    } finally {
      cleanup();
    }
  });

  test('NO_SPACE names the largest free run', () => {
    const pool = memoryPool(4 * MiB);
    const free = pool.stats().free;
    const big = pool.alloc(free - 10);
    const e = expectPoolError(() => pool.alloc(11), 'NO_SPACE');
    assert.match(e.message, /largest free run is 10 pages/);
    pool.release(big.pfn, big.count);
    pool.close();
  });

  test('sub-pools are pools inside a run, found again by name', () => {
    const region = new MemoryRegion(16 * MiB);
    const pool = Pool.create(region, { size: region.size });
    const sub = pool.subpool('cache', { count: 512 });
    const x = sub.alloc(2, { name: 'x' });
    x.bytes()[0] = 77;
    expectPoolError(() => pool.subpool('missing'), 'NOT_FOUND');
    pool.alloc(1, { name: 'plain' });
    expectPoolError(() => pool.subpool('plain'), 'NAME_TAKEN');
    pool.close();
    const again = Pool.open(region);
    const sub2 = again.subpool('cache');
    assert.equal(sub2.find('x')?.bytes()[0], 77);
    assert.equal(sub2.pageCount, 512);
    assert.ok(again.check().ok);
    assert.ok(sub2.check().ok);
    again.close();
    assert.equal(sub2.closed, true);
  });

  test('onClose: callbacks run first, in order, once each, while the memory is mapped; a throw stops neither the others nor the close', () => {
    const region = new MemoryRegion(16 * MiB);
    const pool = Pool.create(region, { size: region.size });
    const sub = pool.subpool('s', { count: 512 });
    const run = pool.alloc(1, { name: 'state' });
    const seen: string[] = [];
    const twice = () => seen.push('twice');
    pool.onClose(() => {
      // Still open and writable: a client records its state here.
      run.bytes()[0] = 42;
      seen.push(`first, sub closed: ${sub.closed}`);
    });
    pool.onClose(twice);
    const unregistered = pool.onClose(() => seen.push('unregistered'));
    pool.onClose(twice);
    pool.onClose(() => {
      throw new Error('a client failed to close');
    });
    sub.onClose(() => seen.push(`sub, parent closed: ${pool.closed}`));
    pool.onClose(() => seen.push('after the throw'));
    unregistered();
    unregistered(); // undoing twice is harmless
    assert.throws(() => pool.close(), /a client failed to close/);
    assert.deepEqual(seen, ['first, sub closed: false', 'twice', 'twice', 'after the throw', 'sub, parent closed: false']);
    assert.equal(pool.closed, true);
    assert.equal(sub.closed, true);
    pool.close(); // idempotent: nothing runs again
    assert.equal(seen.length, 5);
    const again = Pool.open(region);
    assert.equal(again.find('state')!.bytes()[0], 42, 'the callback wrote while the pool was mapped');
    for (const bad of [undefined, null, 'close', {}]) expectError(() => again.onClose(bad as never), PoolError, 'BAD_ARGUMENT');
    again.close();
    expectError(() => again.onClose(() => {}), PoolError, 'CLOSED');
  });

  test('onClose: a callback that closes the pool itself ends that close; the outer one stops there', () => {
    const region = new MemoryRegion(16 * MiB);
    const pool = Pool.create(region, { size: region.size });
    const sub = pool.subpool('s', { count: 512 });
    const seen: string[] = [];
    pool.onClose(() => {
      seen.push('closes the pool');
      pool.close();
      seen.push(`closed inside: ${pool.closed}`);
    });
    pool.onClose(() => seen.push('the next callback'));
    pool.close(); // before: a TypeError, the outer close going on over the closed pool's parts
    assert.deepEqual(seen, ['closes the pool', 'the next callback', 'closed inside: true']);
    assert.equal(pool.closed, true);
    assert.equal(sub.closed, true);
    const again = Pool.open(region);
    assert.ok(again.check().ok);
    again.close();
  });

  test("a parent's check reaches its sub-pools, and its repair restores one subpool() refused to open", () => {
    const region = new MemoryRegion(16 * MiB);
    const pool = Pool.create(region, { size: region.size });
    const sub = pool.subpool('s', { count: 512 });
    sub.alloc(3, { name: 'x' }).bytes()[0] = 77;
    const nested = sub.subpool('n', { count: 64 });
    const y = nested.alloc(1, { name: 'y' });
    // The nested sub-pool's bitmap loses y's page; the sub-pool's primary superblock a bit.
    poolInternals(nested).parts.units.markFree(y.pfn, 1);
    const s = pool.find('s')!;
    const n = sub.find('n')!;
    pool.close();
    new Uint8Array(region.buffer)[s.pfn * 4096 + 60]! ^= 4;
    const again = Pool.open(region);
    const refused = expectPoolError(() => again.subpool('s'), 'CORRUPT');
    assert.match(refused.message, /check --repair/);
    const inS = `sub-pool "s" at pfn ${s.pfn}: `;
    const lost = `${inS}sub-pool "n" at pfn ${n.pfn}: pages [${y.pfn}, +1) are owned by a record but marked free`;
    const report = again.check();
    assert.equal(report.ok, false);
    assert.ok(report.problems.some((p) => p.startsWith(`${inS}primary superblock: `)), report.problems.join('\n'));
    assert.ok(report.problems.includes(lost), report.problems.join('\n'));
    const fixed = again.check({ repair: true });
    assert.deepEqual(fixed.problems, []);
    assert.equal(fixed.ok, true);
    assert.ok(fixed.repaired.some((p) => p.startsWith(`${inS}primary superblock: `)), fixed.repaired.join('\n'));
    assert.ok(fixed.repaired.includes(lost), fixed.repaired.join('\n'));
    assert.deepEqual(again.check(), { ok: true, problems: [], repaired: [] });
    const s2 = again.subpool('s');
    assert.equal(s2.find('x')?.bytes()[0], 77);
    assert.equal(s2.subpool('n').find('y')?.pfn, y.pfn);
    // A sub-pool record whose run holds no pool at all: reported, and kept (the directory is the truth).
    s2.close();
    new Uint8Array(region.buffer, s.pfn * 4096, 4096).fill(0);
    for (const repair of [false, true]) {
      const r = again.check({ repair });
      assert.equal(r.ok, false);
      assert.ok(r.problems.some((p) => p.startsWith(`sub-pool "s" at pfn ${s.pfn} holds no pool`)), r.problems.join('\n'));
    }
    assert.equal(again.find('s')?.pfn, s.pfn);
    again.close();
  });

  test('check finds and repair fixes derived damage; the directory wins', () => {
    const region = new MemoryRegion(16 * MiB);
    const pool = Pool.create(region, { size: region.size });
    const keep = pool.alloc(5, { name: 'keep' });
    assert.equal(pool.check().ok, true);
    const words = new Uint32Array(region.buffer);
    // The leaf bitmap follows the allocator's header words (src/alloc/geometry.ts).
    const leaf = pool.geometry.areas.unitBitmap.offset / 4 + HEADER_WORDS;
    const before = words.slice(leaf, leaf + 512);
    const temp = pool.alloc(1, { name: 'temp' });
    const after = words.slice(leaf, leaf + 512);
    const changed = after.findIndex((v, i) => v !== before[i]);
    assert.ok(changed >= 0, 'an alloc sets a leaf bit');
    // Undo the leaf bit behind the allocator's back: "temp" now owns a page the bitmap calls free.
    words[leaf + changed] = before[changed]!;
    const report = pool.check();
    assert.equal(report.ok, false);
    assert.ok(report.problems.some((p) => new RegExp(`pages \\[${temp.pfn}, \\+1\\) are owned by a record but marked free`).test(p)), report.problems.join('\n'));
    const fixed = pool.check({ repair: true });
    assert.equal(fixed.ok, true, fixed.problems.join('\n'));
    assert.ok(fixed.repaired.some((p) => /marked free/.test(p)), fixed.repaired.join('\n'));
    assert.equal(pool.find('keep')?.pfn, keep.pfn);
    assert.equal(pool.find('temp')?.pfn, temp.pfn);
    // The page is owned again: the next allocation does not get it.
    assert.notEqual(pool.alloc(1).pfn, temp.pfn);
    assert.equal(pool.check().ok, true);
    pool.close();
  });

  test('a superblock with a good checksum whose geometry does not describe the metadata: typed CORRUPT, never an internal error', () => {
    const region = new MemoryRegion(4 * MiB);
    const pool = Pool.create(region, { size: region.size });
    for (const count of [17, 2, 16, 17, 16, 8]) pool.alloc(count);
    pool.close();
    // Both copies re-laid for orderPerBit 1, checksums good: the geometry is self-consistent, but
    // the bitmaps in the region were built for orderPerBit 0, and their summaries contradict them.
    const bytes = new Uint8Array(region.buffer);
    for (const at of [0, SUPERBLOCK_BACKUP_OFFSET]) {
      const copy = bytes.subarray(at, at + SUPERBLOCK_BYTES);
      const sb = decodeSuperblock(copy.slice(), region.size);
      assert.ok(!isSuperblockProblem(sb));
      const geometry = computeGeometry({ size: region.size, pageSize: 4096, orderPerBit: 1, maxRecords: sb.geometry.maxRecords });
      encodeSuperblock({ ...sb, geometry }, copy);
    }
    const again = Pool.open(region);
    const report = again.check();
    assert.equal(report.ok, false);
    assert.ok(report.problems.some((p) => /not on a unit boundary/.test(p)), report.problems.join('\n'));
    expectPoolError(() => again.stats(), 'CORRUPT');
    expectPoolError(() => again.alloc(1), 'CORRUPT');
    again.close();
  });

  test('home slots: a record takes the slot of its first unit when free; only the others are in the pfn index', () => {
    const region = new MemoryRegion(1 * MiB);
    // 16 records for 256 units: units u and u + 16 share a home slot.
    const pool = Pool.create(region, { size: region.size, maxAllocations: 16 });
    const { parts } = poolInternals(pool);
    const a = pool.alloc(1);
    assert.equal(parts.directory.pfn(homeSlot(pool.geometry, a.pfn)), a.pfn, 'the first allocation is in its home slot');
    assert.equal([...parts.pfnIndex.entries()].length, 0, 'and has no pfn index entry');
    const spacer = pool.alloc(15);
    const b = pool.alloc(1);
    assert.equal(homeSlot(pool.geometry, b.pfn), homeSlot(pool.geometry, a.pfn));
    const entries = [...parts.pfnIndex.entries()];
    assert.equal(entries.length, 1, 'the second one, whose home slot is taken, is indexed');
    assert.equal(parts.directory.pfn(entries[0]!.slot), b.pfn);
    assert.equal(pool.at(b.pfn)?.pfn, b.pfn);
    assert.equal(pool.check().ok, true);
    // An index entry for a record in its home slot is a stray entry: reported, and removed by repair.
    parts.pfnIndex.insert(hashPfn(a.pfn), homeSlot(pool.geometry, a.pfn));
    const report = pool.check();
    assert.ok(report.problems.some((p) => /in its home slot/.test(p)), report.problems.join('\n'));
    assert.equal(pool.check({ repair: true }).ok, true);
    assert.equal([...parts.pfnIndex.entries()].length, 1);
    // Released, each is found where it is: at home, and through the index.
    pool.release(a.pfn, 1);
    pool.release(b.pfn, 1);
    pool.release(spacer.pfn, 15);
    assert.equal([...parts.pfnIndex.entries()].length, 0);
    assert.deepEqual(pool.allocations(), []);
    assert.equal(pool.check().ok, true);
    pool.close();
  });

  test('a record recovery does not honour is never reached through its home slot (INDEX_ALL)', () => {
    // docs/abi.md: a directory record's page count is the u64 at +16.
    const PAGES = 16;
    const setup = () => {
      const pool = Pool.create(new MemoryRegion(1 * MiB), { size: 1 * MiB, maxAllocations: 16 });
      return { pool, parts: poolInternals(pool).parts };
    };

    // 1. A damaged home record (its page count grown over its neighbour's page): check and repair
    //    report and keep it, and from then on neither at() nor release() reaches it.
    {
      const { pool, parts } = setup();
      const a = pool.alloc(1);
      const b = pool.alloc(1, { name: 'b' });
      b.bytes().fill(7);
      assert.equal(b.pfn, a.pfn + 1);
      const slotA = homeSlot(pool.geometry, a.pfn);
      assert.equal(parts.directory.pfn(slotA), a.pfn);
      parts.writer.store64(parts.directory.offsetOf(slotA) + PAGES, 2);
      const report = pool.check({ repair: true });
      assert.ok(report.problems.some((p) => /corrupt/.test(p)), report.problems.join('\n'));
      assert.equal(parts.control.indexAll(), true);
      assert.equal(pool.at(a.pfn), undefined);
      expectPoolError(() => pool.release(a.pfn, 2), 'NOT_ALLOCATED');
      expectPoolError(() => pool.release(a.pfn, 1), 'NOT_ALLOCATED');
      // The damaged record's plausible extent covers b's page: b keeps it, and the damaged record's
      // own page stays out of reuse (docs/abi.md); neither is handed out, b's bytes stay as they were.
      const handedOut: number[] = [];
      for (;;) {
        try {
          handedOut.push(pool.alloc(1).pfn);
        } catch {
          break;
        }
      }
      assert.ok(handedOut.length > 0);
      assert.ok(!handedOut.includes(a.pfn) && !handedOut.includes(b.pfn), 'neither page is handed out');
      assert.ok(b.bytes().every((x) => x === 7));
      // New allocations are indexed too, and found by pfn and released.
      for (const pfn of handedOut) assert.equal(pool.at(pfn)?.pfn, pfn);
      for (const pfn of handedOut) pool.release(pfn, 1);
      assert.equal(pool.at(handedOut[0]!), undefined);
      // Released records leave the index; b, an intact record, is honoured and stays in it.
      assert.deepEqual([...parts.pfnIndex.entries()].map((e) => parts.directory.pfn(e.slot)), [b.pfn]);
      assert.equal(pool.find('b')?.pfn, b.pfn);
      // A flipped INDEX_ALL word is reported and repaired.
      parts.control.setIndexAll(false);
      assert.ok(pool.check().problems.some((p) => /INDEX_ALL/.test(p)));
      pool.check({ repair: true });
      assert.equal(parts.control.indexAll(), true);
      pool.close();
    }

    // 2. A committed record for pfn 0 (the superblock's page) in slot 0, its home: never released.
    {
      const { pool, parts } = setup();
      assert.equal(homeSlot(pool.geometry, 0), 0);
      assert.equal(parts.directory.isFree(0), true);
      parts.slots.markUsed(0, 1);
      parts.directory.write(0, 0, 1, parts.control.nextSeq(), 0, new Uint8Array(0), new Uint8Array(0));
      parts.directory.commit(0);
      assert.equal(pool.at(0), undefined, 'not even before a repair: no record may own the metadata');
      expectPoolError(() => pool.release(0, 1), 'NOT_ALLOCATED');
      pool.check({ repair: true });
      assert.equal(parts.control.indexAll(), true);
      expectPoolError(() => pool.release(0, 1), 'NOT_ALLOCATED');
      for (let i = 0; i < 8; i++) assert.ok(pool.alloc(1).pfn >= pool.geometry.reservedUnits);
      pool.close();
    }

    // 3. Two records for one pfn, the older away from home, the newer at home: the older stands.
    {
      const { pool, parts } = setup();
      const g = pool.geometry;
      const older = pool.alloc(1, { name: 'older' });
      const home = homeSlot(g, older.pfn);
      // Move the older record out of its home slot, as if that slot had been taken when it was made.
      const spare = parts.slots.find(1, 1);
      parts.slots.markUsed(spare, 1);
      parts.directory.write(spare, older.pfn, 1, parts.directory.seq(home), 0, new Uint8Array(0), new TextEncoder().encode('older'));
      parts.directory.commit(spare);
      parts.directory.write(home, older.pfn, 1, parts.control.nextSeq(), 0, new Uint8Array(0), new TextEncoder().encode('newer'));
      parts.directory.commit(home);
      const report = pool.check({ repair: true });
      assert.ok(report.problems.some((p) => /overlaps/.test(p)), report.problems.join('\n'));
      assert.equal(parts.control.indexAll(), true);
      assert.equal(pool.at(older.pfn)?.name, 'older', 'the lookup reaches the honoured record, not the one at home');
      pool.close();
    }
  });

  test('a damaged record whose page count grew over an intact neighbour: the neighbour keeps its pages, check and repair agree', () => {
    // docs/abi.md: a directory record's page count is the u64 at +16.
    const PAGES = 16;
    const pool = Pool.create(new MemoryRegion(1 * MiB), { size: 1 * MiB, maxAllocations: 16 });
    const { parts } = poolInternals(pool);
    const a = pool.alloc(1);
    const b = pool.alloc(1, { name: 'b' });
    const c = pool.alloc(2, { name: 'c' });
    assert.equal(b.pfn, a.pfn + 1);
    const slotA = homeSlot(pool.geometry, a.pfn);
    parts.writer.store64(parts.directory.offsetOf(slotA) + PAGES, 2);
    const corrupt = `record ${slotA} is corrupt (checksum or state word; at metadata offset ${parts.directory.offsetOf(slotA)}, 128 bytes)`;
    const repair = pool.check({ repair: true });
    // Only the damaged record is left to report: its page is held for it, not leaked, and the
    // intact record behind it is honoured and indexed.
    assert.deepEqual(repair.problems, [corrupt]);
    assert.deepEqual(pool.check(), { ok: false, problems: [corrupt], repaired: [] }, 'a second check finds what the repair left');
    assert.equal(pool.find('b')?.pfn, b.pfn);
    assert.equal(pool.at(b.pfn)?.name, 'b');
    assert.deepEqual(pool.allocations().map((x) => x.pfn), [b.pfn, c.pfn]);
    // The damaged record's page, freed behind the pool's back, is named: a repair marks it again.
    parts.units.markFree(a.pfn, 1);
    assert.ok(pool.check().problems.includes(`pages [${a.pfn}, +1) are owned by a record but marked free`));
    assert.deepEqual(pool.check({ repair: true }).problems, [corrupt]);
    pool.release(b.pfn, 1);
    pool.release(c.pfn, 2, {});
    assert.equal(pool.find('b'), undefined);
    pool.close();
  });

  test('a release over a name index damaged to have no empty entry returns, and repair rebuilds the index', () => {
    const { path, cleanup } = shmPath('index-full');
    try {
      const pool = Pool.create(path, { size: '4M', maxAllocations: 8 });
      const victim = pool.alloc(1, { name: 'victim' });
      // Every empty entry of the name index made non-empty: no empty entry ends a probe run.
      const { parts } = poolInternals(pool);
      const area = pool.geometry.areas.nameIndex;
      for (let at = area.offset; at < area.offset + area.length; at += 8) {
        if (parts.writer.u32[at >>> 2] === 0) parts.writer.store64(at, 0x12345 * 2 ** 32 + 0xdeadbeef);
      }
      pool.close();
      // In a child with a deadline: the release's backward shift used to go round the table for ever.
      const r = runModule(
        `import { Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
         const pool = Pool.open(process.argv[1]);
         pool.release(${victim.pfn}, ${victim.count});
         process.stdout.write(String(pool.find('victim') === undefined));`,
        [path],
        [],
        20_000,
      );
      assert.equal(r.signal, null, 'the release returned (it was not killed at the deadline)');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'true');
      const again = Pool.open(path);
      try {
        assert.ok(again.check().problems.some((p) => /name index/.test(p)));
        again.check({ repair: true });
        assert.deepEqual(again.check().problems, []);
      } finally {
        again.close();
      }
    } finally {
      cleanup();
    }
  });
});

test('a /dev/urandom that ends (a broken sandbox) does not hang: randomness comes from node:crypto', async (t) => {
  // A private mount namespace where /dev/urandom reads as /dev/null: needs root and unshare(1).
  const probe = spawnSync('unshare', ['--mount', 'sh', '-c', 'mount --bind /dev/null /dev/urandom && test ! -s /dev/urandom'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    t.skip(`cannot bind /dev/null over /dev/urandom here: ${(probe.stderr || probe.error?.message || '').trim()}`);
    return;
  }
  const { path, cleanup } = shmPath('urandom-eof');
  try {
    const source = `import { Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
      const pool = Pool.create(process.argv[1], { size: '4M' });
      process.stdout.write(pool.uuid);
      pool.close();`;
    const r = spawnSync(
      'unshare',
      ['--mount', 'sh', '-c', 'mount --bind /dev/null /dev/urandom && exec "$0" "$@"', process.execPath, '--input-type=module', '-e', source, path],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(r.signal, null, 'the pool was created (the child was not killed at the deadline)');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  } finally {
    cleanup();
  }
});

describe('options that are not an object, or fields of the wrong type', () => {

  test('each Pool entry point refuses them with BAD_ARGUMENT, naming the parameter, and changes nothing', () => {
    const pool = poolInMemory(4 << 20);
    const kept = pool.alloc(2, { name: 'kept' });
    const before = statsText(pool);
    const entries: [string, (options: never) => unknown][] = [
      ['alloc options', (o) => pool.alloc(1, o)],
      ['release options', (o) => pool.release(kept.pfn, kept.count, o)],
      ['subpool options', (o) => pool.subpool('sub', o)],
      ['check options', (o) => pool.check(o)],
      ['Pool.create options', (o) => Pool.create(new MemoryRegion(1 << 20), o)],
      ['Pool.open options', (o) => Pool.open(pool.region, o)],
    ];
    for (const [what, call] of entries) {
      for (const bad of NOT_OBJECTS) {
        const e = expectError(() => call(bad as never), PoolError, 'BAD_ARGUMENT');
        assert.equal(e.message, `${what} must be an object, got ${shown(bad)}`);
      }
    }
    assert.equal(statsText(pool), before);
    assert.equal(pool.find('kept')?.pfn, kept.pfn);
    assert.equal(pool.find('sub'), undefined);
  });

  test('fields of the wrong type are refused, not misread', () => {
    const pool = poolInMemory(4 << 20);
    const kept = pool.alloc(2, { owner: 'me' });
    const before = statsText(pool);
    const refused: (() => unknown)[] = [
      () => pool.alloc(1, { zero: 'yes' as never }),
      () => pool.alloc(1, { zero: 1 as never }),
      () => pool.alloc(1, { align: '2' as never }),
      () => pool.alloc(1, { name: 7 as never }),
      () => pool.release(kept.pfn, kept.count, { owner: 1 as never }),
      () => pool.check({ repair: 'yes' as never }),
      () => pool.check({ repair: 1 as never }),
      () => pool.subpool('sub', { count: '8' as never }),
      () => pool.subpool('sub', { count: 8, orderPerBit: '1' as never }),
      () => pool.subpool('sub', { count: 8, maxAllocations: null as never }),
      () => Pool.open(pool.region, { lockTimeoutMs: Number.NaN }),
      () => Pool.open(pool.region, { lockTimeoutMs: -1 }),
      () => Pool.open(pool.region, { lockTimeoutMs: '5s' as never }),
      () => Pool.open(pool.region, { allowDamagedSuperblock: 'yes' as never }),
      () => Pool.open(pool.region, { isAlive: true as never }),
      () => Pool.create(new MemoryRegion(1 << 20), { size: 1 << 20, lockTimeoutMs: Number.NaN }),
      () => Pool.create(new MemoryRegion(1 << 20), { size: true as never }),
      () => Pool.create(new MemoryRegion(1 << 20), undefined as never),
      () => Pool.create(null as never, { size: 1 << 20 }),
      () => Pool.create(42 as never, { size: 1 << 20 }),
      () => Pool.open(null as never),
      () => Pool.open({} as never),
    ];
    for (const call of refused) expectError(call, PoolError, 'BAD_ARGUMENT');
    assert.equal(statsText(pool), before);
  });

  test('Pool.create and Pool.open with bad options create no file', () => {
    const { path, cleanup } = shmPath('bad-options');
    try {
      for (const bad of NOT_OBJECTS) {
        expectError(() => Pool.create(path, bad as never), PoolError, 'BAD_ARGUMENT');
        expectError(() => Pool.open(path, bad as never), PoolError, 'BAD_ARGUMENT');
      }
      expectError(() => Pool.create(path, { size: '4M', mode: 'rw' as never }), PoolError, 'BAD_ARGUMENT');
      expectError(() => Pool.create(path, { size: '4M', mode: 0o10000 }), PoolError, 'BAD_ARGUMENT');
      expectError(() => Pool.create(path, { size: '4M', lockTimeoutMs: -5 }), PoolError, 'BAD_ARGUMENT');
      assert.equal(existsSync(path), false);
    } finally {
      cleanup();
    }
  });
});

/** This process's shared-memory pages mapped in (RssShmem of /proc/self/status), in bytes. */
function rssShmemBytes(): number {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('RssShmem:'));
  if (line === undefined) throw new Error('no RssShmem in /proc/self/status');
  return Number(/(\d+) kB/.exec(line)![1]) * 1024;
}

describe('preallocate: a pool whose pages all have their memory from the start', () => {
  const allocatedBytes = (path: string) => statSync(path).blocks * 512;

  test('the file is reserved whole at create; by default it is sparse', () => {
    for (const preallocate of [true, false]) {
      const { path, cleanup } = shmPath(`prealloc-${preallocate}`);
      try {
        const pool = Pool.create(path, { size: 8 * 1024 * 1024, preallocate });
        pool.close();
        if (preallocate) assert.ok(allocatedBytes(path) >= 8 * 1024 * 1024, `${allocatedBytes(path)} bytes allocated`);
        else assert.ok(allocatedBytes(path) < 8 * 1024 * 1024, `sparse: ${allocatedBytes(path)} bytes allocated`);
        Pool.open(path).close();
      } finally {
        cleanup();
      }
    }
  });

  test('bad input: not a boolean, or a Region handed in: BAD_ARGUMENT, nothing created', () => {
    const { path, cleanup } = shmPath('prealloc-bad');
    try {
      for (const value of ['yes', 1, null]) {
        expectError(() => Pool.create(path, { size: 1 << 20, preallocate: value as unknown as boolean }), PoolError, 'BAD_ARGUMENT');
        assert.equal(existsSync(path), false);
      }
      expectError(() => Pool.create(new MemoryRegion(1 << 20), { size: 1 << 20, preallocate: true }), PoolError, 'BAD_ARGUMENT');
    } finally {
      cleanup();
    }
  });

  test('Pool.open { preallocate } reserves what a sparse pool lacks, its allocations and data kept', () => {
    const { path, cleanup } = shmPath('prealloc-open');
    try {
      const pool = Pool.create(path, { size: 8 * 1024 * 1024 });
      pool.alloc(4, { name: 'kept' }).bytes().set([1, 2, 3], 10);
      pool.close();
      assert.ok(allocatedBytes(path) < 8 * 1024 * 1024, 'created sparse');
      const reserved = Pool.open(path, { preallocate: true });
      assert.ok(allocatedBytes(path) >= 8 * 1024 * 1024, `${allocatedBytes(path)} bytes allocated`);
      assert.deepEqual([...reserved.find('kept')!.bytes(10, 3)], [1, 2, 3]);
      assert.equal(reserved.check().ok, true);
      reserved.close();
      assert.equal(statSync(path).size, 8 * 1024 * 1024, 'the size stays');
    } finally {
      cleanup();
    }
  });

  test('preallocate at open, bad input: not a boolean, a Region handed in, a read-only region: BAD_ARGUMENT, the file untouched', () => {
    const { path, cleanup } = shmPath('prealloc-open-bad');
    try {
      Pool.create(path, { size: 4 * 1024 * 1024 }).close();
      const before = allocatedBytes(path);
      for (const value of ['yes', 1, null]) expectError(() => Pool.open(path, { preallocate: value as unknown as boolean }), PoolError, 'BAD_ARGUMENT');
      const region = FileRegion.open(path);
      try {
        expectError(() => Pool.open(region, { preallocate: true }), PoolError, 'BAD_ARGUMENT');
      } finally {
        region.close();
      }
      expectError(() => FileRegion.open(path, { readOnly: true, preallocate: true }), RegionError, 'BAD_ARGUMENT');
      assert.equal(allocatedBytes(path), before, 'nothing was reserved');
    } finally {
      cleanup();
    }
  });

  test('--pmpool=PATH,SIZE,preallocate: a pool created or opened cold with its memory reserved', () => {
    assert.deepEqual(kexec.parsePoolFlag(['--pmpool=/dev/shm/a,b,8M,preallocate']), { path: '/dev/shm/a,b', size: 8 * 1024 * 1024, preallocate: true });
    assert.deepEqual(kexec.parsePoolFlag(['--pmpool=/dev/shm/a,preallocate,8M']), { path: '/dev/shm/a,preallocate', size: 8 * 1024 * 1024, preallocate: false });
    for (const bad of ['--pmpool=/dev/shm/a,preallocate', '--pmpool=/dev/shm/a,8M,preallocated', '--pmpool=,8M,preallocate']) {
      assert.throws(() => kexec.parsePoolFlag([bad]), (e: unknown) => e instanceof Error && (e as { code?: string }).code === 'BAD_ARGUMENT', bad);
    }
    for (const existing of [false, true]) {
      const { path, cleanup } = shmPath(`prealloc-flag-${existing}`);
      try {
        if (existing) Pool.create(path, { size: 8 * 1024 * 1024 }).close();
        const r = runModule(
          `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
           const pool = kexec.poolFromCommandLine();
           process.stdout.write(String(pool.pageCount * pool.pageSize));`,
          ['--', `--pmpool=${path},8M,preallocate`],
        );
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout, String(8 * 1024 * 1024));
        assert.ok(allocatedBytes(path) >= 8 * 1024 * 1024, `${existing ? 'opened' : 'created'}: ${allocatedBytes(path)} bytes allocated`);
      } finally {
        cleanup();
      }
    }
  });

  test('--pmpool=...,preallocate reserves nothing on a restore from a handover: the restore stays O(1) in the pool\'s size', () => {
    const { path, cleanup } = shmPath('prealloc-restore');
    const blob = shmPath('prealloc-restore-blob');
    try {
      // The previous program: a sparse pool (no flag), and a handover blob for it.
      const first = runModule(
        `import { writeFileSync } from 'node:fs';
         import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
         kexec.poolFromCommandLine();
         writeFileSync(${JSON.stringify(blob.path)}, kexec.prepare().bytes, { mode: 0o600 });`,
        ['--', `--pmpool=${path},8M`],
      );
      assert.equal(first.status, 0, first.stderr);
      const sparse = allocatedBytes(path);
      assert.ok(sparse < 8 * 1024 * 1024);
      const next = runModule(
        `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
         const incoming = kexec.incoming();
         kexec.poolFromCommandLine();
         process.stdout.write(String(incoming?.generation));`,
        ['--', `--pmpool=${path},8M,preallocate`, `--pmpool-fdt=${blob.path}`],
      );
      assert.equal(next.status, 0, next.stderr);
      assert.equal(next.stdout, '1', 'restored from the handover');
      assert.equal(allocatedBytes(path), sparse, 'the restore reserved blocks');
    } finally {
      cleanup();
      blob.cleanup();
    }
  });

  test('a file system without room refuses a preallocated create (ENOSPC), leaving no file; a sparse one is made', (t) => {
    // A tmpfs of 4 MiB of our own (root only: elsewhere skipped, saying why).
    if (process.getuid?.() !== 0) return t.skip('needs root to mount a small tmpfs');
    const dir = mkdtempSync(join(tmpdir(), 'pmpool-small-tmpfs-'));
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'none', dir], { encoding: 'utf8' });
    if (mounted.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      return t.skip(`cannot mount a tmpfs here: ${mounted.stderr.trim()}`);
    }
    try {
      const path = join(dir, 'pool');
      const error = expectError(() => Pool.create(path, { size: 16 * 1024 * 1024, preallocate: true }), RegionError, 'IO');
      assert.equal(error.errno, 'ENOSPC');
      assert.match(error.message, /fallocate/);
      assert.equal(existsSync(path), false, 'the refused create leaves no file');
      // Sparse, the same pool is made: its program would meet SIGBUS only when it writes past the room.
      const made = Pool.create(path, { size: 16 * 1024 * 1024 });
      made.alloc(2, { name: 'kept' });
      made.close();
      assert.ok(allocatedBytes(path) < 4 * 1024 * 1024);
      // Opened with preallocate, it is refused the same way, and stays a pool that opens as it was.
      const refused = expectError(() => Pool.open(path, { preallocate: true }), RegionError, 'IO');
      assert.equal(refused.errno, 'ENOSPC');
      const again = Pool.open(path);
      assert.equal(again.find('kept')?.count, 2);
      assert.equal(again.check().ok, true);
      again.close();
    } finally {
      // Lazily: a pool left mapped by a failed assertion would make a plain umount fail (EBUSY).
      spawnSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('pmpool create --preallocate', () => {
    const { path, cleanup } = shmPath('prealloc-cli');
    try {
      const r = spawnSync(process.execPath, [CLI_PATH, 'create', path, '--size', '8M', '--preallocate'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.ok(allocatedBytes(path) >= 8 * 1024 * 1024);
    } finally {
      cleanup();
    }
  });
});

describe('a region mapped read-only', () => {
  test('Pool.open and Pool.create refuse it, typed, and the pool file is untouched (no SIGSEGV at the first lock)', () => {
    const { path, cleanup } = shmPath('read-only');
    try {
      const pool = Pool.create(path, { size: 4 * 1024 * 1024 });
      pool.alloc(3, { name: 'kept' });
      pool.close();
      const before = readFileSync(path);
      // In a child: were the refusal missing, the first store to the read-only mapping would kill the process.
      const r = runModule(
        `import { Pool, FileRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
         const outcome = (fn) => { try { fn(); return 'no error'; } catch (e) { return e.name + ' ' + e.code + ': ' + e.message; } };
         const region = FileRegion.open(${JSON.stringify(path)}, { readOnly: true });
         const opened = outcome(() => Pool.open(region).stats());
         const created = outcome(() => Pool.create(region, { size: region.size }).stats());
         region.close();
         const writable = Pool.open(${JSON.stringify(path)});
         console.log(JSON.stringify({ opened, created, kept: writable.find('kept')?.count ?? null }));
         writable.close();`,
      );
      assert.equal(r.status, 0, `the child died (${r.signal ?? r.status}): ${r.stderr}`);
      const seen = JSON.parse(r.stdout) as { opened: string; created: string; kept: number | null };
      assert.match(seen.opened, /^PoolError BAD_ARGUMENT: .* is mapped read-only/);
      assert.match(seen.created, /^PoolError BAD_ARGUMENT: .* is mapped read-only/);
      assert.equal(seen.kept, 3, 'the pool opens writable afterwards, its allocation there');
      assert.deepEqual(readFileSync(path).subarray(0, 4096), before.subarray(0, 4096), 'the superblock page is as it was before the refusals');
    } finally {
      cleanup();
    }
  });
});
