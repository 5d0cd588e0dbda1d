/**
 * Random bytes from /dev/urandom, read through the addon, without
 * node:crypto: loading that module costs milliseconds, and a program
 * restoring its pools after a handover needs only a few random bytes (a run
 * id). Falls back to node:crypto where /dev/urandom cannot be read.
 */
import { native } from './native.js';

export function randomBytes(n: number): Uint8Array {
  try {
    const read = native.readFile('/dev/urandom', n, false, true);
    // /dev/urandom gives what is asked; a device or file that does not (a broken sandbox's stand-in) is no source.
    if (read.type !== 'char' || read.data.byteLength !== n) throw new Error('/dev/urandom is not a random device');
    return new Uint8Array(read.data);
  } catch {
    const crypto = process.getBuiltinModule('node:crypto');
    return new Uint8Array(crypto.randomBytes(n));
  }
}

/** A random integer in [1, 2^31 - 1]. */
export function randomNonZeroU31(): number {
  for (;;) {
    const b = randomBytes(4);
    const x = (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) & 0x7fffffff;
    if (x !== 0) return x;
  }
}
