/**
 * The control page: the pool's robust lock and its intent record.
 *
 * The lock is one u32 word holding the run id of its holder (0 = free). Next
 * to it the holder writes who it is (pid, start time, boot, thread, task and
 * program image) and then its run id again; a contender that finds the holder dead breaks the lock
 * with one compare-and-swap and repairs the holder's half-done operation from
 * the intent record — the userspace shape of a robust futex's EOWNERDEAD.
 * Run ids are random per open, so a lock word left by any earlier open is
 * never mistaken for ours.
 */
import { judgedByMark, otherPidNamespace } from '../sys/proc.js';
import { randomNonZeroU31 } from '../sys/random.js';
import { PoolError } from './errors.js';
import { isAlive, isAliveAcrossNamespaces, isAliveForWaiter, selfIdentity, type HolderIdentity, type ProcessIdentity } from './liveness.js';
import type { MetaWriter } from './meta-writer.js';
import { sleepSync } from '../util/sleep.js';

/*
 * Control page layout, offsets from the start of the control area. The lock
 * word has a cache line to itself: waiters poll it, and must not pull away
 * the lines the holder writes on every operation. The holder's identity has
 * the next line (written when the lock changes hands); the sequence number
 * and the intent, written by every operation, share the third, so that a
 * lock handed from one process to another moves as few lines as it can.
 */
const LOCK_WORD = 0;
const OWNER_RUN_ID = 64;
const OWNER_PID = 68;
const OWNER_BOOT = 72;
const OWNER_THREAD = 76;
const OWNER_START = 80; // u64
const OWNER_TID = 88;
const OWNER_TID_START = 96; // u64
const LOCK_BREAKS = 104;
/** The holder's program image (liveness.ts): changes at an exec in place, which keeps the pid. 0 = unknown. */
const OWNER_IMAGE = 108;
/** The holder's PID namespace (liveness.ts): a holder of another is judged by its open's liveness mark. 0 = unknown. */
const OWNER_PID_NS = 112;
/**
 * The run id the PID namespace at 112 was written under, with MARKED (bit 31) when that open holds
 * its liveness mark: 112 is believed only when this word names the run id at 64. A holder of a
 * pmpool that writes neither leaves both as the last holder that did wrote them.
 */
const OWNER_NS_RUN = 116;
const NEXT_SEQ = 128; // u64: the last sequence number handed out, not the next
const INTENT_OP = 136;
const INTENT_SLOT = 140;
const INTENT_PFN = 144; // u64
const INTENT_PAGES = 152; // u64
const INTENT_RUN_ID = 160;
/**
 * Derived, rebuilt by recovery and repair: 1 when the directory holds a
 * committed record that recovery did not honour (a bad checksum, an extent
 * outside the pool, pages an older record owns). A lookup by pfn must not
 * trust such a record just because it sits in its home slot, so while this
 * is set every honoured record is in the pfn index and lookups go there.
 */
const INDEX_ALL = 164;

/** Offsets within the control area that tests and tools read directly (docs/abi.md). */
export const CONTROL_LAYOUT = { LOCK_WORD, OWNER_RUN_ID, OWNER_PID, LOCK_BREAKS, NEXT_SEQ, INTENT_OP, INDEX_ALL } as const;

export const enum IntentOp {
  None = 0,
  Alloc = 1,
  Release = 2,
  /** Rewriting the superblock copies (a handover's generation): backup first, then primary. */
  Superblock = 3,
  /** check({ repair }) rebuilding the derived state (and the superblock copies). */
  Repair = 4,
  /** Moving units between a cache entry's list and the bitmap, or claiming or dissolving an entry (caches.ts); slot = the entry. */
  Cache = 5,
}

/** The name of an intent's operation, for messages. */
export function intentName(op: IntentOp): string {
  return ['none', 'alloc', 'release', 'superblock write', 'repair', 'cache refill or spill'][op] ?? `op ${op}`;
}

/**
 * The intent op word of a control area (`bytes` starts at the area), read
 * without the lock: open peeks at it to tell a superblock write under way
 * or interrupted from a damaged superblock.
 */
export function peekIntentOp(bytes: Uint8Array): IntentOp {
  return new DataView(bytes.buffer, bytes.byteOffset + INTENT_OP, 4).getUint32(0, true) as IntentOp;
}

export interface Intent {
  op: IntentOp;
  slot: number;
  pfn: number;
  pageCount: number;
  runId: number;
}

