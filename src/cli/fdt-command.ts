/**
 * `pmpool fdt dump | check | pack` (DESIGN.md §6): a blob as DTS text, a
 * blob judged as libfdt judges it, and a blob re-encoded as dtc encodes
 * it. Exit 0 on success, 1 on a refused blob or file, 2 on bad usage.
 *
 * `out` and `err` take one line (or block of lines) per call, without the
 * trailing newline, as console.log does.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, fchmodSync, fchownSync, fstatSync, fsyncSync, openSync, readlinkSync, readSync, realpathSync, renameSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { checkFdt, Fdt, FdtError, fdtRwProbe } from '../fdt/index.js';
import type { FdtLintFinding } from '../fdt/index.js';
import { FDT_MAGIC, FDT_V17_SIZE, HDR_MAGIC, HDR_TOTALSIZE } from '../fdt/constants.js';
import { splitArgs, unknownOption, type SplitArgs } from './args.js';
import { oneLine } from './usage.js';

const USAGE = [
  'usage: pmpool fdt dump FILE.dtb',
  '       pmpool fdt check FILE.dtb [--json] [--lint]',
  '       pmpool fdt pack IN.dtb OUT.dtb [--free-space BYTES]',
  'A lone -- ends the options: every word after it is a file (pmpool fdt dump -- -odd.dtb).',
].join('\n');

/** libfdt reads no blob larger than INT_MAX bytes, so no more is ever read. */
const MAX_BLOB = 0x7fffffff;

type Out = (s: string) => void;

class UsageError extends Error {}

