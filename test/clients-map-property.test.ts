/**
 * A model-based property of the PersistentMap: random command sequences run
 * against a map and a plain JS Map, compared after every command — sets,
 * gets, has, deletes of keys and values of every kind the map takes (ASCII
 * and other text, astral included; byte arrays, empty ones included; "a" and
 * Uint8Array [0x61] kept apart), values of a few bytes, about the size that
 * gets a segment of its own (DEDICATED_MIN) and up to MAX_VALUE_BYTES; bulk
 * inserts and deletes that grow and shrink the table and make compaction
 * due; clear, compact, iteration; the writer closed and reopened, a reader
 * that must see exactly the model after each command, and the writer killed
 * (setMapFaultHook) at a random store of a command: reopened, each key holds
 * its value from before or after the interrupted command, and check() is
 * clean. Each run ends with the map checked, cleared and closed, the pool's
 * usage back to what it was with the empty map; then destroyed, the pool's
 * usage back to what it was before the map.
 *
 * The seed is printed (PMAP_PROPERTY_SEED replays it); fast-check prints the
 * shrunk command list of a failure, and its seed and path.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Pool } from '../src/index.js';
import { ClientError, PersistentMap, MAX_KEY_BYTES, MAX_VALUE_BYTES, type MapKey, type MapValue } from '../src/clients/index.js';
import { setMapFaultHook } from '../src/clients/persistent-map.js';
import { DEDICATED_MIN, REC_HEADER } from '../src/clients/map-layout.js';
import { shmPath } from './support/child.js';
import { memoryPool } from './support/expect.js';
import { testSeed } from './support/prng.js';

const MiB = 1024 * 1024;
const NAME = 'prop';

/* ---------------- keys and values ---------------- */

const encoder = new TextEncoder();

/** A key of the model: its kind and its bytes, so that "a" and Uint8Array [0x61] differ. */
function keyId(key: MapKey): string {
  return typeof key === 'string' ? `s${key}` : `b${Buffer.from(key.buffer, key.byteOffset, key.length).toString('latin1')}`;
}
const valueId = keyId;

function keyBytes(key: MapKey): number {
  return typeof key === 'string' ? Buffer.byteLength(key, 'utf8') : key.length;
}

function same(a: MapValue | undefined, b: MapValue | undefined): boolean {
  if (a === undefined || b === undefined || typeof a === 'string' || typeof b === 'string') return a === b;
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

function show(v: MapValue | MapKey | undefined): string {
  if (v === undefined) return 'undefined';
  const text = typeof v === 'string' ? JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v) : `bytes[${v.length}] ${Buffer.from(v.subarray(0, 16)).toString('hex')}`;
  return `${text} (${v.length})`;
}

const KEYS = 24;
const BIG_KEYS: MapKey[] = [
  'K'.repeat(DEDICATED_MIN - REC_HEADER - 8),
  'K'.repeat(DEDICATED_MIN - REC_HEADER + 8),
  new Uint8Array(300_000).fill(0x4b),
  '鍵'.repeat(MAX_KEY_BYTES / 3 - 1),
];

/** Keys: a few of each kind, drawn from small sets so that commands meet the keys earlier ones set. */
type KeyRef = MapKey | { big: number };
const keyArb: fc.Arbitrary<KeyRef> = fc.oneof(
  { arbitrary: fc.nat(KEYS - 1).map((n) => `k${n}`), weight: 6 },
  // The same bytes as the ASCII keys, as a Uint8Array: another key.
  { arbitrary: fc.nat(KEYS - 1).map((n) => encoder.encode(`k${n}`)), weight: 2 },
  { arbitrary: fc.constantFrom<MapKey>('', new Uint8Array(0), 'a', Uint8Array.of(0x61), 'ü🙂', '日本語', '\u{10ffff}', '\0', 'é', 'x'.repeat(70)), weight: 3 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 4 }), weight: 2 },
  { arbitrary: fc.uint8Array({ maxLength: 3, max: 3 }), weight: 2 },
  // A view into a larger buffer (byteOffset not 0).
  { arbitrary: fc.tuple(fc.uint8Array({ maxLength: 5 }), fc.nat(5)).map(([b, at]) => { const host = new Uint8Array(b.length + 11).fill(0xee); host.set(b, at); return host.subarray(at, at + b.length); }), weight: 1 },
  // Keys long enough to give their record a segment of its own by themselves, and the longest.
  // (Drawn by index, so that a counterexample prints as { big: i }, not a megabyte.)
  { arbitrary: fc.nat(BIG_KEYS.length - 1).map((big) => ({ big })), weight: 1 },
);

