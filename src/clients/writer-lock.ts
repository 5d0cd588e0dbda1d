/**
 * The single-writer lock of a client (PersistentMap, LogRing): a few words in
 * the client's header run, held for as long as the writer keeps the client
 * open. A robust lock in the pool's own style (docs/abi.md): the lock word
 * holds a random token, the holder then writes who it is and confirms with the
 * token again, and a contender that finds the holder dead breaks the lock with
 * one compare-and-swap.
 *
 * "Who" is what names the pool lock's holder (docs/abi.md, "The robust lock"):
 * pid + process start time (/proc/PID/stat field 22) + boot id; the thread, by
 * its kernel task id and the task's start time (a worker that died holding the
 * lock leaves its process alive); the program image (execve keeps the pid and
 * the start time but replaces the image: a program that exec'd in place
 * without closing its clients must not find itself locked out, nor lock out
 * anyone else); and the PID namespace. A holder of another PID namespace — a
 * container sharing this one's /dev/shm — is judged not by /proc, where its
 * pid names nothing or another process, but by the liveness mark the writer
 * holds on the pool's file under its token (Region.holdLivenessMark), which
 * the kernel drops when the writer's process dies.
 */
import type { Region } from '../region/index.js';
import { randomNonZeroU31 } from '../sys/random.js';
import { judgedByMark, otherPidNamespace, ownIdentity, recordedThreadAlive, type ThreadIdentity } from '../sys/proc.js';
import { ClientError } from './errors.js';
import { sleepSync } from '../util/sleep.js';

/* Word offsets from the lock's base (u32 index). */
const TOKEN = 0;
const CONFIRM = 1;
const PID = 2;
const THREAD = 3;
const START_LO = 4;
const START_HI = 5;
const BOOT = 6;
const IMAGE = 7;
const BREAKS = 8;
const TID = 9; // 0: unknown (no /proc/thread-self): the process alone is watched
const TID_START_LO = 10;
const TID_START_HI = 11;
const PID_NS = 12; // 0: unknown (no /proc): the holder is taken for one of this namespace
/**
 * The token words 9-12 were written under, with MARKED (bit 31) when the writer holds its liveness
 * mark: they are believed only when this word names the token in the lock word. A writer of a
 * pmpool that writes none of them leaves them as the last writer that did wrote them.
 */
const EXTRA_TOKEN = 13;
/** Words the lock occupies. */
export const LOCK_WORDS = 14;
/** Bit 31 of EXTRA_TOKEN (tokens are 31 bits). */
const MARKED = 0x80000000;
/** Writers' liveness marks sit past the pools' opens' (run ids, below 2^31): id WRITER_MARKS + token. */
const WRITER_MARKS = 2 ** 32;

/** How long a lock word may stand without its holder's identity before that holder is judged by its liveness mark: dead mid-acquire when it holds none. */
const IDENTITY_GRACE_MS = 200;

/** A recorded holder: its identity, and whether it holds its liveness mark. */
export interface LockHolder extends ThreadIdentity {
  marked: boolean;
}

/** Whether anyone holds the liveness mark `id` on the pool's file (null: cannot tell). */
export type MarkHeld = (id: number) => boolean | null;

let faultHook: ((point: string) => void) | null = null;
/** @internal a test stops a claimer here (SIGSTOP), between its claim of the lock word and its confirmation. */
export function setWriterLockFaultHook(hook: ((point: string) => void) | null): void {
  faultHook = hook;
}

/** Tokens of the locks this JavaScript realm holds (a second open in the same thread is BUSY, not "dead"). */
const heldTokens = new Set<number>();


/**
 * Whether the holder, whose lock word holds `token`, may still be running: its process (with
 * the start time, image and boot recorded) and its thread. One of another PID namespace by its
 * liveness mark (`markHeld`, asked for `token`); when that cannot be told, it is taken for alive.
 */
