/**
 * An in-memory Region with the same interface as a file-backed one, over a
 * SharedArrayBuffer (so worker threads can share it and Atomics work on it).
 * Tests use it, and the crash simulation clones it to replay prefixes of a
 * run's stores.
 */
import { describeValue } from '../util/options.js';
import { checkAdvice, checkSize, checkWindow, checkWindowRange, RegionError, SYSTEM_PAGE_SIZE, type Region, type RegionWindow, type WindowAdvice } from './region.js';

class MemoryWindow implements RegionWindow {
  private live = true;
  constructor(
    readonly region: MemoryRegion,
    readonly offset: number,
    readonly length: number,
  ) {}
  get buffer(): SharedArrayBuffer {
    return this.region.buffer;
  }
  get byteOffset(): number {
    return this.offset;
  }
  get mapped(): boolean {
    return this.live && !this.region.closed;
  }
  bytes(): Uint8Array {
    if (!this.mapped) throw new RegionError('CLOSED', 'window is unmapped', null);
    return new Uint8Array(this.region.buffer, this.offset, this.length);
  }
  // Nothing to do, but a range outside the window is refused as a file-backed window refuses it.
  flush(offset = 0, length = this.length - offset): void {
    checkWindowRange(this, offset, length);
  }
  advise(advice: WindowAdvice, offset = 0, length = this.length - offset): void {
    checkAdvice(advice, null);
    checkWindowRange(this, offset, length);
  }
  // A SharedArrayBuffer is V8's memory: nothing to ask of it.
  preferHugePages(offset = 0, length = this.length - offset): number {
    checkWindowRange(this, offset, length);
    return 0;
  }
  unmap(): void {
    this.live = false;
    this.region.forget(this);
  }
}

export class MemoryRegion implements Region {
  readonly kind = 'memory' as const;
  readonly path = null;
  readonly durable = false;
  readonly pageSize = SYSTEM_PAGE_SIZE;
  readonly size: number;
  readonly buffer: SharedArrayBuffer;
  private isClosed = false;
  /*
   * Strongly, unlike a FileRegion's: a MemoryRegion has no mapping for a finalizer to release, and a
   * WeakRef keeps its target alive until the current job ends anyway — a program (the crash
   * simulation) that makes thousands of regions and windows in one synchronous run kept every one
   * of them, gigabytes, when they were held weakly. An unmapped window is forgotten; a dropped one
   * goes with the region.
   */
  private readonly live = new Set<MemoryWindow>();

  /** A zeroed region of `size` bytes, or a region over an existing buffer (e.g. one shared with a worker). */
  constructor(sizeOrBuffer: number | SharedArrayBuffer) {
    if (typeof sizeOrBuffer === 'number') {
      this.size = checkSize(sizeOrBuffer, SYSTEM_PAGE_SIZE, null);
      try {
        this.buffer = new SharedArrayBuffer(this.size);
      } catch (e) {
        // V8's RangeError ("Array buffer allocation failed"): more than this process may have.
        throw new RegionError('TOO_LARGE', `a MemoryRegion of ${this.size} bytes cannot be allocated: ${(e as Error).message}`, null, { cause: e });
      }
    } else {
      if (!(sizeOrBuffer instanceof SharedArrayBuffer)) {
        throw new RegionError('BAD_ARGUMENT', `MemoryRegion needs a size in bytes or a SharedArrayBuffer, got ${describeValue(sizeOrBuffer)}`, null);
      }
      this.size = checkSize(sizeOrBuffer.byteLength, SYSTEM_PAGE_SIZE, null);
      this.buffer = sizeOrBuffer;
    }
  }

  get closed(): boolean {
    return this.isClosed;
  }

  map(offset: number, length: number): RegionWindow {
    checkWindow(this, offset, length);
    const w = new MemoryWindow(this, offset, length);
    this.live.add(w);
    return w;
  }

  windows(): readonly RegionWindow[] {
    return [...this.live].filter((w) => w.mapped);
  }

  /** @internal called by a window as it unmaps. */
  forget(window: MemoryWindow): void {
    this.live.delete(window);
  }

  flush(): void {
    /* nothing to make durable */
  }

  close(): void {
    this.isClosed = true;
    this.live.clear();
  }

  /** A new, independent region holding a copy of these bytes. */
  clone(): MemoryRegion {
    const copy = new MemoryRegion(this.size);
    new Uint8Array(copy.buffer).set(new Uint8Array(this.buffer));
    return copy;
  }
}
