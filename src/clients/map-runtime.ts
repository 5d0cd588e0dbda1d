/**
 * What the PersistentMap's operations share at run time, outside any one
 * map: the crash-simulation fault hook, the reader's torn-read signal, the
 * scratch keys are encoded in and the slab small values are copied out to.
 */
import { Scratch } from './codec.js';

/** Keys are encoded here (the module is single-threaded per realm and no operation re-enters another). */
export const scratch = new Scratch();

/* ---------------- crash simulation ---------------- */

let faultHook: ((point: string) => void) | null = null;
/** @internal the crash simulation stops the world between two stores by throwing from here. */
export function setMapFaultHook(hook: ((point: string) => void) | null): void {
  faultHook = hook;
}
export function fault(point: string): void {
  if (faultHook !== null) faultHook(point);
}

/** Thrown inside a reader's lookup when what it reads is inconsistent (a writer is freeing memory): retry. */
export class Torn extends Error {}

/* ---------------- copying values out ---------------- */

const SLAB_BYTES = 64 * 1024;
let slab: Uint8Array = new Uint8Array(0);
let slabAt = 0;
/**
 * A slab that a transfer (postMessage(value, [value.buffer]), structuredClone) copies instead of
 * detaching, as Node marks the pool of Buffer.allocUnsafe: detached, it would empty every value
 * handed out from it, and make every later copy throw. node:worker_threads is loaded at the first
 * slab, not at start-up (it costs a millisecond or more).
 */
function newSlab(): Uint8Array {
  const fresh = new Uint8Array(SLAB_BYTES);
  process.getBuiltinModule('node:worker_threads').markAsUntransferable(fresh.buffer);
  return fresh;
}
/**
 * Small copies made before the first slab go to Node's own pool of Buffer.allocUnsafe, which Node
 * has already marked untransferable: a program that reads a few byte values after a restore does
 * not load node:worker_threads for the first one (2-3 ms, measured). Past this many, the slab.
 */
const COPIES_BEFORE_SLAB = 256;
let copiesBeforeSlab = COPIES_BEFORE_SLAB;

/** A copy of `length` bytes of `from` at `start`; small copies share a slab, as Buffer.allocUnsafe does. */
export function copyOut(from: Uint8Array, start: number, length: number): Uint8Array {
  if (length === 0) return new Uint8Array(0);
  if (length > 4096) return from.slice(start, start + length);
  if (slabAt + length > slab.length) {
    // Node pools only what is under half its pool size (which a program may set to 0).
    if (copiesBeforeSlab > 0 && length < Buffer.poolSize >>> 1) {
      copiesBeforeSlab--;
      const pooled = Buffer.allocUnsafe(length);
      const out = new Uint8Array(pooled.buffer, pooled.byteOffset, length);
      out.set(from.subarray(start, start + length));
      return out;
    }
    slab = newSlab();
    slabAt = 0;
  }
  const out = slab.subarray(slabAt, slabAt + length);
  out.set(from.subarray(start, start + length));
  slabAt = (slabAt + length + 7) & ~7;
  return out;
}
