/**
 * The package entries (dist/pmpool.js for import, dist/pmpool.cjs for
 * require, built by tools/bundle.ts): one bundled script loaded with V8's
 * code cache. They must export exactly the API of src/index.ts, as one
 * instance; the cache must be used where it was recorded (else it buys
 * nothing); and a cache that does not belong to the bundle beside it —
 * garbage, cut short, damaged, recorded elsewhere or by another Node,
 * recorded before the bundle was edited, unreadable — must cost speed
 * only: refused with a reason, never run, never a crash.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { Script } from 'node:vm';
import * as entry from 'pmpool';
import * as source from '../src/index.js';
import { cachePathOf, checkCache, encodeCache, PAYLOAD_ALIGN, type CacheHeader } from '../src/entry/bundle-loader.js';
import { checksum64, checksumReference } from '../src/entry/checksum.js';
import { Prng } from './support/prng.js';
import { recordCache } from '../tools/record-cache.js';

const DIST = fileURLToPath(new URL('../', import.meta.url));
const BUNDLE = join(DIST, 'pmpool.bundle.cjs');
const LOADER = join(DIST, 'src', 'entry', 'bundle-loader.js');
const RECORDER = join(DIST, 'tools', 'record-cache.js');
/** The package root: `import('pmpool')` in a child's -e script resolves from its cwd. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface ChildLoad {
  cache: string;
  problem: string | null;
  used: string;
  stack: string;
}

/**
 * Loads a bundle in a fresh `node` (no flags: V8 refuses a cache recorded
 * under other flags, and the test runner's own are not the ones programs run
 * with), then uses it: an in-memory pool, an allocation, an FDT round trip,
 * and an error from inside the bundle (whose stack must name the file loaded).
 */
