/**
 * A synchronous sleep, for the waits of a synchronous API (a lock held by
 * another process, a writer restructuring a map): the thread blocks for
 * `ms` milliseconds in Atomics.wait on a cell of this realm's that no one
 * notifies, and the event loop does not turn meanwhile — as the caller,
 * which returns a result, not a promise, needs.
 */
const cell = new Int32Array(new SharedArrayBuffer(4));

export function sleepSync(ms: number): void {
  Atomics.wait(cell, 0, 0, ms);
}
