/**
 * Recovery: rebuild everything derived — the unit bitmap and its summaries,
 * the record-slot bitmap, both hash indices — from the directory, the
 * bare-unit map and the opens' cache lists, the source of truth (the pfn index gets only the
 * records away from their home slot).
 * Run after a crash (an intent record was left behind) and by repair. It is
 * O(metadata), and only ever runs after something went wrong; a clean open
 * never scans.
 */
import type { BitmapAllocator } from '../alloc/index.js';
import { rebuildBareUnits } from './bare-units.js';
import { dissolveInterrupted, rebuildCaches } from './caches.js';
import { decodeLabel, RECORD_FLAG_SUBPOOL } from './directory.js';
import { hashName, hashPfn, homeSlot, unitsOf, type PoolParts } from './parts.js';
import { bytesEqual } from '../util/bytes.js';

export interface LiveRecord {
  slot: number;
  pfn: number;
  pageCount: number;
  seq: number;
  name: Uint8Array;
  owner: Uint8Array;
  subpool: boolean;
}

/**
 * extentProblem(p, pfn, pageCount) === null, without the message: a release asks it of the home
 * record on every call, where the full check's 2 ** orderPerBit and Math.ceil cost more than the
 * rest of the lookup. The pool's first and last pfns are whole units, and so is `pfn` when the
 * last test passes; a run fits before the end exactly when its page count, rounded up to units,
 * does — that is, when the page count itself does.
 */
export function extentFits(p: PoolParts, pfn: number, pageCount: number): boolean {
  return pageCount > 0 && pfn >= p.firstPfn && pageCount <= p.endPfn - pfn && pfn % p.unitPages === 0;
}

/**
 * Why a committed record's sequence number cannot be honoured, or null when it can. Past 2^53 a
 * number is not exact, and the control page could never hand out one after it: such a record is
 * damage (a forged checksum), not the newest allocation, and the counter is not raised to it.
 */
export function seqProblem(seq: number): string | null {
  return Number.isSafeInteger(seq) ? null : `sequence number ${seq} is past 2^53, where no record's can be`;
}

/** Why a committed record cannot be honoured as it stands, or null when it can. */
export function extentProblem(p: PoolParts, pfn: number, pageCount: number): string | null {
  const g = p.geometry;
  const unitPages = 2 ** g.orderPerBit;
  if (!Number.isSafeInteger(pageCount) || pageCount <= 0) return `page count ${pageCount} is not positive`;
  if (pfn % unitPages !== 0) return `pfn ${pfn} is not on a unit boundary (${unitPages} pages)`;
  if (pfn < g.reservedUnits * unitPages) return `pfn ${pfn} lies in the metadata (first ${g.reservedUnits * unitPages} pages)`;
  if (pfn + unitsOf(g, pageCount) * unitPages > g.unitCount * unitPages) return `run [${pfn}, +${pageCount}) ends past the pool`;
  return null;
}

const NO_LABEL = new Uint8Array(0);

/** Every committed record with a good checksum, in slot order. */
export function liveRecords(p: PoolParts): LiveRecord[] {
  const out: LiveRecord[] = [];
  const d = p.directory;
  for (let slot = 0; slot < d.capacity; slot++) {
    if (d.state(slot) === 0 || d.status(slot) !== 'live') continue;
    out.push({
      slot,
      pfn: d.pfn(slot),
      pageCount: d.pageCount(slot),
      seq: d.seq(slot),
      // Most records have no name or no owner: one shared empty array for those, not two views and a copy each.
      name: d.nameLength(slot) === 0 ? NO_LABEL : d.nameBytes(slot).slice(),
      owner: d.ownerLength(slot) === 0 ? NO_LABEL : d.ownerBytes(slot).slice(),
      subpool: (d.flags(slot) & RECORD_FLAG_SUBPOOL) !== 0,
    });
  }
  return out;
}

/**
 * Rebuilds the derived metadata from the directory. Uncommitted records
 * (allocations cut short before their commit) are wiped. A record that
 * cannot be honoured — corrupt, with a sequence number past 2^53, out of
 * bounds, overlapping an older record, or reusing an older record's name — is
 * left in place for check() to report, and its slot is kept out of reuse;
 * where a corrupt record's extent is plausible (or that of a record whose
 * sequence number is past 2^53) its pages stay marked used, so nothing that
 * may be someone's is handed out.
 * Returns a line per change of the source of truth (wiped records).
 */
