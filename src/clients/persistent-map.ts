/**
 * PersistentMap: a hash map that lives entirely in pool memory and survives
 * exec, handover and SIGKILL (docs/clients.md has the layout and the
 * atomicity argument in full).
 *
 *   header run  "<name>"      client header, writer lock, seqlock, counters,
 *                             two table descriptors, the segment table
 *   table run   "<name>/t<N>" open addressing, linear probing: per slot a
 *                             ref word (0 empty, 1 tombstone, else a record)
 *                             and the key's 32-bit hash
 *   segments    "<name>/s<K>" append-only slabs of records
 *                             [hash u32][key len|kind][value len|kind][key][value]
 *                             (the hash inverted once the record is dead)
 *
 * Every change is written where nothing points yet (the free tail of a
 * segment, a fresh run) and then published by one aligned 32-bit store: a
 * slot's ref word (set, delete), the active-descriptor word (resize, clear), a
 * segment-table word (new or freed segment). A process killed between any two
 * stores leaves each entry old or new; what it may leave behind (an unused
 * run, a stale counter) is found by name and owner and recomputed at the
 * next writer's open.
 *
 * This file holds the public API (the PersistentMap class and its types)
 * and the map's state: lookups, writes, segment management and compaction,
 * the reader's seqlock, open, handover, stats and check. The on-pool layout
 * is in map-layout.ts; word-level table and segment work in map-table.ts and
 * map-segments.ts; what compaction gathers before it moves records in
 * map-compaction.ts; what recovery works out at open in map-recovery.ts; the
 * fault hook, key scratch and copy slab in map-runtime.ts.
 */
import { randomNonZeroU31 } from '../util/random.js';
import { PmpoolError } from '../errors.js';
import type { Allocation, Fdt, Pool } from '../index.js';
import { checkClientName, findRoot, LOCK_INDEX, MUTABLE, newClientId, poolCall, readFixedHeader, TYPE_MAP, writeFixedHeader } from './client-header.js';
import { describe, hashWords, isWellFormed, KIND_ASCII, KIND_BYTES, LENGTH_MASK, readLatin1, readUtf8, tooLarge, writeUtf8 } from './codec.js';
import { ClientError } from './errors.js';
import { incomingHandoverFdt, readMapNode, verifyMapNode, writeMapNode, type MapHandoverInfo } from './map-handover.js';
import {
  align8,
  COMPACT_BELOW,
  DEDICATED_MIN,
  EMPTY,
  HDR_ACTIVE,
  HDR_CLEAN,
  HDR_COUNT,
  HDR_SEQ,
  HDR_TOMBS,
  HEADER_RUN_BYTES,
  MAX_KEY_BYTES,
  MAX_SEGMENTS,
  MAX_TABLE_LOG2,
  MAX_VALUE_BYTES,
  MIN_TABLE_LOG2,
  NO_BUF,
  NO_U32,
  NO_U8,
  REC_HEADER,
  recordBytes,
  SEG_FLAG_DEDICATED,
  SEG_HEADER,
  SEG_MAX_BYTES,
  SEG_W_FLAGS,
  SEG_W_LIVE,
  SEG_W_USED,
  SEGTAB,
  SEGTAB_BYTES,
  targetLog2,
  TOMB,
  u32View,
} from './map-layout.js';
import { gatherLive, gathered } from './map-compaction.js';
import { pickActive, recountTable, sortOwnedRuns, tableHasEntries } from './map-recovery.js';
import { copyOut, fault, scratch, Torn } from './map-runtime.js';
import { copyRecord, initSegmentHeader, markDead, recordStarts, segmentHeaderFault, segmentSize } from './map-segments.js';
import { readDescriptor, rehash, writeDescriptor, type TableDescriptor } from './map-table.js';
import { LOCK_WORDS, WriterLock } from './writer-lock.js';
import { bytesEqual } from '../util/bytes.js';

export { MAX_KEY_BYTES, MAX_VALUE_BYTES } from './map-layout.js';
export { setMapFaultHook } from './map-runtime.js';

export type MapKey = string | Uint8Array;
export type MapValue = string | Uint8Array;

export interface PersistentMapOptions {
  /** Open as a reader: no lock, consistent reads while one writer (in any process) writes. */
  readOnly?: boolean;
  /** Create the map when there is none (writers only). Default true. */
  create?: boolean;
  /**
   * The incoming handover tree to verify the map against. Default: the one the
   * kexec layer received, if any; `null` skips the check (crash-recovery open).
   */
  handover?: Fdt | null;
}

export interface PersistentMapStats {
  entries: number;
  tableSlots: number;
  tombstones: number;
  segments: number;
  /** Bytes of segment space in use (records written, live or not). */
  segmentBytes: number;
  /** Bytes of live records (headers, keys, values, padding). */
  liveBytes: number;
  garbageBytes: number;
  /** Pool pages the map holds: header, table and segments. */
  pages: number;
  /** Pool bytes per entry (pages × page size / entries), 0 when empty. */
  bytesPerEntry: number;
}

export interface MapCheckReport {
  ok: boolean;
  problems: string[];
}

/** Emptied segments a writer keeps for reuse. */
const MAX_SPARES = 1;

const enum State {
  Open,
  Closed,
}

export class PersistentMap {
  readonly pool: Pool;
  readonly name: string;
  readonly readOnly: boolean;
  private readonly owner: string;
  private readonly what: string;
  private readonly root: Allocation;
  private readonly hdr: Uint32Array;
  private readonly lock: WriterLock;
  private readonly pageSize: number;
  private state = State.Open;
  private mapId = 0;
  private seed = 0;

  /* the table */
  private slots: Uint32Array = NO_U32;
  private cap = 0;
  private mask = 0;
  private tableSeq = 0;
  private tablePfn = 0;
  private tableRun: Allocation | null = null;
  private activeDesc = 0;

  /* segments, by index */
  private readonly segU8: Uint8Array[] = new Array<Uint8Array>(MAX_SEGMENTS).fill(NO_U8);
  private readonly segU32: Uint32Array[] = new Array<Uint32Array>(MAX_SEGMENTS).fill(NO_U32);
  private readonly segBuf: Buffer[] = new Array<Buffer>(MAX_SEGMENTS).fill(NO_BUF);
  private readonly segRun: (Allocation | null)[] = new Array<Allocation | null>(MAX_SEGMENTS).fill(null);
  private readonly segCap: number[] = new Array<number>(MAX_SEGMENTS).fill(0);
  private readonly segUsed: number[] = new Array<number>(MAX_SEGMENTS).fill(0);
  private readonly segLive: number[] = new Array<number>(MAX_SEGMENTS).fill(0);
  private readonly segDedicated: boolean[] = new Array<boolean>(MAX_SEGMENTS).fill(false);
  private readonly segQueued: boolean[] = new Array<boolean>(MAX_SEGMENTS).fill(false);
  /** Writer: emptied small segments kept to become the next active ones (at most MAX_SPARES). */
  private readonly spares: number[] = [];
  private readonly loaded: Set<number> = new Set();
  private smallSegmentBytes = 0;
  private active = -1;
  private pending: number[] = [];
  private compacting = false;

