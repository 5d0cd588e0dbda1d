/**
 * Entry points that fail part-way give back what they took — file
 * descriptors, mappings, pool runs — and leave the pool as they found it.
 * Each failing call is repeated: a leak of one fd or one mapping per call
 * then shows as hundreds.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { Fdt, HandoverError, Pool, PoolError, type PmpoolError } from '../src/index.js';
import { FileRegion, MemoryRegion } from '../src/region/index.js';
import { ClientError, PersistentMap, writeMapNode } from '../src/clients/index.js';
import { HandoverRegistry } from '../src/kexec/handover.js';
import { poolFromCommandLine } from '../src/kexec/restore.js';
import { poolInternals } from '../src/pool/internals.js';
import { HEADER_WORDS } from '../src/alloc/index.js';
import { shmPath } from './support/child.js';
import { expectError } from './support/expect.js';

const MiB = 1024 * 1024;
const TRIES = 200;

const openFds = (): number => readdirSync('/proc/self/fd').length;
const mappingsOf = (path: string): number => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.endsWith(path)).length;

/** Runs `fn`, which must throw `code`, TRIES times. */
function failRepeatedly<E extends PmpoolError>(fn: () => unknown, ErrorClass: abstract new (...args: never[]) => E, code: string, tries = TRIES): void {
  for (let i = 0; i < tries; i++) expectError(fn, ErrorClass, code);
}

describe('refused opens give back what they took', () => {
  test('poolFromCommandLine refusing the pool name holds no fd or mapping, and creates no file', () => {
    const { path, cleanup } = shmPath('pfcl-name');
    try {
      Pool.create(path, { size: '4M' }).close();
      const registry = new HandoverRegistry();
      const registered = poolFromCommandLine(registry, ['node', `--pmpool=${path},4M`])!;
      const fds = openFds();
      const maps = mappingsOf(path);
      failRepeatedly(() => poolFromCommandLine(new HandoverRegistry(), ['node', `--pmpool=${path},4M`], 'not a node name'), HandoverError, 'BAD_ARGUMENT');
      failRepeatedly(() => poolFromCommandLine(registry, ['node', `--pmpool=${path},4M`]), HandoverError, 'BAD_ARGUMENT');
      assert.equal(openFds(), fds, 'file descriptors');
      assert.equal(mappingsOf(path), maps, 'mappings of the pool file');
      registered.close();
      const absent = `${path}-absent`;
      expectError(() => poolFromCommandLine(new HandoverRegistry(), ['node', `--pmpool=${absent},4M`], 'not a node name'), HandoverError, 'BAD_ARGUMENT');
      assert.equal(existsSync(absent), false, 'no pool is created under a refused name');
    } finally {
      cleanup();
    }
  });

  test('an open that times out on the pool lock unmaps its metadata window', () => {
    const { path, cleanup } = shmPath('open-timeout');
    try {
      const holder = Pool.create(path, { size: '16M' });
      const sub = holder.subpool('sub', { count: 256 });
      const region = FileRegion.open(path);
      try {
        // Another open holds each lock. It is this very thread's, which a waiter takes for a previous
        // image's (liveness.ts isAliveForWaiter): the liveness oracle says it lives, as another
        // process's would.
        poolInternals(holder).parts.control.lock();
        poolInternals(sub).parts.control.lock();
        const maps = mappingsOf(path);
        failRepeatedly(() => Pool.open(region, { lockTimeoutMs: 1, isAlive: () => true }), PoolError, 'LOCK_TIMEOUT', 50);
        assert.equal(mappingsOf(path), maps, 'Pool.open over a region the caller keeps');
        poolInternals(holder).parts.control.unlock();
        const parent = Pool.open(path, { lockTimeoutMs: 1, isAlive: () => true });
        const withParent = mappingsOf(path);
        failRepeatedly(() => parent.subpool('sub'), PoolError, 'LOCK_TIMEOUT', 50);
        assert.equal(mappingsOf(path), withParent, 'a sub-pool opened in its parent');
        parent.close();
        poolInternals(sub).parts.control.unlock();
      } finally {
        region.close();
        holder.close();
      }
      const memory = new MemoryRegion(4 * MiB);
      const pool = Pool.create(memory, { size: 4 * MiB });
      poolInternals(pool).parts.control.lock();
      const windows = memory.windows().length;
      failRepeatedly(() => Pool.open(memory, { lockTimeoutMs: 1, isAlive: () => true }), PoolError, 'LOCK_TIMEOUT', 20);
      assert.equal(memory.windows().length, windows, 'windows of a memory region');
    } finally {
      cleanup();
    }
  });

  test('PersistentMap.open refusing a handover node for a map the pool lacks creates nothing', () => {
    const pool = Pool.create(new MemoryRegion(16 * MiB), { size: 16 * MiB });
    try {
      const fdt = new Fdt();
      writeMapNode(fdt, { name: 'kv', rootPfn: 1234, poolUuid: pool.uuidBytes, mapId: 5, entries: 3 });
      const before = pool.stats();
      failRepeatedly(() => PersistentMap.open(pool, 'kv', { handover: fdt }), ClientError, 'HANDOVER_MISMATCH', 3);
      assert.deepEqual(pool.stats(), before);
      assert.equal(pool.find('kv'), undefined, 'no map was created under the name');
      // Taken as found, the name is free for a new map.
      const map = PersistentMap.open(pool, 'kv', { handover: null });
      assert.equal(map.size, 0);
      map.close();
    } finally {
      pool.close();
    }
  });
});

describe('a release that finds the allocation bitmap damaged', () => {
  test('is complete, and says so with a typed CORRUPT', () => {
    const region = new MemoryRegion(16 * MiB);
    const pool = Pool.create(region, { size: region.size });
    const keep = pool.alloc(3, { name: 'keep' });
    const { used } = pool.stats();
    const one = pool.alloc(1, { name: 'one' });
    const run = pool.alloc(40, { name: 'run' });
    const words = new Uint32Array(region.buffer);
    // The leaf bitmap follows the allocator's header words (src/alloc/geometry.ts).
    const leaf = pool.geometry.areas.unitBitmap.offset / 4 + HEADER_WORDS;
    const unitPages = 2 ** pool.orderPerBit;
    // One path for a single unit, another for a run of them.
    for (const victim of [one, run]) {
      // Clear the bit of the allocation's first unit behind the allocator's back.
      const unit = victim.pfn / unitPages;
      words[leaf + (unit >>> 5)] = (words[leaf + (unit >>> 5)]! & ~(1 << (unit & 31))) >>> 0;
      const e = expectError(() => pool.release(victim.pfn, victim.count), PoolError, 'CORRUPT');
      assert.match(e.message, /the release is complete/);
      assert.equal(pool.at(victim.pfn), undefined, 'the allocation is gone');
      assert.equal(pool.find(victim.name!), undefined);
      assert.equal(pool.check().ok, true, 'the bitmaps were rebuilt from the directory');
      assert.ok(pool.recovered.some((r) => r.startsWith(`repaired an interrupted release of pfn ${victim.pfn}`)), pool.recovered.join('\n'));
      expectError(() => pool.release(victim.pfn, victim.count), PoolError, 'NOT_ALLOCATED');
    }
    assert.equal(pool.find('keep')?.pfn, keep.pfn, 'the other allocation is untouched');
    assert.equal(pool.stats().used, used, 'the released pages are free again');
    pool.close();
    const reopened = Pool.open(region);
    assert.deepEqual(reopened.allocations().map((a) => a.name), ['keep']);
    assert.equal(reopened.check().ok, true);
    reopened.close();
  });
});
