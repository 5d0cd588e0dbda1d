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
 * and its hot paths: lookups, iteration, set and delete, and the map's
 * lifetime and handover. The map's state is a MapState (map-state.ts); the
 * rest of the map is functions of it: segment space in map-space.ts,
 * compaction in map-compaction.ts, table switches (resize, clear) in
 * map-resize.ts, the reader's side of the seqlock in map-reader.ts, open and
 * recovery in map-open.ts (what recovery works out, in map-recovery.ts),
 * stats and check in map-check.ts. The on-pool layout is in map-layout.ts;
 * word-level table and segment work in map-table.ts and map-segments.ts; the
 * fault hook, key scratch and copy slab in map-runtime.ts.
 */
import { PmpoolError } from '../errors.js';
import { Fdt, type Allocation, type Pool } from '../index.js';
import { describeValue } from '../util/options.js';
import { checkClientName, checkOpenArguments, poolCall } from './client-header.js';
import { describe, isDetached, isWellFormed, KIND_ASCII, KIND_BYTES, KIND_MASK, LENGTH_MASK, readLatin1, readUtf8, tooLarge, typedArrayLength, writeUtf8 } from './codec.js';
import { ClientError } from './errors.js';
import { incomingHandoverFdt, mapNodePath, readMapNode, verifyMapNode, writeMapNode, type MapHandoverInfo } from './map-handover.js';
import { checkNow, computeStats } from './map-check.js';
import { compactPending } from './map-compaction.js';
import {
  align8,
  DEDICATED_MIN,
  EMPTY,
  HDR_COUNT,
  HDR_SEQ,
  MAX_KEY_BYTES,
  MAX_SEGMENTS,
  MAX_VALUE_BYTES,
  MIN_TABLE_LOG2,
  REC_HEADER,
  SEG_HEADER,
  SEG_W_USED,
  targetLog2,
  TOMB,
} from './map-layout.js';
import { attachReader, attachWriter, openRoot } from './map-open.js';
import { fresh, shared } from './map-reader.js';
import { resetToEmpty, resize } from './map-resize.js';
import { copyOut, fault, scratch, Torn } from './map-runtime.js';
import { compactionDue, dequeue, dropRecord, emptied, freeSegment, loadSegment, queue, reserve } from './map-space.js';
import { MapState } from './map-state.js';

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

const enum State {
  Open,
  Closed,
}

export class PersistentMap {
  readonly pool: Pool;
  readonly name: string;
  readonly readOnly: boolean;
  /** Everything else the map knows; the other parts of the map are functions of it. */
  private readonly s: MapState;
  private state = State.Open;
  /** What undoes each registerHandover of this map: close() and destroy() run them. */
  private readonly handoverRegistrations = new Set<() => void>();
  /** Undoes the pool.onClose that closes the map with its pool (a pool closed first left its lock held). */
  private unregisterClose = (): void => {};

  private constructor(pool: Pool, name: string, root: Allocation, readOnly: boolean) {
    this.pool = pool;
    this.name = name;
    this.readOnly = readOnly;
    this.s = new MapState(pool, name, root, readOnly);
  }

  /**
   * Opens the map `name` in `pool`, creating it if there is none. A writer
   * (the default) takes the map's writer lock — one at a time; a dead
   * writer's lock is broken — and repairs what a crash left. With
   * `{ readOnly: true }` any number of readers, in any process, read
   * consistently while the writer writes.
   */
  static open(pool: Pool, name: string, options: PersistentMapOptions = {}): PersistentMap {
    options = checkOpenArguments(pool, options, 'PersistentMap.open', ['readOnly', 'create']);
    if (options.handover !== undefined && options.handover !== null && !(options.handover instanceof Fdt)) {
      throw new ClientError('BAD_ARGUMENT', `handover must be an Fdt or null, got ${describeValue(options.handover)}`);
    }
    checkClientName(name);
    const readOnly = options.readOnly === true;
    // A writer reads its incoming node first: a node for a map the pool does not hold is refused
    // before a new, empty map is created under the name.
    const fromIncoming = options.handover === undefined;
    const fdt = readOnly ? null : fromIncoming ? incomingHandoverFdt() : options.handover!;
    const node = fdt === null ? undefined : readMapNode(fdt, name);
    const root = openRoot(pool, name, readOnly, options.create !== false, node !== undefined);
    const map = new PersistentMap(pool, name, root, readOnly);
    try {
      if (readOnly) {
        attachReader(map.s);
      } else {
        attachWriter(map.s);
        if (node !== undefined) {
          verifyMapNode(node, map.handoverInfo());
          // Consumed: the node describes the map as the previous program left it, and from here on
          // this program changes it. Left in the incoming tree, a later open here (after close())
          // would be verified against it, and the next handover would carry it on unchanged — to a
          // program that refuses the map it no longer describes. The map's own callback, if it is
          // registered, writes a fresh node; without one the next program opens the map by name.
          if (fromIncoming) fdt!.remove(mapNodePath(name));
        }
      }
    } catch (e) {
      map.s.lock.release();
      map.state = State.Closed;
      throw e;
    }
    map.unregisterClose = pool.onClose(() => map.close());
    return map;
  }

