/**
 * A program run under Node's CPU profiler hands over in place, again and
 * again. V8's sampler thread sends SIGPROF; one sent while execve runs used
 * to reach the new image before it had a handler and kill it ("Profiling
 * timer expired", exit 155). The addon ignores SIGPROF across the execve.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { shmPath, tempDir } from './support/child.js';

const APP = fileURLToPath(new URL('./support/counter-app.js', import.meta.url));
const UPGRADES = 8;

test('a program under --cpu-prof survives repeated in-place upgrades', async () => {
  const { path, cleanup } = shmPath('profiled');
  const profiles = tempDir('pmpool-prof-');
  // A 50 µs sampling interval makes a SIGPROF in flight during execve near certain at every upgrade.
  const flags = ['--cpu-prof', `--cpu-prof-dir=${profiles.dir}`, '--cpu-prof-interval=50'];
  const child = spawn(process.execPath, [...flags, APP, `--pmpool=${path},16M`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const generations = () => [...stdout.matchAll(/started pid=(\d+) count=\d+ generation=(\d+)/g)].map((m) => ({ pid: Number(m[1]), generation: Number(m[2]) }));
  const waitFor = async (n: number) => {
    for (let i = 0; i < 600 && generations().length < n && child.exitCode === null && child.signalCode === null; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(generations().length, n, `expected ${n} starts; exit ${child.exitCode ?? child.signalCode}; stdout:\n${stdout}\nstderr:\n${stderr}`);
  };
  try {
    await waitFor(1);
    for (let i = 1; i <= UPGRADES; i++) {
      child.kill('SIGHUP');
      await waitFor(i + 1);
    }
    assert.deepEqual(generations().map((g) => g.generation), Array.from({ length: UPGRADES + 1 }, (_, i) => i));
    assert.ok(generations().every((g) => g.pid === child.pid), 'every upgrade replaced the image in place');
    child.kill('SIGTERM');
    assert.deepEqual(await exited, { code: 0, signal: null });
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    cleanup();
    profiles.cleanup();
  }
});
