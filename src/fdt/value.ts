/**
 * Property values: what `Fdt.set` accepts and how the typed getters read
 * them back (the fdtput/fdtget types: strings, u32 cells, u64, bytes).
 * Cells are big-endian (devicetree specification §2.2.4); strings are
 * UTF-8 and NUL-terminated, a string list is strings back to back.
 */
import { isAscii } from 'node:buffer';
import { copyBytes, readBe32, readBe64, writeBe32, writeBe64 } from './bytes.js';
import { fail } from './errors.js';

/**
 * A value for `set`: string → one NUL-terminated string; string[] → a
 * string list; number → one u32 cell; number[] → u32 cells; bigint → one
 * u64 (two cells); Uint8Array → the bytes as they are.
 */
export type FdtValue = string | string[] | number | number[] | bigint | Uint8Array;

const utf8 = new TextEncoder();
let utf8Strict: InstanceType<typeof TextDecoder> | undefined; // made on first use: the first TextDecoder costs ~0.1 ms of start-up

export function encodeValue(value: FdtValue): Uint8Array {
  if (typeof value === 'string') return encodeStrings([value]);
  if (typeof value === 'number') return encodeCells([value]);
  if (typeof value === 'bigint') return encodeU64(value);
  if (value instanceof Uint8Array) return copyBytes(value);
  if (Array.isArray(value)) {
    if (value.every((v): v is string => typeof v === 'string')) return encodeStrings(value);
    if (value.every((v): v is number => typeof v === 'number')) return encodeCells(value);
  }
  return fail('BADVALUE', 'a value is a string, string[], number, number[], bigint or Uint8Array');
}

function encodeStrings(list: readonly string[]): Uint8Array {
  const parts = list.map((s) => {
    // A NUL inside would silently turn one string into two.
    if (s.includes('\0')) fail('BADVALUE', 'a string value cannot contain NUL');
    return utf8.encode(s);
  });
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length + 1, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length + 1; // the NUL is already there: the array starts zeroed
  }
  return out;
}

function encodeCells(cells: readonly number[]): Uint8Array {
  const out = new Uint8Array(cells.length * 4);
  cells.forEach((c, i) => {
    if (!Number.isInteger(c) || c < 0 || c > 0xffffffff) fail('BADVALUE', `cell ${c} is not a u32`);
    writeBe32(out, i * 4, c);
  });
  return out;
}

function encodeU64(v: bigint): Uint8Array {
  if (v < 0n || v > 0xffffffffffffffffn) fail('BADVALUE', `${v} is not a u64`);
  const out = new Uint8Array(8);
  writeBe64(out, 0, v);
  return out;
}

export function decodeU32(value: Uint8Array, what: string): number {
  if (value.length !== 4) fail('BADVALUE', `${what} is ${value.length} bytes, not one u32 cell`);
  return readBe32(value, 0);
}

export function decodeU64(value: Uint8Array, what: string): bigint {
  if (value.length !== 8) fail('BADVALUE', `${what} is ${value.length} bytes, not one u64`);
  return readBe64(value, 0);
}

export function decodeCells(value: Uint8Array, what: string): number[] {
  if (value.length % 4 !== 0) fail('BADVALUE', `${what} is ${value.length} bytes, not whole cells`);
  const cells: number[] = [];
  for (let i = 0; i < value.length; i += 4) cells.push(readBe32(value, i));
  return cells;
}

/** Exactly one NUL-terminated UTF-8 string. */
export function decodeString(value: Uint8Array, what: string): string {
  const list = decodeStrings(value, what);
  if (list.length !== 1) fail('BADVALUE', `${what} holds ${list.length} strings, not one`);
  return list[0];
}

/** A string list: NUL-terminated UTF-8 strings back to back. */
export function decodeStrings(value: Uint8Array, what: string): string[] {
  if (value.length === 0 || value[value.length - 1] !== 0) fail('BADVALUE', `${what} is not NUL-terminated`);
  const list: string[] = [];
  for (let start = 0; start < value.length; ) {
    const nul = value.indexOf(0, start);
    list.push(decodeUtf8(value, start, nul, what));
    start = nul + 1;
  }
  return list;
}

/**
 * `value[start, end)` as strict UTF-8. ASCII, what a handover's paths, names
 * and compatibles are, is read directly: a restore then never builds a
 * TextDecoder (~0.1 ms the first time).
 */
function decodeUtf8(value: Uint8Array, start: number, end: number, what: string): string {
  const bytes = value.subarray(start, end);
  if (isAscii(bytes)) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');
  try {
    utf8Strict ??= new TextDecoder('utf-8', { fatal: true });
    return utf8Strict.decode(bytes);
  } catch {
    return fail('BADVALUE', `${what} is not valid UTF-8`);
  }
}
