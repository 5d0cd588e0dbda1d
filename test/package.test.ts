/**
 * The package as npm ships and installs it: what `files` puts in the
 * tarball, and how its entries fail when the native addon cannot be used.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './support/child.js';

/** The package root (dist/test/ is two levels below it). */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

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
