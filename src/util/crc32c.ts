/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum ext4,
 * btrfs and iSCSI use for metadata. Slicing-by-4 tables for bytes, and
 * slicing-by-8 for u32 words taken two at a time; up to eight words, once
 * a program checksums many, position tables (crc32cShortWords): pool records
 * are checksummed on every allocation, so this sits on the hot path.
 */
const POLY = 0x82f63b78;

/**
 * The eight slicing tables, one array, filled on first need rather than at
 * load: filling them runs through the interpreter (~0.2 ms: each typed-array
 * access of cold code is an inline-cache call), and a program that restores
 * a pool after a handover checksums only its superblock (252 bytes) before
 * it is back at work. Until then crc32c() goes bit by bit, which costs less
 * over a few hundred bytes (COLD_BYTES) than filling the tables.
 */
const ALL = new Uint32Array(8 * 256);
const T0 = ALL.subarray(0, 256);
const T1 = ALL.subarray(256, 512);
const T2 = ALL.subarray(512, 768);
const T3 = ALL.subarray(768, 1024);
const T4 = ALL.subarray(1024, 1280);
const T5 = ALL.subarray(1280, 1536);
const T6 = ALL.subarray(1536, 1792);
const T7 = ALL.subarray(1792, 2048);
let filled = false;
/** Bytes crc32c() may still take bit by bit before it fills the tables. */
let coldBudget = 4096;

function fillTables(): void {
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    ALL[n] = c;
  }
  // Table t is table t - 1 advanced by one zero byte.
  for (let i = 256; i < ALL.length; i++) {
    const prev = ALL[i - 256]!;
    ALL[i] = (prev >>> 8) ^ ALL[prev & 0xff]!;
  }
  filled = true;
}

/** The definition, a bit at a time: no tables. */
function crc32cBitwise(bytes: Uint8Array, start: number, end: number, crc: number): number {
  let c = ~crc >>> 0;
  for (let i = start; i < end; i++) {
    c ^= bytes[i]!;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  }
  return ~c >>> 0;
}

/** Continues a CRC-32C over `bytes[start, end)`. Start a new one with `crc = 0`. */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length, crc = 0): number {
  if (!filled) {
    coldBudget -= end - start;
    if (coldBudget >= 0) return crc32cBitwise(bytes, start, end, crc);
    fillTables();
  }
  let c = ~crc >>> 0;
  let i = start;
  for (; i + 4 <= end; i += 4) {
    c ^= bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    c = T3[c & 0xff]! ^ T2[(c >>> 8) & 0xff]! ^ T1[(c >>> 16) & 0xff]! ^ T0[c >>> 24]!;
  }
  for (; i < end; i++) c = T0[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** Continues a CRC-32C over one little-endian u32, without building a byte array. */
export function crc32cU32(value: number, crc = 0): number {
  if (!filled) fillTables();
  let c = (~crc >>> 0) ^ value;
  c = T3[c & 0xff]! ^ T2[(c >>> 8) & 0xff]! ^ T1[(c >>> 16) & 0xff]! ^ T0[c >>> 24]!;
  return ~c >>> 0;
}

/**
 * Position tables for runs of at most eight words. A CRC is linear over GF(2):
 * the register after a message is the XOR of what each of its bytes alone
 * would leave, and what a byte leaves depends only on its value and on how
 * many bytes follow it. POS[(d * 4 + b) * 256 + v] is what byte b (0 = low)
 * of a word followed by d more words leaves when it holds v. The start
 * register counts as XORed into the first word (the same linearity), and a
 * word of zeros leaves nothing — most of a pool record's words are zeros.
 * Eight lookups a word become four, and a zero word costs a test.
 *
 * 32 KiB, filled (~8,000 steps) only once a program has checksummed
 * POSITIONAL_COLD_CALLS short runs: one that restores a pool and makes a few
 * allocations never pays for it.
 */
const POS = new Uint32Array(8 * 4 * 256);
let positionalFilled = false;
const POSITIONAL_COLD_CALLS = 4096;
let positionalColdCalls = POSITIONAL_COLD_CALLS;

function fillPositional(): void {
  if (!filled) fillTables();
  // Followed by no word, byte b is followed by 3 - b bytes: slicing table 3 - b. By one word: 7 - b.
  for (let b = 0; b < 4; b++) {
    POS.set(ALL.subarray((3 - b) * 256, (4 - b) * 256), b * 256);
    POS.set(ALL.subarray((7 - b) * 256, (8 - b) * 256), (4 + b) * 256);
  }
  // One word further from the end: what it leaves, run through four zero bytes.
  for (let i = 2 * 1024; i < POS.length; i++) {
    const x = POS[i - 1024]!;
    POS[i] = T3[x & 0xff]! ^ T2[(x >>> 8) & 0xff]! ^ T1[(x >>> 16) & 0xff]! ^ T0[x >>> 24]!;
  }
  positionalFilled = true;
}

/** crc32cWords() of 1 to 8 words, by the position tables (filled). */
function crc32cShortWords(words: Uint32Array, start: number, count: number, crc: number): number {
  let c = 0;
  let x = words[start]! ^ ~crc;
  for (let k = 0, t = (count - 1) * 1024; ; ) {
    if (x !== 0) c ^= POS[t + (x & 0xff)]! ^ POS[t + 256 + ((x >>> 8) & 0xff)]! ^ POS[t + 512 + ((x >>> 16) & 0xff)]! ^ POS[t + 768 + (x >>> 24)]!;
    if (++k === count) break;
    x = words[start + k]!;
    t -= 1024;
  }
  return ~c >>> 0;
}

/** Continues a CRC-32C over `count` little-endian u32 words of `words` from index `start`. */
export function crc32cWords(words: Uint32Array, start: number, count: number, crc = 0): number {
  if (count > 0 && count <= 8) {
    if (positionalFilled) return crc32cShortWords(words, start, count, crc);
    if (--positionalColdCalls < 0) {
      fillPositional();
      return crc32cShortWords(words, start, count, crc);
    }
  }
  if (!filled) fillTables();
  let c = ~crc | 0;
  let i = start;
  const end = start + count;
  // Two words per step: the eight lookups of a step do not wait on one another.
  for (; i + 2 <= end; i += 2) {
    const a = c ^ words[i]!;
    const b = words[i + 1]!;
    c =
      T7[a & 0xff]! ^ T6[(a >>> 8) & 0xff]! ^ T5[(a >>> 16) & 0xff]! ^ T4[a >>> 24]! ^
      T3[b & 0xff]! ^ T2[(b >>> 8) & 0xff]! ^ T1[(b >>> 16) & 0xff]! ^ T0[b >>> 24]!;
  }
  if (i < end) {
    c ^= words[i]!;
    c = T3[c & 0xff]! ^ T2[(c >>> 8) & 0xff]! ^ T1[(c >>> 16) & 0xff]! ^ T0[c >>> 24]!;
  }
  return ~c >>> 0;
}
