/**
 * The state of one open PersistentMap, which every part of the map reads and
 * changes: where the map is in the pool, the table it uses, the segments it
 * holds, the writer's counters and the reader's seqlock mark; and the few
 * rules each part keeps when it changes them (a table's size and mask go
 * together, memory readers may hold is released inside a seqlock write
 * section, the counters on the pool are marked inexact before the first
 * change). The PersistentMap holds one; segment space (map-space.ts),
 * compaction (map-compaction.ts), table switches (map-resize.ts), the
 * reader's side of the seqlock (map-reader.ts), opening and recovery
 * (map-open.ts), stats and check (map-check.ts) are functions of it.
 */
import type { Allocation, Pool } from '../index.js';
import { LOCK_INDEX, poolCall } from './client-header.js';
import { ClientError } from './errors.js';
import { HDR_CLEAN, HDR_COUNT, HDR_SEQ, HDR_TOMBS, HEADER_RUN_BYTES, MAX_SEGMENTS, NO_BUF, NO_U32, NO_U8, SEG_W_LIVE, u32View } from './map-layout.js';
import { Torn } from './map-runtime.js';
import type { TableDescriptor } from './map-table.js';
import { WriterLock } from './writer-lock.js';

export class MapState {
  readonly owner: string;
  readonly what: string;
  readonly hdr: Uint32Array;
  readonly lock: WriterLock;
  readonly pageSize: number;
  mapId = 0;
  seed = 0;

  /* the table */
  slots: Uint32Array = NO_U32;
  cap = 0;
  mask = 0;
  tableSeq = 0;
  tablePfn = 0;
  tableRun: Allocation | null = null;
  activeDesc = 0;

  /* segments, by index */
  readonly segU8: Uint8Array[] = new Array<Uint8Array>(MAX_SEGMENTS).fill(NO_U8);
  readonly segU32: Uint32Array[] = new Array<Uint32Array>(MAX_SEGMENTS).fill(NO_U32);
  readonly segBuf: Buffer[] = new Array<Buffer>(MAX_SEGMENTS).fill(NO_BUF);
  readonly segRun: (Allocation | null)[] = new Array<Allocation | null>(MAX_SEGMENTS).fill(null);
  // Typed arrays where the values allow: a map's open builds these afresh in a program that has just
  // started, and a typed array is one zeroed allocation outside the young generation, where 8192
  // filled elements are work to write and then to copy at the first scavenge.
  readonly segCap = new Int32Array(MAX_SEGMENTS);
  readonly segUsed = new Int32Array(MAX_SEGMENTS);
  readonly segLive = new Int32Array(MAX_SEGMENTS);
  /** 1: the segment holds one large record (DEDICATED_MIN or more). */
  readonly segDedicated = new Uint8Array(MAX_SEGMENTS);
  /** 1: the segment is on the compaction queue (`pending`). */
  readonly segQueued = new Uint8Array(MAX_SEGMENTS);
  /** Writer: emptied small segments kept to become the next active ones (at most MAX_SPARES). */
  readonly spares: number[] = [];
  readonly loaded: Set<number> = new Set();
  smallSegmentBytes = 0;
  /**
   * Writer: the garbage (used bytes not live) of the small segments other than the spare —
   * what the compaction policy weighs against the bytes those segments hold (map-space.ts).
   */
  garbage = 0;
  active = -1;
  /** Writer: compaction candidates (small segments found less than 1/COMPACT_BELOW live), in no order. */
  pending: number[] = [];
  compacting = false;
  /** Writer: set or delete calls a compaction that met a full pool still waits before it tries again (map-space.ts, postpone). */
  compactionWait = 0;
  /** Writer: what compactionWait was set to after the last attempt that met a full pool; 0 after one that did not. */
  compactionBackoff = 0;

