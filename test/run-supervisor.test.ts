import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_PATH, shmPath } from './support/child.js';

const APP = fileURLToPath(new URL('./support/counter-app.js', import.meta.url));

test('pmpool run: SIGHUP upgrades in place with the handover; a SIGKILLed program is restarted and recovers', async () => {
  const { path, cleanup } = shmPath('run');
  const supervisor = spawn(process.execPath, [CLI_PATH, 'run', '--pool', `${path}:16M`, '--', process.execPath, APP], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  supervisor.stdout.on('data', (d) => (stdout += d));
  supervisor.stderr.on('data', (d) => (stderr += d));
  const starts = () => [...stdout.matchAll(/started pid=(\d+) count=(\d+) generation=(\d+)/g)].map((m) => ({ pid: Number(m[1]), count: Number(m[2]), generation: Number(m[3]) }));
  const waitFor = async (n: number) => {
    for (let i = 0; i < 600 && starts().length < n; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(starts().length, n, `expected ${n} starts; stdout:\n${stdout}\nstderr:\n${stderr}`);
  };
  try {
    await waitFor(1);
    supervisor.kill('SIGHUP'); // live upgrade
    await waitFor(2);
    const [first, upgraded] = starts();
    assert.equal(upgraded!.pid, first!.pid, 'the upgrade keeps the PID (execve in place)');
    assert.equal(upgraded!.generation, 1);
    assert.equal(upgraded!.count, first!.count + 1, 'the map carried its count across the upgrade');
    process.kill(upgraded!.pid, 'SIGKILL'); // a crash
    await waitFor(3);
    const restarted = starts()[2]!;
    assert.notEqual(restarted.pid, upgraded!.pid);
    assert.equal(restarted.generation, 0, 'a cold start: no handover after a crash');
    assert.equal(restarted.count, upgraded!.count + 1, 'the map survived the SIGKILL');
    assert.match(stderr, /restarting/);
    supervisor.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => supervisor.on('exit', (c) => resolve(c)));
    assert.equal(code, 0);
  } finally {
    if (supervisor.exitCode === null) supervisor.kill('SIGKILL');
    for (const s of starts()) {
      try {
        process.kill(s.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    cleanup();
  }
});

test('pmpool run: stopped by SIGTERM or SIGINT, it exits with the status the signal gave the program (128 + its number)', async () => {
  // A program that keeps the default disposition: the forwarded signal ends it. A shell would say 143 and 130.
  for (const [signal, status] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    const supervisor = spawn(process.execPath, [CLI_PATH, 'run', '--', process.execPath, '-e', 'setInterval(() => {}, 1000); console.log("up")'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    supervisor.stdout.on('data', (d) => (stdout += d));
    supervisor.stderr.on('data', (d) => (stderr += d));
    try {
      for (let i = 0; i < 600 && !stdout.includes('up\n'); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(stdout.includes('up\n'), stdout);
      const exit = new Promise<number | null>((resolve) => supervisor.on('exit', (c) => resolve(c)));
      supervisor.kill(signal);
      assert.equal(await exit, status, `${signal}`);
    } finally {
      if (supervisor.exitCode === null) supervisor.kill('SIGKILL');
      // The program, should the test have failed before the signal ended it.
      const pid = /started \S+ as pid (\d+)/.exec(stderr)?.[1];
      if (pid !== undefined) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone, as it should be */
        }
      }
    }
  }
});

test('pmpool run: a program with no SIGHUP handler dies of an upgrade, and is started again at once, never given up on', async () => {
  const { path, cleanup } = shmPath('run-no-hup');
  // Prints a line when it is up, then waits; SIGHUP's default action ends it.
  const program = "process.stdout.write('up ' + process.pid + '\\n'); setInterval(() => {}, 1000);";
  const supervisor = spawn(process.execPath, [CLI_PATH, 'run', '--pool', `${path}:4M`, '--', process.execPath, '-e', program, '--'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  supervisor.stdout.on('data', (d) => (stdout += d));
  supervisor.stderr.on('data', (d) => (stderr += d));
  const ups = () => [...stdout.matchAll(/^up (\d+)$/gm)].map((m) => Number(m[1]));
  const waitFor = async (n: number) => {
    for (let i = 0; i < 600 && ups().length < n; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(ups().length, n, `expected ${n} starts; stdout:\n${stdout}\nstderr:\n${stderr}`);
  };
  try {
    await waitFor(1);
    // More upgrades than the crashes it tolerates in a minute (5): each one a cold start, none a failure.
    for (let n = 2; n <= 8; n++) {
      supervisor.kill('SIGHUP');
      await waitFor(n);
    }
    assert.equal(new Set(ups()).size, 8, 'each upgrade started a new process');
    assert.equal(stderr.match(/ended on the upgrade signal \(it has no SIGHUP handler\); starting .* again, cold/g)?.length, 7, stderr);
    assert.doesNotMatch(stderr, /giving up|restarting/);
    // A crash is still a crash.
    process.kill(ups()[7]!, 'SIGKILL');
    await waitFor(9);
    assert.match(stderr, /ended \(SIGKILL\); restarting/);
    supervisor.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => supervisor.on('exit', (c) => resolve(c)));
    assert.equal(code, 143, 'stopped by SIGTERM: 128 + 15');
  } finally {
    if (supervisor.exitCode === null) supervisor.kill('SIGKILL');
    cleanup();
  }
});

test('pmpool run: the program\'s stdout is its own output, byte for byte; the supervisor speaks on stderr', async () => {
  // A program whose stdout is data (JSON read by the next program of a pipeline).
  const program = 'process.stdout.write(JSON.stringify({ pid: process.pid }) + "\\n")';
  const supervisor = spawn(process.execPath, [CLI_PATH, 'run', '--', process.execPath, '-e', program], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  supervisor.stdout.on('data', (d) => (stdout += d));
  supervisor.stderr.on('data', (d) => (stderr += d));
  try {
    const code = await new Promise<number | null>((resolve) => supervisor.on('close', (c) => resolve(c)));
    assert.equal(code, 0, stderr);
    const own = /^\{"pid":(\d+)\}\n$/.exec(stdout);
    assert.ok(own, `stdout holds nothing but the program's own line: ${JSON.stringify(stdout)}`);
    assert.match(stderr, new RegExp(`^pmpool run: started \\S+ as pid ${own[1]}$`, 'm'));
  } finally {
    if (supervisor.exitCode === null) supervisor.kill('SIGKILL');
  }
});

test('pmpool run: a restart whose program can no longer be spawned (ENOTDIR) ends the supervisor with exit 1 and says why', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pmpool-run-'));
  const { path, cleanup } = shmPath('run-gone');
  // The program lives in DIR/sub; when it runs, it puts a file where sub was and crashes, so the
  // restart's path goes through a regular file: spawn() throws ENOTDIR rather than emit 'error'.
  const sub = join(dir, 'sub');
  const program = join(sub, 'prog');
  mkdirSync(sub);
  writeFileSync(program, `#!/bin/sh\nrm -rf '${sub}' && echo > '${sub}'\nexit 3\n`);
  chmodSync(program, 0o755);
  const supervisor = spawn(process.execPath, [CLI_PATH, 'run', '--pool', `${path}:4M`, '--', program], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  supervisor.stderr.on('data', (d) => (stderr += d));
  supervisor.stdout.resume();
  try {
    const code = await new Promise<number | null>((resolve) => supervisor.on('close', (c) => resolve(c)));
    assert.match(stderr, /ended \(exit 3\); restarting/);
    assert.match(stderr, /^pmpool run: cannot start .*ENOTDIR/m);
    assert.doesNotMatch(stderr, /internal error|Uncaught|at ChildProcess/);
    assert.equal(code, 1, stderr);
    assert.equal(existsSync(path), true, 'the pool a program ran with stays');
  } finally {
    if (supervisor.exitCode === null) supervisor.kill('SIGKILL');
    cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pmpool run: the pool it created stays when the program, after it ran, cannot be started again after an upgrade', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pmpool-run-'));
  const { path, cleanup } = shmPath('run-upgrade-gone');
  // A program without a SIGHUP handler: the upgrade is a cold start of what is on disk, and
  // nothing is there any more (a deployment that removed it). It ran with the pool: its state is there.
  const program = join(dir, 'prog');
  writeFileSync(program, `#!/bin/sh\necho "up $$"\nexec sleep 1000\n`);
  chmodSync(program, 0o755);
  const supervisor = spawn(process.execPath, [CLI_PATH, 'run', '--pool', `${path}:4M`, '--', program], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  supervisor.stdout.on('data', (d) => (stdout += d));
  supervisor.stderr.on('data', (d) => (stderr += d));
  try {
    for (let i = 0; i < 600 && !/^up \d+$/m.test(stdout); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(stdout, /^up \d+$/m, stderr);
    rmSync(program);
    const exit = new Promise<number | null>((resolve) => supervisor.on('close', (c) => resolve(c)));
    supervisor.kill('SIGHUP');
    assert.equal(await exit, 1, stderr);
    assert.match(stderr, /ended on the upgrade signal/);
    assert.match(stderr, /^pmpool run: cannot start .*ENOENT/m);
    assert.equal(existsSync(path), true, 'the pool the program ran with is not removed');
  } finally {
    if (supervisor.exitCode === null) supervisor.kill('SIGKILL');
    const pid = /^up (\d+)$/m.exec(stdout)?.[1];
    if (pid !== undefined) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone, as it should be */
      }
    }
    cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});
