/**
 * A Region is the backing memory of a pool: a range of bytes that outlives
 * the process, reached through windows (mappings of part of it). It knows
 * nothing of pools, allocators or FDTs.
 */
import { PmpoolError } from '../errors.js';
import { checkBooleanOption, checkOptions, describeValue } from '../util/options.js';

export type RegionKind = 'shm' | 'file' | 'hugetlbfs' | 'devdax' | 'memory';

const WINDOW_ADVICE = ['hugepage', 'dontneed', 'willneed', 'populate', 'remove', 'normal'] as const;
export type WindowAdvice = (typeof WINDOW_ADVICE)[number];

export type RegionErrorCode =
  | 'SYMLINK' // the path is a symbolic link (O_NOFOLLOW refused it)
  | 'NOT_OWNER' // the file belongs to another uid
  | 'NOT_REGULAR' // neither a regular file nor a DAX character device
  | 'BAD_SIZE' // zero, negative, not an integer, or not a multiple of the page size
  | 'TOO_LARGE' // larger than the file or device behind it
  | 'BUSY' // held exclusively by another process (or shared, when exclusive use is asked)
  | 'EXISTS' // create: the path already exists
  | 'NOT_FOUND' // open: nothing at the path
  | 'BAD_RANGE' // a window outside the region, or longer than a window may be
  | 'CLOSED' // the region (or window) was closed
  | 'BAD_ARGUMENT' // a path, options object or option of the wrong type
  | 'IO'; // any other failure of the system, errno in the message and .errno

export class RegionError extends PmpoolError {
  declare readonly code: RegionErrorCode;
  readonly path: string | null;
  readonly errno: string | undefined;
  constructor(code: RegionErrorCode, message: string, path: string | null, options?: { cause?: unknown; errno?: string }) {
    super(code, message, options);
    this.path = path;
    this.errno = options?.errno;
  }
}

/**
 * One mapped window of a region. Bytes `[offset, offset + length)` of the
 * region are at `[byteOffset, byteOffset + length)` of `buffer`; build typed
 * arrays over that range. A window is mapped once; hand out views of it
 * (V8 aborts if two ArrayBuffers share a backing address).
 */
export interface RegionWindow {
  readonly region: Region;
  readonly offset: number;
  readonly length: number;
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  readonly byteOffset: number;
  readonly mapped: boolean;
  /** A view of the whole window. */
  bytes(): Uint8Array;
  /**
   * Makes stores in the window durable (msync on a file-backed region). `offset` is relative to the
   * window; a range that leaves the window is refused (BAD_RANGE).
   */
  flush(offset?: number, length?: number): void;
  /**
   * madvise over part of the window (a range that leaves it is refused, BAD_RANGE). Advice that
   * discards contents ('remove', 'dontneed') acts only on whole pages inside the range, never
   * on bytes around it; the rest acts on the pages the range touches.
   */
  advise(advice: WindowAdvice, offset?: number, length?: number): void;
  /**
   * Asks for huge pages under the whole 2 MiB extents of the range, collapsed in the background by
   * the addon (native/mappings.c says how): no byte changes, only which pages hold them, for fewer
   * TLB misses when the range is read at random. Returns the bytes asked for: 0 where the region
   * has nothing to gain or no way to (hugetlbfs and DAX pages are huge already; a disk file's
   * writable mapping cannot be collapsed; an in-memory region is V8's). A hint: an extent the
   * kernel refuses stays as it is. A range that leaves the window is refused (BAD_RANGE).
   */
  preferHugePages(offset?: number, length?: number): number;
  /** Releases the window's memory; any view of it becomes empty. */
  unmap(): void;
}

