/**
 * A small deterministic PRNG (mulberry32) for simulations and fuzz-style
 * tests: a failure prints its seed, and the same seed replays the same run.
 */
export class Prng {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }
  /** A u32. */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.next() / 0x100000000) * n);
  }
  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() / 0x100000000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

/**
 * The seed of a randomized test: from the environment variable `name` when
 * set (to replay a failure), else fresh. Printed either way, so every failing
 * run can be replayed.
 */
export function testSeed(name: string): number {
  const fromEnv = process.env[name];
  const seed = fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) >>> 0 : (Math.random() * 0x100000000) >>> 0;
  process.stderr.write(`# ${name}=${seed}${fromEnv ? ' (from the environment)' : ''}\n`);
  return seed;
}
