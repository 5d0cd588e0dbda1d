/**
 * One open of a pool in a fresh process, timed: what a restarted program
 * pays (bench/pool.ts, scenario "open").
 *
 *   node dist/bench/open-fresh.js pool|floor PATH META_BYTES    prints ms
 *
 * pmpool is loaded the way a program loads it — by its package name, whose
 * entry is one script with V8's code cache (src/entry/bundle-loader.ts) — and
 * nothing else of it is loaded first: the open runs the code a restart runs,
 * cold as it is then. (Through the compiled modules of dist/src instead, each
 * function of the open is compiled at its first call: about 3 ms more here.)
 * The timing starts once the entry is loaded, and covers the open alone.
 */
import { performance } from 'node:perf_hooks';

// The specifier in a variable: the package resolves to itself at run time (its "exports"), and
// the compiler, which builds dist/ from these sources, does not look for it.
const entry = 'pmpool';
const { Pool, FileRegion } = (await import(entry)) as typeof import('../src/index.js');

const [, , kind, path, metaBytes] = process.argv;
if ((kind !== 'pool' && kind !== 'floor') || path === undefined || metaBytes === undefined) {
  process.stderr.write('usage: open-fresh.js pool|floor PATH META_BYTES\n');
  process.exit(2);
}
const a = performance.now();
if (kind === 'pool') {
  const pool = Pool.open(path);
  const b = performance.now();
  pool.close();
  process.stdout.write(`${b - a}\n`);
} else {
  const region = FileRegion.open(path);
  region.map(0, Number(metaBytes)).bytes();
  const b = performance.now();
  region.close();
  process.stdout.write(`${b - a}\n`);
}