  /* counters (exact in the writer) */
  count = 0;
  tombs = 0;
  dirty = false;
  /**
   * Writer: a run of the map was unpublished (or allocated) and then not given back, because
   * the pool refused the release (quiesced for a handover, its lock timed out). Only the sweep
   * of the pool's allocations finds such a run, and an open sweeps only when CLEAN is 0: the
   * counters are still written at close, but CLEAN stays 0.
   */
  strays = false;
  /** Reader: the seqlock value the cached table and segments belong to (-1: none). */
  cachedSeq = -1;
  /** Reader: an odd seqlock value whose writer was found dead (-1: none). */
  deadSeq = -1;

  constructor(
    readonly pool: Pool,
    readonly name: string,
    readonly root: Allocation,
    readonly readOnly: boolean,
  ) {
    this.owner = `pmap:${name}`;
    this.what = `persistent map "${name}"`;
    this.pageSize = pool.pageSize;
    if (root.count * this.pageSize < HEADER_RUN_BYTES) {
      throw new ClientError('CORRUPT', `${this.what}: its header run has ${root.count} pages, fewer than a map header needs`);
    }
    this.hdr = u32View(root.bytes(0, HEADER_RUN_BYTES));
    this.lock = new WriterLock(this.hdr, LOCK_INDEX, pool.region);
  }

  /** Entries: the writer's count; a reader's, as the writer last stored it. */
  entries(): number {
    return this.readOnly ? Atomics.load(this.hdr, HDR_COUNT) : this.count;
  }

  setTable(slots: Uint32Array, log2: number, seq: number, run: Allocation | null): void {
    this.slots = slots;
    this.cap = run === null ? 0 : 2 ** log2;
    this.mask = this.cap === 0 ? 0 : this.cap - 1;
    this.tableSeq = seq;
    this.tableRun = run;
    this.tablePfn = run === null ? 0 : run.pfn;
  }

  /* ---------------- seqlock: the writer's side ---------------- */

  seqBegin(): void {
    Atomics.add(this.hdr, HDR_SEQ, 1);
  }
  seqEnd(): void {
    Atomics.add(this.hdr, HDR_SEQ, 1);
  }

  /* ---------------- counters ---------------- */

  /** From the first change on, the counters on the pool are not exact until close or handover. */
  markDirty(): void {
    Atomics.store(this.hdr, HDR_CLEAN, 0);
    this.dirty = true;
  }

  /** Writes the exact counters and marks them so: the next open need not recount. */
  persistCounters(): void {
    for (const k of this.loaded) this.segU32[k]![SEG_W_LIVE] = this.segLive[k]!;
    this.hdr[HDR_TOMBS] = this.tombs;
    Atomics.store(this.hdr, HDR_COUNT, this.count);
    Atomics.store(this.hdr, HDR_CLEAN, this.strays ? 0 : 1);
    this.dirty = false;
  }

  /* ---------------- shared by every part ---------------- */

  /** Gives a run of the map that nothing points at back to the pool; when the pool refuses, the next open sweeps. */
  release(run: Allocation, what: string): void {
    try {
      poolCall(() => this.pool.release(run.pfn, run.count, { owner: this.owner }), what);
    } catch (e) {
      this.strays = true;
      throw e;
    }
  }

  /**
   * The pool run a table descriptor names: `<name>/t<seq>`, at the descriptor's pfn, this map's,
   * and large enough for its slots. Undefined for "no table" and for anything else found.
   */
  describedTable(desc: TableDescriptor): Allocation | undefined {
    if (desc.pfn === 0) return undefined;
    const run = poolCall(() => this.pool.find(`${this.name}/t${desc.seq}`), this.what);
    const fits = run !== undefined && run.pfn === desc.pfn && run.owner === this.owner && run.count * this.pageSize >= 2 ** desc.log2 * 8;
    return fits ? run : undefined;
  }

  /** The pool runs of the map's owner, its header run included. */
  ownedRuns(): Allocation[] {
    return poolCall(() => this.pool.allocations(), this.what).filter((a) => a.owner === this.owner);
  }

  /** Something read does not hold together: a reader retries (a writer was freeing it); a writer has found damage. */
  bad(message: string): never {
    if (this.readOnly) throw new Torn(message);
    throw new ClientError('CORRUPT', `${this.what}: ${message}`);
  }
}
