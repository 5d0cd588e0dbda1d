/**
 * PersistentMap in one process: the Map API, bad input, a full pool, grow
 * and shrink cycles without leaks, readers, and a deterministic crash
 * simulation that stops the map at every store boundary of every operation
 * (setMapFaultHook), reopens it as the next writer would, and proves each
 * entry old or new and no pool page leaked.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Pool, PoolError } from '../src/index.js';
import { MemoryRegion } from '../src/region/index.js';
import { ClientError, LogRing, PersistentMap, MAX_KEY_BYTES, MAX_VALUE_BYTES, type MapKey, type MapValue } from '../src/clients/index.js';
import { setMapFaultHook } from '../src/clients/persistent-map.js';
import { readFixedHeader, TYPE_LOG, TYPE_MAP, writeFixedHeader } from '../src/clients/client-header.js';
import { HDR_COUNT, HDR_SEQ, SEG_HEADER, SEGTAB } from '../src/clients/map-layout.js';
import { PMPOOL_ENTRY, runModule, shmPath } from './support/child.js';
import { Prng, testSeed } from './support/prng.js';
import { expectError, memoryPool as poolInMemory, NOT_OBJECTS, shown, statsText } from './support/expect.js';

const MiB = 1024 * 1024;

const memoryPool = (size = 32 * MiB): Pool => poolInMemory(size);

const expectClientError = (fn: () => unknown, code: string): ClientError => expectError(fn, ClientError, code);

/** Pool pages held by the map's owner, as the pool's directory sees them. */
function ownedPages(pool: Pool, name: string): number {
  return pool.stats().byOwner[`pmap:${name}`]?.pages ?? 0;
}

/** Runs `fn` on a new pool in a file of its own on /dev/shm; the pool is closed and the file removed after it, also when it fails. */
function withShmPool(label: string, size: number, fn: (pool: Pool) => void): void {
  const { path, cleanup } = shmPath(label);
  try {
    const pool = Pool.create(path, { size });
    try {
      fn(pool);
    } finally {
      pool.close();
    }
  } finally {
    cleanup();
  }
}

