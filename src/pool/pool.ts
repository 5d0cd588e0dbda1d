/**
 * Pool: a contiguous page allocator whose whole state lives in its region —
 * the kernel RFC's "CMA with its bitmap inside the reserved memory", with a
 * versioned, checksummed superblock, a directory of named, owned
 * allocations, a robust cross-process lock and crash recovery.
 *
 * Every metadata store goes through one MetaWriter; every operation runs
 * under the pool lock and follows the intent protocol (docs/abi.md):
 *   alloc:   intent → mark units and slot → write record → commit → index → end intent
 *            (a sub-pool's run is formatted between writing its record and the commit)
 *   release: intent → uncommit record → unindex → wipe → free units and slot → end intent
 *   generation, repair: intent → backup superblock, primary / rebuild → end intent
 * A crash anywhere leaves an intent record, and the next locker rebuilds the
 * derived state from the directory (and makes the superblock copies one).
 * An allocation's record goes in its home slot (first unit modulo the
 * directory capacity) when that is free; only records elsewhere are entered
 * in the pfn index (docs/abi.md, "Home slots").
 */
import { randomBytes } from '../sys/random.js';
import { BitmapAllocator, BitmapStateError } from '../alloc/index.js';
import { FileRegion, RegionError, SubRegion, parseSize, type Region, type RegionWindow } from '../region/index.js';
import { beginCacheIntent, cachedUnits, CACHE_BATCH, CACHE_ENTRIES, CACHE_UNITS, CacheOp, claimEntry, dissolveAndUnlock, dissolvedLine, drainAll, endCacheIntent, lockEntries, lockEntry, refill, spill, unlockEntries } from './caches.js';
import { checkParts } from './check.js';
import { intentName, IntentOp, newRunId, peekIntentOp } from './control.js';
import { CLAIM_BY_CACHE, CLAIM_BY_POOL_LOCK, encodeLabel, RECORD_FLAG_SUBPOOL, decodeLabel, optionalLabel } from './directory.js';
import { PoolError } from './errors.js';
import {
  ABI_MAJOR,
  ABI_MINOR,
  AREA_ALIGN,
  computeGeometry,
  decodeSuperblock,
  encodeSuperblock,
  INCOMPAT_BARE_UNITS,
  INCOMPAT_OPEN_CACHES,
  isSuperblockProblem,
  MAX_NAME_BYTES,
  MAX_OWNER_BYTES,
  SB_FLAG_SUBPOOL,
  SUPERBLOCK_BACKUP_OFFSET,
  SUPERBLOCK_BYTES,
  uuidToString,
  type Geometry,
  type Superblock,
} from './layout.js';
import { MetaWriter } from './meta-writer.js';
import { attachParts, hashName, hashPfn, homeSlotOfUnit, unitsOf, type PoolParts } from './parts.js';
import { extentFits, liveRecords, rebuildDerived, type LiveRecord } from './recovery.js';
import { bytesEqual } from '../util/bytes.js';
import { describeValue } from '../util/options.js';
import { Allocation } from './allocation.js';
import { ownerUsage } from './owner-usage.js';
import { checkAlign, checkCount, checkLabel, checkMode, checkOpenOptions, checkPoolBoolean, checkTarget, poolOptions } from './arguments.js';
import type { AllocOptions, CheckReport, PoolCreateOptions, PoolOpenOptions, PoolStats, ReleaseOptions } from './options.js';

/** A check's report with the number of problems its lines stand for (Pool.checkCounted). */
export type CountedCheckReport = CheckReport & { problemCount: number };

/** The owner of every sub-pool's run in its parent. */
const SUBPOOL_OWNER = 'pmpool:subpool';

/** Data is mapped in aligned chunks of this size, on demand. */
const CHUNK_BYTES = 1024 ** 3;
/**
 * Sub-pools nest at most this deep: subpool() refuses to go deeper, and check() does not descend
 * past it. Each level is a few frames of check()'s recursion, and a hostile file can nest
 * thousands (3,000 levels of 8 pages ran out of stack: a bare RangeError).
 */
const MAX_SUBPOOL_NESTING = 32;
const NO_BYTES = new Uint8Array(0);

export type RestoreHook = (handover: unknown, name?: string) => Pool;
let restoreHook: RestoreHook | null = null;
/** @internal set by the kexec layer, which knows the handover binding. */
export function setRestoreHook(hook: RestoreHook): void {
  restoreHook = hook;
}

/** Cached operations an open lets go by before it asks again for a cache entry, when it found none free. */
const CACHE_CLAIM_BACKOFF = 4096;

/** Zeroing (alloc with `zero`) maps at most this much at a time. */
const ZERO_WINDOW_BYTES = 64 * 1024 * 1024;

export class Pool {
  private parts: PoolParts | null;
  private readonly metaWindow: RegionWindow;
  private readonly chunks = new Map<number, RegionWindow>();
  private readonly children = new Set<Pool>();
  /** What onClose() registered: run by close() while the pool's memory is still mapped. */
  private readonly closeCallbacks = new Set<() => void>();
  private quiesced = false;
  private sb: Superblock;
  /** How this open locks; its sub-pools lock the same way. */
  private readonly lockOptions: PoolOpenOptions;
  /** Lines describing what recovery did when this open found a crashed operation. */
  readonly recovered: string[];

  private constructor(
    readonly region: Region,
    sb: Superblock,
    metaWindow: RegionWindow,
    private readonly ownsRegion: boolean,
    options: PoolOpenOptions,
    readonly damagedSuperblock: boolean,
  ) {
    this.sb = sb;
    this.metaWindow = metaWindow;
    this.lockOptions = lockOptionsOf(options);
    // This open's liveness mark, held until it closes (or its descriptor goes with the process):
    // how a process of another PID namespace tells that it lives (liveness.ts). Recorded with the
    // open's identity whether it could be taken: a holder without one is not judged by one.
    const runId = newRunId();
    const marked = region.holdLivenessMark?.(runId) ?? false;
    try {
      this.parts = attachParts(sb, metaWindow, region.durable, runId, {
        timeoutMs: options.lockTimeoutMs,
        isAlive: options.isAlive,
        identityGraceMs: options.identityGraceMs,
        livenessPeriodMs: options.livenessPeriodMs,
        markHeld: (id) => region.livenessMarkHeld?.(id) ?? null,
        marked,
      });
    } catch (e) {
      if (marked) region.releaseLivenessMark?.(runId);
      throw e;
    }
    this.recovered = [];
    // A held lock or an operation left half done is dealt with now, not at the first alloc: take
    // the lock, which waits for a live holder, or breaks a dead one and repairs its operation. A
    // free lock and no intent — the usual case — cost two word reads, and no lock at all.
    const control = this.parts.control;
    const caches = this.parts.caches;
    // So is a cached operation an open left half done (caches.ts): the look is O(entries).
    if (control.lockWord() !== 0 || control.intent() !== null || caches.anyBusy()) {
      try {
        this.withLock(() => {
          if (!caches.anyBusy()) return;
          const dissolved: number[] = [];
          unlockEntries(this.parts!, lockEntries(this.parts!, this.parts!.control.timeoutMs, true, dissolved));
          for (const e of dissolved) this.recovered.push(dissolvedLine(e));
        });
      } catch (e) {
        // The open fails (LOCK_TIMEOUT, a repair that throws): its metadata window goes back now.
        // The region may be the caller's, or a parent pool's for a sub-pool, and stays open.
        if (marked) region.releaseLivenessMark?.(runId);
        this.parts = null;
        metaWindow.unmap();
        throw e;
      }
    }
  }

  /* ---------------- creation and opening ---------------- */

  /** Creates a pool: a new file at `path` (O_EXCL, 0600), or over a fresh `Region`. */
  static create(target: string | Region, options: PoolCreateOptions): Pool {
    // Every option is checked before a file is created or a region written.
    checkTarget(target, 'Pool.create');
    options = poolOptions(options, 'Pool.create options', true);
    if (typeof options.size !== 'number' && typeof options.size !== 'string') {
      throw new PoolError('BAD_ARGUMENT', `size must be a number of bytes or a size text such as "64M", got ${describeValue(options.size)}`);
    }
    checkMode(options.mode);
    const preallocate = checkPoolBoolean(options.preallocate, 'preallocate') === true;
    // Asked for, a pool that cannot have one is no error: its allocations keep records, as at 2.1.
    const bareUnits = checkPoolBoolean(options.bareUnits, 'bareUnits') === false ? false : undefined;
    checkOpenOptions({ lockTimeoutMs: options.lockTimeoutMs });
    const size = typeof options.size === 'string' ? parseSize(options.size) : options.size;
    const pageSize = options.pageSize ?? 4096;
    const geometry = computeGeometry({ size, pageSize, orderPerBit: options.orderPerBit ?? 0, maxRecords: options.maxAllocations, bareUnits });
    if (typeof target !== 'string') {
      checkWritable(target);
      if (preallocate) throw new PoolError('BAD_ARGUMENT', 'preallocate applies to the file Pool.create makes at a path; a Region handed in is reserved by its maker (FileRegion.create { preallocate })');
      if (target.size < size) throw new PoolError('BAD_ARGUMENT', `region of ${target.size} bytes is smaller than the pool's ${size}`);
      return Pool.format(target, geometry, false, { lockTimeoutMs: options.lockTimeoutMs }, true);
    }
    const region = FileRegion.create(target, { size, mode: options.mode, preallocate });
    try {
      return Pool.format(region, geometry, true, { lockTimeoutMs: options.lockTimeoutMs }, false);
    } catch (e) {
      // The file is ours (created O_EXCL a moment ago) and holds no pool: do not leave it in the way
      // (unless another file was renamed over the path meanwhile: that one is not ours to remove).
      region.closeAndRemove();
      throw e;
    }
  }

