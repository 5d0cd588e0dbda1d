/**
 * Records V8's code cache of the bundle (src/entry/bundle-loader.ts says why
 * and what guards it), where the package is installed and with the Node that
 * will run it: by the build (tools/bundle.ts) and at `npm install`
 * (scripts/record-code-cache.mjs).
 *
 * One child process creates a pool and hands it over; a second receives it,
 * restores, allocates and hands over again, then writes the cache
 * (tools/warm-bundle.ts). The children run without NODE_OPTIONS: V8 refuses
 * a cache recorded under other flags. The cache is written to a file of its
 * own, which a third child loads the bundle with, as a program would: only
 * a cache it reports accepted is renamed into place. Until then the cache
 * that was there stays, for the programs that start meanwhile and when the
 * recording fails; two recordings at once each put a whole cache in place.
 *
 *   node dist/tools/record-cache.js [--at-install]
 * At install a failure is a warning: the bundle works without a cache.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cachePathOf, encodeCache } from '../src/entry/bundle-loader.js';
import { checksum64 } from '../src/entry/checksum.js';

const dist = fileURLToPath(new URL('..', import.meta.url));
export const BUNDLE = join(dist, 'pmpool.bundle.cjs');
const WARM = join(dist, 'tools', 'warm-bundle.js');
const LOADER = join(dist, 'src', 'entry', 'bundle-loader.js');

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  delete env.PMPOOL_FDT;
  return env;
}

function run(args: string[], what: string): string {
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: childEnv() });
  if (r.status !== 0) throw new Error(`${what} failed (${r.signal ?? `exit ${r.status}`}): ${r.stderr.trim()}`);
  return r.stdout;
}

export function recordCache(bundlePath: string = BUNDLE): void {
  const cachePath = cachePathOf(bundlePath);
  const temporary = `${cachePath}.${process.pid}`;
  const bundleChecksum = checksum64(readFileSync(bundlePath));
  const scratch = mkdtempSync(join(tmpdir(), 'pmpool-warm-'));
  try {
    const pool = `--pmpool=${join(scratch, 'pool')},64M`;
    const blob = join(scratch, 'handover.dtb');
    const payload = join(scratch, 'payload');
    const warm = [WARM, `--bundle=${bundlePath}`, `--scratch=${scratch}`, pool];
    run([...warm, '--phase=hand-over', `--blob=${blob}`], 'the warm-up hand-over');
    run([...warm, '--phase=record', `--pmpool-fdt=${blob}`, `--cache=${payload}`], 'the warm-up record');
    const bytes = readFileSync(payload);
    // The bytes the warm-up compiled: read before it, and unchanged after it.
    if (checksum64(readFileSync(bundlePath)) !== bundleChecksum) throw new Error(`${bundlePath} changed while its cache was recorded`);
    writeFileSync(temporary, encodeCache({ bundle: bundlePath, bundleChecksum, payloadChecksum: checksum64(bytes), node: process.version }, bytes));
    // The cache as a program would load it (the header binds the bundle's path, not the cache's).
    const check = `const { loadBundle } = await import(${JSON.stringify(LOADER)}); const b = loadBundle(${JSON.stringify(bundlePath)}, ${JSON.stringify(temporary)}); console.log(b.cache, b.cacheProblem ?? '');`;
    const outcome = run(['--input-type=module', '-e', check], 'loading the bundle with its cache').trim();
    if (outcome !== 'accepted') throw new Error(`the recorded cache is not used: ${outcome}`);
    renameSync(temporary, cachePath); // a reader sees the old file or the new, whole
  } finally {
    rmSync(temporary, { force: true }); // a cache refused, or never finished
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const atInstall = process.argv.includes('--at-install');
  try {
    recordCache();
  } catch (e) {
    process.stderr.write(`pmpool: no code cache recorded (${(e as Error).message}); pmpool works without it, only its start is slower\n`);
    process.exit(atInstall ? 0 : 1);
  }
}