function same(a: MapValue | MapKey | undefined, b: MapValue | MapKey | undefined): boolean {
  if (typeof a === 'string' || typeof b === 'string' || a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

describe('PersistentMap basics', () => {
  test('get/set/delete/has/size, iteration, string and byte keys kept apart', () => {
    const pool = memoryPool();
    const map = PersistentMap.open(pool, 'kv');
    assert.equal(map.size, 0);
    assert.equal(map.get('a'), undefined);
    map.set('a', 'alpha').set(new Uint8Array([0x61]), new Uint8Array([1, 2, 3])).set('ü🙂', 'ünïcødé 🙂');
    assert.equal(map.size, 3);
    assert.equal(map.get('a'), 'alpha');
    assert.deepEqual(map.get(new Uint8Array([0x61])), new Uint8Array([1, 2, 3]));
    assert.equal(map.get('ü🙂'), 'ünïcødé 🙂');
    assert.equal(map.has('a'), true);
    assert.equal(map.has(new Uint8Array([0x62])), false);
    map.set('a', 'ALPHA');
    assert.equal(map.get('a'), 'ALPHA');
    assert.equal(map.size, 3);
    const entries = [...map.entries()].map(([k, v]) => [typeof k === 'string' ? k : [...k], typeof v === 'string' ? v : [...v]]);
    assert.deepEqual(
      entries.sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y))),
      [
        ['a', 'ALPHA'],
        ['ü🙂', 'ünïcødé 🙂'],
        [[0x61], [1, 2, 3]],
      ].sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y))),
    );
    assert.equal([...map.keys()].length, 3);
    assert.equal([...map.values()].length, 3);
    let seen = 0;
    map.forEach(() => seen++);
    assert.equal(seen, 3);
    assert.equal(map.delete('a'), true);
    assert.equal(map.delete('a'), false);
    assert.equal(map.get('a'), undefined);
    assert.equal(map.size, 2);
    assert.deepEqual(map.check(), { ok: true, problems: [] });
    map.close();
    // Reopen: everything is where it was.
    const again = PersistentMap.open(pool, 'kv');
    assert.equal(again.size, 2);
    assert.equal(again.get('ü🙂'), 'ünïcødé 🙂');
    assert.deepEqual(again.check(), { ok: true, problems: [] });
    again.close();
    pool.close();
  });

  test('keys and values of 0 bytes and of 1 MiB; the limits are exact', () => {
    const pool = memoryPool(64 * MiB);
    const map = PersistentMap.open(pool, 'big');
    const mib = new Uint8Array(MiB).map((_, i) => (i * 31) & 0xff);
    const mibText = 'x'.repeat(MiB);
    map.set('', '');
    map.set(new Uint8Array(0), new Uint8Array(0));
    map.set(mib, mib);
    map.set(mibText, mibText);
    map.set('max-value', new Uint8Array(MAX_VALUE_BYTES).fill(7));
    map.set(new Uint8Array(MAX_KEY_BYTES).fill(9), 'max-key');
    assert.equal(map.get(''), '');
    assert.deepEqual(map.get(new Uint8Array(0)), new Uint8Array(0));
    assert.deepEqual(map.get(mib), mib);
    assert.equal(map.get(mibText), mibText);
    assert.equal((map.get('max-value') as Uint8Array).length, MAX_VALUE_BYTES);
    assert.equal(map.get(new Uint8Array(MAX_KEY_BYTES).fill(9)), 'max-key');
    assert.equal(map.size, 6);
    expectClientError(() => map.set(new Uint8Array(MAX_KEY_BYTES + 1), 'v'), 'TOO_LARGE');
    expectClientError(() => map.set('k', new Uint8Array(MAX_VALUE_BYTES + 1)), 'TOO_LARGE');
    expectClientError(() => map.set('k', 'é'.repeat(MAX_VALUE_BYTES / 2 + 1)), 'TOO_LARGE');
    expectClientError(() => map.get('k'.repeat(MAX_KEY_BYTES + 1)), 'TOO_LARGE');
    assert.equal(map.size, 6);
    assert.ok(map.check().ok);
    // Big records live in segments of their own and go back to the pool when superseded.
    const before = ownedPages(pool, 'big');
    map.set(mib, 'small now');
    assert.ok(ownedPages(pool, 'big') < before, 'the 1 MiB record\'s segment was released');
    map.close();
    const again = PersistentMap.open(pool, 'big');
    assert.equal(again.get(mibText), mibText);
    assert.equal(again.get(mib), 'small now');
    assert.ok(again.check().ok);
    again.close();
    pool.close();
  });

  test('a long string value holds the pool pages its bytes need, as the same bytes as a Uint8Array do', () => {
    withShmPool('map-long-string', 32 * MiB, (pool) => {
      // Records of ASCII and two-byte text under and over the size that gets a segment of its own
      // (256 KiB), the text's bound of three bytes a unit over it; in a new map and in one whose
      // active segment (1 MiB) has room for the bound.
      for (const fill of [0, 2200]) {
        for (const text of ['x'.repeat(100_000), 'x'.repeat(600_000), 'é'.repeat(150_000)]) {
          const bytes = new TextEncoder().encode(text);
          const asText = PersistentMap.open(pool, 'text');
          const asBytes = PersistentMap.open(pool, 'bytes');
          for (let i = 0; i < fill; i++) {
            asText.set(`fill ${i}`, 'y'.repeat(1000));
            asBytes.set(`fill ${i}`, 'y'.repeat(1000));
          }
          asText.set('v', text);
          asBytes.set('v', bytes);
          assert.equal(asText.get('v'), text);
          assert.equal(asText.stats().pages, asBytes.stats().pages, `a value of ${bytes.length} bytes after ${fill} others`);
          assert.equal(ownedPages(pool, 'text'), asText.stats().pages);
          asText.destroy();
          asBytes.destroy();
        }
      }
    });
  });

  test('bad input is refused with typed errors and changes nothing', () => {
    const pool = memoryPool();
    const map = PersistentMap.open(pool, 'kv');
    map.set('keep', 'me');
    for (const key of [1, null, undefined, {}, [], true, 10n, Symbol('s'), new Uint16Array(2)]) {
      expectClientError(() => map.set(key as unknown as string, 'v'), 'BAD_KEY');
      expectClientError(() => map.get(key as unknown as string), 'BAD_KEY');
      expectClientError(() => map.delete(key as unknown as string), 'BAD_KEY');
    }
    for (const value of [1, null, undefined, {}, new Float64Array(1), false]) {
      expectClientError(() => map.set('k', value as unknown as string), 'BAD_VALUE');
    }
    expectClientError(() => map.set('\ud800', 'v'), 'BAD_KEY');
    expectClientError(() => map.set('k', 'lone \udc00 surrogate'), 'BAD_VALUE');
    // A view of a transferred (detached) buffer: typed, not a TypeError from the copy mid-set.
    const detached = new Uint8Array(8);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    expectClientError(() => map.set(detached, 'v'), 'BAD_KEY');
    expectClientError(() => map.get(detached), 'BAD_KEY');
    expectClientError(() => map.set('k', detached), 'BAD_VALUE');
    // A view left out of bounds by a resizable buffer that shrank (ES2024, in Node 20; not in this
    // TypeScript's lib): its length reads 0 too.
    type Resizable = ArrayBuffer & { resize(bytes: number): void };
    const resizable = new (ArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => Resizable)(16, { maxByteLength: 32 });
    const outOfBounds = new Uint8Array(resizable, 4, 8);
    resizable.resize(2);
    expectClientError(() => map.set(outOfBounds, 'v'), 'BAD_KEY');
    expectClientError(() => map.has(outOfBounds), 'BAD_KEY');
    expectClientError(() => map.set('k', outOfBounds), 'BAD_VALUE');
    assert.equal(map.size, 1);
    assert.equal(map.get('keep'), 'me');
    assert.equal(map.has('k'), false);
    for (const name of ['', 'a/b', 'x'.repeat(20), 'sp ace', 'nul\0', 7]) {
      expectClientError(() => PersistentMap.open(pool, name as string), 'BAD_ARGUMENT');
    }
    // One writer at a time; readers are read-only.
    expectClientError(() => PersistentMap.open(pool, 'kv'), 'BUSY');
    const reader = PersistentMap.open(pool, 'kv', { readOnly: true });
    assert.equal(reader.get('keep'), 'me');
    expectClientError(() => reader.set('k', 'v'), 'READ_ONLY');
    expectClientError(() => reader.clear(), 'READ_ONLY');
    expectClientError(() => PersistentMap.open(pool, 'absent', { readOnly: true }), 'NOT_FOUND');
    expectClientError(() => PersistentMap.open(pool, 'absent', { create: false }), 'NOT_FOUND');
    map.close();
    expectClientError(() => map.get('keep'), 'CLOSED');
    expectClientError(() => map.set('keep', 'x'), 'CLOSED');
    reader.close();
    pool.close();
  });

  test('a byte value whose buffer is transferred leaves the values got before and after it intact', () => {
    withShmPool('map-transfer', 4 * MiB, (pool) => {
      const map = PersistentMap.open(pool, 'kv');
      map.set('a', new Uint8Array([1, 2, 3])).set('b', new Uint8Array([4, 5, 6])).set(new Uint8Array([7]), 'byte key');
      const a = map.get('a') as Uint8Array;
      const b = map.get('b') as Uint8Array;
      // How bytes go to a worker: postMessage(value, [value.buffer]), or structuredClone with a
      // transfer list. The shared slab is copied (Node 20) or refused (DataCloneError, later Nodes), never moved.
      try {
        assert.deepEqual(structuredClone(a, { transfer: [a.buffer as ArrayBuffer] }), new Uint8Array([1, 2, 3]));
      } catch (e) {
        assert.equal((e as Error).name, 'DataCloneError', String(e));
      }
      assert.deepEqual(a, new Uint8Array([1, 2, 3]));
      assert.deepEqual(b, new Uint8Array([4, 5, 6]), 'a value got earlier is not detached with it');
      assert.deepEqual(map.get('b'), new Uint8Array([4, 5, 6]));
      assert.deepEqual([...map.keys()].filter((k) => typeof k !== 'string'), [new Uint8Array([7])]);
      map.close();
    });
  });

  test('byte values got in a fresh process: the first without loading node:worker_threads, and every one copied, not moved, by a transfer', () => {
    // A fresh process: the first small copies go to Node's own (untransferable) Buffer pool, later
    // ones to the map's slab, which loads node:worker_threads to mark it so. Both must behave alike.
    const r = runModule(
      `import { Pool, PersistentMap, MemoryRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
       const loaded = () => process.moduleLoadList.includes('NativeModule worker_threads');
       const pool = Pool.create(new MemoryRegion(8 << 20), { size: 8 << 20 });
       const map = PersistentMap.open(pool, 'kv');
       const value = (i) => new Uint8Array([i & 0xff, (i >> 8) & 0xff, 7, 7, 7].slice(0, 1 + (i % 5)));
       for (let i = 0; i < 600; i++) map.set('k' + i, value(i));
       const before = loaded();
       const first = map.get('k0');
       const afterFirst = loaded();
       const got = [first];
       for (let i = 1; i < 600; i++) got.push(map.get('k' + i));
       const intact = got.every((v, i) => v.constructor === Uint8Array && v.join() === value(i).join());
       const transfers = [0, 599].map((i) => {
         const v = got[i];
         let how;
         try {
           how = structuredClone(v, { transfer: [v.buffer] }).join() === value(i).join() ? 'copied' : 'garbled';
         } catch (e) {
           how = e.name;
         }
         return [how, v.join() === value(i).join()];
       });
       const othersIntact = got.every((v, i) => v.join() === value(i).join());
       console.log(JSON.stringify({ before, afterFirst, slab: loaded(), intact, transfers, othersIntact }));`,
    );
    assert.equal(r.status, 0, r.stderr);
    const seen = JSON.parse(r.stdout) as { before: boolean; afterFirst: boolean; slab: boolean; intact: boolean; transfers: [string, boolean][]; othersIntact: boolean };
    assert.equal(seen.before, false, 'nothing loaded node:worker_threads before the first get');
    assert.equal(seen.afterFirst, false, 'the first byte value did not load node:worker_threads');
    assert.equal(seen.slab, true, 'the test reached the slab (600 values)');
    assert.equal(seen.intact, true, 'every value reads back as a Uint8Array of its bytes');
    for (const [how, kept] of seen.transfers) {
      // Node 20 copies a transfer of an untransferable buffer; later Nodes refuse it. Never moved.
      assert.ok(how === 'copied' || how === 'DataCloneError', how);
      assert.equal(kept, true, 'the transferred value is not detached');
    }
    assert.equal(seen.othersIntact, true, 'no other value was detached or changed');
  });

  test('another client\'s name, another type: WRONG_TYPE, and both stay intact', () => {
    const pool = memoryPool();
    const log = LogRing.open(pool, 'events', { bytes: 8192 });
    log.append('hello');
    const map = PersistentMap.open(pool, 'kv');
    map.set('a', 'b');
    const plain = pool.alloc(20, { name: 'plain' });
    plain.bytes().fill(0xab);
    const mine = pool.alloc(20, { name: 'fake', owner: 'pmap:fake' });
    mine.bytes().fill(0x11);
    expectClientError(() => PersistentMap.open(pool, 'events'), 'WRONG_TYPE');
    expectClientError(() => PersistentMap.open(pool, 'events', { readOnly: true }), 'WRONG_TYPE');
    expectClientError(() => LogRing.open(pool, 'kv', { bytes: 8192 }), 'WRONG_TYPE');
    expectClientError(() => PersistentMap.open(pool, 'plain'), 'WRONG_TYPE');
    expectClientError(() => PersistentMap.open(pool, 'fake'), 'WRONG_TYPE');
    assert.deepEqual(log.records().map((r) => r.text), ['hello']);
    assert.equal(map.get('a'), 'b');
    assert.ok(plain.bytes().every((b) => b === 0xab));
    assert.ok(mine.bytes().every((b) => b === 0x11));
    pool.close();
  });

  test('a damaged client header is CORRUPT, another client\'s WRONG_TYPE: maps and rings alike', () => {
    const pool = memoryPool();
    const map = PersistentMap.open(pool, 'kv');
    map.set('a', 'b');
    map.close();
    const log = LogRing.open(pool, 'events', { bytes: 8192 });
    log.append('hello');
    log.close();
    const clients = [
      { name: 'kv', type: TYPE_MAP, other: TYPE_LOG, open: (readOnly: boolean) => PersistentMap.open(pool, 'kv', { readOnly }) },
      { name: 'events', type: TYPE_LOG, other: TYPE_MAP, open: (readOnly: boolean) => LogRing.open(pool, 'events', { readOnly, bytes: 8192 }) },
    ];
    for (const c of clients) {
      const header = pool.find(c.name)!.bytes(0, 128);
      const saved = header.slice();
      const opens = (code: string): void => {
        for (const readOnly of [false, true]) expectClientError(() => c.open(readOnly), code);
        header.set(saved);
      };
      // A bit flipped in the magic (which the checksum does not cover) or in the type tag (which it does).
      for (const byte of [0, 1, 2, 3, 8, 9, 10, 11]) {
        for (const bit of [0, 5, 7]) {
          header[byte]! ^= 1 << bit;
          opens('CORRUPT');
        }
      }
      // A header that verifies: of another client's type, WRONG_TYPE; of no client's type, damage.
      const fixed = readFixedHeader(saved, c.name, c.type)!;
      writeFixedHeader(header, { ...fixed, type: c.other });
      opens('WRONG_TYPE');
      writeFixedHeader(header, { ...fixed, type: 0x12345678 });
      opens('CORRUPT');
    }
    // Refused before anything was written: both open as they were.
    const again = PersistentMap.open(pool, 'kv');
    assert.equal(again.get('a'), 'b');
    assert.deepEqual(again.check(), { ok: true, problems: [] });
    again.close();
    const ring = LogRing.open(pool, 'events', { bytes: 8192 });
    assert.deepEqual(ring.records().map((r) => r.text), ['hello']);
    ring.close();
    pool.close();
  });

  test('a map and a ring created on pages a released client left dirty start empty', () => {
    const pool = memoryPool();
    const free = pool.stats().free;
    const old = pool.alloc(free);
    old.bytes().fill(0x01); // what a previous client left: not a header, not zeros
    pool.release(old.pfn, old.count);
    const map = PersistentMap.open(pool, 'kv');
    assert.equal(map.size, 0);
    map.set('a', 'b');
    const log = LogRing.open(pool, 'events', { bytes: 8192 });
    assert.deepEqual(log.records(), []);
    log.append('first');
    assert.deepEqual(log.records().map((r) => r.text), ['first']);
    map.close();
    log.close();
    const again = PersistentMap.open(pool, 'kv');
    assert.equal(again.get('a'), 'b');
    again.close();
    assert.equal(pool.check().ok, true);
    pool.close();
  });

  test('a full pool: NO_SPACE, the map unchanged and usable', () => {
    const pool = memoryPool(4 * MiB);
    const map = PersistentMap.open(pool, 'kv');
    const value = 'v'.repeat(3000);
    let n = 0;
    let error: unknown;
    try {
      for (; n < 100_000; n++) map.set(`key-${n}`, value);
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof ClientError && error.code === 'NO_SPACE', String(error));
    assert.ok((error as ClientError).cause instanceof PoolError);
    assert.equal(map.size, n);
    assert.equal(map.has(`key-${n}`), false);
    expectClientError(() => map.set(`key-${n}`, value), 'NO_SPACE');
    expectClientError(() => map.set(`key-0`, 'x'.repeat(300_000)), 'NO_SPACE');
    assert.equal(map.get('key-0'), value);
    assert.equal(map.get(`key-${n - 1}`), value);
    assert.ok(map.check().ok);
    // Space comes back: segments emptied by deletes go back to the pool and take new entries.
    for (let i = 0; i < n / 2; i++) map.delete(`key-${i}`);
    for (let i = 0; i < n / 4; i++) map.set(`again-${i}`, value);
    assert.equal(map.size, n - Math.ceil(n / 2) + Math.ceil(n / 4));
    assert.ok(map.check().ok);
    assert.ok(pool.check().ok);
    map.clear();
    map.close();
    pool.close();
  });

  test('a compaction that meets a full pool keeps its candidates: it resumes once space comes back', () => {
    const v = 'v'.repeat(1000);
    // Space comes back two ways: another allocation released, or the map's own entries deleted.
    for (const freeing of ['release', 'delete'] as const) {
      const pool = memoryPool(4 * MiB);
      const ballast = pool.alloc(64, { name: 'ballast' });
      const map = PersistentMap.open(pool, 'kv');
      let n = 0;
      let firstSegment = 0; // keys k0 .. k<firstSegment - 1> fill the first segment
      try {
        for (; n < 100_000; n++) {
          map.set(`k${n}`, v);
          if (firstSegment === 0 && map.stats().segments > 1) firstSegment = n;
        }
      } catch (e) {
        if (!(e instanceof ClientError && e.code === 'NO_SPACE')) throw e;
      }
      // Three entries in four deleted: every segment a candidate and compaction due, but the pool
      // has no room for the segment it would move records to. Each delete still succeeds.
      let moved = 0;
      setMapFaultHook((point) => {
        if (point === 'compact:moved') moved++;
      });
      try {
        for (let i = 0; i < n; i++) if (i % 4 !== 0) map.delete(`k${i}`);
        const stuck = map.stats();
        assert.ok(stuck.garbageBytes > 2 * stuck.liveBytes, `${JSON.stringify(stuck)}: compaction was due and did not run`);
        assert.deepEqual(map.check(), { ok: true, problems: [] });
        moved = 0;
        if (freeing === 'release') {
          pool.release(ballast.pfn, ballast.count);
          map.set('fresh', v);
        } else {
          // The first segment's last entries: it empties and goes back to the pool (or becomes the
          // spare); no record of another candidate dies.
          for (let i = 0; i < firstSegment; i += 4) map.delete(`k${i}`);
        }
        const after = map.stats();
        assert.ok(moved > 0, `${freeing}: no record moved`);
        assert.ok(after.garbageBytes < stuck.garbageBytes, `${freeing}: garbage ${stuck.garbageBytes} then ${after.garbageBytes}`);
        assert.ok(after.pages < stuck.pages, `${freeing}: the map held ${stuck.pages} pages, then ${after.pages}`);
        assert.equal(ownedPages(pool, 'kv'), after.pages);
        assert.deepEqual(map.check(), { ok: true, problems: [] });
        for (let i = 0; i < n; i++) assert.equal(map.get(`k${i}`), i % 4 === 0 && (freeing === 'release' || i >= firstSegment) ? v : undefined);
      } finally {
        setMapFaultHook(null);
      }
      map.close();
      assert.ok(pool.check().ok);
      pool.close();
    }
  });

  test('grow and shrink cycles leak no pool page; clear and delete-all return to baseline', () => {
    const pool = memoryPool(64 * MiB);
    const baselinePool = pool.stats().used;
    const map = PersistentMap.open(pool, 'cycles');
    const baseline = pool.stats().used;
    assert.equal(baseline - baselinePool, map.stats().pages, 'an empty map holds its header run only');
    const rng = new Prng(7);
    for (let cycle = 0; cycle < 4; cycle++) {
      const n = 20_000 + cycle * 10_000;
      for (let i = 0; i < n; i++) map.set(`c${cycle}-${i}`, 'x'.repeat(rng.range(0, 400)));
      for (let i = 0; i < n; i += 3) map.set(`c${cycle}-${i}`, 'updated');
      for (let i = 0; i < n; i += 2) map.delete(`c${cycle}-${i}`);
      assert.equal(map.size, n - Math.ceil(n / 2));
      assert.deepEqual(map.check(), { ok: true, problems: [] });
      assert.equal(ownedPages(pool, 'cycles'), map.stats().pages, 'the map holds exactly the pages it uses');
      map.compact();
      const s = map.stats();
      assert.equal(s.garbageBytes, 0, 'compact leaves no garbage');
      assert.equal(s.tombstones, 0);
      assert.ok(map.check().ok);
      if (cycle % 2 === 0) {
        map.clear();
      } else {
        for (const key of [...map.keys()]) map.delete(key);
      }
      assert.equal(map.size, 0);
      assert.equal(pool.stats().used, baseline, `cycle ${cycle}: usage back to baseline`);
      assert.ok(pool.check().ok);
    }
    map.close();
    assert.equal(pool.stats().used, baseline);
    // destroy() gives the header back too: the pool as it was before the map.
    const again = PersistentMap.open(pool, 'cycles');
    again.set('x', 'y');
    again.destroy();
    assert.equal(pool.stats().used, baselinePool);
    assert.equal(pool.find('cycles'), undefined);
    expectClientError(() => again.get('x'), 'CLOSED');
    pool.close();
  });

  test('compaction weighs the whole map: a rewrite moves no record, deletes past the bound are compacted', () => {
    const pool = memoryPool(160 * MiB);
    const map = PersistentMap.open(pool, 'policy');
    const n = 400_000;
    const rng = new Prng(testSeed('compaction policy'));
    const order = Array.from({ length: n }, (_, i) => i);
    const shuffle = (): number[] => {
      for (let i = n - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      return order;
    };
    const value = (i: number, round: number) => `${round}:${i}:`.padEnd(100, '.');
    for (const i of shuffle()) map.set(`key-${i}`, value(i, 0));
    const pagesBefore = map.stats().pages;
    let moved = 0;
    setMapFaultHook((point) => {
      if (point === 'compact:moved') moved++;
    });
    try {
      // Every entry rewritten once, in another order: each old segment dies out as a whole and is
      // freed (or kept as the spare) with nothing moved; what is held comes back to where it was.
      for (const i of shuffle()) map.set(`key-${i}`, value(i, 1));
      assert.equal(moved, 0, 'a rewrite moves no record');
      const rewritten = map.stats();
      assert.ok(rewritten.pages <= pagesBefore + (4 * MiB) / pool.pageSize, `${rewritten.pages} pages held after the rewrite, ${pagesBefore} before`);
      assert.deepEqual(map.check(), { ok: true, problems: [] });

      // Three entries in four deleted at random: the garbage goes past the map's bound, and the
      // emptiest segments are compacted until it is back within it.
      for (const i of shuffle().slice(0, (3 * n) / 4)) map.delete(`key-${i}`);
      assert.ok(moved > 0, 'deletes past the bound compact');
      const s = map.stats();
      // The bound: garbage at most the live bytes, plus the active segment's free tail and the spare (4 MiB each at most).
      assert.ok(s.garbageBytes <= s.liveBytes + 8 * MiB, `${s.garbageBytes} bytes of garbage for ${s.liveBytes} live`);
      // Only segments less than half live are compacted: at most one record moved per record deleted.
      assert.ok(moved <= (3 * n) / 4, `${moved} records moved for ${(3 * n) / 4} deleted`);
      assert.deepEqual(map.check(), { ok: true, problems: [] });
      for (let i = 0; i < n; i += 997) assert.equal(map.get(`key-${i}`), map.has(`key-${i}`) ? value(i, 1) : undefined);
    } finally {
      setMapFaultHook(null);
    }
    assert.equal(map.size, n / 4);
    map.close();
    assert.ok(pool.check().ok);
    pool.close();
  });

  test('a candidate freed before its turn leaves the queue: its index reused by a dedicated segment is not compacted', () => {
    const pool = memoryPool(16 * MiB);
    const map = PersistentMap.open(pool, 'stale');
    const v = 'x'.repeat(1000);
    // Three full 64 KiB segments (keys by segment), the fourth active.
    const groups: string[][] = [[], [], []];
    let segments = 0;
    for (let i = 0, g = -1; ; i++) {
      map.set(`k${i}`, v);
      if (map.stats().segments !== segments) {
        segments = map.stats().segments;
        if (++g === 3) {
          map.delete(`k${i}`);
          break;
        }
      }
      groups[g]!.push(`k${i}`);
    }
    // Segment 0 more than half dead: a candidate, compaction not due. Segment 1 emptied: the spare.
    // Segment 0 emptied: freed (the spare is taken), its index free.
    for (const k of groups[0]!.slice(0, Math.ceil(groups[0]!.length * 0.6))) map.delete(k);
    for (const k of groups[1]!) map.delete(k);
    for (const k of groups[0]!.slice(Math.ceil(groups[0]!.length * 0.6))) map.delete(k);
    // A record past 256 KiB: a dedicated segment, at the lowest free index (segment 0's).
    map.set('big', new Uint8Array(300_000));
    // Garbage in segment 2 (not a candidate) and in the active one until compaction is due.
    for (const k of groups[2]!.slice(0, 30)) map.delete(k);
    let moved = 0;
    setMapFaultHook((point) => {
      if (point === 'compact:moved') moved++;
    });
    try {
      for (let j = 0; j < 40; j++) map.set('hot', v);
    } finally {
      setMapFaultHook(null);
    }
    assert.equal(moved, 0, 'the dedicated segment was compacted');
    assert.deepEqual(map.check(), { ok: true, problems: [] });
    map.close();
    pool.close();
  });

  test('random sets, deletes, clears and compactions, reopened and crashed at random: the garbage count never drifts', () => {
    const seed = testSeed('PMAP_GARBAGE_SEED');
    const rng = new Prng(seed);
    const big = new Uint8Array(400_000).fill(7);
    for (let run = 0; run < 24; run++) {
      // Small pools run full (NO_SPACE interrupts compaction); records of 0 bytes to past 256 KiB.
      const pool = memoryPool(rng.pick([3, 4, 8, 48]) * MiB);
      let map = PersistentMap.open(pool, 'drift');
      const keys = rng.pick([20, 200, 2000]);
      const model = new Map<string, number>();
      try {
        for (let step = 0; step < 1500; step++) {
          const where = `seed ${seed}, run ${run}, step ${step}`;
          const r = rng.next() / 2 ** 32;
          const key = `k${rng.int(keys)}`;
          try {
            if (r < 0.6) {
              const size = rng.chance(0.02) ? rng.range(256 * 1024, 400_000) : rng.chance(0.1) ? 0 : rng.chance(0.1) ? rng.range(5000, 60_000) : rng.range(1, 200);
              map.set(key, rng.chance(0.5) ? big.subarray(0, size) : 'v'.repeat(size));
              model.set(key, size);
            } else if (r < 0.93) {
              map.delete(key);
              model.delete(key);
            } else if (r < 0.95) {
              map.compact();
            } else if (r < 0.955) {
              map.clear();
              model.clear();
            } else if (r < 0.975) {
              map.close();
              map = PersistentMap.open(pool, 'drift');
            } else if (r < 0.99) {
              map.abandon();
              map = PersistentMap.open(pool, 'drift', { handover: null });
            } else {
              const reader = PersistentMap.open(pool, 'drift', { readOnly: true });
              assert.deepEqual(reader.check().problems, [], `${where}: reader`);
              reader.close();
            }
          } catch (e) {
            if (!(e instanceof ClientError && e.code === 'NO_SPACE')) throw e;
          }
          assert.deepEqual(map.check().problems, [], where);
          assert.equal(map.size, model.size, `${where}: size`);
        }
      } finally {
        map.close();
        pool.close();
      }
    }
  });

  test('deleting while iterating visits every entry once; a resize while iterating throws CHANGED', () => {
    const pool = memoryPool();
    const map = PersistentMap.open(pool, 'iter');
    for (let i = 0; i < 5000; i++) map.set(`k${i}`, `v${i}`);
    let seen = 0;
    for (const [k] of map) {
      map.delete(k);
      seen++;
    }
    assert.equal(seen, 5000);
    assert.equal(map.size, 0);
    for (let i = 0; i < 600; i++) map.set(`k${i}`, `v${i}`);
    assert.throws(
      () => {
        let i = 0;
        for (const _ of map.keys()) map.set(`new${i++}`, 'x');
      },
      (e: unknown) => e instanceof ClientError && e.code === 'CHANGED',
    );
    assert.ok(map.check().ok);
    pool.close();
  });

  test('a reader whose key is deleted between its match and its read gets the value as it was', () => {
    // The interleaving of two processes, forced in one: the writer deletes the key (one atomic
    // store of TOMB in its slot, no seqlock change) right after the reader's lookup matched it.
    const pool = memoryPool();
    const map = PersistentMap.open(pool, 'shared');
    map.set('gone', 'the old value');
    map.set('kept', 'another value');
    const reader = PersistentMap.open(pool, 'shared', { readOnly: true });
    const internals = reader as unknown as { keyAt(u32: Uint32Array, w: number, k: number): boolean };
    const keyAt = internals.keyAt.bind(reader);
    let deleted = false;
    internals.keyAt = (u32: Uint32Array, w: number, k: number) => {
      const matched = keyAt(u32, w, k);
      if (matched && !deleted) {
        deleted = map.delete('gone');
      }
      return matched;
    };
    assert.equal(reader.get('gone'), 'the old value');
    assert.equal(deleted, true, 'the delete ran between the match and the read');
    assert.equal(reader.get('gone'), undefined);
    assert.equal(reader.get('kept'), 'another value');
    reader.close();
    map.close();
    pool.close();
  });

  test('a reader\'s stats() are the writer\'s, also after the writer appended to a segment the reader had mapped', () => {
    withShmPool('map-reader-stats', 16 * MiB, (pool) => {
      const map = PersistentMap.open(pool, 'shared');
      map.set('first', 'one');
      const reader = PersistentMap.open(pool, 'shared', { readOnly: true });
      assert.deepEqual(reader.stats(), map.stats());
      for (let i = 0; i < 200; i++) map.set(`k${i}`, 'v'.repeat(100));
      for (let i = 0; i < 200; i += 2) map.set(`k${i}`, 'w'.repeat(100));
      for (let i = 1; i < 200; i += 4) map.delete(`k${i}`);
      const stats = reader.stats();
      assert.ok(stats.garbageBytes > 0, JSON.stringify(stats));
      assert.deepEqual(stats, map.stats());
      reader.close();
      map.close();
    });
  });

  test('a reader sees a consistent map while the writer grows, compacts and clears it', () => {
    const pool = memoryPool(64 * MiB);
    const map = PersistentMap.open(pool, 'shared');
    const reader = PersistentMap.open(pool, 'shared', { readOnly: true });
    const valueOf = (i: number, round: number) => `${i}:${round}:` + '.'.repeat((i * 7 + round) % 300);
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 3000; i++) {
        map.set(`k${i}`, valueOf(i, round));
        if (i % 97 === 0) {
          const j = (i * 13) % 3000;
          const got = reader.get(`k${j}`);
          assert.ok(got === undefined || got === valueOf(j, round) || got === valueOf(j, round - 1), `k${j}: ${String(got)}`);
        }
      }
      assert.equal(reader.size, map.size);
      assert.equal([...reader.keys()].length, map.size);
      if (round === 3) {
        map.clear();
        assert.equal(reader.get('k1'), undefined);
        assert.equal(reader.size, 0);
      }
    }
    assert.deepEqual(reader.check(), { ok: true, problems: [] });
    reader.close();
    map.close();
    pool.close();
  });
});