  /* ---------------- reading ---------------- */

  get size(): number {
    this.live();
    return this.s.entries();
  }

  get(key: MapKey): MapValue | undefined {
    this.live();
    const h = scratch.encodeKey(key, MAX_KEY_BYTES, this.s.seed);
    if (this.readOnly) return shared(this.s, () => this.getFound(h));
    return this.getFound(h);
  }

  has(key: MapKey): boolean {
    this.live();
    const h = scratch.encodeKey(key, MAX_KEY_BYTES, this.s.seed);
    if (this.readOnly) return shared(this.s, () => this.find(h) >= 0);
    return this.find(h) >= 0;
  }

  /**
   * The value of the key in the scratch (hash h), or undefined: find() and readValue() in one
   * pass, so that a get reads its slot and its record's words once each.
   */
  private getFound(h: number): MapValue | undefined {
    const s = this.s;
    const cap = s.cap;
    const slots = s.slots;
    const mask = s.mask;
    let i = h & mask;
    for (let n = 0; n < cap; n++) {
      const ref = slots[2 * i]!;
      if (ref === EMPTY) return undefined;
      if (slots[2 * i + 1] === h && ref !== TOMB) {
        // The value of the record matched here, not of whatever the slot holds later: a reader's
        // writer may delete the key meanwhile (the slot becomes TOMB, with no seqlock change).
        const k = ref >>> 19;
        const u32 = this.recordWords(k);
        const w = (ref & 0x7ffff) << 1;
        if (this.keyAt(u32, w, k)) return this.valueAt(u32, w, k, scratch.length);
      }
      i = (i + 1) & mask;
    }
    return cap === 0 ? undefined : s.bad('the table has no empty slot');
  }

  /** The slot holding the key in the scratch, or -1. */
  private find(h: number): number {
    const s = this.s;
    const slots = s.slots;
    const mask = s.mask;
    if (s.cap === 0) return -1;
    let i = h & mask;
    for (let n = 0; n < s.cap; n++) {
      const ref = slots[2 * i]!;
      if (ref === EMPTY) return -1;
      if (ref !== TOMB && slots[2 * i + 1] === h && this.keyEquals(ref)) return i;
      i = (i + 1) & mask;
    }
    return s.bad('the table has no empty slot');
  }

  /** Like find, but when the key is absent returns -(slot + 1) of where it would go. */
  private probe(h: number): number {
    const s = this.s;
    const slots = s.slots;
    const mask = s.mask;
    let i = h & mask;
    let firstTomb = -1;
    for (let n = 0; n < s.cap; n++) {
      const ref = slots[2 * i]!;
      if (ref === EMPTY) return -((firstTomb >= 0 ? firstTomb : i) + 1);
      if (ref === TOMB) {
        if (firstTomb < 0) firstTomb = i;
      } else if (slots[2 * i + 1] === h && this.keyEquals(ref)) {
        return i;
      }
      i = (i + 1) & mask;
    }
    return s.bad('the table has no empty slot');
  }

  private keyEquals(ref: number): boolean {
    const k = ref >>> 19;
    return this.keyAt(this.recordWords(k), (ref & 0x7ffff) << 1, k);
  }

  /** Whether the record at word w of segment k (its words u32) holds the key in the scratch. */
  private keyAt(u32: Uint32Array, w: number, k: number): boolean {
    // Touch the record's second cache line now, so that its miss overlaps the first one's.
    if (w + 16 < u32.length) touched = u32[w + 16]!;
    const sc = scratch;
    const n = sc.length;
    if (u32[w + 1] !== ((n | sc.kind) >>> 0)) return false;
    const base = w + 3;
    const full = n >>> 2;
    if (base + ((n + 3) >>> 2) > u32.length) return this.s.bad(`a record in segment ${k} runs past its end`);
    const su = sc.u32;
    for (let i = 0; i < full; i++) if (u32[base + i] !== su[i]) return false;
    const rest = n & 3;
    return rest === 0 || ((u32[base + full]! ^ su[full]!) & ((1 << (rest * 8)) - 1)) === 0;
  }

