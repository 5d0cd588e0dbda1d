/**
 * The PersistentMap's table, as words: the two checksummed table
 * descriptors in the header run, and the slot-array work that needs no
 * record — rebuilding a table into a fresh run, finding the slot that holds
 * a given ref. (Lookups, which compare keys, are persistent-map.ts;
 * switching tables, map-resize.ts.)
 */
import { crc32cWords } from '../util/crc32c.js';
import { EMPTY, HDR_DESC, MAX_TABLE_LOG2, MIN_TABLE_LOG2, TOMB } from './map-layout.js';

export interface TableDescriptor {
  pfn: number;
  log2: number;
  seq: number;
  ok: boolean;
}

export function readDescriptor(h: Uint32Array, d: number, mapId: number): TableDescriptor {
  const b = HDR_DESC + 4 * d;
  const pfn = h[b]!;
  const log2 = h[b + 1]!;
  const seq = h[b + 2]!;
  const ok = crc32cWords(h, b, 3, mapId) === h[b + 3] && log2 <= MAX_TABLE_LOG2 && (pfn === 0 || log2 >= MIN_TABLE_LOG2);
  return { pfn, log2, seq, ok };
}

export function writeDescriptor(h: Uint32Array, d: number, pfn: number, log2: number, seq: number, mapId: number): void {
  const b = HDR_DESC + 4 * d;
  h[b] = pfn;
  h[b + 1] = log2;
  h[b + 2] = seq;
  h[b + 3] = crc32cWords(h, b, 3, mapId);
}

/**
 * Inserts the entries of `old` (`oldCap` slots) into the zeroed `slots` (mask `mask`), dropping
 * tombstones. False when they do not all fit: the map counted fewer entries than its table holds.
 */
export function rehash(old: Uint32Array, oldCap: number, slots: Uint32Array, mask: number): boolean {
  let room = mask + 1;
  for (let i = 0; i < oldCap; i++) {
    const ref = old[2 * i]!;
    if (ref === EMPTY || ref === TOMB) continue;
    // A full table has no empty slot to end the probe below (a damaged count sized it too small).
    if (room-- === 0) return false;
    const h = old[2 * i + 1]!;
    let j = h & mask;
    while (slots[2 * j] !== EMPTY) j = (j + 1) & mask;
    slots[2 * j] = ref;
    slots[2 * j + 1] = h;
  }
  return true;
}

/** The slot whose ref is `ref` (probing from its hash), or -1. */
export function slotOf(slots: Uint32Array, cap: number, mask: number, h: number, ref: number): number {
  let i = h & mask;
  for (let n = 0; n < cap; n++) {
    const r = slots[2 * i]!;
    if (r === EMPTY) return -1;
    if (r === ref) return i;
    i = (i + 1) & mask;
  }
  return -1;
}