export interface LockOptions {
  /** Give up after this many milliseconds of a live holder. Default 30 s. */
  timeoutMs?: number;
  /** Liveness oracle (the crash simulation declares its crashed "processes" dead). */
  isAlive?: (owner: ProcessIdentity) => boolean;
  /**
   * @internal Timing knobs for the crash simulation, which reopens thousands
   * of crash images and has its oracle answer at once: how long a lock word
   * may stand without its holder's identity, and how often a waiter asks
   * the oracle. Defaults: IDENTITY_GRACE_MS and LIVENESS_PERIOD_MS.
   */
  identityGraceMs?: number;
  livenessPeriodMs?: number;
  /**
   * Whether anyone holds the liveness mark of run `runId` on the pool's file (Region
   * livenessMarkHeld; null when it cannot tell): how a holder of another PID namespace is judged.
   */
  markHeld?: (runId: number) => boolean | null;
  /** Whether this open holds its liveness mark (recorded with its identity: a holder without one is not judged by one). */
  marked?: boolean;
}

/**
 * How long a lock word may stand without its holder's identity before that holder is judged by
 * its open's liveness mark: dead mid-acquire when the mark is not held (holderIsDead).
 */
const IDENTITY_GRACE_MS = 200;
/**
 * The polite part of a wait: for its first POLITE_POLLS looks at the lock
 * word (some tens of microseconds) a waiter looks only every POLL_PAUSE spins
 * (about 5 µs), and when it finds the lock free it waits GRACE_PAUSE spins
 * more (about 0.5 µs) and takes it only if it is still free. A holder that
 * goes straight on to its next operation — its unlock and its next lock tens
 * of nanoseconds apart — so keeps the lock, and with it the lines it writes:
 * the lock word, the control page's sequence and intent, the allocators'
 * counters. Handing the lock over at every operation moves all of them from
 * core to core each time, which costs more than the operation itself; two
 * busy processes then get less done together than one alone. The looks are
 * few for the same reason: each one pulls the lock word's line to the
 * waiter's core, and the holder's next store to it (its unlock or its next
 * lock) waits for the line to come back — at a look every 0.7 µs, that was
 * a stall in nearly every operation of the holder. Past the polite part the
 * waiter takes the lock at the first chance it sees: turns are likely, not
 * guaranteed (no queue; a waiter that keeps losing the race to short holds
 * reaches LOCK_TIMEOUT, whose message says so).
 */
const POLITE_POLLS = 8;
const POLL_PAUSE = 700;
const GRACE_PAUSE = 70;
/** Attempts a waiter spins (the polite part, then some microseconds of eager spinning) before it starts to sleep. */
const SPIN_ATTEMPTS = 2048;
/** How often a waiter looks at the holder's liveness. */
const LIVENESS_PERIOD_MS = 5;

/** A word of this realm's own, for pause(). */
const spinCell = new Int32Array(new SharedArrayBuffer(4));
/** Spins `n` times on a word of this process's own (an atomic load: the loop is not optimized away). */
function pause(n: number): void {
  for (let i = 0; i < n; i++) Atomics.load(spinCell, 0);
}

/** This process's id, read once: `process.pid` is an accessor, and lock() compares it on every call. */
const PID = process.pid;

/*
 * A holder's identity, as the lock and each open's cache entry (caches.ts) record it: offsets
 * from the identity's first word, its run id. The lock's identity starts at OWNER_RUN_ID.
 */
const HOLDER_PID = OWNER_PID - OWNER_RUN_ID;
const HOLDER_BOOT = OWNER_BOOT - OWNER_RUN_ID;
const HOLDER_THREAD = OWNER_THREAD - OWNER_RUN_ID;
const HOLDER_START = OWNER_START - OWNER_RUN_ID;
const HOLDER_TID = OWNER_TID - OWNER_RUN_ID;
const HOLDER_TID_START = OWNER_TID_START - OWNER_RUN_ID;
const HOLDER_IMAGE = OWNER_IMAGE - OWNER_RUN_ID;
const HOLDER_PID_NS = OWNER_PID_NS - OWNER_RUN_ID;
const HOLDER_NS_RUN = OWNER_NS_RUN - OWNER_RUN_ID;
/** Bytes an identity spans (the lock's breaks counter sits inside it, at +40). */
export const HOLDER_BYTES = HOLDER_NS_RUN + 4;
/** Bit 31 of the namespace's run-id word: the open holds its liveness mark (run ids are 31 bits). */
const MARKED = 0x80000000;

