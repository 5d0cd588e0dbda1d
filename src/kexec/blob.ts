/**
 * The handover blob on disk: written 0600 with O_EXCL, read only when it is
 * a regular file (not a symlink) of our own uid that nobody else can write —
 * the same rules a kernel applies to what it takes from a previous one,
 * applied to a path that arrives on the command line.
 */
import { join } from 'node:path';
import { Fdt, FdtError } from '../fdt/index.js';
import { isNativeError, native } from '../sys/native.js';
import { randomBytes } from '../sys/random.js';
import { HandoverError } from './errors.js';

/*
 * The file operations go through the addon (native/pmpool.c says why): they
 * are on both sides of a handover's downtime, in code that runs once.
 */

/** A handover blob is small (a few nodes per pool and client); refuse anything absurd before reading it. */
export const MAX_BLOB_BYTES = 16 * 1024 * 1024;
export const DEFAULT_BLOB_DIR = '/dev/shm';

export function writeBlob(bytes: Uint8Array, dir = DEFAULT_BLOB_DIR): string {
  const path = join(dir, `pmpool-handover-${process.pid}-${Buffer.from(randomBytes(6)).toString('hex')}.dtb`);
  native.writeFile(path, bytes, 0o600);
  return path;
}

/** Reads and parses a blob after checking who may have written it. Throws HandoverError. */
export function readBlob(path: string): { fdt: Fdt; bytes: Uint8Array } {
  let read;
  try {
    read = native.readFile(path, MAX_BLOB_BYTES, true, false);
  } catch (e) {
    if (isNativeError(e) && e.code === 'ELOOP') throw new HandoverError('UNSAFE_BLOB', `handover blob ${path} is a symbolic link; refused`, { cause: e });
    throw new HandoverError('UNSAFE_BLOB', `cannot open handover blob ${path}: ${(e as Error).message}`, { cause: e });
  }
  if (read.type !== 'file') throw new HandoverError('UNSAFE_BLOB', `handover blob ${path} is not a regular file`);
  const uid = process.getuid?.();
  if (uid !== undefined && read.uid !== uid) throw new HandoverError('UNSAFE_BLOB', `handover blob ${path} belongs to uid ${read.uid}, not ${uid}`);
  if ((read.mode & 0o022) !== 0) {
    throw new HandoverError('UNSAFE_BLOB', `handover blob ${path} is writable by others (mode ${(read.mode & 0o777).toString(8)})`);
  }
  // A file over the limit is not read at all (its data is empty).
  if (read.size > MAX_BLOB_BYTES) throw new HandoverError('BAD_BLOB', `handover blob ${path} is ${read.size} bytes, over the ${MAX_BLOB_BYTES}-byte limit`);
  const bytes = new Uint8Array(read.data);
  try {
    return { fdt: Fdt.parse(bytes), bytes };
  } catch (e) {
    if (e instanceof FdtError) throw new HandoverError('BAD_BLOB', `handover blob ${path} is not a valid FDT: ${e.code}: ${e.message}`, { cause: e });
    throw e;
  }
}

export function removeBlob(path: string): void {
  try {
    native.unlink(path);
  } catch {
    /* already consumed */
  }
}
