/**
 * The PersistentMap's on-pool format (docs/clients.md): the word indices of
 * its header run, segment header and record, the limits a map is built
 * with, and the small word/size helpers every part of the map shares.
 */
import { LENGTH_MASK } from './codec.js';
import { MUTABLE } from './client-header.js';

/** Largest key, in bytes (UTF-8 for a string). */
export const MAX_KEY_BYTES = 1024 * 1024;
/** Largest value, in bytes (UTF-8 for a string). */
export const MAX_VALUE_BYTES = 2 * 1024 * 1024;

/* ---------------- layout (u32 indices unless said) ---------------- */

export const HDR_SEQ = MUTABLE / 4; // seqlock: odd while memory readers may hold is being released
export const HDR_CLEAN = HDR_SEQ + 1; // 1 when COUNT, TOMBS and the segments' LIVE words are exact
export const HDR_COUNT = HDR_SEQ + 2;
export const HDR_TOMBS = HDR_SEQ + 3;
export const HDR_ACTIVE = HDR_SEQ + 4; // which descriptor is live: 0 or 1
export const HDR_DESC = 256 / 4; // two descriptors of 4 words: table pfn, log2 slots, table seq, crc
export const SEGTAB_BYTES = 4096;
export const SEGTAB = SEGTAB_BYTES / 4; // per segment index: pfn, pages
export const MAX_SEGMENTS = 8192;
export const HEADER_RUN_BYTES = SEGTAB_BYTES + MAX_SEGMENTS * 8;

export const SEG_MAGIC = 0x47455350; // "PSEG"
export const SEG_W_MAGIC = 0;
export const SEG_W_MAP = 1;
export const SEG_W_INDEX = 2;
export const SEG_W_PAGES = 3;
export const SEG_W_USED = 4; // bump pointer: [SEG_HEADER, used) is a walkable run of complete records
export const SEG_W_FLAGS = 5;
export const SEG_W_LIVE = 6; // exact only when the header's CLEAN is 1
/** Segment header; 128 bytes, so that records of 128 bytes (16-byte keys, 100-byte values) fill two cache lines the prefetcher fetches as a pair. */
export const SEG_HEADER = 128;
export const SEG_FLAG_DEDICATED = 1;
/** A ref holds a segment index (13 bits) and an offset in 8-byte units (19 bits): 4 MiB per segment. */
export const SEG_MAX_BYTES = 4 * 1024 * 1024;
export const SEG_MIN_BYTES = 64 * 1024;
/** Records larger than this get a segment of their own. */
export const DEDICATED_MIN = 256 * 1024;
/**
 * A segment less than 1/COMPACT_BELOW live is a compaction candidate; candidates are compacted while
 * the map's garbage is more than 1/COMPACT_BELOW of what its small segments hold (map-space.ts,
 * compactionDue): outside the active segment, garbage at most (COMPACT_BELOW-1)× the live bytes plus
 * the segments' free tails, and under 1/(COMPACT_BELOW-1) byte copied per byte of garbage reclaimed.
 */
export const COMPACT_BELOW = 2;

export const EMPTY = 0;
export const TOMB = 1;
/** Record: [hash u32][key length | kind][value length | kind][key][value], padded to 8 bytes. */
export const REC_HEADER = 12;
export const MIN_TABLE_LOG2 = 10;
export const MAX_TABLE_LOG2 = 28;

export const NO_U8 = new Uint8Array(0);
export const NO_U32 = new Uint32Array(0);
export const NO_BUF = Buffer.alloc(0);

/* ---------------- small helpers ---------------- */

export function align8(n: number): number {
  return (n + 7) & ~7;
}
export function nextPow2(n: number): number {
  return n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n));
}
export function targetLog2(entries: number): number {
  return Math.max(MIN_TABLE_LOG2, Math.ceil(Math.log2(Math.max(2, entries * 2))));
}
/** Bytes of the record whose key and value info words are given. */
export function recordBytes(kinfo: number, vinfo: number): number {
  // Not align8: a damaged record's lengths may add up past 2^31, which its int32 mask makes
  // negative, and a walk of the segment would step back instead of stopping at the record.
  const n = REC_HEADER + (kinfo & LENGTH_MASK) + (vinfo & LENGTH_MASK);
  return n + (-n & 7);
}
export function u32View(bytes: Uint8Array): Uint32Array {
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
}
