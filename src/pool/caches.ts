/**
 * Per-open caches of free units: the pool's form of the kernel's per-CPU
 * page lists (mm/page_alloc.c, "pcp"). There a CPU frees pages onto a list
 * of its own and allocates from it, and takes the zone lock only to move a
 * batch between its list and the buddy allocator. Here each open of a pool
 * claims an entry of the control page's cache table and keeps on it a list
 * of up to CACHE_UNITS free units. Its one-unit allocations without a name
 * come off the list, and its releases of such allocations go back onto it,
 * under the entry's own lock, which no other open takes on its way: two
 * processes allocating at once share no line of the control page, and
 * neither waits for the pool lock. The pool lock is taken to move a batch of
 * CACHE_BATCH units between the list and the bitmap, and by every operation
 * on the whole pool, which then takes the entries' locks too — always the
 * pool lock first, so no two holders wait for each other.
 *
 * A unit on a list is marked used in the unit bitmap and its home slot in
 * the slot bitmap, and its home record is free: to every other open it is
 * taken, and to recovery and check() the lists are part of the truth, like
 * the directory. A cached operation is made crash-safe the way the pool's
 * are, by an intent: the entry's, naming the unit. A release is committed by
 * one compare-and-swap of the record's state word (LIVE to RELEASING), which
 * settles a race with a release of the same record by another open. An
 * entry whose owner is dead — found by its recorded identity, like the
 * lock's holder — is *dissolved*: its interrupted operation is finished or
 * undone, and its units go back to the bitmap.
 *
 * The layout is in docs/abi.md ("Per-open caches"). Pools made before it
 * (no INCOMPAT_OPEN_CACHES) keep their table unused.
 */
import { PoolError } from './errors.js';
import { HOLDER_BYTES, IntentOp, readHolder, writeHolder, type Control } from './control.js';
import { CLAIM_BY_CACHE, RECORD_LIVE } from './directory.js';
import { BARE_UNITS_MIN_RECORDS, homeSlotOfUnit } from './layout.js';
import type { MetaWriter } from './meta-writer.js';
import type { PoolParts } from './parts.js';
import { sleepSync } from '../util/sleep.js';

/** Entries in the table: opens beyond these allocate through the pool lock alone. */
export const CACHE_ENTRIES = 8;
/** Offset of the table within the control page, and the size of one entry. */
export const CACHE_TABLE = 512;
export const CACHE_ENTRY_BYTES = 384;
/** Units a list holds at most, and how many move at a time between a list and the bitmap. */
export const CACHE_UNITS = 64;
export const CACHE_BATCH = 32;
/**
 * The smallest directory whose pool uses its caches: full, the lists hold one home slot each,
 * and all of them together at most a quarter of the directory's.
 */
export const CACHE_MIN_RECORDS = 4 * CACHE_ENTRIES * CACHE_UNITS;
if (CACHE_MIN_RECORDS !== BARE_UNITS_MIN_RECORDS) throw new Error('pmpool: a pool has bare units exactly when its opens use caches');
/** Record sequence numbers an entry takes from the control page at a time. */
export const CACHE_SEQ_BLOCK = 256;


/* Entry layout: the first line is written by every cached operation; the owner's identity
   (read when its liveness is in doubt) has the second; the list the rest. */
const E_LOCK = 0;
const E_OP = 4;
const E_UNIT = 8;
const E_COUNT = 12;
const E_NEXT_SEQ = 16; // u64: the next sequence number the owner hands out
const E_END_SEQ = 24; // u64: one past the last of its block
const E_OWNER = 64; // the owner's identity (control.ts writeHolder); its run id word is 0 when the entry is free
const E_UNITS = 128; // u32[CACHE_UNITS]