  private static format(region: Region, g: Geometry, ownsRegion: boolean, options: PoolOpenOptions, zeroFirst: boolean, flags = 0): Pool {
    if (region.pageSize > g.pageSize) {
      throw new PoolError('BAD_ARGUMENT', `the ${region.kind} region has ${region.pageSize}-byte pages; the pool's page size must be at least that`);
    }
    const window = region.map(0, metadataWindowBytes(g));
    const bytes = window.bytes();
    // A new file reads as zeros already; a region handed in may hold anything.
    if (zeroFirst) bytes.fill(0);
    // Through the same writer (and so the same WordStore class) as every later store: the
    // allocator's word accesses stay monomorphic in a process that creates pools.
    const writer = new MetaWriter(window);
    const store = (area: { offset: number; length: number }) => writer.wordStore(area.offset, area.length >>> 2);
    // The metadata reads as zeros here (a new file, or zeroed above): formatZeroed touches O(levels) words, not the bitmap.
    const units = BitmapAllocator.formatZeroed(store(g.areas.unitBitmap), g.unitCount);
    units.markUsed(0, g.reservedUnits);
    BitmapAllocator.formatZeroed(store(g.areas.recordBitmap), g.maxRecords);
    const sb: Superblock = {
      abiMajor: ABI_MAJOR,
      abiMinor: ABI_MINOR,
      compat: 0,
      incompat: INCOMPAT_OPEN_CACHES | (g.bareUnits !== null ? INCOMPAT_BARE_UNITS : 0),
      roCompat: 0,
      uuid: uuidV4(randomBytes(16)),
      flags,
      geometry: g,
      generation: 0n,
      createdAtMs: Date.now(),
    };
    // The superblock goes last: until its checksum is in place the region is not a pool.
    window.flush();
    encodeSuperblock(sb, bytes.subarray(SUPERBLOCK_BACKUP_OFFSET));
    encodeSuperblock(sb, bytes);
    window.flush();
    return new Pool(region, sb, window, ownsRegion, lockOptionsOf(options), false);
  }

  /** Opens an existing pool, recovering from a crash if one is found. */
  static open(target: string | Region, options: PoolOpenOptions = {}): Pool {
    checkTarget(target, 'Pool.open');
    options = poolOptions(options, 'Pool.open options');
    checkOpenOptions(options);
    if (options.preallocate === true && typeof target !== 'string') {
      throw new PoolError('BAD_ARGUMENT', 'preallocate applies to the file Pool.open opens at a path; a Region handed in is reserved by its maker (FileRegion.open { preallocate })');
    }
    const region = typeof target !== 'string' ? target : options.preallocate === true ? FileRegion.open(target, { preallocate: true }) : FileRegion.open(target);
    try {
      return Pool.attach(region, typeof target === 'string', options);
    } catch (e) {
      if (typeof target === 'string') region.close();
      throw e;
    }
  }

  /** Re-attaches a pool handed over by the previous program (see the kexec layer). */
  static restore(handover: unknown, name?: string): Pool {
    if (!restoreHook) throw new PoolError('BAD_ARGUMENT', 'Pool.restore needs the kexec layer: import it from "pmpool"');
    return restoreHook(handover, name);
  }

  private static attach(region: Region, ownsRegion: boolean, options: PoolOpenOptions): Pool {
    checkWritable(region);
    if (region.size < AREA_ALIGN) throw new PoolError('NOT_A_POOL', `${describe(region)} is too small to hold a pool`);
    const probe = region.map(0, AREA_ALIGN);
    const page0 = probe.bytes().slice(0, AREA_ALIGN);
    probe.unmap();
    let sb = decodeSuperblock(page0, region.size);
    let damaged = false;
    if (isSuperblockProblem(sb)) {
      const backup = decodeSuperblock(page0.subarray(SUPERBLOCK_BACKUP_OFFSET), region.size);
      if (sb.code === 'INCOMPATIBLE') throw new PoolError('INCOMPATIBLE', `${describe(region)}: ${sb.message}`);
      if (isSuperblockProblem(backup)) throw new PoolError(sb.code, `${describe(region)}: ${sb.message}`);
      if (superblockWriteUnderWay(region, backup.geometry)) {
        // Not damage: a superblock write (backup first, then primary) is under way or was
        // interrupted. The backup is the newer copy; the lock's recovery rewrites the primary.
        const window = region.map(0, metadataWindowBytes(backup.geometry));
        return new Pool(region, backup, window, ownsRegion, options, false);
      }
      if (!options.allowDamagedSuperblock) {
        throw new PoolError('CORRUPT', `${describe(region)}: ${sb.message}; the backup superblock is intact — run \`pmpool check --repair\``);
      }
      sb = backup;
      damaged = true;
    }
    if (region.pageSize > sb.geometry.pageSize) {
      throw new PoolError('INCOMPATIBLE', `${describe(region)}: pool pages of ${sb.geometry.pageSize} bytes on a region of ${region.pageSize}-byte pages`);
    }
    const window = region.map(0, metadataWindowBytes(sb.geometry));
    return new Pool(region, sb, window, ownsRegion, options, damaged);
  }

  /* ---------------- identity ---------------- */

  get path(): string | null {
    return this.region.path;
  }
  get uuid(): string {
    return uuidToString(this.sb.uuid);
  }
  get uuidBytes(): Uint8Array {
    return this.sb.uuid.slice();
  }
  get pageSize(): number {
    return this.sb.geometry.pageSize;
  }
  get pageCount(): number {
    return this.sb.geometry.pageCount;
  }
  get orderPerBit(): number {
    return this.sb.geometry.orderPerBit;
  }
  get geometry(): Readonly<Geometry> {
    return this.sb.geometry;
  }
  /** Handovers since the pool was created (the FDT's generation). */
  get generation(): bigint {
    return this.sb.generation;
  }
  get closed(): boolean {
    return this.parts === null;
  }
  /** The ABI version the pool's superblock records ("2.2"): the version of the pmpool that made it. */
  get abiVersion(): string {
    return `${this.sb.abiMajor}.${this.sb.abiMinor}`;
  }
  /**
   * Whether this open allocates single units through a cache of its own (docs/abi.md, "Per-open
   * caches"): false for a pool made before ABI 2.1, or whose directory is under 2,048 records.
   */
  get usesCaches(): boolean {
    return this.live().caches.enabled;
  }
  /**
   * Whether one-unit allocations without a name or an owner are bare units, recorded by a bit and
   * no record (docs/abi.md, "Bare units"): false for a pool made before ABI 2.2, or with
   * `bareUnits: false`, or whose opens use no caches.
   */
  get usesBareUnits(): boolean {
    return this.live().bare.enabled;
  }
  /** The superblock checksum as stored (the handover node records it). */
  get superblockCrc(): number {
    this.live(); // CLOSED as a PoolError, like every other use of a closed pool (not the window's RegionError)
    const b = this.metaWindow.bytes();
    return new DataView(b.buffer, b.byteOffset).getUint32(SUPERBLOCK_BYTES - 4, true);
  }

  /* ---------------- allocation ---------------- */

  /** Allocates `count` contiguous pages (rounded up to whole units), aligned to `align` pages. */
  alloc(count: number, options?: AllocOptions): Allocation {
    const p = this.mutable();
    const g = p.geometry;
    checkCount(count, g.pageCount);
    // Without options there is nothing more to check, and nothing to encode: the common call,
    // alloc(n), skips the options' checks (they cost as much as a tenth of an alloc + release).
    let align = 1;
    let name: Uint8Array = NO_BYTES;
    let owner: Uint8Array = NO_BYTES;
    let zero = false;
    if (options !== undefined) {
      options = poolOptions(options, 'alloc options');
      align = checkAlign(options.align);
      name = encodeLabel(checkLabel(options.name, 'name', MAX_NAME_BYTES));
      owner = encodeLabel(checkLabel(options.owner, 'owner', MAX_OWNER_BYTES));
      zero = checkPoolBoolean(options.zero, 'zero') === true;
    }
    // One unit without a name: from this open's cache, without the pool lock (caches.ts).
    if (count <= p.unitPages && align <= p.unitPages && name.length === 0 && p.caches.enabled) {
      const cached = this.cachedAlloc(p, owner, zero);
      if (cached >= 0) return new Allocation(this, cached, p.unitPages, undefined, optionalLabel(owner), false);
    }
    this.lockAndRecover(p);
    let pfn: number;
    try {
      pfn = this.allocLocked(p, count, align, name, owner, 0, zero ? (at, pages) => this.zeroRun(at, pages) : undefined);
    } catch (e) {
      throw typedBitmapDamage(e);
    } finally {
      p.control.unlock();
    }
    // Built after the unlock: the lock is held for the metadata alone.
    const pageCount = (count <= p.unitPages ? 1 : unitsOf(g, count)) * p.unitPages;
    return new Allocation(this, pfn, pageCount, optionalLabel(name), optionalLabel(owner), false);
  }

