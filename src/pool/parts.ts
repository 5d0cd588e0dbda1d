/**
 * The pieces of one open pool, as seen by recovery and check: the metadata
 * writer and the structures laid over it. Pool owns one; recovery and check
 * borrow it under the lock.
 */
import { BitmapAllocator } from '../alloc/index.js';
import type { RegionWindow } from '../region/index.js';
import { crc32c } from '../util/crc32c.js';
import { BareUnits } from './bare-units.js';
import { CACHE_MIN_RECORDS, CacheTable } from './caches.js';
import { Control, type LockOptions } from './control.js';
import { Directory } from './directory.js';
import { homeSlotOfUnit, INCOMPAT_BARE_UNITS, INCOMPAT_OPEN_CACHES, type Geometry, type Superblock } from './layout.js';
import { MetaWriter, TracedMetaWriter } from './meta-writer.js';
import { hashPfn, RecordIndex } from './record-index.js';

export interface PoolParts {
  readonly geometry: Geometry;
  /** 2^orderPerBit: pages per unit. */
  readonly unitPages: number;
  /** The first pfn past the metadata, and the pfn past the pool's last whole unit. */
  readonly firstPfn: number;
  readonly endPfn: number;
  readonly writer: MetaWriter;
  readonly control: Control;
  /** The per-open caches of free units (caches.ts); disabled on a pool made before them, and on a small directory. */
  readonly caches: CacheTable;
  /** The bare-unit map (bare-units.ts); disabled on a pool without one, or whose opens do not use caches. */
  readonly bare: BareUnits;
  readonly units: BitmapAllocator;
  readonly slots: BitmapAllocator;
  readonly directory: Directory;
  readonly pfnIndex: RecordIndex;
  readonly nameIndex: RecordIndex;
}

export function attachParts(
  sb: Superblock,
  window: RegionWindow,
  durable: boolean,
  runId: number,
  lockOptions: LockOptions,
): PoolParts {
  const g = sb.geometry;
  // A durable pool msyncs at barriers, and a tracer (the crash simulation) logs every store:
  // both need the traced writer. Every other pool gets the plain one, whose stores are just stores.
  const writer = durable || attachHook !== null ? new TracedMetaWriter(window, durable) : new MetaWriter(window);
  const a = g.areas;
  const cachesEnabled = (sb.incompat & INCOMPAT_OPEN_CACHES) !== 0 && g.maxRecords >= CACHE_MIN_RECORDS;
  const bareArea = g.bareUnits;
  const parts: PoolParts = {
    geometry: g,
    unitPages: 2 ** g.orderPerBit,
    firstPfn: g.reservedUnits * 2 ** g.orderPerBit,
    endPfn: g.unitCount * 2 ** g.orderPerBit,
    writer,
    control: new Control(writer, a.control.offset, runId, lockOptions),
    caches: new CacheTable(writer, a.control.offset, cachesEnabled),
    bare: new BareUnits(writer, bareArea?.offset ?? 0, g.unitCount, bareArea !== null && (sb.incompat & INCOMPAT_BARE_UNITS) !== 0 && cachesEnabled, bareArea !== null),
    units: new BitmapAllocator(writer.wordStore(a.unitBitmap.offset, a.unitBitmap.length >>> 2), g.unitCount),
    slots: new BitmapAllocator(writer.wordStore(a.recordBitmap.offset, a.recordBitmap.length >>> 2), g.maxRecords),
    directory: new Directory(writer, a.records.offset, g.maxRecords),
    pfnIndex: new RecordIndex(writer, a.pfnIndex.offset, g.indexSlots),
    nameIndex: new RecordIndex(writer, a.nameIndex.offset, g.indexSlots),
  };
  attachHook?.(parts);
  return parts;
}

let attachHook: ((parts: PoolParts) => void) | null = null;

/**
 * @internal Called with the parts of every pool attached from now on, before
 * its first store (the crash simulation logs every writer, sub-pools' and
 * recovering openers' included). Null to stop. A pool attached while a hook
 * is installed gets a TracedMetaWriter, so the hook (or a test, later) may
 * set its store log; any other pool on /dev/shm or in memory gets the plain
 * MetaWriter, which cannot be traced.
 */
export function setAttachHook(hook: ((parts: PoolParts) => void) | null): void {
  attachHook = hook;
}

export function hashName(name: Uint8Array): number {
  return crc32c(name);
}

export { hashPfn, homeSlotOfUnit };

/**
 * The home slot of an allocation starting at `pfn`: its unit modulo the
 * directory capacity (docs/abi.md). An allocation takes its home slot when
 * that slot is free; only the records that could not are entered in the pfn
 * index. A release then reaches the record directly, and with one-page
 * allocations made one after another the records written are neighbours.
 */
export function homeSlot(g: Geometry, pfn: number): number {
  return homeSlotOfUnit(g, Math.floor(pfn / 2 ** g.orderPerBit));
}


/** Units of a run of pages: rounded up to whole units of 2^orderPerBit pages. */
export function unitsOf(g: Geometry, pageCount: number): number {
  return Math.ceil(pageCount / 2 ** g.orderPerBit);
}
