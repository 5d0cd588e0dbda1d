/**
 * check(): every invariant of the region ABI, verified and named.
 *
 *  - the superblock and its backup carry good checksums and agree;
 *  - no operation was left half done (intent record), no uncommitted record;
 *  - every directory record is free (all zeros) or committed with a good
 *    checksum, within the pool, clear of the metadata, on unit boundaries;
 *  - every page is free or owned by exactly one record or bare unit (or by
 *    the metadata, or cached by an open): the unit bitmap equals the one the
 *    directory, the bare-unit map and the cache lists imply;
 *  - each word of the bare-unit map has equal halves, and each bare unit is
 *    an allocatable unit no record holds, whose home slot holds no intact
 *    record and no other bare unit (a map the pool does not use is zero);
 *  - the allocators' summaries and counters agree with their bitmaps;
 *  - the record-slot bitmap marks exactly the non-free records and the home
 *    slots of the cached and bare units;
 *  - every cache entry is free and zero, or owned with no operation left
 *    half done, and each unit on its list is an allocatable unit no record
 *    and no other list holds, whose home record is free;
 *  - every committed record's sequence number is below 2^53 (no record can have been given
 *    another), and the control page's is at least each of theirs, and exact;
 *  - each index holds each live record exactly once, reachable by lookup
 *    (the pfn index: each live record away from its home slot, no other;
 *    every honoured record while INDEX_ALL is set, which it is exactly when
 *    some committed record is not honoured; the name index: the honoured
 *    record of each name, no other).
 * Every check is O(metadata): a damaged directory or index costs no more than a sound one.
 */
import { BitmapAllocator, BitmapStateError, ArrayWordStore, allocatorGeometry } from '../alloc/index.js';
import { bareCandidates, bareUnitProblem, unitList } from './bare-units.js';
import { CACHE_ENTRIES, CACHE_UNITS, CacheOp, cachedUnitProblem, entryIsZero } from './caches.js';
import { RECORD_BYTES } from './layout.js';
import type { RecordIndex } from './record-index.js';
import { describeRecord, extentProblem, liveRecords, markPlausibleExtents, seqProblem, type LiveRecord } from './recovery.js';
import { hashName, hashPfn, homeSlot, homeSlotOfUnit, unitsOf, type PoolParts } from './parts.js';

/**
 * Problem lines one kind of damage may add that a damaged region can make by the thousand (the
 * directory's records, an index's entries, the unit bitmap's runs); past them, one line counts
 * the rest. A directory overwritten with junk is one problem to its reader, not a line per record.
 */
const PROBLEM_LINES = 32;

/** What one check found: its lines, and how many problems the lines that count the rest stand for past themselves. */
interface Findings {
  problems: string[];
  /** Problems a "... and N more" line counts, less that line itself: the report's count is lines + this. */
  uncounted: number;
}

/** The problems of one such kind: the first PROBLEM_LINES named, and the exact number of the others. */
class CappedLines {
  private count = 0;
  constructor(
    private readonly findings: Findings,
    private readonly rest: (more: number) => string,
  ) {}
  /** Counts one problem; true when it is to be named (its line may cost lookups: built only then). */
  named(): boolean {
    return this.count++ < PROBLEM_LINES;
  }
  add(line: string): void {
    if (this.named()) this.findings.problems.push(line);
  }
  /** The line that counts the problems not named, if there were any. */
  end(): void {
    if (this.count <= PROBLEM_LINES) return;
    this.findings.problems.push(this.rest(this.count - PROBLEM_LINES));
    this.findings.uncounted += this.count - PROBLEM_LINES - 1;
  }
}

export interface PartsReport {
  problems: string[];
  /** Problems counted by the capped lines past those lines themselves (Findings.uncounted). */
  uncounted: number;
  /** The sub-pools the pool honours under their names — those a sound name index leads to — each to be checked in turn. */
  subpools: LiveRecord[];
}