/** Offsets within an entry that tests and tools read (docs/abi.md). */
export const CACHE_ENTRY_LAYOUT = { LOCK: E_LOCK, OP: E_OP, UNIT: E_UNIT, COUNT: E_COUNT, NEXT_SEQ: E_NEXT_SEQ, END_SEQ: E_END_SEQ, OWNER: E_OWNER, UNITS: E_UNITS } as const;

if (E_OWNER + HOLDER_BYTES > E_UNITS || E_UNITS + 4 * CACHE_UNITS > CACHE_ENTRY_BYTES || CACHE_TABLE + CACHE_ENTRIES * CACHE_ENTRY_BYTES > 4096) {
  throw new Error('pmpool: the cache table does not fit the control page');
}

export const enum CacheOp {
  None = 0,
  Alloc = 1,
  /** A release, before its claim of the record, or after a claim it has not yet checked. */
  Release = 2,
  /** A release past its claim and its checks: the record and the unit are the entry's. */
  Released = 3,
  /**
   * A release of a bare unit (bare-units.ts): before its bit is cleared, or after — by this
   * entry, or by another release of the same unit that got there first.
   */
  BareRelease = 4,
}

/** The words of one open's cache table. */
export class CacheTable {
  private readonly table: number;

  constructor(
    private readonly w: MetaWriter,
    controlOffset: number,
    /** False for a pool made before the caches (no INCOMPAT_OPEN_CACHES), or whose directory is under CACHE_MIN_RECORDS: the table is not used. */
    readonly enabled: boolean,
  ) {
    this.table = controlOffset + CACHE_TABLE;
  }

  base(entry: number): number {
    return this.table + entry * CACHE_ENTRY_BYTES;
  }

  owner(entry: number): number {
    return this.w.u32[(this.base(entry) + E_OWNER) >>> 2]!;
  }
  lockWord(entry: number): number {
    return this.w.atomicLoad(this.base(entry) + E_LOCK);
  }
  op(entry: number): CacheOp {
    return this.w.u32[(this.base(entry) + E_OP) >>> 2]! as CacheOp;
  }
  opUnit(entry: number): number {
    return this.w.u32[(this.base(entry) + E_UNIT) >>> 2]!;
  }
  count(entry: number): number {
    return this.w.u32[(this.base(entry) + E_COUNT) >>> 2]!;
  }
  unit(entry: number, index: number): number {
    return this.w.u32[(this.base(entry) + E_UNITS + 4 * index) >>> 2]!;
  }
  nextSeq(entry: number): number {
    return this.w.load64(this.base(entry) + E_NEXT_SEQ);
  }
  endSeq(entry: number): number {
    return this.w.load64(this.base(entry) + E_END_SEQ);
  }

  /** The units on the list (count clamped: a damaged count must not read past the entry). */
  units(entry: number): number[] {
    const n = Math.min(this.count(entry), CACHE_UNITS);
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(this.unit(entry, i));
    return out;
  }

  tryLock(entry: number, runId: number): boolean {
    return this.w.compareExchange(this.base(entry) + E_LOCK, 0, runId) === 0;
  }
  /** Takes a lock word held by `seen` (a dead holder's). */
  breakLock(entry: number, seen: number, runId: number): boolean {
    return this.w.compareExchange(this.base(entry) + E_LOCK, seen, runId) === seen;
  }
  unlock(entry: number): void {
    this.w.atomicStore(this.base(entry) + E_LOCK, 0);
  }
  /**
   * The owner's unlock: only a lock it still holds. An owner taken for dead has had its lock
   * broken, and may be unlocking another's.
   */
  unlockOwn(entry: number, runId: number): void {
    this.w.compareExchange(this.base(entry) + E_LOCK, runId, 0);
  }
  /** A cached release is past its claim and its checks (CacheOp.Released). */
  markReleased(entry: number): void {
    this.w.store32(this.base(entry) + E_OP, CacheOp.Released);
  }

