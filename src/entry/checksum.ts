/**
 * A 64-bit checksum of a byte string: the code cache's guard against a
 * damaged payload, and its binding to the bundle it was recorded from
 * (bundle-loader.ts).
 *
 *   step(h, w) = rotl64(h XOR w, 23) * MULTIPLIER   (mod 2^64)
 *   lane j (j = 0..3) starts at (length XOR SEED) + j
 *   8-byte little-endian word i of the bytes (the last one padded with zeros)
 *     goes to lane i mod 4: lane = step(lane, word)
 *   result = step(step(step(lane 0, lane 1), lane 2), lane 3)
 *
 * Each step is a bijection of h for a given word and of the word for a given
 * h (xor, rotate, multiply by an odd constant), so any change confined to
 * one 8-byte word changes its lane and so the result; it is a guard against
 * damage, not against an adversary (the cache is trusted like the code
 * beside it). Four lanes are four independent multiply chains: the addon
 * sums the half megabyte of a cold start at ~4x the speed of one chain.
 *
 * The addon computes it (native/pmpool.c): this runs on every cold start,
 * before any of pmpool's JavaScript is compiled, over half a megabyte. A
 * JavaScript loop there runs through the interpreter (~3 ms), WebAssembly
 * costs ~1 ms to compile, instantiate and copy into, node:crypto ~2.5 ms to
 * load; the addon, which pmpool loads anyway, takes ~0.07 ms for both files (the first call of a process).
 * checksumReference() is the definition in JavaScript, for the tests.
 */
import { native } from '../sys/native.js';

const SEED = 0x9e3779b97f4a7c15n;
const MULTIPLIER = 0xff51afd7ed558ccdn;

/** The checksum of `bytes`, as 16 hex digits. */
export function checksum64(bytes: Uint8Array): string {
  return native.checksum64(bytes);
}

/** The same sum in JavaScript (slow; for tests). */
export function checksumReference(bytes: Uint8Array): string {
  const padded = new Uint8Array(Math.ceil(bytes.length / 8) * 8);
  padded.set(bytes);
  const words = new DataView(padded.buffer);
  const step = (h: bigint, w: bigint): bigint => {
    const x = h ^ w;
    return BigInt.asUintN(64, BigInt.asUintN(64, (x << 23n) | (x >> 41n)) * MULTIPLIER);
  };
  const lanes = [0n, 1n, 2n, 3n].map((j) => BigInt.asUintN(64, (BigInt(bytes.length) ^ SEED) + j));
  for (let i = 0; i < bytes.length; i += 8) lanes[(i / 8) % 4] = step(lanes[(i / 8) % 4]!, words.getBigUint64(i, true));
  return step(step(step(lanes[0]!, lanes[1]!), lanes[2]!), lanes[3]!).toString(16).padStart(16, '0');
}