export function rebuildDerived(p: PoolParts): string[] {
  // A cached operation left half done is settled by its own intent first: the record it claimed
  // is then the directory's to read, as any other.
  const changes = dissolveInterrupted(p);
  const d = p.directory;
  const g = p.geometry;
  p.units.reset();
  p.units.markUsed(0, g.reservedUnits);
  p.slots.reset();
  p.pfnIndex.clear();
  p.nameIndex.clear();

  const live: LiveRecord[] = [];
  const corrupt: number[] = [];
  let dishonoured = 0;
  for (let slot = 0; slot < d.capacity; slot++) {
    // A release that claimed its record and stopped: undone when the record is intact, else finished.
    const settled = d.settleClaim(slot);
    if (settled !== null) changes.push(`${settled === 'restored' ? 'put back' : 'wiped'} record ${slot}, claimed by a release that did not finish`);
    const status = d.status(slot);
    if (status === 'free') continue;
    if (status === 'uncommitted') {
      changes.push(`wiped the uncommitted record in slot ${slot} (an allocation of pfn ${d.pfn(slot)} cut short before its commit)`);
      d.wipeAll(slot);
      continue;
    }
    p.slots.markUsed(slot, 1);
    // A sequence number no record can have is damage of the record, as a bad checksum is.
    if (status === 'corrupt' || seqProblem(d.seq(slot)) !== null) {
      corrupt.push(slot);
      dishonoured++;
      continue;
    }
    live.push({ slot, pfn: d.pfn(slot), pageCount: d.pageCount(slot), seq: d.seq(slot), name: d.nameBytes(slot), owner: d.ownerBytes(slot), subpool: false });
  }

  // Oldest first: when two records claim one page, the older claim stands.
  live.sort((a, b) => a.seq - b.seq);
  // A new record must sort after every existing one: a damaged counter would hand out their
  // numbers again (below the newest), or one number for ever (past 2^53, where +1 is lost).
  const lastSeq = p.control.lastSeq();
  const newest = live.at(-1)?.seq ?? 0;
  if (newest > lastSeq || !Number.isSafeInteger(lastSeq)) {
    changes.push(`set the last sequence number from ${lastSeq} to ${newest}, the newest record's`);
    p.control.setLastSeq(newest);
  }
  const unitPages = 2 ** g.orderPerBit;
  const honoured: LiveRecord[] = [];
  for (const r of live) {
    const start = r.pfn / unitPages;
    const count = extentProblem(p, r.pfn, r.pageCount) === null ? unitsOf(g, r.pageCount) : 0;
    if (count === 0 || !p.units.isFree(start, count)) {
      dishonoured++;
      continue;
    }
    p.units.markUsed(start, count);
    honoured.push(r);
    if (r.name.length > 0) {
      const h = hashName(r.name);
      if (p.nameIndex.find(h, (s) => bytesEqual(d.nameBytes(s), r.name)) < 0) p.nameIndex.insert(h, r.slot);
    }
  }
  // The bare units, after the records (a unit an honoured record holds is no bare unit's: the
  // record has a checksum, the bit has none).
  changes.push(...rebuildBareUnits(p));
  // A damaged record's pages are kept out of reuse only after every intact record and bare unit
  // has its own: its fields are not to be trusted, and must not cost an allocation its pages.
  markPlausibleExtents(p, p.units, corrupt);
  // The opens' cached units, after every record (a unit a record holds is no list's).
  changes.push(...rebuildCaches(p));
  // A record recovery did not honour may sit in the home slot of a pfn: then a lookup must not
  // take the home slot on trust, and every honoured record goes in the pfn index (INDEX_ALL).
  const indexAll = dishonoured > 0;
  for (const r of honoured) if (indexAll || r.slot !== homeSlot(g, r.pfn)) p.pfnIndex.insert(hashPfn(r.pfn), r.slot);
  // The stored word, not what lookups make of it: a damaged word (2, say) reads as set, and is
  // still rewritten to the 1 or 0 the directory implies.
  const word = p.control.indexAllWord();
  if (word !== (indexAll ? 1 : 0)) {
    if (word !== 0 && word !== 1) changes.push(`set the control page's INDEX_ALL word from ${word} to ${indexAll ? 1 : 0}`);
    else changes.push(indexAll ? `${dishonoured} record(s) not honoured: lookups by pfn go through the index for every record` : 'every record honoured: lookups by pfn use home slots again');
  }
  p.control.setIndexAll(indexAll);
  return changes;
}

/**
 * Keeps damaged records' pages out of reuse where their fields still look like an extent: marks in
 * `units` (the pool's bitmap, or the one check() builds) those of their units still free. The
 * records in `slots` may all claim the same units — a damaged directory can hold thousands of
 * records over the whole pool — so their extents are merged first, and each merged run is
 * marked once, where it meets the bitmap's free runs: O(records log records + words), not
 * O(records × units).
 */
export function markPlausibleExtents(p: PoolParts, units: BitmapAllocator, slots: readonly number[]): void {
  const g = p.geometry;
  const d = p.directory;
  const unitPages = 2 ** g.orderPerBit;
  const extents: { start: number; end: number }[] = [];
  for (const slot of slots) {
    const pfn = d.pfn(slot);
    const pageCount = d.pageCount(slot);
    if (extentProblem(p, pfn, pageCount) !== null) continue;
    extents.push({ start: pfn / unitPages, end: pfn / unitPages + unitsOf(g, pageCount) });
  }
  if (extents.length === 0) return;
  extents.sort((a, b) => a.start - b.start);
  const merged = [extents[0]!];
  for (const e of extents) {
    const last = merged.at(-1)!;
    if (e.start <= last.end) last.end = Math.max(last.end, e.end);
    else merged.push(e);
  }
  // Where the merged runs meet free runs, collected before any store: freeRuns() reads the words
  // that markUsed() writes. Both lists are sorted and disjoint; one walk pairs them.
  const marks: number[] = [];
  let next = 0;
  for (const free of units.freeRuns()) {
    const freeEnd = free.start + free.count;
    while (next < merged.length && merged[next]!.end <= free.start) next++;
    if (next === merged.length) break;
    for (let i = next; i < merged.length && merged[i]!.start < freeEnd; i++) {
      const start = Math.max(free.start, merged[i]!.start);
      const end = Math.min(freeEnd, merged[i]!.end);
      if (start < end) marks.push(start, end - start);
    }
  }
  for (let i = 0; i < marks.length; i += 2) units.markUsed(marks[i]!, marks[i + 1]!);
}

export function describeRecord(r: { slot: number; pfn: number; pageCount: number; name: Uint8Array }): string {
  const name = r.name.length > 0 ? ` "${decodeLabel(r.name)}"` : '';
  return `record ${r.slot}${name} [pfn ${r.pfn}, ${r.pageCount} pages]`;
}