function keyOf(ref: KeyRef): MapKey {
  return typeof ref === 'string' || ref instanceof Uint8Array ? ref : BIG_KEYS[ref.big]!;
}

type ValueKind = 'ascii' | 'text' | 'bytes' | 'view';
/**
 * A value by its shape: `small` and `mid` are sizes; `edge` a record of DEDICATED_MIN + n bytes
 * (the largest that stays in a small segment is DEDICATED_MIN); `bound` a string of
 * (DEDICATED_MIN - header - key) / 3 + n units, where the set's three-bytes-a-unit bound of a
 * string crosses DEDICATED_MIN; `large` a size in bytes up to MAX_VALUE_BYTES.
 */
interface ValueSpec {
  kind: ValueKind;
  shape: 'small' | 'mid' | 'edge' | 'bound' | 'large';
  n: number;
  seed: number;
}

const valueArb: fc.Arbitrary<ValueSpec> = fc.record({
  kind: fc.constantFrom<ValueKind>('ascii', 'text', 'bytes', 'view'),
  shape: fc.constantFrom('small', 'small', 'small', 'small', 'small', 'small', 'small', 'small', 'mid', 'edge', 'bound', 'large'),
  n: fc.integer({ min: -24, max: 320 }),
  seed: fc.nat(9999),
});

/** A text of exactly `bytes` UTF-8 bytes, of two-, three- and four-byte characters (an astral one among them) and ASCII. */
function textOfBytes(bytes: number, seed: number): string {
  const prefix = `${seed}:`;
  if (bytes < prefix.length + 10) return 'é'.repeat(bytes >> 1) + 'z'.repeat(bytes & 1);
  const unit = ['aé日🙂', 'é日🙂a', '日🙂aé', '🙂aé日'][seed % 4]!; // 10 bytes
  const body = bytes - prefix.length;
  return prefix + unit.repeat(Math.floor(body / 10)) + 'z'.repeat(body % 10);
}

/** A text of exactly `units` UTF-16 units, mostly not ASCII. */
function textOfUnits(units: number, seed: number): string {
  const prefix = `${seed}:`.slice(0, units);
  const rest = units - prefix.length;
  const unit = 'é日🙂a'; // 5 units
  return prefix + unit.repeat(Math.floor(rest / 5)) + 'é'.repeat(rest % 5);
}

function asciiOf(n: number, seed: number): string {
  return `${seed}:`.padEnd(n, String.fromCharCode(97 + (seed % 26))).slice(0, n);
}

function bytesOf(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    x = (x ^ (x >>> 13)) * 1103515245 + 12345;
    out[i] = x & 0xff;
  }
  return out;
}