  private readValue(ref: number): MapValue {
    const k = ref >>> 19;
    const u32 = this.recordWords(k);
    const w = (ref & 0x7ffff) << 1;
    return this.valueAt(u32, w, k, u32[w + 1]! & LENGTH_MASK);
  }

  /** The value of the record at word w of segment k (its words u32), whose key is keyBytes long. */
  private valueAt(u32: Uint32Array, w: number, k: number, keyBytes: number): MapValue {
    const s = this.s;
    const off = w << 2;
    const vi = u32[w + 2]!;
    const start = off + REC_HEADER + keyBytes;
    const end = start + (vi & LENGTH_MASK);
    if (end > s.segCap[k]!) return this.malformed(off, k);
    // The common value, an ASCII string, here; the others in readItem.
    if ((vi & KIND_MASK) === KIND_ASCII) return readLatin1(s.segBuf[k]!, start, end);
    return readItem(s, k, start, end, vi);
  }

  private readKey(ref: number): MapKey {
    const s = this.s;
    const k = ref >>> 19;
    const u32 = this.recordWords(k);
    const off = (ref & 0x7ffff) << 3;
    const ki = u32[(off >>> 2) + 1]!;
    const start = off + REC_HEADER;
    const end = start + (ki & LENGTH_MASK);
    if (end > s.segCap[k]!) return this.malformed(off, k);
    return readItem(s, k, start, end, ki);
  }

  private malformed(off: number, k: number): never {
    return this.s.bad(`the record at ${off} of segment ${k} is malformed`);
  }

  /** Segment k's words: a writer has every segment loaded; a reader loads it now (or refuses). */
  private recordWords(k: number): Uint32Array {
    const s = this.s;
    const u32 = s.segU32[k]!;
    if (u32.length !== 0) return u32;
    if (!this.readOnly || k >= MAX_SEGMENTS) return s.bad(`a slot points into segment ${k}, which the map does not have`);
    loadSegment(s, k, true);
    const loaded = s.segU32[k]!;
    if (loaded.length === 0) return s.bad(`segment ${k} is not published`);
    return loaded;
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
    const s = this.s;
    this.live();
    if (this.readOnly) fresh(s);
    const tableSeq = s.tableSeq;
    let i = 0;
    for (let retries = 0; ; ) {
      this.live();
      const seq = this.readOnly ? fresh(s) : 0;
      if (s.tableSeq !== tableSeq) {
        if (this.size === 0) return;
        throw new ClientError('CHANGED', `${s.what} was resized during iteration`);
      }
      if (i >= s.cap) return;
      const ref = s.slots[2 * i]!;
      if (ref === EMPTY || ref === TOMB) {
        i++;
        continue;
      }
      let item: T;
      try {
        item = read(ref);
      } catch (e) {
        if (!(e instanceof Torn)) throw e;
        if (++retries > 100) throw new ClientError('CORRUPT', `${s.what}: ${e.message}`);
        s.cachedSeq = -1;
        continue;
      }
      if (this.readOnly && Atomics.load(s.hdr, HDR_SEQ) !== seq) continue;
      retries = 0;
      i++;
      yield item;
    }
  }

  /* ---------------- writing ---------------- */

