/**
 * A Region over a path: a /dev/shm (tmpfs) file, a regular file on disk, a
 * file on hugetlbfs, or a DAX character device. Opened with O_NOFOLLOW, kept
 * under flock (shared, or exclusive when asked), mapped MAP_SHARED in windows.
 *
 * Every refusal happens before anything is written: a file we did not create
 * is never truncated, extended or unlinked by a failed open.
 */
import { lstatSync, readFileSync, readlinkSync, unlinkSync } from 'node:fs';
import { checkModeOption } from '../util/options.js';
import {
  FLOCK_EXCLUSIVE,
  FLOCK_SHARED,
  isNativeError,
  native,
  type MadviseAdvice,
  type NativeStat,
} from '../sys/native.js';
import {
  checkAdvice,
  checkPath,
  checkSize,
  checkWindow,
  checkWindowRange,
  holdWhileBufferLives,
  LiveWindows,
  LIVENESS_MARKS,
  MAX_WINDOW_BYTES,
  regionOptions,
  RegionError,
  SYSTEM_PAGE_SIZE,
  type Region,
  type RegionKind,
  type RegionWindow,
} from './region.js';

/** statfs(2) f_type values (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;
const HUGETLBFS_MAGIC = 0x958458f6;

export interface RegionOpenOptions {
  /** Take the region for this process alone (flock LOCK_EX); refuse if anyone holds it. Default: shared. */
  exclusive?: boolean;
  /** Map read-only. */
  readOnly?: boolean;
  /**
   * Reserve every block of the region now (fallocate): at create, instead of a sparse file; at
   * open, the holes a sparse file still has. A file system without room refuses (RegionError IO,
   * errno ENOSPC), where a sparse region's program would be killed by SIGBUS at its first store
   * to a page the file system cannot back. Proportional to the size (every block is visited),
   * and not with readOnly. A DAX device's memory is all there: nothing to do. Default false.
   */
  preallocate?: boolean;
}

export interface RegionCreateOptions extends RegionOpenOptions {
  /** Size in bytes; a multiple of the backing page size. */
  size: number;
  /** File mode of a new file. Default 0600. */
  mode?: number;
}

function wrapSystemError(e: unknown, path: string): never {
  if (!isNativeError(e)) throw e;
  switch (e.code) {
    case 'ELOOP':
      throw new RegionError('SYMLINK', `${path} is a symbolic link; pmpool refuses to follow it`, path, { cause: e, errno: e.code });
    case 'ENOENT':
      throw new RegionError('NOT_FOUND', `${path} does not exist`, path, { cause: e, errno: e.code });
    case 'EEXIST':
      throw new RegionError('EXISTS', `${path} already exists`, path, { cause: e, errno: e.code });
    case 'EISDIR':
      // Opening a directory read-write fails before fstat could say what it is: the same refusal as a FIFO's.
      throw new RegionError('NOT_REGULAR', `${path} is a directory, not a regular file or DAX device`, path, { cause: e, errno: e.code });
    case 'ENXIO':
      // What open(2) says of a Unix socket (and of a device node with no driver behind it): refused before fstat, as a directory is.
      throw new RegionError('NOT_REGULAR', `${path} is a socket (or a device with no driver), not a regular file or DAX device`, path, { cause: e, errno: e.code });
    case 'ENODEV':
      // mmap's answer for a file whose file system has no shared mapping (a sysfs attribute, a FUSE file opened direct_io): "No such device" says nothing of that.
      if (e.syscall === 'mmap') {
        throw new RegionError('NOT_REGULAR', `${path} is on a file system that cannot map a file shared; a region needs one that can`, path, { cause: e, errno: e.code });
      }
      throw new RegionError('IO', `${e.syscall} ${path}: ${e.message}`, path, { cause: e, errno: e.code });
    default:
      throw new RegionError('IO', `${e.syscall} ${path}: ${e.message}`, path, { cause: e, errno: e.code });
  }
}

interface Backing {
  kind: RegionKind;
  pageSize: number;
  /** Size of the file or device in bytes. */
  capacity: number;
}

/**
 * @internal The size and alignment of the DAX device behind a character device, from sysfs (`sysfs`
 * is its mount point), or null when the device is not DAX.
 */
export function daxDevice(stat: Pick<NativeStat, 'rdevMajor' | 'rdevMinor'>, sysfs = '/sys'): { size: number; align: number } | null {
  const sys = `${sysfs}/dev/char/${stat.rdevMajor}:${stat.rdevMinor}`;
  try {
    // The subsystem is named by its link: .../bus/dax, or .../class/dax before Linux 5.1. Not by
    // reading its uevent: a bus's is write-only (even root's read fails) and a class has none.
    if (!readlinkSync(`${sys}/subsystem`).endsWith('/dax')) return null;
    const size = Number(readFileSync(`${sys}/size`, 'utf8').trim());
    let align = 2 * 1024 * 1024;
    try {
      align = Number(readFileSync(`${sys}/align`, 'utf8').trim()) || align;
    } catch {
      /* older kernels have no align attribute: devdax defaults to 2 MiB */
    }
    return { size, align };
  } catch {
    return null;
  }
}