function makeValue(spec: ValueSpec, key: MapKey): MapValue {
  const { kind, seed } = spec;
  const n = Math.abs(spec.n);
  // Sizes in bytes (a text's UTF-8), except `bound`, which counts a string's units.
  let bytes: number;
  switch (spec.shape) {
    case 'small':
      bytes = n % 300;
      break;
    case 'mid':
      bytes = 1000 + n * 90;
      break;
    case 'edge':
      // (A key past DEDICATED_MIN by itself leaves no room: an empty value.)
      bytes = Math.max(0, DEDICATED_MIN - REC_HEADER - keyBytes(key) + (spec.n % 25));
      break;
    case 'bound': {
      const units = Math.max(0, Math.floor((DEDICATED_MIN - REC_HEADER - keyBytes(key)) / 3) + (spec.n % 4));
      if (kind === 'text') return textOfUnits(units, seed);
      bytes = units;
      break;
    }
    case 'large':
      bytes = Math.min(MAX_VALUE_BYTES, 300_000 + n * 5_600);
      break;
  }
  if (kind === 'ascii') return asciiOf(bytes, seed);
  if (kind === 'text') return textOfBytes(bytes, seed);
  if (kind === 'view') return bytesOf(bytes + 13, seed).subarray(5, 5 + bytes);
  return bytesOf(bytes, seed);
}

/* ---------------- commands ---------------- */

type How = 'keys' | 'values' | 'entries' | 'forEach' | 'spread';
/** A crash: the writer is stopped at the `crash`-th store (fault point) of the command, if it gets that far. */
type Crashable = { crash: number | null };
type Cmd =
  | ({ c: 'set'; key: KeyRef; value: ValueSpec } & Crashable)
  | ({ c: 'delete'; key: KeyRef } & Crashable)
  | { c: 'get'; key: KeyRef }
  | { c: 'has'; key: KeyRef }
  | ({ c: 'clear' } & Crashable)
  | ({ c: 'compact' } & Crashable)
  /** Sets `count` keys f<from>…: past 768 entries the table grows. */
  | ({ c: 'fill'; from: number; count: number; size: number } & Crashable)
  /** Deletes the model's keys but one in `keep` (starting at `phase`): the table shrinks at the next insert, segments empty, compaction comes due. */
  | ({ c: 'thin'; keep: number; phase: number } & Crashable)
  | { c: 'iterate'; how: How }
  /**
   * Walks the writer's or the reader's entries() while the writer changes the map at each step:
   * deletes or updates the entry just visited, deletes or updates another, or inserts one (which
   * may resize the table: the walk then throws CHANGED).
   */
  | { c: 'walk'; who: 'writer' | 'reader'; actions: WalkAction[] }
  | ({ c: 'reopen' } & Crashable)
  | { c: 'reader' }
  /** Another owner takes all the pool has free but `leave` pages: the map's next allocations may be refused (NO_SPACE). */
  | { c: 'squeeze'; leave: number }
  /** Another owner gives back `count` of the runs it took. */
  | { c: 'relax'; count: number };

type WalkAction = { a: 'none' | 'deleteVisited' | 'updateVisited' } | { a: 'delete' | 'update' | 'insert'; key: KeyRef };
const walkActionArb: fc.Arbitrary<WalkAction> = fc.oneof(
  fc.record({ a: fc.constantFrom('none' as const, 'deleteVisited' as const, 'updateVisited' as const) }),
  fc.record({ a: fc.constantFrom('delete' as const, 'update' as const, 'insert' as const), key: fc.oneof(keyArb, fc.nat(3000).map((n) => `f${n}`)) }),
);

