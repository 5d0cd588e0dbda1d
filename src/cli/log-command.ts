/**
 * `pmpool log dump PATH NAME [--json]`: the records a LogRing holds, oldest
 * first — what a program left behind before it crashed, read by the next
 * one's operator. Opens the ring read-only, beside a running writer, which
 * goes on appending; the pool is opened as any open is (it has no read-only
 * open: its lookup of the ring takes the pool lock, which records the dump
 * as its last holder), so the dump needs write access to the pool's file.
 * Exit 0 on success, 1 when the pool or the ring cannot
 * be read (not found, not a ring, corrupt), 2 on bad usage.
 *
 * Text output: a summary line starting with "#", then one line per record,
 * "<seq> <text>" for a text record (a backslash, \n, \r and \t escaped as
 * in C, the other control characters as \xHH, Unicode's format controls and
 * line separators as \u{H…} (usage.ts, oneLine), and the "0" of a leading
 * "0x" as \x30, so that it cannot read as bytes) and "<seq> 0x<hex>" for bytes.
 * JSON: { name, capacity, used, skipped, records: [{ seq, text } | { seq, base64 }] }.
 */
import { LogRing, PmpoolError, Pool } from '../index.js';
import { checkClientName } from '../clients/client-header.js';
import { splitArgs, unknownOption } from './args.js';
import { oneLine } from './usage.js';

const USAGE = ['usage: pmpool log dump PATH NAME [--json]', 'A lone -- ends the options: a NAME that starts with "-" follows it (pmpool log dump PATH -- -name).'].join('\n');

type Out = (s: string) => void;

export function logCommand(args: string[], out: Out, err: Out): number {
  const [sub, ...rest] = args;
  // Anything starting with "-" (but "-" alone) before a "--" is an option: -j is an unknown one, not a PATH or NAME.
  const split = splitArgs(rest);
  const positional = split.operands;
  const unknown = unknownOption(split, ['--json']);
  if (sub !== 'dump' || positional.length !== 2 || unknown !== undefined) {
    const why = sub === undefined ? 'missing subcommand' : sub !== 'dump' ? `unknown subcommand "${sub}"` : unknown !== undefined ? `unknown option ${unknown}` : 'dump needs PATH and NAME';
    err(`pmpool log: ${why}`);
    err(USAGE);
    return 2;
  }
  const [path, name] = positional as [string, string];
  const json = split.options.some((o) => o.name === '--json');
  // A NAME that is no client name is bad usage, as a missing one is: told before the pool is opened
  // (a missing or unreadable pool would make it exit 1, and the open records the dump in its lock).
  try {
    checkClientName(name);
  } catch (e) {
    err(`pmpool log: ${describeError(e)}`);
    err(USAGE);
    return 2;
  }
  let pool: Pool;
  try {
    pool = Pool.open(path);
  } catch (e) {
    err(`pmpool log: ${oneLine(path)}: ${describeError(e)}`);
    return 1;
  }
  try {
    const ring = LogRing.open(pool, name, { readOnly: true });
    const stats = ring.stats();
    const records = ring.records();
    ring.close();
    if (json) {
      out(
        JSON.stringify({
          name,
          capacity: stats.capacity,
          used: stats.used,
          skipped: stats.skipped,
          records: records.map((r) => (r.text !== undefined ? { seq: r.seq, text: r.text } : { seq: r.seq, base64: Buffer.from(r.bytes).toString('base64') })),
        }),
      );
    } else {
      const span = records.length === 0 ? 'no records' : `${records.length} records, seq ${records[0]!.seq}..${records[records.length - 1]!.seq}`;
      out(`# log ring "${oneLine(name)}": ${span}; ${stats.used} of ${stats.capacity} bytes${stats.skipped > 0 ? `; ${stats.skipped} damaged record(s) skipped` : ''}`);
      for (const r of records) {
        out(r.text !== undefined ? `${r.seq} ${recordLine(r.text)}` : `${r.seq} 0x${Buffer.from(r.bytes).toString('hex')}`);
      }
    }
    return 0;
  } catch (e) {
    err(`pmpool log: ${describeError(e)}`);
    return 1;
  } finally {
    pool.close();
  }
}

/**
 * A text record as one line that says what it holds (oneLine), and a text "0x..." written so that
 * it cannot read as a bytes record.
 */
function recordLine(text: string): string {
  const escaped = oneLine(text);
  return escaped.startsWith('0x') ? `\\x30${escaped.slice(1)}` : escaped;
}

function describeError(e: unknown): string {
  if (e instanceof PmpoolError) return `${e.code}: ${oneLine(e.message)}`; // as the other commands print it
  if (e instanceof Error && typeof (e as { code?: unknown }).code === 'string') return oneLine(e.message);
  throw e;
}