  /**
   * Allocates under the lock; returns the pfn. `prepare`, when given, runs after the record is
   * written and before it commits (a sub-pool formats its run there).
   */
  private allocLocked(
    p: PoolParts,
    count: number,
    align: number,
    name: Uint8Array,
    owner: Uint8Array,
    flags: number,
    prepare?: (pfn: number, pageCount: number) => void,
  ): number {
    const g = p.geometry;
    const unitPages = p.unitPages;
    const units = count <= unitPages ? 1 : unitsOf(g, count);
    const alignUnits = align <= unitPages ? 1 : align / unitPages;
    if (name.length > 0 && this.findSlot(p, name) >= 0) {
      throw new PoolError('NAME_TAKEN', `an allocation named "${decodeLabel(name)}" exists`);
    }
    // An alignment past the pool's units leaves unit 0, in the metadata, as the only start: no fit.
    const fits = units <= g.unitCount && alignUnits <= g.unitCount;
    let start = fits ? p.units.find(units, alignUnits) : -1;
    // Units cached by opens (this one's too) are free in all but the bitmap: before the pool is
    // called full, they go back to it.
    if (start < 0 && fits && this.drainCaches(p)) start = p.units.find(units, alignUnits);
    if (start < 0) {
      const largest = p.units.largestFreeRun() * unitPages;
      throw new PoolError(
        'NO_SPACE',
        `no free run of ${units * unitPages} pages aligned to ${align}; the largest free run is ${largest} pages (${p.units.freeUnits() * unitPages} free in all)`,
      );
    }
    // The home slot when it is free (no pfn index entry then); else any free slot.
    const home = homeSlotOfUnit(g, start);
    let slot = p.slots.isFree(home, 1) ? home : p.slots.find(1, 1);
    // Cached units hold their home slots: given back, one may be this allocation's.
    if (slot < 0 && this.drainCaches(p)) slot = p.slots.isFree(home, 1) ? home : p.slots.find(1, 1);
    if (slot < 0) throw new PoolError('NO_RECORDS', `the directory is full (${g.maxRecords} allocations); release some or create the pool with a larger maxAllocations`);
    const d = p.directory;
    // The slot bitmap is derived; the record is the truth. A record that is not all zeros would be
    // overwritten (a live one lost) or keep stray bits that corrupt the new record: refuse.
    if (!d.isFree(slot)) {
      throw new PoolError('CORRUPT', `directory record ${slot} is marked free but is not empty (damaged metadata); run \`pmpool check --repair\``);
    }
    const pfn = start * unitPages;
    const pageCount = units * unitPages;
    // The indices are derived, and a damaged one may have no empty entry: found out after the
    // commit, the allocation would exist while its caller is told it failed. Refused now, whole.
    const pfnIndexed = slot !== home || p.control.indexAll();
    const full = pfnIndexed && !p.pfnIndex.hasRoom(hashPfn(pfn)) ? 'pfn' : name.length > 0 && !p.nameIndex.hasRoom(hashName(name)) ? 'name' : null;
    if (full !== null) throw new PoolError('CORRUPT', `the pool's ${full} index has no empty entry (damaged metadata); run \`pmpool check --repair\``);
    const w = p.writer;
    p.control.beginIntent(IntentOp.Alloc, slot, pfn, pageCount);
    w.barrier();
    p.units.markUsed(start, units);
    p.slots.markUsed(slot, 1);
    d.write(slot, pfn, pageCount, this.nextSeqLocked(p), flags, owner, name);
    w.barrier();
    if (prepare) {
      try {
        prepare(pfn, pageCount);
      } catch (e) {
        this.recover(p); // undo now: the uncommitted record is wiped, its units and slot freed
        throw e;
      }
      w.barrier();
    }
    d.commit(slot);
    w.barrier();
    if (pfnIndexed) p.pfnIndex.insert(hashPfn(pfn), slot);
    if (name.length > 0) p.nameIndex.insert(hashName(name), slot);
    // The index entries reach the file before the intent is cleared: a power cut in between must
    // leave the intent (and so a rebuild), never a cleared intent over an index missing its entries.
    w.barrier();
    p.control.endIntent();
    w.barrier();
    return pfn;
  }

  /**
   * Releases the allocation at `pfn`. `count` must be its page count (as
   * asked or as rounded up to units); a run that is not exactly one
   * allocation, or one tagged with another owner, is refused and nothing changes.
   */
  release(pfn: number, count: number, options?: ReleaseOptions): void {
    const p = this.mutable();
    const g = p.geometry;
    if (!Number.isSafeInteger(pfn) || pfn < 0 || pfn >= g.pageCount) {
      throw new PoolError('BAD_ARGUMENT', `pfn must be an integer page number below ${g.pageCount}, got ${String(pfn)}`);
    }
    checkCount(count, g.pageCount);
    const owner = options === undefined ? NO_BYTES : encodeLabel(checkLabel(poolOptions(options, 'release options').owner, 'owner', MAX_OWNER_BYTES));
    // One unit without a name, in its home slot: onto this open's cache, without the pool lock.
    // Anything else, or anything the cache finds wrong, goes the way below (which says what).
    if (count <= p.unitPages && p.caches.enabled && this.cachedRelease(p, pfn, owner)) return;
    // Lock and unlock by hand (not withLock): no closure on the hot path.
    this.lockAndRecover(p);
    try {
      let slot = this.slotOfPfn(p, pfn);
      // Claimed by a cache whose release has not finished: settled under that entry's lock (waited
      // for, or dissolved when its owner is dead), the record reads as what it is.
      if (slot < 0 && this.settleCacheClaim(p, pfn)) slot = this.slotOfPfn(p, pfn);
      if (slot < 0 && this.isBare(p, pfn)) {
        if (count > p.unitPages) throw new PoolError('NOT_ALLOCATED', `the allocation at pfn ${pfn} has ${p.unitPages} pages, not ${count}; release it whole`);
        this.releaseBareLocked(p, pfn);
        return;
      }
      if (slot < 0) throw new PoolError('NOT_ALLOCATED', `no allocation starts at pfn ${pfn}`);
      const d = p.directory;
      const pageCount = d.pageCount(slot);
      if ((count <= p.unitPages ? p.unitPages : unitsOf(g, count) * p.unitPages) !== pageCount) {
        throw new PoolError('NOT_ALLOCATED', `the allocation at pfn ${pfn} has ${pageCount} pages, not ${count}; release it whole`);
      }
      if (d.ownerLength(slot) > 0 && !d.ownerIs(slot, owner)) {
        throw new PoolError('WRONG_OWNER', `the allocation at pfn ${pfn} belongs to "${d.owner(slot)}", not "${decodeLabel(owner)}"`);
      }
      if ((d.flags(slot) & RECORD_FLAG_SUBPOOL) !== 0 && [...this.children].some((c) => c.basePfn() === pfn)) {
        throw new PoolError('BAD_ARGUMENT', `the allocation at pfn ${pfn} is an open sub-pool; close it first`);
      }
      this.releaseLocked(p, slot, pfn, pageCount, owner);
    } finally {
      p.control.unlock();
    }
  }

  private releaseLocked(p: PoolParts, slot: number, pfn: number, pageCount: number, owner: Uint8Array): void {
    const d = p.directory;
    const w = p.writer;
    const start = pfn / p.unitPages;
    p.control.beginIntent(IntentOp.Release, slot, pfn, pageCount);
    w.barrier();
    // Claimed first (an open's cache may be releasing the same record without the pool lock), and
    // then checked again: a one-unit record may have been released and made again in its home
    // slot since, by caches, under another owner.
    if (!d.claim(slot, CLAIM_BY_POOL_LOCK)) {
      p.control.endIntent();
      throw new PoolError('NOT_ALLOCATED', `the allocation at pfn ${pfn} was released by another open meanwhile`);
    }
    if (d.pfn(slot) !== pfn || d.pageCount(slot) !== pageCount || (d.ownerLength(slot) > 0 && !d.ownerIs(slot, owner))) {
      d.unclaim(slot);
      w.barrier();
      p.control.endIntent();
      throw new PoolError('NOT_ALLOCATED', `the allocation at pfn ${pfn} was released and made again by another open meanwhile; release it again if it is yours`);
    }
    const name = d.nameLength(slot) > 0 ? d.nameBytes(slot).slice() : NO_BYTES;
    w.barrier();
    d.uncommit(slot);
    w.barrier();
    if (slot !== homeSlotOfUnit(p.geometry, start) || p.control.indexAll()) p.pfnIndex.remove(hashPfn(pfn), slot);
    if (name.length > 0) p.nameIndex.remove(hashName(name), slot);
    d.wipe(slot);
    this.freeReleased(p, start, pageCount <= p.unitPages ? 1 : unitsOf(p.geometry, pageCount), slot, pfn, 'its record is wiped');
  }

