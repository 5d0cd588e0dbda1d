/**
 * Opening a PersistentMap: its header run found by name, or created; a
 * reader's attach (the map's identity read from its header); a writer's
 * (the lock taken, the header of a new map written, and what a dead writer
 * left repaired: docs/clients.md, "recovery"). What recovery works out
 * without writing the pool is map-recovery.ts; this applies it.
 */
import { PmpoolError } from '../errors.js';
import type { Allocation, Pool } from '../index.js';
import { randomNonZeroU31 } from '../sys/random.js';
import { findRoot, LOCK_INDEX, MUTABLE, newClientId, poolCall, readFixedHeader, TYPE_MAP, writeFixedHeader } from './client-header.js';
import { ClientError } from './errors.js';
import {
  HDR_ACTIVE,
  HDR_CLEAN,
  HDR_COUNT,
  HDR_SEQ,
  HDR_TOMBS,
  HEADER_RUN_BYTES,
  MAX_SEGMENTS,
  NO_U32,
  SEG_W_LIVE,
  SEGTAB,
  SEGTAB_BYTES,
  u32View,
} from './map-layout.js';
import { pickActive, recountTable, sortOwnedRuns, tableHasEntries } from './map-recovery.js';
import { fault } from './map-runtime.js';
import { resetToEmpty } from './map-resize.js';
import { canKeep, countGarbage, freeSegment, loadSegment, queue, sparse } from './map-space.js';
import type { MapState } from './map-state.js';
import { readDescriptor, writeDescriptor } from './map-table.js';

/**
 * The header run of map `name` in `pool`; when there is none, a new one
 * unless the opener is a reader, `create` is false, or the incoming
 * handover has a node for the map (`handedOver`).
 */
export function openRoot(pool: Pool, name: string, readOnly: boolean, create: boolean, handedOver: boolean): Allocation {
  const what = `persistent map "${name}"`;
  const owner = `pmap:${name}`;
  let root = findRoot(pool, name, owner, what);
  if (root === undefined) {
    if (readOnly || !create) throw new ClientError('NOT_FOUND', `there is no ${what} in the pool`);
    if (handedOver) {
      throw new ClientError(
        'HANDOVER_MISMATCH',
        `${what}: the incoming handover has a node for it, but the pool holds no such map; refused, nothing created (open it with { handover: null } to start a new one)`,
      );
    }
    try {
      // Zeroed before it commits: the run may hold what a released client left, and a header
      // read as garbage would be refused (or, after a crash mid-creation, never initialized).
      root = poolCall(() => pool.alloc(Math.ceil(HEADER_RUN_BYTES / pool.pageSize), { name, owner, zero: true }), what);
      fault('open:allocated');
    } catch (e) {
      // Another process created it first.
      if (!(e instanceof PmpoolError && e.code === 'NAME_TAKEN')) throw e;
      root = findRoot(pool, name, owner, what);
      if (root === undefined) throw e;
    }
  }
  return root;
}

export function attachReader(s: MapState): void {
  const header = readFixedHeader(s.root.bytes(0, 128), s.what, TYPE_MAP);
  if (header === null) throw new ClientError('NOT_FOUND', `${s.what} is still being created`);
  loadFixed(s, header.clientId, header.fixed, header.headerBytes);
}

function loadFixed(s: MapState, clientId: number, fixed: [number, number, number], headerBytes: number): void {
  if (fixed[1] !== MAX_SEGMENTS || fixed[2] !== SEGTAB_BYTES || headerBytes !== HEADER_RUN_BYTES) {
    throw new ClientError('CORRUPT', `${s.what}: its header describes a layout this code does not use`);
  }
  s.mapId = clientId;
  s.seed = fixed[0];
}

/** Takes the writer lock, initializes a new map's header or reads an existing one's, and recovers. */
export function attachWriter(s: MapState): void {
  // Not a map (or a map of a format this code does not know): refuse before touching its lock words.
  // A new run's lock words are zero from its allocation; zeroing them here would free the lock of a
  // writer that opened the map between the allocation and now.
  readFixedHeader(s.root.bytes(0, 128), s.what, TYPE_MAP);
  s.lock.acquire(s.what);
  const header = readFixedHeader(s.root.bytes(0, 128), s.what, TYPE_MAP);
  if (header === null) initialize(s);
  else loadFixed(s, header.clientId, header.fixed, header.headerBytes);
  recover(s);
}

/** A new map (or one whose creation a crash interrupted): an empty header, the magic last. */
function initialize(s: MapState): void {
  for (const run of s.ownedRuns()) {
    if (run.name !== s.name) poolCall(() => s.pool.release(run.pfn, run.count, { owner: s.owner }), s.what);
  }
  const bytes = s.root.bytes(0, HEADER_RUN_BYTES);
  bytes.fill(0, 0, LOCK_INDEX * 4);
  bytes.fill(0, MUTABLE);
  s.mapId = newClientId();
  s.seed = randomNonZeroU31();
  writeDescriptor(s.hdr, 0, 0, 0, 0, s.mapId);
  s.hdr[HDR_ACTIVE] = 0;
  s.hdr[HDR_CLEAN] = 1;
  writeFixedHeader(bytes, {
    type: TYPE_MAP,
    headerBytes: HEADER_RUN_BYTES,
    clientId: s.mapId,
    fixed: [s.seed, MAX_SEGMENTS, SEGTAB_BYTES],
    poolUuid: s.pool.uuidBytes,
    createdAtMs: Date.now(),
    name: s.name,
  });
}

