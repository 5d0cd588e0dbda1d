/**
 * The program `pmpool demo` runs: a small service that keeps its state — a
 * PersistentMap of visit counters and a LogRing of events — in a pool, and
 * so survives being replaced (kexec in place) and being killed (SIGKILL).
 *
 * One program, three lives, told apart by what it finds at start:
 *   v1  cold start, empty pool: fill the map, then exec itself (the upgrade);
 *   v2  a handover arrived: restore, verify, then serve writes until killed;
 *   v3  cold start, the map already there: a crash happened; verify it.
 * Every step is reported as one JSON line on the report file.
 */
import { appendFileSync, rmSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pool } from '../index.js';
import { crc32c } from '../util/crc32c.js';

/**
 * pmpool itself comes through the package's entry (a specifier in a variable, so that the
 * compiler types it from the sources and resolves nothing at build time): the bundle and its
 * code cache, as in any program that imports 'pmpool', not this tree's modules one by one.
 */
const PACKAGE = 'pmpool';
const { kexec, LogRing, PersistentMap, PmpoolError } = (await import(PACKAGE)) as typeof import('../index.js');

/** A refusal of pmpool's (a typed error: a pool that cannot be made where it was asked for), told apart from a bug. */
export function isPmpoolError(e: unknown): e is InstanceType<typeof PmpoolError> {
  return e instanceof PmpoolError;
}

const MAP = 'visits';
const LOG = 'events';

type Report = Record<string, unknown>;

const encoder = new TextEncoder();

/** A value that names its key and round and carries its own checksum: garbage cannot pass for it. */
function valueFor(key: string, round: number): string {
  const body = `${key}|round=${round}`;
  return `${body}|${crc32c(encoder.encode(body)).toString(16)}`;
}

function parseValue(key: string, value: string): number | null {
  const last = value.lastIndexOf('|');
  const body = value.slice(0, last);
  if (last < 0 || crc32c(encoder.encode(body)).toString(16) !== value.slice(last + 1)) return null;
  const m = /^(.*)\|round=(\d+)$/.exec(body);
  return m && m[1] === key ? Number(m[2]) : null;
}

/** v2 logs every this many updates (and reports them once logged). */
const LOG_EVERY = 5000;

/**
 * What the ring should say at `seq`: v1 wrote the first record, v2 the second on restore and then
 * one per LOG_EVERY updates. Each surviving record is held to it, so a record lost, reordered or
 * damaged into something else is seen, not counted among the survivors.
 */
function expectedLog(seq: number): RegExp {
  if (seq === 1) return /^v1 \(pid \d+\) wrote \d+ entries$/;
  if (seq === 2) return /^v2 \(pid \d+\) restored generation \d+: \d+\/\d+ entries intact$/;
  return new RegExp(`^v2 update ${(seq - 2) * LOG_EVERY}$`);
}

function checkLog(log: ReturnType<typeof LogRing.open>): string[] {
  const problems: string[] = [];
  const records = log.records();
  const skipped = log.stats().skipped;
  if (skipped > 0) problems.push(`${skipped} records skipped as damaged`);
  records.forEach((r, i) => {
    if (r.seq !== records[0]!.seq + i) problems.push(`record ${i} has seq ${r.seq}, after seq ${records[i - 1]!.seq}`);
    if (!expectedLog(r.seq).test(r.text ?? '')) problems.push(`record seq ${r.seq} reads ${JSON.stringify(r.text ?? r.bytes)}`);
  });
  // Nothing the ring still holds has been overwritten yet (a few hundred small records fit), so
  // the oldest survivor must be the first record ever written.
  if (records.length > 0 && records[0]!.seq !== 1) problems.push(`the oldest record is seq ${records[0]!.seq}, not 1`);
  return problems;
}

function keyOf(i: number): string {
  return `user:${i.toString().padStart(7, '0')}`;
}

function elapsedMs(since: number): number {
  return performance.now() - since;
}

/**
 * With --lifeline, stdin is a pipe whose other end the demo holds: end of file on it means the
 * demo is gone, however it went — a SIGKILL runs no handler of the demo's, and v2 would serve for
 * ever, orphaned. The service stops then, and removes the files the demo would have removed at
 * its end: its directory (report, handover blobs), and its pool unless the demo was to keep it —
 * else a demo killed by SIGKILL left a pool of some MiB in /dev/shm (memory, until a reboot).
 * Seen between two rounds of work (v2 yields to the event loop every LOG_EVERY updates);
 * unref'd, the pipe keeps no life of the service running.
 */
