/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum ext4,
 * btrfs and iSCSI use for metadata. Slicing-by-4 tables for bytes, and
 * slicing-by-8 for u32 words taken two at a time: pool records are
 * checksummed on every allocation, so this sits on the hot path.
 */
const POLY = 0x82f63b78;

const TABLES: Uint32Array[] = (() => {
  const t0 = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t0[n] = c >>> 0;
  }
  const tables = [t0];
  for (let t = 1; t < 8; t++) {
    const prev = tables[t - 1]!;
    const next = new Uint32Array(256);
    for (let n = 0; n < 256; n++) next[n] = (prev[n]! >>> 8) ^ t0[prev[n]! & 0xff]!;
    tables.push(next);
  }
  return tables;
})();
const T0 = TABLES[0]!;
const T1 = TABLES[1]!;
const T2 = TABLES[2]!;
const T3 = TABLES[3]!;
const T4 = TABLES[4]!;
const T5 = TABLES[5]!;
const T6 = TABLES[6]!;
const T7 = TABLES[7]!;

/** Continues a CRC-32C over `bytes[start, end)`. Start a new one with `crc = 0`. */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length, crc = 0): number {
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
  let c = (~crc >>> 0) ^ value;
  c = T3[c & 0xff]! ^ T2[(c >>> 8) & 0xff]! ^ T1[(c >>> 16) & 0xff]! ^ T0[c >>> 24]!;
  return ~c >>> 0;
}

/** Continues a CRC-32C over `count` little-endian u32 words of `words` from index `start`. */
export function crc32cWords(words: Uint32Array, start: number, count: number, crc = 0): number {
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
