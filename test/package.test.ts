/**
 * The package as npm ships and installs it: what `files` puts in the
 * tarball, how it installs and loads where a user installs it, and how its
 * entries fail when the native addon cannot be used.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './support/child.js';
import { Fdt } from '../src/fdt/index.js';

/** The package root (dist/test/ is two levels below it). */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The files `npm pack` puts in the tarball, relative to the package root (scripts off: the build is there). */
function packedFiles(): Set<string> {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return new Set((JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path));
}

/**
 * The files reached from `starts` by relative specifiers ('./x.js', '../dist/y.js': imports, dynamic
 * imports, new URL(...) and lazily imported names alike), relative to the package root. `.d.ts`
 * files are followed to the declarations of what they import.
 */
function reached(starts: string[]): Set<string> {
  const seen = new Set<string>();
  const queue = [...starts];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const [, specifier] of text.matchAll(/['"](\.{1,2}\/[^'"\s]+\.(?:js|cjs|mjs))['"]/g)) {
      let target = relative(ROOT, join(ROOT, dirname(file), specifier!));
      if (file.endsWith('.d.ts') || file.endsWith('.d.cts')) target = target.replace(/\.js$/, '.d.ts');
      if (existsSync(join(ROOT, target))) queue.push(target);
    }
  }
  return seen;
}

/**
 * A package root holding the entries and the bundle (each finds the addon from the package root
 * above dist/), and `addon` as build/Release/pmpool.node when given.
 */
function packageWith(addon: Uint8Array | undefined): { dir: string; cleanup: () => void } {
  const root = tempDir('pmpool-package-');
  mkdirSync(join(root.dir, 'dist'));
  writeFileSync(join(root.dir, 'package.json'), JSON.stringify({ name: 'pmpool', type: 'module' }));
  for (const f of ['pmpool.js', 'pmpool.cjs', 'pmpool.bundle.cjs']) copyFileSync(join(ROOT, 'dist', f), join(root.dir, 'dist', f));
  if (addon !== undefined) {
    mkdirSync(join(root.dir, 'build', 'Release'), { recursive: true });
    writeFileSync(join(root.dir, 'build', 'Release', 'pmpool.node'), addon);
  }
  return root;
}

/** stderr of `require()` and of `import` of the package at `dir`, each of which must fail. */
function loadFailures(dir: string): string[] {
  return [
    ['-e', `require(${JSON.stringify(join(dir, 'dist', 'pmpool.cjs'))})`],
    ['--input-type=module', '-e', `await import(${JSON.stringify(join(dir, 'dist', 'pmpool.js'))})`],
  ].map((args) => {
    const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    return r.stderr;
  });
}

test('an addon that is not built: both entries say where they looked and how to build it', () => {
  const pkg = packageWith(undefined);
  try {
    for (const stderr of loadFailures(pkg.dir)) {
      assert.match(stderr, /pmpool: the native addon is not built \(looked for .*build\/Release\/pmpool\.node/);
      assert.match(stderr, /npm rebuild pmpool/);
    }
  } finally {
    pkg.cleanup();
  }
});

test('an addon that cannot be loaded (another machine\'s, damaged): both entries say whose it is and how to rebuild it', () => {
  // What a node_modules copied from another architecture, or a build cut short, leaves there.
  const pkg = packageWith(new TextEncoder().encode('not a shared object\n'));
  try {
    const addon = join(pkg.dir, 'build', 'Release', 'pmpool.node');
    for (const stderr of loadFailures(pkg.dir)) {
      assert.ok(stderr.includes(`pmpool: the native addon ${addon} cannot be loaded (`), stderr);
      assert.match(stderr, /Rebuild it on this machine with `npm rebuild pmpool`/);
    }
  } finally {
    pkg.cleanup();
  }
});

test('the command without its addon: the usage and the fdt commands work; pool commands say how to build it (exit 1)', () => {
  const pkg = packageWith(undefined);
  try {
    cpSync(join(ROOT, 'dist', 'src'), join(pkg.dir, 'dist', 'src'), { recursive: true });
    const main = join(pkg.dir, 'dist', 'src', 'cli', 'main.js');
    const pmpool = (...args: string[]) => spawnSync(process.execPath, [main, ...args], { encoding: 'utf8' });
    const help = pmpool('--help');
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /pmpool fdt dump FILE\.dtb/);
    const dtb = join(pkg.dir, 'tree.dtb');
    const tree = new Fdt();
    tree.set('/', 'model', 'no addon');
    writeFileSync(dtb, tree.toBytes());
    const dump = pmpool('fdt', 'dump', dtb);
    assert.equal(dump.status, 0, dump.stderr);
    assert.match(dump.stdout, /model = "no addon";/);
    for (const args of [['info', join(pkg.dir, 'pool')], ['run', '--', process.execPath, '-e', '0'], ['log', 'dump', join(pkg.dir, 'pool'), 'ring']]) {
      const r = pmpool(...args);
      assert.equal(r.status, 1, `${args[0]}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^pmpool ${args[0]}: pmpool: the native addon is not built .*npm rebuild pmpool`));
      assert.doesNotMatch(r.stderr, /internal error|\n\s+at /);
    }
  } finally {
    pkg.cleanup();
  }
});