function loadInChild(bundle: string, cachePath?: string, nodeFlags: string[] = []): ChildLoad {
  const script = `
    const { loadBundle } = await import(${JSON.stringify(LOADER)});
    const b = loadBundle(${JSON.stringify(bundle)}${cachePath === undefined ? '' : `, ${JSON.stringify(cachePath)}`});
    const m = b.exports;
    const pool = m.Pool.create(new m.MemoryRegion(1 << 20), { size: 1 << 20 });
    const a = pool.alloc(3, { name: 'x' });
    const fdt = new m.Fdt();
    fdt.set('/', 'n', a.count);
    let stack = '';
    try { pool.alloc(0); } catch (e) { stack = e.stack; }
    console.log(JSON.stringify({ cache: b.cache, problem: b.cacheProblem ?? null, used: pool.find('x').count + ':' + m.Fdt.parse(fdt.toBytes()).getU32('/', 'n'), stack }));`;
  const r = spawnSync(process.execPath, [...nodeFlags, '--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as ChildLoad;
}

/** A copy of the bundle in a directory of its own inside the package (its addon is found from there). */
function bundleCopy(): { bundle: string; cleanup: () => void } {
  mkdirSync(join(DIST, 'test-tmp'), { recursive: true });
  const dir = mkdtempSync(join(DIST, 'test-tmp', 'bundle-'));
  const bundle = join(dir, 'pmpool.bundle.cjs');
  copyFileSync(BUNDLE, bundle);
  return { bundle, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A cache file with its JSON header line replaced by what `edit` makes of the header; the rest kept. */
function reheader(file: Buffer, edit: (header: CacheHeader) => unknown): Buffer {
  const magicEnd = file.indexOf(10);
  const headerEnd = file.indexOf(10, magicEnd + 1);
  const header = JSON.parse(file.toString('utf8', magicEnd + 1, headerEnd)) as CacheHeader;
  return Buffer.concat([file.subarray(0, magicEnd + 1), Buffer.from(`${JSON.stringify(edit(header))}\n`), file.subarray(headerEnd + 1)]);
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

test("the entry's classes and functions carry their own names: .name, inspect, stack traces (tools/class-names.ts)", () => {
  for (const [name, value] of Object.entries(entry)) if (typeof value === 'function') assert.equal(value.name, name);
  const pool = entry.Pool.create(new entry.MemoryRegion(1 << 20), { size: 1 << 20 });
  assert.match(inspect(pool), /^Pool \{/);
  assert.throws(() => pool.alloc(0), (e: Error) => /\n +at Pool\.alloc \(/.test(e.stack ?? ''));
  const fdt = new entry.Fdt();
  assert.throws(() => fdt.set('/', 'p', Symbol('not a value') as never), (e: Error) => /\n +at Fdt\.set \(/.test(e.stack ?? ''));
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

test('the recorded code cache is used by this Node, and stack traces name the bundle', () => {
  const r = loadInChild(BUNDLE);
  assert.deepEqual([r.cache, r.problem, r.used], ['accepted', null, '3:3']);
  assert.match(r.stack, new RegExp(`at .*\\(${BUNDLE.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+:\\d+\\)`));
});

test('an uncaught error from inside the bundle prints a line of it, not the whole minified script', () => {
  // Node shows the source line of the throw: the bundle's lines are kept short (tools/bundle.ts, lineLimit).
  const r = spawnSync(process.execPath, ['-e', "require('pmpool').Pool.open('/nonexistent/pmpool-bundle-test')"], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^RegionError: \/nonexistent\/pmpool-bundle-test does not exist$/m);
  const shown = r.stderr.split('\n')[1]!;
  assert.ok(shown.length <= 600, `the source line shown is ${shown.length} characters`);
  const longest = Math.max(...readFileSync(BUNDLE, 'latin1').split('\n').map((l) => l.length));
  assert.ok(longest <= 1000, `the bundle's longest line has ${longest} characters`);
});

test('under other V8 flags (--jitless) V8 refuses the cache: reported, and the bundle works', () => {
  const r = loadInChild(BUNDLE, undefined, ['--jitless']);
  assert.deepEqual([r.cache, r.used], ['rejected', '3:3']);
  assert.match(r.problem ?? '', /V8 refused it/);
});

test('with --enable-source-maps the bundle is loaded by require() and traces name the TypeScript', () => {
  const r = loadInChild(BUNDLE, undefined, ['--enable-source-maps']);
  assert.deepEqual([r.cache, r.used], ['bypassed', '3:3']);
  assert.match(r.stack, /src\/pool\/pool\.ts:\d+:\d+/);
});

test('a cache that does not belong to its bundle is refused, with the reason, and never run', () => {
  const copy = bundleCopy();
  try {
    // Recorded for the copy: used there.
    recordCache(copy.bundle);
    const cache = cachePathOf(copy.bundle);
    const accepted = loadInChild(copy.bundle);
    assert.deepEqual([accepted.cache, accepted.used], ['accepted', '3:3']);
    assert.ok(accepted.stack.includes(copy.bundle), 'a trace names the file loaded, not where it was built');
    const recorded = readFileSync(cache);

    const refused = (what: string, cachePath: string, problem: RegExp) => {
      const r = loadInChild(copy.bundle, cachePath);
      assert.equal(r.cache, 'rejected', what);
      assert.match(r.problem ?? '', problem, what);
      assert.equal(r.used, '3:3', what);
    };
    const variant = (name: string, bytes: Uint8Array) => {
      const path = join(copy.bundle, '..', name);
      writeFileSync(path, bytes);
      return path;
    };
    // A damaged payload would crash V8, which checks only lengths: each of these must be caught first.
    const damaged = Buffer.from(recorded);
    for (const at of [damaged.length - 1, damaged.length >>> 1, damaged.length - 4096]) damaged[at]! ^= 0x5a;
    refused('damaged payload', variant('damaged', damaged), /payload is damaged/);
    refused('cut short', variant('short', recorded.subarray(0, recorded.length >>> 1)), /payload is damaged/);
    refused('garbage', variant('garbage', new Uint8Array(4096).map((_, i) => (i * 131 + 7) & 0xff)), /not a pmpool code cache/);
    refused('empty', variant('empty', new Uint8Array(0)), /not a pmpool code cache/);
    refused('bare V8 cache of another script', variant('other', new Script('globalThis.x = 1 + 1').createCachedData()), /not a pmpool code cache/);
    refused('recorded for another path', cachePathOf(BUNDLE), /recorded for /);
    refused('header null', variant('null-header', reheader(recorded, () => null)), /header is not a JSON object/);
    // V8 checks its own version, which Node releases share (all of Node 20's report 11.3.244.8): it
    // would take this payload, recorded by another release, whatever that release's patches changed.
    refused('recorded by another Node', variant('other-node', reheader(recorded, (h) => ({ ...h, node: 'v20.0.0-other' }))), /recorded by Node v20\.0\.0-other, not v/);
    refused('unreadable', join(copy.bundle, '..'), /cannot be read/);

    // The bundle edited after the recording, to the same length: V8 alone would run the old bytecode.
    const text = readFileSync(copy.bundle, 'utf8');
    const edited = text.replace('pages, got ${String(count)}', 'pages, GOT ${String(count)}');
    assert.notEqual(edited, text);
    assert.equal(edited.length, text.length);
    writeFileSync(copy.bundle, edited);
    refused('bundle edited to the same length', cache, /bundle has changed/);
    const r = loadInChild(copy.bundle);
    assert.match(r.stack, /GOT 0/, 'the edited code is what runs');
  } finally {
    copy.cleanup();
  }
});

test('a recording that fails leaves the cache that was there, and no file of its own', () => {
  const copy = bundleCopy();
  try {
    recordCache(copy.bundle);
    const cache = cachePathOf(copy.bundle);
    const before = readFileSync(cache);
    // A recording that cannot run its warm-up (no directory for the warm-up's pool). One that removed
    // the cache before it started also left every program started meanwhile without one, and two at
    // once (two builds, a build and an `npm rebuild`) removed each other's: one failed, finding no
    // cache where it had just put its own.
    const record = `const { recordCache } = await import(${JSON.stringify(RECORDER)}); recordCache(${JSON.stringify(copy.bundle)});`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', record], { encoding: 'utf8', env: { ...process.env, TMPDIR: join(copy.bundle, 'not-a-directory') } });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /ENOTDIR/);
    assert.deepEqual(readFileSync(cache), before);
    assert.equal(loadInChild(copy.bundle).cache, 'accepted');
    assert.deepEqual(readdirSync(dirname(copy.bundle)).sort(), ['pmpool.bundle.cjs', 'pmpool.bundle.cjs.cache']);
  } finally {
    copy.cleanup();
  }
});

test('checksum64: the sum the addon computes equals its JavaScript definition, and any change to one word changes it', () => {
  const rng = new Prng(0x5eed);
  for (const n of [0, 1, 7, 8, 9, 63, 64, 65, 4095, 65536, 200_003]) {
    const bytes = new Uint8Array(n).map(() => rng.int(256));
    const sum = checksum64(bytes);
    assert.equal(sum, checksumReference(bytes), `${n} bytes`);
    assert.match(sum, /^[0-9a-f]{16}$/);
    if (n === 0) continue;
    // A view into a larger buffer sums its own bytes only.
    const framed = new Uint8Array(n + 11);
    framed.set(bytes, 5);
    assert.equal(checksum64(framed.subarray(5, 5 + n)), sum, `${n} bytes at an offset`);
    for (let k = 0; k < 16; k++) {
      const flipped = Uint8Array.from(bytes);
      flipped[rng.int(n)]! ^= 1 << rng.int(8);
      assert.notEqual(checksum64(flipped), sum, `a flipped bit in ${n} bytes`);
    }
    assert.notEqual(checksum64(bytes.subarray(0, n - 1)), sum, 'one byte shorter');
  }
  for (const bad of [null, 'text', [1, 2, 3], new Uint16Array(4), new ArrayBuffer(8)]) {
    assert.throws(() => checksum64(bad as unknown as Uint8Array), TypeError, String(bad));
  }
});

test('the payload of a cache file starts on an 8-byte boundary, whatever the length of the path its header names', () => {
  // V8 copies a payload that is not aligned in memory before it reads it (~0.2 ms of every start).
  const payloadStart = (file: Buffer): number => file.indexOf(10, file.indexOf(10) + 1) + 1;
  const recorded = readFileSync(cachePathOf(BUNDLE));
  assert.equal(payloadStart(recorded) % PAYLOAD_ALIGN, 0, 'the cache the build recorded');
  const bytes = readFileSync(BUNDLE);
  const payload = Uint8Array.from({ length: 64 }, (_, i) => i);
  for (let n = 1; n <= 2 * PAYLOAD_ALIGN; n++) {
    for (const bundle of [`/${'p'.repeat(n)}/pmpool.bundle.cjs`, `/ü${'p'.repeat(n)}/pmpool.bundle.cjs`]) {
      const header: CacheHeader = { bundle, bundleChecksum: checksum64(bytes), payloadChecksum: checksum64(payload), node: process.version };
      const file = encodeCache(header, payload);
      assert.equal(payloadStart(file) % PAYLOAD_ALIGN, 0, bundle);
      const checked = checkCache(Buffer.from(Uint8Array.from(file).buffer), bundle, bytes);
      assert.ok('payload' in checked, JSON.stringify(checked));
      assert.deepEqual(Uint8Array.from(checked.payload), payload);
      assert.equal(checked.payload.byteOffset % PAYLOAD_ALIGN, 0);
    }
  }
});

test('checkCache: the header binds the bundle path, the Node, the bundle bytes and the payload', () => {
  const file = readFileSync(cachePathOf(BUNDLE));
  const bytes = readFileSync(BUNDLE);
  assert.ok('payload' in checkCache(file, BUNDLE, bytes));
  for (const at of [0, bytes.length >>> 1, bytes.length - 1]) {
    const edited = Buffer.from(bytes);
    edited[at]! ^= 0x20;
    assert.deepEqual(checkCache(file, BUNDLE, edited), { problem: 'the bundle has changed since it was recorded' });
  }
  assert.deepEqual(checkCache(file, '/elsewhere/pmpool.bundle.cjs', bytes), { problem: `it was recorded for ${BUNDLE}` });
  // Whatever JSON a damaged header line holds is a refusal, not a TypeError out of the import.
  for (const value of [null, 42, 'text', [], true]) {
    assert.deepEqual(checkCache(reheader(file, () => value), BUNDLE, bytes), { problem: 'its header is not a JSON object' }, JSON.stringify(value));
  }
  assert.deepEqual(checkCache(reheader(file, (h) => ({ ...h, bundle: { toString: 1 } })), BUNDLE, bytes), { problem: 'it was recorded for {"toString":1}' });
  assert.deepEqual(checkCache(reheader(file, (h) => ({ ...h, node: { toString: 1 } })), BUNDLE, bytes), { problem: `it was recorded by Node {"toString":1}, not ${process.version}` });
  assert.deepEqual(checkCache(reheader(file, ({ node: _, ...h }) => h), BUNDLE, bytes), { problem: `it was recorded by Node undefined, not ${process.version}` });
  const otherNode = reheader(file, (h) => ({ ...h, node: 'v20.0.0-other' }));
  assert.deepEqual(checkCache(otherNode, BUNDLE, bytes), { problem: `it was recorded by Node v20.0.0-other, not ${process.version}` });
});