  /**
   * The end of a release whose commit point is past (`done` says what it did): its units and slot
   * freed, its intent cleared. A damaged bitmap (a bit of this run or slot already clear) shows
   * only here, when the release has happened. The intent's recovery rebuilds the bitmaps from the
   * truth — now, or at the next lock if it cannot — and the caller is told so. A store that fails
   * underneath is no damage, and goes up as it is. `slot` -1: no slot to free.
   */
  private freeReleased(p: PoolParts, start: number, units: number, slot: number, pfn: number, done: string): void {
    const w = p.writer;
    try {
      p.units.markFree(start, units);
      if (slot >= 0) p.slots.markFree(slot, 1);
    } catch (e) {
      if (!(e instanceof BitmapStateError)) throw e;
      let rebuilt = 'the bitmaps were rebuilt from the directory';
      try {
        this.recover(p);
      } catch {
        rebuilt = 'the next lock of the pool rebuilds the bitmaps from the directory';
      }
      throw new PoolError('CORRUPT', `release of pfn ${pfn} (${units * p.unitPages} pages) found the allocation bitmap damaged (${(e as Error).message}); the release is complete: ${done} and ${rebuilt}`, { cause: e });
    }
    w.barrier();
    p.control.endIntent();
    w.barrier();
  }

  /** Whether a bare unit starts at `pfn` (bare-units.ts). */
  private isBare(p: PoolParts, pfn: number): boolean {
    const unit = pfn / p.unitPages;
    return p.bare.enabled && Number.isInteger(unit) && unit >= p.geometry.reservedUnits && unit < p.geometry.unitCount && p.bare.has(unit);
  }

  /**
   * Releases the bare unit at `pfn` under the pool lock (no cache of this open's to take it). The
   * opens' caches release bare units without the pool lock: the atomic AND that clears the bit
   * settles which of two releases of the unit happens.
   */
  private releaseBareLocked(p: PoolParts, pfn: number): void {
    const w = p.writer;
    const unit = pfn / p.unitPages;
    const home = homeSlotOfUnit(p.geometry, unit);
    p.control.beginIntent(IntentOp.Release, home, pfn, p.unitPages);
    w.barrier();
    if (!p.bare.clear(unit)) {
      p.control.endIntent();
      throw new PoolError('NOT_ALLOCATED', `the allocation at pfn ${pfn} was released by another open meanwhile`);
    }
    w.barrier();
    // Its home slot goes with it, unless a damaged record there holds the slot too (recovery keeps
    // such a record as it is, and a bare unit beside it).
    this.freeReleased(p, unit, 1, p.directory.isFree(home) ? home : -1, pfn, 'its bit is cleared');
  }

  /** The named allocation, or undefined. */
  find(name: string): Allocation | undefined {
    const p = this.live();
    const key = encodeLabel(checkLabel(name, 'name', MAX_NAME_BYTES));
    if (key.length === 0) throw new PoolError('BAD_ARGUMENT', 'find() needs a non-empty name');
    return this.withLock(() => {
      const slot = this.findSlot(p, key);
      return slot < 0 ? undefined : this.allocationAt(p, slot);
    });
  }

  /** The allocation that starts at `pfn` (a pfn printed by `pmpool alloc`, passed on a command line), or undefined. */
  at(pfn: number): Allocation | undefined {
    const p = this.live();
    if (!Number.isSafeInteger(pfn) || pfn < 0 || pfn >= p.geometry.pageCount) {
      throw new PoolError('BAD_ARGUMENT', `pfn must be an integer page number below ${p.geometry.pageCount}, got ${String(pfn)}`);
    }
    return this.withLock(() =>
      this.withEntries(p, () => {
        const slot = this.slotOfPfn(p, pfn);
        if (slot >= 0) return this.allocationAt(p, slot);
        return this.isBare(p, pfn) ? new Allocation(this, pfn, p.unitPages, undefined, undefined, false) : undefined;
      }),
    );
  }

  /**
   * Every allocation: those with records by sequence number — one open's in the order it made
   * them, those of several opens by the blocks of numbers their caches took (docs/abi.md, "Per-open
   * caches") — then the bare units, which have none, by pfn.
   */
  allocations(): Allocation[] {
    const p = this.live();
    // Under the lock the records are only read (with copies of their labels); sorting them, decoding
    // the labels and making the Allocations wait for the unlock, not every other process.
    const { records, bare } = this.withLock(() => this.withEntries(p, () => ({ records: liveRecords(p), bare: p.bare.enabled ? p.bare.units() : [] })));
    records.sort((a, b) => a.seq - b.seq);
    const out = records.map((r) => new Allocation(this, r.pfn, r.pageCount, optionalLabel(r.name), optionalLabel(r.owner), r.subpool));
    for (const unit of bare) out.push(new Allocation(this, unit * p.unitPages, p.unitPages, undefined, undefined, false));
    return out;
  }

  /* ---------------- sub-pools ---------------- */

  /**
   * The sub-pool `name`: a run of this pool that is itself a Pool (the RFC's
   * subsystems that "set aside their region"). Created with `count` pages on
   * first use; found again by name after any restart.
   */
  subpool(name: string, options: { count?: number; orderPerBit?: number; maxAllocations?: number } = {}): Pool {
    const p = this.mutable();
    const key = encodeLabel(checkLabel(name, 'name', MAX_NAME_BYTES));
    if (key.length === 0) throw new PoolError('BAD_ARGUMENT', 'a sub-pool needs a name');
    if (this.nesting >= MAX_SUBPOOL_NESTING) {
      throw new PoolError('BAD_ARGUMENT', `sub-pools nest at most ${MAX_SUBPOOL_NESTING} deep, and this pool is a sub-pool ${this.nesting} deep`);
    }
    options = poolOptions(options, 'subpool options');
    // Typed up front, even when the sub-pool exists and they go unused: a wrong type is a mistake either way.
    for (const field of ['count', 'orderPerBit', 'maxAllocations'] as const) {
      const value = options[field];
      if (value !== undefined && (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)) {
        throw new PoolError('BAD_ARGUMENT', `${field} must be a whole number, got ${describeValue(value)}`);
      }
    }
    const made: { child: Pool | null } = { child: null };
    // Find or create under one hold of the lock: two programs asking for the same sub-pool get the same one.
    const run = this.withLock(() => {
      const slot = this.findSlot(p, key);
      if (slot >= 0) {
        if ((p.directory.flags(slot) & RECORD_FLAG_SUBPOOL) === 0) {
          throw new PoolError('NAME_TAKEN', `"${name}" is an allocation, not a sub-pool`);
        }
        return this.allocationAt(p, slot);
      }
      if (options.count === undefined) throw new PoolError('NOT_FOUND', `no sub-pool named "${name}" (give { count } to create it)`);
      checkCount(options.count, p.geometry.pageCount);
      const pages = unitsOf(p.geometry, options.count) * 2 ** p.geometry.orderPerBit;
      // Validated before anything is written: a sub-pool too small for its own metadata is refused here.
      const g = computeGeometry({ size: pages * this.pageSize, pageSize: this.pageSize, orderPerBit: options.orderPerBit ?? 0, maxRecords: options.maxAllocations });
      // The sub-pool is formatted before its record commits, so a committed sub-pool record always
      // holds a pool — never nothing, never the stale superblock of a sub-pool released from those pages.
      const pfn = this.allocLocked(p, options.count, 1, key, encodeLabel(SUBPOOL_OWNER), RECORD_FLAG_SUBPOOL, (pfn, pageCount) => {
        made.child = Pool.format(new SubRegion(this.region, pfn * this.pageSize, pageCount * this.pageSize), g, true, this.lockOptions, true, SB_FLAG_SUBPOOL);
      });
      return new Allocation(this, pfn, pages, decodeLabel(key), SUBPOOL_OWNER, true);
    });
    let child = made.child;
    if (child === null) {
      const slice = new SubRegion(this.region, run.pfn * this.pageSize, run.count * this.pageSize);
      try {
        child = Pool.attach(slice, true, this.lockOptions);
      } catch (e) {
        if (e instanceof PoolError && e.code === 'NOT_A_POOL') {
          throw new PoolError('CORRUPT', `sub-pool "${name}" at pfn ${run.pfn} holds no pool: ${e.message}`, { cause: e });
        }
        throw e;
      }
    }
    this.children.add(child);
    child.parent = this;
    child.nesting = this.nesting + 1;
    return child;
  }

  private parent: Pool | null = null;
  /** How deep this pool is as a sub-pool (0: not opened as one); see MAX_SUBPOOL_NESTING. */
  private nesting = 0;
  private basePfn(): number {
    return this.region instanceof SubRegion ? this.region.base / (this.parent?.pageSize ?? this.pageSize) : 0;
  }

  /* ---------------- observability, check, repair ---------------- */

  stats(): PoolStats {
    const p = this.live();
    const g = p.geometry;
    const unitPages = 2 ** g.orderPerBit;
    return this.withLock(() => this.withEntries(p, () => {
      const { allocations, byOwner } = ownerUsage(p);
      // Cached units are free: marked used in the bitmap, they are any allocation's once drained.
      const cached = cachedUnits(p) * unitPages;
      const free = p.units.freeUnits() * unitPages + cached;
      const largestFree = (cached === 0 ? p.units.largestFreeRun() : largestFreeRunWithCached(p)) * unitPages;
      const metadata = g.metadataPages;
      const tail = g.pageCount - g.unitCount * unitPages;
      return {
        pageSize: g.pageSize,
        orderPerBit: g.orderPerBit,
        pages: g.pageCount,
        free,
        used: g.pageCount - free,
        metadata,
        tail,
        largestFree,
        fragmentation: free === 0 ? 0 : 1 - largestFree / free,
        allocations,
        maxAllocations: g.maxRecords,
        byOwner,
        cached,
        generation: this.sb.generation,
        lockBreaks: p.control.lockBreaks(),
      };
    }));
  }

