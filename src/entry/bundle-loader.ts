/**
 * Loads the package's single-file bundle (dist/pmpool.bundle.cjs, built by
 * tools/bundle.ts) through V8's code cache.
 *
 * Why: a handover's downtime is mostly the next program's cold start, and
 * on Node 20 two costs dominate what pmpool adds to it. The ESM loader
 * spends about 0.4 ms per module (pmpool is ~70 of them), and every
 * function runs its first call through V8's lazy compiler. One bundle
 * removes the first; a code cache recorded after a warm handover (parse,
 * restore, prepare) removes the second: V8 deserializes the bytecode of
 * those functions instead of compiling them. Node 22 does the same with
 * module.enableCompileCache(), which Node 20 does not have.
 *
 * The cache is an optimisation, and it is not trusted. V8 itself checks only
 * a header (its version, its flags, the payload's and the source's lengths):
 * a same-length edit of the bundle would run the old bytecode, a damaged
 * payload crashes the process, and V8's version is not Node's (Node 20's
 * releases report V8 11.3.244.8, each with patches of its own). So the
 * cache file carries its own header (CACHE_MAGIC, then one JSON line) binding
 * it to the Node that recorded it, to the bundle — its path and a checksum of
 * its bytes — and to a checksum of its payload (checksum.ts,
 * computed by the native addon in ~0.07 ms for both, where loading
 * node:crypto for a hash would cost more than the cache saves). Anything that
 * does not match is refused, and the bundle is compiled as usual: slower,
 * never wrong. The cache is recorded where the package is installed, by the
 * Node that runs it (tools/record-cache.ts, run by `npm install` and by the
 * build).
 *
 * V8 refuses a cache recorded under other V8 flags, which a program gets from
 * its Node options (node-options.ts): a cache can be recorded under a set of
 * them (`pmpool code-cache record -- OPTIONS`), and a program that runs with
 * options loads the one recorded under exactly those when there is one,
 * else the default one, recorded without options.
 *
 * With --enable-source-maps the bundle is loaded through require() instead,
 * without the cache: Node maps stack traces only for modules it loads itself.
 */
import '../sys/node-version.js'; // first: on a Node without process.getBuiltinModule, a clear error before anything needs it
import type * as Url from 'node:url';
import type * as Vm from 'node:vm';
import { native } from '../sys/native.js';
import { checksum64 } from './checksum.js';
import { formatNodeOptions, nodeOptionsOf } from './node-options.js';

// Node's built-ins come through process.getBuiltinModule (Node >= 20.16), not ESM imports: the first
// `import ... from 'node:fs'` of a process builds an ESM facade of the whole module, which costs about
// 3 ms on the machines we measure on, more than the rest of the loading.
const { Script } = process.getBuiltinModule('node:vm') as typeof Vm;
const { fileURLToPath } = process.getBuiltinModule('node:url') as typeof Url;

/** The first line of a cache file; the second is a JSON CacheHeader, the rest V8's payload. */
/** v2: checksum64 with four lanes (a cache summed the v1 way is refused as not ours, and re-recorded by the build). */
export const CACHE_MAGIC = 'pmpool-code-cache v2';

export interface CacheHeader {
  /** The absolute path of the bundle the cache was recorded for: V8 keeps it in stack traces. */
  bundle: string;
  /** checksum64 of the bundle's bytes the cache was recorded from. */
  bundleChecksum: string;
  /** checksum64 of V8's payload. */
  payloadChecksum: string;
  /**
   * The Node that recorded it (process.version), checked: V8 checks its own version only, and Node
   * releases share one (Node 20's report V8 11.3.244.8, each with the patches of its own release), so
   * V8 takes another release's cache. Node's own compile cache is keyed by the Node version for that.
   */
  node: string;
  /**
   * The Node options it was recorded under (node-options.ts); absent or empty for the default
   * cache. A cache recorded under options is refused by a program that runs with others: V8
   * would refuse it anyway when their V8 flags differ, after reading all of it.
   */
  options?: string[];
}

/** accepted / rejected (and why) / absent / bypassed (source maps on: loaded through require()). */
export type CacheOutcome = 'accepted' | 'rejected' | 'absent' | 'bypassed';

export interface LoadedBundle {
  exports: Record<string, unknown>;
  /** The compiled bundle (null when bypassed): tools/warm-bundle.ts records the cache from it. */
  script: Vm.Script | null;
  cache: CacheOutcome;
  /** Why a cache was refused. */
  cacheProblem?: string;
  /** The cache file looked at (absent when bypassed). */
  cachePath?: string;
}