  /** The intent of a cached operation: its unit first, the op word last (cleared first by endOp). */
  beginOp(entry: number, op: CacheOp, unit: number): void {
    const at = this.base(entry);
    this.w.store32(at + E_UNIT, unit);
    this.w.store32(at + E_OP, op);
  }
  endOp(entry: number): void {
    this.w.store32(this.base(entry) + E_OP, CacheOp.None);
  }

  setCount(entry: number, count: number): void {
    this.w.store32(this.base(entry) + E_COUNT, count);
  }
  setUnit(entry: number, index: number, unit: number): void {
    this.w.store32(this.base(entry) + E_UNITS + 4 * index, unit);
  }
  /** Hands out the owner's next sequence number; the caller has checked one is left. */
  takeSeq(entry: number): number {
    const at = this.base(entry) + E_NEXT_SEQ;
    const seq = this.w.load64(at);
    this.w.store64(at, seq + 1);
    return seq;
  }
  setSeqBlock(entry: number, next: number, end: number): void {
    const at = this.base(entry);
    this.w.store64(at + E_NEXT_SEQ, next);
    this.w.store64(at + E_END_SEQ, end);
  }

  /** Records this open as the entry's owner (its identity first, its run id last). */
  claim(entry: number, runId: number, marked: boolean): void {
    writeHolder(this.w, this.base(entry) + E_OWNER, runId, marked);
  }

  /** Makes the entry free: every word of it zero. */
  clear(entry: number): void {
    const at = this.base(entry);
    // The owner word first: from then on the entry is nobody's, whatever the rest still says.
    this.w.store32(at + E_OWNER, 0);
    this.w.fill(at + E_OP, CACHE_ENTRY_BYTES - E_OP);
  }

  /** Any entry with an operation under way or interrupted, or its lock held: worth a look at open. */
  anyBusy(): boolean {
    if (!this.enabled) return false;
    for (let e = 0; e < CACHE_ENTRIES; e++) if (this.op(e) !== CacheOp.None || this.lockWord(e) !== 0) return true;
    return false;
  }

  /** Whether the owner may still be running: an open anywhere, this very thread's other opens included. */
  ownerAlive(entry: number, control: Control): boolean {
    return control.openAlive(readHolder(this.w, this.base(entry) + E_OWNER));
  }
  /**
   * Whether the owner holding the entry's lock may still be running, asked by a pool-lock holder
   * that waits for it: the lock waiter's rule (liveness.ts isAliveForWaiter), for an owner
   * recorded as the waiting thread itself holds no cached operation — a previous image's did.
   */
  holderAlive(entry: number, control: Control): boolean {
    return control.holderAlive(readHolder(this.w, this.base(entry) + E_OWNER));
  }
}

/* ---------------- what the pool lock's holder does to the entries ---------------- */


/**
 * Takes entry `e`'s lock for the pool lock's holder (which the caller must be). A live owner in
 * a cached operation is waited for. A lock whose holder is dead is broken: the owner's, when its
 * identity says it is gone; a pool-lock holder's, at once (the pool lock is ours, so that holder
 * died holding both). An operation found interrupted is the dead owner's: with `settle`, the
 * entry is dissolved and false returned (the entry is then free and unlocked); without (check(),
 * which reports), the entry is held as it is.
 */