const crashArb = (most: number): fc.Arbitrary<number | null> =>
  fc.oneof({ arbitrary: fc.constant(null), weight: 5 }, { arbitrary: fc.nat(most), weight: 1 });

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { arbitrary: fc.record({ c: fc.constant('set' as const), key: keyArb, value: valueArb, crash: crashArb(12) }), weight: 30 },
  { arbitrary: fc.record({ c: fc.constant('delete' as const), key: keyArb, crash: crashArb(8) }), weight: 10 },
  { arbitrary: fc.record({ c: fc.constant('get' as const), key: keyArb }), weight: 4 },
  { arbitrary: fc.record({ c: fc.constant('has' as const), key: keyArb }), weight: 3 },
  { arbitrary: fc.record({ c: fc.constant('clear' as const), crash: crashArb(12) }), weight: 1 },
  { arbitrary: fc.record({ c: fc.constant('compact' as const), crash: crashArb(60) }), weight: 2 },
  { arbitrary: fc.record({ c: fc.constant('fill' as const), from: fc.nat(2000), count: fc.integer({ min: 50, max: 1300 }), size: fc.nat(260), crash: crashArb(4000) }), weight: 4 },
  { arbitrary: fc.record({ c: fc.constant('thin' as const), keep: fc.integer({ min: 1, max: 24 }), phase: fc.nat(23), crash: crashArb(3000) }), weight: 3 },
  { arbitrary: fc.record({ c: fc.constant('iterate' as const), how: fc.constantFrom('keys' as const, 'values' as const, 'entries' as const, 'forEach' as const, 'spread' as const) }), weight: 3 },
  { arbitrary: fc.record({ c: fc.constant('walk' as const), who: fc.constantFrom('writer' as const, 'reader' as const), actions: fc.array(walkActionArb, { minLength: 1, maxLength: 12 }) }), weight: 2 },
  { arbitrary: fc.record({ c: fc.constant('reopen' as const), crash: crashArb(30) }), weight: 2 },
  { arbitrary: fc.record({ c: fc.constant('reader' as const) }), weight: 1 },
  { arbitrary: fc.record({ c: fc.constant('squeeze' as const), leave: fc.oneof(fc.nat(40), fc.nat(600)) }), weight: 1 },
  { arbitrary: fc.record({ c: fc.constant('relax' as const), count: fc.integer({ min: 1, max: 1000 }) }), weight: 1 },
);

function fillValue(i: number, size: number): MapValue {
  const n = (i * 37) % (size + 1);
  return i % 3 === 0 ? asciiOf(n, i) : i % 3 === 1 ? textOfBytes(n, i) : bytesOf(n, i);
}

/* ---------------- the run ---------------- */

class Crash extends Error {}

/** What the runs covered, summed: the property fails when a run never got there. */
const covered = { grew: 0, shrank: 0, moved: 0, crashes: 0, dedicated: 0, refused: 0 };

type Model = Map<string, { key: MapKey; value: MapValue }>;

/** One change a command makes: the keys it may leave changed, with their values before and after. */
interface Step {
  changes: { key: MapKey; before: MapValue | undefined; after: MapValue | undefined }[];
  /** A clear: all of the entries or none. */
  all: boolean;
}

class Run {
  map: PersistentMap;
  reader: PersistentMap;
  readonly model: Model = new Map();
  /** The pool's usage with the empty map, and before the map. */
  readonly baseline: number;
  readonly before: number;
  readonly log: string[] = [];
  /** Resizes so far (a table rebuilt and switched to, whatever its size). */
  tableSwitches = 0;
  /** Runs another owner holds (squeeze), to run the pool full. */
  readonly ballast: { pfn: number; count: number }[] = [];

  /** `readerPool`: the pool the reader opens the map in (another open of the writer's, or the same). */
  constructor(
    readonly pool: Pool,
    readonly readerPool: Pool,
  ) {
    this.before = pool.stats().used;
    this.map = PersistentMap.open(pool, NAME);
    this.baseline = pool.stats().used;
    this.reader = PersistentMap.open(readerPool, NAME, { readOnly: true });
  }

  where(): string {
    return this.log.slice(-6).join(' | ');
  }

  /** Every entry of the model and the keys `touched`, got from the writer and the reader; sizes equal. */
  compare(touched: MapKey[] = []): void {
    const where = this.where();
    assert.equal(this.map.size, this.model.size, `${where}: writer size`);
    assert.equal(this.reader.size, this.model.size, `${where}: reader size`);
    for (const key of touched) {
      const want = this.model.get(keyId(key))?.value;
      for (const [who, m] of [['writer', this.map], ['reader', this.reader]] as const) {
        const got = m.get(key);
        assert.ok(same(got, want), `${where}: ${who} get(${show(key)}) = ${show(got)}, the model has ${show(want)}`);
        assert.equal(m.has(key), want !== undefined, `${where}: ${who} has(${show(key)})`);
      }
    }
    for (const { key, value } of this.model.values()) {
      const got = this.map.get(key);
      assert.ok(same(got, value), `${where}: writer get(${show(key)}) = ${show(got)}, the model has ${show(value)}`);
      const seen = this.reader.get(key);
      assert.ok(same(seen, value), `${where}: reader get(${show(key)}) = ${show(seen)}, the model has ${show(value)}`);
    }
  }

