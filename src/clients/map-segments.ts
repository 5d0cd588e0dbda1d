/**
 * The PersistentMap's segments, as words: how large a new segment is, its
 * header (written before the segment is published, verified when a segment
 * is mapped), the walk of the records between its header and its bump
 * pointer, the dead mark of a superseded record, and the copy of a record.
 * Which segments the map holds is map-space.ts; compaction, map-compaction.ts.
 */
import { hashWords, KIND_ASCII, KIND_BYTES, LENGTH_MASK } from './codec.js';
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

/*
 * Dead records. Once a record is superseded or deleted no slot points at it
 * again, and the writer inverts its hash word (the line is in cache: the
 * lookup just compared its key). Compaction then tells it dead without a
 * probe of the table: its stored hash is the complement of its key's hash.
 * The mark is a hint: a record without it (a crash came first, or a key too
 * long to rehash cheaply) is probed as before. Readers never read the word.
 */

/** Keys up to this many bytes are rehashed to recognise the mark; longer ones are probed. */
const MARK_KEY_BYTES = 64;

/** Marks the record at word `w` dead. */
export function markDead(u32: Uint32Array, w: number): void {
  u32[w] = ~u32[w]! >>> 0;
}

/** True when the record at word `w` carries the dead mark (its hash word is its key's hash, inverted). */
export function markedDead(u32: Uint32Array, w: number, seed: number): boolean {
  const kinfo = u32[w + 1]!;
  const kl = kinfo & LENGTH_MASK;
  if (kl > MARK_KEY_BYTES) return false;
  return u32[w] === ~hashWords(u32, w + 3, kl, kinfo & (KIND_BYTES | KIND_ASCII), seed) >>> 0;
}

const COPY_LOOP_BYTES = 512;
/** Copies the `bytes` (a multiple of 8) of a record from `off` to `to` at `toOff`: small ones word by word, without a view. */
export function copyRecord(fromU8: Uint8Array, fromU32: Uint32Array, off: number, toU8: Uint8Array, toU32: Uint32Array, toOff: number, bytes: number): void {
  if (bytes > COPY_LOOP_BYTES) {
    toU8.set(fromU8.subarray(off, off + bytes), toOff);
    return;
  }
  for (let i = off >>> 2, j = toOff >>> 2, end = (off + bytes) >>> 2; i < end; i++, j++) toU32[j] = fromU32[i]!;
}
