/**
 * The crash simulation harness (DESIGN.md §4, STYLE.md "TigerBeetle"): a
 * deterministic run of pool operations over an in-memory region, stopped
 * dead after its k-th metadata store for every k in turn, and the image of
 * the region at that instant handed to the next open.
 *
 * How a crash is made: every MetaWriter attached while a Tracer is installed
 * (the parent pool's, its sub-pools', a recovering opener's) logs each store
 * to the tracer, which counts them. To crash at store k the run is replayed
 * from the same starting image with the same seed; at store k the tracer
 * copies the whole region — every byte written so far, metadata through the
 * writer and data or formatting written around it, in program order — and
 * throws, abandoning the run. A torn crash copies the region with only the
 * first half (whole u32 words) of store k in place: a u64 written as two
 * words, a record or superblock copy cut short.
 *
 * Those images are what a process crash leaves on /dev/shm, where stores
 * land in program order. A power cut on a file-backed pool leaves less
 * order: between two barriers (msyncs) the kernel may write dirty pages back
 * in any order, each page as of some moment. An "ahead" crash point models
 * the adversarial case for each store k of the pool's own writer: every page
 * as of the last barrier before k, but the page(s) of store k as of store k
 * — a later store on disk without the earlier stores of its epoch. A
 * "mixed" one goes further: each page the epoch dirtied as of a moment of
 * its own (the barrier, or after one of the epoch's stores to it), so that
 * a page may reach the file as of a store that a later store to it undid —
 * a record claimed and put back, say, with its intent already cleared on
 * another page.
 */
import { setAttachHook, type StoreLog, type StoreRecord } from '../../src/pool/internals.js';
import { MemoryRegion } from '../../src/region/index.js';

/** Thrown at the crash point; nothing catches it but the harness. */
export class Crash extends Error {
  constructor() {
    super('simulated crash');
  }
}

export interface CrashPoint {
  /** The crash falls after store `k` (1-based) — or in the middle of it when torn. */
  k: number;
  torn: boolean;
  /** A power cut: every page as of the barrier that followed store `ahead` (0: the start), but store k's page(s). */
  ahead?: number;
  /**
   * With `ahead`: each page the pool's writer dirtied since that barrier as of some moment of the
   * epoch instead — as of the barrier, or after one of its stores to that page, chosen by a hash
   * of k and the page — and store k's page(s) as of store k. Writeback takes a page whenever it
   * likes: a page may reach the file as of a store that a later store to it undoes.
   */
  mixed?: boolean;
}

/** The granule of writeback: pages reach the file whole, each as of some moment. */
export const WRITEBACK_PAGE = 4096;

export interface StoreInfo {
  /** Byte offset in the root region. */
  at: number;
  length: number;
  /** Stored by the writer of the region's own pool (its metadata window starts at 0). */
  root: boolean;
  /** Stores (by the root writer) counted when its last barrier before this store was issued. */
  epochStart: number;
}

/** The number of bytes of a store of `length` that a torn crash keeps (whole words, about half). */
export function tornKeep(length: number): number {
  return 4 * Math.floor(length / 8);
}

function pagesOf(s: StoreInfo): [number, number] {
  return [Math.floor(s.at / WRITEBACK_PAGE), Math.floor((s.at + s.length - 1) / WRITEBACK_PAGE)];
}

/**
 * Crash points of a run whose stores are `stores`: every store, the middle
 * of every store of two words or more, and — with `durable` — every store of
 * the root writer that can reach the file ahead of an earlier store of its
 * epoch (one on another page).
 */
export function crashPoints(stores: readonly StoreInfo[], durable = false): CrashPoint[] {
  const points: CrashPoint[] = [];
  stores.forEach((s, i) => {
    if (s.length >= 8) points.push({ k: i + 1, torn: true });
    points.push({ k: i + 1, torn: false });
    if (!durable || !s.root) return;
    const [first, last] = pagesOf(s);
    const overtakes = stores.slice(s.epochStart, i).some((e) => {
      if (!e.root) return false;
      const [f, l] = pagesOf(e);
      return l < first || f > last;
    });
    if (!overtakes) return;
    points.push({ k: i + 1, torn: false, ahead: s.epochStart });
    points.push({ k: i + 1, torn: false, ahead: s.epochStart, mixed: true });
  });
  return points;
}

/** Which moment of its epoch a page reaches the file as, at a mixed power cut at store k: 0 (the barrier) to `versions`. */
function versionOf(k: number, page: number, versions: number): number {
  let h = Math.imul(k, 0x9e3779b1) ^ Math.imul(page + 1, 0x85ebca6b);
  h ^= h >>> 15;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 13;
  return (h >>> 0) % (versions + 1);
}