/**
 * What a writer does at open: finish what a dead writer left (an odd
 * seqlock, runs allocated but never published or unpublished but never
 * released), map the table and segments, and recount when the counters
 * are not known to be exact.
 */
function recover(s: MapState): void {
  const h = s.hdr;
  if ((h[HDR_SEQ]! & 1) !== 0) Atomics.add(h, HDR_SEQ, 1);
  const d = h[HDR_ACTIVE]!;
  if (d > 1) throw new ClientError('CORRUPT', `${s.what}: active descriptor ${d}`);
  const desc = readDescriptor(h, d, s.mapId);
  if (!desc.ok) throw new ClientError('CORRUPT', `${s.what}: its table descriptor does not verify`);
  s.activeDesc = d;
  const tableName = `${s.name}/t${desc.seq}`;
  // A map closed or handed over cleanly had no run in flight (a writer marks it dirty before its
  // first change, and clean again only after its last): its table is found by name, its segments
  // by the segment table, in O(1) whatever the pool holds. Only a crash leaves leftovers to give
  // back, and finding them takes a pass over the pool's allocations.
  const { table, stale } = h[HDR_CLEAN] === 1 ? { table: s.describedTable(desc), stale: [] } : sortOwnedRuns(s.ownedRuns(), s.name, desc, h);
  if (desc.pfn !== 0) {
    const bytes = 2 ** desc.log2 * 8;
    if (table === undefined || table.count * s.pageSize < bytes) {
      throw new ClientError('CORRUPT', `${s.what}: its table (pfn ${desc.pfn}) is not the pool allocation "${tableName}"`);
    }
    s.setTable(u32View(table.bytes(0, bytes)), desc.log2, desc.seq, table);
  } else {
    s.setTable(NO_U32, 0, desc.seq, null);
  }
  for (let k = 0; k < MAX_SEGMENTS; k++) if (h[SEGTAB + 2 * k] !== 0) loadSegment(s, k, false);
  if (h[HDR_CLEAN] === 1) {
    s.count = h[HDR_COUNT]!;
    s.tombs = h[HDR_TOMBS]!;
    for (const k of s.loaded) s.segLive[k] = s.segU32[k]![SEG_W_LIVE]!;
  } else {
    // After a crash: exact again once recounted, and marked so at close or handover, so that
    // the next open neither recounts nor sweeps the pool.
    recount(s);
    s.markDirty();
  }
  // A count of 0 sends an open to resetToEmpty (below), which frees the table and every segment:
  // a damaged count must not. The table, the source of truth, says whether the map is empty.
  if (s.count === 0 && tableHasEntries(s.slots, s.cap)) {
    recount(s);
    s.markDirty();
  }
  if (s.count + s.tombs > s.cap) throw new ClientError('CORRUPT', `${s.what}: ${s.count} entries and ${s.tombs} tombstones in ${s.cap} slots`);
  // Allocated but never published, or unpublished but never released: given back only now that the
  // recount found no slot pointing into them. A segment table entry damaged to 0 makes a segment of
  // live records look unpublished; the open refuses (above) and its records stay in the pool.
  for (const run of stale) poolCall(() => s.pool.release(run.pfn, run.count, { owner: s.owner }), s.what);
  // Pick the roomiest small segment to go on appending to; queue the sparse ones.
  const best = pickActive(s.loaded, s.segDedicated, s.segCap, s.segUsed);
  if (best >= 0) s.active = best;
  // An empty segment the size of the active one stays the spare, as it was before the crash or close.
  if (s.count > 0) {
    const spare = [...s.loaded].find((k) => s.segLive[k] === 0 && canKeep(s, k));
    if (spare !== undefined) s.spares.push(spare);
  }
  s.garbage = countGarbage(s);
  // Sparse segments become compaction candidates again. The compaction itself, when due, is left to
  // the next set or delete: an open (a handover's, a crash's) copies nothing, and a crash in the
  // middle of a compaction meets the same fault points in an operation as any other.
  for (const k of s.loaded) if (k !== s.active && !s.spares.includes(k) && s.segLive[k] !== 0 && sparse(s, k)) queue(s, k);
  const emptySegment = (k: number) => k !== s.active && !s.spares.includes(k) && s.segLive[k] === 0;
  const tidy = s.count === 0 ? s.loaded.size > 0 || s.tableRun !== null : [...s.loaded].some(emptySegment);
  if (tidy) {
    s.markDirty();
    if (s.count === 0) resetToEmpty(s);
    else for (const k of [...s.loaded]) if (emptySegment(k)) freeSegment(s, k);
  }
}

/** Counts entries, tombstones and live bytes per segment from the table (after a crash). */
function recount(s: MapState): void {
  const { count, tombs } = recountTable(s.slots, s.cap, s.segU32, s.segUsed, s.segLive, s.loaded, s.what);
  s.count = count;
  s.tombs = tombs;
  Atomics.store(s.hdr, HDR_COUNT, count);
}