  /** The map's entries as a sorted multiset, by each way of iterating. */
  iterated(m: PersistentMap, how: How): string[] {
    const out: string[] = [];
    if (how === 'keys') for (const k of m.keys()) out.push(keyId(k));
    else if (how === 'values') for (const v of m.values()) out.push(valueId(v));
    else if (how === 'entries') for (const [k, v] of m.entries()) out.push(`${keyId(k)}\u0001${valueId(v)}`);
    else if (how === 'forEach') m.forEach((v, k, self) => (assert.equal(self, m), out.push(`${keyId(k)}\u0001${valueId(v)}`)));
    else for (const [k, v] of [...m]) out.push(`${keyId(k)}\u0001${valueId(v)}`);
    return out.sort();
  }

  expectedIteration(how: How): string[] {
    const out: string[] = [];
    for (const [id, { value }] of this.model) out.push(how === 'keys' ? id : how === 'values' ? valueId(value) : `${id}\u0001${valueId(value)}`);
    return out.sort();
  }

  checkIteration(how: How): void {
    const want = this.expectedIteration(how);
    for (const [who, m] of [['writer', this.map], ['reader', this.reader]] as const) {
      const got = this.iterated(m, how);
      assert.equal(got.length, want.length, `${this.where()}: ${who} ${how}() visits ${got.length}, the model holds ${want.length}`);
      assert.ok(
        got.every((x, i) => x === want[i]),
        `${this.where()}: ${who} ${how}() differs from the model`,
      );
    }
  }

  checkClean(what: string): void {
    assert.deepEqual(this.map.check().problems, [], `${this.where()}: writer check() ${what}`);
    assert.equal(this.pool.stats().byOwner[`pmap:${NAME}`]?.pages ?? 0, this.map.stats().pages, `${this.where()}: pages of the map's owner vs pages the map uses ${what}`);
    assert.deepEqual(this.reader.stats(), this.map.stats(), `${this.where()}: the reader's stats() and the writer's ${what}`);
  }

  apply(cmd: Cmd): void {
    this.log.push(describeCmd(cmd));
    const slotsBefore = this.map.stats().tableSlots;
    const step: Step = { changes: [], all: false };
    const crash = 'crash' in cmd ? cmd.crash : null;
    let stores = 0;
    setMapFaultHook((point) => {
      if (point === 'compact:moved') covered.moved++;
      if (point === 'resize:switched') this.tableSwitches++;
      if (crash !== null && stores++ === crash) {
        throw new Crash(point);
      }
    });
    let crashed: string | null = null;
    let touched: MapKey[] = [];
    try {
      touched = this.run(cmd, step);
    } catch (e) {
      if (!(e instanceof Crash)) throw e;
      crashed = e.message;
    } finally {
      setMapFaultHook(null);
    }
    if (crashed !== null) {
      this.log.push(`crashed at ${crashed} (store ${crash})`);
      covered.crashes++;
      this.recover(step, cmd.c === 'reopen');
      return;
    }
    const slots = this.map.stats().tableSlots;
    if (slots > slotsBefore && slotsBefore > 0) covered.grew++;
    if (slots < slotsBefore && slots > 0) covered.shrank++;
    // After every command: every entry of the model, its size, and the keys it touched (present or
    // not), writer and reader; after each that is not a single key's, check() and stats() too.
    this.compare(touched);
    if (cmd.c !== 'set' && cmd.c !== 'delete' && cmd.c !== 'get' && cmd.c !== 'has') this.checkClean(`after ${cmd.c}`);
  }

