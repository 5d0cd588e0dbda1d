/**
 * The crash simulation of test/pool-crash-sim.test.ts over a pool whose
 * opens use their caches (src/pool/caches.ts): most allocations are plain
 * one-unit ones, made from a cache and released onto it without the pool
 * lock. Every store of a cached allocation or release, of a refill, a spill,
 * a drain (the pool full), a cache given back at close and a crashed
 * owner's cache dissolved at the reopen is crashed after, and in the middle
 * of, in turn: the reopened pool checks clean and holds exactly the
 * allocations of the operations completed, plus the one in flight wholly or
 * not at all.
 *
 * Replay one run: PMPOOL_SIM_SEED=<seed printed by a run> PMPOOL_SIM_CACHED_SCENARIOS=1 node --test dist/test/pool-crash-sim-cached.test.js
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Pool } from '../src/pool/index.js';
import { MemoryRegion } from '../src/region/index.js';
import { poolInternals } from '../src/pool/internals.js';
import { CACHED, CACHED_SCENARIOS, simulateMany } from './support/pool-sim.js';

describe('crash simulation, with the opens\' caches', () => {
  test('the cache\'s operations, crashed at every store, recover to a consistent pool', async (t) => {
    // The shape does use the caches: its directory is big enough, and its first plain allocation takes one.
    const probe = Pool.create(new MemoryRegion(CACHED.bytes), { size: CACHED.bytes, maxAllocations: CACHED.maxAllocations });
    assert.equal(poolInternals(probe).parts.caches.enabled, true, 'the simulated pool uses caches');
    probe.alloc(1);
    assert.ok(probe.stats().cached > 0, 'an allocation filled a cache');
    probe.close();
    const total = await simulateMany(t, CACHED, CACHED_SCENARIOS, 0x5ca3);
    assert.ok(total.crashPoints >= 500 * CACHED_SCENARIOS, `${total.crashPoints} crash points`);
  });
});