  /**
   * Verifies every invariant, this pool's and its sub-pools'; with `repair`, rebuilds what is
   * derived and restores a damaged superblock.
   */
  check(options: { repair?: boolean } = {}): CheckReport {
    const { ok, problems, repaired } = this.checkCounted(options);
    return { ok, problems, repaired };
  }

  /**
   * @internal check(), with the number of problems its lines stand for: damage that comes by the
   * thousand names its first cases and counts the rest on one line (check.ts). What `pmpool check`
   * prints as "N problem(s)"; the report keeps the shape DESIGN.md §6 promises.
   */
  checkCounted(options: { repair?: boolean } = {}): CountedCheckReport {
    const p = this.live();
    options = poolOptions(options, 'check options');
    checkPoolBoolean(options.repair, 'repair');
    return this.withLock(
      () => this.withEntries(p, () => {
        const { report, subpools } = this.checkLocked(p, options.repair === true);
        // A sub-pool lives in a run of this pool, and subpool() sends a sub-pool it cannot open to
        // `check --repair` of this one: its check is part of this one. Under this pool's lock, so
        // that its run is not released and handed out meanwhile. The sub-pools are those the check
        // honours under their names, not looked up one by one: a lookup in a damaged name index
        // may probe the whole table.
        for (const r of subpools) {
          const sub = this.checkSubpool(r.pfn, r.pageCount, decodeLabel(r.name), options.repair === true);
          report.problems.push(...sub.problems);
          report.problemCount += sub.problemCount;
          report.repaired.push(...sub.repaired);
        }
        return { ...report, ok: report.problems.length === 0 };
      }, false),
      { skipRecovery: true },
    );
  }

  /** Checks this pool's own metadata (and repairs it); names the sub-pools to check next, as they stand after any repair. */
  private checkLocked(p: PoolParts, repair: boolean): { report: CountedCheckReport; subpools: LiveRecord[] } {
    const found = checkParts(p);
    const before = [...this.superblockProblems(), ...found.problems];
    if (!repair || before.length === 0) {
      return { report: { ok: before.length === 0, problems: before, problemCount: before.length + found.uncounted, repaired: [] }, subpools: found.subpools };
    }
    // Under an intent, like any operation: rebuildDerived() first clears the bitmaps, and a
    // crash before it re-marks every record must not leave owned pages free for the next locker.
    p.control.beginIntent(IntentOp.Repair, 0, 0, 0);
    p.writer.barrier();
    // (A cached operation left half done, which check() reports, is settled first by rebuildDerived.)
    const changes = rebuildDerived(p);
    this.reconcileSuperblocks(p);
    p.writer.barrier(); // the rebuilt state on the file before the intent is cleared
    p.control.endIntent();
    p.writer.barrier();
    const rebuilt = checkParts(p);
    const after = [...this.superblockProblems(), ...rebuilt.problems];
    // A set: a damaged directory makes a line per record, and each line of before is looked up.
    const still = new Set(after);
    const repaired = [...before.filter((x) => !still.has(x)), ...changes];
    return { report: { ok: after.length === 0, problems: after, problemCount: after.length + rebuilt.uncounted, repaired }, subpools: rebuilt.subpools };
  }

  /** Checks (and repairs) the sub-pool in `[pfn, +pageCount)`: its lines, each naming it. */
  private checkSubpool(pfn: number, pageCount: number, name: string, repair: boolean): Omit<CountedCheckReport, 'ok'> {
    const what = `sub-pool "${name}" at pfn ${pfn}`;
    if (this.nesting >= MAX_SUBPOOL_NESTING) {
      return { problems: [`${what} is nested ${this.nesting + 1} deep, past the ${MAX_SUBPOOL_NESTING} levels sub-pools may nest: not checked`], problemCount: 1, repaired: [] };
    }
    let sub: Pool;
    try {
      // From its backup when its primary superblock is damaged: that is what a repair restores.
      const slice = new SubRegion(this.region, pfn * this.pageSize, pageCount * this.pageSize);
      sub = Pool.attach(slice, true, { ...this.lockOptions, allowDamagedSuperblock: true });
    } catch (e) {
      if (!(e instanceof PoolError) || e.code === 'LOCK_TIMEOUT') throw e;
      return { problems: [`${what} holds no pool that can be opened: ${e.message}`], problemCount: 1, repaired: [] };
    }
    sub.nesting = this.nesting + 1;
    try {
      const report = sub.checkCounted({ repair });
      const named = (lines: string[]) => lines.map((line) => `${what}: ${line}`);
      // An open that found a crashed operation has repaired it already: that is a change too.
      return { problems: named(report.problems), problemCount: report.problemCount, repaired: named([...sub.recovered, ...report.repaired]) };
    } finally {
      sub.close();
    }
  }

  private superblockProblems(): string[] {
    const bytes = this.metaWindow.bytes();
    const problems: string[] = [];
    const primary = decodeSuperblock(bytes.subarray(0, SUPERBLOCK_BYTES), this.region.size);
    const backup = decodeSuperblock(bytes.subarray(SUPERBLOCK_BACKUP_OFFSET, SUPERBLOCK_BACKUP_OFFSET + SUPERBLOCK_BYTES), this.region.size);
    if (isSuperblockProblem(primary)) problems.push(`primary superblock: ${primary.message}`);
    if (isSuperblockProblem(backup)) problems.push(`backup superblock: ${backup.message}`);
    if (!isSuperblockProblem(primary) && !isSuperblockProblem(backup) && !bytesEqual(bytes.subarray(0, SUPERBLOCK_BYTES), bytes.subarray(SUPERBLOCK_BACKUP_OFFSET, SUPERBLOCK_BACKUP_OFFSET + SUPERBLOCK_BYTES))) {
      problems.push('primary and backup superblocks differ');
    }
    return problems;
  }

  /**
   * Makes the two superblock copies one again, after an interrupted write or
   * damage: a valid copy is copied over an invalid one; when both are valid
   * and differ, the backup wins — it is written first, so it is the newer.
   * Returns a line describing the change, or null when they agreed.
   */
  private reconcileSuperblocks(p: PoolParts): string | null {
    const bytes = this.metaWindow.bytes();
    const primaryBytes = bytes.subarray(0, SUPERBLOCK_BYTES);
    const backupBytes = bytes.subarray(SUPERBLOCK_BACKUP_OFFSET, SUPERBLOCK_BACKUP_OFFSET + SUPERBLOCK_BYTES);
    const primary = decodeSuperblock(primaryBytes, this.region.size);
    const backup = decodeSuperblock(backupBytes, this.region.size);
    // A superblock write changes the generation, never the pool's identity or layout. A valid copy
    // that describes another pool than the one this open mapped is not taken; check() reports it.
    const ours = (sb: Superblock) => bytesEqual(sb.uuid, this.sb.uuid) && sameGeometry(sb.geometry, this.sb.geometry);
    if (!isSuperblockProblem(backup) && ours(backup)) {
      if (!isSuperblockProblem(primary) && bytesEqual(primaryBytes, backupBytes)) return null;
      this.sb = backup;
      p.writer.storeBytes(0, backupBytes.slice());
      p.writer.barrier();
      return 'rewrote the primary superblock from the backup';
    }
    if (!isSuperblockProblem(primary) && ours(primary)) {
      this.sb = primary;
      p.writer.storeBytes(SUPERBLOCK_BACKUP_OFFSET, primaryBytes.slice());
      p.writer.barrier();
      return 'rewrote the backup superblock from the primary';
    }
    if (!isSuperblockProblem(primary) || !isSuperblockProblem(backup)) return null;
    this.writeSuperblock(p);
    return 'rewrote both superblock copies from the one this open read';
  }

  /** Writes both superblock copies from `this.sb` (backup first: one good copy exists at every instant). */
  private writeSuperblock(p: PoolParts): void {
    const encoded = new Uint8Array(SUPERBLOCK_BYTES);
    encodeSuperblock(this.sb, encoded);
    p.writer.storeBytes(SUPERBLOCK_BACKUP_OFFSET, encoded);
    p.writer.barrier();
    p.writer.storeBytes(0, encoded);
    p.writer.barrier();
  }

  /* ---------------- handover support (used by the kexec layer) ---------------- */

  /** Sets the handover generation in the superblock (both copies, checksummed). */
  setGeneration(generation: bigint): void {
    const p = this.live();
    this.withLock(() => {
      // Under an intent: a crash between (or inside) the two copies' writes is finished by the next locker.
      p.control.beginIntent(IntentOp.Superblock, 0, 0, 0);
      p.writer.barrier();
      this.sb = { ...this.sb, generation };
      this.writeSuperblock(p);
      p.control.endIntent();
      p.writer.barrier();
    });
  }