  /* counters (exact in the writer) */
  private count = 0;
  private tombs = 0;
  private dirty = false;
  /** Reader: the seqlock value the cached table and segments belong to (-1: none). */
  private cachedSeq = -1;
  /** Reader: an odd seqlock value whose writer was found dead (-1: none). */
  private deadSeq = -1;

  private constructor(pool: Pool, name: string, root: Allocation, readOnly: boolean) {
    this.pool = pool;
    this.name = name;
    this.readOnly = readOnly;
    this.owner = `pmap:${name}`;
    this.what = `persistent map "${name}"`;
    this.root = root;
    this.pageSize = pool.pageSize;
    if (root.count * this.pageSize < HEADER_RUN_BYTES) {
      throw new ClientError('CORRUPT', `${this.what}: its header run has ${root.count} pages, fewer than a map header needs`);
    }
    this.hdr = u32View(root.bytes(0, HEADER_RUN_BYTES));
    this.lock = new WriterLock(this.hdr, LOCK_INDEX);
  }

  /**
   * Opens the map `name` in `pool`, creating it if there is none. A writer
   * (the default) takes the map's writer lock — one at a time; a dead
   * writer's lock is broken — and repairs what a crash left. With
   * `{ readOnly: true }` any number of readers, in any process, read
   * consistently while the writer writes.
   */
  static open(pool: Pool, name: string, options: PersistentMapOptions = {}): PersistentMap {
    checkClientName(name);
    const readOnly = options.readOnly === true;
    const what = `persistent map "${name}"`;
    const owner = `pmap:${name}`;
    let root = findRoot(pool, name, owner, what);
    let created = false;
    if (root === undefined) {
      if (readOnly || options.create === false) throw new ClientError('NOT_FOUND', `there is no ${what} in the pool`);
      try {
        // Zeroed before it commits: the run may hold what a released client left, and a header
        // read as garbage would be refused (or, after a crash mid-creation, never initialized).
        root = poolCall(() => pool.alloc(Math.ceil(HEADER_RUN_BYTES / pool.pageSize), { name, owner, zero: true }), what);
        created = true;
      } catch (e) {
        // Another process created it first.
        if (!(e instanceof PmpoolError && e.code === 'NAME_TAKEN')) throw e;
        root = findRoot(pool, name, owner, what);
        if (root === undefined) throw e;
      }
    }
    const map = new PersistentMap(pool, name, root, readOnly);
    try {
      if (readOnly) map.attachReader();
      else map.attachWriter(created, options);
    } catch (e) {
      map.lock.release();
      map.state = State.Closed;
      throw e;
    }
    return map;
  }

  /* ---------------- reading ---------------- */

  get size(): number {
    this.live();
    return this.readOnly ? Atomics.load(this.hdr, HDR_COUNT) : this.count;
  }

  get(key: MapKey): MapValue | undefined {
    this.live();
    const h = scratch.encodeKey(key, MAX_KEY_BYTES, this.seed);
    if (this.readOnly) return this.shared(() => this.getFound(h));
    return this.getFound(h);
  }

  has(key: MapKey): boolean {
    this.live();
    const h = scratch.encodeKey(key, MAX_KEY_BYTES, this.seed);
    if (this.readOnly) return this.shared(() => this.find(h) >= 0);
    return this.find(h) >= 0;
  }

  private getFound(h: number): MapValue | undefined {
    // The value of the record find() matched, not of whatever the slot holds now: a reader's
    // writer may delete the key in between (the slot becomes TOMB, with no seqlock change),
    // and the slot read again would send readValue to segment 0, offset 8.
    return this.find(h) < 0 ? undefined : this.readValue(this.foundRef);
  }

  /** The record find() last matched: a slot is read once per lookup. */
  private foundRef = EMPTY;

  /** The slot holding the key in the scratch, or -1 (its record's ref is left in foundRef). */
  private find(h: number): number {
    const slots = this.slots;
    const mask = this.mask;
    if (this.cap === 0) return -1;
    let i = h & mask;
    for (let n = 0; n < this.cap; n++) {
      const ref = slots[2 * i]!;
      if (ref === EMPTY) return -1;
      if (ref !== TOMB && slots[2 * i + 1] === h && this.keyEquals(ref)) {
        this.foundRef = ref;
        return i;
      }
      i = (i + 1) & mask;
    }
    return this.bad('the table has no empty slot');
  }

  /** Like find, but when the key is absent returns -(slot + 1) of where it would go. */
  private probe(h: number): number {
    const slots = this.slots;
    const mask = this.mask;
    let i = h & mask;
    let firstTomb = -1;
    for (let n = 0; n < this.cap; n++) {
      const ref = slots[2 * i]!;
      if (ref === EMPTY) return -((firstTomb >= 0 ? firstTomb : i) + 1);
      if (ref === TOMB) {
        if (firstTomb < 0) firstTomb = i;
      } else if (slots[2 * i + 1] === h && this.keyEquals(ref)) {
        return i;
      }
      i = (i + 1) & mask;
    }
    return this.bad('the table has no empty slot');
  }

  private keyEquals(ref: number): boolean {
    const k = ref >>> 19;
    let u32 = this.segU32[k]!;
    if (u32.length === 0) u32 = this.segment(k);
    const w = (ref & 0x7ffff) << 1;
    // Touch the record's second cache line now, so that its miss overlaps the first one's.
    if (w + 16 < u32.length) touched = u32[w + 16]!;
    const s = scratch;
    const n = s.length;
    if (u32[w + 1] !== ((n | s.kind) >>> 0)) return false;
    const base = w + 3;
    const full = n >>> 2;
    if (base + ((n + 3) >>> 2) > u32.length) return this.bad(`a record in segment ${k} runs past its end`);
    const su = s.u32;
    for (let i = 0; i < full; i++) if (u32[base + i] !== su[i]) return false;
    const rest = n & 3;
    if (rest !== 0) {
      const m = (1 << (rest * 8)) - 1;
      if (((u32[base + full]! ^ su[full]!) & m) !== 0) return false;
    }
    return true;
  }

  private readValue(ref: number): MapValue {
    const k = ref >>> 19;
    let u32 = this.segU32[k]!;
    if (u32.length === 0) u32 = this.segment(k);
    const off = (ref & 0x7ffff) << 3;
    const w = off >>> 2;
    const kl = u32[w + 1]! & LENGTH_MASK;
    const vi = u32[w + 2]!;
    const vl = vi & LENGTH_MASK;
    const start = off + REC_HEADER + kl;
    const end = start + vl;
    if (end > this.segCap[k]!) return this.bad(`the record at ${off} of segment ${k} is malformed`);
    if ((vi & KIND_BYTES) !== 0) return copyOut(this.segU8[k]!, start, vl);
    if ((vi & KIND_ASCII) !== 0) return readLatin1(this.segBuf[k]!, start, end);
    return readUtf8(this.segBuf[k]!, start, end);
  }

  private readKey(ref: number): MapKey {
    const k = ref >>> 19;
    let u32 = this.segU32[k]!;
    if (u32.length === 0) u32 = this.segment(k);
    const off = (ref & 0x7ffff) << 3;
    const ki = u32[(off >>> 2) + 1]!;
    const kl = ki & LENGTH_MASK;
    const start = off + REC_HEADER;
    if (start + kl > this.segCap[k]!) return this.bad(`the record at ${off} of segment ${k} is malformed`);
    if ((ki & KIND_BYTES) !== 0) return copyOut(this.segU8[k]!, start, kl);
    if ((ki & KIND_ASCII) !== 0) return readLatin1(this.segBuf[k]!, start, start + kl);
    return readUtf8(this.segBuf[k]!, start, start + kl);
  }