function stopWithTheDemo(files: string): void {
  const [dir, pool] = files.split(',');
  const stop = () => {
    process.stderr.write('pmpool demo service: the demo is gone; stopping\n');
    // Only a directory the demo made (mkdtemp's pmpool-demo- prefix): the flag names it, and a
    // mistyped one must not take a user's directory with it.
    if (dir !== undefined && basename(dir).startsWith('pmpool-demo-')) rmSync(dir, { recursive: true, force: true });
    if (pool !== undefined && pool !== '') rmSync(pool, { force: true });
    process.exit(1);
  };
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
  (process.stdin as { unref?: () => void }).unref?.();
}

export async function demoApp(args: string[]): Promise<number> {
  const arg = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const reportFile = arg('report');
  const entries = Number(arg('entries') ?? '100000');
  if (!reportFile || !Number.isSafeInteger(entries) || entries < 1) throw new Error('demo-app needs --report=FILE and --entries=N');
  const lifeline = arg('lifeline');
  if (lifeline !== undefined) stopWithTheDemo(lifeline);
  const report = (r: Report) => appendFileSync(reportFile, JSON.stringify({ pid: process.pid, ...r }) + '\n');

  const t0 = performance.now();
  const incoming = kexec.incoming();
  const pool: Pool = kexec.poolFromCommandLine(args)!;
  const restoreMs = elapsedMs(t0);
  const t1 = performance.now();
  const map = PersistentMap.open(pool, MAP, incoming ? { handover: incoming.fdt } : {});
  const log = LogRing.open(pool, LOG, { bytes: 256 * 1024 });
  const openMs = elapsedMs(t1);
  PersistentMap.registerHandover(map, kexec.onHandover);

  if (incoming) {
    // v2: the upgrade landed. Everything v1 wrote is here, mapped, not copied.
    let intact = 0;
    for (let i = 0; i < entries; i++) if (parseValue(keyOf(i), String(map.get(keyOf(i)) ?? '')) === 0) intact++;
    log.append(`v2 (pid ${process.pid}) restored generation ${incoming.generation}: ${intact}/${entries} entries intact`);
    report({ stage: 'v2', generation: String(incoming.generation), restoreMs, openMs, intact, size: map.size, from: incoming.from });
    // Serve: rewrite every entry, round after round, until someone pulls the plug.
    let updates = 0;
    for (let round = 1; ; round++) {
      for (let i = 0; i < entries; i++) {
        map.set(keyOf(i), valueFor(keyOf(i), round));
        if (++updates % LOG_EVERY === 0) {
          log.append(`v2 update ${updates}`);
          report({ stage: 'v2-serving', updates });
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
    }
  }

  if (map.size === 0) {
    // v1: a cold start on an empty pool.
    const t = performance.now();
    for (let i = 0; i < entries; i++) map.set(keyOf(i), valueFor(keyOf(i), 0));
    log.append(`v1 (pid ${process.pid}) wrote ${entries} entries`);
    report({ stage: 'v1', entries: map.size, writeMs: elapsedMs(t), poolPath: pool.path, uuid: pool.uuid });
    const self = fileURLToPath(new URL('./demo-app-main.js', import.meta.url));
    // The blob goes beside the report, in the demo's own directory: should the demo be stopped
    // after this exec and before v2 has read (and so removed) it, the demo's clean-up takes it too.
    const blobDir = dirname(reportFile);
    await kexec.exec(process.execPath, [self, ...args.filter((a) => !a.startsWith('--pmpool-fdt='))], { from: 'pmpool demo v1', blobDir });
    return 1; // exec returns only by throwing
  }

  // v3: a cold start on a pool that has the map: the previous program crashed.
  let valid = 0;
  let newer = 0;
  let garbage = 0;
  for (let i = 0; i < entries; i++) {
    const round = parseValue(keyOf(i), String(map.get(keyOf(i)) ?? ''));
    if (round === null) garbage++;
    else {
      valid++;
      if (round > 0) newer++;
    }
  }
  const records = [...log.records()];
  const logProblems = checkLog(log);
  const size = map.size;
  const mapCheck = map.check();
  const check = pool.check();
  report({
    stage: 'v3',
    restoreMs,
    openMs,
    recovered: pool.recovered.length,
    size,
    valid,
    newer,
    garbage,
    logRecords: records.length,
    logProblems,
    lastLog: records.length > 0 ? String(records[records.length - 1]!.text ?? '') : null,
    mapCheck: mapCheck.ok,
    mapProblems: mapCheck.problems,
    poolCheck: check.ok,
    problems: check.problems,
  });
  map.close();
  pool.close();
  // Every check the demo prints counts: a map that reads back but fails its own check is no success.
  return garbage === 0 && valid === entries && size === entries && logProblems.length === 0 && mapCheck.ok && check.ok ? 0 : 1;
}
