/**
 * The one narrow door through which every store to pool metadata passes.
 *
 * Keeping it narrow buys two things. A durable (file-backed) pool can order
 * its stores with `barrier()` — msync of what was written since the last
 * barrier — so that after a power cut the file holds a prefix of the
 * operation. And a crash simulation can log every store and stop the world
 * between any two of them (the TigerBeetle way: recovery proven, not hoped).
 */
import type { WordStore } from '../alloc/index.js';
import type { RegionWindow } from '../region/index.js';

/**
 * One logged store: `bytes` written at byte `offset` of the metadata window,
 * over `before` (what was there: a simulation tears a store with it); or a barrier.
 */
export type StoreRecord = { offset: number; bytes: Uint8Array; before: Uint8Array } | { barrier: true };

export interface StoreLog {
  records: StoreRecord[];
}

/**
 * The writer of a pool whose stores need nothing but the store: a pool on
 * /dev/shm or in memory, not traced. Every method is the store itself, small
 * enough (under V8's "small function" bytecode size) to be inlined at every
 * call site whatever the caller's inlining budget: an alloc + release pair
 * makes some forty metadata stores, and a call for each cost a tenth of the pair.
 * A pool that needs more — msync ranges of a file, or a log of every store —
 * gets a TracedMetaWriter, chosen when the pool is attached.
 */
export class MetaWriter {
  /** The metadata as u32 words; reads go straight to it. */
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly bytes: Uint8Array;

  constructor(readonly window: RegionWindow) {
    this.bytes = window.bytes();
    this.u32 = new Uint32Array(window.buffer, window.byteOffset, window.length >>> 2);
    this.i32 = new Int32Array(window.buffer, window.byteOffset, window.length >>> 2);
  }

  /**
   * The store log of a traced writer (the crash simulation's). This writer keeps none, and
   * cannot start: install a tracer before the pool is attached (parts.ts setAttachHook).
   */
  get log(): StoreLog | null {
    return null;
  }
  set log(_log: StoreLog | null) {
    throw new Error('this pool\'s writer is not traced: set the store log from an attach hook (setAttachHook), before the pool is attached');
  }

  /** Stores a u32 at a 4-aligned byte offset. A single aligned u32 store is atomic: commit points use it. */
  store32(offset: number, value: number): void {
    this.u32[offset >>> 2] = value;
  }

  /**
   * Stores a u64 as two u32s (low word first). Not atomic: guard it with a commit word. A u32
   * element keeps an integer modulo 2^32 and truncates a fraction, so for 0 <= value < 2^53 the
   * value itself is the low word and value / 2^32 the high one: no Math.floor, no masking.
   */
  store64(offset: number, value: number): void {
    this.u32[offset >>> 2] = value;
    this.u32[(offset >>> 2) + 1] = value / 0x100000000;
  }

  load64(offset: number): number {
    return this.u32[offset >>> 2]! + this.u32[(offset >>> 2) + 1]! * 0x100000000;
  }

  storeBytes(offset: number, data: Uint8Array): void {
    this.bytes.set(data, offset);
  }

  fill(offset: number, length: number, value = 0): void {
    this.bytes.fill(value, offset, offset + length);
  }

  /** Atomic compare-and-swap on a u32 word (the lock). */
  compareExchange(offset: number, expected: number, replacement: number): number {
    return Atomics.compareExchange(this.i32, offset >>> 2, expected | 0, replacement | 0) >>> 0;
  }

  /** Atomic store with release semantics (the unlock). */
  atomicStore(offset: number, value: number): void {
    Atomics.store(this.i32, offset >>> 2, value | 0);
  }

  atomicLoad(offset: number): number {
    return Atomics.load(this.i32, offset >>> 2) >>> 0;
  }

  /** Atomic OR into a u32 word; returns the word as it was (the bare-unit map's allocation). */
  atomicOr(offset: number, bits: number): number {
    return Atomics.or(this.i32, offset >>> 2, bits | 0) >>> 0;
  }

  /** Atomic AND into a u32 word; returns the word as it was (the bare-unit map's release). */
  atomicAnd(offset: number, bits: number): number {
    return Atomics.and(this.i32, offset >>> 2, bits | 0) >>> 0;
  }

  /**
   * Orders stores on a durable pool: everything written before the barrier
   * reaches the file before anything written after it. Nothing to do in
   * memory and on /dev/shm, where a process crash cannot reorder stores.
   */
  barrier(): void {}

  /** A WordStore for the allocator layer over `words` u32s at `offset`; its stores pass through here. */
  wordStore(offset: number, words: number): WordStore {
    return new AreaWordStore(this, offset >>> 2, words);
  }
}

/**
 * The writer of a durable (file-backed) pool, or of one being traced: each
 * store also notes the dirty range that the next barrier msyncs, and/or is
 * appended to the store log with the bytes it wrote over (a simulation
 * tears a store with them, and can stop the world between any two stores).
 */
