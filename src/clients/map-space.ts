/**
 * The PersistentMap's segment space: which segments the map holds, and how
 * they come and go — the segment the next record is appended to (the active
 * one, a recycled spare, or a new run published in the segment table), a
 * segment mapped from the segment table (a reader, lazily; a writer, at
 * open), the garbage a superseded record leaves, and what becomes of a
 * segment that holds little or nothing live: queued for compaction, kept as
 * the spare, or unpublished and given back. Moving live records out of a
 * queued segment is map-compaction.ts; a segment's words are map-segments.ts.
 */
import { PmpoolError } from '../errors.js';
import { HUGE_EXTENT_BYTES, type Allocation } from '../index.js';
import { poolCall } from './client-header.js';
import { ClientError } from './errors.js';
import {
  COMPACT_BELOW,
  DEDICATED_MIN,
  MAX_SEGMENTS,
  NO_BUF,
  NO_U32,
  NO_U8,
  recordBytes,
  SEG_FLAG_DEDICATED,
  SEG_HEADER,
  SEG_MAX_BYTES,
  SEG_W_FLAGS,
  SEG_W_USED,
  SEGTAB,
  u32View,
} from './map-layout.js';
import { fault } from './map-runtime.js';
import { initSegmentHeader, markDead, segmentHeaderFault, segmentSize } from './map-segments.js';
import type { MapState } from './map-state.js';

/** Emptied segments a writer keeps for reuse. */
const MAX_SPARES = 1;

/**
 * A fresh run of `pages` for the map's table or a segment. A run of 2 MiB or more starts on a 2 MiB
 * boundary where the pool has one free, else anywhere: every extent of it can then be one huge page
 * when the map is asked for them (PersistentMap.preferHugePages).
 */
export function newRun(s: MapState, pages: number, name: string, what: string): Allocation {
  const extentPages = HUGE_EXTENT_BYTES / s.pageSize;
  let run: Allocation | undefined;
  try {
    if (Number.isInteger(extentPages) && pages >= extentPages) {
      try {
        run = poolCall(() => s.pool.alloc(pages, { name, owner: s.owner, align: extentPages }), what);
      } catch (e) {
        if (!(e instanceof ClientError && e.code === 'NO_SPACE')) throw e;
      }
    }
    run ??= poolCall(() => s.pool.alloc(pages, { name, owner: s.owner }), what);
  } catch (e) {
    // The map gives back every run of its names it does not publish (at close, or at the next open
    // after a crash): one still there is a run the header's damage unpublished, records and all.
    if (e instanceof PmpoolError && e.code === 'NAME_TAKEN') throw new ClientError('CORRUPT', `${what}: the pool already holds "${name}", which the map does not publish`, { cause: e });
    throw e;
  }
  return run;
}

/** A segment with `bytes` free at its bump pointer. Throws NO_SPACE before anything changes. */
export function reserve(s: MapState, bytes: number): number {
  if (bytes > DEDICATED_MIN) return newSegment(s, bytes, true);
  const a = s.active;
  if (a >= 0 && s.segUsed[a]! + bytes <= s.segCap[a]!) return a;
  const spare = s.spares.length > 0 ? s.spares[s.spares.length - 1]! : -1;
  const k = spare >= 0 && SEG_HEADER + bytes <= s.segCap[spare]! ? recycle(s, spare) : newSegment(s, bytes, false);
  s.active = k;
  if (a >= 0) retire(s, a);
  return k;
}

/** The active segment is full: it becomes a compaction candidate like any other. */
function retire(s: MapState, k: number): void {
  if (s.segLive[k] === 0) emptied(s, k);
  else if (sparse(s, k)) queue(s, k);
}

/**
 * Segment k holds no live record. A small one as large as the active
 * segment is kept as the spare (at most one): the next segment the map
 * needs reuses its pages, already mapped and touched, instead of taking
 * fresh ones from the pool. Any other is freed.
 */
export function emptied(s: MapState, k: number): void {
  // Room for a postponed compaction, in the spare or in the pool.
  s.compactionWait = 0;
  if (s.spares.length < MAX_SPARES && canKeep(s, k)) {
    // The spare's old records are not garbage the policy counts: it holds nothing live, and its
    // bytes are the next appends' room, not held for a live record.
    s.garbage -= garbageOf(s, k);
    s.spares.push(k);
  } else {
    freeSegment(s, k);
  }
}

export function canKeep(s: MapState, k: number): boolean {
  const a = s.active;
  return k !== a && !s.segDedicated[k] && (a < 0 || s.segCap[k]! >= s.segCap[a]!);
}

/**
 * Empties the spare for appending: its bump pointer goes back to the
 * header (one store, inside a seqlock write section: a reader may still be
 * reading a record there that it found before the record moved).
 */