/** The identity recorded at `at` (its run id word first). */
export function readHolder(w: MetaWriter, at: number): HolderIdentity {
  const u = w.u32;
  const runId = u[at >>> 2]!;
  const nsRun = u[(at + HOLDER_NS_RUN) >>> 2]!;
  const nsKnown = runId !== 0 && (nsRun & ~MARKED) >>> 0 === runId;
  return {
    runId,
    marked: nsKnown && (nsRun & MARKED) !== 0,
    pid: u[(at + HOLDER_PID) >>> 2]!,
    bootHash: u[(at + HOLDER_BOOT) >>> 2]!,
    startTime: w.load64(at + HOLDER_START),
    threadId: u[(at + HOLDER_THREAD) >>> 2]!,
    tid: u[(at + HOLDER_TID) >>> 2]!,
    tidStartTime: w.load64(at + HOLDER_TID_START),
    imageId: u[(at + HOLDER_IMAGE) >>> 2]!,
    // Another run's (a holder that does not write it came after): unknown.
    pidNs: nsKnown ? u[(at + HOLDER_PID_NS) >>> 2]! : 0,
  };
}

/**
 * Records this thread as the holder at `at` under `runId`. A holder that finds its own run id
 * and pid in place (relocking, the common case) stores nothing. Otherwise the run id word goes
 * to 0 first and back to `runId` last: a holder that dies half-way through these stores (a
 * thread of this very process, say) leaves an identity that confirms no run id — least of all
 * the previous one.
 */
export function writeHolder(w: MetaWriter, at: number, runId: number, marked: boolean): void {
  const u = w.u32;
  if (u[at >>> 2] === runId && u[(at + HOLDER_PID) >>> 2] === PID) return;
  const me = selfIdentity();
  w.atomicStore(at, 0);
  w.store32(at + HOLDER_PID, me.pid);
  w.store32(at + HOLDER_BOOT, me.bootHash);
  w.store64(at + HOLDER_START, me.startTime);
  w.store32(at + HOLDER_THREAD, me.threadId);
  w.store32(at + HOLDER_TID, me.tid);
  w.store64(at + HOLDER_TID_START, me.tidStartTime);
  w.store32(at + HOLDER_IMAGE, me.imageId);
  w.store32(at + HOLDER_PID_NS, me.pidNs);
  w.store32(at + HOLDER_NS_RUN, (runId | (marked ? MARKED : 0)) >>> 0);
  w.atomicStore(at, runId);
}

export function newRunId(): number {
  return randomNonZeroU31();
}

export class Control {
  private readonly base: number;
  private readonly alive: (owner: HolderIdentity) => boolean;
  private readonly aliveOpen: (owner: HolderIdentity) => boolean;
  /** How long a waiter gives a live holder (LockOptions.timeoutMs); the cache entries' waits too. */
  readonly timeoutMs: number;
  private readonly identityGraceMs: number;
  /** How a claimer that has not written its identity is judged past the grace (holderIsDead); undefined under an oracle. */
  private readonly claimerMarkHeld: ((runId: number) => boolean | null) | undefined;
  /** How often a waiter looks at a holder's liveness (LockOptions.livenessPeriodMs); the cache entries' waits too. */
  readonly livenessPeriodMs: number;
  /** Set once lock() has found the lock held by another open: the pool is shared by busy processes. */
  contended = false;
  /** The run id of the dead holder whose lock lock() broke last (0: none yet). */
  brokenRunId = 0;
  /** Whether this open holds its liveness mark (Region.holdLivenessMark). */
  readonly marked: boolean;

  constructor(
    private readonly w: MetaWriter,
    controlOffset: number,
    readonly runId: number,
    options: LockOptions = {},
  ) {
    this.base = controlOffset;
    // A holder of another PID namespace by its open's liveness mark; any other by /proc.
    const markHeld = options.markHeld;
    this.marked = options.marked ?? false;
    this.alive = options.isAlive ?? ((id: HolderIdentity) => (judgedByMark(id.pidNs) ? isAliveAcrossNamespaces(id, markHeld) : isAliveForWaiter(id)));
    this.aliveOpen = options.isAlive ?? ((id: HolderIdentity) => (judgedByMark(id.pidNs) ? isAliveAcrossNamespaces(id, markHeld) : isAlive(id)));
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.identityGraceMs = options.identityGraceMs ?? IDENTITY_GRACE_MS;
    // An oracle (the crash simulation's) judges every holder there, and has no marks to ask.
    this.claimerMarkHeld = options.isAlive === undefined ? markHeld : undefined;
    this.livenessPeriodMs = options.livenessPeriodMs ?? LIVENESS_PERIOD_MS;
  }

