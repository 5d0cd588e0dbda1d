/**
 * The strings block as dtc builds it (flattree.c stringtable_insert):
 * names are added in the order the writer first meets them, and a name
 * that is a suffix of one already stored is not stored again — it points
 * into the earlier string ("phandle" lands inside "linux,phandle"). dtc
 * finds the *first* byte offset at which the table reads as the name, so
 * the earliest stored string with that suffix wins; and a suffix is only
 * shared backwards (a longer name stored later does not absorb it).
 *
 * dtc scans the whole table per name; we index every suffix of every
 * stored string once, which gives the same offsets in O(total length).
 */
import { writeLatin1 } from './bytes.js';

export class StringTable {
  /** Each suffix of a stored string → the first offset where it can be read. */
  private readonly suffixes = new Map<string, number>();
  private readonly stored: string[] = [];
  private size = 0;

  /** The offset of `name` in the table, storing it if no stored string ends with it. */
  offsetOf(name: string): number {
    const known = this.suffixes.get(name);
    if (known !== undefined) return known;
    const at = this.size;
    this.stored.push(name);
    this.size += name.length + 1;
    for (let k = 0; k <= name.length; k++) {
      const suffix = name.slice(k); // k = length gives "", read at this string's NUL
      if (!this.suffixes.has(suffix)) this.suffixes.set(suffix, at + k);
    }
    return at;
  }

  get byteLength(): number {
    return this.size;
  }

  /** Writes the table at `offset` of `out` (which is zeroed: the NULs are already there). */
  writeTo(out: Uint8Array, offset: number): void {
    let at = offset;
    for (const s of this.stored) at = writeLatin1(out, at, s) + 1;
  }
}
