/**
 * A hash index from a key (a pfn, or a name) to a directory slot, stored in
 * the region: open addressing with linear probing over `slots` entries of two
 * u32s (slot + 1, key hash). Deletion shifts the following run back instead
 * of leaving tombstones, so probe lengths never decay with churn.
 *
 * The pfn index holds only the records that are not in their home slot
 * (docs/abi.md); the name index every named record.
 *
 * It is derived data: repair rebuilds it from the directory. With at most
 * half of the slots used (slots >= 2 x records), probes stay short.
 */
import { PoolError } from './errors.js';
import { INDEX_ENTRY_BYTES as ENTRY_BYTES } from './layout.js';
import type { MetaWriter } from './meta-writer.js';

/** What verify() finds wrong with one entry of the table, or with one expected entry. */
export type IndexFault =
  | { kind: 'stray'; position: number; slot: number; hash: number } // no expected (slot, hash) pair
  | { kind: 'duplicate'; position: number; slot: number } // an expected pair held a second time
  | { kind: 'unreachable'; position: number; slot: number } // an empty entry lies between it and its probe start
  | { kind: 'missing'; slot: number }; // an expected pair the table does not hold

export class RecordIndex {
  private readonly mask: number;

  constructor(
    private readonly w: MetaWriter,
    private readonly base: number,
    readonly slots: number,
  ) {
    this.mask = slots - 1;
  }

  private slotAt(i: number): number {
    return this.w.u32[(this.base + i * ENTRY_BYTES) >>> 2]!;
  }
  private hashAt(i: number): number {
    return this.w.u32[(this.base + i * ENTRY_BYTES + 4) >>> 2]!;
  }

  /** The directory slot whose key has `hash` and for which `matches(slot)` holds, or -1. */
  find(hash: number, matches: (slot: number) => boolean): number {
    for (let i = hash & this.mask, probes = 0; probes < this.slots; i = (i + 1) & this.mask, probes++) {
      const entry = this.slotAt(i);
      if (entry === 0) return -1;
      if (this.hashAt(i) === hash && matches(entry - 1)) return entry - 1;
    }
    return -1;
  }

  /**
   * Whether insert(hash, …) finds an empty entry. A table of twice the directory's capacity always
   * has one, unless it is damaged: an operation asks before it writes anything, so that it is
   * refused whole rather than stopped with its record committed and not indexed.
   */
  hasRoom(hash: number): boolean {
    for (let i = hash & this.mask, probes = 0; probes < this.slots; i = (i + 1) & this.mask, probes++) {
      if (this.slotAt(i) === 0) return true;
    }
    return false;
  }

  insert(hash: number, slot: number): void {
    for (let i = hash & this.mask, probes = 0; probes < this.slots; i = (i + 1) & this.mask, probes++) {
      if (this.slotAt(i) === 0) {
        const at = this.base + i * ENTRY_BYTES;
        this.w.store32(at + 4, hash);
        this.w.store32(at, slot + 1);
        return;
      }
    }
    // The table has twice the directory's entries: only damage fills it.
    throw new PoolError('CORRUPT', 'a record index of the pool has no empty entry (damaged metadata); run `pmpool check --repair`');
  }

  /** Removes the entry for directory `slot` (found by its hash) and closes the gap. False when absent. */
  remove(hash: number, slot: number): boolean {
    let hole = -1;
    for (let i = hash & this.mask, probes = 0; probes < this.slots; i = (i + 1) & this.mask, probes++) {
      const entry = this.slotAt(i);
      if (entry === 0) return false;
      if (entry === slot + 1) {
        hole = i;
        break;
      }
    }
    if (hole < 0) return false;
    // Backward shift: move later entries of the probe run into the hole when
    // their home position does not lie cyclically in (hole, j]. At most one lap:
    // a damaged table may have no empty entry to end the run.
    for (let j = (hole + 1) & this.mask, probes = 1; probes < this.slots; j = (j + 1) & this.mask, probes++) {
      const entry = this.slotAt(j);
      if (entry === 0) break;
      const h = this.hashAt(j);
      const home = h & this.mask;
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      this.put(hole, entry, h);
      hole = j;
    }
    this.put(hole, 0, 0);
    return true;
  }

  private put(i: number, entry: number, hash: number): void {
    const at = this.base + i * ENTRY_BYTES;
    this.w.store32(at, entry);
    this.w.store32(at + 4, hash);
  }

  /**
   * Compares the table with the entries it should hold, `expected` (directory slot → key hash), in
   * one pass over the table: O(slots + expected), where a find() per record would cost
   * O(records × slots) on a damaged table with no empty entry to stop its probes. An entry is
   * sound when its pair is expected, held once, and reachable — no empty entry lies cyclically
   * between its probe start and its position (on a table with no empty entry a probe goes round
   * the whole table, and reaches every entry). Each fault is handed to `report`, in table order,
   * then the missing pairs.
   */
  verify(expected: ReadonlyMap<number, number>, report: (fault: IndexFault) => void): void {
    // Where the last empty entry before each position is: begin just after one, so that the walk
    // knows it from its first step.
    let lastEmpty = -1;
    for (let i = this.slots - 1; i >= 0; i--) {
      if (this.slotAt(i) === 0) {
        lastEmpty = i;
        break;
      }
    }
    const held = new Set<number>();
    const first = lastEmpty < 0 ? 0 : (lastEmpty + 1) & this.mask;
    for (let n = 0, i = first; n < this.slots; n++, i = (i + 1) & this.mask) {
      const entry = this.slotAt(i);
      if (entry === 0) {
        lastEmpty = i;
        continue;
      }
      const slot = entry - 1;
      const hash = this.hashAt(i);
      if (expected.get(slot) !== hash) {
        report({ kind: 'stray', position: i, slot, hash });
        continue;
      }
      if (held.has(slot)) {
        report({ kind: 'duplicate', position: i, slot });
        continue;
      }
      held.add(slot);
      // Probes from the start to here, against the distance back to the last empty entry.
      if (lastEmpty >= 0 && ((i - (hash & this.mask)) & this.mask) >= ((i - lastEmpty) & this.mask)) {
        report({ kind: 'unreachable', position: i, slot });
      }
    }
    for (const slot of expected.keys()) if (!held.has(slot)) report({ kind: 'missing', slot });
  }

  /** Every (directory slot, hash) pair, in table order. */
  *entries(): Generator<{ slot: number; hash: number; position: number }> {
    for (let i = 0; i < this.slots; i++) {
      const entry = this.slotAt(i);
      if (entry !== 0) yield { slot: entry - 1, hash: this.hashAt(i), position: i };
    }
  }

  /** Zeroes the table (repair rebuilds it afterwards). */
  clear(): void {
    this.w.fill(this.base, this.slots * ENTRY_BYTES);
  }
}

/** log2 of the pfns per hash window: eight 8-byte entries fill one cache line. */
const PFN_WINDOW_BITS = 3;

/**
 * The pfn index's hash. A pfn's low 3 bits are kept and the window above
 * them is mixed: allocations made one after another (next fit hands out
 * neighbouring pfns) share a cache line of the table, while windows spread
 * over the whole table, so strided pfns do not pile onto a few home slots
 * as an identity hash would let them. (Wider windows were measured: they
 * overlap and cluster under linear probing.)
 */
export function hashPfn(pfn: number): number {
  const window = Math.floor(pfn / 2 ** PFN_WINDOW_BITS);
  let h = Math.imul((window >>> 0) ^ Math.floor(window / 0x100000000), 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return ((h << PFN_WINDOW_BITS) | (pfn & (2 ** PFN_WINDOW_BITS - 1))) >>> 0;
}
