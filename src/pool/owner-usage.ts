/**
 * stats()'s figures that only the directory (and the bare-unit map) holds: how many allocations are
 * live, and the allocations and pages each owner holds. One pass over the
 * directory under the pool lock, without an object, a copy or a decoded
 * label per record: built from liveRecords(), stats() held the lock about
 * 0.2 s at 100,000 allocations, most of it the garbage collector's, while
 * every other process waited to allocate.
 */
import { decodeLabel } from './directory.js';
import type { PoolStats } from './options.js';
import type { PoolParts } from './parts.js';

interface OwnerSeen {
  /** The owner's bytes as stored. */
  bytes: Uint8Array;
  entry: { allocations: number; pages: number };
}

export function ownerUsage(p: PoolParts): { allocations: number; byOwner: PoolStats['byOwner'] } {
  const d = p.directory;
  // By owner in a Map, made an object at the end: an owner is any string, and an object indexed
  // by "__proto__" (or "constructor") would reach Object.prototype instead of an entry of its own.
  const byOwner = new Map<string, { allocations: number; pages: number }>();
  // Owners met so far, by a hash of their bytes; each distinct owner is decoded once. Two byte
  // strings that decode alike (not UTF-8, in a record whose checksum is good) share one entry,
  // as decoding every record would have it.
  const seen = new Map<number, OwnerSeen[]>();
  let allocations = 0;
  for (let slot = 0; slot < d.capacity; slot++) {
    if (d.state(slot) === 0 || d.status(slot) !== 'live') continue;
    allocations++;
    const hash = d.ownerHash(slot);
    let bucket = seen.get(hash);
    let owner = bucket?.find((o) => d.ownerIs(slot, o.bytes));
    if (owner === undefined) {
      const bytes = d.ownerBytes(slot).slice();
      const key = decodeLabel(bytes);
      let entry = byOwner.get(key);
      if (entry === undefined) byOwner.set(key, (entry = { allocations: 0, pages: 0 }));
      owner = { bytes, entry };
      if (bucket === undefined) seen.set(hash, (bucket = []));
      bucket.push(owner);
    }
    owner.entry.allocations++;
    owner.entry.pages += d.pageCount(slot);
  }
  // Bare units (bare-units.ts) are allocations without an owner, as an untagged record is.
  const bare = p.bare.enabled ? p.bare.count() : 0;
  if (bare > 0) {
    allocations += bare;
    let entry = byOwner.get('');
    if (entry === undefined) byOwner.set('', (entry = { allocations: 0, pages: 0 }));
    entry.allocations += bare;
    entry.pages += bare * p.unitPages;
  }
  // fromEntries defines each key as an own property, "__proto__" included (no prototype setter).
  return { allocations, byOwner: Object.fromEntries(byOwner) };
}
