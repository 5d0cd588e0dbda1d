/**
 * Checks of what a caller passes to the Pool API: every bad value becomes a
 * PoolError BAD_ARGUMENT before anything is locked or written.
 */
import { PoolError } from './errors.js';

export function checkCount(count: unknown, pageCount: number): asserts count is number {
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count <= 0) {
    throw new PoolError('BAD_ARGUMENT', `count must be a positive whole number of pages, got ${String(count)}`);
  }
  if (count > pageCount) throw new PoolError('BAD_ARGUMENT', `count ${count} is larger than the pool's ${pageCount} pages`);
}

export function checkLabel(value: unknown, what: string, maxBytes: number): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new PoolError('BAD_ARGUMENT', `${what} must be a string`);
  if (value.includes('\0')) throw new PoolError('BAD_ARGUMENT', `${what} must not contain NUL`);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > maxBytes) throw new PoolError('BAD_ARGUMENT', `${what} "${value.slice(0, 20)}..." is ${bytes} bytes; at most ${maxBytes}`);
  return value;
}