  /**
   * Stops this program's allocations for a handover: alloc/release/subpool
   * throw until `resume()`. (Other processes sharing the pool go on; they
   * change allocations, never the geometry the handover describes.)
   */
  quiesce(): void {
    this.live();
    // Its open sub-pools with it: each is a pool of its own in this one's pages, and a client in
    // one (a map whose node the handover writes) must not change under the handover either.
    for (const child of this.children) child.quiesce();
    // The next program is another open: this one's cached units go back to the pool first.
    this.returnCache();
    this.quiesced = true;
  }
  resume(): void {
    for (const child of this.children) child.resume();
    this.quiesced = false;
  }
  /** Whether a handover has quiesced this pool (quiesce() until resume()). */
  get handingOver(): boolean {
    return this.quiesced;
  }

  /* ---------------- lifetime ---------------- */

  /**
   * Registers `callback` to run when the pool closes, before anything else close() does: while the
   * pool's memory is still mapped and writable. A client that keeps state in the pool (a lock word,
   * counters, a clean-close flag) closes itself there, so that a pool closed before its clients
   * leaves nothing held: past close() it could only drop its memory, a lock in it still held for
   * every other process while this one lives. Callbacks run in the order registered, each once;
   * one that throws does not stop the others or the close, and the first error is thrown after.
   * Returns the function that unregisters it (a client closed on its own calls it).
   */
  onClose(callback: () => void): () => void {
    if (typeof callback !== 'function') throw new PoolError('BAD_ARGUMENT', `onClose needs a function, got ${describeValue(callback)}`);
    this.live();
    // Wrapped, so that one function registered twice is two registrations, each undone by its own.
    const entry = (): void => callback();
    this.closeCallbacks.add(entry);
    return () => void this.closeCallbacks.delete(entry);
  }

  /** Unmaps the pool; closes its file if the pool opened it. Sub-pools opened from it are closed first. */
  close(): void {
    if (this.parts === null) return;
    // A flush that fails (msync: EIO, ENOSPC) must not leave the pool half closed: sub-pools,
    // mappings, the fd and its flock are released all the same, and the failure is thrown after.
    let failure: unknown;
    // Its clients first (while the memory is mapped), each once: one may close another.
    for (const callback of [...this.closeCallbacks]) {
      if (!this.closeCallbacks.delete(callback)) continue;
      try {
        callback();
      } catch (e) {
        failure ??= e;
      }
    }
    // A callback that closed the pool itself: that close did the rest.
    if (this.parts === null) {
      if (failure !== undefined) throw failure;
      return;
    }
    for (const child of this.children) {
      try {
        child.close();
      } catch (e) {
        failure ??= e;
      }
    }
    this.children.clear();
    this.parent?.children.delete(this);
    try {
      this.returnCache();
    } catch (e) {
      // The pool lock timed out, or a store failed: the entry stays this open's, and is taken for
      // dead's once this program is gone (or this thread, or this image).
      failure ??= e;
    }
    try {
      this.region.flush();
    } catch (e) {
      const errno = e instanceof RegionError ? e.errno : undefined;
      failure ??= new RegionError('IO', `${describe(this.region)}: the final flush failed (${(e as Error).message}); the pool is closed all the same, but stores since its last flush may not be durable`, this.region.path, { cause: e, errno });
    }
    for (const w of this.chunks.values()) w.unmap();
    this.chunks.clear();
    this.metaWindow.unmap();
    if (this.parts.control.marked) this.region.releaseLivenessMark?.(this.parts.control.runId);
    this.parts = null;
    if (this.ownsRegion) this.region.close();
    if (failure !== undefined) throw failure;
  }

  /* ---------------- internals ---------------- */

  /** Zeroes pages [pfn, pfn + pageCount) through windows of their own, made durable before the commit. */
  private zeroRun(pfn: number, pageCount: number): void {
    const end = (pfn + pageCount) * this.pageSize;
    for (let at = pfn * this.pageSize; at < end; at += ZERO_WINDOW_BYTES) {
      const w = this.region.map(at, Math.min(ZERO_WINDOW_BYTES, end - at));
      try {
        w.bytes().fill(0);
        if (this.region.durable) w.flush();
      } finally {
        w.unmap();
      }
    }
  }

  /** @internal a view of `[byteOffset, +length)` of the region, through the chunk cache. */
  view(byteOffset: number, length: number): Uint8Array {
    this.live();
    const chunk = Math.floor(byteOffset / CHUNK_BYTES);
    if (length === 0) return new Uint8Array(0);
    if (Math.floor((byteOffset + length - 1) / CHUNK_BYTES) !== chunk) {
      // Spans chunks: a window of its own (held by the returned view's buffer).
      return this.region.map(byteOffset, length).bytes();
    }
    const w = this.chunkWindow(chunk);
    return new Uint8Array(w.buffer, w.byteOffset + (byteOffset - w.offset), length);
  }

  /**
   * @internal Allocation.populate(): prefaults `[byteOffset, +length)` in the chunk windows that
   * view() hands out. A range spanning two chunks gets a window of its own at each view(), which
   * there is no populating ahead of time: it is left to fault in.
   */
  populate(byteOffset: number, length: number): void {
    this.live();
    const chunk = Math.floor(byteOffset / CHUNK_BYTES);
    if (length === 0 || Math.floor((byteOffset + length - 1) / CHUNK_BYTES) !== chunk) return;
    const w = this.chunkWindow(chunk);
    try {
      w.advise('populate', byteOffset - w.offset, length);
    } catch {
      // A hint: an old kernel (EINVAL) or memory short (ENOMEM) leaves the pages to fault in on touch.
    }
  }

  /**
   * @internal Allocation.preferHugePages(): asks for huge pages under the whole 2 MiB extents of
   * `[byteOffset, +length)`, through the chunk windows view() hands out (so the views already out
   * gain too); returns the bytes asked for (RegionWindow.preferHugePages).
   */
  preferHugePages(byteOffset: number, length: number): number {
    this.live();
    let asked = 0;
    for (let at = byteOffset, end = byteOffset + length; at < end; ) {
      const chunk = Math.floor(at / CHUNK_BYTES);
      const w = this.chunkWindow(chunk);
      const upTo = Math.min(end, w.offset + w.length);
      asked += w.preferHugePages(at - w.offset, upTo - at);
      at = upTo;
    }
    return asked;
  }

  private chunkWindow(chunk: number): RegionWindow {
    let w = this.chunks.get(chunk);
    if (!w || !w.mapped) {
      const start = chunk * CHUNK_BYTES;
      w = this.region.map(start, Math.min(CHUNK_BYTES, this.region.size - start));
      this.chunks.set(chunk, w);
    }
    return w;
  }

  private live(): PoolParts {
    const p = this.parts;
    if (p === null) throw new PoolError('CLOSED', 'the pool is closed');
    // A Region handed to Pool.create/open and closed by its maker under the pool: its windows are
    // unmapped, their buffers detached, and every store would be a TypeError. Seen as the metadata's
    // view gone empty: a length, not a call on the Region (which is on every alloc and release).
    if (p.writer.u32.length === 0) throw new PoolError('CLOSED', 'the pool\'s region was closed under it; close the pool');
    return p;
  }

  private mutable(): PoolParts {
    const p = this.live();
    if (this.quiesced) throw new PoolError('QUIESCED', 'the pool is quiesced for a handover; allocations wait for the next program');
    return p;
  }

  private withLock<T>(fn: () => T, options: { skipRecovery?: boolean } = {}): T {
    const p = this.live();
    if (options.skipRecovery) this.lockPool(p);
    else this.lockAndRecover(p);
    try {
      return fn();
    } catch (e) {
      throw typedBitmapDamage(e);
    } finally {
      p.control.unlock();
    }
  }

  /** Takes the lock and, if the last holder died mid-operation, repairs before anything else. */
  private lockAndRecover(p: PoolParts): void {
    this.lockPool(p);
    if (p.control.contended && !this.spread) this.spreadRotor(p);
    if (p.control.intent() !== null) {
      try {
        this.recover(p);
      } catch (e) {
        p.control.unlock();
        throw e;
      }
    }
  }

  private spread = false;

  /**
   * The first time this open waits for the lock, another process (or thread) is allocating from
   * the pool too. Each open's next-fit rotor starts at the pool's start; left there, busy openers
   * allocate side by side, and every operation pulls the other's bitmap words, slot bitmap words
   * and records (home slots follow units) across cores. From here on this open allocates from a
   * point of the pool of its own, drawn from its run id. (Only a hint: the search stays exact.)
   */
  private spreadRotor(p: PoolParts): void {
    this.spread = true;
    const g = p.geometry;
    const span = g.unitCount - g.reservedUnits;
    p.units.setRotor(g.reservedUnits + (Math.imul(p.control.runId, 0x9e3779b1) >>> 0) % span);
  }

  /** A holder died mid-operation: rebuild the derived state from the directory, then clear its intent. */
  private recover(p: PoolParts): void {
    const intent = p.control.intent()!;
    // With every cache entry held: rebuildDerived reads the lists, and must not race a cached operation.
    const changes = this.withEntries(p, () => rebuildDerived(p));
    if (intent.op === IntentOp.Superblock || intent.op === IntentOp.Repair) {
      const change = this.reconcileSuperblocks(p);
      if (change !== null) changes.push(change);
    }
    p.writer.barrier();
    p.control.endIntent();
    p.writer.barrier();
    const what = intent.op === IntentOp.Alloc || intent.op === IntentOp.Release ? ` of pfn ${intent.pfn} (${intent.pageCount} pages)` : '';
    this.recovered.push(`repaired an interrupted ${intentName(intent.op)}${what}`, ...changes);
  }

