/**
 * Crash consistency by simulation (DESIGN.md §4; STYLE.md, TigerBeetle):
 * random sequences of pool operations on an in-memory region, crashed after
 * every single metadata store in turn — and in the middle of every store of
 * two words or more — then reopened. At every crash point:
 *   - the open repairs the crashed run (its holder is declared dead) and
 *     check() is clean: every page free or owned by exactly one record, the
 *     bitmaps, summaries and indices agreeing with the directory;
 *   - the pool (and each sub-pool) holds exactly the allocations of the
 *     operations completed before the crash, plus the one in flight either
 *     wholly or not at all; each operation has a single commit point (once
 *     its effect shows at some store, it shows at every later one);
 *   - data written into allocations before the crash is intact;
 *   - the page counts add up.
 * Some crash points also crash the recovery itself, at every store of it.
 *
 * Replay one run: PMPOOL_SIM_SEED=<seed printed by a run> node --test dist/test/pool-crash-sim.test.js
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Pool, PoolError, computeGeometry, type Allocation, type PoolOpenOptions } from '../src/pool/index.js';
import { MemoryRegion } from '../src/region/index.js';
import { Prng, testSeed } from './support/prng.js';
import { crashPoints, traced, type CrashPoint } from './support/crash-sim.js';
import { poolInternals } from '../src/pool/internals.js';
import { CONTROL_LAYOUT } from '../src/pool/control.js';

const PAGE = 4096;
const POOL_BYTES = 1024 * 1024;
/** Operations per scenario, and scenarios per run (seeds seed, seed+1, ...). */
const OPS = 28;
const SCENARIOS = Number(process.env.PMPOOL_SIM_SCENARIOS ?? 12);
/** Every NESTED_EVERY-th crash point that left an operation half done also crashes its recovery, at every store. */
const NESTED_EVERY = Number(process.env.PMPOOL_SIM_NESTED_EVERY ?? 97);
/** Every LIVE_EVERY-th crash point with the lock held checks that a live holder is waited for, not broken. */
const LIVE_EVERY = 347;

/** The crashed run is dead: its lock is broken at once and its operation repaired. */
const REOPEN: PoolOpenOptions = { isAlive: () => false, identityGraceMs: 0, livenessPeriodMs: 0, lockTimeoutMs: 10_000 };
const SUBPOOL_OWNER = 'pmpool:subpool';

/* ---------------- the model ---------------- */

interface Entry {
  pfn: number;
  count: number;
  name?: string;
  owner?: string;
  /** Identifies the data written into it (0: none, e.g. a sub-pool's run). */
  serial: number;
}

interface Model {
  generation: bigint;
  parent: Map<number, Entry>;
  subs: Map<string, Map<number, Entry>>;
}

function cloneModel(m: Model): Model {
  return {
    generation: m.generation,
    parent: new Map(m.parent),
    subs: new Map([...m.subs].map(([k, v]) => [k, new Map(v)])),
  };
}

function listKey(entries: Iterable<{ pfn: number; count: number; name?: string; owner?: string }>): unknown[] {
  return [...entries].sort((a, b) => a.pfn - b.pfn).map((e) => [e.pfn, e.count, e.name ?? null, e.owner ?? null]);
}

function modelKey(m: Model): string {
  const subs = [...m.subs].sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, s]) => [name, listKey(s.values())]);
  return JSON.stringify({ generation: String(m.generation), parent: listKey(m.parent.values()), subs });
}

/* ---------------- data patterns ---------------- */

/** 16 bytes at the start of every page of an allocation, derived from its serial and the page. */
function pattern(serial: number, page: number): Uint8Array {
  const out = new Uint8Array(16);
  let x = (Math.imul(serial, 0x9e3779b1) ^ Math.imul(page + 1, 0x85ebca6b)) >>> 0;
  for (let i = 0; i < 16; i++) {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    out[i] = x & 0xff;
  }
  return out;
}

function writePattern(a: Allocation, serial: number): void {
  for (let p = 0; p < a.count; p++) a.bytes(p * PAGE, 16).set(pattern(serial, p));
}