  /** Sets `key` to `value`: atomic — after a crash at any point the map holds the old value or the new one. */
  set(key: MapKey, value: MapValue): this {
    this.writable();
    const s = this.s;
    const sc = scratch;
    const h = sc.encodeKey(key, MAX_KEY_BYTES, s.seed);
    const klen = sc.length;
    const kinfo = (klen | sc.kind) >>> 0;
    let vkind: number;
    let vmax: number;
    if (typeof value === 'string') {
      vkind = 0;
      const n = value.length;
      if (n > MAX_VALUE_BYTES) tooLarge('value', n, MAX_VALUE_BYTES);
      if (!isWellFormed(value)) throw new ClientError('BAD_VALUE', 'the value string holds a lone surrogate; it would not read back as the same string');
      // Three bytes a unit bound the UTF-8, room enough to write it in. A record past DEDICATED_MIN
      // gets a segment of its own, of the size reserved: there the bound would hold three times
      // the pages an ASCII string needs, and the exact length is worth its pass over the string.
      vmax = n * 3;
      if (REC_HEADER + klen + vmax > DEDICATED_MIN) {
        vmax = Buffer.byteLength(value, 'utf8');
        if (vmax > MAX_VALUE_BYTES) tooLarge('value', vmax, MAX_VALUE_BYTES);
      }
    } else if (value instanceof Uint8Array) {
      vkind = KIND_BYTES;
      // The copy below takes the typed array's own length: a length a subclass or a Proxy says
      // would size the record's room, and the copy would run past it.
      const own = typedArrayLength(value);
      if (own === undefined) throw new ClientError('BAD_VALUE', `a value must be a string or a Uint8Array, got ${describe(value)}, which only looks like one`);
      vmax = own;
      // Refused before space is reserved: copying it would throw a raw TypeError mid-set.
      if (vmax === 0 && isDetached(value)) throw new ClientError('BAD_VALUE', 'the value is a view of a detached ArrayBuffer, or out of its bounds');
      if (vmax > MAX_VALUE_BYTES) tooLarge('value', vmax, MAX_VALUE_BYTES);
    } else {
      throw new ClientError('BAD_VALUE', `a value must be a string or a Uint8Array, got ${describe(value)}`);
    }
    // Whether an insert would resize the table; if not, the record is written before the probe,
    // while the key's slot is on its way from memory.
    const n = s.count + 1;
    const mayResize = (n + s.tombs) * 4 > s.cap * 3 || (s.cap > 2 ** MIN_TABLE_LOG2 && n * 16 < s.cap);
    const bytes = align8(REC_HEADER + klen + vmax);
    let pos = 0;
    let k: number;
    if (mayResize) {
      pos = s.cap === 0 ? -1 : this.probe(h);
      // The record's room first, then the table: an insert the pool refuses room for then leaves
      // the table as it was. Grown first, the table had to be put back, a switch of tables that
      // ended every live iterator (CHANGED) over an insert that did not happen.
      k = reserve(s, bytes);
      if (pos < 0) {
        const log2 = targetLog2(n);
        const fromLog2 = s.cap === 0 ? -1 : Math.log2(s.cap);
        try {
          resize(s, log2);
        } catch (e) {
          // A smaller table is only the map giving pages back: a pool too full to give it one is
          // no reason to refuse the insert, which the present table has room for.
          if (!(log2 < fromLog2 && e instanceof ClientError && e.code === 'NO_SPACE')) {
            // Refused: a segment reserved for this record alone goes back (the active one keeps its
            // room for the next append); a release the pool refuses too leaves it to the map's
            // strays. Anything else (the crash simulation's kill) stops here, for the next open.
            if (e instanceof PmpoolError && s.segDedicated[k] && s.segLive[k] === 0) {
              try {
                emptied(s, k);
              } catch (undo) {
                if (!(undo instanceof PmpoolError)) throw undo;
              }
            }
            throw e;
          }
        }
        pos = this.probe(h);
      }
    } else {
      touched = s.slots[2 * (h & s.mask)]!;
      // Write the record where nothing points yet.
      k = reserve(s, bytes);
    }
    const u8 = s.segU8[k]!;
    const u32 = s.segU32[k]!;
    const off = s.segUsed[k]!;
    const w = off >>> 2;
    u32[w] = h;
    u32[w + 1] = kinfo;
    const su = sc.u32;
    for (let i = 0, n = (klen + 3) >>> 2; i < n; i++) u32[w + 3 + i] = su[i]!;
    const vstart = off + REC_HEADER + klen;
    let vlen: number;
    if (vkind === 0) {
      vlen = vmax === 0 ? 0 : writeUtf8(s.segBuf[k]!, value as string, vstart, vmax);
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
    s.segUsed[k] = off + total;
    fault('set:bumped');
    if (!mayResize) pos = this.probe(h);
    // Publish: one aligned store.
    const ref = ((k << 19) | (off >>> 3)) >>> 0;
    const slots = s.slots;
    if (pos >= 0) {
      const old = slots[2 * pos]!;
      Atomics.store(slots, 2 * pos, ref);
      fault('set:committed');
      s.segLive[k] += total;
      dropRecord(s, old);
    } else {
      const p = -pos - 1;
      if (slots[2 * p] === TOMB) s.tombs--;
      slots[2 * p + 1] = h;
      Atomics.store(slots, 2 * p, ref);
      fault('set:committed');
      s.segLive[k] += total;
      s.count++;
      Atomics.store(s.hdr, HDR_COUNT, s.count);
    }
    if (s.pending.length > 0 && compactionDue(s)) compactPending(s);
    return this;
  }

  /** Deletes `key`; true when it was there. Atomic like set. */
  delete(key: MapKey): boolean {
    this.writable();
    const s = this.s;
    const h = scratch.encodeKey(key, MAX_KEY_BYTES, s.seed);
    const i = this.find(h);
    if (i < 0) return false;
    const old = s.slots[2 * i]!;
    Atomics.store(s.slots, 2 * i, TOMB);
    fault('delete:committed');
    s.count--;
    s.tombs++;
    Atomics.store(s.hdr, HDR_COUNT, s.count);
    if (s.count === 0) {
      resetToEmpty(s);
      return true;
    }
    dropRecord(s, old);
    if (s.pending.length > 0 && compactionDue(s)) compactPending(s);
    return true;
  }

  /** Removes every entry (one atomic switch to an empty table) and gives all the map's runs but its header back to the pool. */
  clear(): void {
    this.writable();
    resetToEmpty(this.s);
  }

  /** Reclaims all garbage now: every segment with superseded records is compacted, and an oversized table shrunk. */
  compact(): void {
    this.writable();
    const s = this.s;
    if (s.count === 0) {
      resetToEmpty(s);
      return;
    }
    for (let k = 0; k < MAX_SEGMENTS; k++) {
      if (s.segRun[k] !== null && !s.segDedicated[k] && s.segLive[k]! < s.segUsed[k]! - SEG_HEADER) queue(s, k);
    }
    const active = s.active;
    if (active >= 0) queue(s, active);
    s.active = -1;
    compactPending(s, true);
    // A full pool postponed the compaction with the old active segment still queued: it is the
    // active one again (appends go on into its free tail), not a candidate the next set would
    // replace with a new segment the full pool cannot give.
    if (s.active < 0 && active >= 0 && s.segRun[active] !== null) {
      dequeue(s, active);
      s.active = active;
    }
    while (s.spares.length > 0) freeSegment(s, s.spares[s.spares.length - 1]!);
    if (s.cap > 2 ** targetLog2(s.count) || s.tombs > 0) resize(s, targetLog2(s.count));
  }

  /* ---------------- lifetime, state, handover ---------------- */

  private live(): void {
    if (this.state !== State.Open || this.pool.closed) this.throwClosed();
  }

  private writable(): void {
    if (this.state !== State.Open || this.pool.closed) this.throwClosed();
    if (this.readOnly) throw new ClientError('READ_ONLY', `${this.s.what} was opened read-only`);
    // Its pool quiesced, a handover is under way, and the map's node (handoverNode) may be written
    // already: a write now, even one that needs no allocation from the pool, would change the map
    // under it, and the next program refuse the map (HANDOVER_MISMATCH). Refused as an allocation
    // is, until the next program takes over or the handover is undone.
    if (this.pool.handingOver) throw new ClientError('BUSY', `${this.s.what}: its pool is quiesced for a handover`);
    if (!this.s.dirty) this.s.markDirty();
  }

  private throwClosed(): never {
    throw new ClientError('CLOSED', this.pool.closed ? `${this.s.what}: its pool is closed` : `${this.s.what} is closed`);
  }

  /**
   * Asks for huge pages under the map's table and its full segments (Allocation.preferHugePages),
   * and returns the bytes asked for. A large map is read at random over tens of thousands of 4 KiB
   * pages, far past the TLB, and most gets pay a page walk; on huge pages they do not. The addon's
   * thread collapses the extents in the background, and the huge pages stay with the pool's file:
   * the next program that opens the map has them too. A collapse copies 2 MiB and takes
   * milliseconds, and a write to that extent waits for it: ask once the map is built, or after a
   * restart, rather than in a burst of writes (every set writes the table). The segment that takes
   * the appends is left as it is; a reader asks for the segments it has read. 0 where the pool has
   * nothing to gain (on hugetlbfs, DAX, a disk file, or in memory: see Allocation.preferHugePages).
   */
  preferHugePages(): number {
    this.live();
    const s = this.s;
    return poolCall(() => {
      let asked = s.tableRun?.preferHugePages() ?? 0;
      for (let k = 0; k < MAX_SEGMENTS; k++) {
        const run = s.segRun[k];
        if (run !== null && run !== undefined && k !== s.active) asked += run.preferHugePages();
      }
      return asked;
    }, `${s.what}: asking for huge pages`);
  }

  /** What the map's handover node says. */
  handoverInfo(): MapHandoverInfo {
    this.live();
    return { name: this.name, rootPfn: this.s.root.pfn, poolUuid: this.pool.uuidBytes, mapId: this.s.mapId, entries: this.size };
  }

  /**
   * Writes `/clients/<name>` into an outgoing handover tree (call it from a
   * kexec.onHandover callback). A writer also records its counters as exact,
   * so the next program opens without recounting; the map must not change
   * after this (the next program would refuse a node that disagrees).
   */
  handoverNode(fdt: Fdt): void {
    this.live();
    if (!this.readOnly) this.s.persistCounters();
    writeMapNode(fdt, this.handoverInfo());
  }

  /**
   * Registers the map's handover callback with the kexec layer:
   * `PersistentMap.registerHandover(map, kexec.onHandover)`. Returns the
   * function that unregisters it; close() and destroy() unregister it too.
   */
  static registerHandover(map: PersistentMap, onHandover: (name: string, callback: (fdt: Fdt) => void) => () => void): () => void {
    map.live();
    const off = onHandover(`pmap:${map.name}`, (fdt) => map.handoverNode(fdt));
    const unregister = (): void => {
      if (map.handoverRegistrations.delete(unregister)) off();
    };
    map.handoverRegistrations.add(unregister);
    return unregister;
  }

  /**
   * A closed map has nothing to hand over, and its callback would throw CLOSED and abort the
   * program's next handover: closing unregisters it. The next program opens the map by name,
   * with its counters as close() recorded them.
   */
  private unregisterHandovers(): void {
    for (const unregister of [...this.handoverRegistrations]) unregister();
  }

  /** Records exact counters, releases the writer lock and detaches. Idempotent. */
  close(): void {
    if (this.state === State.Closed) return;
    this.state = State.Closed;
    this.unregisterHandovers();
    this.unregisterClose();
    // Open, its pool is too: pool.close() closes the map first (onClose).
    if (this.readOnly) return;
    if (this.s.dirty) this.s.persistCounters();
    this.s.lock.release();
  }

  /**
   * Removes the map from the pool (the writer only): one atomic clear, then
   * the header run goes back. A crash in between leaves an empty map.
   */
  destroy(): void {
    this.writable();
    const s = this.s;
    resetToEmpty(s);
    this.state = State.Closed;
    this.unregisterHandovers();
    this.unregisterClose();
    s.lock.abandon();
    poolCall(() => this.pool.release(s.root.pfn, s.root.count, { owner: s.owner }), s.what);
  }

  /** @internal crash simulation: drop the map as a killed process would (lock held, counters as they are). */
  abandon(): void {
    this.state = State.Closed;
    this.unregisterClose();
    this.s.lock.abandon();
  }

  get closed(): boolean {
    return this.state === State.Closed;
  }

  /* ---------------- observability ---------------- */

  stats(): PersistentMapStats {
    this.live();
    if (this.readOnly) return shared(this.s, () => computeStats(this.s));
    return computeStats(this.s);
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
      // Beside a writer that goes on writing: a report of problems is trusted only from a check
      // during which nothing was written (no restructuring, no append, no count change).
      for (let tries = 0; ; tries++) {
        const seq = fresh(this.s);
        const { report, quiet } = checkNow(this.s);
        const still = quiet && Atomics.load(this.s.hdr, HDR_SEQ) === seq;
        if (report.ok ? still || tries > 10 : still || tries > 30) return report;
      }
    }
    return checkNow(this.s).report;
  }
}

/** Where loads that only warm the cache put their result (so that the compiler keeps them). */
let touched = 0;

/** The key or value of segment k's bytes [start, end), of the kind its info word says. */
function readItem(s: MapState, k: number, start: number, end: number, info: number): MapValue {
  if ((info & KIND_BYTES) !== 0) return copyOut(s.segU8[k]!, start, end - start);
  if ((info & KIND_ASCII) !== 0) return readLatin1(s.segBuf[k]!, start, end);
  return readUtf8(s.segBuf[k]!, start, end);
}