function identifyBacking(stat: NativeStat, path: string): Backing {
  if (stat.type === 'char') {
    const dax = daxDevice(stat);
    if (!dax) throw new RegionError('NOT_REGULAR', `${path} is a character device but not a DAX device`, path);
    return { kind: 'devdax', pageSize: dax.align, capacity: dax.size };
  }
  if (stat.type !== 'file') {
    throw new RegionError('NOT_REGULAR', `${path} is a ${stat.type}, not a regular file or DAX device`, path);
  }
  // The file system as fstatfs saw it through the open fd (native fstat): the path may have changed since open.
  if (stat.fsType === HUGETLBFS_MAGIC) return { kind: 'hugetlbfs', pageSize: stat.fsBlockSize, capacity: stat.size };
  if (stat.fsType === TMPFS_MAGIC) return { kind: 'shm', pageSize: SYSTEM_PAGE_SIZE, capacity: stat.size };
  return { kind: 'file', pageSize: SYSTEM_PAGE_SIZE, capacity: stat.size };
}

class FileWindow implements RegionWindow {
  readonly byteOffset: number;
  private live = true;
  constructor(
    readonly region: FileRegion,
    readonly offset: number,
    readonly length: number,
    readonly buffer: ArrayBuffer,
    mappedFrom: number,
  ) {
    this.byteOffset = offset - mappedFrom;
  }
  get mapped(): boolean {
    return this.live;
  }
  bytes(): Uint8Array {
    if (!this.live) throw new RegionError('CLOSED', 'window is unmapped', this.region.path);
    return new Uint8Array(this.buffer, this.byteOffset, this.length);
  }
  flush(offset = 0, length = this.length - offset): void {
    checkWindowRange(this, offset, length);
    if (!this.live || !this.region.durable) return;
    try {
      native.msync(this.buffer, this.byteOffset + offset, length, true);
    } catch (e) {
      // A failed msync (EIO, ENOSPC from writeback) is the region's failure: typed, errno kept.
      wrapSystemError(e, this.region.path);
    }
  }
  advise(advice: MadviseAdvice, offset = 0, length = this.length - offset): void {
    checkAdvice(advice, this.region.path);
    checkWindowRange(this, offset, length);
    if (!this.live) return;
    try {
      native.madvise(this.buffer, this.byteOffset + offset, length, advice);
    } catch (e) {
      // A refusal of the kernel's ('remove' on a read-only mapping: EACCES) is the region's, typed.
      wrapSystemError(e, this.region.path);
    }
  }
  preferHugePages(offset = 0, length = this.length - offset): number {
    checkWindowRange(this, offset, length);
    // tmpfs alone: its pages can be collapsed whatever its huge= option. A writable mapping of a disk
    // file cannot be (the kernel collapses read-only file pages only), and hugetlbfs and DAX pages
    // are huge already.
    if (!this.live || this.region.kind !== 'shm') return 0;
    try {
      return native.preferHugePages(this.buffer, this.byteOffset + offset, length);
    } catch (e) {
      wrapSystemError(e, this.region.path);
    }
  }
  unmap(): void {
    if (!this.live) return;
    this.live = false;
    native.munmap(this.buffer);
    this.region.forget(this);
  }
}

export class FileRegion implements Region {
  private fd: number;
  /** The descriptor the flock is on (lockDescription): never mapped. */
  private lockFd: number;
  private readonly live = new LiveWindows<FileWindow>();
  private constructor(
    readonly path: string,
    fd: number,
    lockFd: number,
    readonly kind: RegionKind,
    readonly size: number,
    readonly pageSize: number,
    readonly readOnly: boolean,
  ) {
    this.fd = fd;
    this.lockFd = lockFd;
  }

  get durable(): boolean {
    return this.kind === 'file' || this.kind === 'devdax';
  }
  get closed(): boolean {
    return this.fd < 0;
  }