  /** The segment's word view, loading it (readers) or refusing (a writer has every segment loaded). */
  private segment(k: number): Uint32Array {
    if (!this.readOnly || k >= MAX_SEGMENTS) return this.bad(`a slot points into segment ${k}, which the map does not have`);
    this.loadSegment(k, true);
    const u32 = this.segU32[k]!;
    if (u32.length === 0) return this.bad(`segment ${k} is not published`);
    return u32;
  }

  private bad(message: string): never {
    if (this.readOnly) throw new Torn(message);
    throw new ClientError('CORRUPT', `${this.what}: ${message}`);
  }

  /* ---------------- iteration ---------------- */

  keys(): Generator<MapKey, void, unknown> {
    return this.walk((ref) => this.readKey(ref));
  }
  values(): Generator<MapValue, void, unknown> {
    return this.walk((ref) => this.readValue(ref));
  }
  entries(): Generator<[MapKey, MapValue], void, unknown> {
    return this.walk((ref): [MapKey, MapValue] => [this.readKey(ref), this.readValue(ref)]);
  }
  [Symbol.iterator](): Generator<[MapKey, MapValue], void, unknown> {
    return this.entries();
  }
  forEach(fn: (value: MapValue, key: MapKey, map: PersistentMap) => void): void {
    for (const [k, v] of this.entries()) fn(v, k, this);
  }

  /**
   * Visits the slots in table order. Entries may be deleted or updated
   * meanwhile; a resize (an insert that grows the table) makes the iterator
   * throw CHANGED — unless the map became empty, which simply ends it.
   */
  private *walk<T>(read: (ref: number) => T): Generator<T, void, unknown> {
    this.live();
    if (this.readOnly) this.fresh();
    const tableSeq = this.tableSeq;
    let i = 0;
    for (let retries = 0; ; ) {
      this.live();
      const s = this.readOnly ? this.fresh() : 0;
      if (this.tableSeq !== tableSeq) {
        if (this.size === 0) return;
        throw new ClientError('CHANGED', `${this.what} was resized during iteration`);
      }
      if (i >= this.cap) return;
      const ref = this.slots[2 * i]!;
      if (ref === EMPTY || ref === TOMB) {
        i++;
        continue;
      }
      let item: T;
      try {
        item = read(ref);
      } catch (e) {
        if (!(e instanceof Torn)) throw e;
        if (++retries > 100) throw new ClientError('CORRUPT', `${this.what}: ${e.message}`);
        this.cachedSeq = -1;
        continue;
      }
      if (this.readOnly && Atomics.load(this.hdr, HDR_SEQ) !== s) continue;
      retries = 0;
      i++;
      yield item;
    }
  }

  /* ---------------- writing ---------------- */

  /** Sets `key` to `value`: atomic — after a crash at any point the map holds the old value or the new one. */
  set(key: MapKey, value: MapValue): this {
    this.writable();
    const s = scratch;
    const h = s.encodeKey(key, MAX_KEY_BYTES, this.seed);
    const klen = s.length;
    const kinfo = (klen | s.kind) >>> 0;
    let vkind: number;
    let vmax: number;
    if (typeof value === 'string') {
      vkind = 0;
      const n = value.length;
      if (n > MAX_VALUE_BYTES) tooLarge('value', n, MAX_VALUE_BYTES);
      if (!isWellFormed(value)) throw new ClientError('BAD_VALUE', 'the value string holds a lone surrogate; it would not read back as the same string');
      vmax = n * 3;
      if (vmax > MAX_VALUE_BYTES) {
        vmax = Buffer.byteLength(value, 'utf8');
        if (vmax > MAX_VALUE_BYTES) tooLarge('value', vmax, MAX_VALUE_BYTES);
      }
    } else if (value instanceof Uint8Array) {
      vkind = KIND_BYTES;
      vmax = value.length;
      if (vmax > MAX_VALUE_BYTES) tooLarge('value', vmax, MAX_VALUE_BYTES);
    } else {
      throw new ClientError('BAD_VALUE', `a value must be a string or a Uint8Array, got ${describe(value)}`);
    }
    // Whether an insert would resize the table; if not, the record is written before the probe,
    // while the key's slot is on its way from memory (a resize must come first: it may refuse).
    const n = this.count + 1;
    const mayResize = (n + this.tombs) * 4 > this.cap * 3 || (this.cap > 2 ** MIN_TABLE_LOG2 && n * 16 < this.cap);
    let pos = 0;
    if (mayResize) {
      pos = this.cap === 0 ? -1 : this.probe(h);
      if (pos < 0) {
        this.resize(targetLog2(n));
        pos = this.probe(h);
      }
    } else {
      touched = this.slots[2 * (h & this.mask)]!;
    }
    // Write the record where nothing points yet.
    const k = this.reserve(align8(REC_HEADER + klen + vmax));
    const u8 = this.segU8[k]!;
    const u32 = this.segU32[k]!;
    const off = this.segUsed[k]!;
    const w = off >>> 2;
    u32[w] = h;
    u32[w + 1] = kinfo;
    const su = s.u32;
    for (let i = 0, n = (klen + 3) >>> 2; i < n; i++) u32[w + 3 + i] = su[i]!;
    const vstart = off + REC_HEADER + klen;
    let vlen: number;
    if (vkind === 0) {
      vlen = vmax === 0 ? 0 : writeUtf8(this.segBuf[k]!, value as string, vstart, vmax);
      // As many bytes as UTF-16 units: all ASCII, which reads back as Latin-1 without a UTF-8 decode.
      if (vlen === (value as string).length) vkind = KIND_ASCII;
    } else {
      u8.set(value as Uint8Array, vstart);
      vlen = vmax;
    }
    u32[w + 2] = (vlen | vkind) >>> 0;
    const total = align8(REC_HEADER + klen + vlen);
    fault('set:record-written');
    Atomics.store(u32, SEG_W_USED, off + total);
    this.segUsed[k] = off + total;
    fault('set:bumped');
    if (!mayResize) pos = this.probe(h);
    // Publish: one aligned store.
    const ref = ((k << 19) | (off >>> 3)) >>> 0;
    const slots = this.slots;
    if (pos >= 0) {
      const old = slots[2 * pos]!;
      Atomics.store(slots, 2 * pos, ref);
      fault('set:committed');
      this.segLive[k] += total;
      this.dropRecord(old);
    } else {
      const p = -pos - 1;
      if (slots[2 * p] === TOMB) this.tombs--;
      slots[2 * p + 1] = h;
      Atomics.store(slots, 2 * p, ref);
      fault('set:committed');
      this.segLive[k] += total;
      this.count++;
      Atomics.store(this.hdr, HDR_COUNT, this.count);
    }
    if (this.pending.length > 0) this.compactPending();
    return this;
  }

