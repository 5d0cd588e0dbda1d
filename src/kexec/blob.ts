/**
 * The handover blob on disk: written 0600 with O_EXCL, read only when it is
 * a regular file (not a symlink) of our own uid that nobody else can write —
 * the same rules a kernel applies to what it takes from a previous one,
 * applied to a path that arrives on the command line.
 */
import { closeSync, constants, fstatSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from '../util/random.js';
import { join } from 'node:path';
import { Fdt, FdtError } from '../fdt/index.js';
import { HandoverError } from './errors.js';

/** A handover blob is small (a few nodes per pool and client); refuse anything absurd before reading it. */
export const MAX_BLOB_BYTES = 16 * 1024 * 1024;
export const DEFAULT_BLOB_DIR = '/dev/shm';

export function writeBlob(bytes: Uint8Array, dir = DEFAULT_BLOB_DIR): string {
  const path = join(dir, `pmpool-handover-${process.pid}-${Buffer.from(randomBytes(6)).toString('hex')}.dtb`);
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    let at = 0;
    while (at < bytes.length) at += writeSync(fd, bytes, at, bytes.length - at);
  } catch (e) {
    closeSync(fd);
    unlinkSync(path);
    throw e;
  }
  closeSync(fd);
  return path;
}

/** Reads and parses a blob after checking who may have written it. Throws HandoverError. */
export function readBlob(path: string): { fdt: Fdt; bytes: Uint8Array } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new HandoverError('UNSAFE_BLOB', `handover blob ${path} is a symbolic link; refused`, { cause: e });
    throw new HandoverError('UNSAFE_BLOB', `cannot open handover blob ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new HandoverError('UNSAFE_BLOB', `handover blob ${path} is not a regular file`);
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) throw new HandoverError('UNSAFE_BLOB', `handover blob ${path} belongs to uid ${st.uid}, not ${uid}`);
    if ((st.mode & 0o022) !== 0) {
      throw new HandoverError('UNSAFE_BLOB', `handover blob ${path} is writable by others (mode ${(st.mode & 0o777).toString(8)})`);
    }
    if (st.size > MAX_BLOB_BYTES) throw new HandoverError('BAD_BLOB', `handover blob ${path} is ${st.size} bytes, over the ${MAX_BLOB_BYTES}-byte limit`);
    const bytes = new Uint8Array(st.size);
    let at = 0;
    while (at < bytes.length) {
      const n = readSync(fd, bytes, at, bytes.length - at, at);
      if (n === 0) break;
      at += n;
    }
    try {
      return { fdt: Fdt.parse(bytes.subarray(0, at)), bytes: bytes.subarray(0, at) };
    } catch (e) {
      if (e instanceof FdtError) throw new HandoverError('BAD_BLOB', `handover blob ${path} is not a valid FDT: ${e.code}: ${e.message}`, { cause: e });
      throw e;
    }
  } finally {
    closeSync(fd);
  }
}

export function removeBlob(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    /* already consumed */
  }
}