export function lockEntry(p: PoolParts, e: number, timeoutMs: number, settle = true): boolean {
  const c = p.caches;
  const runId = p.control.runId;
  const started = performance.now();
  let looked = -Infinity;
  for (let attempt = 0; ; attempt++) {
    if (c.tryLock(e, runId)) break;
    const seen = c.lockWord(e);
    if (seen === 0) continue;
    if (seen === runId) break; // this open's own: none of its cached operations runs while it holds the pool lock
    if (seen !== c.owner(e)) {
      if (c.breakLock(e, seen, runId)) break;
      continue;
    }
    // The owner, in a cached operation: well under a microsecond, unless it died in it (or is
    // zeroing a large unit). Its liveness is looked at as often as a pool-lock waiter looks.
    if (attempt < 64) continue;
    const now = performance.now();
    if (now - looked >= p.control.livenessPeriodMs) {
      looked = now;
      if (!c.holderAlive(e, p.control)) {
        if (c.breakLock(e, seen, runId)) break;
        continue;
      }
    }
    if (now - started > timeoutMs) {
      throw new PoolError('LOCK_TIMEOUT', `waited over ${timeoutMs} ms for cache entry ${e} of the pool, held by its owner (run ${seen}), which is alive`);
    }
    // Pauses of a waiter for an owner that holds its lock for well under a microsecond.
    sleepSync(Math.min(1, 0.02 * 2 ** Math.min(6, (attempt - 64) >>> 6)));
  }
  // An owner clears its intent before it unlocks: one left over is a dead owner's — or this open's
  // own, left by an exception (a store that failed), for none of its cached operations runs while
  // it holds the pool lock.
  if (settle && c.op(e) !== CacheOp.None) {
    dissolveAndUnlock(p, e);
    return false;
  }
  return true;
}

/**
 * Takes the lock of every entry in use (see lockEntry); returns the entries held, to be given to
 * unlockEntries, and adds those it dissolved to `dissolved`. For the operations on the whole
 * pool, under the pool lock.
 */
export function lockEntries(p: PoolParts, timeoutMs: number, settle = true, dissolved?: number[]): number[] {
  const held: number[] = [];
  if (!p.caches.enabled) return held;
  try {
    for (let e = 0; e < CACHE_ENTRIES; e++) {
      if (p.caches.owner(e) === 0 && p.caches.lockWord(e) === 0 && p.caches.op(e) === CacheOp.None) continue;
      if (lockEntry(p, e, timeoutMs, settle)) held.push(e);
      else dissolved?.push(e);
    }
  } catch (err) {
    unlockEntries(p, held);
    throw err;
  }
  return held;
}

export function unlockEntries(p: PoolParts, held: readonly number[]): void {
  for (const e of held) p.caches.unlock(e);
}

/** What recovery, repair and an open report of an entry dissolved for its interrupted operation. */
export function dissolvedLine(e: number): string {
  return `dissolved cache entry ${e}: its open died in a cached operation`;
}

/** Dissolves entry `e`, whose lock the pool lock's holder holds, and unlocks it, whatever happens. */
export function dissolveAndUnlock(p: PoolParts, e: number): void {
  try {
    dissolve(p, e, false);
  } finally {
    p.caches.unlock(e);
  }
}

/**
 * Dissolves every owned entry whose operation was interrupted (each entry's lock held by the pool
 * lock's holder): the first step of recovery and repair, before the directory is read, so that a
 * record a cache claimed is settled by that cache's intent and tag. Returns a line for each.
 */
export function dissolveInterrupted(p: PoolParts): string[] {
  const changes: string[] = [];
  if (!p.caches.enabled) return changes;
  for (let e = 0; e < CACHE_ENTRIES; e++) {
    if (p.caches.owner(e) === 0 || p.caches.op(e) === CacheOp.None) continue;
    changes.push(dissolvedLine(e));
    dissolve(p, e, true);
  }
  return changes;
}

/**
 * Dissolves entry `e` (its lock held by the pool lock's holder): settles its interrupted
 * operation, returns its units to the bitmap, and frees the entry. `rebuilding`: inside
 * rebuildDerived, with every entry's lock held, which then marks the bitmaps from the truth alone.
 */
function dissolve(p: PoolParts, e: number, rebuilding: boolean): void {
  // Under an intent of the pool's: a crash half-way is finished by the next locker's recovery,
  // which rebuilds the bitmaps from the directory and the lists. Inside another operation's
  // (a recovery, a drain), that one's covers it.
  const own = p.control.intent() === null;
  if (own) beginCacheIntent(p, e);
  dissolveUnder(p, e, rebuilding);
  if (own) endCacheIntent(p);
}

