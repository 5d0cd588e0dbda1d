/**
 * Records V8's code cache of the bundle (src/entry/bundle-loader.ts says why
 * and what guards it), where the package is installed and with the Node that
 * will run it: by the build (tools/bundle.ts) and at `npm install`
 * (scripts/record-code-cache.mjs).
 *
 * One child process creates a pool and hands it over; a second receives it,
 * restores, allocates and hands over again, then writes the cache
 * (tools/warm-bundle.ts). The children run without NODE_OPTIONS, under the
 * Node options given, none by default: V8 refuses a cache recorded under
 * other flags, and a cache recorded under options is for programs that run
 * with exactly those (src/entry/node-options.ts; `pmpool code-cache record`).
 * The cache is written to a file of its own, which a third child loads the
 * bundle with, as a program would: only a cache it reports accepted is
 * renamed into place. Until then the cache
 * that was there stays, for the programs that start meanwhile and when the
 * recording fails; two recordings at once each put a whole cache in place.
 *
 *   node dist/tools/record-cache.js [--at-install]
 * records the default cache and again each one recorded under options
 * (recordCaches). At install a failure is a warning: the bundle works
 * without a cache.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cachePathOf, encodeCache } from '../src/entry/bundle-loader.js';
import { checksum64 } from '../src/entry/checksum.js';
import { formatNodeOptions } from '../src/entry/node-options.js';

const dist = fileURLToPath(new URL('..', import.meta.url));
export const BUNDLE = join(dist, 'pmpool.bundle.cjs');
/** The warm-up script (tools/warm-bundle.ts); its check phase loads the bundle as a program does. */
export const WARM = join(dist, 'tools', 'warm-bundle.js');

/** The environment of the warm-up's runs: the options given are the whole of their options, and no handover is theirs. */
export function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  delete env.PMPOOL_FDT;
  return env;
}

/** One run of node in a recording: its arguments, and what an error calls it. */
interface Run {
  args: string[];
  what: string;
}

function run({ args, what }: Run): string {
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: childEnv() });
  if (r.status !== 0) throw new Error(`${what} failed (${r.signal ?? `exit ${r.status}`}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** run(), without holding the event loop: `stop` kills the run, and it fails once the child is gone. */
function runUntil({ args, what }: Run, stop: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    if (stop.aborted) {
      reject(stop.reason);
      return;
    }
    const child = spawn(process.execPath, args, { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const kill = () => child.kill('SIGKILL');
    stop.addEventListener('abort', kill, { once: true });
    child.on('error', (e) => {
      stop.removeEventListener('abort', kill);
      reject(new Error(`${what} failed: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      stop.removeEventListener('abort', kill);
      if (stop.aborted) reject(stop.reason);
      else if (code !== 0) reject(new Error(`${what} failed (${signal ?? `exit ${code}`}): ${stderr.trim()}`));
      else resolve(stdout);
    });
  });
}

/**
 * Why `node OPTIONS script` would not run the script as a program does, or undefined: the options a
 * cache is recorded or checked under are given before the warm-up script.
 *
 * A word node does not read as an option or an option's value (`--max-old-space-size=4096
 * server.js`, a program's whole command line) would be the program node runs, in place of the
 * warm-up: only node knows which words those are (`-r FILE` takes one, `--no-warnings` none), so it
 * is asked, with the options after a -e program, where such a word becomes an argument of that
 * program instead of a script to run. An option node refuses is left to the run that follows, which
 * fails with node's word for it.
 */
export function notProgramOptions(options: readonly string[]): string | undefined {
  if (options.length > 0 && !options[0]!.startsWith('-')) return `${JSON.stringify(options[0])} is not a Node option (the options come before a program, and a cache is not recorded for one)`;
  for (const option of options) {
    if (option === '' || option === '--') return `${JSON.stringify(option)} is not a Node option`;
    if (RUNS_SOMETHING_ELSE.has(option.split('=', 1)[0]!)) return `${option} makes node run something other than a program`;
  }
  if (options.length === 0) return undefined;
  const probe = spawnSync(process.execPath, ['-e', `process.stdout.write('\\n${PROBE_MARK}' + JSON.stringify(process.argv.slice(1)))`, ...options], { encoding: 'utf8', env: childEnv() });
  const line = probe.status === 0 ? probe.stdout.split('\n').reverse().find((l) => l.startsWith(PROBE_MARK)) : undefined;
  const program = line === undefined ? undefined : (JSON.parse(line.slice(PROBE_MARK.length)) as string[])[0];
  if (program !== undefined) return `${JSON.stringify(program)} is not a Node option: node would run it as the program (the options come before a program, and a cache is not recorded for one)`;
  return undefined;
}

