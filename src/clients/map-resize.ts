/**
 * The PersistentMap's table switches: a resize builds the table anew in a
 * fresh run, described by the inactive descriptor, and the clear switches
 * to the empty table; either is published by one store of the
 * active-descriptor word, inside a seqlock write section, and then the runs
 * nothing points at any more go back to the pool. The descriptors' and the
 * slots' words are map-table.ts.
 */
import { PmpoolError } from '../errors.js';
import type { Allocation } from '../index.js';
import { poolCall } from './client-header.js';
import { ClientError } from './errors.js';
import { HDR_ACTIVE, HDR_COUNT, MAX_TABLE_LOG2, NO_U32, u32View } from './map-layout.js';
import { fault } from './map-runtime.js';
import { dropSegment, newRun } from './map-space.js';
import type { MapState } from './map-state.js';
import { rehash, writeDescriptor } from './map-table.js';

/** Rebuilds the table with 2^log2 slots in a fresh run and switches to it with one store. */
export function resize(s: MapState, log2: number): void {
  if (log2 > MAX_TABLE_LOG2) throw new ClientError('NO_SPACE', `${s.what} cannot grow past 2^${MAX_TABLE_LOG2} slots`);
  const cap = 2 ** log2;
  const seq = (s.tableSeq + 1) >>> 0;
  const pages = Math.ceil((cap * 8) / s.pageSize);
  const run = newRun(s, pages, `${s.name}/t${seq}`, `${s.what}: a table of ${pages} pages`);
  const d = 1 - s.activeDesc;
  let slots: Uint32Array;
  try {
    fault('resize:allocated');
    if (run.pfn >= 2 ** 32) throw new ClientError('NO_SPACE', `${s.what}: a table at pfn ${run.pfn} is beyond what a map can address`);
    run.populate(); // zeroed and rehashed into at once: its pages mapped in one call, not faulted one by one
    slots = u32View(run.bytes(0, cap * 8));
    slots.fill(0);
    if (!rehash(s.slots, s.cap, slots, cap - 1)) throw new ClientError('CORRUPT', `${s.what}: its table holds more than the ${s.count} entries it counts`);
    writeDescriptor(s.hdr, d, run.pfn, log2, seq, s.mapId);
    fault('resize:built');
  } catch (e) {
    if (e instanceof PmpoolError) s.release(run, `${s.what}: releasing the unused table`);
    else s.strays = true;
    throw e;
  }
  switchTable(s, d, slots, log2, seq, run, 'resize:switched');
}

/** Switches to the empty map with one store, then gives the table and every segment back. */
export function resetToEmpty(s: MapState): void {
  if (s.tableRun === null && s.loaded.size === 0) return;
  const d = 1 - s.activeDesc;
  const seq = (s.tableSeq + 1) >>> 0;
  writeDescriptor(s.hdr, d, 0, 0, seq, s.mapId);
  switchTable(s, d, NO_U32, 0, seq, null, 'clear:switched');
}

/**
 * Makes descriptor d, already written, the active one: one store, inside a
 * seqlock write section (readers may hold the old table and, for the empty
 * table, the segments); then what nothing points at goes back to the pool —
 * the old table and, when the new table is the empty one (`run` null),
 * every segment.
 */
function switchTable(s: MapState, d: number, slots: Uint32Array, log2: number, seq: number, run: Allocation | null, point: string): void {
  const old = s.tableRun;
  s.seqBegin();
  try {
    Atomics.store(s.hdr, HDR_ACTIVE, d);
    fault(point);
    s.activeDesc = d;
    s.setTable(slots, log2, seq, run);
    s.tombs = 0;
    if (run === null) {
      s.count = 0;
      Atomics.store(s.hdr, HDR_COUNT, 0);
      // Off the compaction queue, flags and all: a release the pool refuses below stops the drops
      // part-way, and a segment left flagged but not queued could never be queued again.
      for (const k of s.pending) s.segQueued[k] = 0;
      s.pending = [];
      for (const k of [...s.loaded]) dropSegment(s, k);
    }
    if (old !== null) s.release(old, `${s.what}: releasing the old table`);
  } finally {
    s.seqEnd();
  }
}