export function checkParts(p: PoolParts): PartsReport {
  const findings: Findings = { problems: [], uncounted: 0 };
  const problems = findings.problems;
  const g = p.geometry;
  const d = p.directory;
  const unitPages = 2 ** g.orderPerBit;

  const intent = p.control.intent();
  if (intent) problems.push(`an operation was interrupted (intent: op ${intent.op}, slot ${intent.slot}, pfn ${intent.pfn})`);

  // The cache entries, and the home slots their units hold (their records free, their slots used).
  const c = p.caches;
  const cachedHomes = new Set<number>();
  const lists: { entry: number; units: number[] }[] = [];
  for (let e = 0; e < CACHE_ENTRIES; e++) {
    if (!c.enabled || c.owner(e) === 0) {
      if (!entryIsZero(p, e)) problems.push(`cache entry ${e} is not zero, though ${c.enabled ? 'it has no owner' : 'this pool does not use caches'}`);
      continue;
    }
    if (c.op(e) !== CacheOp.None) problems.push(`cache entry ${e}: a cached operation was interrupted (op ${c.op(e)}, unit ${c.opUnit(e)})`);
    if (c.count(e) > CACHE_UNITS) problems.push(`cache entry ${e}: its count ${c.count(e)} is past ${CACHE_UNITS}`);
    if (c.nextSeq(e) > c.endSeq(e) || c.endSeq(e) > p.control.lastSeq() + 1) {
      problems.push(`cache entry ${e}: its sequence numbers [${c.nextSeq(e)}, ${c.endSeq(e)}) were not handed out by the control page (last ${p.control.lastSeq()})`);
    }
    const units = c.units(e);
    lists.push({ entry: e, units });
    for (const unit of units) if (Number.isSafeInteger(unit) && unit < g.unitCount) cachedHomes.add(homeSlotOfUnit(g, unit));
  }

  // The bare-unit map: each word's halves equal; every unit set in either half may be someone's.
  const b = p.bare;
  const bareHomes = new Set<number>();
  for (let i = 0; i < b.words; i++) {
    const word = b.word(i);
    if (word === 0) continue;
    if (!b.enabled) {
      problems.push(`word ${i} of the bare-unit map is not zero, though this pool ${c.enabled ? 'has no bare units' : 'does not use caches'}`);
      continue;
    }
    const halves = (word & 0xffff) ^ (word >>> 16);
    if (halves !== 0) problems.push(`word ${i} of the bare-unit map is damaged: its halves differ at units ${unitList(i, halves)}`);
  }
  // In the order recovery takes them (sound words' units first): which of two units contending for
  // a home slot is named is the one repair clears.
  const bareUnits = b.enabled ? bareCandidates(b) : [];
  for (const unit of bareUnits) if (unit < g.unitCount) bareHomes.add(homeSlotOfUnit(g, unit));

  // Directory records, one by one. Every corrupt record is kept (its plausible extent, INDEX_ALL);
  // the lines name the first of each kind.
  let dishonoured = 0;
  const corrupt: number[] = [];
  const corruptLines = new CappedLines(findings, (more) => `... and ${more} more corrupt records`);
  const uncommittedLines = new CappedLines(findings, (more) => `... and ${more} more uncommitted records`);
  const slotLines = new CappedLines(findings, (more) => `... and ${more} more record-slot bitmap disagreements`);
  for (let slot = 0; slot < d.capacity; slot++) {
    const heldHome = cachedHomes.has(slot) || bareHomes.has(slot);
    if (d.state(slot) === 0 && p.slots.isFree(slot, 1) && !heldHome) {
      // Fast path for the common free record: all-zero check only.
      const status = d.status(slot);
      if (status === 'uncommitted') uncommittedLines.add(`record ${slot} holds an uncommitted allocation (pfn ${d.pfn(slot)})`);
      continue;
    }
    const status = d.status(slot);
    if (status === 'corrupt') {
      corrupt.push(slot);
      corruptLines.add(`record ${slot} is corrupt (checksum or state word; at metadata offset ${d.offsetOf(slot)}, ${RECORD_BYTES} bytes)`);
    }
    if (status === 'uncommitted') uncommittedLines.add(`record ${slot} holds an uncommitted allocation (pfn ${d.pfn(slot)})`);
    const slotUsed = p.slots.isUsed(slot, 1);
    if (status === 'free' && slotUsed && !heldHome) slotLines.add(`record slot ${slot} is marked in use but the record is free`);
    if (status === 'free' && !slotUsed && heldHome) slotLines.add(`record slot ${slot} is the home slot of a ${cachedHomes.has(slot) ? 'cached' : 'bare'} unit but marked free`);
    if (status !== 'free' && status !== 'uncommitted' && !slotUsed) slotLines.add(`record slot ${slot} is in use but marked free`);
  }
  corruptLines.end();
  uncommittedLines.end();
  slotLines.end();

  // The unit bitmap the directory implies, built apart and compared.
  const expectedWords = new Uint32Array(allocatorGeometry(g.unitCount).wordCount);
  const expected = BitmapAllocator.format(new ArrayWordStore(expectedWords), g.unitCount);
  expected.markUsed(0, g.reservedUnits);
  // A record whose sequence number no record can have is damaged, as a corrupt one is: recovery
  // honours neither, and keeps the pages of both out of reuse where their extents are plausible.
  const live = liveRecords(p);
  const damaged = [...corrupt];
  const ordered: LiveRecord[] = [];
  for (const r of live) {
    const bad = seqProblem(r.seq);
    if (bad === null) {
      ordered.push(r);
      continue;
    }
    problems.push(`${describeRecord(r)}: ${bad}`);
    damaged.push(r.slot);
    dishonoured++;
  }
  ordered.sort((a, b) => a.seq - b.seq);
  const lastSeq = p.control.lastSeq();
  const newest = ordered.at(-1);
  if (!Number.isSafeInteger(lastSeq)) {
    problems.push(`the control page's last sequence number ${lastSeq} is past 2^53: new records would share one number`);
  } else if (newest !== undefined && newest.seq > lastSeq) {
    problems.push(`the control page's last sequence number is ${lastSeq}, below the ${newest.seq} of ${describeRecord(newest)}: new records would not sort after it`);
  }
  // The honoured record of each name (the oldest) is the one the name index must lead to.
  const names = new Map<string, number>();
  const nameEntries = new Map<number, number>();
  const honoured: LiveRecord[] = [];
  for (const r of ordered) {
    const bad = extentProblem(p, r.pfn, r.pageCount);
    if (bad !== null) {
      problems.push(`${describeRecord(r)}: ${bad}`);
      dishonoured++;
      continue;
    }
    const start = r.pfn / unitPages;
    const count = unitsOf(g, r.pageCount);
    if (!expected.isFree(start, count)) {
      problems.push(`${describeRecord(r)} overlaps pages owned by an older record or the metadata`);
      dishonoured++;
      continue;
    }
    expected.markUsed(start, count);
    honoured.push(r);
    if (r.name.length > 0) {
      const key = Buffer.from(r.name).toString('latin1');
      const first = names.get(key);
      if (first !== undefined) {
        problems.push(`${describeRecord(r)} reuses the name of record ${first}`);
      } else {
        names.set(key, r.slot);
        nameEntries.set(r.slot, hashName(r.name));
      }
    }
  }
  // Bare units, as recovery takes them: after the honoured records, before the damaged records' extents.
  const bareHomesTaken = new Set<number>();
  for (const unit of bareUnits) {
    const why = bareUnitProblem(p, unit, expected, (slot) => bareHomesTaken.has(slot));
    if (why !== null) {
      problems.push(`bare unit ${unit}: ${why}`);
      continue;
    }
    expected.markUsed(unit, 1);
    bareHomesTaken.add(homeSlotOfUnit(g, unit));
  }
  // As recovery does: a damaged record's plausible extent stays out of reuse, around the pages of
  // the honoured records and bare units — those pages are held for it, not leaked.
  markPlausibleExtents(p, expected, damaged);
  // Cached units: each an allocatable unit that nothing else holds, with a free home record.
  const listedHomes = new Set<number>();
  for (const { entry, units } of lists) {
    for (const unit of units) {
      const why = cachedUnitProblem(p, unit, expected, (slot) => !listedHomes.has(slot) && !bareHomesTaken.has(slot));
      if (why !== null) {
        problems.push(`cache entry ${entry} lists unit ${unit}: ${why}`);
        continue;
      }
      expected.markUsed(unit, 1);
      listedHomes.add(homeSlotOfUnit(g, unit));
    }
  }
  dishonoured += corrupt.length;
  // INDEX_ALL (docs/abi.md): set exactly when some committed record is not honoured; then every
  // honoured record is in the pfn index, else only those away from their home slot.
  const indexAll = dishonoured > 0;
  const flag = p.control.indexAllWord();
  if (flag !== (indexAll ? 1 : 0)) problems.push(`the control page's INDEX_ALL word is ${flag}, but the directory implies ${indexAll ? 1 : 0}`);
  const pfnEntries = new Map<number, number>();
  for (const r of honoured) if (indexAll || r.slot !== homeSlot(g, r.pfn)) pfnEntries.set(r.slot, hashPfn(r.pfn));
  compareBitmaps(p.units, expected, unitPages, findings);
  for (const problem of p.units.checkSummaries()) problems.push(`unit bitmap: ${problem}`);
  for (const problem of p.slots.checkSummaries()) problems.push(`record-slot bitmap: ${problem}`);

  // Each index holds its expected entries, reachable, and nothing else.
  const bySlot = new Map(live.map((r) => [r.slot, r]));
  const honouredSlots = new Set(honoured.map((r) => r.slot));
  checkIndex('pfn', p.pfnIndex, pfnEntries, bySlot, findings, (slot, hash) => {
    const r = bySlot.get(slot);
    if (r === undefined || hashPfn(r.pfn) !== hash) return 'it does not describe';
    return indexAll ? 'is not honoured' : 'is in its home slot';
  });
  checkIndex('name', p.nameIndex, nameEntries, bySlot, findings, (slot, hash) => {
    const r = bySlot.get(slot);
    if (r === undefined || r.name.length === 0 || hashName(r.name) !== hash) return 'it does not describe';
    // A lookup by name would hand out this record, and pages that may be another's.
    if (!honouredSlots.has(slot)) return 'is not honoured';
    return `is not the oldest record of its name (record ${names.get(Buffer.from(r.name).toString('latin1'))} is)`;
  });
  return { problems, uncounted: findings.uncounted, subpools: honoured.filter((r) => r.subpool && nameEntries.has(r.slot)) };
}

