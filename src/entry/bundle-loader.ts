/**
 * Loads the package's single-file bundle (dist/pmpool.bundle.cjs, built by
 * tools/bundle.ts) through V8's code cache.
 *
 * Why: a handover's downtime is mostly the next program's cold start, and
 * on Node 20 two costs dominate what pmpool adds to it. The ESM loader
 * spends about 0.4 ms per module (pmpool is ~90 of them), and every
 * function runs its first call through V8's lazy compiler. One bundle
 * removes the first; a code cache recorded after a warm handover (parse,
 * restore, prepare) removes the second: V8 deserializes the bytecode of
 * those functions instead of compiling them. Node 22 does the same with
 * module.enableCompileCache(), which Node 20 does not have.
 *
 * The cache is an optimisation only. V8 checks it against its own version,
 * its flags and the source, and refuses one that does not match (another
 * Node, a rebuilt bundle, a truncated file); the bundle is then compiled as
 * usual. It is part of the package, with the same trust as the code beside it.
 */
import type * as Fs from 'node:fs';
import type * as Url from 'node:url';
import type * as Vm from 'node:vm';

// Node's built-ins come through process.getBuiltinModule (Node >= 20.16), not ESM imports: the first
// `import ... from 'node:fs'` of a process builds an ESM facade of the whole module, which costs about
// 3 ms on the machines we measure on, more than the rest of the loading.
const { readFileSync } = process.getBuiltinModule('node:fs') as typeof Fs;
const { Script } = process.getBuiltinModule('node:vm') as typeof Vm;
const { fileURLToPath, pathToFileURL } = process.getBuiltinModule('node:url') as typeof Url;

/** The name under which the bundle sees its own module URL (tools/bundle.ts defines import.meta.url as it). */
export const MODULE_URL_PARAMETER = '__pmpool_module_url';

export type CacheOutcome = 'accepted' | 'rejected' | 'absent';

export interface LoadedBundle {
  exports: Record<string, unknown>;
  /** The compiled bundle: tools/bundle.ts records its code cache from it after a warm run. */
  script: Vm.Script;
  cache: CacheOutcome;
}

type BundleFunction = (
  exports: Record<string, unknown>,
  require: (id: string) => unknown,
  module: { exports: Record<string, unknown> },
  filename: string,
  dirname: string,
  moduleUrl: string,
) => void;

export function cachePathOf(bundlePath: string): string {
  return `${bundlePath}.cache`;
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
  cachePath ??= cachePathOf(bundlePath);
  const source = readFileSync(bundlePath, 'utf8');
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(cachePath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  // The wrapper is all on the bundle's first line, so line numbers in stack traces are the file's own.
  const wrapped = `(function (exports, require, module, __filename, __dirname, ${MODULE_URL_PARAMETER}) {${source}\n})`;
  const script = new Script(wrapped, { filename: bundlePath, cachedData });
  const run = script.runInThisContext() as BundleFunction;
  const module = { exports: {} as Record<string, unknown> };
  run.call(module.exports, module.exports, requireBuiltin, module, bundlePath, bundlePath.slice(0, bundlePath.lastIndexOf('/')), pathToFileURL(bundlePath).href);
  const cache: CacheOutcome = cachedData === undefined ? 'absent' : script.cachedDataRejected ? 'rejected' : 'accepted';
  const result: LoadedBundle = { exports: module.exports, script, cache };
  loaded.set(bundlePath, result);
  return result;
}

/** The bundle's require(): it only ever asks for Node's built-ins (tools/bundle.ts checks). */
function requireBuiltin(id: string): unknown {
  const found = process.getBuiltinModule(id);
  if (found === undefined) throw new Error(`pmpool bundle: require(${JSON.stringify(id)}) is not a Node built-in`);
  return found;
}

