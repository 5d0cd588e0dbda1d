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
 * Two shapes of pool: a small one (every summary a single word), and one of
 * over 1,024 units whose summaries have two levels, where the operations
 * that cascade into the second level are crashed at every store.
 *
 * The scenarios, the model and the observation of crash images, shared by
 * test/pool-crash-sim.test.ts (the small pool, and crashes of repairs) and
 * test/pool-crash-sim-deep.test.ts (summaries of two levels). A failure
 * prints the line that replays its scenario alone.
 */
import assert from 'node:assert/strict';
import { Pool, PoolError, computeGeometry, type Allocation, type PoolOpenOptions } from '../../src/pool/index.js';
import { allocatorGeometry } from '../../src/alloc/index.js';
import { MemoryRegion } from '../../src/region/index.js';
import { CONTROL_LAYOUT } from '../../src/pool/control.js';
import { Prng, testSeed } from './prng.js';
import { crashPoints, traced, type CrashPoint } from './crash-sim.js';

export const PAGE = 4096;
export const POOL_BYTES = 1024 * 1024;
/** Operations per scenario, and scenarios per run (seeds seed, seed+1, ...). */
const OPS = 28;
export const SCENARIOS = Number(process.env.PMPOOL_SIM_SCENARIOS ?? 12);

/** The pool a scenario starts from, and how long it runs. */
export interface Shape {
  bytes: number;
  /** Picked from by each scenario's seed. */
  orderPerBits: readonly number[];
  /** Pages allocated (named "fill") in the starting image, outside the traced run: 0 for none. */
  prefill: number;
  ops: number;
  /**
   * Crash only inside the operations that store into a summary word above level 0 (at every
   * store of those, as everywhere else): the other operations of a deep pool are what the small
   * shape already covers, and each crash point of a pool this size costs a copy of it.
   */
  focusUpper?: boolean;
  /**
   * Operations around the random ones, the same in every scenario: first an allocation of
   * `bracket` pages (which, after the filler, completes the 32 leaf words under level-1 bit 0:
   * a cascade into the second level in every scenario, whatever its seed), last the release of the
   * filler (which empties most of them at once).
   */
  bracket?: number;
  /** The directory's capacity (default 24); from caches.ts CACHE_MIN_RECORDS on, the opens' caches are used. */
  maxAllocations?: number;
  /**
   * The share of allocations in the parent that are plain one-unit ones, sometimes owned — what
   * the opens' caches serve — on top of those the random mix makes. Default 0.
   */
  plainSingles?: number;
  /**
   * A second open of the pool, in the same program, makes half of the plain one-unit allocations
   * and releases: each open has a cache, and each releases the other's allocations onto its own.
   */
  peer?: boolean;
  /**
   * Scenarios of even seeds make their pool with bare units (src/pool/bare-units.ts), those of odd
   * seeds without: plain one-unit allocations are then bits in one, records in the other.
   */
  alternateBareUnits?: boolean;
}

/** A pool of 128 or 256 units: every summary is a single word. */
export const SMALL: Shape = { bytes: POOL_BYTES, orderPerBits: [0, 0, 1], prefill: 0, ops: OPS };
/**
 * A pool of over 1,024 units, whose summaries have two levels, started with
 * all but a few units of the first 1,024 allocated: the traced operations
 * fill and empty the 32 leaf words under level-1 bit 0, so that stores
 * cascade into the second level (and back), and releasing the filler
 * empties them at once.
 */
export const DEEP_BYTES = 4.25 * 1024 * 1024;
export const DEEP: Shape = {
  bytes: DEEP_BYTES,
  orderPerBits: [0],
  prefill: 1024 - 6 - computeGeometry({ size: DEEP_BYTES, pageSize: PAGE, orderPerBit: 0 }).reservedUnits,
  ops: 24,
  focusUpper: true,
  bracket: 8,
};
/**
 * The small pool with a directory big enough for the opens' caches (caches.ts): most allocations
 * are plain one-unit ones, taken from a cache and released onto it — by two opens, each with a
 * cache of its own, releasing each other's allocations too — and the caches are filled,
 * spilled, drained (a full pool), given back (a close) and dissolved (a crashed owner's, at the
 * reopen): every store of each crashed in turn, as everywhere else.
 */