type BundleFunction = (exports: Record<string, unknown>, require: (id: string) => unknown, module: { exports: Record<string, unknown> }, filename: string, dirname: string) => void;

/**
 * The cache file of a bundle: `.cache` beside it for the default cache, and for a cache recorded
 * under Node options, `.<checksum of the options>.cache`.
 */
export function cachePathOf(bundlePath: string, options: readonly string[] = []): string {
  if (options.length === 0) return `${bundlePath}.cache`;
  return `${bundlePath}.${checksum64(Buffer.from(options.join('\0')))}.cache`;
}

/**
 * A cache file: the header and V8's payload after it. V8 reads a payload that does not start on an
 * 8-byte boundary in memory only through a copy of it (~0.2 ms of every start, measured here), so
 * the header line is padded with spaces (JSON allows them) to end the header on such a boundary:
 * the file is read or mapped at an aligned address, and so is the payload, whatever the length
 * of the install path the header names.
 */
export function encodeCache(header: CacheHeader, payload: Uint8Array): Buffer {
  const lines = `${CACHE_MAGIC}\n${JSON.stringify(header)}`;
  const pad = (PAYLOAD_ALIGN - ((Buffer.byteLength(lines) + 1) % PAYLOAD_ALIGN)) % PAYLOAD_ALIGN;
  return Buffer.concat([Buffer.from(`${lines}${' '.repeat(pad)}\n`), payload]);
}

/** Where in a cache file V8's payload starts: a multiple of this many bytes. */
export const PAYLOAD_ALIGN = 8;

/** The payload of a cache file that belongs to this bundle, or why it does not. */
export function checkCache(file: Buffer, bundlePath: string, bundleBytes: Uint8Array, options: readonly string[] = nodeOptionsOf()): { payload: Buffer } | { problem: string } {
  const magicEnd = file.indexOf(10);
  if (magicEnd < 0 || file.toString('latin1', 0, magicEnd) !== CACHE_MAGIC) return { problem: 'not a pmpool code cache' };
  const headerEnd = file.indexOf(10, magicEnd + 1);
  if (headerEnd < 0) return { problem: 'its header is cut short' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(file.toString('utf8', magicEnd + 1, headerEnd));
  } catch {
    return { problem: 'its header is not JSON' };
  }
  // A damaged line may still be JSON of any shape (null, a number, fields that are objects): it is
  // refused like a wrong value, never met with a TypeError that would fail the import.
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { problem: 'its header is not a JSON object' };
  const header = parsed as { [K in keyof CacheHeader]?: unknown };
  if (header.bundle !== bundlePath) return { problem: `it was recorded for ${shown(header.bundle)}` };
  if (header.node !== process.version) return { problem: `it was recorded by Node ${shown(header.node)}, not ${process.version}` };
  const recordedUnder = header.options ?? [];
  if (!Array.isArray(recordedUnder) || !recordedUnder.every((o) => typeof o === 'string')) return { problem: `its options ${String(JSON.stringify(recordedUnder))} are not a list of strings` };
  if (recordedUnder.length > 0 && !sameOptions(recordedUnder, options)) {
    return { problem: `it was recorded under the Node options ${shown(formatNodeOptions(recordedUnder))}, and this program runs with ${options.length === 0 ? 'none' : shown(formatNodeOptions(options))}` };
  }
  const payload = file.subarray(headerEnd + 1);
  // The addon computes the sums; it was loaded with this module (an entry without it cannot start).
  if (header.bundleChecksum !== checksum64(bundleBytes)) return { problem: 'the bundle has changed since it was recorded' };
  if (header.payloadChecksum !== checksum64(payload)) return { problem: 'its payload is damaged' };
  return { payload };
}

function sameOptions(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((o, i) => o === b[i]);
}

/** A header field in a refusal: a string as it is, anything else as JSON (String() of `{"toString":1}` throws). */
function shown(value: unknown): string {
  return typeof value === 'string' ? value : String(JSON.stringify(value));
}

/**
 * Bundles already loaded in this thread, by path: `import 'pmpool'` and
 * `require('pmpool')` in one program get one instance. Two would mean two
 * handover registries, each preparing its own handover of the same pools.
 */
const LOADED = Symbol.for('pmpool.loadedBundles');
type Registry = Map<string, LoadedBundle>;
const loaded: Registry = ((globalThis as Record<symbol, Registry | undefined>)[LOADED] ??= new Map());

export function loadBundle(bundle: string | URL, cachePath?: string): LoadedBundle {
  const bundlePath = typeof bundle === 'string' ? bundle : fileURLToPath(bundle);
  const existing = loaded.get(bundlePath);
  if (existing !== undefined) return existing;
  const result = process.sourceMapsEnabled ? loadThroughRequire(bundlePath) : loadWithCache(bundlePath, cachePath);
  loaded.set(bundlePath, result);
  return result;
}

