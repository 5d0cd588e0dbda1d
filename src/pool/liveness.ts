/**
 * Who is this process, and is that one still alive? A pid alone is not an
 * identity (pids are reused), so a lock holder is named by pid + the kernel's
 * process start time (/proc/PID/stat field 22) + a hash of the boot id (a
 * file-backed pool outlives reboots, and pids restart with them).
 *
 * And by its thread: the kernel task id (/proc/thread-self) + the task's
 * start time. A worker thread that ends while holding the lock
 * (worker.terminate() mid-operation) leaves its process alive but its task
 * gone, and so does every thread but the caller when a process execve()s in
 * place: the holder is dead either way, though its pid lives on.
 *
 * And by its program image (a hash of its auxiliary vector, which ASLR makes
 * new at every execve): an exec from a worker thread hands that thread the
 * main thread's pid, task id and start time (fs/exec.c de_thread), so a lock
 * the main thread held reads as held by the next program's main thread —
 * alive, to every waiter — unless the image is compared too.
 *
 * And by its PID namespace: a pool on a /dev/shm that two containers share is
 * locked by processes whose pids mean nothing in each other's /proc. A holder
 * of another namespace is judged by its open's liveness mark instead (an OFD
 * lock on a byte of the pool file, which the kernel drops when the holder's
 * descriptor goes: isAliveAcrossNamespaces).
 */
import { bootHash, ownIdentity, processStartTime, recordedThreadAlive, taskStartTime, type ThreadIdentity } from '../sys/proc.js';

export { bootHash, processStartTime, taskStartTime };

/** A holder's identity as the locks record it (sys/proc.ts ThreadIdentity). */
export type ProcessIdentity = ThreadIdentity;

/** A recorded holder: an identity, the run id of the open it recorded (0 when unknown), and whether that open holds its liveness mark. */
export interface HolderIdentity extends ProcessIdentity {
  runId: number;
  marked: boolean;
}

/** This thread of this program image (sys/proc.ts ownIdentity). */
export const selfIdentity = ownIdentity;

/**
 * The liveness of a holder judged by its open's liveness mark (sys/proc.ts judgedByMark): `markHeld` answers
 * whether anyone holds the mark of run `runId` (null when it cannot tell: a region with no file, a
 * file system without OFD locks). What cannot be told is taken for alive — a lock broken under a
 * live holder corrupts the pool, one left held costs a LOCK_TIMEOUT — and so is a holder that
 * recorded no mark. The mark lives as long as the holder's descriptor and its thread: the addon
 * releases a worker thread's marks as the thread ends, whose descriptors stay open.
 */
export function isAliveAcrossNamespaces(id: HolderIdentity, markHeld: ((runId: number) => boolean | null) | undefined): boolean {
  if (id.bootHash !== bootHash()) return false;
  // A holder that took no mark (its region has none, or the lock could not be taken) cannot be judged.
  if (!id.marked || markHeld === undefined) return true;
  return markHeld(id.runId) ?? true;
}

/**
 * isAlive, asked by a thread that waits for the lock `id` holds. A holder
 * recorded by this very process is judged without /proc where it can be:
 *
 * - another image of it (an exec in place) is gone;
 * - a holder recorded as this very thread is taken for a previous image's
 *   whatever the image ids say (they are equal across an exec where ASLR is
 *   off, and unknown in an older pmpool's record): a thread never waits for
 *   a lock it holds, for the pool lock is held within one synchronous
 *   operation. Without this, a worker's exec while the main thread held the
 *   lock left the pool locked for as long as the pid lived.
 */
export function isAliveForWaiter(id: ProcessIdentity): boolean {
  const me = selfIdentity();
  if (id.pid === me.pid && id.startTime === me.startTime && id.bootHash === me.bootHash) {
    if (id.imageId !== 0 && me.imageId !== 0 && id.imageId !== me.imageId) return false;
    if (me.tid !== 0 && id.tid === me.tid && id.tidStartTime === me.tidStartTime) return false;
  }
  return isAlive(id);
}

/**
 * True when the thread named by `id` may still be running: its process, in
 * the image recorded (when it was and /proc lets it be read), and — when the
 * holder recorded its task — that task, each with the start time recorded (a
 * reused pid or tid has another).
 */
export function isAlive(id: ProcessIdentity): boolean {
  return id.bootHash === bootHash() && recordedThreadAlive(id);
}