/* ---------------- deterministic crash simulation ---------------- */

class Crash extends Error {}

type Op = { kind: 'set'; key: MapKey; value: MapValue } | { kind: 'delete'; key: MapKey } | { kind: 'clear' } | { kind: 'compact' };

function modelKey(key: MapKey): string {
  return typeof key === 'string' ? `s:${key}` : `b:${Buffer.from(key).toString('hex')}`;
}

function applyOp(map: PersistentMap, op: Op): void {
  if (op.kind === 'set') map.set(op.key, op.value);
  else if (op.kind === 'delete') map.delete(op.key);
  else if (op.kind === 'clear') map.clear();
  else map.compact();
}

function scenario(rng: Prng): Op[] {
  const ops: Op[] = [];
  const keys: MapKey[] = [];
  for (let i = 0; i < 120; i++) keys.push(i % 5 === 0 ? new Uint8Array([i, i >> 8, 0xfe]) : `key-${i}`);
  const value = (i: number): MapValue => {
    const size = rng.chance(0.08) ? rng.range(8_000, 30_000) : rng.chance(0.01) ? 300_000 : rng.range(0, 200);
    const body = `v${i}:` + 'abcdefgh'.repeat(Math.ceil(size / 8)).slice(0, size);
    return rng.chance(0.3) ? new TextEncoder().encode(body) : body;
  };
  let n = 0;
  const phase = (count: number, deletes: number) => {
    for (let i = 0; i < count; i++) {
      if (rng.chance(deletes)) ops.push({ kind: 'delete', key: rng.pick(keys) });
      else ops.push({ kind: 'set', key: rng.pick(keys), value: value(n++) });
    }
  };
  phase(250, 0.1);
  ops.push({ kind: 'compact' });
  phase(150, 0.5);
  ops.push({ kind: 'clear' });
  // Whatever the seed, a compaction inside a set: an empty map given eight segments' worth of records, seven in eight
  // deleted (deletes only queue candidates: a delete's retry after a crash finds its key gone, so
  // nothing after its commit point is ever crashed at), then one set that finds compaction due. The
  // crash points of that set walk into the compaction (records copied, records moved), since a
  // reopen leaves a due compaction to the next write.
  for (let i = 0; i < 400; i++) ops.push({ kind: 'set', key: `dense-${i}`, value: `${i}:`.padEnd(1000, 'd') });
  for (let i = 0; i < 400; i++) if (i % 8 !== 0) ops.push({ kind: 'delete', key: `dense-${i}` });
  ops.push({ kind: 'set', key: 'dense-0', value: 'compaction is due' });
  ops.push({ kind: 'clear' });
  // Past 768 entries the table grows; then deletes shrink the live set and a set shrinks the table.
  for (let i = 0; i < 900; i++) ops.push({ kind: 'set', key: `grow-${i}`, value: `g${i}` });
  for (let i = 0; i < 890; i++) ops.push({ kind: 'delete', key: `grow-${i}` });
  phase(60, 0.2);
  for (let i = 890; i < 900; i++) ops.push({ kind: 'delete', key: `grow-${i}` });
  phase(40, 0.9);
  return ops;
}

