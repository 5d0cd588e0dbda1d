/**
 * What a PersistentMap writer works out at open from what a dead writer
 * left (docs/clients.md, "recovery"): which of the owner's pool runs are the
 * published table and segments and which are leftovers to give back, the
 * counters recounted from the table, and the segment to go on appending to.
 * map-open.ts applies the results; nothing here writes the pool.
 */
import type { Allocation } from '../index.js';
import { ClientError } from './errors.js';
import { EMPTY, MAX_SEGMENTS, REC_HEADER, recordBytes, SEG_HEADER, SEGTAB, TOMB } from './map-layout.js';
import type { TableDescriptor } from './map-table.js';

/**
 * Sorts the runs of the map's owner (`owned`, header run included): the
 * table the descriptor `desc` names, and the table and segment runs nothing
 * publishes, in `owned` order.
 */
export function sortOwnedRuns(owned: Allocation[], name: string, desc: TableDescriptor, h: Uint32Array): { table: Allocation | undefined; stale: Allocation[] } {
  const tableName = `${name}/t${desc.seq}`;
  let table: Allocation | undefined;
  const stale: Allocation[] = [];
  for (const run of owned) {
    if (run.name === name) continue;
    const segName = run.name?.startsWith(`${name}/s`) ? run.name.slice(name.length + 2) : '';
    const seg = /^[0-9]{1,4}$/.test(segName) ? Number(segName) : NaN;
    const keep =
      (desc.pfn !== 0 && run.name === tableName && run.pfn === desc.pfn) ||
      (Number.isInteger(seg) && seg >= 0 && seg < MAX_SEGMENTS && h[SEGTAB + 2 * seg] === run.pfn && h[SEGTAB + 2 * seg + 1] === run.count);
    if (run.name === tableName && keep) table = run;
    if (!keep && (run.name?.startsWith(`${name}/t`) || Number.isInteger(seg))) {
      // Allocated but never published, or unpublished but never released.
      stale.push(run);
    }
  }
  return { table, stale };
}

/**
 * Counts entries, tombstones and live bytes per segment (into `segLive`)
 * from the table (after a crash).
 */
export function recountTable(
  slots: Uint32Array,
  cap: number,
  segU32: Uint32Array[],
  segUsed: Int32Array,
  segLive: Int32Array,
  loaded: Set<number>,
  what: string,
): { count: number; tombs: number } {
  let count = 0;
  let tombs = 0;
  for (const k of loaded) segLive[k] = 0;
  for (let i = 0; i < cap; i++) {
    const ref = slots[2 * i]!;
    if (ref === EMPTY) continue;
    if (ref === TOMB) {
      tombs++;
      continue;
    }
    const k = ref >>> 19;
    const off = (ref & 0x7ffff) << 3;
    const u32 = segU32[k]!;
    if (u32.length === 0 || off < SEG_HEADER || off + REC_HEADER > segUsed[k]!) {
      throw new ClientError('CORRUPT', `${what}: slot ${i} points to offset ${off} of segment ${k}, outside its records`);
    }
    const total = recordBytes(u32[(off >>> 2) + 1]!, u32[(off >>> 2) + 2]!);
    if (off + total > segUsed[k]!) throw new ClientError('CORRUPT', `${what}: the record at ${off} of segment ${k} is malformed`);
    segLive[k] += total;
    count++;
  }
  return { count, tombs };
}

/** True when some slot of the table holds an entry (neither EMPTY nor TOMB). */
export function tableHasEntries(slots: Uint32Array, cap: number): boolean {
  for (let i = 0; i < cap; i++) {
    const ref = slots[2 * i]!;
    if (ref !== EMPTY && ref !== TOMB) return true;
  }
  return false;
}

/** The roomiest small segment to go on appending to, when at least 1/8 of it is free; else -1. */
export function pickActive(loaded: Set<number>, segDedicated: Uint8Array, segCap: Int32Array, segUsed: Int32Array): number {
  let best = -1;
  for (const k of loaded) {
    if (segDedicated[k]) continue;
    if (best < 0 || segCap[k]! - segUsed[k]! > segCap[best]! - segUsed[best]!) best = k;
  }
  return best >= 0 && segCap[best]! - segUsed[best]! >= segCap[best]! / 8 ? best : -1;
}