const PROBE_MARK = 'pmpool-options-probe ';

/** notProgramOptions, and the options under which the bundle loads without any cache. */
export function unrecordableOptions(options: readonly string[]): string | undefined {
  if (options.some((o) => o === '--enable-source-maps')) return 'under --enable-source-maps pmpool loads without a code cache (Node maps stack traces only for modules it loads itself)';
  return notProgramOptions(options);
}

/** recordCache's refusal of options no program would load the bundle with (before anything runs). */
export class UnrecordableOptionsError extends Error {
  override name = 'UnrecordableOptionsError';
}

const RUNS_SOMETHING_ELSE = new Set([
  '-e', '--eval', '-p', '--print', '-pe', '-ep', '-c', '--check', '-i', '--interactive', '--test', '--watch', '--watch-path',
  '-v', '--version', '-h', '--help', '--v8-options', '--completion-bash', '--prof-process', '--build-snapshot', '--run',
]);

/**
 * Records the cache of `bundlePath` under the Node options given (none: the default cache) and
 * returns its path. Throws an Error that says why when it cannot.
 */
export function recordCache(bundlePath: string = BUNDLE, options: readonly string[] = []): string {
  const steps = recording(bundlePath, options);
  let step = steps.next();
  while (!step.done) {
    let stdout: string;
    try {
      stdout = run(step.value);
    } catch (e) {
      step = steps.throw(e); // the recording's finally runs, and the error comes back out
      continue;
    }
    step = steps.next(stdout);
  }
  return step.value;
}

/**
 * recordCache, for a caller that must stay responsive while the warm-up runs (`pmpool code-cache
 * record`, which a signal must be able to stop): the runs do not hold the event loop, and `stop`
 * ends the recording — the run under way is killed, the recording's files are removed, and the
 * promise is rejected with the signal's reason.
 */
export async function recordCacheUntil(stop: AbortSignal, bundlePath: string = BUNDLE, options: readonly string[] = []): Promise<string> {
  const steps = recording(bundlePath, options);
  let step = steps.next();
  while (!step.done) {
    let stdout: string;
    try {
      stdout = await runUntil(step.value, stop);
    } catch (e) {
      step = steps.throw(e);
      continue;
    }
    step = steps.next(stdout);
  }
  return step.value;
}

/**
 * A recording, as the runs of node it needs: each is yielded, and its stdout given back (a run
 * that fails is thrown in). Its files are removed in its finally, however it ends.
 */