  /** Creates a new region file (O_EXCL, mode 0600) of `size` bytes, sparse unless `preallocate`. */
  static create(path: string, options: RegionCreateOptions): FileRegion {
    checkPath(path, 'FileRegion.create');
    options = regionOptions(options, 'FileRegion.create options', path, ['exclusive', 'readOnly', 'preallocate'], true);
    checkSize(options.size, SYSTEM_PAGE_SIZE, path);
    checkModeOption(options.mode, (message) => new RegionError('BAD_ARGUMENT', message, path));
    let fd: number;
    try {
      fd = native.open(path, true, true, false, options.mode ?? 0o600);
    } catch (e) {
      wrapSystemError(e, path);
    }
    let lockFd = -1;
    let stat: NativeStat | undefined;
    try {
      stat = native.fstat(fd);
      const backing = identifyBacking(stat, path);
      if (backing.kind === 'devdax') throw new RegionError('NOT_REGULAR', `${path}: a DAX device cannot be created`, path);
      checkSize(options.size, backing.pageSize, path);
      lockFd = lockDescription(stat, options.exclusive ?? false, false, path);
      try {
        native.ftruncate(fd, options.size);
        if (options.preallocate) native.fallocate(fd, 0, options.size, false);
      } catch (e) {
        wrapSystemError(e, path);
      }
      return new FileRegion(path, fd, lockFd, backing.kind, options.size, backing.pageSize, false);
    } catch (e) {
      if (lockFd >= 0) native.close(lockFd);
      native.close(fd);
      // We created this file a moment ago: take it away again rather than leave a half-made region —
      // unless the path names another file by now (lockDescription's BUSY: one renamed over it).
      if (stat !== undefined) unlinkIfSame(path, stat);
      throw e;
    }
  }

  /** Opens an existing region. Refuses a symlink, another uid's file, a size that is not whole pages, a busy region. */
  static open(path: string, options: RegionOpenOptions & { size?: number } = {}): FileRegion {
    checkPath(path, 'FileRegion.open');
    options = regionOptions(options, 'FileRegion.open options', path, ['exclusive', 'readOnly', 'preallocate']);
    if (options.size !== undefined) checkSize(options.size, SYSTEM_PAGE_SIZE, path);
    if (options.preallocate && options.readOnly) throw new RegionError('BAD_ARGUMENT', `${path}: a region opened read-only cannot be preallocated`, path);
    let fd: number;
    try {
      fd = native.open(path, false, false, options.readOnly ?? false, 0);
    } catch (e) {
      wrapSystemError(e, path);
    }
    let lockFd = -1;
    try {
      const stat = native.fstat(fd);
      const uid = process.getuid?.();
      if (uid !== undefined && stat.uid !== uid) {
        throw new RegionError('NOT_OWNER', `${path} belongs to uid ${stat.uid}, not to this process's uid ${uid}`, path);
      }
      const backing = identifyBacking(stat, path);
      const size = options.size ?? backing.capacity;
      checkSize(size, backing.pageSize, path);
      if (size > backing.capacity) {
        throw new RegionError('TOO_LARGE', `${path}: ${size} bytes asked but the ${backing.kind} holds ${backing.capacity}`, path);
      }
      lockFd = lockDescription(stat, options.exclusive ?? false, options.readOnly ?? false, path);
      if (options.preallocate && backing.kind !== 'devdax') {
        try {
          native.fallocate(fd, 0, size, true); // the size stays; only holes get blocks
        } catch (e) {
          wrapSystemError(e, path);
        }
      }
      return new FileRegion(path, fd, lockFd, backing.kind, size, backing.pageSize, options.readOnly ?? false);
    } catch (e) {
      if (lockFd >= 0) native.close(lockFd);
      native.close(fd);
      throw e;
    }
  }

  map(offset: number, length: number): RegionWindow {
    checkWindow(this, offset, length);
    // mmap offsets must be page aligned (huge-page aligned on hugetlbfs/devdax).
    const mappedFrom = offset - (offset % this.pageSize);
    const end = offset + length;
    const mappedEnd = Math.min(this.size, Math.ceil(end / this.pageSize) * this.pageSize);
    if (mappedEnd - mappedFrom > MAX_WINDOW_BYTES) {
      // Within the limit itself, but not once widened to whole pages: one mapping cannot hold it.
      throw new RegionError(
        'BAD_RANGE',
        `window [${offset}, +${length}) spans ${mappedEnd - mappedFrom} bytes of whole ${this.pageSize}-byte pages, over the ${MAX_WINDOW_BYTES}-byte limit`,
        this.path,
      );
    }
    // A file cut short by another process since it was opened: a window past its end would be a
    // SIGBUS at the first touch. Pages already mapped when it shrank are docs/abi.md's to warn of;
    // a window mapped now can still be refused.
    if (this.kind !== 'devdax') {
      let now: number;
      try {
        now = native.fstat(this.fd).size;
      } catch (e) {
        wrapSystemError(e, this.path);
      }
      if (now < mappedEnd) {
        throw new RegionError('TOO_LARGE', `${this.path} is ${now} bytes now, cut short under the region's ${this.size}: bytes to ${mappedEnd} cannot be mapped`, this.path);
      }
    }
    let buffer: ArrayBuffer;
    try {
      // On tmpfs, windows are placed so that their 2 MiB extents can be huge pages (preferHugePages).
      buffer = native.mmap(this.fd, mappedFrom, mappedEnd - mappedFrom, !this.readOnly, this.kind === 'shm');
    } catch (e) {
      wrapSystemError(e, this.path);
    }
    const window = new FileWindow(this, offset, length, buffer, mappedFrom);
    this.live.add(window);
    holdWhileBufferLives(window);
    return window;
  }