  /** Takes the pool lock; returns true when a dead holder's lock was broken (repair needed). */
  lock(): boolean {
    const at = this.base + LOCK_WORD;
    if (this.w.compareExchange(at, 0, this.runId) === 0) {
      this.confirmClaim();
      return false;
    }
    return this.lockSlow();
  }

  /**
   * Writes this open's identity beside the lock word it has just claimed free. Should that throw (a
   * stack overflow; a fault injected by a test), the claim is taken back before the error goes on:
   * left in the word, unconfirmed under this open's liveness mark — held as long as the open
   * lives — it would be waited for by every other open (holderIsDead), never broken.
   */
  private confirmClaim(): void {
    try {
      this.writeOwner();
    } catch (e) {
      this.w.compareExchange(this.base + LOCK_WORD, this.runId, 0);
      throw e;
    }
  }

  private lockSlow(): boolean {
    const at = this.base + LOCK_WORD;
    this.contended = true;
    // A monotonic clock: a wall clock set back while a holder is dead would hold off its detection.
    const started = performance.now();
    let lastCheck = started;
    let watched = 0;
    let watchedSince = started;
    for (let attempt = 1; ; attempt++) {
      const polite = attempt <= POLITE_POLLS;
      if (polite) pause(POLL_PAUSE);
      const seen = this.w.atomicLoad(at);
      if (seen === 0) {
        if (polite) {
          // Free: leave it to a holder that comes straight back (see POLITE_POLLS).
          pause(GRACE_PAUSE);
          if (this.w.atomicLoad(at) !== 0) continue;
        }
        if (this.w.compareExchange(at, 0, this.runId) === 0) {
          this.confirmClaim();
          return false;
        }
        continue;
      }
      if (seen === this.runId) throw new PoolError('BAD_ARGUMENT', 'pool lock taken twice by the same open (re-entrant call)');
      // Spin first: an operation holds the lock for well under a microsecond,
      // far less than the ~60 µs a sleep really takes. Read the clock sparingly.
      if (attempt < SPIN_ATTEMPTS) {
        if ((attempt & 127) !== 0) continue;
      } else {
        sleepSync(Math.min(1, 0.02 * 2 ** Math.min(6, (attempt - SPIN_ATTEMPTS) >>> 4)));
      }
      const now = performance.now();
      if (seen !== watched) {
        watched = seen;
        watchedSince = now;
      }
      if (now - lastCheck >= this.livenessPeriodMs) {
        lastCheck = now;
        if (this.holderIsDead(seen, now - watchedSince) && this.w.compareExchange(at, seen, this.runId) === seen) {
          this.brokenRunId = seen;
          // Not confirmClaim(): a broken lock taken back would hand the dead holder's half-done
          // operation to the next locker as a free word, with nothing to say it needs recovery.
          this.writeOwner();
          this.w.store32(this.base + LOCK_BREAKS, this.w.u32[(this.base + LOCK_BREAKS) >>> 2]! + 1);
          return true;
        }
        if (now - started > this.timeoutMs) {
          if (this.w.atomicLoad(this.base + OWNER_RUN_ID) !== seen) {
            // The identity beside the word is an earlier holder's: not named, it would mislead.
            const why = now - watchedSince > this.identityGraceMs ? 'its open is alive (its liveness mark is held): stopped (SIGSTOP, a debugger) or preempted between its claim and its identity' : `it is within the ${this.identityGraceMs} ms given to a claimer to write it`;
            throw new PoolError('LOCK_TIMEOUT', `waited over ${this.timeoutMs} ms for the pool lock, claimed by run ${seen}, which has not yet written who it is; ${why}`);
          }
          const owner = this.owner();
          throw new PoolError(
            'LOCK_TIMEOUT',
            `waited over ${this.timeoutMs} ms for the pool lock, held last by pid ${owner.pid} (task ${owner.tid}, run ${seen})${otherPidNamespace(owner.pidNs) ? ' of another PID namespace' : ''}, which is alive: one long hold, or many short ones that kept winning the lock`,
          );
        }
      }
    }
  }

