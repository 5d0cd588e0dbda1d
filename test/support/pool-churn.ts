/**
 * A client that churns a shared pool: allocates named runs, fills each with
 * a pattern derived from its name and then seals it, verifies a run before
 * releasing it. Run by worker threads and by child processes (which are
 * killed at random moments) against one pool at once.
 *
 * The seal — the last two u32 words of the run: a magic and the name's hash
 * — is written after the pattern, so a sealed run must hold its pattern
 * whole. A run cut off before its seal is "unsealed" and proves nothing;
 * a stale seal left by an earlier run in the same pages names another
 * allocation and does not match.
 */
import { Pool, PoolError, type Allocation } from '../../src/pool/index.js';
import { Prng } from './prng.js';

export const SEAL_MAGIC = 0x5ea1ed01;

export function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function words(a: Allocation): Uint32Array {
  const bytes = a.bytes();
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
}

/** Fills `a` with the pattern of `name`, then seals it. */
export function writeSealed(a: Allocation, name: string): void {
  const w = words(a);
  const h = nameHash(name);
  const n = w.length - 2;
  for (let i = 0; i < n; i++) w[i] = (h + Math.imul(i, 0x9e3779b1)) >>> 0;
  w[n + 1] = h;
  w[n] = SEAL_MAGIC;
}

export type SealState = 'unsealed' | 'intact' | 'damaged';

export function sealState(a: Allocation, name: string): SealState {
  const w = words(a);
  const h = nameHash(name);
  const n = w.length - 2;
  if (w[n] !== SEAL_MAGIC || w[n + 1] !== h) return 'unsealed';
  for (let i = 0; i < n; i++) if (w[i] !== (h + Math.imul(i, 0x9e3779b1)) >>> 0) return 'damaged';
  return 'intact';
}

export interface ChurnOptions {
  path: string;
  /** Names are `${prefix}-${i}`: unique to this client. */
  prefix: string;
  /** Operations to run (Infinity: until killed). */
  iterations: number;
  seed: number;
  /** Live allocations at most (then it releases). */
  maxLive?: number;
  /** Pages per allocation at most. */
  maxCount?: number;
  /** Called once the pool is open. */
  onReady?: () => void;
}

export interface ChurnResult {
  survivors: { name: string; pfn: number; count: number }[];
  allocs: number;
  releases: number;
}

/** Churns until `iterations` operations are done; throws on any damage it sees. Leaves its survivors allocated. */
export function churn(o: ChurnOptions): ChurnResult {
  const pool = Pool.open(o.path);
  o.onReady?.();
  const rng = new Prng(o.seed);
  const maxLive = o.maxLive ?? 16;
  const maxCount = o.maxCount ?? 8;
  const live: { a: Allocation; name: string }[] = [];
  let allocs = 0;
  let releases = 0;
  try {
    for (let i = 0; i < o.iterations; i++) {
      if (live.length >= maxLive || (live.length > 0 && rng.chance(0.45))) {
        const [{ a, name }] = live.splice(rng.int(live.length), 1);
        const state = sealState(a, name);
        if (state !== 'intact') throw new Error(`${name} at pfn ${a.pfn} (+${a.count}) is ${state} before its release: someone wrote into it`);
        pool.release(a.pfn, a.count, { owner: a.owner });
        releases++;
      } else {
        const name = `${o.prefix}-${i}`;
        let a: Allocation;
        try {
          a = pool.alloc(rng.range(1, maxCount), { name, owner: rng.chance(0.3) ? o.prefix.slice(0, 24) : undefined, align: rng.pick([1, 1, 1, 2, 4]) });
        } catch (e) {
          if (e instanceof PoolError && (e.code === 'NO_SPACE' || e.code === 'NO_RECORDS')) continue;
          throw e;
        }
        writeSealed(a, name);
        live.push({ a, name });
        allocs++;
      }
    }
    return { survivors: live.map(({ a, name }) => ({ name, pfn: a.pfn, count: a.count })), allocs, releases };
  } finally {
    pool.close();
  }
}