test('on a Node without process.getBuiltinModule (older than 20.16), the entries and the command say which Node they need', () => {
  // Node 20.16 is the floor (package.json engines), and npm only warns below it: the function is
  // deleted here to stand for an older Node.
  const forget = 'delete process.getBuiltinModule;';
  const runs = [
    ['-e', `${forget} require(${JSON.stringify(join(ROOT, 'dist', 'pmpool.cjs'))})`],
    ['--input-type=module', '-e', `${forget} await import(${JSON.stringify(join(ROOT, 'dist', 'pmpool.js'))})`],
    ['--import', `data:text/javascript,${encodeURIComponent(forget)}`, join(ROOT, 'dist', 'src', 'cli', 'main.js'), 'info', '/nonexistent'],
  ];
  for (const args of runs) {
    const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, /pmpool needs Node\.js 20\.16 or later \(for process\.getBuiltinModule\); this is Node\.js v/);
    assert.doesNotMatch(r.stderr, /is not a function/);
  }
});

test('files: the tarball holds everything the entries, the command and the install need, and nothing test-only', () => {
  const packed = packedFiles();
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
  // Every path package.json names: main, types, exports' targets, bin.
  const named = JSON.stringify([pkg.main, pkg.types, pkg.exports, pkg.bin]).match(/\.\/[^"]+/g)!.map((p) => p.slice(2));
  // What runs: the entries and their bundle, the command (and the programs it starts), the install step.
  const runs = reached(['dist/pmpool.js', 'dist/pmpool.cjs', 'bin/pmpool.js', 'dist/src/cli/demo-app-main.js', 'scripts/record-code-cache.mjs', 'dist/tools/record-cache.js', 'dist/tools/warm-bundle.js']);
  const types = reached(['dist/src/index.d.ts', 'dist/pmpool.d.cts']);
  const needed = [...named, ...runs, ...types, 'dist/pmpool.bundle.cjs', 'dist/pmpool.bundle.cjs.map', 'binding.gyp', 'native/pmpool.c'];
  assert.deepEqual(needed.filter((f) => !packed.has(f)), [], 'needed but not packed');
  assert.ok(runs.has('dist/src/cli/log-command.js') && runs.has('dist/tools/record-cache.js'), 'lazily imported modules are followed');

  // Under dist/, only modules something above reaches (by their code or their declarations), with
  // their source maps: no tests, benchmarks, test-only hooks, or a code cache recorded elsewhere.
  const stems = new Set([...runs, ...types].map((f) => f.replace(/(\.d\.ts|\.d\.cts|\.js|\.cjs)$/, '')));
  const extra = [...packed].filter((f) => f.startsWith('dist/') && !stems.has(f.replace(/(\.d\.ts|\.d\.cts|\.js\.map|\.cjs\.map|\.js|\.cjs)$/, '')));
  assert.deepEqual(extra, [], 'packed but reached by nothing');
  assert.deepEqual([...packed].filter((f) => /^(build|test|bench|tools|src)\/|\.cache$/.test(f)), []);
});

test('installed from its tarball into a path with spaces and non-ASCII: the install records the cache, both entries use it, the command runs and records one for a V8 flag', () => {
  // npm pack with scripts off packs the build that is there; npm install runs the package's own install
  // step (node-gyp, then the code cache's recording) where a user's would, with the Node that runs it.
  // Offline: the package has no dependencies, and the test needs no registry.
  const scratch = tempDir('pmpool-install-');
  try {
    const r = spawnSync('npm', ['pack', '--ignore-scripts', '--pack-destination', scratch.dir], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const tarball = join(scratch.dir, r.stdout.trim().split('\n').pop()!);
    const project = join(scratch.dir, 'a project', 'ünï çødé');
    mkdirSync(project, { recursive: true });
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
    const install = spawnSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts', tarball], { cwd: project, encoding: 'utf8' });
    assert.equal(install.status, 0, install.stderr);
    assert.doesNotMatch(install.stderr, /no code cache recorded/);

    const outcome = "const [b] = globalThis[Symbol.for('pmpool.loadedBundles')].values(); console.log(b.cache, b.cacheProblem ?? '', typeof pm.Pool.create, pm.Pool.name);";
    const required = spawnSync(process.execPath, ['-e', `const pm = require('pmpool'); ${outcome}`], { cwd: project, encoding: 'utf8' });
    assert.equal(required.stdout.trim(), 'accepted  function Pool', required.stderr);
    const imported = spawnSync(process.execPath, ['--input-type=module', '-e', `import * as pm from 'pmpool'; ${outcome}`], { cwd: project, encoding: 'utf8' });
    assert.equal(imported.stdout.trim(), 'accepted  function Pool', imported.stderr);

    const help = spawnSync(join(project, 'node_modules', '.bin', 'pmpool'), ['--help'], { cwd: project, encoding: 'utf8' });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^pmpool — a persistent memory pool for Node\.js/);

    // A program started with a V8 flag: refused the install's cache, then given one recorded for it.
    const flag = '--max-old-space-size=3191';
    const flagged = () => spawnSync(process.execPath, [flag, '-e', `const pm = require('pmpool'); ${outcome}`], { cwd: project, encoding: 'utf8' });
    assert.match(flagged().stdout, /^rejected V8 refused it: .*code-cache record -- --max-old-space-size=3191/);
    const record = spawnSync(join(project, 'node_modules', '.bin', 'pmpool'), ['code-cache', 'record', '--', flag], { cwd: project, encoding: 'utf8' });
    assert.equal(record.status, 0, record.stderr);
    assert.equal(flagged().stdout.trim(), 'accepted  function Pool');
  } finally {
    scratch.cleanup();
  }
});