  private holderIsDead(seen: number, watchedMs: number): boolean {
    if (this.w.atomicLoad(this.base + OWNER_RUN_ID) !== seen) {
      // The holder took the word but has not written its identity yet — or died in between.
      if (watchedMs <= this.identityGraceMs) return false;
      // Past the grace, by its open's liveness mark, which the open took when it opened — before
      // any claim, so a live claimer's word is never seen without it. Held, the claimer lives: slow,
      // or stopped (SIGSTOP, a debugger) between its claim and its identity, and it goes on as the
      // holder once resumed — a lock broken under it would have two holders. The kernel holds the
      // mark while the process lives, stopped or not, and drops it when it dies; the addon
      // releases a worker thread's as the thread ends (worker.terminate() included), its
      // descriptor still open. Not held (it died, or it has no mark: its region has none, an
      // older pmpool), it is deemed dead mid-acquire — and so it is where the mark cannot be told
      // (no OFD locks), as before: unlike a confirmed holder, it has nothing else to be judged by,
      // and taken for alive a dead one would hold the lock for good.
      return this.claimerMarkHeld?.(seen) !== true;
    }
    return !this.alive(this.owner());
  }

  unlock(): void {
    this.w.atomicStore(this.base + LOCK_WORD, 0);
  }

  /** True when this open holds the lock. */
  held(): boolean {
    return this.w.atomicLoad(this.base + LOCK_WORD) === this.runId;
  }

  owner(): HolderIdentity {
    return readHolder(this.w, this.base + OWNER_RUN_ID);
  }

  lockWord(): number {
    return this.w.atomicLoad(this.base + LOCK_WORD);
  }

  lockBreaks(): number {
    return this.w.u32[(this.base + LOCK_BREAKS) >>> 2]!;
  }

  private writeOwner(): void {
    writeHolder(this.w, this.base + OWNER_RUN_ID, this.runId, this.marked);
  }

  /**
   * Whether the open named by `id` (a cache entry's owner, caches.ts) may still be running, by
   * this open's liveness oracle. Not the lock waiter's rule: another open in this very thread
   * owns an entry as much as one anywhere else.
   */
  openAlive(id: HolderIdentity): boolean {
    return this.aliveOpen(id);
  }

  /** Whether a lock holder named by `id` may still be running, by the lock waiter's rule (isAliveForWaiter) or the oracle. */
  holderAlive(id: HolderIdentity): boolean {
    return this.alive(id);
  }

  /** True while every honoured record must be in the pfn index (INDEX_ALL). */
  indexAll(): boolean {
    return this.w.u32[(this.base + INDEX_ALL) >>> 2] !== 0;
  }

  /** Stores 1 or 0, unless the word holds it already: a damaged word (2, say) reads as set, and is still rewritten. */
  setIndexAll(on: boolean): void {
    const word = on ? 1 : 0;
    if (this.indexAllWord() !== word) this.w.store32(this.base + INDEX_ALL, word);
  }

  /** The raw word, for check(): anything but 0 or 1 is damage. */
  indexAllWord(): number {
    return this.w.u32[(this.base + INDEX_ALL) >>> 2]!;
  }

  /** The last commit sequence number handed out. */
  lastSeq(): number {
    return this.w.load64(this.base + NEXT_SEQ);
  }

  /** Sets the last sequence number handed out (repair raises it to the newest record's). */
  setLastSeq(seq: number): void {
    this.w.store64(this.base + NEXT_SEQ, seq);
  }

  /** Hands out the next commit sequence number (under the lock): the word holds the last one handed out. */
  nextSeq(): number {
    const seq = this.w.load64(this.base + NEXT_SEQ) + 1;
    this.w.store64(this.base + NEXT_SEQ, seq);
    return seq;
  }

  /* The intent record: written before an operation touches anything, cleared
     after its last store. Its op word is written last and cleared first, so a
     crash leaves it either absent or whole. */

  beginIntent(op: IntentOp, slot: number, pfn: number, pageCount: number): void {
    this.w.store32(this.base + INTENT_SLOT, slot);
    this.w.store64(this.base + INTENT_PFN, pfn);
    this.w.store64(this.base + INTENT_PAGES, pageCount);
    this.w.store32(this.base + INTENT_RUN_ID, this.runId);
    this.w.store32(this.base + INTENT_OP, op);
  }

  endIntent(): void {
    this.w.store32(this.base + INTENT_OP, IntentOp.None);
  }

  intent(): Intent | null {
    const u = this.w.u32;
    const op = u[(this.base + INTENT_OP) >>> 2]! as IntentOp;
    if (op === IntentOp.None) return null;
    return {
      op,
      slot: u[(this.base + INTENT_SLOT) >>> 2]!,
      pfn: this.w.load64(this.base + INTENT_PFN),
      pageCount: this.w.load64(this.base + INTENT_PAGES),
      runId: u[(this.base + INTENT_RUN_ID) >>> 2]!,
    };
  }
}