  /** Runs one command against the map and the model; returns the keys to compare. */
  private run(cmd: Cmd, step: Step): MapKey[] {
    const { map, model } = this;
    const setOne = (key: MapKey, value: MapValue): void => {
      step.changes = [{ key, before: model.get(keyId(key))?.value, after: value }];
      try {
        assert.equal(map.set(key, value), map);
        model.set(keyId(key), { key, value });
      } catch (e) {
        // A full pool: refused, and the map unchanged (compared after the command).
        if (!(e instanceof ClientError && e.code === 'NO_SPACE')) throw e;
        covered.refused++;
      }
      step.changes = [];
    };
    const deleteOne = (key: MapKey): void => {
      const before = model.get(keyId(key))?.value;
      step.changes = [{ key, before, after: undefined }];
      assert.equal(map.delete(key), before !== undefined, `${this.where()}: delete(${show(key)})`);
      model.delete(keyId(key));
      step.changes = [];
    };
    switch (cmd.c) {
      case 'set': {
        const key = keyOf(cmd.key);
        const value = makeValue(cmd.value, key);
        if (keyBytes(key) + (typeof value === 'string' ? Buffer.byteLength(value) : value.length) + REC_HEADER > DEDICATED_MIN) covered.dedicated++;
        setOne(key, value);
        return [key];
      }
      case 'delete':
        deleteOne(keyOf(cmd.key));
        return [keyOf(cmd.key)];
      case 'get':
      case 'has':
        return [keyOf(cmd.key)];
      case 'clear':
        step.changes = [...model.values()].map(({ key, value }) => ({ key, before: value, after: undefined }));
        step.all = true;
        map.clear();
        model.clear();
        step.changes = [];
        return [];
      case 'compact':
        try {
          map.compact();
        } catch (e) {
          // A full pool refused the smaller table compact() rebuilds: the entries are what they were.
          if (!(e instanceof ClientError && e.code === 'NO_SPACE')) throw e;
          covered.refused++;
        }
        return [];
      case 'fill':
        for (let i = cmd.from; i < cmd.from + cmd.count; i++) setOne(`f${i}`, fillValue(i, cmd.size));
        return [];
      case 'thin': {
        let i = 0;
        for (const { key } of [...model.values()]) if (i++ % cmd.keep !== cmd.phase % cmd.keep) deleteOne(key);
        return [];
      }
      case 'iterate':
        this.checkIteration(cmd.how);
        return [];
      case 'walk':
        this.walk(cmd.who === 'writer' ? map : this.reader, cmd.actions, setOne, deleteOne);
        return [];
      case 'reopen':
        map.close();
        // A crash now is the next writer's open's (the stores of its recovery).
        this.map = PersistentMap.open(this.pool, NAME);
        return [];
      case 'reader':
        this.reader.close();
        this.reader = PersistentMap.open(this.readerPool, NAME, { readOnly: true });
        return [];
      case 'squeeze':
        for (let st = this.pool.stats(); st.free > cmd.leave; st = this.pool.stats()) {
          this.ballast.push(this.pool.alloc(Math.max(1, Math.min(st.largestFree, st.free - cmd.leave)), { owner: 'ballast' }));
        }
        return [];
      case 'relax':
        for (let pages = 0; pages < cmd.count && this.ballast.length > 0; ) {
          const run = this.ballast.pop()!;
          this.pool.release(run.pfn, run.count, { owner: 'ballast' });
          pages += run.count;
        }
        return [];
    }
  }

