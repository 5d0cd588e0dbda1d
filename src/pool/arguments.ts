/**
 * Checks of what a caller passes to the Pool API: every bad value becomes a
 * PoolError BAD_ARGUMENT before anything is locked or written.
 */
import { checkBooleanOption, checkFunctionOption, checkMillisOption, checkModeOption, checkOptions, describeValue } from '../util/options.js';
import { PoolError } from './errors.js';
import { isWellFormed } from '../util/utf16.js';
import type { PoolOpenOptions } from './options.js';
import { isPowerOfTwo } from '../alloc/index.js';

export function checkCount(count: unknown, pageCount: number): asserts count is number {
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count <= 0) {
    throw new PoolError('BAD_ARGUMENT', `count must be a positive whole number of pages, got ${String(count)}`);
  }
  if (count > pageCount) throw new PoolError('BAD_ARGUMENT', `count ${count} is larger than the pool's ${pageCount} pages`);
}

/**
 * An alloc's `align`, in pages: any power of two a safe integer can hold (1 to 2^52). One larger
 * than the pool is no bad argument — no run of the pool starts on such a boundary, so the
 * alloc finds no space, and says so.
 */
export function checkAlign(value: unknown): number {
  if (value === undefined) return 1;
  // The allocator's test: an integer power of two from 1 to 2^52.
  if (typeof value !== 'number' || !isPowerOfTwo(value)) {
    throw new PoolError('BAD_ARGUMENT', `align must be a power of two (in pages), got ${describeValue(value)}`);
  }
  return value;
}

export function checkLabel(value: unknown, what: string, maxBytes: number): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new PoolError('BAD_ARGUMENT', `${what} must be a string`);
  if (value.includes('\0')) throw new PoolError('BAD_ARGUMENT', `${what} must not contain NUL`);
  const bytes = Buffer.byteLength(value, 'utf8');
  // Stored as UTF-8, a lone surrogate becomes U+FFFD: the label would read back as another string.
  // Only a string with a unit outside ASCII can hold one (an all-ASCII string has one byte per
  // unit): the usual label, on every alloc and release, is not scanned again.
  if (bytes !== value.length && !isWellFormed(value)) {
    throw new PoolError('BAD_ARGUMENT', `${what} holds a lone surrogate; it would not read back as the same string`);
  }
  if (bytes > maxBytes) throw new PoolError('BAD_ARGUMENT', `${what} "${value.slice(0, 20)}..." is ${bytes} bytes; at most ${maxBytes}`);
  return value;
}

const badArgument = (message: string): PoolError => new PoolError('BAD_ARGUMENT', message);

/** An options object of the Pool API (`undefined` reads as `{}` unless `required`). */
export function poolOptions<T extends object>(value: T | undefined, what: string, required = false): T {
  return checkOptions(value, what, badArgument, required);
}

/** The fields of open options (also the locking part of create's): typed, or BAD_ARGUMENT. */
export function checkOpenOptions(options: PoolOpenOptions): void {
  checkMillisOption(options.lockTimeoutMs, 'lockTimeoutMs', badArgument);
  checkBooleanOption(options.allowDamagedSuperblock, 'allowDamagedSuperblock', badArgument);
  checkBooleanOption(options.preallocate, 'preallocate', badArgument);
  checkFunctionOption(options.isAlive, 'isAlive', badArgument);
  checkMillisOption(options.identityGraceMs, 'identityGraceMs', badArgument);
  checkMillisOption(options.livenessPeriodMs, 'livenessPeriodMs', badArgument);
}

/** An optional boolean option of the Pool API. */
export function checkPoolBoolean(value: unknown, what: string): boolean | undefined {
  return checkBooleanOption(value, what, badArgument);
}

/** A file mode: an integer from 0 to 0o7777. */
export function checkMode(value: unknown): number | undefined {
  return checkModeOption(value, badArgument);
}

/** The first argument of Pool.create / Pool.open: a path or a Region. */
export function checkTarget(target: unknown, what: string): void {
  if (typeof target === 'string') {
    if (target.length === 0) throw badArgument(`${what} needs a path or a Region, got ""`);
    return;
  }
  if (target === null || typeof target !== 'object' || Array.isArray(target) || typeof (target as { map?: unknown }).map !== 'function') {
    throw badArgument(`${what} needs a path or a Region, got ${describeValue(target)}`);
  }
}