function patternIntact(a: Allocation, serial: number): boolean {
  for (let p = 0; p < a.count; p++) {
    const want = pattern(serial, p);
    const got = a.bytes(p * PAGE, 16);
    for (let i = 0; i < 16; i++) if (got[i] !== want[i]) return false;
  }
  return true;
}

/* ---------------- a scenario: a deterministic sequence of operations ---------------- */

interface Run {
  region: MemoryRegion;
  pool: Pool;
  subs: Map<string, Pool>;
  model: Model;
  rng: Prng;
  serial: number;
}

const EXPECTED = new Set(['NO_SPACE', 'NO_RECORDS', 'NAME_TAKEN', 'NOT_ALLOCATED', 'WRONG_OWNER']);

/** Runs `fn`; an expected refusal (which must change nothing) is swallowed. */
function attempt(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof PoolError && EXPECTED.has(e.code)) return;
    throw e;
  }
}

function openSub(run: Run, name: string): Pool {
  let sub = run.subs.get(name);
  if (!sub || sub.closed) {
    sub = run.pool.subpool(name);
    run.subs.set(name, sub);
  }
  return sub;
}

/** PMPOOL_SIM_TRACE=1 prints each operation of the reference run (with a replayed seed). */
const TRACE = process.env.PMPOOL_SIM_TRACE === '1';
let tracing = false;
function trace(text: string): void {
  if (TRACE && tracing) process.stderr.write(`${text}\n`);
}

/** One operation, chosen and parameterized by the run's PRNG; the model follows. */
function step(run: Run): void {
  const { rng, model } = run;
  const roll = rng.int(100);
  trace(`op roll ${roll}`);
  if (roll < 38) {
    // Allocate in the parent, sometimes named, owned, aligned.
    const count = rng.chance(0.7) ? rng.range(1, 4) : rng.range(5, 20);
    const align = rng.pick([1, 1, 1, 2, 4, 8, 16]);
    const serial = ++run.serial;
    const existing = [...model.parent.values()].filter((e) => e.name !== undefined);
    const name = rng.chance(0.6) ? (existing.length > 0 && rng.chance(0.1) ? rng.pick(existing).name : `n${serial}`) : undefined;
    const owner = rng.chance(0.4) ? rng.pick(['kv', 'log', 'app']) : undefined;
    trace(`  alloc ${count} align ${align} name ${name} owner ${owner}`);
    attempt(() => {
      const a = run.pool.alloc(count, { align, name, owner });
      model.parent.set(a.pfn, { pfn: a.pfn, count: a.count, name, owner, serial });
      writePattern(a, serial);
    });
  } else if (roll < 66) {
    // Release in the parent (now and then with a wrong count or owner: refused).
    const plain = [...model.parent.values()].filter((e) => e.owner !== SUBPOOL_OWNER);
    if (plain.length === 0) return;
    const e = rng.pick(plain);
    trace(`  release ${JSON.stringify(e)}`);
    if (rng.chance(0.08)) {
      attempt(() => run.pool.release(e.pfn, e.count + 2 ** run.pool.orderPerBit, { owner: e.owner }));
      if (e.owner !== undefined) {
        attempt(() => run.pool.release(e.pfn, e.count, { owner: 'intruder' }));
        return;
      }
    }
    attempt(() => {
      run.pool.release(e.pfn, e.count, { owner: e.owner });
      model.parent.delete(e.pfn);
    });
  } else if (roll < 74) {
    // Create a sub-pool.
    const name = `sp${++run.serial}`;
    attempt(() => {
      const sub = run.pool.subpool(name, { count: rng.range(16, 40), maxAllocations: 8 });
      run.subs.set(name, sub);
      const a = run.pool.find(name)!;
      model.parent.set(a.pfn, { pfn: a.pfn, count: a.count, name, owner: SUBPOOL_OWNER, serial: 0 });
      model.subs.set(name, new Map());
      assert.deepEqual(sub.allocations(), [], `a new sub-pool is empty (${name})`);
    });
  } else if (roll < 88) {
    // Allocate or release inside a sub-pool.
    if (model.subs.size === 0) return;
    const name = rng.pick([...model.subs.keys()].sort());
    const sub = openSub(run, name);
    const inner = model.subs.get(name)!;
    trace(`  in sub-pool ${name}`);
    if (inner.size > 0 && rng.chance(0.45)) {
      const e = rng.pick([...inner.values()]);
      sub.release(e.pfn, e.count);
      inner.delete(e.pfn);
    } else {
      const serial = ++run.serial;
      const name2 = rng.chance(0.7) ? `s${serial}` : undefined;
      attempt(() => {
        const a = sub.alloc(rng.range(1, 3), { name: name2 });
        inner.set(a.pfn, { pfn: a.pfn, count: a.count, name: name2, serial });
        writePattern(a, serial);
      });
    }
  } else if (roll < 92) {
    // Release a whole sub-pool (closed first, as release requires).
    if (model.subs.size === 0) return;
    const name = rng.pick([...model.subs.keys()].sort());
    run.subs.get(name)?.close();
    run.subs.delete(name);
    const e = [...model.parent.values()].find((x) => x.name === name)!;
    run.pool.release(e.pfn, e.count, { owner: SUBPOOL_OWNER });
    model.parent.delete(e.pfn);
    model.subs.delete(name);
  } else if (roll < 96) {
    // A handover bumps the generation (both superblock copies).
    const next = model.generation + 1n;
    run.pool.setGeneration(next);
    model.generation = next;
  } else {
    // The program restarts cleanly: a new open, a new run id.
    run.pool.close();
    run.subs.clear();
    run.pool = Pool.open(run.region);
  }
}