function recycle(s: MapState, k: number): number {
  s.spares.pop();
  // Queued while it was dying (and left there, compaction not being due): as the active segment it is no candidate.
  dequeue(s, k);
  s.seqBegin();
  try {
    Atomics.store(s.segU32[k]!, SEG_W_USED, SEG_HEADER);
    fault('segment:recycled');
    s.segUsed[k] = SEG_HEADER;
  } finally {
    s.seqEnd();
  }
  return k;
}

function newSegment(s: MapState, bytes: number, dedicated: boolean): number {
  let k = -1;
  for (let i = 0; i < MAX_SEGMENTS; i++) {
    if (s.segRun[i] === null) {
      k = i;
      break;
    }
  }
  if (k < 0) throw new ClientError('NO_SPACE', `${s.what} has all its ${MAX_SEGMENTS} segments in use; nothing changed`);
  const size = segmentSize(bytes, dedicated, s.smallSegmentBytes);
  const least = Math.ceil((SEG_HEADER + bytes) / s.pageSize);
  let pages = Math.ceil(size / s.pageSize);
  let run: Allocation;
  for (;;) {
    try {
      run = newRun(s, pages, `${s.name}/s${k}`, `${s.what}: a new segment of ${pages} pages`);
      break;
    } catch (e) {
      if (!(e instanceof ClientError && e.code === 'NO_SPACE')) throw e;
      // The pool is full: the spare goes back first.
      if (s.spares.length > 0) {
        freeSegment(s, s.spares[s.spares.length - 1]!);
        continue;
      }
      // A full or fragmented pool may still have room for a smaller segment: that is how compaction gets going again.
      if (pages <= least) throw e;
      pages = Math.max(least, Math.floor(pages / 2));
    }
  }
  // The pool had room: a postponed compaction may find some too.
  s.compactionWait = 0;
  fault('segment:allocated');
  if (run.pfn >= 2 ** 32) throw new ClientError('NO_SPACE', `${s.what}: a segment at pfn ${run.pfn} is beyond what a map can address`);
  // Appends fill a segment from its start: its pages mapped in one call cost less than one fault each.
  run.populate();
  const u32 = u32View(run.bytes(0, Math.min(run.count * s.pageSize, SEG_MAX_BYTES)));
  initSegmentHeader(u32, s.mapId, k, run.count, dedicated);
  s.hdr[SEGTAB + 2 * k + 1] = run.count;
  Atomics.store(s.hdr, SEGTAB + 2 * k, run.pfn);
  fault('segment:published');
  adopt(s, k, run, dedicated);
  return k;
}

/** Maps segment k from the segment table (reader: lazily; writer: at open). Throws or leaves it unloaded when invalid. */
export function loadSegment(s: MapState, k: number, lenient: boolean): void {
  const pfn = Atomics.load(s.hdr, SEGTAB + 2 * k);
  const pages = s.hdr[SEGTAB + 2 * k + 1]!;
  const fail = (why: string): void => {
    if (lenient) return;
    throw new ClientError('CORRUPT', `${s.what}: segment ${k} ${why}`);
  };
  if (pfn === 0) return fail('is not published');
  const run = poolCall(() => s.pool.find(`${s.name}/s${k}`), s.what);
  if (run === undefined || run.pfn !== pfn || run.count !== pages || run.owner !== s.owner) return fail(`(pfn ${pfn}) is not the pool allocation "${s.name}/s${k}"`);
  const u32 = u32View(run.bytes(0, Math.min(run.count * s.pageSize, SEG_MAX_BYTES)));
  const why = segmentHeaderFault(u32, s.mapId, k, pages);
  if (why !== null) return fail(why);
  adopt(s, k, run, (u32[SEG_W_FLAGS]! & SEG_FLAG_DEDICATED) !== 0);
}

function adopt(s: MapState, k: number, run: Allocation, dedicated: boolean): void {
  const u8 = run.bytes(0, Math.min(run.count * s.pageSize, SEG_MAX_BYTES));
  s.segU8[k] = u8;
  s.segU32[k] = u32View(u8);
  s.segBuf[k] = Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
  s.segRun[k] = run;
  s.segCap[k] = u8.byteLength;
  s.segUsed[k] = s.segU32[k]![SEG_W_USED]!;
  s.segLive[k] = 0;
  s.segDedicated[k] = dedicated ? 1 : 0;
  s.loaded.add(k);
  if (!dedicated) s.smallSegmentBytes += u8.byteLength;
}

export function forget(s: MapState, k: number): void {
  if (!s.segDedicated[k]) {
    s.smallSegmentBytes -= s.segCap[k]!;
    if (!s.spares.includes(k)) s.garbage -= garbageOf(s, k);
  }
  s.segU8[k] = NO_U8;
  s.segU32[k] = NO_U32;
  s.segBuf[k] = NO_BUF;
  s.segRun[k] = null;
  s.segCap[k] = 0;
  s.segUsed[k] = 0;
  s.segLive[k] = 0;
  s.segDedicated[k] = 0;
  // Off the queue: its index may be reused by a segment that is no candidate (a dedicated one, the active one).
  dequeue(s, k);
  s.loaded.delete(k);
  if (s.active === k) s.active = -1;
  const spare = s.spares.indexOf(k);
  if (spare >= 0) s.spares.splice(spare, 1);
}

