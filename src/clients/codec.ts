/**
 * Keys and values as bytes: a string is stored as its UTF-8 (and must be
 * well-formed UTF-16, so that it reads back as the same string), a Uint8Array
 * as itself; a flag bit keeps which it was. Keys are encoded into a reusable
 * scratch buffer and hashed there with a seeded murmur3-style hash (the seed is
 * random per map, so keys cannot be chosen to collide).
 */
import { ClientError } from './errors.js';

/** Bit 31 of a stored length word: the item is a Uint8Array, not a string. */
export const KIND_BYTES = 0x80000000;
/** Bit 30: a string of ASCII only (its bytes are its UTF-16 units). */
export const KIND_ASCII = 0x40000000;
export const LENGTH_MASK = 0x3fffffff;
/** Both kind bits. */
export const KIND_MASK = KIND_BYTES | KIND_ASCII;

import { isWellFormed } from '../util/utf16.js';

export { isWellFormed };

/** Buffer's own UTF-8 methods, without the argument checks of toString/write (present in every Node since 0.x). */
interface Utf8Buffer {
  utf8Slice(start: number, end: number): string;
  utf8Write(s: string, offset: number, length: number): number;
  latin1Slice(start: number, end: number): string;
}
const proto = Buffer.prototype as unknown as Partial<Utf8Buffer>;
// Called through Function.prototype.call on the captured functions: the call sites then know their
// target (one C++ function each), where `buf.latin1Slice(...)` is a property load and a call the
// compiler does not resolve (a generic load and a generic call on every lookup).
const latin1Slice = proto.latin1Slice;
const utf8Slice = proto.utf8Slice;
const utf8Write = proto.utf8Write;
const FAST = typeof utf8Slice === 'function' && typeof utf8Write === 'function' && typeof latin1Slice === 'function';

/** An ASCII string held in `buf[start, end)`. */
export function readLatin1(buf: Buffer, start: number, end: number): string {
  return FAST ? latin1Slice!.call(buf, start, end) : buf.toString('latin1', start, end);
}

/** The string held as UTF-8 in `buf[start, end)` (bounds checked by the caller). */
export function readUtf8(buf: Buffer, start: number, end: number): string {
  return FAST ? utf8Slice!.call(buf, start, end) : buf.toString('utf8', start, end);
}

/** Writes `s` as UTF-8 at `offset`, at most `length` bytes (room checked by the caller); returns the bytes written. */
export function writeUtf8(buf: Buffer, s: string, offset: number, length: number): number {
  return FAST ? utf8Write!.call(buf, s, offset, length) : buf.write(s, offset, length, 'utf8');
}

export class Scratch {
  u8: Uint8Array;
  u32: Uint32Array;
  buf: Buffer;
  /** Bytes of the last encoded item. */
  length = 0;
  /** KIND_BYTES for a Uint8Array; KIND_ASCII or 0 for a string. */
  kind = 0;

  constructor(bytes = 4096) {
    this.u8 = new Uint8Array(bytes);
    this.u32 = new Uint32Array(this.u8.buffer);
    this.buf = Buffer.from(this.u8.buffer);
  }

  private grow(bytes: number): void {
    const size = Math.ceil(Math.max(bytes + 8, this.u8.length * 2) / 8) * 8;
    this.u8 = new Uint8Array(size);
    this.u32 = new Uint32Array(this.u8.buffer);
    this.buf = Buffer.from(this.u8.buffer);
  }

  /** Encodes a key (or any item) into the scratch; throws BAD_KEY/BAD_VALUE or TOO_LARGE. */
  encode(item: unknown, maxBytes: number, what: 'key' | 'value' | 'record'): void {
    if (typeof item === 'string') {
      const n = item.length;
      if (n <= 32) {
        // Short ASCII strings, the common key: a plain loop beats a call into C++.
        const u8 = this.u8;
        let i = 0;
        for (; i < n; i++) {
          const c = item.charCodeAt(i);
          if (c >= 0x80) break;
          u8[i] = c;
        }
        if (i === n) {
          if (n > maxBytes) tooLarge(what, n, maxBytes);
          this.length = n;
          this.kind = KIND_ASCII;
          return;
        }
      }
      if (n > maxBytes) tooLarge(what, n, maxBytes);
      if (!isWellFormed(item)) throw new ClientError(what === 'key' ? 'BAD_KEY' : 'BAD_VALUE', `the ${what} string holds a lone surrogate; it would not read back as the same string`);
      if (n * 3 > this.u8.length) {
        const exact = Buffer.byteLength(item, 'utf8');
        if (exact > maxBytes) tooLarge(what, exact, maxBytes);
        if (exact > this.u8.length) this.grow(exact);
      }
      const len = writeUtf8(this.buf, item, 0, this.u8.length);
      if (len > maxBytes) tooLarge(what, len, maxBytes);
      this.length = len;
      this.kind = len === n ? KIND_ASCII : 0;
      return;
    }
    if (item instanceof Uint8Array) {
      // The typed array's own length, as set() copies it, not one a subclass or a Proxy says.
      const n = typedArrayLength(item);
      if (n === undefined) throw new ClientError(what === 'key' ? 'BAD_KEY' : 'BAD_VALUE', `a ${what} must be a string or a Uint8Array, got ${describe(item)}, which only looks like one`);
      if (n === 0 && isDetached(item)) throw new ClientError(what === 'key' ? 'BAD_KEY' : 'BAD_VALUE', `the ${what} is a view of a detached ArrayBuffer, or out of its bounds`);
      if (n > maxBytes) tooLarge(what, n, maxBytes);
      if (n > this.u8.length) this.grow(n);
      this.u8.set(item);
      this.length = n;
      this.kind = KIND_BYTES;
      return;
    }
    throw new ClientError(what === 'key' ? 'BAD_KEY' : 'BAD_VALUE', `a ${what} must be a string or a Uint8Array, got ${describe(item)}`);
  }

