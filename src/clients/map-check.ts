/**
 * What the PersistentMap's stats() and check() work out: the map's
 * footprint (a reader recounts the live bytes from the table: the writer's
 * per-segment counts are not on the pool), and the verification of every
 * invariant, each problem named. Both read a snapshot; the map runs them
 * under its reader's seqlock retry.
 */
import { bytesEqual } from '../util/bytes.js';
import { readFixedHeader, TYPE_MAP } from './client-header.js';
import { hashWords, KIND_ASCII, KIND_BYTES, LENGTH_MASK } from './codec.js';
import { HDR_ACTIVE, MAX_SEGMENTS, recordBytes, SEG_HEADER, SEG_W_USED, SEGTAB, TOMB } from './map-layout.js';
import { recordStarts } from './map-segments.js';
import { countGarbage, loadSegment } from './map-space.js';
import type { MapState } from './map-state.js';
import { readDescriptor } from './map-table.js';
import type { MapCheckReport, PersistentMapStats } from './persistent-map.js';

/** What stats() reports, for the map as it is now. */
export function computeStats(s: MapState): PersistentMapStats {
  let segments = 0;
  let segmentBytes = 0;
  let liveBytes = 0;
  let pages = s.root.count + (s.tableRun?.count ?? 0);
  if (s.readOnly) {
    for (let k = 0; k < MAX_SEGMENTS; k++) if (s.hdr[SEGTAB + 2 * k] !== 0 && s.segRun[k] === null) loadSegment(s, k, true);
    for (const k of s.loaded) s.segLive[k] = 0;
    for (let i = 0; i < s.cap; i++) {
      const ref = s.slots[2 * i]!;
      if (ref <= TOMB) continue;
      const k = ref >>> 19;
      if (s.segRun[k] === null) s.bad(`segment ${k} is not published`);
      const w = (ref & 0x7ffff) << 1;
      s.segLive[k] += recordBytes(s.segU32[k]![w + 1]!, s.segU32[k]![w + 2]!);
    }
    // The bump pointers as the writer has moved them since the segments were mapped, read after the
    // slots: a record is appended (its segment's USED moved over it) before a slot points at it,
    // so each record counted live above is within them.
    for (const k of s.loaded) s.segUsed[k] = Atomics.load(s.segU32[k]!, SEG_W_USED);
  }
  let tombs = 0;
  if (s.readOnly) for (let i = 0; i < s.cap; i++) if (s.slots[2 * i] === TOMB) tombs++;
  for (const k of s.loaded) {
    segments++;
    segmentBytes += s.segUsed[k]! - SEG_HEADER;
    liveBytes += s.segLive[k]!;
    pages += s.segRun[k]!.count;
  }
  const entries = s.entries();
  return {
    entries,
    tableSlots: s.cap,
    tombstones: s.readOnly ? tombs : s.tombs,
    segments,
    segmentBytes,
    liveBytes,
    garbageBytes: segmentBytes - liveBytes,
    pages,
    bytesPerEntry: entries === 0 ? 0 : (pages * s.pageSize) / entries,
  };
}

/**
 * The problems check() reports (PersistentMap.check lists what is verified), for the map as it is
 * now; and, for a reader, whether nothing was written while it looked (`quiet`: the count and every
 * segment's bump pointer as they were). The writer writes nothing while it checks.
 */