interface Reference {
  /** Store count after each operation (index 0: after the initial open). */
  endOf: number[];
  /** Model key after each operation (index 0: the initial state). */
  keys: string[];
  models: Model[];
  points: CrashPoint[];
  stores: number;
}

/** Replays scenario `seed` on a fresh copy of `start`, crashing at `crashAt` if given. */
function execute(start: MemoryRegion, seed: number, crashAt: CrashPoint | null, onStep?: (model: Model, stores: number) => void) {
  const region = start.clone();
  return traced(region, crashAt, (tracer) => {
    const model: Model = { generation: 0n, parent: new Map(), subs: new Map() };
    const run: Run = { region, pool: Pool.open(region), subs: new Map(), model, rng: new Prng(seed), serial: 0 };
    onStep?.(cloneModel(run.model), tracer.count);
    for (let i = 0; i < OPS; i++) {
      step(run);
      onStep?.(cloneModel(run.model), tracer.count);
    }
    run.pool.close();
  });
}

/* ---------------- observing a crash image ---------------- */

interface Observation {
  key: string;
  /** Problems found (empty when the image reopened clean and consistent). */
  problems: string[];
}

function statsProblems(label: string, pool: Pool, allocations: readonly Allocation[]): string[] {
  const s = pool.stats();
  const g = pool.geometry;
  const unitPages = 2 ** g.orderPerBit;
  const owned = allocations.reduce((n, a) => n + a.count, 0);
  const problems: string[] = [];
  // The largest free run the directory implies: the widest gap between the metadata, the
  // allocations (in pages, as listed) and the tail. stats() reads it from the bitmap.
  let largest = 0;
  let end = g.reservedUnits * unitPages;
  for (const a of [...allocations].sort((x, y) => x.pfn - y.pfn)) {
    largest = Math.max(largest, a.pfn - end);
    end = Math.max(end, a.pfn + a.count);
  }
  largest = Math.max(largest, g.unitCount * unitPages - end);
  if (s.largestFree !== largest) problems.push(`${label}: largest free run ${s.largestFree} pages, the directory implies ${largest}`);
  if (s.used !== g.reservedUnits * unitPages + s.tail + owned) {
    problems.push(`${label}: used ${s.used} != metadata ${g.reservedUnits * unitPages} + tail ${s.tail} + allocated ${owned}`);
  }
  if (s.allocations !== allocations.length) problems.push(`${label}: stats count ${s.allocations} allocations, the directory ${allocations.length}`);
  return problems;
}