export function beginCacheIntent(p: PoolParts, e: number): void {
  p.control.beginIntent(IntentOp.Cache, e, 0, 0);
  p.writer.barrier();
}

export function endCacheIntent(p: PoolParts): void {
  p.writer.barrier();
  p.control.endIntent();
  p.writer.barrier();
}

function dissolveUnder(p: PoolParts, e: number, rebuilding: boolean): void {
  const c = p.caches;
  const d = p.directory;
  const free = new Set(c.units(e));
  const op = c.op(e);
  const unit = c.opUnit(e);
  if (op !== CacheOp.None && unit >= p.geometry.reservedUnits && unit < p.geometry.unitCount) {
    const slot = homeSlotOfUnit(p.geometry, unit);
    const mine = d.claimedBy(slot) === CLAIM_BY_CACHE + e;
    if (op === CacheOp.Alloc) {
      // The unit came off this list. Made bare, or its record committed, the allocation stands —
      // whoever holds it now. Else it was cut short before, and its record is wiped and the unit
      // free — unless it was made after all and released since, by another open given its pfn
      // before the entry was dissolved: then the unit may be on that open's list, or made again.
      // Outside a rebuild (which marks the bitmap from the truth alone) that is told apart with
      // every other entry still.
      if ((p.bare.enabled && p.bare.has(unit)) || d.state(slot) === RECORD_LIVE) {
        free.delete(unit);
      } else if (d.state(slot) === 0) {
        const cutShort = () => {
          if (!d.isFree(slot)) d.wipeAll(slot);
          return rebuilding || unitIsNoOnes(p, e, unit);
        };
        if (rebuilding ? cutShort() : withOtherEntriesStill(p, e, cutShort)) free.add(unit);
        else free.delete(unit);
      }
    } else if (op === CacheOp.Release) {
      // Not past its checks: a claim of this entry's is put back (the release did not happen).
      // A record in any other state is not this entry's to touch — its claim failed, and the
      // record may be another open's release, or allocation, by now.
      if (mine) d.settleClaim(slot);
    } else if (op === CacheOp.Released) {
      // Past its claim and checks: the record and the unit are the entry's; the release is finished.
      if (mine) d.uncommit(slot);
      if (d.state(slot) === 0) {
        if (!d.isFree(slot)) d.wipeAll(slot);
        free.add(unit);
      }
    } else if (op === CacheOp.BareRelease && p.bare.enabled) {
      // Its bit still set, the release did not happen. Cleared, and the unit on the list, it is
      // finished. Cleared and not on the list: by this release — then the unit is no one's, and
      // goes back — or by another one of the same unit, which got there first and holds it now.
      // Inside a rebuild the bitmap is marked from the truth alone, and a unit no one's is free.
      if (!p.bare.has(unit) && !free.has(unit) && !rebuilding && withOtherEntriesStill(p, e, () => unitIsNoOnes(p, e, unit))) free.add(unit);
    }
  }
  c.clear(e);
  for (const unit of free) returnUnit(p, unit);
}

/**
 * Runs `fn` with every entry but `e` still (under the pool lock and `e`'s lock): each one's lock
 * taken — a live owner's cached operation waited for, a dead one's lock taken as it stands — and
 * given back after. Only the dissolving of a dead owner's operation needs it, to learn who holds
 * a unit that caches move without the pool lock.
 */
function withOtherEntriesStill<T>(p: PoolParts, e: number, fn: () => T): T {
  const c = p.caches;
  const runId = p.control.runId;
  const taken: number[] = [];
  try {
    for (let other = 0; other < CACHE_ENTRIES; other++) {
      // Held already by this pool-lock holder (an operation on the whole pool dissolving its way
      // through the table): still, and not this function's to unlock.
      if (other === e || c.lockWord(other) === runId) continue;
      if (lockEntry(p, other, p.control.timeoutMs, false)) taken.push(other);
    }
    return fn();
  } finally {
    for (const other of taken) c.unlock(other);
  }
}

