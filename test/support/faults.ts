/**
 * Faults injected into a pool's own parts, for the tests of what an
 * operation leaves when a store under it fails.
 */
import type { Pool } from '../../src/pool/index.js';
import { poolInternals } from '../../src/pool/internals.js';

/**
 * Runs `fn` with the pool's metadata writer throwing `EIO (injected)` at its `failAt`-th barrier
 * (a msync that failed: the operation stops there, its stores so far made), and puts the writer
 * back after, whatever `fn` does.
 */
export function withFailingBarrier(pool: Pool, failAt: number, fn: () => void): void {
  const writer = poolInternals(pool).parts.writer as unknown as { barrier: () => void };
  const barrier = writer.barrier;
  let n = 0;
  writer.barrier = function (this: unknown) {
    if (++n === failAt) throw new Error('EIO (injected)');
    barrier.call(this);
  };
  try {
    fn();
  } finally {
    writer.barrier = barrier;
  }
}