/**
 * Opens a crash image as the next program would and reads back what it
 * holds. `before` is the model of the operations completed before the
 * crash: the data of its allocations must be intact.
 */
function observe(image: MemoryRegion, before: Model, checkData = true): Observation {
  const problems: string[] = [];
  const pool = Pool.open(image, REOPEN);
  try {
    const report = pool.check();
    if (!report.ok) problems.push(...report.problems.map((p) => `check: ${p}`));
    const list = pool.allocations();
    problems.push(...statsProblems('pool', pool, list));
    const subs: [string, unknown[]][] = [];
    for (const a of list) {
      const known = before.parent.get(a.pfn);
      if (a.subpool) {
        let sub: Pool;
        try {
          sub = pool.subpool(a.name!);
        } catch (e) {
          problems.push(`sub-pool ${a.name} does not open: ${String(e)}`);
          continue;
        }
        const subReport = sub.check();
        if (!subReport.ok) problems.push(...subReport.problems.map((p) => `sub-pool ${a.name} check: ${p}`));
        const inner = sub.allocations();
        problems.push(...statsProblems(`sub-pool ${a.name}`, sub, inner));
        const innerBefore = known?.name === a.name ? before.subs.get(a.name!) : undefined;
        for (const x of inner) {
          const k = innerBefore?.get(x.pfn);
          if (checkData && k && k.name === x.name && !patternIntact(x, k.serial)) problems.push(`sub-pool ${a.name}: data of pfn ${x.pfn} damaged`);
        }
        subs.push([a.name!, listKey(inner.map((x) => x.toJSON()))]);
      } else if (checkData && known && known.serial > 0 && known.count === a.count && known.name === a.name && !patternIntact(a, known.serial)) {
        problems.push(`data of the allocation at pfn ${a.pfn} damaged`);
      }
    }
    subs.sort(([a], [b]) => (a < b ? -1 : 1));
    const key = JSON.stringify({ generation: String(pool.generation), parent: listKey(list.map((x) => x.toJSON())), subs });
    return { key, problems };
  } finally {
    pool.close();
  }
}

/* ---------------- the simulation ---------------- */

interface SimResult {
  crashPoints: number;
  nestedPoints: number;
  liveHolderChecks: number;
}