  /**
   * Iterates `m`'s entries, the writer changing the map after each one the walk visits (`actions`
   * in turn). As with a JS Map: each entry there from the start of the walk to its end is visited
   * once; an entry is visited with its value at that moment; nothing is visited that was never
   * there. A walk under a resize throws CHANGED (only an insert resizes: the walk's own, in this
   * process); one under a map emptied meanwhile ends.
   */
  private walk(m: PersistentMap, actions: WalkAction[], setOne: (key: MapKey, value: MapValue) => void, deleteOne: (key: MapKey) => void): void {
    const where = `${this.where()} (${m === this.map ? 'writer' : 'reader'} walk)`;
    const atStart = new Set(this.model.keys());
    const deleted = new Set<string>();
    const inserted = new Set<string>();
    const visited = new Map<string, number>();
    const switches = this.tableSwitches;
    let step = 0;
    try {
      for (const [key, value] of m.entries()) {
        const id = keyId(key);
        visited.set(id, (visited.get(id) ?? 0) + 1);
        assert.ok(atStart.has(id) || inserted.has(id), `${where}: visited ${show(key)}, which was never there`);
        const want = this.model.get(id)?.value;
        assert.ok(same(value, want), `${where}: visited ${show(key)} with ${show(value)}, the model has ${show(want)}`);
        const action = actions[step++ % actions.length]!;
        switch (action.a) {
          case 'none':
            break;
          case 'deleteVisited':
            deleteOne(key);
            deleted.add(id);
            break;
          case 'updateVisited':
            setOne(key, `updated ${step}`);
            break;
          default: {
            const other = keyOf(action.key);
            const otherId = keyId(other);
            const present = this.model.has(otherId);
            if (action.a === 'delete') {
              deleteOne(other);
              if (present) deleted.add(otherId);
            } else if (action.a === 'update') {
              // Only keys that are there (an update), and none deleted during the walk: a key
              // deleted and set again may be visited twice, as in a JS Map.
              if (present) setOne(other, `updated ${step}`);
            } else if (!present && !deleted.has(otherId)) {
              setOne(other, `inserted ${step}`);
              if (this.model.has(otherId)) inserted.add(otherId);
            }
          }
        }
      }
    } catch (e) {
      if (!(e instanceof ClientError && e.code === 'CHANGED')) throw e;
      // A table rebuilt: grown or shrunk, rebuilt at its size without tombstones, or put back by an
      // insert refused for its record (NO_SPACE) after the table was resized for it.
      assert.ok(this.tableSwitches > switches, `${where}: CHANGED, but the table was not rebuilt`);
      return;
    }
    for (const [id, n] of visited) assert.equal(n, 1, `${where}: ${JSON.stringify(id)} visited ${n} times`);
    for (const id of atStart) {
      if (!deleted.has(id)) assert.ok(visited.has(id), `${where}: ${JSON.stringify(id.slice(0, 40))}, there all along, was not visited`);
    }
  }

  /**
   * The writer was killed mid-command: the next writer opens the map (recovery), and each key the
   * command was changing holds its value from before or after it; every other entry is the model's.
   */
  private recover(step: Step, inOpen: boolean): void {
    if (!inOpen) this.map.abandon();
    this.map = PersistentMap.open(this.pool, NAME, { handover: null });
    const where = this.where();
    if (step.all) {
      // A clear: one switch, so all of the entries or none.
      const size = this.map.size;
      assert.ok(size === 0 || size === this.model.size, `${where}: ${size} entries after a clear crashed, ${this.model.size} before it`);
      if (size === 0) this.model.clear();
    } else {
      for (const { key, before, after } of step.changes) {
        const got = this.map.get(key);
        assert.ok(same(got, before) || same(got, after), `${where}: ${show(key)} holds ${show(got)}, neither ${show(before)} nor ${show(after)}`);
        if (got === undefined) this.model.delete(keyId(key));
        else this.model.set(keyId(key), { key, value: got });
      }
    }
    this.checkClean('after the crash');
    this.compare(step.changes.map((c) => c.key));
  }