export function holderAlive(h: LockHolder, token: number, markHeld?: MarkHeld): boolean {
  if (h.pid <= 0) return false;
  const me = ownIdentity();
  if (h.bootHash !== me.bootHash) return false;
  // By its mark, when it took one; taken for alive when it did not, or the mark cannot be read.
  if (judgedByMark(h.pidNs)) return !h.marked || markHeld === undefined || (markHeld(WRITER_MARKS + token) ?? true);
  if (h.pid === me.pid && h.startTime === me.startTime) {
    // This process. Another image (exec in place) is gone. This very thread holds no lock it does
    // not know of (heldTokens): one recorded as this thread is a previous image's.
    if (h.imageId !== me.imageId) return false;
    if (h.tid !== 0 ? h.tid === me.tid && h.tidStartTime === me.tidStartTime : h.threadId === me.threadId) return false;
  }
  return recordedThreadAlive(h);
}

export class WriterLock {
  private token = 0;
  private readonly markHeld: MarkHeld | undefined;

  constructor(
    private readonly words: Uint32Array,
    private readonly base: number,
    /** The pool's region: the writer holds its liveness mark there (see the module comment). */
    private readonly region?: Region,
  ) {
    this.markHeld = region?.livenessMarkHeld === undefined ? undefined : (id) => region.livenessMarkHeld!(id);
  }

  get held(): boolean {
    return this.token !== 0 && Atomics.load(this.words, this.base + TOKEN) === this.token;
  }

  /** How many times a dead holder's lock was broken (kept across opens). */
  get breaks(): number {
    return Atomics.load(this.words, this.base + BREAKS);
  }

  /** The current holder, or null when the lock is free or its holder has not yet written who it is. */
  holder(): LockHolder | null {
    const w = this.words;
    const b = this.base;
    const token = Atomics.load(w, b + TOKEN);
    if (token === 0 || Atomics.load(w, b + CONFIRM) !== token) return null;
    const extra = w[b + EXTRA_TOKEN]!;
    const extraKnown = (extra & ~MARKED) >>> 0 === token;
    return {
      pid: w[b + PID]!,
      threadId: w[b + THREAD]!,
      startTime: w[b + START_LO]! + w[b + START_HI]! * 2 ** 32,
      bootHash: w[b + BOOT]!,
      imageId: w[b + IMAGE]!,
      // Another writer's (one that does not write them came after): unknown.
      tid: extraKnown ? w[b + TID]! : 0,
      tidStartTime: extraKnown ? w[b + TID_START_LO]! + w[b + TID_START_HI]! * 2 ** 32 : 0,
      pidNs: extraKnown ? w[b + PID_NS]! : 0,
      marked: extraKnown && (extra & MARKED) !== 0,
    };
  }

  /** True when the lock is held and its holder may be alive. */
  writerAlive(): boolean {
    const token = Atomics.load(this.words, this.base + TOKEN);
    if (token === 0) return false;
    if (heldTokens.has(token)) return true;
    const h = this.holder();
    return h === null ? true : holderAlive(h, token, this.markHeld);
  }

  /**
   * Takes the lock, or throws BUSY naming the live holder. Returns whether a
   * dead holder's lock was broken (its last operation may be half done).
   */
  acquire(what: string): { broke: boolean } {
    const token = randomNonZeroU31();
    // The liveness mark before the claim: a contender that finds the token unconfirmed — this
    // writer stopped, say by SIGSTOP, between its claim and its confirmation — sees the mark held
    // and does not take the writer for dead. The kernel drops it with the process.
    const marked = this.region?.holdLivenessMark?.(WRITER_MARKS + token) ?? false;
    try {
      return this.claim(what, token, marked);
    } catch (e) {
      if (marked) this.region?.releaseLivenessMark?.(WRITER_MARKS + token);
      throw e;
    }
  }