/** Unpublishes segment k and gives its run back (inside a seqlock write section). */
export function dropSegment(s: MapState, k: number): void {
  const run = s.segRun[k]!;
  Atomics.store(s.hdr, SEGTAB + 2 * k, 0);
  s.hdr[SEGTAB + 2 * k + 1] = 0;
  fault('segment:unpublished');
  forget(s, k);
  s.release(run, `${s.what}: releasing segment ${k}`);
}

export function freeSegment(s: MapState, k: number): void {
  s.seqBegin();
  try {
    dropSegment(s, k);
  } finally {
    s.seqEnd();
  }
}

/** A superseded or deleted record: account it as garbage; free or queue its segment. */
export function dropRecord(s: MapState, ref: number): void {
  const k = ref >>> 19;
  const u32 = s.segU32[k]!;
  const w = (ref & 0x7ffff) << 1;
  const total = recordBytes(u32[w + 1]!, u32[w + 2]!);
  s.segLive[k] -= total;
  if (!s.segDedicated[k]) s.garbage += total;
  markDead(u32, w);
  if (k === s.active) return;
  if (s.segLive[k] === 0) emptied(s, k);
  else if (sparse(s, k)) queue(s, k);
}

/** A small segment whose live records are less than 1/COMPACT_BELOW of what it holds: a compaction candidate. */
export function sparse(s: MapState, k: number): boolean {
  return !s.segDedicated[k] && s.segLive[k]! * COMPACT_BELOW < s.segUsed[k]! - SEG_HEADER;
}

/** The used bytes of segment k that no live record holds. */
export function garbageOf(s: MapState, k: number): number {
  return s.segUsed[k]! - SEG_HEADER - s.segLive[k]!;
}

/** What `s.garbage` counts, summed afresh (an open sets the counter with it; check() compares). */
export function countGarbage(s: MapState): number {
  let garbage = 0;
  for (const k of s.loaded) if (!s.segDedicated[k] && !s.spares.includes(k)) garbage += garbageOf(s, k);
  return garbage;
}

/**
 * Whether candidates are to be compacted now: when garbage is more than
 * 1/COMPACT_BELOW of the bytes the small segments hold (the spare aside).
 * The bound is the map's, not each segment's: a segment half dead is left
 * alone while the map as a whole is not, so a map being rewritten lets its
 * old segments die out — freed with nothing copied — instead of moving their
 * survivors at one record per update; what it holds stays within
 * COMPACT_BELOW × its live bytes, plus the active segment's free tail.
 */
export function compactionDue(s: MapState): boolean {
  let held = s.smallSegmentBytes;
  for (const k of s.spares) held -= s.segCap[k]!;
  return s.garbage * COMPACT_BELOW > held;
}

/** Most set or delete calls a postponed compaction waits before it tries the pool again. */
const MAX_COMPACTION_WAIT = 1024;

/**
 * Compaction met a full pool (while compacting `current`, or -1): it is
 * postponed, not given up. Its candidates stay queued — `current` again among
 * them, less the segments compact() queued that are no candidates (not
 * sparse) — and the next attempt waits for the map to give pages back or to
 * get a new segment from the pool, or else for a number of set and delete
 * calls that doubles with each attempt that fails again (each costs a few
 * refused allocations).
 */
export function postpone(s: MapState, current: number): void {
  const q = s.pending;
  for (let i = q.length - 1; i >= 0; i--) if (!candidate(s, q[i]!)) dequeue(s, q[i]!);
  if (current >= 0 && candidate(s, current)) queue(s, current);
  s.compactionBackoff = Math.min(2 * s.compactionBackoff || 1, MAX_COMPACTION_WAIT);
  s.compactionWait = s.compactionBackoff;
}

/** Whether a compaction that met a full pool is still waiting (counting this call down). */
export function postponed(s: MapState): boolean {
  if (s.compactionWait === 0) return false;
  s.compactionWait--;
  return true;
}

/** Whether segment k is one compaction moves records out of: small, sparse, live, neither active nor the spare. */
function candidate(s: MapState, k: number): boolean {
  return s.segRun[k] !== null && k !== s.active && !s.spares.includes(k) && s.segLive[k]! > 0 && sparse(s, k);
}

export function queue(s: MapState, k: number): void {
  if (s.segQueued[k]) return;
  s.segQueued[k] = 1;
  s.pending.push(k);
}

/** Takes segment k off the compaction queue, if it is on it. */
export function dequeue(s: MapState, k: number): void {
  if (!s.segQueued[k]) return;
  s.segQueued[k] = 0;
  const at = s.pending.indexOf(k);
  if (at >= 0) s.pending.splice(at, 1);
}