describe('PersistentMap open in a busy pool', () => {
  /** Counts the sweeps of the pool's allocations a map makes (a pass over the whole directory). */
  function countSweeps(pool: Pool): { readonly sweeps: number } {
    const counter = { sweeps: 0 };
    const all = pool.allocations.bind(pool);
    pool.allocations = () => {
      counter.sweeps++;
      return all();
    };
    return counter;
  }

  test('a map closed or handed over cleanly reopens without sweeping the pool; after a crash the sweep gives back what was in flight', () => {
    const pool = Pool.create(new MemoryRegion(64 * MiB), { size: 64 * MiB, maxAllocations: 20_000 });
    try {
      let map = PersistentMap.open(pool, 'busy');
      for (let i = 0; i < 3000; i++) map.set(`key ${i}`, `value ${i}`.repeat(4));
      map.close();
      for (let i = 0; i < 5000; i++) pool.alloc(1, { owner: 'someone else' });
      const counter = countSweeps(pool);

      map = PersistentMap.open(pool, 'busy');
      assert.equal(counter.sweeps, 0, 'a clean open finds its runs by name');
      assert.equal(map.size, 3000);
      assert.equal(map.get('key 2999'), 'value 2999'.repeat(4));

      // A writer dies after allocating a segment and before publishing it: the map is dirty.
      let segmentsAllocated = 0;
      setMapFaultHook((point) => {
        if (point === 'segment:allocated' && ++segmentsAllocated === 1) throw new Error('crash');
      });
      try {
        assert.throws(() => {
          for (let i = 0; ; i++) map.set(`more ${i}`, 'x'.repeat(200));
        }, /crash/);
      } finally {
        setMapFaultHook(null);
      }
      map.abandon();
      const leftover = ownedPages(pool, 'busy');

      map = PersistentMap.open(pool, 'busy', { handover: null });
      assert.equal(counter.sweeps, 1, 'after a crash the open sweeps once');
      assert.ok(ownedPages(pool, 'busy') < leftover, 'the unpublished segment was given back');
      assert.equal(ownedPages(pool, 'busy'), map.stats().pages);
      assert.deepEqual(map.check().problems, []);
      map.close();

      // Closed cleanly again: the next open does not sweep.
      const before = counter.sweeps;
      map = PersistentMap.open(pool, 'busy');
      assert.equal(counter.sweeps, before);
      assert.equal(map.get('key 0'), 'value 0'.repeat(4));
      map.close();
      assert.ok(pool.check().ok);
    } finally {
      setMapFaultHook(null);
      pool.close();
    }
  });

  test('a run a live writer unpublished but could not release is given back after its clean close', () => {
    const pool = memoryPool();
    try {
      let map = PersistentMap.open(pool, 'stray');
      for (let i = 0; i < 2000; i++) map.set(`key ${i}`, `value ${i}`.repeat(4));
      // A quiesced pool refuses releases: clear() switches to the empty table, then cannot give the
      // old table and the segments back. The writer goes on and closes cleanly. (Quiesced once the
      // clear is under way: a map refuses to start a write in a quiesced pool.)
      clearWithReleasesRefused(pool, map);
      assert.equal(map.size, 0);
      map.close();

      map = PersistentMap.open(pool, 'stray');
      assert.equal(map.size, 0);
      assert.deepEqual(map.check().problems, []);
      assert.equal(ownedPages(pool, 'stray'), map.stats().pages, 'no run of the map is left unreferenced');
      map.close();
    } finally {
      pool.close();
    }
  });

  test('a clear() the pool stops part-way leaves no segment marked queued but off the compaction queue', () => {
    const pool = memoryPool();
    try {
      const map = PersistentMap.open(pool, 'queued');
      for (let i = 0; i < 20000; i++) map.set(`key ${i}`, `value ${i}`.repeat(4));
      for (let i = 0; i < 20000; i++) if (i % 4 !== 0) map.delete(`key ${i}`);
      const s = (map as unknown as { s: { pending: number[]; segQueued: Uint8Array } }).s;
      const marked = () => [...s.segQueued.keys()].filter((k) => s.segQueued[k] === 1).sort();
      assert.ok(s.pending.length > 0, 'the deletes left compaction candidates queued');
      clearWithReleasesRefused(pool, map);
      // A segment marked queued but not on the queue could never be queued again (queue() skips it).
      assert.deepEqual(marked(), [...s.pending].sort());
      map.close();
      assert.ok(pool.check().ok);
    } finally {
      pool.close();
    }
  });
});

