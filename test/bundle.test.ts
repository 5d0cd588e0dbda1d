/**
 * The package entry (dist/pmpool.js, built by tools/bundle.ts): one bundled
 * script loaded with V8's code cache. It must export exactly the API of
 * src/index.ts; the cache must be accepted by the Node that built it (else
 * it buys nothing); and a cache that does not match — garbage, cut short,
 * recorded for another script, absent — must only cost speed, never
 * correctness.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
import * as entry from 'pmpool';
import * as source from '../src/index.js';
import { cachePathOf } from '../src/entry/bundle-loader.js';

const BUNDLE = fileURLToPath(new URL('../pmpool.bundle.cjs', import.meta.url));
const LOADER = fileURLToPath(new URL('../src/entry/bundle-loader.js', import.meta.url));
/** The package root: `import('pmpool')` in a child's -e script resolves from its cwd. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Loads the bundle in a fresh `node` (no flags: V8 refuses a cache recorded
 * under other flags, and the test runner's own are not the ones programs run
 * with), then uses it: an in-memory pool, an allocation, an FDT round trip.
 */
function loadInChild(cachePath: string): { cache: string; used: string } {
  const script = `
    const { loadBundle } = await import(${JSON.stringify(LOADER)});
    const { exports: m, cache } = loadBundle(${JSON.stringify(BUNDLE)}, ${JSON.stringify(cachePath)});
    const pool = m.Pool.create(new m.MemoryRegion(1 << 20), { size: 1 << 20 });
    const a = pool.alloc(3, { name: 'x' });
    const fdt = new m.Fdt();
    fdt.set('/', 'n', a.count);
    console.log(JSON.stringify({ cache, used: pool.find('x').count + ':' + m.Fdt.parse(fdt.toBytes()).getU32('/', 'n') }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { cache: string; used: string };
}

test('the entry exports exactly the names of src/index.ts, bound to working code', () => {
  assert.deepEqual(Object.keys(entry).sort(), Object.keys(source).sort());
  for (const [name, value] of Object.entries(entry)) assert.equal(typeof value, typeof (source as Record<string, unknown>)[name], name);
  // The entry's classes are the bundle's own (not the modules under dist/src), and they work.
  assert.notEqual(entry.Pool, source.Pool);
  const pool = entry.Pool.create(new entry.MemoryRegion(1 << 20), { size: 1 << 20 });
  assert.equal(pool.alloc(2).count, 2);
  assert.throws(() => pool.alloc(0), (e: unknown) => e instanceof entry.PoolError && e.code === 'BAD_ARGUMENT');
});

test('require("pmpool") gives the same instance as import: one handover registry per program', () => {
  const script = `
    const { createRequire } = await import('node:module');
    const required = createRequire(${JSON.stringify(LOADER)})('pmpool');
    const imported = await import('pmpool');
    const same = Object.keys(imported).every((k) => imported[k] === required[k]);
    console.log(JSON.stringify({ same, names: Object.keys(required).length, pool: typeof required.Pool.create }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: ROOT });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { same: true, names: Object.keys(source).length, pool: 'function' });
});

test('the shipped code cache is accepted by this Node', () => {
  assert.deepEqual(loadInChild(cachePathOf(BUNDLE)), { cache: 'accepted', used: '3:3' });
});

test('a cache that does not match is refused and the bundle compiles as usual', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pmpool-cache-'));
  try {
    const shipped = readFileSync(cachePathOf(BUNDLE));
    const cases: Record<string, Uint8Array> = {
      garbage: new Uint8Array(shipped.length).map((_, i) => (i * 131 + 7) & 0xff),
      'cut short': shipped.subarray(0, shipped.length >>> 1),
      empty: new Uint8Array(0),
      'of another script': new Script('globalThis.x = 1 + 1').createCachedData(),
    };
    for (const [what, bytes] of Object.entries(cases)) {
      const path = join(dir, what.replace(/ /g, '-'));
      writeFileSync(path, bytes);
      assert.deepEqual(loadInChild(path), { cache: 'rejected', used: '3:3' }, what);
    }
    assert.deepEqual(loadInChild(join(dir, 'absent')), { cache: 'absent', used: '3:3' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