  /* ---------------- this open's cache (caches.ts) ---------------- */

  /** This open's cache entry; -1 when it has none (not claimed yet, given back, or none free). */
  private cacheEntry = -1;
  /** Cached operations to let go by before asking again for an entry, after the table was full. */
  private cacheClaimBackoff = 0;

  /** The open's entry, claimed on first use; -1 when it has none to use now. */
  private cacheOf(p: PoolParts): number {
    if (this.cacheEntry >= 0) return this.cacheEntry;
    if (this.cacheClaimBackoff > 0) {
      this.cacheClaimBackoff--;
      return -1;
    }
    this.cacheEntry = this.withLock(() => claimEntry(p, p.control.timeoutMs));
    if (this.cacheEntry < 0) this.cacheClaimBackoff = CACHE_CLAIM_BACKOFF;
    return this.cacheEntry;
  }

  /**
   * Allocates one unit from the open's cache; returns its pfn, or -1 when the cache cannot (none,
   * empty and nothing to fill it with, or its lock held by the pool lock's holder): the caller then
   * goes through the pool lock. The steps and their intent are docs/abi.md's "Per-open caches".
   */
  private cachedAlloc(p: PoolParts, owner: Uint8Array, zero: boolean): number {
    const e = this.cacheOf(p);
    if (e < 0) return -1;
    const c = p.caches;
    const k = this.lockOwnEntryFor(p, e, true);
    if (k < 0) return -1;
    const g = p.geometry;
    const d = p.directory;
    const w = p.writer;
    // Without an owner, a bare unit: its bit is its record (bare-units.ts).
    const bare = owner.length === 0 && p.bare.enabled;
    try {
      const unit = k <= CACHE_UNITS ? c.unit(e, k - 1) : -1;
      const slot = homeSlotOfUnit(g, unit);
      // A listed unit's home record is free: it was when the unit joined the list, and no record
      // goes in a slot a list holds. A bare unit's is not read — that line, in no cache after a
      // release elsewhere in the pool, was the most of a bare pair's time — only its bit is: a
      // damaged list that names an allocation is caught there, or by check().
      if (unit < g.reservedUnits || unit >= g.unitCount || (bare ? p.bare.has(unit) : !d.isFree(slot))) {
        throw new PoolError('CORRUPT', `cache entry ${e} of the pool holds unit ${unit}, which is not a free one (damaged metadata); run \`pmpool check --repair\``);
      }
      const pfn = unit * p.unitPages;
      c.beginOp(e, CacheOp.Alloc, unit);
      c.setCount(e, k - 1);
      w.barrier();
      if (!bare) {
        d.write(slot, pfn, p.unitPages, c.takeSeq(e), 0, owner, NO_BYTES);
        w.barrier();
      }
      if (zero) {
        try {
          this.zeroRun(pfn, p.unitPages);
        } catch (err) {
          if (!bare) d.wipeAll(slot);
          c.setCount(e, k);
          w.barrier();
          c.endOp(e);
          throw err;
        }
        w.barrier();
      }
      if (bare) p.bare.set(unit);
      else d.commit(slot);
      w.barrier();
      c.endOp(e);
      w.barrier();
      return pfn;
    } finally {
      c.unlockOwn(e, p.control.runId);
    }
  }

  /**
   * Releases a one-unit, unnamed allocation in its home slot onto the open's cache; false when
   * the cache does not take it (anything else, or anything wrong: the pool lock's way then
   * releases it or says why not).
   */
  private cachedRelease(p: PoolParts, pfn: number, owner: Uint8Array): boolean {
    const g = p.geometry;
    const unit = pfn / p.unitPages;
    if (!Number.isInteger(unit) || unit < g.reservedUnits || unit >= g.unitCount) return false;
    // A bare unit has no owner, so any owner may release it, as an untagged record.
    if (p.bare.enabled && p.bare.has(unit)) return this.cachedBareRelease(p, unit);
    const d = p.directory;
    const slot = homeSlotOfUnit(g, unit);
    // A look before any lock: a release the cache does not take (or one the pool lock's way refuses)
    // is told apart here, before a claim would make the record read as taken to anyone else.
    if (!d.isCommitted(slot) || !cacheTakesRelease(d, slot, pfn, p.unitPages, owner)) return false;
    const e = this.cacheOf(p);
    if (e < 0) return false;
    const c = p.caches;
    const k = this.lockOwnEntryFor(p, e, false);
    if (k < 0) return false;
    const w = p.writer;
    try {
      c.beginOp(e, CacheOp.Release, unit);
      w.barrier();
      // Claimed, the record is this release's alone; then it is seen to be one the cache takes.
      if (!d.claim(slot, CLAIM_BY_CACHE + e)) {
        c.endOp(e);
        return false;
      }
      if (!cacheTakesRelease(d, slot, pfn, p.unitPages, owner)) {
        d.unclaim(slot);
        w.barrier(); // the record LIVE again on the file before the intent that could settle it goes
        c.endOp(e);
        return false;
      }
      // From here the release is the entry's to finish, whatever happens (CacheOp.Released). The
      // claim reaches the file first: a durable pool's intent must never say "past the claim" over
      // a record the power cut left LIVE.
      w.barrier();
      c.markReleased(e);
      w.barrier();
      d.uncommit(slot);
      w.barrier();
      d.wipe(slot);
      this.listReleased(p, e, k, unit);
      return true;
    } finally {
      c.unlockOwn(e, p.control.runId);
    }
  }

  /**
   * Releases bare unit `unit` onto the open's cache; false when the cache does not take it (the
   * pool lock's way then releases it or says why not). Its bit is cleared by one atomic AND, whose
   * old value says whether this release did it or another release of the unit got there first —
   * then this one is refused here: sent the pool lock's way, it would find the unit bare again
   * once the other release's open allocated it anew (its list's top is that very unit), and
   * release that new allocation under its holder.
   */
  private cachedBareRelease(p: PoolParts, unit: number): boolean {
    const e = this.cacheOf(p);
    if (e < 0) return false;
    const c = p.caches;
    const k = this.lockOwnEntryFor(p, e, false);
    if (k < 0) return false;
    const w = p.writer;
    try {
      c.beginOp(e, CacheOp.BareRelease, unit);
      w.barrier();
      if (!p.bare.clear(unit)) {
        c.endOp(e);
        throw new PoolError('NOT_ALLOCATED', `the allocation at pfn ${unit * p.unitPages} was released by another open meanwhile`);
      }
      w.barrier();
      this.listReleased(p, e, k, unit);
      return true;
    } finally {
      c.unlockOwn(e, p.control.runId);
    }
  }

  /** The end of a cached release past its commit point: `unit` onto entry `e`'s list of `k`, the intent cleared. */
  private listReleased(p: PoolParts, e: number, k: number, unit: number): void {
    const c = p.caches;
    c.setUnit(e, k, unit);
    c.setCount(e, k + 1);
    p.writer.barrier();
    c.endOp(e);
    p.writer.barrier();
  }

  /**
   * Locks the open's own entry for a cached allocation (`alloc`: a unit and a sequence number on
   * hand) or release (room on the list), filling or spilling a batch under the pool lock first when
   * it must. Returns the list's count, or -1 (unlocked) when the cache is not to be used now.
   */
  private lockOwnEntryFor(p: PoolParts, e: number, alloc: boolean): number {
    const c = p.caches;
    if (!this.lockOwnEntry(p, e)) return -1;
    if (entryReady(c, e, alloc)) return c.count(e);
    c.unlockOwn(e, p.control.runId);
    if (!this.moveCacheBatch(p, e, alloc) || !this.lockOwnEntry(p, e)) return -1;
    if (entryReady(c, e, alloc)) return c.count(e);
    c.unlockOwn(e, p.control.runId);
    return -1;
  }

  /** Locks the open's own entry for a cached operation; false (unlocked) when it is not to be used now. */
  private lockOwnEntry(p: PoolParts, e: number): boolean {
    const c = p.caches;
    // Held by the pool lock's holder (a drain, a check): this operation takes the pool lock instead.
    if (!c.tryLock(e, p.control.runId)) return false;
    if (c.owner(e) === p.control.runId && c.op(e) === CacheOp.None) {
      // While INDEX_ALL is set every record goes in the pfn index, which only the pool lock's holder
      // writes. Looked at under the entry lock: only a holder of every entry's lock sets it.
      if (!p.control.indexAll()) return true;
      c.unlockOwn(e, p.control.runId);
      return false;
    }
    c.unlockOwn(e, p.control.runId);
    this.cacheEntry = -1;
    // Dissolved, the open taken for dead: it claims an entry again at its next operation. Or an
    // operation of its own stopped half-way on an exception (a store that failed): the entry is
    // dissolved, as a dead owner's would be, and the operation settled.
    if (c.owner(e) === p.control.runId) this.dissolveOwnEntry(p, e);
    return false;
  }