/**
 * Whether `unit`, named by entry `e`'s interrupted operation and not on `e`'s list, is no one's
 * (every other entry still: withOtherEntriesStill). A bare release that clears a unit's bit, or a
 * cached release that wipes its record, names the unit in its intent until the unit is on its
 * list; so the unit is no one's exactly when it is still marked used, no list holds it, it is not
 * bare, no record holds it, and no other entry's interrupted operation names it (that entry's own
 * dissolving settles it, and frees it if it must). Then only `e`'s operation could have passed it
 * on, and it died before it did.
 */
function unitIsNoOnes(p: PoolParts, e: number, unit: number): boolean {
  const c = p.caches;
  if (unit < p.geometry.reservedUnits || unit >= p.geometry.unitCount || !p.units.isUsed(unit, 1) || (p.bare.enabled && p.bare.has(unit))) return false;
  for (let other = 0; other < CACHE_ENTRIES; other++) {
    if (other === e || c.owner(other) === 0) continue;
    if (c.units(other).includes(unit) || (c.op(other) !== CacheOp.None && c.opUnit(other) === unit)) return false;
  }
  return !recordHolds(p, unit);
}

/**
 * Whether a record that is not free has `unit` among its pages. Not only the unit's home record:
 * once another release put the unit on its list, it may have gone back to the bitmap and into a
 * run of several units since (its record in the run's first unit's home slot), or into a record
 * away from its home slot. Every record is looked at — a damaged one too, by its extent where that
 * still reads as one — for this is asked only of a dead owner's release, and a unit freed from
 * under an allocation is handed out twice, where one kept too long is only a leak check() names.
 */
function recordHolds(p: PoolParts, unit: number): boolean {
  const d = p.directory;
  const unitPages = p.unitPages;
  const first = unit * unitPages;
  for (let slot = 0; slot < d.capacity; slot++) {
    if (d.state(slot) === 0 && d.isFree(slot)) continue;
    const pfn = d.pfn(slot);
    const pageCount = d.pageCount(slot);
    if (!Number.isSafeInteger(pageCount) || pageCount <= 0 || pfn % unitPages !== 0) continue;
    if (pfn <= first && first < pfn + Math.ceil(pageCount / unitPages) * unitPages) return true;
  }
  return false;
}

/** Marks a unit that was cached (or held by an interrupted cached operation) free again, with its home slot. */
function returnUnit(p: PoolParts, unit: number): void {
  const g = p.geometry;
  if (unit < g.reservedUnits || unit >= g.unitCount) return;
  const slot = homeSlotOfUnit(g, unit);
  if (p.units.isUsed(unit, 1)) p.units.markFree(unit, 1);
  if (p.directory.isFree(slot) && p.slots.isUsed(slot, 1)) p.slots.markFree(slot, 1);
}

/**
 * Claims a free entry for the open (under the pool lock); an entry whose owner is dead is
 * dissolved and claimed. Returns the entry, or -1 when every one belongs to a live open.
 */
export function claimEntry(p: PoolParts, timeoutMs: number): number {
  const c = p.caches;
  const runId = p.control.runId;
  for (let pass = 0; pass < 2; pass++) {
    for (let e = 0; e < CACHE_ENTRIES; e++) {
      if (pass === 1 && c.owner(e) !== 0) {
        // Every entry is taken: one whose owner is dead is dissolved and reused.
        if (c.ownerAlive(e, p.control)) continue;
        if (lockEntry(p, e, timeoutMs)) dissolveAndUnlock(p, e);
      }
      if (c.owner(e) !== 0) continue;
      // Nobody's: only the pool lock's holder takes its lock, so one held was a dead holder's.
      const seen = c.lockWord(e);
      if (seen !== 0 && !c.breakLock(e, seen, runId)) continue;
      if (seen === 0 && !c.tryLock(e, runId)) continue;
      try {
        beginCacheIntent(p, e);
        c.clear(e);
        takeSeqBlock(p, e);
        c.claim(e, runId, p.control.marked);
        endCacheIntent(p);
      } finally {
        c.unlock(e);
      }
      return e;
    }
  }
  return -1;
}

