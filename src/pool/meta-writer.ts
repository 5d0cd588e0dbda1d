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

export class MetaWriter {
  /** The metadata as u32 words; reads go straight to it. */
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly bytes: Uint8Array;
  private storeLog: StoreLog | null = null;
  /**
   * True when a store has more to do than the store itself: log it, or note
   * the dirty range of a durable pool. The plain case (a pool on /dev/shm or
   * in memory, not traced) then costs one test per store, and the store
   * methods stay small enough for the compiler to inline into their callers.
   */
  private watched: boolean;
  private dirtyFrom = Infinity;
  private dirtyTo = 0;

  constructor(
    readonly window: RegionWindow,
    private readonly durable: boolean,
  ) {
    this.bytes = window.bytes();
    this.u32 = new Uint32Array(window.buffer, window.byteOffset, window.length >>> 2);
    this.i32 = new Int32Array(window.buffer, window.byteOffset, window.length >>> 2);
    this.watched = durable;
  }

  /** When set, every store and barrier is appended (crash simulation). */
  get log(): StoreLog | null {
    return this.storeLog;
  }
  set log(log: StoreLog | null) {
    this.storeLog = log;
    this.watched = log !== null || this.durable;
  }

  /** Stores a u32 at a 4-aligned byte offset. A single aligned u32 store is atomic: commit points use it. */
  store32(offset: number, value: number): void {
    if (this.watched) this.storeWatched(offset, 4, value, 0);
    else this.u32[offset >>> 2] = value;
  }

  /** Stores a u64 as two u32s (low word first). Not atomic: guard it with a commit word. */
  store64(offset: number, value: number): void {
    const lo = value >>> 0;
    const hi = Math.floor(value / 0x100000000);
    if (this.watched) {
      this.storeWatched(offset, 8, lo, hi);
      return;
    }
    this.u32[offset >>> 2] = lo;
    this.u32[(offset >>> 2) + 1] = hi;
  }

  load64(offset: number): number {
    return this.u32[offset >>> 2]! + this.u32[(offset >>> 2) + 1]! * 0x100000000;
  }

  storeBytes(offset: number, data: Uint8Array): void {
    const before = this.storeLog !== null ? this.bytes.slice(offset, offset + data.length) : null;
    this.bytes.set(data, offset);
    if (before !== null) this.logStore(offset, before);
    if (this.durable) this.dirty(offset, data.length);
  }

  fill(offset: number, length: number, value = 0): void {
    const before = this.storeLog !== null ? this.bytes.slice(offset, offset + length) : null;
    this.bytes.fill(value, offset, offset + length);
    if (before !== null) this.logStore(offset, before);
    if (this.durable) this.dirty(offset, length);
  }

  /** Atomic compare-and-swap on a u32 word (the lock). Logged only when it succeeds. */
  compareExchange(offset: number, expected: number, replacement: number): number {
    const seen = Atomics.compareExchange(this.i32, offset >>> 2, expected | 0, replacement | 0) >>> 0;
    if (this.storeLog !== null && seen === expected >>> 0) this.logStore(offset, u32Bytes(expected));
    return seen;
  }

  /** Atomic store with release semantics (the unlock). */
  atomicStore(offset: number, value: number): void {
    if (this.watched) {
      this.atomicStoreWatched(offset, value);
      return;
    }
    Atomics.store(this.i32, offset >>> 2, value | 0);
  }

  atomicLoad(offset: number): number {
    return Atomics.load(this.i32, offset >>> 2) >>> 0;
  }

  /**
   * Orders stores on a durable pool: everything written before the barrier
   * reaches the file before anything written after it. A no-op in memory and
   * on /dev/shm, where a process crash cannot reorder stores.
   */
  barrier(): void {
    if (!this.watched) return;
    if (this.storeLog !== null) this.storeLog.records.push({ barrier: true });
    if (!this.durable || this.dirtyFrom === Infinity) return;
    this.window.flush(this.dirtyFrom, this.dirtyTo - this.dirtyFrom);
    this.dirtyFrom = Infinity;
    this.dirtyTo = 0;
  }

  /** A WordStore for the allocator layer over `words` u32s at `offset`; its stores pass through here. */
  wordStore(offset: number, words: number): WordStore {
    return new AreaWordStore(this, offset >>> 2, words);
  }

  /** store32 / store64 when logging or on a durable pool: one or two words, logged as one store. */
  private storeWatched(offset: number, length: 4 | 8, lo: number, hi: number): void {
    const before = this.storeLog !== null ? this.bytes.slice(offset, offset + length) : null;
    this.u32[offset >>> 2] = lo;
    if (length === 8) this.u32[(offset >>> 2) + 1] = hi;
    if (before !== null) this.logStore(offset, before);
    if (this.durable) this.dirty(offset, length);
  }

  private atomicStoreWatched(offset: number, value: number): void {
    const before = this.storeLog !== null ? this.bytes.slice(offset, offset + 4) : null;
    Atomics.store(this.i32, offset >>> 2, value | 0);
    if (before !== null) this.logStore(offset, before);
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