export function fdtCommand(args: string[], out: Out, err: Out): number {
  try {
    const [sub, ...rest] = args;
    const split = splitArgs(rest, ['--free-space']);
    switch (sub) {
      case 'dump':
        return dump(operands(split, 1, []), out, err);
      case 'check':
        return check(operands(split, 1, ['--json', '--lint']), new Set(split.options.map((o) => o.name)), out, err);
      case 'pack':
        return pack(split, err);
      default:
        throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`);
    }
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err(`pmpool fdt: ${e.message}`);
    err(USAGE);
    return 2;
  }
}

function dump([file]: string[], out: Out, err: Out): number {
  const fdt = parseFile(file, 'dump', err);
  if (fdt === undefined) return 1;
  let text: string;
  try {
    text = fdt.toDts();
  } catch (e) {
    if (!(e instanceof FdtError)) throw e;
    reportFdtError('dump', file, e, err);
    return 1;
  }
  out(text.replace(/\n$/, ''));
  return 0;
}

function check([file]: string[], opts: Set<string>, out: Out, err: Out): number {
  const json = opts.has('--json');
  // A file that cannot be read is refused on stderr as by every subcommand; with --json there is a
  // report on stdout too, as `pmpool check --json` gives one for a file that is no pool.
  const bytes = readBlob(file, 'check', err, (code, message) => {
    if (json) out(JSON.stringify({ ok: false, code, message }));
  });
  if (bytes === undefined) return 1;
  let findings: FdtLintFinding[];
  let summary: { version: number; totalSize: number; reservations: number; rw: string | null };
  try {
    const { header, reservations } = checkFdt(bytes);
    findings = Fdt.parse(bytes).lint();
    summary = { version: header.version, totalSize: header.totalSize, reservations: reservations.length, rw: fdtRwProbe(header) };
  } catch (e) {
    if (!(e instanceof FdtError)) throw e;
    if (json) out(JSON.stringify({ ok: false, code: e.code, offset: e.offset, message: e.message }));
    else out(`${file}: ${e.code}${e.offset === undefined ? '' : ` at offset ${e.offset}`}: ${e.message}`);
    return 1;
  }
  const failed = opts.has('--lint') && findings.some((f) => f.severity === 'error');
  if (json) {
    let text: string;
    try {
      text = JSON.stringify({ ok: !failed, ...summary, lint: findings });
    } catch (e) {
      // Each finding names its node's whole path: tens of thousands of nested nodes make a report
      // past the longest string V8 can make.
      if (!(e instanceof RangeError)) throw e;
      err(`pmpool fdt check: ${file}: the JSON report of its ${findings.length} findings is longer than a string can hold; run without --json`);
      return 1;
    }
    out(text);
    return failed ? 1 : 0;
  }
  out(`${file}: ok (version ${summary.version}, ${summary.totalSize} bytes, ${summary.reservations} reservations)`);
  if (summary.rw !== null) out(`note: libfdt's read-write functions refuse it in place (${summary.rw}) until fdt_open_into repacks it`);
  for (const f of findings) {
    // Names are the blob's bytes, any of them (node_name_chars says which are bad), and a message may quote one: escaped.
    out(`${f.severity} (${f.check}): ${oneLine(f.path)}${f.property === undefined ? '' : `:${oneLine(f.property)}`}: ${oneLine(f.message)}`);
  }
  return failed ? 1 : 0;
}

function pack(split: SplitArgs, err: Out): number {
  const [input, output] = operands(split, 2, ['--free-space']);
  const free = freeSpace(split);
  const fdt = parseFile(input, 'pack', err);
  if (fdt === undefined) return 1;
  try {
    // Writing to a FIFO would wait for a reader; to a device or directory is no blob file either.
    const existing = statOrUndefined(output);
    // A name ending in "/" names a directory (dtc: "Is a directory"), not a file to create.
    if (existing === undefined && output.endsWith('/')) {
      err(`pmpool fdt pack: ${output}: no such directory, and a blob is no directory`);
      return 1;
    }
    if (existing !== undefined && !existing.isFile()) {
      notRegular('pack', output, existing, err);
      return 1;
    }
    // Replaced, not rewritten: so only a file this program could have rewritten (a read-only one
    // is refused, as writing it would be); through a symbolic link, dangling or not, the file it names.
    if (existing !== undefined) accessSync(output, constants.W_OK);
    // realpathSync.native: the kernel's resolution. The JavaScript realpathSync first normalises
    // `dir/..` as text, which names another file when `dir` is a symbolic link.
    replaceFile(existing === undefined ? linkTarget(output) : realpathSync.native(output), fdt.toBytes(free === undefined ? {} : { freeSpace: free }), existing);
  } catch (e) {
    if (e instanceof FdtError) {
      err(`pmpool fdt pack: ${e.message}`);
      return 1;
    }
    return ioFailure('pack', output, e, err);
  }
  return 0;
}

/** The operands, once every option is known to the subcommand; exactly `count` of them. */
function operands(split: SplitArgs, count: number, known: string[]): string[] {
  const unknown = unknownOption(split, known);
  if (unknown !== undefined) throw new UsageError(`unknown option ${unknown}`);
  if (split.operands.length !== count) throw new UsageError(`expected ${count} file${count > 1 ? 's' : ''}, got ${split.operands.length}`);
  return split.operands;
}

function freeSpace(split: SplitArgs): number | undefined {
  const option = split.options.find((o) => o.name === '--free-space');
  if (option === undefined) return undefined;
  if (option.value === undefined || !/^\d+$/.test(option.value)) throw new UsageError('--free-space needs a whole number of bytes');
  return Number(option.value);
}

function parseFile(file: string, sub: string, err: Out): Fdt | undefined {
  const bytes = readBlob(file, sub, err);
  if (bytes === undefined) return undefined;
  try {
    return Fdt.parse(bytes);
  } catch (e) {
    if (!(e instanceof FdtError)) throw e;
    reportFdtError(sub, file, e, err);
    return undefined;
  }
}

function reportFdtError(sub: string, file: string, e: FdtError, err: Out): void {
  err(`pmpool fdt ${sub}: ${file}: ${e.code}${e.offset === undefined ? '' : ` at offset ${e.offset}`}: ${e.message}`);
}

/**
 * The file's bytes that libfdt could look at, as Fdt.parse keeps them: the header, then up to
 * `totalsize` (at most MAX_BLOB), and only the header when the magic is wrong. A small blob at
 * the start of a large file (an image, a partition) is judged without reading the rest into memory.
 */
function readBlob(file: string, sub: string, err: Out, refused?: (code: string, message: string) => void): Uint8Array | undefined {
  let fd: number | undefined;
  try {
    // O_NONBLOCK: a FIFO opens at once (without it, open waits for a writer) and is refused below.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const stat = fstatSync(fd);
    if (!stat.isFile()) {
      notRegular(sub, file, stat, err);
      refused?.('NOT_REGULAR', `${file}: ${fileType(stat)}, not a regular file`);
      return undefined;
    }
    const size = Math.min(stat.size, MAX_BLOB);
    const header = readInto(fd, new Uint8Array(Math.min(size, FDT_V17_SIZE)), 0);
    const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
    const magic = header.length >= HDR_TOTALSIZE + 4 && view.getUint32(HDR_MAGIC) === FDT_MAGIC;
    const want = magic ? Math.min(size, Math.max(view.getUint32(HDR_TOTALSIZE), FDT_V17_SIZE)) : header.length;
    if (want <= header.length) return header;
    const bytes = new Uint8Array(want);
    bytes.set(header);
    return readInto(fd, bytes, header.length);
  } catch (e) {
    ioFailure(sub, file, e, err);
    refused?.((e as NodeJS.ErrnoException).code ?? 'IO', `${file}: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Fills `bytes` from file offset `from` on; the part read (shorter at the end of the file). */
function readInto(fd: number, bytes: Uint8Array, from: number): Uint8Array {
  let got = from;
  while (got < bytes.length) {
    const n = readSync(fd, bytes, got, bytes.length - got, got);
    if (n === 0) break;
    got += n;
  }
  return bytes.subarray(0, got);
}

/** What a stat says the file is, as `ls -l`'s first letter would: "a FIFO", "a directory", ... */
function fileType(stat: Stats): string {
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a FIFO';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isBlockDevice()) return 'a block device';
  if (stat.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** Refuses a file that is not a regular file (exit 1, as an unreadable file is): nothing read, nothing written. */
function notRegular(sub: string, file: string, stat: Stats, err: Out): void {
  err(`pmpool fdt ${sub}: ${file}: ${fileType(stat)}, not a regular file`);
}

/**
 * Puts `bytes` at `path` whole or not at all: written to a new file in the same directory,
 * flushed, then renamed over `path`. A crash or a full disk midway leaves `path` as it was
 * (and, after a failure we see, no temporary either). A file replaced keeps its mode; a new
 * one gets 0666 less the umask, as open(2) would give it.
 */
function replaceFile(path: string, bytes: Uint8Array, existing: Stats | undefined): void {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o666);
  try {
    try {
      if (existing !== undefined) {
        // The file keeps its owner as a rewrite would have kept it (root replacing a user's file;
        // anyone else can only give away what is theirs, which this does not try).
        if (existing.uid !== process.getuid?.() || existing.gid !== process.getgid?.()) {
          try {
            fchownSync(fd, existing.uid, existing.gid);
          } catch {
            // The owner cannot be given away; the group can, to a group this program is in (a
            // member of a shared group replacing a group-writable file keeps the group's access).
            try {
              fchownSync(fd, -1, existing.gid);
            } catch {
              /* not permitted either: the replacement is this program's, as a file it created would be */
            }
          }
        }
        fchmodSync(fd, existing.mode & 0o7777);
      }
      for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
    syncDirectory(dirname(path));
  } catch (e) {
    try {
      unlinkSync(temp);
    } catch {
      /* already gone */
    }
    throw e;
  }
}

/** The rename reaches the disk: fsync of the directory that holds it (best effort: some file systems refuse). */
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    fsyncSync(fd);
  } catch {
    /* a directory that cannot be synced (EINVAL on some file systems): the rename stands */
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Where a new output goes: the path, or through a dangling symbolic link, the file it names. A
 * relative target is taken from the link's directory as the kernel takes it (no `..` removed as
 * text: the directory may itself be reached through a link), and the directory of the result is
 * resolved by the kernel, so the temporary is made beside the file the rename will create.
 */
function linkTarget(path: string): string {
  for (let hops = 0; hops < 40; hops++) {
    let target: string;
    try {
      target = readlinkSync(path);
    } catch {
      // Not a link (or not there): the path itself, in its directory as the kernel resolves it.
      return join(realpathSync.native(dirname(path)), basename(path));
    }
    path = isAbsolute(target) ? target : `${dirname(path)}/${target}`;
  }
  throw Object.assign(new Error(`ELOOP: too many symbolic links, ${path}`), { code: 'ELOOP' });
}

/** The file's stat (following a symlink), or undefined if there is none yet. */
function statOrUndefined(file: string): Stats | undefined {
  try {
    return statSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

function ioFailure(sub: string, file: string, e: unknown, err: Out): number {
  err(`pmpool fdt ${sub}: ${file}: ${e instanceof Error ? e.message : String(e)}`);
  return 1;
}
