/**
 * Assertions shared by the suites: a typed pmpool error with a given code,
 * and a small in-memory pool.
 */
import assert from 'node:assert/strict';
import { Pool, MemoryRegion, type PmpoolError } from '../../src/index.js';

/** Runs `fn` and returns the error it throws, which must be an `ErrorClass` with `.code === code`. */
export function expectError<E extends PmpoolError>(fn: () => unknown, ErrorClass: abstract new (...args: never[]) => E, code: string): E {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ErrorClass, `expected ${ErrorClass.name} ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${ErrorClass.name} ${code}, nothing thrown`);
}

/** A pool over a fresh MemoryRegion of `size` bytes. */
export function memoryPool(size: number, options: { orderPerBit?: number; maxAllocations?: number } = {}): Pool {
  return Pool.create(new MemoryRegion(size), { size, ...options });
}

/** Options that are not an object: what every entry point must refuse with its typed error. */
export const NOT_OBJECTS = [null, 42, 'x', []] as const;

/** How the entry points' messages show one of NOT_OBJECTS (the "got ..." of src/util/options.ts). */
export function shown(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/** A pool's stats as text, for "nothing changed" comparisons. */
export function statsText(pool: Pool): string {
  return JSON.stringify(pool.stats(), (_key, value: unknown) => (typeof value === 'bigint' ? String(value) : value));
}