/**
 * Runs map.clear() with the pool refusing releases from the moment the empty table is switched in
 * (quiesced, as for a handover): the clear fails BUSY part-way, with the old runs not given back.
 */
function clearWithReleasesRefused(pool: Pool, map: PersistentMap): void {
  setMapFaultHook((point) => {
    if (point === 'clear:switched') pool.quiesce();
  });
  try {
    expectClientError(() => map.clear(), 'BUSY');
  } finally {
    setMapFaultHook(null);
    pool.resume();
  }
}

/** The map's header run as words (the layout of docs/clients.md). */
function headerWords(pool: Pool, name: string): Uint32Array {
  const bytes = pool.find(name)!.bytes();
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
}

describe('PersistentMap over damage and a dead writer: every loop ends', () => {
  test('an entry count damaged below what the table holds: a shrink refuses (CORRUPT) instead of rehashing for ever', () => {
    const { path, cleanup } = shmPath('map-count');
    try {
      const pool = Pool.create(path, { size: '16M' });
      const map = PersistentMap.open(pool, 'kv');
      for (let i = 0; i < 3000; i++) map.set(`key ${i}`, `value ${i}`);
      map.close();
      headerWords(pool, 'kv')[HDR_COUNT] = 1; // closed cleanly: the count is trusted at the next open
      pool.close();
      // In a child with a deadline: the next set shrank the table to fit one entry and rehashed 3000 into it.
      const r = runModule(
        `import { Pool, PersistentMap } from ${JSON.stringify(PMPOOL_ENTRY)};
         const pool = Pool.open(process.argv[1]);
         const map = PersistentMap.open(pool, 'kv');
         let code = 'none';
         try { map.set('one more', 'x'); } catch (e) { code = e.code; }
         process.stdout.write(JSON.stringify([code, map.get('key 2999'), pool.check().ok]));`,
        [path],
        [],
        20_000,
      );
      assert.equal(r.signal, null, 'the set returned (it was not killed at the deadline)');
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), ['CORRUPT', 'value 2999', true]);
    } finally {
      cleanup();
    }
  });

  test('an entry count damaged to 0 in a clean-closed map: the next writer recounts instead of emptying the map', () => {
    const pool = memoryPool(16 * MiB);
    try {
      let map = PersistentMap.open(pool, 'kv');
      for (let i = 0; i < 3000; i++) map.set(`key ${i}`, `value ${i}`);
      map.close();
      const pages = ownedPages(pool, 'kv');
      headerWords(pool, 'kv')[HDR_COUNT] = 0; // closed cleanly: the count would be trusted, and 0 means "empty"
      map = PersistentMap.open(pool, 'kv');
      assert.equal(map.size, 3000, 'recounted from the table');
      assert.equal(map.get('key 2999'), 'value 2999');
      assert.equal(ownedPages(pool, 'kv'), pages, 'no segment was freed');
      assert.deepEqual(map.check().problems, []);
      map.close();
      map = PersistentMap.open(pool, 'kv');
      assert.equal(map.size, 3000, 'and the recount was recorded at close');
      map.close();
      assert.ok(pool.check().ok);
    } finally {
      pool.close();
    }
  });

  test('a reader behind a writer that died inside a write section waits for it once, not at every step', () => {
    // In a child with a deadline: each lookup and each slot of an iteration waited ~0.2 s again.
    const r = runModule(
      `import { Pool, PersistentMap, MemoryRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
       const pool = Pool.create(new MemoryRegion(${32 * MiB}), { size: ${32 * MiB} });
       const map = PersistentMap.open(pool, 'kv');
       for (let i = 0; i < 100; i++) map.set('key ' + i, 'value ' + i);
       map.abandon(); // killed, its lock held
       const bytes = pool.find('kv').bytes();
       Atomics.add(new Uint32Array(bytes.buffer, bytes.byteOffset, ${HDR_SEQ + 1}), ${HDR_SEQ}, 1); // ... inside a write section
       const reader = PersistentMap.open(pool, 'kv', { readOnly: true });
       const values = [];
       for (let i = 0; i < 100; i++) values.push(reader.get('key ' + i));
       process.stdout.write(JSON.stringify([[...reader.keys()].length, values.every((v, i) => v === 'value ' + i)]));`,
      [],
      [],
      20_000,
    );
    assert.equal(r.signal, null, 'the reader returned (it was not killed at the deadline)');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [100, true]);
  });

  test('a segment table entry damaged to 0 after a crash: the open refuses, and the segment the table points into is not given back', () => {
    const pool = memoryPool();
    const map = PersistentMap.open(pool, 'kv');
    for (let i = 0; i < 3000; i++) map.set(`key ${i}`, `value ${i}`);
    assert.ok(pool.find('kv/s1'), 'two segments');
    map.abandon(); // killed: the counters are not marked exact, the next open sweeps the pool
    const pages = ownedPages(pool, 'kv');
    headerWords(pool, 'kv')[SEGTAB] = 0; // segment 0's pfn
    expectClientError(() => PersistentMap.open(pool, 'kv'), 'CORRUPT');
    assert.ok(pool.find('kv/s0'), 'the records of segment 0 are still in the pool');
    assert.equal(ownedPages(pool, 'kv'), pages);
    pool.close();
  });

  test('a segment table entry damaged to 0 in a clean-closed map: a set that needs a segment is CORRUPT, a ClientError', () => {
    const pool = memoryPool();
    let map = PersistentMap.open(pool, 'kv');
    for (let i = 0; i < 3000; i++) map.set(`key ${i}`, `value ${i}`);
    map.close();
    headerWords(pool, 'kv')[SEGTAB] = 0; // segment 0's pfn: the pool still holds "kv/s0"
    map = PersistentMap.open(pool, 'kv');
    let code = '';
    try {
      for (let i = 0; i < 10_000; i++) map.set(`new ${i}`, 'x'.repeat(100));
    } catch (e) {
      assert.ok(e instanceof ClientError, String(e));
      code = e.code;
    }
    assert.equal(code, 'CORRUPT');
    assert.ok(pool.find('kv/s0'));
    pool.close();
  });

  test('a record whose lengths add up past 2^31 is reported where it is, not after a walk backwards', () => {
    const pool = memoryPool();
    const map = PersistentMap.open(pool, 'kv');
    for (let i = 0; i < 100; i++) map.set(`key ${i}`, `value ${i}`);
    map.set('key 0', 'again'); // the first record of segment 0 is garbage now
    map.close();
    const seg = headerWords(pool, 'kv/s0');
    seg[SEG_HEADER / 4 + 1] = 0xffffffff; // its key and value lengths: 2^30 - 1 each
    seg[SEG_HEADER / 4 + 2] = 0xffffffff;
    const again = PersistentMap.open(pool, 'kv');
    const e = expectClientError(() => again.compact(), 'CORRUPT');
    assert.match(e.message, new RegExp(`malformed record at ${SEG_HEADER}$`));
    assert.equal(again.get('key 99'), 'value 99');
    pool.close();
  });
});