function simulate(seed: number): SimResult {
  const rng = new Prng(seed ^ 0x5eed);
  const orderPerBit = rng.pick([0, 0, 1]);
  const start = new MemoryRegion(POOL_BYTES);
  Pool.create(start, { size: POOL_BYTES, orderPerBit, maxAllocations: 24 }).close();

  // The reference run: every store recorded, the model after every operation.
  const ref: Reference = { endOf: [], keys: [], models: [], points: [], stores: 0 };
  tracing = true;
  const tracer = execute(start, seed, null, (model, stores) => {
    trace(`  -> stores ${stores}`);
    ref.endOf.push(stores);
    ref.models.push(model);
    ref.keys.push(modelKey(model));
  });
  tracing = false;
  ref.points = crashPoints(tracer.stores!, true);
  ref.stores = tracer.count;

  const result: SimResult = { crashPoints: 0, nestedPoints: 0, liveHolderChecks: 0 };
  const fail = (point: string, message: string): never => {
    assert.fail(`seed ${seed}, ${point}: ${message} (replay: PMPOOL_SIM_SEED=${seed} PMPOOL_SIM_SCENARIOS=1)`);
  };
  // Which operation is in flight at store k: the first whose end count reaches k.
  let op = 0;
  let committedAt: string | null = null; // the first crash point of the current op showing its effect
  let interrupted = 0;
  let held = 0;
  for (const point of ref.points) {
    while (ref.endOf[op]! < point.k) {
      op++;
      committedAt = null;
    }
    const label = `${describePoint(point)} ${point.k}/${ref.stores} (operation ${op})`;
    const image = execute(start, seed, point).image;
    if (image === null) fail(label, 'the replay did not reach the crash point (the run is not deterministic)');
    // op 0 is the initial open: before it is the initial state too.
    const beforeModel = ref.models[Math.max(0, op - 1)]!;
    const beforeKey = ref.keys[Math.max(0, op - 1)]!;
    const afterKey = ref.keys[op]!;

    const lockHeld = new Uint32Array(image!.buffer, CONTROL, 1)[0] !== 0;
    if (lockHeld && held++ % LIVE_EVERY === 0) {
      // A live holder is never broken: the open waits, then gives up with LOCK_TIMEOUT.
      let code = 'none';
      try {
        Pool.open(image!.clone(), { isAlive: () => true, lockTimeoutMs: 30 }).close();
      } catch (e) {
        code = e instanceof PoolError ? e.code : String(e);
      }
      if (code !== 'LOCK_TIMEOUT') fail(label, `open under a live holder gave ${code}, not LOCK_TIMEOUT`);
      result.liveHolderChecks++;
    }

    const nested = hasIntent(image!) && interrupted++ % NESTED_EVERY === 0;
    // After a power cut, data the program wrote but never flushed may be lost: only metadata is checked.
    const seen = observe(nested ? image!.clone() : image!, beforeModel, point.ahead === undefined);
    result.crashPoints++;
    if (seen.problems.length > 0) fail(label, seen.problems.join('\n'));
    if (seen.key !== beforeKey && seen.key !== afterKey) {
      fail(label, `the pool holds neither the state before operation ${op} nor after it:\n  seen   ${seen.key}\n  before ${beforeKey}\n  after  ${afterKey}`);
    }
    if (beforeKey !== afterKey) {
      if (seen.key === afterKey) committedAt ??= label;
      else if (committedAt !== null) fail(label, `operation ${op} showed its effect at "${committedAt}" and lost it later: no single commit point`);
    }

    if (nested) {
      // Crash the recovery of this image at each of its stores: the outcome must not change.
      const recovery = recordRecovery(image!);
      for (const p of crashPoints(recovery, true)) {
        const again = crashRecovery(image!, p);
        const seen2 = observe(again, beforeModel, point.ahead === undefined && p.ahead === undefined);
        result.nestedPoints++;
        const label2 = `${label}, then in its recovery ${describePoint(p)} ${p.k}/${recovery.length}`;
        if (seen2.problems.length > 0) fail(label2, seen2.problems.join('\n'));
        if (seen2.key !== seen.key) fail(label2, `recovery changed its outcome:\n  first  ${seen.key}\n  now    ${seen2.key}`);
      }
    }
  }
  return result;
}

function describePoint(p: CrashPoint): string {
  if (p.ahead !== undefined) return `power cut with every page as of the barrier after store ${p.ahead} but that of store`;
  return `crash ${p.torn ? 'in the middle of' : 'after'} store`;
}

/** The control area's intent op word (src/pool/control.ts). */
const CONTROL = computeGeometry({ size: POOL_BYTES, pageSize: PAGE, orderPerBit: 0 }).areas.control.offset;
function hasIntent(image: MemoryRegion): boolean {
  return new Uint32Array(image.buffer, CONTROL + CONTROL_LAYOUT.INTENT_OP, 1)[0] !== 0;
}

/** The stores the open of `image` makes (recovery of the crashed run, and its own lock). */
function recordRecovery(image: MemoryRegion) {
  const copy = image.clone();
  return traced(copy, null, () => Pool.open(copy, REOPEN).close()).stores!;
}

function crashRecovery(image: MemoryRegion, point: CrashPoint): MemoryRegion {
  const copy = image.clone();
  const image2 = traced(copy, point, () => Pool.open(copy, REOPEN).close()).image;
  assert.ok(image2, 'the recovery reached its crash point');
  return image2;
}