  private claim(what: string, token: number, marked: boolean): { broke: boolean } {
    const w = this.words;
    const b = this.base;
    let unconfirmedSince = 0;
    /** The unconfirmed token the grace is being timed for: a new one (its claimer died, another claimed) gets all of it. */
    let unconfirmedToken = 0;
    for (;;) {
      const seen = Atomics.compareExchange(w, b + TOKEN, 0, token);
      if (seen === 0) {
        faultHook?.('lock:claimed');
        this.publish(token, marked);
        return { broke: false };
      }
      let dead: boolean;
      if (heldTokens.has(seen)) {
        throw new ClientError('BUSY', `${what} is already open for writing in this thread; close it first`);
      } else if (Atomics.load(w, b + CONFIRM) !== seen) {
        // The holder has not said who it is yet: give it a moment (by a monotonic clock: the wall
        // clock may be set back meanwhile).
        const now = performance.now();
        if (unconfirmedSince === 0 || seen !== unconfirmedToken) {
          unconfirmedSince = now;
          unconfirmedToken = seen;
        }
        if (now - unconfirmedSince <= IDENTITY_GRACE_MS) {
          sleepSync(2);
          continue;
        }
        // It holds its liveness mark, taken before its claim: alive, only slow or stopped. Without
        // the mark (it died, it cannot take one here, or it is of a pmpool that claims first), it is
        // deemed dead mid-acquire. (A held mark is its thread's: the same token in another of the
        // pool's locks keeps it BUSY, never broken; a worker thread's marks go as it ends.)
        if (this.markHeld?.(WRITER_MARKS + seen) === true) {
          throw new ClientError('BUSY', `${what} is being opened for writing by a process that has not yet said who it is (stopped?); a client has one writer at a time`);
        }
        dead = true;
      } else {
        const h = this.holder();
        dead = h === null ? false : !holderAlive(h, seen, this.markHeld);
        if (!dead && h !== null) {
          const who = otherPidNamespace(h.pidNs)
              ? `process ${h.pid} of another PID namespace`
              : h.pid === process.pid
                ? `thread ${h.threadId} of this process`
                : `process ${h.pid}`;
          throw new ClientError('BUSY', `${what} is open for writing by ${who}; a client has one writer at a time (readers may open it with { readOnly: true })`);
        }
        if (!dead) continue; // released meanwhile: try again
      }
      if (Atomics.compareExchange(w, b + TOKEN, seen, token) === seen) {
        Atomics.add(w, b + BREAKS, 1);
        this.publish(token, marked);
        return { broke: true };
      }
    }
  }

  private publish(token: number, marked: boolean): void {
    const w = this.words;
    const b = this.base;
    const me = ownIdentity();
    Atomics.store(w, b + CONFIRM, 0);
    w[b + PID] = me.pid;
    w[b + THREAD] = me.threadId;
    w[b + START_LO] = me.startTime >>> 0;
    w[b + START_HI] = Math.floor(me.startTime / 2 ** 32);
    w[b + BOOT] = me.bootHash;
    w[b + IMAGE] = me.imageId;
    w[b + TID] = me.tid;
    w[b + TID_START_LO] = me.tidStartTime >>> 0;
    w[b + TID_START_HI] = Math.floor(me.tidStartTime / 2 ** 32);
    w[b + PID_NS] = me.pidNs;
    w[b + EXTRA_TOKEN] = (token | (marked ? MARKED : 0)) >>> 0;
    Atomics.store(w, b + CONFIRM, token);
    this.token = token;
    heldTokens.add(token);
  }

  /** Releases the lock if this opener holds it. */
  release(): void {
    const w = this.words;
    const b = this.base;
    if (this.token === 0) return;
    if (Atomics.load(w, b + TOKEN) === this.token) {
      Atomics.store(w, b + CONFIRM, 0);
      Atomics.store(w, b + TOKEN, 0);
    }
    this.region?.releaseLivenessMark?.(WRITER_MARKS + this.token);
    heldTokens.delete(this.token);
    this.token = 0;
  }

  /** @internal crash simulation: forget the lock as a killed process would, leaving it held. */
  abandon(): void {
    this.region?.releaseLivenessMark?.(WRITER_MARKS + this.token);
    heldTokens.delete(this.token);
    this.token = 0;
  }
}