/**
 * Verifies one index against the entries it must hold (directory slot → key hash) in one pass over
 * its table, and names what is wrong: at most PROBLEM_LINES lines, then a count of the rest —
 * a table overwritten with junk is one problem, not one line per entry.
 */
function checkIndex(
  which: 'pfn' | 'name',
  index: RecordIndex,
  entries: ReadonlyMap<number, number>,
  records: ReadonlyMap<number, LiveRecord>,
  findings: Findings,
  whyStray: (slot: number, hash: number) => string,
): void {
  const lines = new CappedLines(findings, (more) => `... and ${more} more problems of the ${which} index`);
  const problems = findings.problems;
  index.verify(entries, (fault) => {
    if (!lines.named()) return;
    switch (fault.kind) {
      case 'stray':
        problems.push(`${which} index entry ${fault.position} points at record ${fault.slot}, which ${whyStray(fault.slot, fault.hash)}`);
        break;
      case 'duplicate':
        problems.push(`${which} index entry ${fault.position} points at record ${fault.slot}, which another entry points at too`);
        break;
      case 'unreachable':
        problems.push(`${describeRecord(records.get(fault.slot)!)} is in the ${which} index (entry ${fault.position}) past an empty entry, where no lookup reaches it`);
        break;
      case 'missing':
        problems.push(`${describeRecord(records.get(fault.slot)!)} is missing from the ${which} index`);
        break;
    }
  });
  lines.end();
}

