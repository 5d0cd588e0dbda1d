/**
 * The crash simulation of test/pool-crash-sim.test.ts over a pool of over
 * 1,024 units, whose allocator summaries have two levels: the operations
 * that cascade into the second level (a leaf word group filling up, or
 * emptying) are crashed after every store and in the middle of every store,
 * and some of their recoveries at every store of those. A file of its own:
 * each crash point copies a region four times the small pool's, and beside
 * the small simulation, in one process, that cost tripled.
 *
 * Replay one run: PMPOOL_SIM_SEED=<seed printed by a run> PMPOOL_SIM_DEEP_SCENARIOS=1 node --test dist/test/pool-crash-sim-deep.test.js
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { computeGeometry } from '../src/pool/index.js';
import { allocatorGeometry } from '../src/alloc/index.js';
import { DEEP, DEEP_BYTES, DEEP_SCENARIOS, PAGE, simulateMany } from './support/pool-sim.js';

describe('crash simulation, summaries of two levels', () => {
  test('over summaries of two levels too: the operations that cascade into the second, crashed at every store', async (t) => {
    assert.equal(allocatorGeometry(computeGeometry({ size: DEEP_BYTES, pageSize: PAGE, orderPerBit: 0 }).unitCount).levels, 2, 'the deep pool has two summary levels');
    const total = await simulateMany(t, DEEP, DEEP_SCENARIOS, 0x9e37);
    // simulate() refuses a scenario whose run never wrote the second level: the shape is made so that each does.
    assert.ok(total.crashPoints >= 100 * DEEP_SCENARIOS, `${total.crashPoints} crash points`);
  });
});
