/**
 * Byte helpers shared by the reader and the writer: big-endian words,
 * names as byte strings, and value comparison.
 *
 * Names (of nodes and properties) are byte strings in a blob. We hold them
 * as JavaScript strings with one character per byte (ISO-8859-1), so any
 * blob round-trips exactly whatever bytes its names hold. Values are raw
 * bytes; strings inside values are UTF-8 (see value.ts).
 */

/** A name's bytes as a string of char codes 0..255. */
export function decodeLatin1(bytes: Uint8Array, start: number, end: number): string {
  let s = '';
  // Short names (the norm) are cheapest built char by char; long ones in chunks.
  if (end - start <= 64) {
    for (let i = start; i < end; i++) s += String.fromCharCode(bytes[i]);
    return s;
  }
  for (let i = start; i < end; i += 4096) {
    s += String.fromCharCode.apply(null, Array.from(bytes.subarray(i, Math.min(end, i + 4096))));
  }
  return s;
}

/** True if every char of `s` fits in one byte, so it can be a name. */
export function isByteString(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}

/** Writes a byte string's bytes at `offset`; returns the offset after them. */
export function writeLatin1(out: Uint8Array, offset: number, s: string): number {
  for (let i = 0; i < s.length; i++) out[offset++] = s.charCodeAt(i);
  return offset;
}

export { bytesEqual } from '../util/bytes.js';

/**
 * A copy of `bytes[start, end)` that shares no memory with it, as a plain
 * Uint8Array. Not `bytes.slice()`: on a Buffer, slice() is a view.
 */
export function copyBytes(bytes: Uint8Array, start = 0, end = bytes.length): Uint8Array {
  return new Uint8Array(bytes.subarray(start, end));
}

/** Reads a big-endian u32; the caller has checked `offset + 4 <= bytes.length`. */
export function readBe32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset] << 24) | (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) | bytes[offset + 3]) >>> 0;
}

export function writeBe32(out: Uint8Array, offset: number, value: number): void {
  out[offset] = value >>> 24;
  out[offset + 1] = (value >>> 16) & 0xff;
  out[offset + 2] = (value >>> 8) & 0xff;
  out[offset + 3] = value & 0xff;
}

export function readBe64(bytes: Uint8Array, offset: number): bigint {
  return (BigInt(readBe32(bytes, offset)) << 32n) | BigInt(readBe32(bytes, offset + 4));
}

export function writeBe64(out: Uint8Array, offset: number, value: bigint): void {
  writeBe32(out, offset, Number(value >> 32n));
  writeBe32(out, offset + 4, Number(value & 0xffffffffn));
}
