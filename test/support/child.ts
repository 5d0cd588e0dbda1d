/**
 * Real child processes for tests: a module snippet run by a fresh `node`,
 * importing pmpool from the compiled tree.
 */
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Absolute file URL of the compiled public entry point, for `import` in child snippets. */
export const PMPOOL_ENTRY = new URL('../../src/index.js', import.meta.url).href;

/** Absolute path of the compiled CLI. */
export const CLI_PATH = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/**
 * Runs an ES module snippet in a new node process and waits for it, killing it
 * at `timeoutMs` (so that code which may loop for ever fails a test instead of hanging it).
 */
export function runModule(source: string, args: string[] = [], nodeFlags: string[] = [], timeoutMs = 120_000): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [...nodeFlags, '--input-type=module', '-e', source, ...args], {
    encoding: 'utf8',
    timeout: timeoutMs,
  });
}

/** Starts an ES module snippet in a new node process without waiting. */
export function startModule(source: string, args: string[] = [], nodeFlags: string[] = []) {
  return spawn(process.execPath, [...nodeFlags, '--input-type=module', '-e', source, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** A fresh directory under the system temp dir, removed by the returned function. */
export function tempDir(prefix = 'pmpool-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A unique path under /dev/shm, removed by the returned function. */
export function shmPath(label: string): { path: string; cleanup: () => void } {
  const path = `/dev/shm/pmpool-test-${label}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  return { path, cleanup: () => rmSync(path, { force: true }) };
}