export function checkNow(s: MapState): { report: MapCheckReport; quiet: boolean } {
  const problems: string[] = [];
  try {
    readFixedHeader(s.root.bytes(0, 128), s.what, TYPE_MAP);
  } catch (e) {
    problems.push((e as Error).message);
  }
  const h = s.hdr;
  const desc = readDescriptor(h, h[HDR_ACTIVE]! & 1, s.mapId);
  if (!desc.ok) problems.push('the active table descriptor does not verify');
  else if (desc.pfn !== s.tablePfn) problems.push(`the active descriptor names table pfn ${desc.pfn}, the map uses ${s.tablePfn}`);
  // The writer's running count the compaction policy weighs: drift would let garbage grow unbounded, or compact for nothing.
  if (!s.readOnly && s.garbage !== countGarbage(s)) problems.push(`the writer counts ${s.garbage} bytes of garbage, its segments hold ${countGarbage(s)}`);
  // A reader checks beside a writer that goes on writing: the count is compared only when nothing
  // was written meanwhile (the count and every segment's bump pointer as they were), and the
  // slots are read before the segments are walked — a writer bumps a segment's pointer past a
  // record before a slot points to it, so every record a slot read here names is walked below.
  const entriesBefore = s.entries();
  const bumpsBefore = s.readOnly ? segmentBumps(s) : 0;
  let count = 0;
  const refs: { slot: number; ref: number }[] = [];
  for (let i = 0; i < s.cap; i++) {
    const ref = Atomics.load(s.slots, 2 * i);
    if (ref <= TOMB) continue;
    count++;
    refs.push({ slot: i, ref });
  }
  const records = new Map<number, Set<number>>();
  for (let k = 0; k < MAX_SEGMENTS; k++) {
    if (h[SEGTAB + 2 * k] === 0) continue;
    if (s.segRun[k] === null) loadSegment(s, k, true);
    if (s.segRun[k] === null) {
      problems.push(`segment ${k} (pfn ${h[SEGTAB + 2 * k]}) is not a valid segment allocation`);
      continue;
    }
    records.set(k, recordStarts(s.segU32[k]!, k, problems));
  }
  const seen = new Set<number>();
  for (const { slot: i, ref } of refs) {
    // A reader's slot that has moved on since it was read (an update, a delete, a compaction that
    // moved the record) says nothing about the map as it is: the record it named may be reused.
    if (s.readOnly && Atomics.load(s.slots, 2 * i) !== ref) continue;
    const k = ref >>> 19;
    const off = (ref & 0x7ffff) << 3;
    if (seen.has(ref)) problems.push(`slot ${i}: record ${k}:${off} is referenced twice`);
    seen.add(ref);
    if (!records.get(k)?.has(off)) {
      problems.push(`slot ${i} points to ${k}:${off}, which is not the start of a record`);
      continue;
    }
    const u32 = s.segU32[k]!;
    const w = off >>> 2;
    const kl = u32[w + 1]! & LENGTH_MASK;
    // Within the segment, or the hash below would run past it (for up to 2^30 bytes).
    if (w + 3 + ((kl + 3) >>> 2) > u32.length) {
      if (s.readOnly && Atomics.load(s.slots, 2 * i) !== ref) continue;
      problems.push(`slot ${i}: the key at ${k}:${off} runs past the end of its segment`);
      continue;
    }
    const hash = hashWords(u32, w + 3, kl, u32[w + 1]! & (KIND_BYTES | KIND_ASCII), s.seed);
    if (hash !== u32[w] || hash !== s.slots[2 * i + 1]) {
      // A reader may race the writer, which marks a record it superseded (inverts its hash word): the slot has moved on.
      if (Atomics.load(s.slots, 2 * i) !== ref) continue;
      problems.push(`slot ${i}: the key at ${k}:${off} does not hash to the slot's hash`);
    }
  }
  const quiet = s.entries() === entriesBefore && (!s.readOnly || segmentBumps(s) === bumpsBefore);
  if (quiet && count !== entriesBefore) problems.push(`the table holds ${count} entries, the map counts ${entriesBefore}`);
  if (!s.readOnly) {
    for (const run of s.ownedRuns()) {
      const ok =
        run.name === s.name ||
        (s.tableRun !== null && run.pfn === s.tableRun.pfn) ||
        [...s.loaded].some((k) => s.segRun[k]!.pfn === run.pfn);
      if (!ok) problems.push(`pool allocation "${run.name ?? ''}" (pfn ${run.pfn}) of owner ${s.owner} is not part of the map`);
    }
    if (!bytesEqual(s.pool.uuidBytes, s.root.bytes(32, 16))) problems.push('the header names another pool uuid');
  }
  return { report: { ok: problems.length === 0, problems }, quiet };
}

/** The sum of every published segment's bump pointer (each append raises one). */
function segmentBumps(s: MapState): number {
  let sum = 0;
  for (let k = 0; k < MAX_SEGMENTS; k++) {
    if (s.hdr[SEGTAB + 2 * k] === 0) continue;
    if (s.segRun[k] === null) loadSegment(s, k, true);
    if (s.segRun[k] !== null) sum += Atomics.load(s.segU32[k]!, SEG_W_USED);
  }
  return sum;
}