  /** Deletes `key`; true when it was there. Atomic like set. */
  delete(key: MapKey): boolean {
    this.writable();
    const h = scratch.encodeKey(key, MAX_KEY_BYTES, this.seed);
    const i = this.find(h);
    if (i < 0) return false;
    const old = this.slots[2 * i]!;
    Atomics.store(this.slots, 2 * i, TOMB);
    fault('delete:committed');
    this.count--;
    this.tombs++;
    Atomics.store(this.hdr, HDR_COUNT, this.count);
    if (this.count === 0) {
      this.resetToEmpty();
      return true;
    }
    this.dropRecord(old);
    if (this.pending.length > 0) this.compactPending();
    return true;
  }

  /** Removes every entry (one atomic switch to an empty table) and gives all the map's runs but its header back to the pool. */
  clear(): void {
    this.writable();
    this.resetToEmpty();
  }

  /** Reclaims all garbage now: every segment with superseded records is compacted, and an oversized table shrunk. */
  compact(): void {
    this.writable();
    if (this.count === 0) {
      this.resetToEmpty();
      return;
    }
    for (let k = 0; k < MAX_SEGMENTS; k++) {
      if (this.segRun[k] !== null && !this.segDedicated[k] && this.segLive[k]! < this.segUsed[k]! - SEG_HEADER) this.queue(k);
    }
    if (this.active >= 0) this.queue(this.active);
    this.active = -1;
    this.compactPending(true);
    while (this.spares.length > 0) this.freeSegment(this.spares[this.spares.length - 1]!);
    if (this.cap > 2 ** targetLog2(this.count) || this.tombs > 0) this.resize(targetLog2(this.count));
  }

  /* ---------------- segments ---------------- */

  /** A segment with `bytes` free at its bump pointer. Throws NO_SPACE before anything changes. */
  private reserve(bytes: number): number {
    if (bytes > DEDICATED_MIN) return this.newSegment(bytes, true);
    const a = this.active;
    if (a >= 0 && this.segUsed[a]! + bytes <= this.segCap[a]!) return a;
    const s = this.spares.length > 0 ? this.spares[this.spares.length - 1]! : -1;
    const k = s >= 0 && SEG_HEADER + bytes <= this.segCap[s]! ? this.recycle(s) : this.newSegment(bytes, false);
    this.active = k;
    if (a >= 0) this.retire(a);
    return k;
  }

  /** The active segment is full: it becomes a compaction candidate like any other. */
  private retire(k: number): void {
    if (this.segLive[k] === 0) this.emptied(k);
    else if (this.sparse(k)) this.queue(k);
  }

  /**
   * Segment k holds no live record. A small one as large as the active
   * segment is kept as the spare (at most one): the next segment the map
   * needs reuses its pages, already mapped and touched, instead of taking
   * fresh ones from the pool. Any other is freed.
   */
  private emptied(k: number): void {
    if (this.spares.length < MAX_SPARES && this.canKeep(k)) this.spares.push(k);
    else this.freeSegment(k);
  }

  private canKeep(k: number): boolean {
    const a = this.active;
    return k !== a && !this.segDedicated[k] && (a < 0 || this.segCap[k]! >= this.segCap[a]!);
  }

  /**
   * Empties the spare for appending: its bump pointer goes back to the
   * header (one store, inside a seqlock write section: a reader may still be
   * reading a record there that it found before the record moved).
   */
  private recycle(k: number): number {
    this.spares.pop();
    this.seqBegin();
    try {
      Atomics.store(this.segU32[k]!, SEG_W_USED, SEG_HEADER);
      fault('segment:recycled');
      this.segUsed[k] = SEG_HEADER;
    } finally {
      this.seqEnd();
    }
    return k;
  }

  private newSegment(bytes: number, dedicated: boolean): number {
    let k = -1;
    for (let i = 0; i < MAX_SEGMENTS; i++) {
      if (this.segRun[i] === null) {
        k = i;
        break;
      }
    }
    if (k < 0) throw new ClientError('NO_SPACE', `${this.what} has all its ${MAX_SEGMENTS} segments in use; nothing changed`);
    const size = segmentSize(bytes, dedicated, this.smallSegmentBytes);
    const least = Math.ceil((SEG_HEADER + bytes) / this.pageSize);
    let pages = Math.ceil(size / this.pageSize);
    let run: Allocation;
    for (;;) {
      try {
        run = poolCall(() => this.pool.alloc(pages, { name: `${this.name}/s${k}`, owner: this.owner }), `${this.what}: a new segment of ${pages} pages`);
        break;
      } catch (e) {
        if (!(e instanceof ClientError && e.code === 'NO_SPACE')) throw e;
        // The pool is full: the spare goes back first.
        if (this.spares.length > 0) {
          this.freeSegment(this.spares[this.spares.length - 1]!);
          continue;
        }
        // A full or fragmented pool may still have room for a smaller segment: that is how compaction gets going again.
        if (pages <= least) throw e;
        pages = Math.max(least, Math.floor(pages / 2));
      }
    }
    fault('segment:allocated');
    if (run.pfn >= 2 ** 32) throw new ClientError('NO_SPACE', `${this.what}: a segment at pfn ${run.pfn} is beyond what a map can address`);
    const u32 = u32View(run.bytes(0, Math.min(run.count * this.pageSize, SEG_MAX_BYTES)));
    initSegmentHeader(u32, this.mapId, k, run.count, dedicated);
    this.hdr[SEGTAB + 2 * k + 1] = run.count;
    Atomics.store(this.hdr, SEGTAB + 2 * k, run.pfn);
    fault('segment:published');
    this.adopt(k, run, dedicated);
    return k;
  }

  private adopt(k: number, run: Allocation, dedicated: boolean): void {
    const u8 = run.bytes(0, Math.min(run.count * this.pageSize, SEG_MAX_BYTES));
    this.segU8[k] = u8;
    this.segU32[k] = u32View(u8);
    this.segBuf[k] = Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
    this.segRun[k] = run;
    this.segCap[k] = u8.byteLength;
    this.segUsed[k] = this.segU32[k]![SEG_W_USED]!;
    this.segLive[k] = 0;
    this.segDedicated[k] = dedicated;
    this.loaded.add(k);
    if (!dedicated) this.smallSegmentBytes += u8.byteLength;
  }

  private forget(k: number): void {
    if (!this.segDedicated[k]) this.smallSegmentBytes -= this.segCap[k]!;
    this.segU8[k] = NO_U8;
    this.segU32[k] = NO_U32;
    this.segBuf[k] = NO_BUF;
    this.segRun[k] = null;
    this.segCap[k] = 0;
    this.segUsed[k] = 0;
    this.segLive[k] = 0;
    this.segDedicated[k] = false;
    this.segQueued[k] = false;
    this.loaded.delete(k);
    if (this.active === k) this.active = -1;
    const spare = this.spares.indexOf(k);
    if (spare >= 0) this.spares.splice(spare, 1);
  }

  /** Unpublishes segment k and gives its run back (inside a seqlock write section). */
  private dropSegment(k: number): void {
    const run = this.segRun[k]!;
    Atomics.store(this.hdr, SEGTAB + 2 * k, 0);
    this.hdr[SEGTAB + 2 * k + 1] = 0;
    fault('segment:unpublished');
    this.forget(k);
    poolCall(() => this.pool.release(run.pfn, run.count, { owner: this.owner }), `${this.what}: releasing segment ${k}`);
  }