export const CACHED: Shape = { bytes: POOL_BYTES, orderPerBits: [0, 1], prefill: 0, ops: OPS, maxAllocations: 2048, plainSingles: 0.75, peer: true, alternateBareUnits: true };
export const CACHED_SCENARIOS = Number(process.env.PMPOOL_SIM_CACHED_SCENARIOS ?? 4);
export const DEEP_SCENARIOS = Number(process.env.PMPOOL_SIM_DEEP_SCENARIOS ?? 3);
/** Every NESTED_EVERY-th crash point that left an operation half done also crashes its recovery, at every store. */
const NESTED_EVERY = Number(process.env.PMPOOL_SIM_NESTED_EVERY ?? 97);
/** Every LIVE_EVERY-th crash point with the lock held checks that a live holder is waited for, not broken. */
const LIVE_EVERY = 347;

/** The crashed run is dead: its lock is broken at once and its operation repaired. */
export const REOPEN: PoolOpenOptions = { isAlive: () => false, identityGraceMs: 0, livenessPeriodMs: 0, lockTimeoutMs: 10_000 };
export const SUBPOOL_OWNER = 'pmpool:subpool';

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
  /** Shape.plainSingles. */
  plainSingles: number;
  /** A second open of the pool in the same program (Shape.peer), or null. */
  peer: Pool | null;
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
  if (roll < 38 && run.plainSingles > 0 && rng.chance(run.plainSingles)) {
    // A plain one-unit allocation, sometimes owned: the opens' caches serve these.
    const serial = ++run.serial;
    const owner = rng.chance(0.3) ? 'kv' : undefined;
    const by = run.peer !== null && rng.chance(0.5) ? run.peer : run.pool;
    trace(`  alloc 1 owner ${owner}${by === run.peer ? ' by the peer' : ''}`);
    attempt(() => {
      const a = by.alloc(1, owner === undefined ? undefined : { owner });
      model.parent.set(a.pfn, { pfn: a.pfn, count: a.count, owner, serial });
      writePattern(a, serial);
    });
  } else if (roll < 38) {
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
    const by = run.peer !== null && rng.chance(0.5) ? run.peer : run.pool;
    attempt(() => {
      by.release(e.pfn, e.count, { owner: e.owner });
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
    run.peer?.close();
    run.pool.close();
    run.subs.clear();
    run.pool = Pool.open(run.region);
    if (run.peer !== null) run.peer = Pool.open(run.region);
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

/** Replays scenario `seed` on a fresh copy of `start` (whose allocations are `initial`), crashing at `crashAt` if given. */
function execute(start: MemoryRegion, initial: Model, shape: Shape, seed: number, crashAt: CrashPoint | null, onStep?: (model: Model, stores: number) => void) {
  const region = start.clone();
  return traced(region, crashAt, (tracer) => {
    const model = cloneModel(initial);
    const pool = Pool.open(region);
    const run: Run = { region, pool, subs: new Map(), model, rng: new Prng(seed), serial: 0, plainSingles: shape.plainSingles ?? 0, peer: shape.peer ? Pool.open(region) : null };
    onStep?.(cloneModel(run.model), tracer.count);
    if (shape.bracket !== undefined) {
      const serial = ++run.serial;
      const a = run.pool.alloc(shape.bracket, { name: 'edge' });
      model.parent.set(a.pfn, { pfn: a.pfn, count: a.count, name: 'edge', serial });
      writePattern(a, serial);
      onStep?.(cloneModel(run.model), tracer.count);
    }
    for (let i = 0; i < shape.ops; i++) {
      step(run);
      onStep?.(cloneModel(run.model), tracer.count);
    }
    const fill = shape.bracket === undefined ? undefined : [...model.parent.values()].find((e) => e.name === 'fill');
    if (fill !== undefined) {
      run.pool.release(fill.pfn, fill.count);
      model.parent.delete(fill.pfn);
      onStep?.(cloneModel(run.model), tracer.count);
    }
    run.peer?.close();
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

export interface SimResult {
  crashPoints: number;
  nestedPoints: number;
  liveHolderChecks: number;
  /** Stores of the reference run into summary words above level 0 (either tree). */
  upperSummaryStores: number;
}

/** One scenario; `replay` says how to run it alone. */
/**
 * How many crash points the simulation checks between two turns of the event loop. Sub-pools'
 * windows are tracked by WeakRef (region.ts LiveWindows), and a WeakRef keeps its target alive
 * until the job that made it ends (the ECMAScript KeepDuringJob set): a simulation run as one
 * synchronous job kept every crash image it made, 24 GB for one seed (PMPOOL_SIM_SEED=3099590648),
 * which the OOM killer ended in CI. A turn of the event loop ends the job and lets them go.
 */
const POINTS_PER_TURN = 64;
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function simulate(seed: number, shape: Shape, replay: string): Promise<SimResult> {
  const rng = new Prng(seed ^ 0x5eed);
  const orderPerBit = rng.pick(shape.orderPerBits);
  const start = new MemoryRegion(shape.bytes);
  const initial: Model = { generation: 0n, parent: new Map(), subs: new Map() };
  const bareUnits = shape.alternateBareUnits === true ? (seed & 1) === 0 : undefined;
  trace(`  pool of ${shape.bytes} bytes, orderPerBit ${orderPerBit}, bare units ${bareUnits ?? 'by default'}`);
  const created = Pool.create(start, { size: shape.bytes, orderPerBit, maxAllocations: shape.maxAllocations ?? 24, bareUnits });
  if (bareUnits === true) assert.notEqual(created.geometry.bareUnits, null, 'the pool has bare units');
  if (shape.prefill > 0) {
    const fill = created.alloc(shape.prefill, { name: 'fill' });
    initial.parent.set(fill.pfn, { pfn: fill.pfn, count: fill.count, name: 'fill', serial: 0 });
  }
  const geometry = created.geometry;
  created.close();
  const control = geometry.areas.control.offset;

  // The reference run: every store recorded, the model after every operation.
  const ref: Reference = { endOf: [], keys: [], models: [], points: [], stores: 0 };
  tracing = true;
  const tracer = execute(start, initial, shape, seed, null, (model, stores) => {
    trace(`  -> stores ${stores}`);
    ref.endOf.push(stores);
    ref.models.push(model);
    ref.keys.push(modelKey(model));
  });
  tracing = false;
  ref.points = crashPoints(tracer.stores!, true);
  ref.stores = tracer.count;

  // The unit allocator's summary words above level 0, as byte ranges of the region.
  const a = allocatorGeometry(geometry.unitCount);
  const upper: [number, number][] = [];
  for (let level = 1; level < a.levels; level++) {
    for (const offsets of [a.fullOffsets, a.partOffsets]) {
      const at = geometry.areas.unitBitmap.offset + 4 * offsets[level]!;
      upper.push([at, at + 4 * a.levelWords[level]!]);
    }
  }
  const upperStores = tracer.stores!.flatMap((st, i) => (st.root && upper.some(([from, to]) => st.at < to && st.at + st.length > from) ? [i + 1] : []));
  const upperSummaryStores = upperStores.length;
  // The bracketing allocation completes the leaf words under level-1 bit 0, in every scenario.
  if (shape.bracket !== undefined) assert.ok(upperSummaryStores >= 1, `seed ${seed}: no store reached the second summary level (replay: ${replay})`);
  if (shape.focusUpper) {
    // The operations (store ranges (endOf[op - 1], endOf[op]]) that hold such a store.
    const opOf = (k: number) => ref.endOf.findIndex((end) => end >= k);
    const ops = new Set(upperStores.map(opOf));
    ref.points = ref.points.filter((p) => ops.has(opOf(p.k)));
  }

  const result: SimResult = { crashPoints: 0, nestedPoints: 0, liveHolderChecks: 0, upperSummaryStores };
  const fail = (point: string, message: string): never => {
    assert.fail(`seed ${seed}, ${point}: ${message} (replay: ${replay})`);
  };
  // Which operation is in flight at store k: the first whose end count reaches k.
  let op = 0;
  let committedAt: string | null = null; // the first crash point of the current op showing its effect
  let interrupted = 0;
  let held = 0;
  let sinceTurn = 0;
  for (const point of ref.points) {
    if (++sinceTurn === POINTS_PER_TURN) {
      sinceTurn = 0;
      await nextTurn();
    }
    while (ref.endOf[op]! < point.k) {
      op++;
      committedAt = null;
    }
    const label = `${describePoint(point)} ${point.k}/${ref.stores} (operation ${op})`;
    const image = execute(start, initial, shape, seed, point).image;
    if (image === null) fail(label, 'the replay did not reach the crash point (the run is not deterministic)');
    // op 0 is the initial open: before it is the initial state too.
    const beforeModel = ref.models[Math.max(0, op - 1)]!;
    const beforeKey = ref.keys[Math.max(0, op - 1)]!;
    const afterKey = ref.keys[op]!;

    const lockHeld = new Uint32Array(image!.buffer, control, 1)[0] !== 0;
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

    const nested = hasIntent(image!, control) && interrupted++ % NESTED_EVERY === 0;
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

export function describePoint(p: CrashPoint): string {
  if (p.ahead !== undefined && p.mixed === true) return `power cut with each page written since the barrier after store ${p.ahead} as of some store of that epoch, and that of store`;
  if (p.ahead !== undefined) return `power cut with every page as of the barrier after store ${p.ahead} but that of store`;
  return `crash ${p.torn ? 'in the middle of' : 'after'} store`;
}

/** Whether the control area at `control` holds an intent (its op word, src/pool/control.ts). */
function hasIntent(image: MemoryRegion, control: number): boolean {
  return new Uint32Array(image.buffer, control + CONTROL_LAYOUT.INTENT_OP, 1)[0] !== 0;
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

/** Runs `count` scenarios of `shape` from the test seed; returns their totals. */
export async function simulateMany(t: { diagnostic: (message: string) => void }, shape: Shape, count: number, seedOffset = 0): Promise<SimResult> {
  const seed = (testSeed('PMPOOL_SIM_SEED') + seedOffset) >>> 0;
  const total: SimResult = { crashPoints: 0, nestedPoints: 0, liveHolderChecks: 0, upperSummaryStores: 0 };
  for (let i = 0; i < count; i++) {
    const s = (seed + i) >>> 0;
    const [variable, file] = shape === SMALL ? ['PMPOOL_SIM_SCENARIOS', 'pool-crash-sim'] : shape === CACHED ? ['PMPOOL_SIM_CACHED_SCENARIOS', 'pool-crash-sim-cached'] : ['PMPOOL_SIM_DEEP_SCENARIOS', 'pool-crash-sim-deep'];
    const replay = `PMPOOL_SIM_SEED=${(s - seedOffset) >>> 0} ${variable}=1 node --test dist/test/${file}.test.js`;
    let r: SimResult;
    try {
      r = await simulate(s, shape, replay);
    } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
      throw new Error(`seed ${s} (replay: ${replay}): ${String(e)}`, { cause: e });
    }
    t.diagnostic(`seed ${s}: ${r.crashPoints} crash points, ${r.nestedPoints} in recoveries, ${r.liveHolderChecks} live-holder checks, ${r.upperSummaryStores} stores to upper summary levels`);
    for (const k of Object.keys(total) as (keyof SimResult)[]) total[k] += r[k];
  }
  t.diagnostic(`total: ${total.crashPoints} crash points, ${total.nestedPoints} in recoveries, ${total.liveHolderChecks} live-holder checks, ${total.upperSummaryStores} stores to upper summary levels`);
  return total;
}