export class TracedMetaWriter extends MetaWriter {
  private storeLog: StoreLog | null = null;
  private dirtyFrom = Infinity;
  private dirtyTo = 0;

  constructor(
    window: RegionWindow,
    private readonly durable: boolean,
  ) {
    super(window);
  }

  /** When set, every store and barrier is appended (crash simulation). */
  override get log(): StoreLog | null {
    return this.storeLog;
  }
  override set log(log: StoreLog | null) {
    this.storeLog = log;
  }

  override store32(offset: number, value: number): void {
    this.storeWords(offset, 4, value, 0);
  }

  override store64(offset: number, value: number): void {
    this.storeWords(offset, 8, value >>> 0, Math.floor(value / 0x100000000));
  }

  override storeBytes(offset: number, data: Uint8Array): void {
    const before = this.storeLog !== null ? this.bytes.slice(offset, offset + data.length) : null;
    this.bytes.set(data, offset);
    if (before !== null) this.logStore(offset, before);
    if (this.durable) this.dirty(offset, data.length);
  }

  override fill(offset: number, length: number, value = 0): void {
    const before = this.storeLog !== null ? this.bytes.slice(offset, offset + length) : null;
    this.bytes.fill(value, offset, offset + length);
    if (before !== null) this.logStore(offset, before);
    if (this.durable) this.dirty(offset, length);
  }

  /** Logged only when it succeeds. */
  override compareExchange(offset: number, expected: number, replacement: number): number {
    const seen = super.compareExchange(offset, expected, replacement);
    if (seen === expected >>> 0) {
      if (this.storeLog !== null) this.logStore(offset, u32Bytes(expected));
      if (this.durable) this.dirty(offset, 4);
    }
    return seen;
  }

  override atomicStore(offset: number, value: number): void {
    const before = this.storeLog !== null ? this.bytes.slice(offset, offset + 4) : null;
    super.atomicStore(offset, value);
    if (before !== null) this.logStore(offset, before);
    if (this.durable) this.dirty(offset, 4);
  }

  /** Logged only when it changes the word. */
  override atomicOr(offset: number, bits: number): number {
    const seen = super.atomicOr(offset, bits);
    if ((seen | bits) >>> 0 !== seen) this.loggedRmw(offset, seen);
    return seen;
  }

  /** Logged only when it changes the word. */
  override atomicAnd(offset: number, bits: number): number {
    const seen = super.atomicAnd(offset, bits);
    if ((seen & bits) >>> 0 !== seen) this.loggedRmw(offset, seen);
    return seen;
  }

  override barrier(): void {
    if (this.storeLog !== null) this.storeLog.records.push({ barrier: true });
    if (!this.durable || this.dirtyFrom === Infinity) return;
    this.window.flush(this.dirtyFrom, this.dirtyTo - this.dirtyFrom);
    this.dirtyFrom = Infinity;
    this.dirtyTo = 0;
  }

  /** One or two words, logged as one store. */
  private storeWords(offset: number, length: 4 | 8, lo: number, hi: number): void {
    const before = this.storeLog !== null ? this.bytes.slice(offset, offset + length) : null;
    this.u32[offset >>> 2] = lo;
    if (length === 8) this.u32[(offset >>> 2) + 1] = hi;
    if (before !== null) this.logStore(offset, before);
    if (this.durable) this.dirty(offset, length);
  }

  private loggedRmw(offset: number, before: number): void {
    if (this.storeLog !== null) this.logStore(offset, u32Bytes(before));
    if (this.durable) this.dirty(offset, 4);
  }

  private logStore(offset: number, before: Uint8Array): void {
    this.storeLog!.records.push({ offset, bytes: this.bytes.slice(offset, offset + before.length), before });
  }

  private dirty(offset: number, length: number): void {
    if (offset < this.dirtyFrom) this.dirtyFrom = offset;
    if (offset + length > this.dirtyTo) this.dirtyTo = offset + length;
  }
}

class AreaWordStore implements WordStore {
  constructor(
    private readonly writer: MetaWriter,
    private readonly base: number,
    readonly wordCount: number,
  ) {}
  load(index: number): number {
    return this.writer.u32[this.base + index]!;
  }
  store(index: number, value: number): void {
    this.writer.store32((this.base + index) << 2, value);
  }
}

function u32Bytes(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value >>> 0, true);
  return out;
}

/** Replays the first `count` logged stores onto a metadata byte array (crash simulation). */
export function replayStores(target: Uint8Array, records: readonly StoreRecord[], count: number): void {
  for (let i = 0; i < count; i++) {
    const r = records[i]!;
    if ('offset' in r) target.set(r.bytes, r.offset);
  }
}