  /** The end of a run: everything compared and checked, then the map emptied and closed: the pool as it was with the empty map. */
  finish(): void {
    for (const run of this.ballast.splice(0)) this.pool.release(run.pfn, run.count, { owner: 'ballast' });
    this.compare();
    this.checkIteration('entries');
    this.checkClean('at the end');
    assert.deepEqual(this.reader.check().problems, [], `${this.where()}: reader check() at the end`);
    this.map.clear();
    assert.equal(this.map.size, 0);
    assert.equal(this.reader.size, 0);
    assert.equal([...this.reader.keys()].length, 0);
    this.map.close();
    this.reader.close();
    assert.equal(this.pool.stats().used, this.baseline, `${this.where()}: the pool's usage after clear and close, against the empty map's`);
    assert.ok(this.pool.check().ok, 'pool check');
    // And destroy() gives the header back: the pool as it was before the map.
    PersistentMap.open(this.pool, NAME).destroy();
    assert.equal(this.pool.stats().used, this.before, `${this.where()}: the pool's usage after destroy, against before the map`);
  }
}

function describeCmd(cmd: Cmd): string {
  const crash = 'crash' in cmd && cmd.crash !== null ? ` crash@${cmd.crash}` : '';
  switch (cmd.c) {
    case 'set':
      return `set ${show(keyOf(cmd.key))} ${cmd.value.kind}/${cmd.value.shape}/${cmd.value.n}${crash}`;
    case 'delete':
    case 'get':
    case 'has':
      return `${cmd.c} ${show(keyOf(cmd.key))}${crash}`;
    case 'fill':
      return `fill f${cmd.from}+${cmd.count} ≤${cmd.size}${crash}`;
    case 'thin':
      return `thin keep 1/${cmd.keep}${crash}`;
    case 'iterate':
      return `iterate ${cmd.how}`;
    case 'walk':
      return `walk ${cmd.who} ${cmd.actions.map((x) => x.a + ('key' in x ? ` ${show(keyOf(x.key))}` : '')).join(',')}`;
    case 'squeeze':
      return `squeeze leave ${cmd.leave}`;
    case 'relax':
      return `relax ${cmd.count}`;
    default:
      return `${cmd.c}${crash}`;
  }
}

function runCommands(pool: Pool, cmds: Cmd[], readerPool = pool): void {
  setMapFaultHook(null);
  const run = new Run(pool, readerPool);
  try {
    for (const cmd of cmds) run.apply(cmd);
    run.finish();
  } finally {
    setMapFaultHook(null);
    if (!run.map.closed) run.map.abandon();
    run.reader.close();
  }
}

describe('PersistentMap against a JS Map model', () => {
  test('property: random commands, reopens and crashes at random stores keep the map equal to the model', () => {
    const seed = testSeed('PMAP_PROPERTY_SEED');
    fc.assert(
      fc.property(fc.array(cmdArb, { minLength: 1, maxLength: 80, size: 'max' }), (cmds) => {
        const pool = memoryPool(96 * MiB);
        try {
          runCommands(pool, cmds);
        } finally {
          pool.close();
        }
      }),
      { seed, numRuns: 60, includeErrorInReport: true },
    );
    assert.ok(covered.grew > 0 && covered.shrank > 0, `the table never grew or never shrank: ${JSON.stringify(covered)}`);
    assert.ok(covered.moved > 0, 'no compaction moved a record');
    assert.ok(covered.crashes > 20, `only ${covered.crashes} crashes`);
    assert.ok(covered.dedicated > 0, 'no record got a segment of its own');
    assert.ok(covered.refused > 0, 'the pool never ran full');
  });

  test('property: the same over a pool in /dev/shm, the reader in another open of it (as another process would have)', () => {
    const seed = testSeed('PMAP_PROPERTY_SHM_SEED');
    fc.assert(
      fc.property(fc.array(cmdArb, { minLength: 1, maxLength: 60, size: 'max' }), (cmds) => {
        const { path, cleanup } = shmPath('map-property');
        try {
          const pool = Pool.create(path, { size: 64 * MiB });
          try {
            const other = Pool.open(path);
            try {
              runCommands(pool, cmds, other);
            } finally {
              other.close();
            }
          } finally {
            pool.close();
          }
        } finally {
          cleanup();
        }
      }),
      { seed, numRuns: 12, includeErrorInReport: true },
    );
  });
});