export interface Region {
  readonly kind: RegionKind;
  /** The path the region was opened at; null for an in-memory region. */
  readonly path: string | null;
  /** Size in bytes (a multiple of `pageSize`). */
  readonly size: number;
  /** Granularity of the backing memory: 4096, or the huge page size of hugetlbfs/devdax. */
  readonly pageSize: number;
  /** True when the bytes survive a reboot (a file on disk, a DAX device). */
  readonly durable: boolean;
  /** True when the region is mapped read-only (a store to it is a SIGSEGV): no pool can live on it. */
  readonly readOnly?: boolean;
  readonly closed: boolean;
  /** Maps `[offset, offset + length)`. Windows are at most MAX_WINDOW_BYTES long. */
  map(offset: number, length: number): RegionWindow;
  /** Live windows of this region. */
  windows(): readonly RegionWindow[];
  /** Makes every store durable (no-op where `durable` is false). */
  flush(): void;
  /** Unmaps every window and releases the file. Idempotent. */
  close(): void;
  /**
   * Liveness marks (optional): an open of a pool on the region marks its run id here for as long
   * as it lives, and another open, of any process, asks whether a run's mark is still held — the
   * one question about a lock holder of another PID namespace that /proc cannot answer. A
   * FileRegion marks with an OFD lock on byte LIVENESS_MARKS + id of its file, which the kernel
   * drops when the descriptor goes (close, death, execve), and the addon when the thread that took
   * it ends (a worker's descriptors stay open). `livenessMarkHeld` is null when it
   * cannot tell. A region without them (in memory: one process) leaves such holders to be taken
   * for alive.
   */
  holdLivenessMark?(id: number): boolean;
  releaseLivenessMark?(id: number): void;
  livenessMarkHeld?(id: number): boolean | null;
}

/**
 * Where a FileRegion's liveness marks are: byte 2^52 + id of its file, far past the end of any
 * region (a lock there changes nothing of the file). docs/abi.md, "Liveness marks".
 */
export const LIVENESS_MARKS = 2 ** 52;

/**
 * The live windows of a region, held weakly: a window the program drops is collected and its
 * mapping released by the addon's finalizer, as DESIGN.md §3 asks; an unmapped window is forgotten.
 */
export class LiveWindows<W extends RegionWindow> {
  private readonly live = new Set<WeakRef<W>>();
  private readonly refs = new WeakMap<W, WeakRef<W>>();
  private readonly collected = new FinalizationRegistry<WeakRef<W>>((ref) => this.live.delete(ref));

  add(window: W): void {
    const ref = new WeakRef(window);
    this.live.add(ref);
    this.refs.set(window, ref);
    this.collected.register(window, ref, ref);
  }

  /** Called by a window as it unmaps. */
  forget(window: W): void {
    const ref = this.refs.get(window);
    if (!ref) return;
    this.live.delete(ref);
    this.collected.unregister(ref);
  }

  /** The windows not yet collected that are still mapped. */
  mapped(): W[] {
    const out: W[] = [];
    for (const ref of this.live) {
      const w = ref.deref();
      if (w?.mapped) out.push(w);
    }
    return out;
  }
}

/**
 * Windows kept alive by their buffers. A view of a window's memory (`bytes()`, a typed array over
 * `buffer`) holds the buffer, never the window object; a window collected while its views lived on
 * would be gone from its region's LiveWindows, and close() would leave its mapping in place,
 * writable, after the region's lock was released. Held here, a window lives as long as any view
 * of its memory — and no longer: once the buffer is unreachable, so is the window, and the addon's
 * finalizer unmaps it.
 */
const heldByBuffer = new WeakMap<object, RegionWindow[]>();
export function holdWhileBufferLives(window: RegionWindow): void {
  // A SharedArrayBuffer is a MemoryRegion's one buffer, shared by all its windows and its slices'
  // windows: nothing to unmap, and held here each of them would live as long as the region.
  if (!(window.buffer instanceof ArrayBuffer)) return;
  const held = heldByBuffer.get(window.buffer);
  if (held) held.push(window);
  else heldByBuffer.set(window.buffer, [window]);
}

/**
 * The span of one huge page under a tmpfs window (a PMD's, with 4 KiB pages): what preferHugePages
 * collapses, and what native/mappings.c's HUGE_EXTENT aligns windows to. A run meant to be huge
 * pages starts on a multiple of it.
 */