  private freeSegment(k: number): void {
    this.seqBegin();
    try {
      this.dropSegment(k);
    } finally {
      this.seqEnd();
    }
  }

  /** A superseded or deleted record: account it as garbage; free or queue its segment. */
  private dropRecord(ref: number): void {
    const k = ref >>> 19;
    const u32 = this.segU32[k]!;
    const w = (ref & 0x7ffff) << 1;
    const total = recordBytes(u32[w + 1]!, u32[w + 2]!);
    this.segLive[k] -= total;
    markDead(u32, w);
    if (k === this.active) return;
    if (this.segLive[k] === 0) this.emptied(k);
    else if (this.sparse(k)) this.queue(k);
  }

  /** A small segment whose live records are less than 1/COMPACT_BELOW of what it holds: worth compacting. */
  private sparse(k: number): boolean {
    return !this.segDedicated[k] && this.segLive[k]! * COMPACT_BELOW < this.segUsed[k]! - SEG_HEADER;
  }

  private queue(k: number): void {
    if (this.segQueued[k]) return;
    this.segQueued[k] = true;
    this.pending.push(k);
  }

  private compactPending(all = false): void {
    if (this.compacting) return;
    this.compacting = true;
    try {
      while (this.pending.length > 0) {
        const k = this.pending.pop()!;
        this.segQueued[k] = false;
        if (this.segRun[k] === null || k === this.active) continue;
        if (this.segLive[k] === 0) {
          if (all) this.freeSegment(k);
          else this.emptied(k);
        } else if (all || this.sparse(k)) {
          this.compactSegment(k);
        }
      }
    } catch (e) {
      // Compaction runs after the operation committed: a full pool only postpones it.
      if (!(e instanceof ClientError && e.code === 'NO_SPACE')) throw e;
      for (const k of this.pending) this.segQueued[k] = false;
      this.pending = [];
    } finally {
      this.compacting = false;
    }
  }

  /**
   * Moves the live records of segment k to the active one, each published by
   * one store of its slot (old and new copies are identical: a crash between
   * moves leaves every entry readable), then frees k.
   */
  private compactSegment(k: number): void {
    const from = this.segU32[k]!;
    const fromU8 = this.segU8[k]!;
    const used = this.segUsed[k]!;
    const slots = this.slots;
    const g = gathered;
    const group = g.offsets;
    const groupSizes = g.sizes;
    const groupSlots = g.slots;
    for (let off = SEG_HEADER; off < used; off = g.next) {
      if (!gatherLive(from, k, off, used, slots, this.cap, this.mask, this.seed)) {
        throw new ClientError('CORRUPT', `${this.what}: segment ${k} has a malformed record at ${g.next}`);
      }
      const live = g.live;
      // Copy them past the active segment's bump pointer, move it over them with one store, then
      // publish each with one store of its slot (as many as fit; the rest in the next segment).
      for (let c = 0; c < live; ) {
        const a = this.reserve(groupSizes[c]!);
        const toU8 = this.segU8[a]!;
        const toU32 = this.segU32[a]!;
        const start = this.segUsed[a]!;
        const room = this.segCap[a]!;
        let end = start;
        let last = c;
        for (; last < live; last++) {
          const total = groupSizes[last]!;
          if (end + total > room) break;
          copyRecord(fromU8, from, group[last]!, toU8, toU32, end, total);
          end += total;
        }
        fault('compact:copied');
        Atomics.store(toU32, SEG_W_USED, end);
        this.segUsed[a] = end;
        for (let to = start; c < last; c++) {
          Atomics.store(slots, 2 * groupSlots[c]!, ((a << 19) | (to >>> 3)) >>> 0);
          fault('compact:moved');
          const total = groupSizes[c]!;
          this.segLive[a] += total;
          this.segLive[k] -= total;
          to += total;
        }
      }
    }
    if (this.segLive[k] !== 0) throw new ClientError('CORRUPT', `${this.what}: segment ${k} still counts ${this.segLive[k]} live bytes after compaction`);
    this.emptied(k);
  }

  /* ---------------- the table ---------------- */

  private descriptor(d: number): TableDescriptor {
    return readDescriptor(this.hdr, d, this.mapId);
  }

  private writeDescriptor(d: number, pfn: number, log2: number, seq: number): void {
    writeDescriptor(this.hdr, d, pfn, log2, seq, this.mapId);
  }

  /** Rebuilds the table with 2^log2 slots in a fresh run and switches to it with one store. */
  private resize(log2: number): void {
    if (log2 > MAX_TABLE_LOG2) throw new ClientError('NO_SPACE', `${this.what} cannot grow past 2^${MAX_TABLE_LOG2} slots`);
    const cap = 2 ** log2;
    const seq = (this.tableSeq + 1) >>> 0;
    const pages = Math.ceil((cap * 8) / this.pageSize);
    const run = poolCall(() => this.pool.alloc(pages, { name: `${this.name}/t${seq}`, owner: this.owner }), `${this.what}: a table of ${pages} pages`);
    const d = 1 - this.activeDesc;
    let slots: Uint32Array;
    try {
      fault('resize:allocated');
      if (run.pfn >= 2 ** 32) throw new ClientError('NO_SPACE', `${this.what}: a table at pfn ${run.pfn} is beyond what a map can address`);
      slots = u32View(run.bytes(0, cap * 8));
      slots.fill(0);
      if (!rehash(this.slots, this.cap, slots, cap - 1)) throw new ClientError('CORRUPT', `${this.what}: its table holds more than the ${this.count} entries it counts`);
      this.writeDescriptor(d, run.pfn, log2, seq);
      fault('resize:built');
    } catch (e) {
      if (e instanceof PmpoolError) this.pool.release(run.pfn, run.count, { owner: this.owner });
      throw e;
    }
    const old = this.tableRun;
    this.seqBegin();
    try {
      Atomics.store(this.hdr, HDR_ACTIVE, d);
      fault('resize:switched');
      this.activeDesc = d;
      this.setTable(slots, log2, seq, run);
      this.tombs = 0;
      if (old !== null) poolCall(() => this.pool.release(old.pfn, old.count, { owner: this.owner }), `${this.what}: releasing the old table`);
    } finally {
      this.seqEnd();
    }
  }

  private setTable(slots: Uint32Array, log2: number, seq: number, run: Allocation | null): void {
    this.slots = slots;
    this.cap = run === null ? 0 : 2 ** log2;
    this.mask = this.cap === 0 ? 0 : this.cap - 1;
    this.tableSeq = seq;
    this.tableRun = run;
    this.tablePfn = run === null ? 0 : run.pfn;
  }

  /** Switches to the empty map with one store, then gives the table and every segment back. */
  private resetToEmpty(): void {
    if (this.tableRun === null && this.loaded.size === 0) return;
    const d = 1 - this.activeDesc;
    const seq = (this.tableSeq + 1) >>> 0;
    this.writeDescriptor(d, 0, 0, seq);
    const old = this.tableRun;
    this.seqBegin();
    try {
      Atomics.store(this.hdr, HDR_ACTIVE, d);
      fault('clear:switched');
      this.activeDesc = d;
      this.setTable(NO_U32, 0, seq, null);
      this.count = 0;
      this.tombs = 0;
      Atomics.store(this.hdr, HDR_COUNT, 0);
      this.pending = [];
      for (const k of [...this.loaded]) this.dropSegment(k);
      if (old !== null) poolCall(() => this.pool.release(old.pfn, old.count, { owner: this.owner }), `${this.what}: releasing the old table`);
    } finally {
      this.seqEnd();
    }
  }

