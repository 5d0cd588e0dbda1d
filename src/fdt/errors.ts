/**
 * The error names of libfdt (libfdt.h, FDT_ERR_*), and FdtError, the one
 * error this layer throws on purpose. This file plays the part of
 * libfdt's fdt_strerror.c: a closed set of names, each with its number
 * and a one-line meaning.
 */
import { PmpoolError } from '../errors.js';
import { describeValue } from '../util/options.js';

/** libfdt's error names with their FDT_ERR_* numbers (libfdt.h, 1.8.x). */
export const FDT_ERR_NUMBERS = {
  NOTFOUND: 1,
  EXISTS: 2,
  NOSPACE: 3,
  BADOFFSET: 4,
  BADPATH: 5,
  BADPHANDLE: 6,
  BADSTATE: 7,
  TRUNCATED: 8,
  BADMAGIC: 9,
  BADVERSION: 10,
  BADSTRUCTURE: 11,
  BADLAYOUT: 12,
  INTERNAL: 13,
  BADNCELLS: 14,
  BADVALUE: 15,
  BADOVERLAY: 16,
  NOPHANDLES: 17,
  BADFLAGS: 18,
  ALIGNMENT: 19,
} as const;

export type FdtErrorCode = keyof typeof FDT_ERR_NUMBERS;

/** fdt_strerror's text for each name. */
const MEANINGS: Record<FdtErrorCode, string> = {
  NOTFOUND: 'the requested node or property does not exist',
  EXISTS: 'the node or property already exists',
  NOSPACE: 'the blob would be too large',
  BADOFFSET: 'an offset points outside the block it belongs to, or at the wrong kind of item',
  BADPATH: 'badly formatted path',
  BADPHANDLE: 'invalid phandle value',
  BADSTATE: 'incomplete device tree',
  TRUNCATED: 'the blob, or an item in it, ends before it should',
  BADMAGIC: 'not a device tree blob (bad magic number)',
  BADVERSION: 'device tree version not supported',
  BADSTRUCTURE: 'the structure block is broken',
  BADLAYOUT: 'the blocks are not in the order read-write access needs',
  INTERNAL: 'internal error',
  BADNCELLS: 'bad #address-cells or #size-cells',
  BADVALUE: 'unexpected property value',
  BADOVERLAY: 'bad overlay',
  NOPHANDLES: 'no phandle values left',
  BADFLAGS: 'invalid flags',
  ALIGNMENT: 'a block is not aligned as the format requires',
};

/** What `code` means, as fdt_strerror would say it: "<unknown error>" for a code it does not know, as libfdt does. */
export function fdtStrerror(code: FdtErrorCode): string {
  // An own property only: "toString" and the like are no error codes.
  return typeof code === 'string' && Object.hasOwn(MEANINGS, code) ? MEANINGS[code] : '<unknown error>';
}

export class FdtError extends PmpoolError {
  declare readonly code: FdtErrorCode;
  /** The byte offset in the blob where the problem was found, when there is one. */
  readonly offset: number | undefined;
  constructor(code: FdtErrorCode, message: string, offset?: number) {
    super(code, offset === undefined ? message : `${message} (at offset ${offset})`);
    this.offset = offset;
  }
  /** libfdt's number for this error (positive; libfdt returns it negated). */
  get errnum(): number {
    return FDT_ERR_NUMBERS[this.code];
  }
}

/** Throws FdtError: the one way the layer fails on purpose. */
export function fail(code: FdtErrorCode, message: string, offset?: number): never {
  throw new FdtError(code, message, offset);
}

/**
 * Refuses an argument that is not a string (a path, a node or property
 * name) with `code`, before a string method on it would throw a bare
 * TypeError.
 */
export function requireString(value: unknown, what: string, code: FdtErrorCode): asserts value is string {
  if (typeof value !== 'string') fail(code, `${what} must be a string, got ${describeValue(value)}`);
}

/** Refuses anything but bytes (a Uint8Array, so also a Buffer) as a blob to read. */
export function requireBytes(value: unknown, what: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) fail('BADVALUE', `${what} takes a Uint8Array (or Buffer), got ${describeValue(value)}`);
}