describe('crash simulation', () => {
  test('every prefix of the stores of random operation sequences recovers to a consistent pool', (t) => {
    const seed = testSeed('PMPOOL_SIM_SEED');
    let total: SimResult = { crashPoints: 0, nestedPoints: 0, liveHolderChecks: 0 };
    for (let i = 0; i < SCENARIOS; i++) {
      let r: SimResult;
      try {
        r = simulate((seed + i) >>> 0);
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        throw new Error(`seed ${(seed + i) >>> 0} (replay: PMPOOL_SIM_SEED=${(seed + i) >>> 0} PMPOOL_SIM_SCENARIOS=1): ${String(e)}`, { cause: e });
      }
      t.diagnostic(`seed ${(seed + i) >>> 0}: ${r.crashPoints} crash points, ${r.nestedPoints} in recoveries, ${r.liveHolderChecks} live-holder checks`);
      total = {
        crashPoints: total.crashPoints + r.crashPoints,
        nestedPoints: total.nestedPoints + r.nestedPoints,
        liveHolderChecks: total.liveHolderChecks + r.liveHolderChecks,
      };
    }
    t.diagnostic(`total: ${total.crashPoints} crash points, ${total.nestedPoints} in recoveries, ${total.liveHolderChecks} live-holder checks`);
    assert.ok(total.crashPoints >= 1000 * SCENARIOS / 6, `${total.crashPoints} crash points`);
  });
});

/* ---------------- crashes inside check({ repair: true }) ---------------- */

/** A pool with some allocations, released holes, names and owners; closed. */
function populated(seed: number): { region: MemoryRegion; allocations: string } {
  const region = new MemoryRegion(POOL_BYTES);
  const pool = Pool.create(region, { size: POOL_BYTES, maxAllocations: 24 });
  const rng = new Prng(seed);
  const made: Allocation[] = [];
  for (let i = 0; i < 14; i++) made.push(pool.alloc(rng.range(1, 6), { name: rng.chance(0.6) ? `r${i}` : undefined, owner: rng.chance(0.3) ? 'kv' : undefined }));
  for (const a of made) if (rng.chance(0.3)) pool.release(a.pfn, a.count, { owner: a.owner });
  const allocations = JSON.stringify(pool.allocations());
  pool.close();
  return { region, allocations };
}

function problemsOf(image: MemoryRegion): string[] {
  const pool = Pool.open(image, REOPEN);
  try {
    return pool.check().problems;
  } finally {
    pool.close();
  }
}

describe('crash simulation of check({ repair: true })', () => {
  test('a crash anywhere in a repair leaves the damage as it was or repaired, never worse', (t) => {
    const seed = testSeed('PMPOOL_SIM_SEED');
    const { region, allocations } = populated(seed);
    // Damage what is derived from the directory, behind the pool's back: an allocation's
    // units marked free (its pages could be handed out twice), the name index emptied,
    // a live record's slot marked free.
    const pool = Pool.open(region);
    const { parts } = poolInternals(pool);
    const victim = pool.allocations()[2]!;
    const unitPages = 2 ** parts.geometry.orderPerBit;
    parts.units.markFree(victim.pfn / unitPages, Math.ceil(victim.count / unitPages));
    parts.nameIndex.clear();
    const someSlot = [...Array(parts.directory.capacity).keys()].find((slot) => parts.directory.status(slot) === 'live')!;
    parts.slots.markFree(someSlot, 1);
    pool.close();
    const damage = problemsOf(region.clone());
    assert.ok(damage.length >= 3, damage.join('\n'));

    const replay = (point: CrashPoint | null) => {
      const copy = region.clone();
      return traced(copy, point, () => {
        const p = Pool.open(copy, REOPEN);
        const report = p.check({ repair: true });
        if (point === null) assert.equal(report.ok, true, report.problems.join('\n'));
        p.close();
      });
    };
    const reference = replay(null);
    let repairedAt: number | null = null;
    let points = 0;
    for (const point of crashPoints(reference.stores!, true)) {
      const image = replay(point).image!;
      const problems = problemsOf(image.clone());
      const label = `seed ${seed}, ${describePoint(point)} ${point.k}/${reference.stores!.length} of a repair`;
      assert.ok(problems.length === 0 || JSON.stringify(problems) === JSON.stringify(damage), `${label}: the pool is worse than before the repair:\n${problems.join('\n')}`);
      if (problems.length === 0) repairedAt ??= point.k;
      else assert.equal(repairedAt, null, `${label}: repaired at store ${repairedAt}, damaged again later`);
      const again = Pool.open(image, REOPEN);
      assert.equal(JSON.stringify(again.allocations()), allocations, `${label}: the allocations changed`);
      again.close();
      points++;
    }
    t.diagnostic(`${points} crash points in a repair; repaired from store ${repairedAt}`);
  });

  test('a crash anywhere in the repair of a damaged superblock: refused as damaged before, clean after', (t) => {
    const { region, allocations } = populated(7);
    const good = new Uint8Array(region.buffer, 0, 256).slice();
    new Uint8Array(region.buffer)[100]! ^= 0x10; // a bit of the primary superblock's area table
    const replay = (point: CrashPoint | null) => {
      const copy = region.clone();
      return traced(copy, point, () => {
        const p = Pool.open(copy, { ...REOPEN, allowDamagedSuperblock: true });
        const report = p.check({ repair: true });
        if (point === null) assert.equal(report.ok, true, report.problems.join('\n'));
        p.close();
      });
    };
    const reference = replay(null);
    let cleanFrom: number | null = null;
    let points = 0;
    for (const point of crashPoints(reference.stores!, true)) {
      const image = replay(point).image!;
      const label = `${describePoint(point)} ${point.k}/${reference.stores!.length} of a superblock repair`;
      let pool: Pool;
      try {
        pool = Pool.open(image, REOPEN);
      } catch (e) {
        assert.ok(e instanceof PoolError && e.code === 'CORRUPT', `${label}: ${String(e)}`);
        assert.equal(cleanFrom, null, `${label}: refused after an earlier crash point opened clean`);
        points++;
        continue;
      }
      const report = pool.check();
      assert.equal(report.ok, true, `${label}: ${report.problems.join('\n')}`);
      assert.deepEqual(new Uint8Array(image.buffer, 0, 256), good, `${label}: the primary superblock is restored`);
      assert.equal(JSON.stringify(pool.allocations()), allocations, label);
      pool.close();
      cleanFrom ??= point.k;
      points++;
    }
    assert.notEqual(cleanFrom, null);
    t.diagnostic(`${points} crash points in a superblock repair; clean from store ${cleanFrom}`);
  });
});