  /* ---------------- seqlock ---------------- */

  private seqBegin(): void {
    Atomics.add(this.hdr, HDR_SEQ, 1);
  }
  private seqEnd(): void {
    Atomics.add(this.hdr, HDR_SEQ, 1);
  }

  /** Reader: runs a lookup until it completes with the seqlock unchanged. */
  private shared<T>(fn: () => T): T {
    for (let retries = 0; ; retries++) {
      const s = this.fresh();
      try {
        const v = fn();
        if (Atomics.load(this.hdr, HDR_SEQ) === s) return v;
      } catch (e) {
        if (!(e instanceof Torn)) throw e;
        if (retries > 100) throw new ClientError('CORRUPT', `${this.what}: ${e.message}`);
        this.cachedSeq = -1;
      }
    }
  }

  /** Reader: waits for an even seqlock (or a dead writer) and makes the cached table and segments current. */
  private fresh(): number {
    let since = 0;
    let failedSeq = -1;
    let failures = 0;
    for (let spins = 0; ; spins++) {
      const s = Atomics.load(this.hdr, HDR_SEQ);
      // A writer found dead inside a write section is not waited for again at every lookup or
      // iteration step: the seqlock stays at that odd value until the next writer's open.
      if ((s & 1) === 0 || s === this.deadSeq || (spins > 200 && !this.lock.writerAlive())) {
        if ((s & 1) !== 0) this.deadSeq = s;
        if (s === this.cachedSeq) return s;
        if (this.reload(s)) return s;
        // A failed reload under a moving seqlock is a race; under a still one, damage.
        failures = s === failedSeq ? failures + 1 : 1;
        failedSeq = s;
        if (failures > 100) throw new ClientError('CORRUPT', `${this.what}: its table descriptor or table does not verify`);
      } else if (spins > 20) {
        // The writer is releasing memory (for a few microseconds, normally): wait, but not for ever
        // (by a monotonic clock: the wall clock may be set back meanwhile).
        if (since === 0) since = performance.now();
        else if (performance.now() - since > READER_WAIT_MS) throw new ClientError('BUSY', `${this.what}: the writer has been restructuring the map for ${READER_WAIT_MS} ms (stopped?)`);
        Atomics.wait(sleepCell, 0, 0, 1);
      }
    }
  }

  private reload(s: number): boolean {
    const d = Atomics.load(this.hdr, HDR_ACTIVE) & 1;
    const desc = this.descriptor(d);
    if (!desc.ok) return false;
    if (desc.pfn === 0) {
      this.setTable(NO_U32, 0, desc.seq, null);
    } else if (desc.pfn !== this.tablePfn || desc.seq !== this.tableSeq) {
      const run = poolCall(() => this.pool.find(`${this.name}/t${desc.seq}`), this.what);
      if (run === undefined || run.pfn !== desc.pfn || run.count * this.pageSize < 2 ** desc.log2 * 8) return false;
      this.setTable(u32View(run.bytes(0, 2 ** desc.log2 * 8)), desc.log2, desc.seq, run);
    }
    for (const k of [...this.loaded]) {
      const run = this.segRun[k]!;
      if (Atomics.load(this.hdr, SEGTAB + 2 * k) !== run.pfn || this.hdr[SEGTAB + 2 * k + 1] !== run.count) this.forget(k);
    }
    this.activeDesc = d;
    this.cachedSeq = s;
    return true;
  }

  /** Maps segment k from the segment table (reader: lazily; writer: at open). Throws or leaves it unloaded when invalid. */
  private loadSegment(k: number, lenient: boolean): void {
    const pfn = Atomics.load(this.hdr, SEGTAB + 2 * k);
    const pages = this.hdr[SEGTAB + 2 * k + 1]!;
    const fail = (why: string): void => {
      if (lenient) return;
      throw new ClientError('CORRUPT', `${this.what}: segment ${k} ${why}`);
    };
    if (pfn === 0) return fail('is not published');
    const run = poolCall(() => this.pool.find(`${this.name}/s${k}`), this.what);
    if (run === undefined || run.pfn !== pfn || run.count !== pages || run.owner !== this.owner) return fail(`(pfn ${pfn}) is not the pool allocation "${this.name}/s${k}"`);
    const u32 = u32View(run.bytes(0, Math.min(run.count * this.pageSize, SEG_MAX_BYTES)));
    const why = segmentHeaderFault(u32, this.mapId, k, pages);
    if (why !== null) return fail(why);
    this.adopt(k, run, (u32[SEG_W_FLAGS]! & SEG_FLAG_DEDICATED) !== 0);
  }

  /* ---------------- opening and recovery ---------------- */

  private attachReader(): void {
    const header = readFixedHeader(this.root.bytes(0, 128), this.what, TYPE_MAP);
    if (header === null) throw new ClientError('NOT_FOUND', `${this.what} is still being created`);
    this.loadFixed(header.clientId, header.fixed, header.headerBytes);
  }

  private loadFixed(clientId: number, fixed: [number, number, number], headerBytes: number): void {
    if (fixed[1] !== MAX_SEGMENTS || fixed[2] !== SEGTAB_BYTES || headerBytes !== HEADER_RUN_BYTES) {
      throw new ClientError('CORRUPT', `${this.what}: its header describes a layout this code does not use`);
    }
    this.mapId = clientId;
    this.seed = fixed[0];
  }

  private attachWriter(created: boolean, options: PersistentMapOptions): void {
    if (created) this.hdr.fill(0, LOCK_INDEX, LOCK_INDEX + LOCK_WORDS);
    // Not a map (or a map of a format this code does not know): refuse before touching its lock words.
    else readFixedHeader(this.root.bytes(0, 128), this.what, TYPE_MAP);
    this.lock.acquire(this.what);
    const header = readFixedHeader(this.root.bytes(0, 128), this.what, TYPE_MAP);
    if (header === null) this.initialize();
    else this.loadFixed(header.clientId, header.fixed, header.headerBytes);
    this.recover();
    const fdt = options.handover !== undefined ? options.handover : incomingHandoverFdt();
    if (fdt !== null) {
      const node = readMapNode(fdt, this.name);
      if (node !== undefined) verifyMapNode(node, this.handoverInfo());
    }
  }

  /** A new map (or one whose creation a crash interrupted): an empty header, the magic last. */
  private initialize(): void {
    for (const run of this.ownedRuns()) {
      if (run.name !== this.name) poolCall(() => this.pool.release(run.pfn, run.count, { owner: this.owner }), this.what);
    }
    const bytes = this.root.bytes(0, HEADER_RUN_BYTES);
    bytes.fill(0, 0, LOCK_INDEX * 4);
    bytes.fill(0, MUTABLE);
    this.mapId = newClientId();
    this.seed = randomNonZeroU31();
    this.writeDescriptor(0, 0, 0, 0);
    this.hdr[HDR_ACTIVE] = 0;
    this.hdr[HDR_CLEAN] = 1;
    writeFixedHeader(bytes, {
      type: TYPE_MAP,
      headerBytes: HEADER_RUN_BYTES,
      clientId: this.mapId,
      fixed: [this.seed, MAX_SEGMENTS, SEGTAB_BYTES],
      poolUuid: this.pool.uuidBytes,
      createdAtMs: Date.now(),
      name: this.name,
    });
  }

