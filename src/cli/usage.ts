/**
 * What every `pmpool` command shares and the command line needs before it
 * knows which command runs: the usage, the usage error, how a refusal is
 * described. Nothing here loads the pool (or its native addon), so that
 * `pmpool --help` and the fdt commands work where the addon cannot load.
 */
import { PmpoolError } from '../errors.js';

export type Out = (s: string) => void;

export class UsageError extends Error {}

export const POOL_USAGE = [
  'usage: pmpool create PATH --size SIZE [--page-size 4K|2M] [--order-per-bit N] [--max-allocations N] [--preallocate] [--json]',
  '       pmpool info PATH [--json]',
  '       pmpool map PATH [--width N] [--rows N]',
  '       pmpool check PATH [--repair] [--json]',
  '       pmpool alloc PATH COUNT [--align N] [--name NAME] [--owner OWNER] [--json]',
  '       pmpool release PATH PFN COUNT [--owner OWNER]',
].join('\n');

/** A decimal whole number given on the command line (no sign, exponent or hex), or UsageError. */
export function integer(text: string | boolean | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  if (typeof text !== 'string' || !/^\d+$/.test(text)) throw new UsageError(`${what} must be a whole number, got "${String(text)}"`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new UsageError(`${what} is too large`);
  return n;
}

export function describeError(e: unknown): string | null {
  if (e instanceof PmpoolError) return `${e.code}: ${e.message}`;
  return null;
}