describe('PersistentMap crash simulation', () => {
  test('a crash at every store boundary of every operation leaves each entry old or new, and no page leaked', () => {
    const seed = testSeed('PMAP_CRASH_SEED');
    const ops = scenario(new Prng(seed));
    const pool = memoryPool(64 * MiB);
    const name = 'sim';
    let map = PersistentMap.open(pool, name);
    const baseline = pool.stats().used;
    const model = new Map<string, { key: MapKey; value: MapValue }>();
    const points = new Map<string, number>();
    let crashes = 0;
    try {
      for (let o = 0; o < ops.length; o++) {
        const op = ops[o]!;
        for (let target = 0; ; target++) {
          let n = 0;
          setMapFaultHook((point) => {
            if (n++ === target) {
              points.set(point, (points.get(point) ?? 0) + 1);
              throw new Crash(point);
            }
          });
          let crashedAt: string | null = null;
          try {
            applyOp(map, op);
          } catch (e) {
            if (!(e instanceof Crash)) throw e;
            crashedAt = e.message;
          } finally {
            setMapFaultHook(null);
          }
          if (crashedAt === null) {
            if (op.kind === 'set') model.set(modelKey(op.key), { key: op.key, value: op.value });
            else if (op.kind === 'delete') model.delete(modelKey(op.key));
            else if (op.kind === 'clear') model.clear();
            break;
          }
          // The process is gone: the next writer opens the map and repairs.
          crashes++;
          map.abandon();
          map = PersistentMap.open(pool, name, { handover: null });
          const where = `seed ${seed}, op ${o} (${op.kind}), crash at ${crashedAt}`;
          if (op.kind === 'clear' && map.size === 0) model.clear();
          if (op.kind === 'set' || op.kind === 'delete') {
            const mk = modelKey(op.key);
            const got = map.get(op.key);
            const old = model.get(mk)?.value;
            const now = op.kind === 'set' ? op.value : undefined;
            assert.ok(same(got, old) || same(got, now), `${where}: the key holds neither its old nor its new value`);
            if (got === undefined) model.delete(mk);
            else model.set(mk, { key: op.key, value: got });
          }
          assert.equal(map.size, model.size, `${where}: size`);
          for (const { key, value } of model.values()) assert.ok(same(map.get(key), value), `${where}: ${modelKey(key)}`);
          const report = map.check();
          assert.deepEqual(report.problems, [], where);
          assert.equal(ownedPages(pool, name), map.stats().pages, `${where}: pages of the map's owner vs pages the map uses`);
        }
      }
      assert.equal(map.size, model.size);
      assert.ok(crashes > 1500, `only ${crashes} crash points`);
      // segment:unpublished and segment:recycled fall inside this walk for most seeds, not all (the next test reaches them always).
      for (const point of ['set:record-written', 'set:bumped', 'set:committed', 'delete:committed', 'segment:allocated', 'segment:published', 'resize:allocated', 'resize:built', 'resize:switched', 'clear:switched', 'compact:copied', 'compact:moved']) {
        assert.ok((points.get(point) ?? 0) > 0, `crash point ${point} was never hit: ${JSON.stringify([...points])}`);
      }
      map.clear();
      assert.equal(pool.stats().used, baseline, 'after clear the pool is back to the empty map');
      assert.ok(pool.check().ok);
    } finally {
      setMapFaultHook(null);
      pool.close();
    }
  });

  test('a crash at the first store of each kind a segment\'s life and a compaction make, reached whatever the seed', () => {
    // The walk above crashes an operation at its n-th store, reopens, and runs it again for n+1;
    // stores that come after work a crash has partly done (a compaction's last moves, the segment
    // it empties) may fall between two of its crashes. Here each kind is crashed at by name.
    const value = (i: number, round: number) => `${round}:${i}:`.padEnd(1000, 'v');
    const workload: Op[] = [];
    for (let round = 0; round < 4; round++) {
      // A rewrite: old segments die out inside sets (freed, or kept as the spare and recycled) ...
      for (let i = 0; i < 400; i++) workload.push({ kind: 'set', key: `k${i}`, value: value(i, round) });
      // ... and seven in eight deleted: the next sets find compaction due.
      if (round === 1) for (let i = 0; i < 400; i++) if (i % 8 !== 0) workload.push({ kind: 'delete', key: `k${i}` });
    }
    for (const point of ['segment:unpublished', 'segment:recycled', 'compact:copied', 'compact:moved', 'segment:allocated', 'segment:published']) {
      const pool = memoryPool(64 * MiB);
      try {
        let map = PersistentMap.open(pool, 'life');
        const model = new Map<string, MapValue>();
        let crashed: Op | undefined;
        setMapFaultHook((at) => {
          if (at === point) throw new Crash(at);
        });
        try {
          for (const op of workload) {
            crashed = op;
            applyOp(map, op);
            if (op.kind === 'set') model.set(op.key as string, op.value);
            else if (op.kind === 'delete') model.delete(op.key as string);
            crashed = undefined;
          }
        } catch (e) {
          if (!(e instanceof Crash)) throw e;
        } finally {
          setMapFaultHook(null);
        }
        assert.ok(crashed !== undefined && crashed.kind !== 'clear' && crashed.kind !== 'compact', `${point}: the workload never reached it`);
        map.abandon();
        map = PersistentMap.open(pool, 'life', { handover: null });
        const key = crashed.key as string;
        const got = map.get(key);
        const now = crashed.kind === 'set' ? crashed.value : undefined;
        assert.ok(got === model.get(key) || got === now, `${point}: ${key} holds neither its old nor its new value`);
        if (got === undefined) model.delete(key);
        else model.set(key, got);
        assert.equal(map.size, model.size, point);
        for (const [k, v] of model) assert.equal(map.get(k), v, `${point}: ${k}`);
        assert.deepEqual(map.check().problems, [], point);
        assert.equal(ownedPages(pool, 'life'), map.stats().pages, `${point}: pages of the map's owner vs pages the map uses`);
        // And the map goes on: the rest of the workload from the next writer.
        for (let i = 0; i < 400; i++) map.set(`k${i}`, value(i, 9));
        assert.deepEqual(map.check().problems, [], `${point}, then a rewrite`);
        map.close();
        assert.ok(pool.check().ok, point);
      } finally {
        setMapFaultHook(null);
        pool.close();
      }
    }
  });
  test('an insert refused room leaves the table as it was: a live iterator goes on; killed past its room, the next writer gives it back', () => {
    // 768 entries: the next insert grows the table (2,048 slots, 4 pages). Its value, 300,000 bytes,
    // takes a segment of its own (74 pages).
    const fill = (map: PersistentMap) => {
      for (let i = 0; i < 768; i++) map.set(`k${i}`, 'v');
    };
    const squeeze = (pool: Pool, free: number) => {
      for (let st = pool.stats(); st.free > free; st = pool.stats()) pool.alloc(Math.min(st.largestFree, st.free - free), { owner: 'filler' });
    };
    // Room for neither, and room for the segment but not the table: refused either way, and the
    // table never switched, so an iteration under way goes on (a grown table put back ended it CHANGED).
    for (const free of [4, 75]) {
      const pool = memoryPool(16 * MiB);
      try {
        const map = PersistentMap.open(pool, 'refused');
        fill(map);
        squeeze(pool, free);
        const usage = pool.stats().free;
        const keys = map.keys();
        assert.equal(keys.next().done, false);
        assert.throws(() => map.set('big', new Uint8Array(300_000)), (e: unknown) => e instanceof ClientError && e.code === 'NO_SPACE');
        assert.equal([...keys].length, 767, `${free} pages free: the iteration went on after the refusal`);
        assert.equal(map.has('big'), false);
        assert.equal(map.size, 768);
        assert.equal(pool.stats().free, usage, `${free} pages free: the segment reserved for the record went back`);
        assert.deepEqual(map.check(), { ok: true, problems: [] });
        map.close();
      } finally {
        pool.close();
      }
    }
    // Killed between its room and its table: the map is whole, and the next writer gives the room back.
    const pool = memoryPool(16 * MiB);
    try {
      let map = PersistentMap.open(pool, 'killed');
      fill(map);
      setMapFaultHook((point) => {
        if (point === 'resize:allocated') throw new Crash(point);
      });
      try {
        assert.throws(() => map.set('big', new Uint8Array(300_000)), Crash);
      } finally {
        setMapFaultHook(null);
      }
      map.abandon();
      map = PersistentMap.open(pool, 'killed', { handover: null });
      assert.equal(map.has('big'), false);
      assert.equal(map.size, 768);
      assert.deepEqual(map.check(), { ok: true, problems: [] });
      assert.equal(ownedPages(pool, 'killed'), map.stats().pages, 'the runs the dead writer allocated were given back');
      map.close();
    } finally {
      pool.close();
    }
  });
});

