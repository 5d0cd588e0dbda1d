/**
 * Random bytes from /dev/urandom, without node:crypto: loading that module
 * costs milliseconds, and a program restoring its pools after a handover
 * needs only a few random bytes (a run id). Falls back to node:crypto where
 * /dev/urandom cannot be read.
 */
import { closeSync, openSync, readSync } from 'node:fs';

export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  try {
    const fd = openSync('/dev/urandom', 'r');
    try {
      let at = 0;
      while (at < n) {
        const got = readSync(fd, out, at, n - at, null);
        // /dev/urandom never ends; a file that does (a broken sandbox's stand-in) is no source.
        if (got === 0) throw new Error('/dev/urandom ended');
        at += got;
      }
    } finally {
      closeSync(fd);
    }
    return out;
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
