/**
 * A 64-bit checksum of a byte string, computed in a few lines of
 * WebAssembly: the code cache's guard against a damaged payload
 * (bundle-loader.ts). Loading node:crypto for a SHA-256 costs ~2.5 ms of a
 * cold start, and a JavaScript loop over 230 KB runs through the
 * interpreter at ~3 ms; this module compiles in ~0.3 ms and sums the bytes
 * in a fraction of that.
 *
 * The function, in the text format:
 *
 *   (func (export "checksum") (param $len i32) (result i64) (local $i i32) (local $h i64)
 *     (local.set $h (i64.xor (i64.extend_i32_u (local.get $len)) (i64.const SEED)))
 *     (block (loop
 *       (br_if 1 (i32.ge_u (local.get $i) (local.get $len)))
 *       (local.set $h (i64.mul (i64.rotl (i64.xor (local.get $h) (i64.load (local.get $i))) (i64.const 23)) (i64.const MULTIPLIER)))
 *       (local.set $i (i32.add (local.get $i) (i32.const 8)))
 *       (br 0)))
 *     (local.get $h))
 *
 * over the bytes at offset 0 of its memory, zero-padded to 8. Each step is
 * a bijection of h for a given word (xor, rotate, multiply by an odd
 * constant), so any change confined to one 8-byte word always changes the
 * result; it is a guard against damage, not against an adversary (the cache
 * is trusted like the code beside it). checksumReference() is the same sum
 * in JavaScript, for the tests.
 */
const SEED = 0x9e3779b97f4a7c15n;
const MULTIPLIER = 0xff51afd7ed558ccdn;

/** Signed LEB128 of a 64-bit two's-complement value. */
function sleb64(value: bigint): number[] {
  let v = BigInt.asIntN(64, value);
  const out: number[] = [];
  for (;;) {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    if ((v === 0n && (byte & 0x40) === 0) || (v === -1n && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function section(id: number, body: number[]): number[] {
  return [id, body.length, ...body]; // every section here is under 128 bytes
}

/** The module, assembled from the listing above (the tests check MODULE against it). */
export function assembleModule(): Uint8Array {
  const name = (s: string) => [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];
  const code = [
    0x20, 0x00, 0xad, 0x42, ...sleb64(SEED), 0x85, 0x21, 0x02, // h = u64(len) ^ SEED
    0x02, 0x40, 0x03, 0x40, // block, loop
    0x20, 0x01, 0x20, 0x00, 0x4f, 0x0d, 0x01, // br_if 1 (i >= len)
    0x20, 0x02, 0x20, 0x01, 0x29, 0x03, 0x00, 0x85, // h ^ load64(i)
    0x42, 0x17, 0x89, 0x42, ...sleb64(MULTIPLIER), 0x7e, 0x21, 0x02, // h = rotl(.., 23) * MULTIPLIER
    0x20, 0x01, 0x41, 0x08, 0x6a, 0x21, 0x01, // i += 8
    0x0c, 0x00, 0x0b, 0x0b, // br 0, end loop, end block
    0x20, 0x02, 0x0b, // return h
  ];
  const body = [0x02, 0x01, 0x7f, 0x01, 0x7e, ...code]; // locals: one i32, one i64
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [0x01, 0x60, 0x01, 0x7f, 0x01, 0x7e]), // type (i32) -> i64
    ...section(3, [0x01, 0x00]),
    ...section(5, [0x01, 0x00, 0x01]), // one memory, at least one page
    ...section(7, [0x02, ...name('memory'), 0x02, 0x00, ...name('checksum'), 0x00, 0x00]),
    ...section(10, [0x01, body.length, ...body]),
  ]);
}

/**
 * assembleModule()'s bytes, written out in base64: assembling them (BigInt
 * LEB128s, array spreads) runs through the interpreter at ~0.25 ms of every
 * cold start, decoding this at a few microseconds.
 */
export const MODULE_BASE64 =
  'AGFzbQEAAAABBgFgAX8BfgMCAQAFAwEAAQcVAgZtZW1vcnkCAAhjaGVja3N1bQAACkkBRwIBfwF+IACtQpX4qfqXt96bnn+FIQICQANAIAEgAE8NASACIAEpAwCFQheJQs2Z1ur++uuof34hAiABQQhqIQEMAAsLIAIL';

interface ChecksumExports {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  checksum(length: number): bigint;
}

/** The part of the WebAssembly API used here (this project compiles without the DOM typings). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi | undefined }).WebAssembly;

let instance: ChecksumExports | undefined;

/** The checksum of `bytes`, as 16 hex digits. */
export function checksum64(bytes: Uint8Array): string {
  if (wasm === undefined) throw new Error('WebAssembly is not available in this process');
  instance ??= new wasm.Instance(new wasm.Module(Buffer.from(MODULE_BASE64, 'base64'))).exports as ChecksumExports;
  const { memory } = instance;
  const needed = Math.ceil((bytes.length + 8) / 65536);
  const pages = memory.buffer.byteLength / 65536;
  if (needed > pages) memory.grow(needed - pages);
  const view = new Uint8Array(memory.buffer);
  view.set(bytes, 0);
  view.fill(0, bytes.length, bytes.length + 8); // the last word's padding
  return BigInt.asUintN(64, instance.checksum(bytes.length)).toString(16).padStart(16, '0');
}

/** The same sum in JavaScript (slow; for tests). */
export function checksumReference(bytes: Uint8Array): string {
  const padded = new Uint8Array(Math.ceil(bytes.length / 8) * 8);
  padded.set(bytes);
  const words = new DataView(padded.buffer);
  let h = BigInt.asUintN(64, BigInt(bytes.length) ^ SEED);
  for (let i = 0; i < bytes.length; i += 8) {
    const x = h ^ words.getBigUint64(i, true);
    const rotated = BigInt.asUintN(64, (x << 23n) | (x >> 41n));
    h = BigInt.asUintN(64, rotated * MULTIPLIER);
  }
  return h.toString(16).padStart(16, '0');
}
