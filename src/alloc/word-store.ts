/**
 * Where the allocator's state lives. The allocator keeps nothing authoritative
 * in JavaScript memory: every bit it knows is a u32 word reached through this
 * interface, so the pool can place the words inside the persistent region and
 * route every store through its logging writer (a crash can then fall between
 * any two stores, and recovery must cope).
 */

/** The allocator's state: u32 words at indices [0, wordCount). Every write goes through store(). */
export interface WordStore {
  /** The word at `index`, as an unsigned 32-bit value (0 .. 2^32-1). */
  load(index: number): number;
  /** Writes `value` (an unsigned 32-bit value) at `index`. */
  store(index: number, value: number): void;
}

/** A WordStore over a Uint32Array (tests, benches); the pool supplies its own over region memory. */
export class ArrayWordStore implements WordStore {
  readonly words: Uint32Array;

  constructor(words: Uint32Array) {
    this.words = words;
  }

  load(index: number): number {
    return this.words[index];
  }

  store(index: number, value: number): void {
    this.words[index] = value;
  }
}