function* recording(bundlePath: string, options: readonly string[]): Generator<Run, string, string> {
  const unrecordable = unrecordableOptions(options);
  if (unrecordable !== undefined) throw new UnrecordableOptionsError(unrecordable);
  const cachePath = cachePathOf(bundlePath, options);
  const temporary = `${cachePath}.${process.pid}`;
  const bundleChecksum = checksum64(readFileSync(bundlePath));
  const scratch = mkdtempSync(join(tmpdir(), 'pmpool-warm-'));
  try {
    const pool = `--pmpool=${join(scratch, 'pool')},64M`;
    const blob = join(scratch, 'handover.dtb');
    const payload = join(scratch, 'payload');
    const warm = [...options, WARM, `--bundle=${bundlePath}`, `--scratch=${scratch}`, pool];
    yield { args: [...warm, '--phase=hand-over', `--blob=${blob}`], what: 'the warm-up hand-over' };
    const recorded = yield { args: [...warm, '--phase=record', `--pmpool-fdt=${blob}`, `--cache=${payload}`], what: 'the warm-up record' };
    // The options as the warm-up saw them, which is how a program that runs with them sees them.
    const seen = JSON.stringify(JSON.parse(recorded.trim().split('\n').pop()!));
    if (seen !== JSON.stringify(options)) throw new Error(`the warm-up ran under the Node options ${seen}, not ${JSON.stringify(options)}`);
    const bytes = readFileSync(payload);
    // The bytes the warm-up compiled: read before it, and unchanged after it.
    if (checksum64(readFileSync(bundlePath)) !== bundleChecksum) throw new Error(`${bundlePath} changed while its cache was recorded`);
    const header = { bundle: bundlePath, bundleChecksum, payloadChecksum: checksum64(bytes), node: process.version, ...(options.length > 0 && { options: [...options] }) };
    writeFileSync(temporary, encodeCache(header, bytes));
    // The cache as a program that runs with these options would load it (the header binds the bundle's path, not the cache's).
    const check = yield { args: [...options, WARM, `--bundle=${bundlePath}`, '--phase=check', `--cache=${temporary}`], what: 'loading the bundle with its cache' };
    const outcome = JSON.parse(check.trim().split('\n').pop()!) as { cache: string; problem: string | null };
    if (outcome.cache !== 'accepted') throw new Error(`the recorded cache is not used${options.length > 0 ? ` under ${formatNodeOptions(options)}` : ''}: ${outcome.cache} ${outcome.problem ?? ''}`.trim());
    renameSync(temporary, cachePath); // a reader sees the old file or the new, whole
    return cachePath;
  } finally {
    rmSync(temporary, { force: true }); // a cache refused, or never finished
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** A cache recorded under options that could not be recorded again, and was removed. */
export interface DroppedCache {
  path: string;
  problem: string;
}

/**
 * Records the default cache, then again every cache recorded beside the bundle under options
 * (`pmpool code-cache record`): after a rebuild, or under another Node (`npm rebuild`), each would
 * be refused until it is. One that cannot be recorded again — its header names no options, or
 * node now refuses them — is removed: a program would only ever read it and refuse it. Throws
 * when the default cache cannot be recorded.
 */
export function recordCaches(bundlePath: string = BUNDLE): { recorded: string[]; dropped: DroppedCache[] } {
  const recorded = [recordCache(bundlePath)];
  const dropped: DroppedCache[] = [];
  for (const path of keyedCachePaths(bundlePath)) {
    const options = optionsOfCache(path);
    try {
      if (options === undefined || cachePathOf(bundlePath, options) !== path) throw new Error('its header names no options it could have been recorded under');
      recorded.push(recordCache(bundlePath, options));
    } catch (e) {
      rmSync(path, { force: true });
      dropped.push({ path, problem: (e as Error).message });
    }
  }
  return { recorded, dropped };
}

/** The files beside the bundle named as caches recorded under options are: `<bundle>.<16 hex digits>.cache`. */
function keyedCachePaths(bundlePath: string): string[] {
  const prefix = `${basename(bundlePath)}.`;
  return readdirSync(dirname(bundlePath))
    .filter((name) => name.startsWith(prefix) && /^[0-9a-f]{16}\.cache$/.test(name.slice(prefix.length)))
    .map((name) => join(dirname(bundlePath), name));
}

/** The options a cache file's header says it was recorded under, or undefined when it says none or is no cache. */
function optionsOfCache(path: string): string[] | undefined {
  try {
    const lines = readFileSync(path, 'latin1').split('\n', 2);
    const header = JSON.parse(lines[1] ?? '') as { options?: unknown } | null;
    const options = header?.options;
    return Array.isArray(options) && options.length > 0 && options.every((o) => typeof o === 'string') ? options : undefined;
  } catch {
    return undefined;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const atInstall = process.argv.includes('--at-install');
  try {
    for (const { path, problem } of recordCaches().dropped) process.stderr.write(`pmpool: removed ${path}, which cannot be recorded again: ${problem}\n`);
  } catch (e) {
    process.stderr.write(`pmpool: no code cache recorded (${(e as Error).message}); pmpool works without it, only its start is slower\n`);
    process.exit(atInstall ? 0 : 1);
  }
}