  windows(): readonly RegionWindow[] {
    return this.live.mapped();
  }

  /** @internal called by a window as it unmaps. */
  forget(window: FileWindow): void {
    this.live.forget(window);
  }

  flush(): void {
    for (const w of this.windows()) w.flush();
  }

  /** Region.holdLivenessMark: an OFD lock on the mark's byte; false when it cannot be taken (held by another description, or no OFD locks here). */
  holdLivenessMark(id: number): boolean {
    if (this.fd < 0) return false;
    try {
      return native.markHold(this.fd, LIVENESS_MARKS + id);
    } catch {
      return false; // a file system without OFD locks: livenessMarkHeld answers null there too
    }
  }

  releaseLivenessMark(id: number): void {
    if (this.fd < 0) return;
    try {
      native.markRelease(this.fd, LIVENESS_MARKS + id);
    } catch {
      /* never taken (see holdLivenessMark); closing the descriptor drops it anyway */
    }
  }

  livenessMarkHeld(id: number): boolean | null {
    if (this.fd < 0) return null;
    try {
      return native.markHeld(this.fd, LIVENESS_MARKS + id);
    } catch {
      return null;
    }
  }

  /**
   * Closes the region and removes its file, if the path still names the file it opened: what a
   * maker does with a region it has just created and cannot use (Pool.create over a failed format).
   * A file that was renamed over the path meanwhile is another's, and stays.
   */
  closeAndRemove(): void {
    if (this.fd < 0) return;
    const own = native.fstat(this.fd);
    this.close();
    unlinkIfSame(this.path, own);
  }

  close(): void {
    if (this.fd < 0) return;
    for (const w of this.windows()) w.unmap();
    const fd = this.fd;
    // Closed whatever close(2) answers: it releases the descriptor even when it fails (EIO), and a
    // second close() would close the number again, by then perhaps another file's.
    this.fd = -1;
    const lockFd = this.lockFd;
    this.lockFd = -1;
    let failure: unknown;
    for (const descriptor of [lockFd, fd]) {
      // Both, whatever the first answers: closing the lock's releases the flock.
      try {
        native.close(descriptor);
      } catch (e) {
        failure ??= e;
      }
    }
    if (failure !== undefined) wrapSystemError(failure, this.path);
  }
}

/** Removes `path` if it still names the file `own` describes (device and inode); anything else there stays. */
function unlinkIfSame(path: string, own: NativeStat): void {
  try {
    const now = lstatSync(path);
    if (now.dev === own.dev && now.ino === own.ino) unlinkSync(path);
  } catch {
    /* already gone */
  }
}

/**
 * Opens the region's file once more, for its flock alone, and takes the lock there. A flock
 * belongs to an open file description and lasts while anything refers to it, a mapping
 * included: taken on the descriptor the windows are mapped from, it would outlive that
 * descriptor's close as long as a window stays mapped — after an exec(), in the process that
 * frees the old image meanwhile (native/pmpool.c, the keeper), whose mappings are the old
 * program's. On a description of its own, never mapped, the lock goes with its descriptor:
 * at close(), and at an exec (O_CLOEXEC). The second open must find the same file (device and
 * inode): a file renamed into the path between the two opens is refused, not locked instead.
 */
function lockDescription(mapped: NativeStat, exclusive: boolean, readOnly: boolean, path: string): number {
  let fd: number;
  try {
    // With the mapped descriptor's access: NFS takes an exclusive flock only on a file open for writing.
    fd = native.open(path, false, false, readOnly, 0);
  } catch (e) {
    wrapSystemError(e, path);
  }
  try {
    const stat = native.fstat(fd);
    if (stat.dev !== mapped.dev || stat.ino !== mapped.ino) {
      throw new RegionError('BUSY', `${path} was replaced by another file while it was being opened; try again`, path);
    }
    takeFlock(fd, exclusive, path);
    return fd;
  } catch (e) {
    native.close(fd);
    throw e;
  }
}

function takeFlock(fd: number, exclusive: boolean, path: string): void {
  let taken: boolean;
  try {
    taken = native.flock(fd, exclusive ? FLOCK_EXCLUSIVE : FLOCK_SHARED, true);
  } catch (e) {
    wrapSystemError(e, path);
  }
  if (!taken) {
    throw new RegionError(
      'BUSY',
      exclusive ? `${path} is in use by another process; exclusive use refused` : `${path} is held exclusively by another process`,
      path,
    );
  }
}
