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