function loadThroughRequire(bundlePath: string): LoadedBundle {
  const { createRequire } = process.getBuiltinModule('node:module') as { createRequire: (path: string) => NodeJS.Require };
  return { exports: createRequire(bundlePath)(bundlePath) as Record<string, unknown>, script: null, cache: 'bypassed' };
}

const NO_OPTIONS: readonly string[] = Object.freeze([]);

/**
 * Loads the bundle with the cache at `explicitCache`, or, as a program does, with the cache recorded
 * under the program's Node options when there is one, else the default cache.
 */
function loadWithCache(bundlePath: string, explicitCache: string | undefined): LoadedBundle {
  // Both files are loaded by the addon, not readFileSync (native/pmpool.c loadFile says why), and
  // released once compiled: V8 keeps the source as a string of its own, and reads the code cache
  // only while it compiles.
  const bundleFile = native.loadFile(bundlePath);
  // A program started without options, the usual case, splits no words.
  const options = process.execArgv.length === 0 && !process.env.NODE_OPTIONS ? NO_OPTIONS : nodeOptionsOf();
  const defaultCache = cachePathOf(bundlePath);
  let cachePath = explicitCache ?? cachePathOf(bundlePath, options);
  let cacheFile: ArrayBuffer | undefined;
  let script: Vm.Script;
  let cacheProblem: string | undefined;
  let cachedData: Buffer | undefined;
  try {
    const bytes = Buffer.from(bundleFile);
    let read = readCacheFile(cachePath);
    if (read === undefined && explicitCache === undefined && options.length > 0) {
      // None recorded under these options: the default one, which V8 takes if they set no V8 flag.
      cachePath = defaultCache;
      read = readCacheFile(cachePath);
    }
    if (read instanceof ArrayBuffer) {
      cacheFile = read;
      const checked = checkCache(Buffer.from(cacheFile), bundlePath, bytes, options);
      if ('payload' in checked) cachedData = checked.payload;
      else cacheProblem = checked.problem;
    } else if (read !== undefined) {
      cacheProblem = read.problem;
    }
    // The bundle is ASCII (tools/bundle.ts builds it so): latin1 is the same string as UTF-8, without
    // the decoding. The wrapper is all on the bundle's first line, so line numbers in stack traces are
    // the file's own.
    const wrapped = `(function (exports, require, module, __filename, __dirname) {${bytes.toString('latin1')}\n})`;
    script = new Script(wrapped, { filename: bundlePath, cachedData });
    if (cachedData !== undefined && script.cachedDataRejected) cacheProblem = v8Refusal(options, cachePath === defaultCache);
  } finally {
    releaseFile(bundleFile);
    if (cacheFile !== undefined) releaseFile(cacheFile);
  }
  const run = script.runInThisContext() as BundleFunction;
  const module = { exports: {} as Record<string, unknown> };
  run.call(module.exports, module.exports, requireBuiltin, module, bundlePath, bundlePath.slice(0, bundlePath.lastIndexOf('/')));
  const cache: CacheOutcome = cacheProblem !== undefined ? 'rejected' : cachedData === undefined ? 'absent' : 'accepted';
  return { exports: module.exports, script, cache, cachePath, ...(cacheProblem !== undefined && { cacheProblem }) };
}

/** A cache file's bytes; undefined when there is none (the usual case before a recording); why it cannot be read. */
function readCacheFile(path: string): ArrayBuffer | { problem: string } | undefined {
  try {
    return native.loadFile(path);
  } catch (e) {
    // Unreadable costs speed, not the import.
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : { problem: `it cannot be read: ${(e as Error).message}` };
  }
}

function v8Refusal(options: readonly string[], defaultCache: boolean): string {
  if (!defaultCache || options.length === 0) return 'V8 refused it (another Node, or other V8 flags)';
  const line = formatNodeOptions(options);
  return `V8 refused it: it was recorded without Node options, and this program runs with ${line}, which set V8 flags; \`npx pmpool code-cache record -- ${line}\` records one for them`;
}

/** Releases what loadFile() loaded (an empty file was no mapping). */
function releaseFile(file: ArrayBuffer): void {
  if (file.byteLength > 0) native.munmap(file);
}

/** The bundle's require(): it only ever asks for Node's built-ins (tools/bundle.ts checks). */
function requireBuiltin(id: string): unknown {
  const found = process.getBuiltinModule(id);
  if (found === undefined) throw new Error(`pmpool bundle: require(${JSON.stringify(id)}) is not a Node built-in`);
  return found;
}
