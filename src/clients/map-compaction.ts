/**
 * The PersistentMap's compaction: the live records of a segment that has
 * become sparse, moved to the active segment so that the segment can be
 * emptied. What it reads before it moves anything is the next group of live
 * records, with the slots that point at them: records marked dead are
 * skipped without a probe of the table; the home slots of the others are
 * loaded together, so that their table misses overlap instead of following
 * each other. Which segment goes first (the emptiest candidate) is here;
 * which segments are queued, when compaction is due, and what becomes of an
 * emptied one, is map-space.ts.
 */
import { ClientError } from './errors.js';
import { recordBytes, SEG_HEADER, SEG_W_USED } from './map-layout.js';
import { fault } from './map-runtime.js';
import { copyRecord, markedDead } from './map-segments.js';
import { compactionDue, emptied, freeSegment, postpone, postponed, reserve } from './map-space.js';
import type { MapState } from './map-state.js';
import { slotOf } from './map-table.js';

/** Records looked at per group. */
const GROUP = 16;

/** The group gatherLive found: `offsets[i]` is a live record of `sizes[i]` bytes, `slots[i]` the slot pointing at it. */
const gathered = {
  offsets: new Uint32Array(GROUP),
  sizes: new Uint32Array(GROUP),
  slots: new Uint32Array(GROUP),
  /** How many of them are live. */
  live: 0,
  /** Where the next group starts. */
  next: 0,
  /** Where the loads that only warm the cache put their result (so that the compiler keeps them). */
  touched: 0,
};

/**
 * Gathers the live records among the next GROUP not marked dead of segment
 * `k` (words `from`, records in `[off, used)`) into `gathered`. Returns
 * false, having gathered nothing, at a malformed record (its offset in
 * `gathered.next`).
 */
function gatherLive(from: Uint32Array, k: number, off: number, used: number, slots: Uint32Array, cap: number, mask: number, seed: number): boolean {
  const g = gathered;
  const offsets = g.offsets;
  const sizes = g.sizes;
  let n = 0;
  while (n < GROUP && off < used) {
    const w = off >>> 2;
    const total = recordBytes(from[w + 1]!, from[w + 2]!);
    if (off + total > used) {
      g.live = 0;
      g.next = off;
      return false;
    }
    if (!markedDead(from, w, seed)) {
      offsets[n] = off;
      sizes[n++] = total;
    }
    off += total;
  }
  let touch = 0;
  for (let c = 0; c < n; c++) touch ^= slots[2 * (from[offsets[c]! >>> 2]! & mask)]!;
  g.touched = touch;
  let live = 0;
  for (let c = 0; c < n; c++) {
    const at = offsets[c]!;
    const slot = slotOf(slots, cap, mask, from[at >>> 2]!, ((k << 19) | (at >>> 3)) >>> 0);
    if (slot < 0) continue;
    offsets[live] = at;
    sizes[live] = sizes[c]!;
    g.slots[live++] = slot;
  }
  g.live = live;
  g.next = off;
  return true;
}

/**
 * Compacts candidates, the emptiest first, while compaction is due
 * (compactionDue: the map's garbage past its bound); with `all`
 * (compact()), every queued segment: compacted, or freed when empty.
 */
export function compactPending(s: MapState, all = false): void {
  if (s.compacting || (!all && postponed(s))) return;
  s.compacting = true;
  let k = -1;
  try {
    while (all || compactionDue(s)) {
      k = takeCandidate(s);
      if (k < 0) break;
      if (s.segLive[k] === 0) {
        if (all) freeSegment(s, k);
        else emptied(s, k);
      } else {
        compactSegment(s, k);
      }
    }
    s.compactionBackoff = 0;
  } catch (e) {
    // Compaction runs after the operation committed: a full pool only postpones it. The
    // candidates stay queued, the one being compacted among them.
    if (!(e instanceof ClientError && e.code === 'NO_SPACE')) throw e;
    postpone(s, k);
  } finally {
    s.compacting = false;
  }
}

/**
 * Takes the queued segment with the smallest live fraction off the queue
 * (the most garbage freed per byte moved), dropping the entries that are no
 * longer candidates: freed, the spare, or the active segment. -1 when none
 * is left. (A queued segment stays sparse: only the active one gains records.)
 */
function takeCandidate(s: MapState): number {
  const q = s.pending;
  let best = -1;
  let bestAt = -1;
  let bestFraction = Infinity;
  for (let i = q.length - 1; i >= 0; i--) {
    const k = q[i]!;
    const used = s.segUsed[k]! - SEG_HEADER;
    if (s.segRun[k] === null || k === s.active || s.spares.includes(k)) {
      s.segQueued[k] = 0;
      q[i] = q[q.length - 1]!;
      q.pop();
      if (bestAt === q.length) bestAt = i;
      continue;
    }
    const fraction = used > 0 ? s.segLive[k]! / used : 0;
    if (fraction < bestFraction) {
      best = k;
      bestAt = i;
      bestFraction = fraction;
    }
  }
  if (best < 0) return -1;
  s.segQueued[best] = 0;
  q[bestAt] = q[q.length - 1]!;
  q.pop();
  return best;
}

/**
 * Moves the live records of segment k to the active one, each published by
 * one store of its slot (old and new copies are identical: a crash between
 * moves leaves every entry readable), then frees k.
 */
function compactSegment(s: MapState, k: number): void {
  const from = s.segU32[k]!;
  const fromU8 = s.segU8[k]!;
  const used = s.segUsed[k]!;
  const slots = s.slots;
  const g = gathered;
  const group = g.offsets;
  const groupSizes = g.sizes;
  const groupSlots = g.slots;
  for (let off = SEG_HEADER; off < used; off = g.next) {
    if (!gatherLive(from, k, off, used, slots, s.cap, s.mask, s.seed)) {
      throw new ClientError('CORRUPT', `${s.what}: segment ${k} has a malformed record at ${g.next}`);
    }
    const live = g.live;
    // Copy them past the active segment's bump pointer, move it over them with one store, then
    // publish each with one store of its slot (as many as fit; the rest in the next segment).
    for (let c = 0; c < live; ) {
      const a = reserve(s, groupSizes[c]!);
      const toU8 = s.segU8[a]!;
      const toU32 = s.segU32[a]!;
      const start = s.segUsed[a]!;
      const room = s.segCap[a]!;
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
      s.segUsed[a] = end;
      for (let to = start; c < last; c++) {
        Atomics.store(slots, 2 * groupSlots[c]!, ((a << 19) | (to >>> 3)) >>> 0);
        fault('compact:moved');
        const total = groupSizes[c]!;
        s.segLive[a] += total;
        s.segLive[k] -= total;
        s.garbage += total;
        to += total;
      }
    }
  }
  if (s.segLive[k] !== 0) throw new ClientError('CORRUPT', `${s.what}: segment ${k} still counts ${s.segLive[k]} live bytes after compaction`);
  emptied(s, k);
}
