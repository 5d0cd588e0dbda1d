/**
 * @internal Test access to the machinery of an open pool: its parts (the
 * metadata writer, control page, directory, allocators) and a hook on every
 * attach. The crash simulation and the fault tests drive the pool through
 * these. Not exported from src/index.ts, and not part of the API.
 */
import type { Pool } from './pool.js';
import type { PoolParts } from './parts.js';
import { PoolError } from './errors.js';

export { setAttachHook } from './parts.js';
export type { PoolParts } from './parts.js';
export { replayStores, type StoreLog, type StoreRecord, type MetaWriter } from './meta-writer.js';

/** @internal The parts of an open pool. */
export function poolInternals(pool: Pool): { parts: PoolParts } {
  const parts = (pool as unknown as { parts: PoolParts | null }).parts;
  if (parts === null) throw new PoolError('CLOSED', 'the pool is closed');
  return { parts };
}