  private ownedRuns(): Allocation[] {
    return poolCall(() => this.pool.allocations(), this.what).filter((a) => a.owner === this.owner);
  }

  /**
   * What a writer does at open: finish what a dead writer left (an odd
   * seqlock, runs allocated but never published or unpublished but never
   * released), map the table and segments, and recount when the counters
   * are not known to be exact.
   */
  private recover(): void {
    const h = this.hdr;
    if ((h[HDR_SEQ]! & 1) !== 0) Atomics.add(h, HDR_SEQ, 1);
    const d = h[HDR_ACTIVE]!;
    if (d > 1) throw new ClientError('CORRUPT', `${this.what}: active descriptor ${d}`);
    const desc = this.descriptor(d);
    if (!desc.ok) throw new ClientError('CORRUPT', `${this.what}: its table descriptor does not verify`);
    this.activeDesc = d;
    const tableName = `${this.name}/t${desc.seq}`;
    // A map closed or handed over cleanly had no run in flight (a writer marks it dirty before its
    // first change, and clean again only after its last): its table is found by name, its segments
    // by the segment table, in O(1) whatever the pool holds. Only a crash leaves leftovers to give
    // back, and finding them takes a pass over the pool's allocations.
    const { table, stale } = h[HDR_CLEAN] === 1 ? { table: this.tableByName(tableName, desc), stale: [] } : sortOwnedRuns(this.ownedRuns(), this.name, desc, h);
    // Allocated but never published, or unpublished but never released.
    for (const run of stale) poolCall(() => this.pool.release(run.pfn, run.count, { owner: this.owner }), this.what);
    if (desc.pfn !== 0) {
      const bytes = 2 ** desc.log2 * 8;
      if (table === undefined || table.count * this.pageSize < bytes) {
        throw new ClientError('CORRUPT', `${this.what}: its table (pfn ${desc.pfn}) is not the pool allocation "${tableName}"`);
      }
      this.setTable(u32View(table.bytes(0, bytes)), desc.log2, desc.seq, table);
    } else {
      this.setTable(NO_U32, 0, desc.seq, null);
    }
    for (let k = 0; k < MAX_SEGMENTS; k++) if (h[SEGTAB + 2 * k] !== 0) this.loadSegment(k, false);
    if (h[HDR_CLEAN] === 1) {
      this.count = h[HDR_COUNT]!;
      this.tombs = h[HDR_TOMBS]!;
      for (const k of this.loaded) this.segLive[k] = this.segU32[k]![SEG_W_LIVE]!;
    } else {
      // After a crash: exact again once recounted, and marked so at close or handover, so that
      // the next open neither recounts nor sweeps the pool.
      this.recount();
      this.markDirty();
    }
    // A count of 0 sends an open to resetToEmpty (below), which frees the table and every segment:
    // a damaged count must not. The table, the source of truth, says whether the map is empty.
    if (this.count === 0 && tableHasEntries(this.slots, this.cap)) {
      this.recount();
      this.markDirty();
    }
    if (this.count + this.tombs > this.cap) throw new ClientError('CORRUPT', `${this.what}: ${this.count} entries and ${this.tombs} tombstones in ${this.cap} slots`);
    // Pick the roomiest small segment to go on appending to; queue the sparse ones.
    const best = pickActive(this.loaded, this.segDedicated, this.segCap, this.segUsed);
    if (best >= 0) this.active = best;
    // An empty segment the size of the active one stays the spare, as it was before the crash or close.
    if (this.count > 0) {
      const spare = [...this.loaded].find((k) => this.segLive[k] === 0 && this.canKeep(k));
      if (spare !== undefined) this.spares.push(spare);
    }
    const sparse = (k: number) => k !== this.active && !this.spares.includes(k) && (this.segLive[k] === 0 || this.sparse(k));
    const tidy = this.count === 0 ? this.loaded.size > 0 || this.tableRun !== null : [...this.loaded].some(sparse);
    if (tidy) {
      this.markDirty();
      if (this.count === 0) {
        this.resetToEmpty();
      } else {
        for (const k of [...this.loaded]) {
          if (k === this.active || this.spares.includes(k)) continue;
          if (this.segLive[k] === 0) this.freeSegment(k);
          else if (this.sparse(k)) this.queue(k);
        }
        this.compactPending();
      }
    }
  }

  /** The run the descriptor names, when the pool holds it under the table's name, at its pfn, for this owner. */
  private tableByName(tableName: string, desc: TableDescriptor): Allocation | undefined {
    if (desc.pfn === 0) return undefined;
    const run = poolCall(() => this.pool.find(tableName), this.what);
    return run !== undefined && run.pfn === desc.pfn && run.owner === this.owner ? run : undefined;
  }

  /** Counts entries, tombstones and live bytes per segment from the table (after a crash). */
  private recount(): void {
    const { count, tombs } = recountTable(this.slots, this.cap, this.segU32, this.segUsed, this.segLive, this.loaded, this.what);
    this.count = count;
    this.tombs = tombs;
    Atomics.store(this.hdr, HDR_COUNT, count);
  }

  /* ---------------- lifetime, state, handover ---------------- */

  private live(): void {
    if (this.state !== State.Open || this.pool.closed) this.throwClosed();
  }

  private writable(): void {
    if (this.state !== State.Open || this.pool.closed) this.throwClosed();
    if (this.readOnly) throw new ClientError('READ_ONLY', `${this.what} was opened read-only`);
    if (!this.dirty) this.markDirty();
  }

  private throwClosed(): never {
    throw new ClientError('CLOSED', this.state !== State.Open ? `${this.what} is closed` : `${this.what}: its pool is closed`);
  }

  /** From the first change on, the counters on the pool are not exact until close or handover. */
  private markDirty(): void {
    Atomics.store(this.hdr, HDR_CLEAN, 0);
    this.dirty = true;
  }

  /** Writes the exact counters and marks them so: the next open need not recount. */
  private persistCounters(): void {
    for (const k of this.loaded) this.segU32[k]![SEG_W_LIVE] = this.segLive[k]!;
    this.hdr[HDR_TOMBS] = this.tombs;
    Atomics.store(this.hdr, HDR_COUNT, this.count);
    Atomics.store(this.hdr, HDR_CLEAN, 1);
    this.dirty = false;
  }

  /** What the map's handover node says. */
  handoverInfo(): MapHandoverInfo {
    this.live();
    return { name: this.name, rootPfn: this.root.pfn, poolUuid: this.pool.uuidBytes, mapId: this.mapId, entries: this.size };
  }

  /**
   * Writes `/clients/<name>` into an outgoing handover tree (call it from a
   * kexec.onHandover callback). A writer also records its counters as exact,
   * so the next program opens without recounting; the map must not change
   * after this (the next program would refuse a node that disagrees).
   */
  handoverNode(fdt: Fdt): void {
    this.live();
    if (!this.readOnly) this.persistCounters();
    writeMapNode(fdt, this.handoverInfo());
  }