/**
 * Fills entry `e`'s list up to CACHE_BATCH units and its block of sequence numbers (under the pool
 * lock, the entry's lock and a pool intent). A unit whose home slot is not free (another unit's
 * record sits there) cannot be cached and stays in the bitmap. Returns the units added.
 */
export function refill(p: PoolParts, e: number): number {
  const c = p.caches;
  const d = p.directory;
  const g = p.geometry;
  if (c.nextSeq(e) >= c.endSeq(e)) takeSeqBlock(p, e);
  const count = c.count(e);
  const taken: number[] = [];
  // A unit whose home slot another unit's record holds cannot be cached. The search moves past it
  // — marked used meanwhile, and free again at the end — a bounded number of times: a directory
  // crowded with records away from home leaves the cache short, and allocations go through the
  // pool lock.
  const skipped: number[] = [];
  while (count + taken.length < CACHE_BATCH && skipped.length < CACHE_BATCH) {
    const unit = p.units.find(1, 1);
    if (unit < 0) break;
    p.units.markUsed(unit, 1);
    const slot = homeSlotOfUnit(g, unit);
    if (!p.slots.isFree(slot, 1) || !d.isFree(slot)) {
      skipped.push(unit);
      continue;
    }
    p.slots.markUsed(slot, 1);
    taken.push(unit);
  }
  for (const unit of skipped) p.units.markFree(unit, 1);
  // Highest first: allocations take the list's top, so a run of them gets ascending units, as
  // from the bitmap (neighbouring pages, neighbouring records).
  for (let i = 0; i < taken.length; i++) c.setUnit(e, count + i, taken[taken.length - 1 - i]!);
  c.setCount(e, count + taken.length);
  return taken.length;
}

/** Gives entry `e` the next CACHE_SEQ_BLOCK sequence numbers of the control page's (under the pool lock). */
function takeSeqBlock(p: PoolParts, e: number): void {
  const next = p.control.lastSeq() + 1;
  p.control.setLastSeq(next + CACHE_SEQ_BLOCK - 1);
  p.caches.setSeqBlock(e, next, next + CACHE_SEQ_BLOCK);
}

/** Returns units from the end of entry `e`'s list to the bitmap until it holds `keep` (under both locks). */
export function spill(p: PoolParts, e: number, keep: number): void {
  const c = p.caches;
  let count = c.count(e);
  while (count > keep) {
    const unit = c.unit(e, count - 1);
    c.setCount(e, --count);
    returnUnit(p, unit);
  }
}

/**
 * Returns every cached unit of every entry to the bitmap (dissolving the entries of dead owners),
 * for an allocation that found no room without them. Under the pool lock; returns the units freed.
 */
export function drainAll(p: PoolParts, timeoutMs: number): number {
  if (!p.caches.enabled) return 0;
  const before = p.units.freeUnits();
  // Every lock first (a LOCK_TIMEOUT then changes nothing, and leaves no intent), then the spills
  // under one intent.
  const held = lockEntries(p, timeoutMs);
  try {
    beginCacheIntent(p, 0);
    for (const e of held) spill(p, e, 0);
    endCacheIntent(p);
  } finally {
    unlockEntries(p, held);
  }
  return p.units.freeUnits() - before;
}

/** Units on all lists: free to allocate, though marked used in the bitmap. */
export function cachedUnits(p: PoolParts): number {
  if (!p.caches.enabled) return 0;
  let n = 0;
  for (let e = 0; e < CACHE_ENTRIES; e++) if (p.caches.owner(e) !== 0) n += Math.min(p.caches.count(e), CACHE_UNITS);
  return n;
}

