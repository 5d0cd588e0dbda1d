/**
 * What the PersistentMap's compaction reads before it moves anything: the
 * next group of live records of a segment, with the slots that point at
 * them. Records marked dead are skipped without a probe of the table; the
 * home slots of the others are loaded together, so that their table misses
 * overlap instead of following each other. Moving them (which needs the
 * map's segments) stays with the map.
 */
import { recordBytes } from './map-layout.js';
import { markedDead } from './map-segments.js';
import { slotOf } from './map-table.js';

/** Records looked at per group. */
const GROUP = 16;

/** The group gatherLive found: `offsets[i]` is a live record of `sizes[i]` bytes, `slots[i]` the slot pointing at it. */
export const gathered = {
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
export function gatherLive(from: Uint32Array, k: number, off: number, used: number, slots: Uint32Array, cap: number, mask: number, seed: number): boolean {
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
