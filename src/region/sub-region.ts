/**
 * A Region that is a slice of another: how a sub-pool lives inside a run of
 * its parent pool (the kernel RFC's subsystems that "set aside their
 * region"). Windows are mapped from the root region; closing the slice leaves the
 * parent open.
 */
import { checkSize, checkWindow, holdWhileBufferLives, LiveWindows, RegionError, type Region, type RegionKind, type RegionWindow, type WindowAdvice } from './region.js';
import { describeValue } from '../util/options.js';

/**
 * A window of a slice: a window of the root region, under the slice's offset. Its fields are copied,
 * and its state is its own and its region's, so that nothing is a walk up the chain of parents: a
 * sub-pool's sub-pool's window answers as fast as a pool's.
 */
class SubWindow implements RegionWindow {
  readonly length: number;
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  readonly byteOffset: number;
  private unmapped = false;
  constructor(
    readonly region: SubRegion,
    private readonly inner: RegionWindow,
    readonly offset: number,
  ) {
    this.length = inner.length;
    this.buffer = inner.buffer;
    this.byteOffset = inner.byteOffset;
  }
  /** The inner window is this one's alone: it is unmapped only through here, or by the close of a region above, which closes this one's. */
  get mapped(): boolean {
    return !this.unmapped && !this.region.closed;
  }
  bytes(): Uint8Array {
    if (!this.mapped) throw new RegionError('CLOSED', 'window is unmapped', this.region.path);
    return this.inner.bytes();
  }
  flush(offset?: number, length?: number): void {
    this.inner.flush(offset, length);
  }
  advise(advice: WindowAdvice, offset?: number, length?: number): void {
    this.inner.advise(advice, offset, length);
  }
  preferHugePages(offset?: number, length?: number): number {
    return this.inner.preferHugePages(offset, length);
  }
  unmap(): void {
    this.unmapped = true;
    innerOfDropped.unregister(this);
    this.inner.unmap();
    this.region.forget(this);
  }
}

/**
 * The inner windows of slices' windows over a SharedArrayBuffer (a MemoryRegion's), unmapped when
 * the slice's window is collected. Nothing else holds them (holdWhileBufferLives holds no window of
 * a SharedArrayBuffer), and a MemoryRegion keeps its windows strongly, until unmap() or close():
 * every window a slice dropped stayed with the region for its life. A window over an ArrayBuffer
 * is not entered: held here it would hold its buffer, and the buffer its windows, for ever; the
 * addon's finalizer unmaps it once the buffer goes.
 */
const innerOfDropped = new FinalizationRegistry<RegionWindow>((inner) => inner.unmap());

export class SubRegion implements Region {
  private isClosed = false;
  /**
   * The first region up the chain that is not a slice, and where this slice starts in it. Its
   * `closed` answers for every slice of it, and windows are mapped from it directly: through each
   * parent in turn, a window of a slice n deep cost n maps, and a chain of sub-pools n deep n² to
   * open or check (a hostile file can nest hundreds).
   */
  private readonly root: Region;
  private readonly rootBase: number;
  /** Slices of this one, open: closed with it, so that `closed` never walks the chain. */
  private readonly slices = new Set<SubRegion>();
  /* Weakly, as a FileRegion holds its own: a window held here would keep the root's window,
     and so its mapping, alive until the slice is closed. */
  private readonly live = new LiveWindows<SubWindow>();

  /** Bytes `[base, base + size)` of `parent`; `base` a multiple of the parent's page size. */
  constructor(
    readonly parent: Region,
    readonly base: number,
    readonly size: number,
  ) {
    if (parent === null || typeof parent !== 'object' || typeof (parent as { map?: unknown }).map !== 'function' || typeof parent.pageSize !== 'number') {
      throw new RegionError('BAD_ARGUMENT', `a SubRegion needs a parent Region, got ${describeValue(parent)}`, null);
    }
    checkSize(size, parent.pageSize, parent.path);
    if (!Number.isSafeInteger(base) || base < 0 || base % parent.pageSize !== 0 || base + size > parent.size) {
      throw new RegionError('BAD_RANGE', `slice [${base}, +${size}) does not fit the parent region`, parent.path);
    }
    if (parent instanceof SubRegion) {
      this.root = parent.root;
      this.rootBase = parent.rootBase + base;
      if (parent.closed) this.isClosed = true;
      else parent.slices.add(this);
    } else {
      this.root = parent;
      this.rootBase = base;
    }
  }

  /* What the backing is, the root's: every slice of a region is of the same file or memory. */
  get kind(): RegionKind {
    return this.root.kind;
  }
  get path(): string | null {
    return this.root.path;
  }
  get pageSize(): number {
    return this.root.pageSize;
  }
  get durable(): boolean {
    return this.root.durable;
  }
  /** A pool refuses a read-only region, where a store would be a SIGSEGV. */
  get readOnly(): boolean | undefined {
    return this.root.readOnly;
  }
  get closed(): boolean {
    return this.isClosed || this.root.closed;
  }

  map(offset: number, length: number): RegionWindow {
    checkWindow(this, offset, length);
    const inner = this.root.map(this.rootBase + offset, length);
    const w = new SubWindow(this, inner, offset);
    this.live.add(w);
    holdWhileBufferLives(w);
    if (!(inner.buffer instanceof ArrayBuffer)) innerOfDropped.register(w, inner, w);
    return w;
  }

  windows(): readonly RegionWindow[] {
    return this.live.mapped();
  }

  /** @internal called by a window as it unmaps. */
  forget(window: SubWindow): void {
    this.live.forget(window);
  }

  flush(): void {
    for (const w of this.windows()) w.flush();
  }

  /* Liveness marks are the root's: a sub-pool's opens mark their run ids in the file they live in. */
  holdLivenessMark(id: number): boolean {
    return this.root.holdLivenessMark?.(id) ?? false;
  }
  releaseLivenessMark(id: number): void {
    this.root.releaseLivenessMark?.(id);
  }
  livenessMarkHeld(id: number): boolean | null {
    return this.root.livenessMarkHeld?.(id) ?? null;
  }

  close(): void {
    if (this.isClosed) return;
    for (const slice of this.slices) slice.close();
    for (const w of this.live.mapped()) w.unmap();
    this.isClosed = true;
    if (this.parent instanceof SubRegion) this.parent.slices.delete(this);
  }
}