export class Tracer {
  /** Stores seen so far. */
  count = 0;
  /** Every store seen, when recording (the reference run). */
  readonly stores: StoreInfo[] | null;
  /** The region image at the crash point, once reached. */
  image: MemoryRegion | null = null;
  /** Stores counted at the root writer's last barrier. */
  private epochStart = 0;
  /** For an "ahead" point: the region as of the barrier its epoch starts at. */
  private barrierImage: MemoryRegion | null = null;
  /** For a mixed point: the root writer's stores since its last barrier (where, and the bytes after). */
  private epochStores: { at: number; bytes: Uint8Array }[] = [];

  constructor(
    /** The region every traced writer writes into (its windows' byteOffset is a region offset). */
    readonly root: MemoryRegion,
    readonly crashAt: CrashPoint | null,
  ) {
    this.stores = crashAt === null ? [] : null;
    if (crashAt?.ahead === 0) this.barrierImage = root.clone();
  }

  /** Installs this tracer on every pool attached until `uninstall()`. */
  install(): void {
    setAttachHook((parts) => {
      parts.writer.log = this.logFor(parts.writer.window.byteOffset);
    });
  }

  uninstall(): void {
    setAttachHook(null);
  }

  /** A StoreLog whose `records.push` counts stores of a writer whose window starts at `base` in the root region. */
  private logFor(base: number): StoreLog {
    const root = base === 0;
    const push = (r: StoreRecord): number => {
      if (!('offset' in r)) {
        // A barrier: orders stores, changes no byte. The root writer's mark the epochs of "ahead" points.
        if (root) {
          this.epochStart = this.count;
          this.epochStores = [];
          if (this.crashAt?.ahead === this.count && this.barrierImage === null) this.barrierImage = this.root.clone();
        }
        return 0;
      }
      this.count++;
      this.stores?.push({ at: base + r.offset, length: r.bytes.length, root, epochStart: this.epochStart });
      if (root && this.crashAt?.mixed === true) this.epochStores.push({ at: r.offset, bytes: r.bytes });
      if (this.crashAt !== null && this.count === this.crashAt.k) {
        if (this.crashAt.ahead !== undefined) {
          // Every page as of the barrier, but this store's page(s) as of now.
          const image = this.barrierImage!;
          if (this.crashAt.mixed === true) this.mixPages(image, this.crashAt.k);
          const from = Math.floor((base + r.offset) / WRITEBACK_PAGE) * WRITEBACK_PAGE;
          const to = Math.ceil((base + r.offset + r.bytes.length) / WRITEBACK_PAGE) * WRITEBACK_PAGE;
          new Uint8Array(image.buffer).set(new Uint8Array(this.root.buffer, from, to - from), from);
          this.image = image;
          throw new Crash();
        }
        const image = this.root.clone();
        if (this.crashAt.torn) {
          // Undo the second half of this store in the image: it never reached memory.
          const keep = tornKeep(r.bytes.length);
          new Uint8Array(image.buffer).set(r.before.subarray(keep), base + r.offset + keep);
        }
        this.image = image;
        throw new Crash();
      }
      return 0;
    };
    return { records: { push } as unknown as StoreRecord[] };
  }

  /** Brings each page the epoch's stores dirtied to the moment versionOf() picks for it. */
  private mixPages(image: MemoryRegion, k: number): void {
    const bytes = new Uint8Array(image.buffer);
    const perPage = new Map<number, { at: number; bytes: Uint8Array }[]>();
    for (const s of this.epochStores) {
      const [first, last] = pagesOf({ at: s.at, length: s.bytes.length, root: true, epochStart: 0 });
      for (let page = first; page <= last; page++) {
        let list = perPage.get(page);
        if (list === undefined) perPage.set(page, (list = []));
        list.push(s);
      }
    }
    for (const [page, stores] of perPage) {
      const from = page * WRITEBACK_PAGE;
      const to = from + WRITEBACK_PAGE;
      const upTo = versionOf(k, page, stores.length);
      for (let i = 0; i < upTo; i++) {
        const s = stores[i]!;
        const a = Math.max(from, s.at);
        const b = Math.min(to, s.at + s.bytes.length);
        bytes.set(s.bytes.subarray(a - s.at, b - s.at), a);
      }
    }
  }
}

/**
 * Runs `body` under a tracer: to the end (crashAt null: the stores are
 * recorded), or until the crash point (the tracer then holds the image).
 */
export function traced(root: MemoryRegion, crashAt: CrashPoint | null, body: (tracer: Tracer) => void): Tracer {
  const tracer = new Tracer(root, crashAt);
  tracer.install();
  try {
    body(tracer);
  } catch (e) {
    if (!(e instanceof Crash && crashAt !== null)) throw e;
  } finally {
    tracer.uninstall();
  }
  return tracer;
}