describe('sub-pools and the pages they leave behind', () => {
  test('a sub-pool created in the pages of a released one starts empty (never the stale pool)', () => {
    for (const [first, second] of [[40, 40], [40, 36], [32, 48]] as const) {
      const region = new MemoryRegion(POOL_BYTES);
      const creator = Pool.create(region, { size: POOL_BYTES, maxAllocations: 24 });
      const a = creator.subpool('a', { count: first, maxAllocations: 8 });
      a.alloc(2, { name: 'stale' });
      const run = creator.find('a')!;
      a.close();
      creator.release(run.pfn, run.count, { owner: SUBPOOL_OWNER });
      creator.close();
      // A new open searches from the start (the next-fit rotor is per open), so 'b' lands on a's pages.
      const pool = Pool.open(region);
      const b = pool.subpool('b', { count: second, maxAllocations: 8 });
      assert.equal(pool.find('b')!.pfn, run.pfn, 'the new sub-pool reuses the pages');
      assert.deepEqual(b.allocations(), [], `${first} then ${second} pages`);
      assert.equal(b.pageCount, second);
      assert.ok(b.check().ok && pool.check().ok);
      pool.close();
      // And after a restart.
      const again = Pool.open(region);
      assert.deepEqual(again.subpool('b').allocations(), []);
      again.close();
    }
  });

  test('a committed sub-pool whose pool is gone is refused as CORRUPT, not silently reformatted', () => {
    const region = new MemoryRegion(POOL_BYTES);
    const pool = Pool.create(region, { size: POOL_BYTES, maxAllocations: 24 });
    pool.subpool('s', { count: 32 }).alloc(1, { name: 'precious' });
    const run = pool.find('s')!;
    pool.close();
    new Uint8Array(region.buffer, run.pfn * PAGE, PAGE).fill(0); // both superblock copies of the sub-pool
    const again = Pool.open(region);
    assert.throws(() => again.subpool('s'), (e: unknown) => e instanceof PoolError && e.code === 'CORRUPT');
    assert.ok(again.find('s'), 'the record is kept');
    again.close();
  });
});
