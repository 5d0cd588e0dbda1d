/**
 * `pmpool create | info | map | check | alloc | release` (DESIGN.md §6).
 * Exit 0 on success, 1 on a finding or a refused operation, 2 on bad usage.
 * Everything here goes through the public API.
 */
import { writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ABI_MAJOR, ABI_MINOR, Pool, PmpoolError, parseSize, type PoolStats } from '../index.js';
import { integer, oneLine, UsageError, type Out } from './usage.js';
import { sleepSync } from '../util/sleep.js';

function parse(args: string[], options: NonNullable<Parameters<typeof parseArgs>[0]>['options'], positionals: number) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(`expected ${positionals} argument${positionals === 1 ? '' : 's'}, got ${parsed.positionals.length}`);
  }
  return parsed as { values: Record<string, string | boolean | undefined>; positionals: string[] };
}

function sizeOption(text: string | boolean | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  if (typeof text !== 'string') throw new UsageError(`${what} needs a value`);
  try {
    return parseSize(text);
  } catch (e) {
    throw new UsageError(`${what}: ${(e as Error).message}`);
  }
}

function json(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2);
}

function withPool<T>(path: string, fn: (pool: Pool) => T, options: { allowDamagedSuperblock?: boolean } = {}): T {
  const pool = Pool.open(path, options);
  try {
    return fn(pool);
  } finally {
    pool.close();
  }
}

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = bytes;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}

export function createCommand(args: string[], out: Out): number {
  const { values, positionals } = parse(
    args,
    {
      size: { type: 'string' },
      'page-size': { type: 'string' },
      'order-per-bit': { type: 'string' },
      'max-allocations': { type: 'string' },
      preallocate: { type: 'boolean' },
      'no-bare-units': { type: 'boolean' },
      json: { type: 'boolean' },
    },
    1,
  );
  const size = sizeOption(values.size, '--size');
  if (size === undefined) throw new UsageError('create needs --size SIZE (e.g. --size 1G)');
  const pool = Pool.create(positionals[0]!, {
    size,
    pageSize: sizeOption(values['page-size'], '--page-size'),
    orderPerBit: integer(values['order-per-bit'], '--order-per-bit'),
    maxAllocations: integer(values['max-allocations'], '--max-allocations'),
    preallocate: values.preallocate === true,
    // Only the negative form: a map is made by default wherever the pool can have one, and
    // `bareUnits: true` would not force one where it cannot (docs/abi.md, "Bare units").
    bareUnits: values['no-bare-units'] === true ? false : undefined,
  });
  try {
    const s = pool.stats();
    if (values.json) out(json({ path: pool.path, uuid: pool.uuid, ...s }));
    else out(`created ${pool.path}: ${human(s.pages * s.pageSize)} in ${s.pages} pages of ${human(s.pageSize)}, ${s.free} free (uuid ${pool.uuid})`);
  } finally {
    pool.close();
  }
  return 0;
}

export function infoCommand(args: string[], out: Out): number {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1);
  return withPool(positionals[0]!, (pool) => {
    const s = pool.stats();
    const g = pool.geometry;
    if (values.json) {
      out(json({ path: pool.path, uuid: pool.uuid, kind: pool.region.kind, abi: pool.abiVersion, caches: pool.usesCaches, bareUnits: pool.usesBareUnits, metadataBytes: g.metadataBytes, ...s }));
      return 0;
    }
    const lines = [
      `pool        ${pool.path} (${pool.region.kind})`,
      `uuid        ${pool.uuid}`,
      `abi         ${pool.abiVersion}${pool.abiVersion === `${ABI_MAJOR}.${ABI_MINOR}` ? '' : ` (this pmpool: ${ABI_MAJOR}.${ABI_MINOR})`}, generation ${s.generation}, per-open caches ${pool.usesCaches ? 'on' : 'off'}, bare units ${pool.usesBareUnits ? 'on' : 'off'}`,
      `geometry    ${s.pages} pages of ${human(s.pageSize)} = ${human(s.pages * s.pageSize)}, order-per-bit ${s.orderPerBit}`,
      `metadata    ${s.metadata} pages${s.tail ? `, tail ${s.tail} pages unusable` : ''}`,
      `free        ${s.free} pages (${human(s.free * s.pageSize)}), largest run ${s.largestFree} pages, fragmentation ${(s.fragmentation * 100).toFixed(1)}%${s.cached > 0 ? `; ${s.cached} of them held in opens' caches` : ''}`,
      `used        ${s.used} pages in ${s.allocations} allocations (directory holds ${s.maxAllocations})`,
      `lock        ${s.lockBreaks} dead holder(s) recovered from`,
    ];
    // An owner is any program's label: escaped, it can neither forge a line nor reach the terminal.
    // A stored owner in quotes (its own quotes escaped), allocations without one unquoted: an owner
    // named "(none)", or "none", is not taken for them.
    for (const [owner, o] of Object.entries(s.byOwner)) lines.push(`  ${owner === '' ? 'no owner' : `owner "${oneLine(owner).replace(/"/g, '\\"')}"`}: ${o.allocations} allocations, ${o.pages} pages`);
    out(lines.join('\n'));
    return 0;
  });
}

/**
 * One character per cell of pages: '.' free, '#' used, 'M' metadata, 'x' the unusable tail, '+'
 * partly used. The allocator hands out whole units of 2^orderPerBit pages: the metadata holds
 * whole units (its last one partly empty, and no allocation's), and the pages past the last whole
 * unit are no unit's at all. Neither is free, and neither is shown so.
 */