  /**
   * Registers the map's handover callback with the kexec layer:
   * `PersistentMap.registerHandover(map, kexec.onHandover)`. Returns the
   * function that unregisters it.
   */
  static registerHandover(map: PersistentMap, onHandover: (name: string, callback: (fdt: Fdt) => void) => () => void): () => void {
    return onHandover(`pmap:${map.name}`, (fdt) => map.handoverNode(fdt));
  }

  /** Records exact counters, releases the writer lock and detaches. Idempotent. */
  close(): void {
    if (this.state === State.Closed) return;
    this.state = State.Closed;
    if (this.readOnly) return;
    if (this.pool.closed) {
      // The memory is gone; the lock stays held and the next writer breaks it.
      this.lock.abandon();
      return;
    }
    if (this.dirty) this.persistCounters();
    this.lock.release();
  }

  /**
   * Removes the map from the pool (the writer only): one atomic clear, then
   * the header run goes back. A crash in between leaves an empty map.
   */
  destroy(): void {
    this.writable();
    this.resetToEmpty();
    this.state = State.Closed;
    this.lock.abandon();
    poolCall(() => this.pool.release(this.root.pfn, this.root.count, { owner: this.owner }), this.what);
  }

  /** @internal crash simulation: drop the map as a killed process would (lock held, counters as they are). */
  abandon(): void {
    this.state = State.Closed;
    this.lock.abandon();
  }

  get closed(): boolean {
    return this.state === State.Closed;
  }

  /* ---------------- observability ---------------- */

  stats(): PersistentMapStats {
    this.live();
    if (this.readOnly) return this.shared(() => this.computeStats());
    return this.computeStats();
  }

  private computeStats(): PersistentMapStats {
    let segments = 0;
    let segmentBytes = 0;
    let liveBytes = 0;
    let pages = this.root.count + (this.tableRun?.count ?? 0);
    if (this.readOnly) {
      for (let k = 0; k < MAX_SEGMENTS; k++) if (this.hdr[SEGTAB + 2 * k] !== 0 && this.segRun[k] === null) this.loadSegment(k, true);
      for (const k of this.loaded) this.segLive[k] = 0;
      for (let i = 0; i < this.cap; i++) {
        const ref = this.slots[2 * i]!;
        if (ref <= TOMB) continue;
        const k = ref >>> 19;
        if (this.segRun[k] === null) this.bad(`segment ${k} is not published`);
        const w = (ref & 0x7ffff) << 1;
        this.segLive[k] += recordBytes(this.segU32[k]![w + 1]!, this.segU32[k]![w + 2]!);
      }
    }
    let tombs = 0;
    if (this.readOnly) for (let i = 0; i < this.cap; i++) if (this.slots[2 * i] === TOMB) tombs++;
    for (const k of this.loaded) {
      segments++;
      segmentBytes += this.segUsed[k]! - SEG_HEADER;
      liveBytes += this.segLive[k]!;
      pages += this.segRun[k]!.count;
    }
    const entries = this.size;
    return {
      entries,
      tableSlots: this.cap,
      tombstones: this.readOnly ? tombs : this.tombs,
      segments,
      segmentBytes,
      liveBytes,
      garbageBytes: segmentBytes - liveBytes,
      pages,
      bytesPerEntry: entries === 0 ? 0 : (pages * this.pageSize) / entries,
    };
  }

  /**
   * Verifies the map's invariants: header and descriptor checksums; every
   * published segment a pool allocation with a valid header and walkable
   * records; every slot pointing at the start of a record whose key hashes
   * to the slot's hash; the entry count; no run of the map left unreferenced.
   */
  check(): MapCheckReport {
    this.live();
    if (this.readOnly) {
      for (let tries = 0; ; tries++) {
        const s = this.fresh();
        const report = this.checkNow();
        if (Atomics.load(this.hdr, HDR_SEQ) === s || tries > 10) return report;
      }
    }
    return this.checkNow();
  }

  private checkNow(): MapCheckReport {
    const problems: string[] = [];
    try {
      readFixedHeader(this.root.bytes(0, 128), this.what, TYPE_MAP);
    } catch (e) {
      problems.push((e as Error).message);
    }
    const h = this.hdr;
    const desc = this.descriptor(h[HDR_ACTIVE]! & 1);
    if (!desc.ok) problems.push('the active table descriptor does not verify');
    else if (desc.pfn !== this.tablePfn) problems.push(`the active descriptor names table pfn ${desc.pfn}, the map uses ${this.tablePfn}`);
    const records = new Map<number, Set<number>>();
    for (let k = 0; k < MAX_SEGMENTS; k++) {
      if (h[SEGTAB + 2 * k] === 0) continue;
      if (this.segRun[k] === null) this.loadSegment(k, true);
      if (this.segRun[k] === null) {
        problems.push(`segment ${k} (pfn ${h[SEGTAB + 2 * k]}) is not a valid segment allocation`);
        continue;
      }
      records.set(k, recordStarts(this.segU32[k]!, k, problems));
    }
    let count = 0;
    const seen = new Set<number>();
    for (let i = 0; i < this.cap; i++) {
      const ref = this.slots[2 * i]!;
      if (ref <= TOMB) continue;
      count++;
      const k = ref >>> 19;
      const off = (ref & 0x7ffff) << 3;
      if (seen.has(ref)) problems.push(`slot ${i}: record ${k}:${off} is referenced twice`);
      seen.add(ref);
      if (!records.get(k)?.has(off)) {
        problems.push(`slot ${i} points to ${k}:${off}, which is not the start of a record`);
        continue;
      }
      const u32 = this.segU32[k]!;
      const w = off >>> 2;
      const kl = u32[w + 1]! & LENGTH_MASK;
      const hash = hashWords(u32, w + 3, kl, u32[w + 1]! & (KIND_BYTES | KIND_ASCII), this.seed);
      if (hash !== u32[w] || hash !== this.slots[2 * i + 1]) {
        // A reader may race the writer, which marks a record it superseded (inverts its hash word): the slot has moved on.
        if (Atomics.load(this.slots, 2 * i) !== ref) continue;
        problems.push(`slot ${i}: the key at ${k}:${off} does not hash to the slot's hash`);
      }
    }
    if (count !== this.size) problems.push(`the table holds ${count} entries, the map counts ${this.size}`);
    if (!this.readOnly) {
      for (const run of this.ownedRuns()) {
        const ok =
          run.name === this.name ||
          (this.tableRun !== null && run.pfn === this.tableRun.pfn) ||
          [...this.loaded].some((k) => this.segRun[k]!.pfn === run.pfn);
        if (!ok) problems.push(`pool allocation "${run.name ?? ''}" (pfn ${run.pfn}) of owner ${this.owner} is not part of the map`);
      }
      if (!bytesEqual(this.pool.uuidBytes, this.root.bytes(32, 16))) problems.push('the header names another pool uuid');
    }
    return { ok: problems.length === 0, problems };
  }
}

/** Where loads that only warm the cache put their result (so that the compiler keeps them). */
let touched = 0;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** How long a reader waits for a live writer to finish releasing memory. */
const READER_WAIT_MS = 10_000;
