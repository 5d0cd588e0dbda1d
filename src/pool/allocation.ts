/**
 * An allocation as the API hands it out: where its pages are, whose they
 * are, and a view of their bytes through the pool's mapping.
 */
import { PoolError } from './errors.js';

/** What an Allocation needs of its pool. */
export interface AllocationHost {
  readonly pageSize: number;
  /** A view of `[byteOffset, +length)` of the pool's region. */
  view(byteOffset: number, length: number): Uint8Array;
  /** Maps `[byteOffset, +length)` of the region into this process now (a hint). */
  populate(byteOffset: number, length: number): void;
  /** Asks for huge pages under `[byteOffset, +length)` of the region, in the background (a hint); the bytes asked for. */
  preferHugePages(byteOffset: number, length: number): number;
}

/** One allocation: a run of pages. `bytes()` maps them. */
export class Allocation {
  constructor(
    private readonly pool: AllocationHost,
    readonly pfn: number,
    readonly count: number,
    readonly name: string | undefined,
    readonly owner: string | undefined,
    readonly subpool = false,
  ) {}
  /**
   * The allocation's bytes (or `[offset, offset + length)` of them) as a view of the pool's mapping.
   * The view is the memory itself, as a pointer is in C: it cannot be revoked. After a release of
   * this allocation it still reads and writes those pages, which the next alloc() may hand to
   * another owner; after the pool's close() it reads as empty. Drop views with the allocation.
   */
  bytes(offset = 0, length = this.count * this.pool.pageSize - offset): Uint8Array {
    const total = this.count * this.pool.pageSize;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > total) {
      throw new PoolError('BAD_ARGUMENT', `bytes(${offset}, ${length}) is outside the allocation's ${total} bytes`);
    }
    return this.pool.view(this.pfn * this.pool.pageSize + offset, length);
  }
  /**
   * Maps the allocation's pages into this process now, in one system call,
   * rather than one page fault at a time as each is first written
   * (MADV_POPULATE_WRITE, Linux 5.14). For a run about to be filled: on
   * this machine a fault costs about as much as writing the page, and the
   * kernel populates a range for a fraction of that. Only a hint: where the
   * kernel cannot (an older kernel, memory short), the pages fault in on
   * first touch as they would have; on a MemoryRegion there is nothing to do.
   * On a file, it allocates the file's blocks for the whole run.
   */
  populate(): void {
    this.pool.populate(this.pfn * this.pool.pageSize, this.count * this.pool.pageSize);
  }
  /**
   * Asks for the allocation's whole 2 MiB extents to be backed by huge pages, collapsed in the
   * background (MADV_COLLAPSE, Linux 6.1) by a thread of the addon while the program goes on: for
   * an allocation read at random, a TLB miss less on most reads. No byte changes, and the huge
   * pages stay with the pool's file, for the next program too. Returns the bytes asked for, 0 where
   * there is nothing to do: a pool on a disk file (the kernel does not collapse writable file
   * pages), on hugetlbfs or DAX (huge already), or in memory; and an allocation with no whole
   * extent (align it to 2 MiB, `{ align: HUGE_EXTENT_BYTES / pageSize }`, for every extent to count). Only a
   * hint: an extent the kernel refuses (none of its pages in memory yet, memory short, an older
   * kernel) stays as it is. On tmpfs the kernel fills an extent's missing pages as it collapses
   * it: ask for what is, or is about to be, written through.
   */
  preferHugePages(): number {
    return this.pool.preferHugePages(this.pfn * this.pool.pageSize, this.count * this.pool.pageSize);
  }
  toJSON(): { pfn: number; count: number; name?: string; owner?: string } {
    return { pfn: this.pfn, count: this.count, ...(this.name ? { name: this.name } : {}), ...(this.owner ? { owner: this.owner } : {}) };
  }
}