export const HUGE_EXTENT_BYTES = 2 * 1024 * 1024;

/** Node 20 refuses external ArrayBuffers larger than 4 GiB. */
export const MAX_WINDOW_BYTES = 4 * 1024 ** 3;

/** The size of a system page, the unit of mmap offsets. */
export const SYSTEM_PAGE_SIZE = 4096;

export function checkSize(size: unknown, pageSize: number, path: string | null): number {
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) {
    throw new RegionError('BAD_SIZE', `region size must be a positive integer number of bytes, got ${String(size)}`, path);
  }
  if (size % pageSize !== 0) {
    throw new RegionError('BAD_SIZE', `region size ${size} is not a multiple of the page size ${pageSize}`, path);
  }
  return size;
}

export function checkWindow(region: Region, offset: number, length: number): void {
  if (region.closed) throw new RegionError('CLOSED', 'region is closed', region.path);
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0) {
    throw new RegionError('BAD_RANGE', `bad window [${offset}, +${length})`, region.path);
  }
  if (offset + length > region.size) {
    throw new RegionError('BAD_RANGE', `window [${offset}, +${length}) ends past the region's ${region.size} bytes`, region.path);
  }
  if (length > MAX_WINDOW_BYTES) {
    throw new RegionError('BAD_RANGE', `window of ${length} bytes is over the ${MAX_WINDOW_BYTES}-byte limit`, region.path);
  }
}

/**
 * `[offset, +length)` relative to a window must lie inside it: the mapping behind a window spans
 * whole pages around it, so the addon alone would let a range reach (and 'remove' discard) bytes
 * of the region the window does not hold.
 */
export function checkWindowRange(window: RegionWindow, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > window.length) {
    throw new RegionError('BAD_RANGE', `range [${offset}, +${length}) is not inside the window's ${window.length} bytes`, window.region.path);
  }
}

/** Advice a window takes, or RegionError BAD_ARGUMENT (the addon's own refusal would be a TypeError). */
export function checkAdvice(advice: unknown, path: string | null): asserts advice is WindowAdvice {
  if (!(WINDOW_ADVICE as readonly unknown[]).includes(advice)) {
    throw new RegionError('BAD_ARGUMENT', `advice must be one of ${WINDOW_ADVICE.join(', ')}, got ${describeValue(advice)}`, path);
  }
}

/** Parses sizes such as "64M", "1G", "1T", "4K", "2M" or a plain number of bytes. */
export function parseSize(text: string): number {
  // "i" only after a unit: "4KiB", never "4i" or "4iB".
  const m = /^\s*(\d+)\s*(?:([kmgtp])i?)?b?\s*$/i.exec(text);
  if (!m) throw new RegionError('BAD_SIZE', `cannot read a size from "${text}" (examples: 4096, 64M, 1G, 1T)`, null);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 }[(m[2] ?? '').toLowerCase()]!;
  const value = Number(m[1]) * unit;
  if (!Number.isSafeInteger(value)) throw new RegionError('BAD_SIZE', `size "${text}" is too large`, null);
  return value;
}

/** An options object of the region API, and its boolean fields: typed, or RegionError BAD_ARGUMENT. */
export function regionOptions<T extends object>(
  value: T | undefined,
  what: string,
  path: string | null,
  booleans: readonly (keyof T & string)[],
  required = false,
): T {
  const badArgument = (message: string) => new RegionError('BAD_ARGUMENT', message, path);
  const options = checkOptions(value, what, badArgument, required);
  for (const field of booleans) checkBooleanOption(options[field], field, badArgument);
  return options;
}

/** A path argument: a non-empty string with no NUL (which no system call takes). */
export function checkPath(path: unknown, what: string): asserts path is string {
  if (typeof path !== 'string' || path.length === 0) {
    throw new RegionError('BAD_ARGUMENT', `${what} needs a path, got ${describeValue(path)}`, null);
  }
  if (path.includes('\0')) throw new RegionError('BAD_ARGUMENT', `${what}: a path cannot hold a NUL character, got ${JSON.stringify(path)}`, null);
}