  /** The seeded hash of the encoded item (its kind included: "a" and [0x61] are different keys). */
  hash(seed: number): number {
    return hashWords(this.u32, 0, this.length, this.kind, seed);
  }

  /**
   * encode() then hash(), in one pass for the common key (a short ASCII
   * string): the same bytes and the same hash as the two calls.
   */
  encodeKey(item: unknown, maxBytes: number, seed: number): number {
    if (typeof item === 'string') {
      const n = item.length;
      if (n <= 32 && n <= maxBytes) {
        // Four characters at a time: one word stored and hashed per four.
        const u32 = this.u32;
        let h = (seed ^ KIND_ASCII ^ Math.imul(n, 0x9e3779b1)) | 0;
        const full = n >>> 2;
        let w = 0;
        for (let i = 0; w < full; w++, i += 4) {
          const a = item.charCodeAt(i);
          const b = item.charCodeAt(i + 1);
          const c = item.charCodeAt(i + 2);
          const d = item.charCodeAt(i + 3);
          if ((a | b | c | d) >= 0x80) break;
          const word = a | (b << 8) | (c << 16) | (d << 24);
          u32[w] = word;
          h = murmurRound(h, word);
        }
        if (w === full) {
          const rest = n & 3;
          let word = 0;
          let high = 0;
          for (let j = 0, i = full << 2; j < rest; j++, i++) {
            const c = item.charCodeAt(i);
            high |= c;
            word |= c << (j << 3);
          }
          if (high < 0x80) {
            if (rest !== 0) {
              u32[w] = word;
              h ^= murmurScramble(word);
            }
            this.length = n;
            this.kind = KIND_ASCII;
            return murmurFinish(h);
          }
        }
      }
    }
    this.encode(item, maxBytes, 'key');
    return this.hash(seed);
  }
}

export function tooLarge(what: string, bytes: number, max: number): never {
  throw new ClientError('TOO_LARGE', `the ${what} is ${bytes} bytes; at most ${max} are allowed`);
}

/** The intrinsic length getter of typed arrays: reads the array's own length, and throws for anything that is none. */
const TYPED_ARRAY_LENGTH = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype) as object, 'length')!.get!;

/** The length of `bytes` as a copy from it sees it; undefined when it is no typed array (a Proxy, an object made from Uint8Array.prototype). */
export function typedArrayLength(bytes: Uint8Array): number | undefined {
  try {
    return TYPED_ARRAY_LENGTH.call(bytes) as number;
  } catch {
    return undefined;
  }
}

/**
 * True for a view of a transferred (detached) ArrayBuffer, or one left out of bounds by a
 * resizable ArrayBuffer that shrank (which V8 treats as detached): its length reads 0, yet
 * copying from it throws.
 */
export function isDetached(view: Uint8Array): boolean {
  if (view.byteLength !== 0) return false;
  try {
    view.subarray(0, 0);
    return false;
  } catch {
    return true;
  }
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'an object';
  return typeof v;
}

/**
 * murmur3_x86_32 over `length` bytes starting at word `start` of `words`
 * (little-endian), the tail masked so bytes past the item do not count.
 */
export function hashWords(words: Uint32Array, start: number, length: number, kind: number, seed: number): number {
  let h = (seed ^ kind ^ Math.imul(length, 0x9e3779b1)) | 0;
  const full = length >>> 2;
  let i = start;
  const end = start + full;
  for (; i < end; i++) h = murmurRound(h, words[i]!);
  const rest = length & 3;
  if (rest !== 0) h ^= murmurScramble(words[i]! & ((1 << (rest * 8)) - 1));
  return murmurFinish(h);
}

/* murmur3_x86_32's three steps, shared by hashWords and the one-pass key path (small: V8 inlines them). */
function murmurScramble(k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, 0x1b873593);
}

function murmurRound(h: number, word: number): number {
  h ^= murmurScramble(word);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function murmurFinish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