  /** Fills the open's list (fill) or empties half of it (spill), under the pool lock; false when the entry is no longer the open's. */
  private moveCacheBatch(p: PoolParts, e: number, fill: boolean): boolean {
    return this.withLock(() => {
      if (!lockEntry(p, e, p.control.timeoutMs)) {
        this.cacheEntry = -1;
        return false;
      }
      try {
        if (p.caches.owner(e) !== p.control.runId) {
          this.cacheEntry = -1;
          return false;
        }
        beginCacheIntent(p, e);
        if (fill) refill(p, e);
        else spill(p, e, CACHE_UNITS - CACHE_BATCH);
        endCacheIntent(p);
        return true;
      } finally {
        p.caches.unlock(e);
      }
    });
  }

  /** Gives every cached unit back to the bitmap (under the pool lock): true when that freed any. */
  private drainCaches(p: PoolParts): boolean {
    if (!p.caches.enabled || cachedUnits(p) === 0) return false;
    return drainAll(p, p.control.timeoutMs) > 0;
  }

  /** Gives the open's entry back, with its units (at close, and when a handover quiesces the pool). */
  private returnCache(): void {
    const p = this.parts;
    const e = this.cacheEntry;
    this.cacheEntry = -1;
    if (p === null || e < 0) return;
    this.dissolveOwnEntry(p, e);
  }

  /** Dissolves entry `e` if it is still this open's, under the pool lock. */
  private dissolveOwnEntry(p: PoolParts, e: number): void {
    this.withLock(() => {
      if (!lockEntry(p, e, p.control.timeoutMs)) return;
      if (p.caches.owner(e) === p.control.runId) dissolveAndUnlock(p, e);
      else p.caches.unlock(e);
    });
  }

  /**
   * Takes the pool lock. When it was broken, its dead holder may have held cache entries' locks
   * too (an operation on the whole pool takes them all): they are released, so that their owners'
   * caches work again.
   */
  private lockPool(p: PoolParts): void {
    if (!p.control.lock()) return;
    const dead = p.control.brokenRunId;
    if (!p.caches.enabled || dead === 0) return;
    for (let e = 0; e < CACHE_ENTRIES; e++) if (p.caches.lockWord(e) === dead && p.caches.owner(e) !== dead) p.caches.breakLock(e, dead, 0);
  }

  /**
   * The next record sequence number, under the pool lock: from this open's block when it has one
   * (so that one open's records sort in the order it made them, cached or not), else the control
   * page's. Its entry's lock is not needed: only the owner writes its block, and this is the owner.
   */
  private nextSeqLocked(p: PoolParts): number {
    const e = this.cacheEntry;
    const c = p.caches;
    if (e >= 0 && c.owner(e) === p.control.runId && c.nextSeq(e) < c.endSeq(e)) return c.takeSeq(e);
    return p.control.nextSeq();
  }

  /** When the home record of `pfn` is claimed by a cache, settles it under that entry's lock; true when it was. */
  private settleCacheClaim(p: PoolParts, pfn: number): boolean {
    if (!p.caches.enabled || pfn % p.unitPages !== 0) return false;
    const unit = pfn / p.unitPages;
    if (unit >= p.geometry.unitCount) return false;
    const tag = p.directory.claimedBy(homeSlotOfUnit(p.geometry, unit));
    if (tag < CLAIM_BY_CACHE || tag >= CLAIM_BY_CACHE + CACHE_ENTRIES) return false;
    const e = tag - CLAIM_BY_CACHE;
    if (lockEntry(p, e, p.control.timeoutMs)) p.caches.unlock(e);
    return true;
  }

  /** Runs `fn` with every cache entry's lock held too (the pool lock held already): the operations on the whole pool. */
  private withEntries<T>(p: PoolParts, fn: () => T, settle = true): T {
    const held = lockEntries(p, p.control.timeoutMs, settle);
    try {
      return fn();
    } finally {
      unlockEntries(p, held);
    }
  }

  private probePfn = 0;
  // An index entry naming a slot past the directory (a damaged or hostile file) matches nothing: its
  // offset would wrap in the 32-bit word index and alias another record.
  private readonly matchPfn = (slot: number): boolean => {
    const d = this.parts!.directory;
    return slot < d.capacity && d.pfn(slot) === this.probePfn && d.isCommitted(slot);
  };

  private slotOfPfn(p: PoolParts, pfn: number): number {
    // The home slot first: there is the record of every allocation that found it free — unless
    // recovery left a record it did not honour, which may sit in a home slot (INDEX_ALL).
    // Like an index entry, a committed home record is trusted as it stands (its checksum is
    // check()'s to verify), but never with an extent no record may have: in the metadata, past
    // the pool.
    if (!p.control.indexAll()) {
      const home = homeSlotOfUnit(p.geometry, Math.floor(pfn / p.unitPages));
      const d = p.directory;
      if (d.isCommitted(home) && d.pfn(home) === pfn && extentFits(p, pfn, d.pageCount(home))) return home;
    }
    this.probePfn = pfn;
    return p.pfnIndex.find(hashPfn(pfn), this.matchPfn);
  }

  private findSlot(p: PoolParts, name: Uint8Array): number {
    return p.nameIndex.find(hashName(name), (s) => s < p.directory.capacity && bytesEqual(p.directory.nameBytes(s), name) && p.directory.isCommitted(s));
  }

  private allocationAt(p: PoolParts, slot: number): Allocation {
    const d = p.directory;
    return new Allocation(this, d.pfn(slot), d.pageCount(slot), d.name(slot), d.owner(slot), (d.flags(slot) & RECORD_FLAG_SUBPOOL) !== 0);
  }
}

/* ---------------- helpers ---------------- */

/** An entry ready for a cached allocation (a unit and a sequence number on hand) or release (room on its list). */
function entryReady(c: PoolParts['caches'], e: number, alloc: boolean): boolean {
  return alloc ? c.count(e) > 0 && c.nextSeq(e) < c.endSeq(e) : c.count(e) < CACHE_UNITS;
}

/**
 * Whether the open's cache takes the release of the record in `slot`: one unit at `pfn`, no name,
 * no flags (no sub-pool), and no owner or the caller's. Looked at before the record is claimed and
 * again after (a one-unit record may have been released and made again in between).
 */
function cacheTakesRelease(d: PoolParts['directory'], slot: number, pfn: number, unitPages: number, owner: Uint8Array): boolean {
  return d.pfn(slot) === pfn && d.pageCount(slot) === unitPages && d.nameLength(slot) === 0 && d.flags(slot) === 0 && (d.ownerLength(slot) === 0 || d.ownerIs(slot, owner));
}

/** The longest run of free units, cached units counted free (they join the bitmap's runs they touch). */
function largestFreeRunWithCached(p: PoolParts): number {
  const cached: number[] = [];
  for (let e = 0; e < CACHE_ENTRIES; e++) if (p.caches.owner(e) !== 0) cached.push(...p.caches.units(e));
  return p.units.largestFreeRunWith(cached.sort((a, b) => a - b));
}

/** RFC 9562 version 4 (random) UUID from 16 random bytes. */
function uuidV4(bytes: Uint8Array): Uint8Array {
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  return bytes;
}

/** True when the control area `g` describes records a superblock write (or a repair) under way or interrupted. */
function superblockWriteUnderWay(region: Region, g: Geometry): boolean {
  const area = g.areas.control;
  if (area.offset + area.length > region.size) return false;
  const w = region.map(area.offset, area.length);
  try {
    const op = peekIntentOp(w.bytes());
    return op === IntentOp.Superblock || op === IntentOp.Repair;
  } finally {
    w.unmap();
  }
}

/**
 * The allocators throw BitmapStateError when the bitmap in the region contradicts its own
 * summaries — damage on disk, or a superblock whose geometry does not describe the metadata.
 * The caller gets the pool's typed CORRUPT and the way out, not an internal error.
 */
function typedBitmapDamage(e: unknown): unknown {
  if (!(e instanceof BitmapStateError)) return e;
  return new PoolError('CORRUPT', `the pool's allocation bitmaps are damaged (${e.message}); run \`pmpool check --repair\``, { cause: e });
}

/**
 * Whether two superblocks lay the pool out alike: the fields computeGeometry derives every area
 * from — the bare-unit map's presence among them, which moves the end of the metadata and the
 * first unit of data.
 */
function sameGeometry(a: Geometry, b: Geometry): boolean {
  return a.pageSize === b.pageSize && a.pageCount === b.pageCount && a.orderPerBit === b.orderPerBit && a.maxRecords === b.maxRecords && (a.bareUnits === null) === (b.bareUnits === null);
}

/** The locking part of open options (what a sub-pool inherits from its parent). */
function lockOptionsOf(o: PoolOpenOptions): PoolOpenOptions {
  return { lockTimeoutMs: o.lockTimeoutMs, isAlive: o.isAlive, identityGraceMs: o.identityGraceMs, livenessPeriodMs: o.livenessPeriodMs };
}

function metadataWindowBytes(g: Geometry): number {
  return Math.ceil(g.metadataBytes / AREA_ALIGN) * AREA_ALIGN;
}

function describe(region: Region): string {
  return region.path ?? `${region.kind} region`;
}

/**
 * A pool writes to its region from its first operation on (the lock, recovery, even stats()): on a
 * region mapped read-only each of those stores would be a SIGSEGV, which kills the process. Refused
 * at the open instead, typed.
 */
function checkWritable(region: Region): void {
  if (region.readOnly === true) {
    throw new PoolError('BAD_ARGUMENT', `${describe(region)} is mapped read-only; a pool writes to its region at every operation (its lock, its recovery): open the region writable`);
  }
}
