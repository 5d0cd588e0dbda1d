/**
 * The options and reports of the Pool API (DESIGN.md §6).
 */
import type { LockOptions } from './control.js';

export interface PoolCreateOptions {
  /** Bytes, or a size text such as "64M", "1G", "1T". */
  size: number | string;
  /** 4096 (default) or a larger power of two, e.g. 2 MiB for hugetlbfs. */
  pageSize?: number;
  /** Allocation granularity: units of 2^orderPerBit pages (CMA's order_per_bit). Default 0. */
  orderPerBit?: number;
  /** Directory capacity. Default: one record per 8 units, at least 256, at most 2^17 (docs/abi.md). */
  maxAllocations?: number;
  /** File mode of a new pool file. Default 0600. */
  mode?: number;
  /**
   * Reserve the new file's blocks now (fallocate), so that every page of the pool has its memory
   * or disk space from the start. A file system without room then refuses the create (RegionError
   * IO, errno ENOSPC) instead of the kernel killing a program with SIGBUS at its first write to a
   * page it cannot back. Default false: a sparse file, which costs only the pages touched (a 1 TiB
   * pool on a machine of a few GiB). A path only: a Region handed in is the caller's to reserve.
   */
  preallocate?: boolean;
  /**
   * Record one-unit allocations without a name or an owner by a bit of a bare-unit map instead of
   * a directory record (docs/abi.md, "Bare units"): their alloc + release pairs run about twice
   * as fast, and `allocations()` lists them after the records, by pfn. Default true, where the pool's
   * opens use caches (a directory of at least 2,048 records) and it has at most 2^28 units. false
   * makes a pool that pmpool of ABI 2.1 can still open.
   */
  bareUnits?: boolean;
  lockTimeoutMs?: number;
}

export interface PoolOpenOptions {
  lockTimeoutMs?: number;
  /**
   * Reserve the blocks the pool file still lacks (fallocate), as PoolCreateOptions.preallocate does
   * at create: a pool created sparse gets its memory now, or the open is refused (RegionError IO,
   * errno ENOSPC) and the file is left as it was. Every block is visited: proportional to the pool's
   * size, for a cold start, not a handover's restore. A path only, as at create.
   */
  preallocate?: boolean;
  /** Open a pool whose primary superblock is damaged, from its backup (for check/repair). */
  allowDamagedSuperblock?: boolean;
  /** @internal liveness oracle for the crash simulation. */
  isAlive?: LockOptions['isAlive'];
  /** @internal lock timing knobs for the crash simulation (see LockOptions). */
  identityGraceMs?: number;
  livenessPeriodMs?: number;
}

export interface AllocOptions {
  /** Start on a multiple of this many pages (a power of two). Default 1. */
  align?: number;
  /** A name to find the allocation by after any restart (unique in the pool, at most 64 UTF-8 bytes). */
  name?: string;
  /** The owning client (at most 24 UTF-8 bytes); release then requires the same owner. */
  owner?: string;
  /**
   * Zero the run before the allocation commits (the kernel's __GFP_ZERO). The
   * pool never clears what a release gives back, so a new run holds what its
   * last owner left; with `zero`, a crash leaves either no allocation or a
   * zeroed one — what a client that formats its run at creation needs. A
   * pass over the run's bytes under the pool lock: meant for headers, not
   * for gigabytes.
   */
  zero?: boolean;
}

export interface ReleaseOptions {
  owner?: string;
}

export interface PoolStats {
  pageSize: number;
  orderPerBit: number;
  pages: number;
  free: number;
  used: number;
  /** Pages holding pool metadata (superblock, bitmaps, indices, directory). */
  metadata: number;
  /** Pages past the last whole unit, never allocated. */
  tail: number;
  largestFree: number;
  /** 0 when all free pages form one run; towards 1 as they scatter. */
  fragmentation: number;
  allocations: number;
  maxAllocations: number;
  /** Pages and allocations per owner ("" for allocations without one). */
  byOwner: Record<string, { allocations: number; pages: number }>;
  /** Pages held free in the opens' caches (counted in `free`; docs/abi.md, "Per-open caches"). */
  cached: number;
  generation: bigint;
  lockBreaks: number;
}

export interface CheckReport {
  ok: boolean;
  problems: string[];
  repaired: string[];
}