describe('PersistentMap.open with options that are not an object, or fields of the wrong type', () => {

  test('refused with BAD_ARGUMENT; the map and the pool are unchanged, no map is created', () => {
    const pool = poolInMemory(8 << 20);
    const map = PersistentMap.open(pool, 'kv', { handover: null });
    map.set('a', 'one');
    map.close();
    const before = statsText(pool);
    for (const bad of NOT_OBJECTS) {
      const e = expectError(() => PersistentMap.open(pool, 'kv', bad as never), ClientError, 'BAD_ARGUMENT');
      assert.equal(e.message, `PersistentMap.open options must be an object, got ${shown(bad)}`);
      expectError(() => PersistentMap.open(pool, 'other', bad as never), ClientError, 'BAD_ARGUMENT');
    }
    const fields: object[] = [{ readOnly: 1 }, { readOnly: 'yes' }, { create: 'no' }, { create: 0 }, { handover: 42 }, { handover: {} }];
    for (const options of fields) {
      expectError(() => PersistentMap.open(pool, 'kv', options as never), ClientError, 'BAD_ARGUMENT');
      expectError(() => PersistentMap.open(pool, 'other', options as never), ClientError, 'BAD_ARGUMENT');
    }
    for (const bad of [null, 42, {}]) expectError(() => PersistentMap.open(bad as never, 'kv'), ClientError, 'BAD_ARGUMENT');
    assert.equal(statsText(pool), before);
    assert.equal(pool.find('other'), undefined);
    const again = PersistentMap.open(pool, 'kv', { handover: null });
    assert.equal(again.size, 1);
    assert.equal(again.get('a'), 'one');
    again.close();
  });

  test('a full pool: an insert that would only shrink the table goes through; a set refused with NO_SPACE leaves the table as it was; compact() leaves the map writable', () => {
    // Fills what the pool has left with allocations of another owner; some single pages can be given back.
    const fill = (pool: Pool) => {
      const singles: { pfn: number; count: number }[] = [];
      for (let largest = pool.stats().largestFree; largest > 16; largest = pool.stats().largestFree) pool.alloc(largest - 8, { owner: 'filler' });
      for (;;) {
        try {
          singles.push(pool.alloc(1, { owner: 'filler' }));
        } catch (e) {
          if (e instanceof PoolError && e.code === 'NO_SPACE') break;
          throw e;
        }
      }
      return (n: number) => {
        for (const a of singles.splice(0, n)) pool.release(a.pfn, a.count, { owner: 'filler' });
      };
    };
    {
      // 200 entries in a table sized for 2,000: the next insert would shrink it, which needs a new
      // (smaller) table the full pool cannot give. The present one has room: the insert is made.
      const pool = memoryPool(16 * MiB);
      const map = PersistentMap.open(pool, 'shrink');
      for (let i = 0; i < 2000; i++) map.set(`k${i}`, 'v');
      for (let i = 0; i < 1800; i++) map.delete(`k${i}`);
      const slots = map.stats().tableSlots;
      fill(pool);
      map.set('new', 'x');
      assert.equal(map.get('new'), 'x');
      assert.equal(map.stats().tableSlots, slots, 'the table kept');
      assert.deepEqual(map.check(), { ok: true, problems: [] });
      map.close();
      assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
      pool.close();
    }
    {
      // An insert that grows the table (the pool has room for that) and needs a segment of its own
      // for its value (the pool has none): refused, and the table is the one it was.
      const pool = memoryPool(16 * MiB);
      const map = PersistentMap.open(pool, 'grow');
      for (let i = 0; i < 768; i++) map.set(`k${i}`, 'v');
      const release = fill(pool);
      release(4); // a grown table's pages, not the new segment's
      const before = { map: map.stats(), used: pool.stats().used };
      expectClientError(() => map.set('big', new Uint8Array(300_000)), 'NO_SPACE');
      assert.equal(map.has('big'), false);
      assert.equal(map.stats().tableSlots, before.map.tableSlots, 'the table is the one it was');
      assert.equal(map.stats().pages, before.map.pages);
      assert.equal(pool.stats().used, before.used, 'the pool holds what it held');
      assert.deepEqual(map.check(), { ok: true, problems: [] });
      map.close();
      pool.close();
    }
    {
      // compact() that a full pool postpones: the segment it would have emptied stays the one
      // appends go to, and the map takes new entries without a new segment.
      const pool = memoryPool(16 * MiB);
      const map = PersistentMap.open(pool, 'compact');
      for (let i = 0; i < 100; i++) map.set(`k${i}`, 'v'.repeat(100));
      fill(pool);
      map.compact();
      map.set('after', 'x');
      map.set('k1', 'y');
      assert.deepEqual([map.get('after'), map.get('k1'), map.size], ['x', 'y', 101]);
      assert.deepEqual(map.check(), { ok: true, problems: [] });
      map.close();
      assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
      pool.close();
    }
  });

  test('a key or value whose length lies is taken as the bytes it holds; one that only looks like a Uint8Array is BAD_KEY or BAD_VALUE', () => {
    const pool = memoryPool();
    const map = PersistentMap.open(pool, 'kv');
    for (let i = 0; i < 50; i++) map.set(`k${i}`, `value ${i}`);
    class Lying extends Uint8Array {
      override get length(): number {
        return 1;
      }
    }
    map.set('lying', new Lying(2000).fill(9));
    assert.deepEqual(map.get('lying'), new Uint8Array(2000).fill(9), 'all 2,000 bytes, in the room of 2,000');
    map.set(new Lying(40).fill(3), 'by a lying key');
    assert.equal(map.get(new Uint8Array(40).fill(3)), 'by a lying key', 'the key is its 40 bytes');
    for (let i = 0; i < 50; i++) assert.equal(map.get(`k${i}`), `value ${i}`, 'the other entries are intact');
    for (const fake of [new Proxy(new Uint8Array(8), {}), Object.create(Uint8Array.prototype) as Uint8Array]) {
      expectClientError(() => map.set('fake', fake), 'BAD_VALUE');
      expectClientError(() => map.set(fake, 'fake'), 'BAD_KEY');
    }
    assert.equal(map.size, 52);
    assert.deepEqual(map.check(), { ok: true, problems: [] });
    map.close();
    pool.close();
  });
});
