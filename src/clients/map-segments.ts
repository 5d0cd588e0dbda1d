/**
 * The PersistentMap's segments, as words: how large a new segment is, its
 * header (written before the segment is published, verified when a segment
 * is mapped), and the walk of the records between its header and its bump
 * pointer. Which segments the map holds, and compaction, stay with the map.
 */
import { LENGTH_MASK } from './codec.js';
import {
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  nextPow2,
  recordBytes,
  SEG_FLAG_DEDICATED,
  SEG_HEADER,
  SEG_MAGIC,
  SEG_MAX_BYTES,
  SEG_MIN_BYTES,
  SEG_W_FLAGS,
  SEG_W_INDEX,
  SEG_W_LIVE,
  SEG_W_MAGIC,
  SEG_W_MAP,
  SEG_W_PAGES,
  SEG_W_USED,
} from './map-layout.js';

/**
 * Bytes to ask for a segment that must hold a record of `bytes`: exactly
 * that for a dedicated one; for a small one, a power of two that grows with
 * the small segments the map already has (`smallSegmentBytes`).
 */
export function segmentSize(bytes: number, dedicated: boolean, smallSegmentBytes: number): number {
  if (dedicated) return SEG_HEADER + bytes;
  const grow = Math.min(SEG_MAX_BYTES, Math.max(SEG_MIN_BYTES, nextPow2(smallSegmentBytes / 4)));
  return Math.min(SEG_MAX_BYTES, Math.max(grow, nextPow2(SEG_HEADER + bytes)));
}

/** Writes the header of a fresh segment k of map `mapId`, the magic last. */
export function initSegmentHeader(u32: Uint32Array, mapId: number, k: number, pages: number, dedicated: boolean): void {
  u32[SEG_W_MAP] = mapId;
  u32[SEG_W_INDEX] = k;
  u32[SEG_W_PAGES] = pages;
  u32[SEG_W_USED] = SEG_HEADER;
  u32[SEG_W_FLAGS] = dedicated ? SEG_FLAG_DEDICATED : 0;
  u32[SEG_W_LIVE] = 0;
  Atomics.store(u32, SEG_W_MAGIC, SEG_MAGIC);
}

/** What is wrong with the header of segment k (`pages` pages) of map `mapId`, or null when it is sound. */
export function segmentHeaderFault(u32: Uint32Array, mapId: number, k: number, pages: number): string | null {
  const used = u32[SEG_W_USED]!;
  if (u32[SEG_W_MAGIC] !== SEG_MAGIC || u32[SEG_W_MAP] !== mapId || u32[SEG_W_INDEX] !== k || u32[SEG_W_PAGES] !== pages) {
    return 'has a header that is not this map segment';
  }
  if (used < SEG_HEADER || used > u32.byteLength || (used & 7) !== 0) return `has a bump pointer of ${used}`;
  return null;
}

/** The offsets of the records of segment k, walked from its header to its bump pointer; a malformed record ends the walk and is reported. */
export function recordStarts(u32: Uint32Array, k: number, problems: string[]): Set<number> {
  const used = u32[SEG_W_USED]!;
  const starts = new Set<number>();
  let off = SEG_HEADER;
  while (off < used) {
    const kl = u32[(off >>> 2) + 1]! & LENGTH_MASK;
    const vl = u32[(off >>> 2) + 2]! & LENGTH_MASK;
    const total = recordBytes(kl, vl);
    if (kl > MAX_KEY_BYTES || vl > MAX_VALUE_BYTES || off + total > used) {
      problems.push(`segment ${k}: malformed record at ${off}`);
      break;
    }
    starts.add(off);
    off += total;
  }
  return starts;
}