/* ---------------- for recovery and check() ---------------- */

/**
 * Every byte of entry `e` but its lock word is zero, as a free entry's must be. The lock word is
 * not looked at: the pool lock's holder takes the lock of a free entry that holds anything.
 */
export function entryIsZero(p: PoolParts, e: number): boolean {
  const words = p.writer.u32;
  const from = (p.caches.base(e) + E_OP) >>> 2;
  for (let i = from; i < from + (CACHE_ENTRY_BYTES - E_OP) / 4; i++) if (words[i] !== 0) return false;
  return true;
}

/**
 * Recovery's part (rebuildDerived, every entry's lock held, after dissolveInterrupted() and after
 * the records have marked their units and slots): free entries are zeroed; every list is kept,
 * less any unit that cannot be a cached one, and its units and home slots marked used.
 * Returns a line per change.
 */
export function rebuildCaches(p: PoolParts): string[] {
  const changes: string[] = [];
  const c = p.caches;
  const g = p.geometry;
  for (let e = 0; e < CACHE_ENTRIES; e++) {
    if (!c.enabled) {
      if (!entryIsZero(p, e)) {
        p.writer.fill(c.base(e) + 4, CACHE_ENTRY_BYTES - 4);
        changes.push(`zeroed cache entry ${e}: this pool does not use caches`);
      }
      continue;
    }
    if (c.owner(e) === 0) {
      if (!entryIsZero(p, e)) {
        c.clear(e);
        changes.push(`zeroed cache entry ${e}, which has no owner`);
      }
      continue;
    }
    const kept: number[] = [];
    const listed = Math.min(c.count(e), CACHE_UNITS);
    if (c.count(e) > CACHE_UNITS) changes.push(`cache entry ${e}: its count ${c.count(e)} is past ${CACHE_UNITS}; kept the first ${CACHE_UNITS}`);
    for (let i = 0; i < listed; i++) {
      const unit = c.unit(e, i);
      const why = cachedUnitProblem(p, unit, p.units, (slot) => p.slots.isFree(slot, 1));
      if (why !== null) {
        changes.push(`dropped unit ${unit} from cache entry ${e}: ${why}`);
        continue;
      }
      p.units.markUsed(unit, 1);
      p.slots.markUsed(homeSlotOfUnit(g, unit), 1);
      kept.push(unit);
    }
    if (kept.length !== c.count(e)) {
      kept.forEach((unit, i) => c.setUnit(e, i, unit));
      for (let i = kept.length; i < CACHE_UNITS; i++) if (c.unit(e, i) !== 0) c.setUnit(e, i, 0);
      c.setCount(e, kept.length);
    }
    const next = c.nextSeq(e);
    const end = c.endSeq(e);
    if (next > end || end > p.control.lastSeq() + 1) {
      c.setSeqBlock(e, 0, 0);
      changes.push(`cache entry ${e}: dropped its block of sequence numbers [${next}, ${end}), which the control page did not hand out`);
    }
  }
  return changes;
}

/** Why `unit` cannot be on a list, given the units marked so far and the free slots; null when it can. */
export function cachedUnitProblem(p: PoolParts, unit: number, units: { isFree(start: number, count: number): boolean }, slotFree: (slot: number) => boolean): string | null {
  const g = p.geometry;
  if (!Number.isSafeInteger(unit) || unit < g.reservedUnits || unit >= g.unitCount) return `unit ${unit} is not one of the pool's allocatable units`;
  if (!units.isFree(unit, 1)) return 'a record, a bare unit, the metadata or another list holds it';
  const slot = homeSlotOfUnit(g, unit);
  if (!p.directory.isFree(slot)) return `its home record ${slot} is not free`;
  if (!slotFree(slot)) return `its home slot ${slot} is taken`;
  return null;
}

