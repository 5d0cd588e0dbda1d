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
  'usage: pmpool create PATH --size SIZE [--page-size 4K|2M] [--order-per-bit N] [--max-allocations N] [--preallocate] [--no-bare-units] [--json]',
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

/** A refusal of pmpool's in one line; its message may quote a name or an owner a program stored (oneLine). */
export function describeError(e: unknown): string | null {
  if (e instanceof PmpoolError) return `${e.code}: ${oneLine(e.message)}`;
  return null;
}

const NAMED_ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * Text some program stored — an owner, an allocation's or a node's name, a log record — or a
 * message that quotes it, as one line of visible characters. Printed raw, a newline would forge
 * a line of the output (an "owner root" that is none) and a control character would act on the
 * operator's terminal (erase the line above, move the cursor). A Unicode format control (Cf)
 * would reorder or hide what the line shows: a right-to-left override or isolate (U+202A–U+202E,
 * U+2066–U+2069) or a direction mark (U+200E, U+200F, U+061C) shows "U+202E txt.exe" as
 * "exe.txt", and a zero-width or invisible one (U+200B–U+200D, U+FEFF, the soft hyphen, tags)
 * hides a difference between two names; U+2028 and U+2029 end a line where the terminal honours
 * them. A backslash, \n, \r and \t are escaped as in C, the other control characters (C0, DEL,
 * C1) and the soft hyphen as \xHH, the other format controls and the two separators as \u{H…}
 * (\u{202e}). An emoji joined by U+200D is shown with it escaped: the price of seeing every one.
 */
export function oneLine(text: string): string {
  return text.replace(/[\\\x00-\x1f\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}]/gu, (c) => {
    const code = c.codePointAt(0)!;
    return NAMED_ESCAPES[c] ?? (code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`);
  });
}