/** Reports each run where the stored bitmap and the implied one disagree, as pages. */
function compareBitmaps(actual: BitmapAllocator, expected: BitmapAllocator, unitPages: number, findings: Findings): void {
  if (sameRuns(actual, expected)) return; // O(words); the unit-by-unit walk below runs only to name a disagreement
  const n = actual.unitCount;
  const lines = new CappedLines(findings, (more) => `... and ${more} more bitmap disagreements`);
  for (let u = 0; u < n; ) {
    const a = actual.isUsed(u, 1);
    if (a === expected.isUsed(u, 1)) {
      u++;
      continue;
    }
    let end = u + 1;
    while (end < n && actual.isUsed(end, 1) === a && expected.isUsed(end, 1) !== a) end++;
    lines.add(
      a
        ? `pages [${u * unitPages}, +${(end - u) * unitPages}) are marked used but no record owns them (a leak)`
        : `pages [${u * unitPages}, +${(end - u) * unitPages}) are owned by a record but marked free`,
    );
    u = end;
  }
  lines.end();
}

function sameRuns(a: BitmapAllocator, b: BitmapAllocator): boolean {
  const ib = b.freeRuns()[Symbol.iterator]();
  try {
    for (const ra of a.freeRuns()) {
      const rb = ib.next();
      if (rb.done || rb.value.start !== ra.start || rb.value.count !== ra.count) return false;
    }
  } catch (e) {
    // freeRuns() follows the stored summaries, and damaged ones make it throw. check() reports
    // damage, it does not die of it: the unit-by-unit walk reads the leaves alone, and
    // checkSummaries() names the summary damage.
    if (e instanceof BitmapStateError) return false;
    throw e;
  }
  return ib.next().done === true;
}