export function mapCommand(args: string[], out: Out): number {
  const { values, positionals } = parse(args, { width: { type: 'string' }, rows: { type: 'string' } }, 1);
  const width = integer(values.width, '--width') ?? 64;
  const rows = integer(values.rows, '--rows') ?? 16;
  if (width < 8 || width > 512 || rows < 1 || rows > 256) throw new UsageError('--width must be 8..512 and --rows 1..256');
  return withPool(positionals[0]!, (pool) => {
    const s: PoolStats = pool.stats();
    const unitPages = 2 ** s.orderPerBit;
    const metadata = pool.geometry.reservedUnits * unitPages;
    const tailFrom = s.pages - s.tail;
    const cells = width * rows;
    const perCell = Math.max(1, Math.ceil(s.pages / cells));
    const cellCount = Math.ceil(s.pages / perCell);
    const used = new Float64Array(cellCount);
    const mark = (from: number, count: number) => {
      for (let p = from; p < from + count; ) {
        const cell = Math.floor(p / perCell);
        const end = Math.min(from + count, (cell + 1) * perCell);
        used[cell]! += end - p;
        p = end;
      }
    };
    mark(0, metadata);
    mark(tailFrom, s.tail);
    for (const a of pool.allocations()) mark(a.pfn, a.count);
    let picture = '';
    for (let c = 0; c < cellCount; c++) {
      const from = c * perCell;
      const to = Math.min(from + perCell, s.pages);
      const share = used[c]! / (to - from);
      picture += to <= metadata ? 'M' : from >= tailFrom ? 'x' : share === 0 ? '.' : share >= 1 ? '#' : '+';
      if ((c + 1) % width === 0) picture += '\n';
    }
    const tail = s.tail > 0 ? ', x unusable tail' : '';
    out(`${pool.path}: ${s.pages} pages, ${perCell} page${perCell === 1 ? '' : 's'} per cell; M metadata, # used, + partly used, . free${tail}`);
    out(picture.trimEnd());
    out(`free ${s.free} pages, largest run ${s.largestFree}, fragmentation ${(s.fragmentation * 100).toFixed(1)}%`);
    return 0;
  });
}

export function checkCommand(args: string[], out: Out): number {
  const { values, positionals } = parse(args, { repair: { type: 'boolean' }, json: { type: 'boolean' } }, 1);
  try {
    return withPool(
      positionals[0]!,
      (pool) => {
        const { problemCount, ...report } = pool.checkCounted({ repair: values.repair === true });
        if (values.json) out(json(report));
        else {
          // A line may quote a record's name, as damaged or as forged as the rest of the record.
          for (const line of report.repaired) out(`repaired: ${oneLine(line)}`);
          for (const line of report.problems) out(`problem: ${oneLine(line)}`);
          out(report.ok ? `${pool.path}: clean` : `${pool.path}: ${problemCount} problem(s)${values.repair ? '' : '; pmpool check --repair rebuilds what is derived'}`);
        }
        return report.ok ? 0 : 1;
      },
      { allowDamagedSuperblock: true },
    );
  } catch (e) {
    // A file that cannot be opened as a pool is a finding of check too. With --json the report says
    // so on stdout, as `fdt check --json` does for a bad blob: a reader of the JSON always gets one.
    if (!values.json || !(e instanceof PmpoolError)) throw e;
    out(json({ ok: false, problems: [`${e.code}: ${e.message}`], repaired: [], error: { code: e.code, message: e.message } }));
    return 1;
  }
}

/**
 * Writes all of `text` to stdout now, or throws. A pipe's end may be non-blocking (Node makes it
 * so): EAGAIN is a reader behind, waited for, not a failure.
 */
function writeStdoutSync(text: string): void {
  const bytes = Buffer.from(text);
  for (let done = 0; done < bytes.length; ) {
    try {
      done += writeSync(1, bytes, done);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      sleepSync(10);
    }
  }
}

/**
 * The pfn printed is the only way to the allocation (an unnamed one is found by nobody else): it
 * is written before the pool is let go, and when it cannot be (a full disk, a reader gone: EPIPE)
 * the allocation goes back, so that a failed alloc leaves nothing allocated.
 */
export function allocCommand(args: string[], _out: Out, err: Out): number {
  const { values, positionals } = parse(args, { align: { type: 'string' }, name: { type: 'string' }, owner: { type: 'string' }, json: { type: 'boolean' } }, 2);
  const count = integer(positionals[1], 'COUNT')!;
  const owner = values.owner as string | undefined;
  return withPool(positionals[0]!, (pool) => {
    const a = pool.alloc(count, { align: integer(values.align, '--align'), name: values.name as string | undefined, owner });
    try {
      writeStdoutSync(`${values.json ? json(a.toJSON()) : String(a.pfn)}\n`);
    } catch (e) {
      pool.release(a.pfn, a.count, { owner });
      err(`pmpool alloc: cannot write the output (${(e as Error).message}); the allocation was released: nothing was allocated`);
      return 1;
    }
    return 0;
  });
}

export function releaseCommand(args: string[], out: Out): number {
  const { values, positionals } = parse(args, { owner: { type: 'string' } }, 3);
  const pfn = integer(positionals[1], 'PFN')!;
  const count = integer(positionals[2], 'COUNT')!;
  return withPool(positionals[0]!, (pool) => {
    pool.release(pfn, count, { owner: values.owner as string | undefined });
    // COUNT may be the count asked of alloc; what went back is the allocation, whole units of pages.
    const unit = 2 ** pool.geometry.orderPerBit;
    const pages = Math.ceil(count / unit) * unit;
    out(`released ${pages} page${pages === 1 ? '' : 's'} at pfn ${pfn}`);
    return 0;
  });
}
