/**
 * exec()'s teardown of the old image (native/pmpool.c, the keeper): by
 * default a process that shares the old image frees it while the next
 * program starts. What must hold whichever way it goes: nothing of the old
 * program outlives the exec — no descriptor (a flock, a pipe), no child the
 * next program would have to reap, no process once the image is freed — and
 * a failed exec leaves the program as it was.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from '../src/index.js';
import { PMPOOL_ENTRY, runModule, shmPath, startModule, tempDir } from './support/child.js';

/** Why the tests that make pid namespaces cannot run here (they need root and unshare(1)), or false. */
const NO_PID_NAMESPACES = process.getuid?.() !== 0 || !existsSync('/usr/bin/unshare') ? 'needs root and unshare(1)' : false;

/** Pids of the processes whose command line holds `token` (a zombie has none: its image is gone). */
function processesWith(token: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'latin1').includes(token)) found.push(Number(entry));
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

/** Waits, polling, until no process holds `token` in its command line; returns those left at the deadline. */
async function untilNoneWith(token: string, deadlineMs = 10_000): Promise<number[]> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const left = processesWith(token);
    if (left.length === 0 || Date.now() > end) return left;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A program that takes a pool from its command line, holds `lockFile` under an exclusive flock
 * (a FileRegion opened { exclusive: true }, a window of it mapped: a mapping holds the file it
 * was mapped from open, and the keeper holds the old program's mappings), and execs `next`.
 */
function execHoldingLock(lockFile: string, next: string[], teardown: string, blobDir: string, token: string) {
  const { path, cleanup } = shmPath('teardown');
  try {
    return runModule(
      `import { kexec, FileRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
       kexec.poolFromCommandLine();
       FileRegion.open(${JSON.stringify(lockFile)}, { exclusive: true }).map(0, 4096).bytes()[0] = 1;
       await kexec.exec(${JSON.stringify(next[0])}, ${JSON.stringify(next.slice(1))}, { teardown: ${JSON.stringify(teardown)}, blobDir: ${JSON.stringify(blobDir)}, passFlag: false });`,
      ['--', `--pmpool=${path},1M`, token],
    );
  } finally {
    cleanup();
  }
}

describe('exec(): the old image torn down', () => {
  test('the next program takes at once an exclusive flock the old one held: no copy of a descriptor outlives the exec', () => {
    const tmp = tempDir();
    try {
      const lockFile = join(tmp.dir, 'locked');
      writeFileSync(lockFile, Buffer.alloc(4096));
      // flock(1) starts in about a millisecond, well before a Node image is freed: a keeper that still
      // held its copy of the region's descriptor would hold the lock with it (-E: exit 75 on conflict).
      for (const teardown of ['background', 'inline', 'auto', 'background', 'background']) {
        const token = `pmpool-teardown-lock-${process.pid}-${Math.random().toString(36).slice(2)}`;
        const r = execHoldingLock(lockFile, ['/usr/bin/flock', '-n', '-x', '-E', '75', lockFile, '-c', 'echo locked'], teardown, tmp.dir, token);
        assert.equal(r.status, 0, `${teardown}: flock exited ${r.status}: ${r.stderr}`);
        assert.equal(r.stdout, 'locked\n');
      }
    } finally {
      tmp.cleanup();
    }
  });

  test('the next program has no child it must reap, and the process that freed the old image is gone', async () => {
    const tmp = tempDir();
    try {
      for (const teardown of ['background', 'auto', 'inline']) {
        const token = `pmpool-teardown-children-${process.pid}-${Math.random().toString(36).slice(2)}`;
        // The next program looks once the old image has had time to go: a keeper made its child would be
        // there for good (alive, or a zombie nobody reaps).
        const next = `setTimeout(() => process.stdout.write(JSON.stringify(require('node:fs').readFileSync('/proc/self/task/' + process.pid + '/children', 'utf8').trim())), 300)`;
        const lockFile = join(tmp.dir, `lock-${teardown}`);
        writeFileSync(lockFile, Buffer.alloc(4096));
        const r = execHoldingLock(lockFile, [process.execPath, '-e', next], teardown, tmp.dir, token);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(JSON.parse(r.stdout), '', `${teardown}: the next program has children`);
        // The keeper's command line is the old program's (it runs on the old image), token and all.
        assert.deepEqual(await untilNoneWith(token), [], `${teardown}: a process of the old image is left`);
      }
    } finally {
      tmp.cleanup();
    }
  });

  test('as pid 1 of a pid namespace, where orphans come back to it, exec() makes no keeper, even asked for one, and leaves no child', { skip: NO_PID_NAMESPACES }, () => {
    const { path, cleanup } = shmPath('teardown-pid1');
    const tmp = tempDir();
    try {
      const next = `setTimeout(() => process.stdout.write(JSON.stringify({ pid: process.pid, children: require('node:fs').readFileSync('/proc/self/task/' + process.pid + '/children', 'utf8').trim() })), 300)`;
      const program = `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
        kexec.poolFromCommandLine();
        await kexec.exec(process.execPath, ['-e', ${JSON.stringify(next)}], { teardown: 'background', passFlag: false, blobDir: ${JSON.stringify(tmp.dir)} });`;
      const r = spawnSync('/usr/bin/unshare', ['--pid', '--fork', '--mount-proc', process.execPath, '--input-type=module', '-e', program, '--', `--pmpool=${path},1M`], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { pid: 1, children: '' });
    } finally {
      cleanup();
      tmp.cleanup();
    }
  });

  test("in a container's pid namespace whose pid 1 reaps nothing, 'auto' makes no keeper; 'background' leaves it a zombie there", { skip: NO_PID_NAMESPACES }, () => {
    // Pid 1 is a Node program, as in a container started with \`npm start\`: libuv waits for the
    // children it spawned, nothing else. It runs the exec'ing program, then lists its own children.
    const seen: Record<string, { comm: string; state: string }[]> = {};
    for (const teardown of ['auto', 'background']) {
      const { path, cleanup } = shmPath(`teardown-ns-${teardown}`);
      const tmp = tempDir();
      try {
        const program = `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
          kexec.poolFromCommandLine();
          await kexec.exec('/bin/true', [], { teardown: ${JSON.stringify(teardown)}, passFlag: false, blobDir: ${JSON.stringify(tmp.dir)} });`;
        const init = `const { spawnSync } = require('node:child_process');
          const { readFileSync } = require('node:fs');
          const r = spawnSync(process.execPath, ['--input-type=module', '-e', ${JSON.stringify(program)}, '--', ${JSON.stringify(`--pmpool=${path},1M`)}], { stdio: 'inherit' });
          if (r.status !== 0) process.exit(3);
          const children = () => readFileSync('/proc/1/task/1/children', 'utf8').trim().split(' ').filter(Boolean).map((pid) => {
            const stat = readFileSync('/proc/' + pid + '/stat', 'utf8');
            return { comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), state: stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) };
          });
          // A keeper is a child of ours from before the program's exec; it may still be freeing the
          // old image (at nice 19 on a busy machine): wait, within reason, until none is running.
          const deadline = Date.now() + 10000;
          const report = () => {
            const now = children();
            if (now.some((c) => c.state !== 'Z') && Date.now() < deadline) return setTimeout(report, 20);
            process.stdout.write(JSON.stringify(now));
          };
          report();`;
        const r = spawnSync('/usr/bin/unshare', ['--pid', '--fork', '--mount-proc', process.execPath, '-e', init], { encoding: 'utf8', timeout: 60_000 });
        assert.equal(r.status, 0, r.stderr);
        seen[teardown] = JSON.parse(r.stdout) as { comm: string; state: string }[];
      } finally {
        cleanup();
        tmp.cleanup();
      }
    }
    assert.deepEqual(seen.auto, [], "'auto' left pid 1 a child");
    assert.deepEqual(seen.background, [{ comm: 'pmpool-keeper', state: 'Z' }], "'background' is asked for where pid 1 reaps: here it does not, and the keeper stays its zombie");
  });

  test("a lock the main thread held when a worker exec'd is broken by the next program, not taken for its own main thread's", () => {
    // An execve from a worker gives the worker the main thread's pid and start time (de_thread): the
    // lock's recorded holder then reads as the next program's main thread, alive. Without the waiter's
    // rule (liveness.ts isAliveForWaiter) the restore waited 30 s and failed, and the pool stayed locked.
    const { path, cleanup } = shmPath('teardown-worker-lock');
    const internals = new URL('../src/pool/internals.js', import.meta.url).href;
    try {
      const next = `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
        const t0 = performance.now();
        kexec.incoming();
        const pool = kexec.poolFromCommandLine();
        const a = pool.alloc(1);
        pool.release(a.pfn, a.count);
        process.stdout.write(JSON.stringify({ ms: performance.now() - t0, ok: pool.check().ok }));`;
      // An ES module, as the program is (the worker inherits its --input-type=module). Its exec()
      // takes the pool lock to prepare (the generation), then runs the handover callbacks: the one
      // here has the main thread take the lock, and returns once it has. The worker's execve then
      // ends the main thread inside its hold. Cells: 0 callback running, 1 lock taken, 2 pool made.
      const worker = `import { parentPort, workerData } from 'node:worker_threads';
        import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
        const cells = new Int32Array(workerData);
        kexec.poolFromCommandLine();
        kexec.onHandover('hold', () => {
          Atomics.store(cells, 0, 1);
          Atomics.notify(cells, 0);
          Atomics.wait(cells, 1, 0);
        });
        Atomics.store(cells, 2, 1);
        Atomics.notify(cells, 2);
        kexec.exec(process.execPath, ['--input-type=module', '-e', ${JSON.stringify(next)}, '--', ${JSON.stringify(`--pmpool=${path},4M`)}], { teardown: 'inline' });`;
      const r = runModule(
        `import { Worker } from 'node:worker_threads';
         import { Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
         import { poolInternals } from ${JSON.stringify(internals)};
         const cells = new Int32Array(new SharedArrayBuffer(12));
         new Worker(${JSON.stringify(worker)}, { eval: true, argv: [${JSON.stringify(`--pmpool=${path},4M`)}], workerData: cells.buffer });
         Atomics.wait(cells, 2, 0);
         const pool = Pool.open(${JSON.stringify(path)});
         Atomics.wait(cells, 0, 0);
         poolInternals(pool).parts.control.lock(); // the main thread holds the lock from here on
         Atomics.store(cells, 1, 1);
         Atomics.notify(cells, 1);
         Atomics.wait(cells, 1, 1); // until the worker's exec ends this image`,
        [],
        [],
        60_000,
      );
      assert.equal(r.status, 0, r.stderr);
      const seen = JSON.parse(r.stdout) as { ms: number; ok: boolean };
      assert.equal(seen.ok, true, 'the pool checks clean after the lock was broken');
    } finally {
      cleanup();
    }
  });

  test("a lock the main thread held when a worker exec'd is broken by another process, while the pid lives on", async () => {
    // The same exec as above, seen from outside: the next program keeps the pid, and the holder
    // recorded — pid, main task, their start times — reads as its live main thread. Only the image
    // id (the hash of /proc/PID/auxv) tells that the holder is gone. Without it this open waits,
    // and times out, for as long as the next program runs.
    const { path, cleanup } = shmPath('teardown-worker-lock-other');
    const blobs = tempDir('pmpool-blob-');
    const internals = new URL('../src/pool/internals.js', import.meta.url).href;
    let holder: ChildProcess | undefined;
    try {
      Pool.create(path, { size: '4M' }).close();
      const worker = `import { workerData } from 'node:worker_threads';
        import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
        const cells = new Int32Array(workerData);
        Atomics.wait(cells, 0, 0);
        kexec.exec('/bin/sh', ['-c', 'echo next; exec sleep 120'], { teardown: 'inline', passFlag: false, blobDir: ${JSON.stringify(blobs.dir)} });`;
      holder = startModule(
        `import { Worker } from 'node:worker_threads';
         import { Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
         import { poolInternals } from ${JSON.stringify(internals)};
         const cells = new Int32Array(new SharedArrayBuffer(4));
         new Worker(${JSON.stringify(worker)}, { eval: true, workerData: cells.buffer });
         poolInternals(Pool.open(${JSON.stringify(path)})).parts.control.lock(); // held from here on
         Atomics.store(cells, 0, 1);
         Atomics.notify(cells, 0);
         // Until the worker's exec ends this image; should it fail, the program ends, and the test with it.
         Atomics.wait(cells, 0, 1, 30_000);
         process.exit(3);`,
      );
      const pid = holder.pid!;
      const statOf = () => readFileSync(`/proc/${pid}/stat`, 'latin1');
      const started = statOf().split(') ')[1]!.split(' ')[19];
      await new Promise<void>((resolve, reject) => {
        let out = '';
        holder!.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('next')) resolve();
        });
        holder!.once('exit', (code) => reject(new Error(`the program exited (${code}) before its next image ran`)));
      });
      // The shell has printed; its own exec of sleep follows.
      for (let i = 0; i < 200 && !/^\d+ \(sleep\) /.test(statOf()); i++) await new Promise((r) => setTimeout(r, 25));
      assert.match(statOf(), /^\d+ \(sleep\) /, 'the next program runs on the same pid');
      assert.equal(statOf().split(') ')[1]!.split(' ')[19], started, 'with the same start time');
      const pool = Pool.open(path, { lockTimeoutMs: 10_000 });
      try {
        assert.equal(pool.stats().lockBreaks, 1, 'the dead image\'s lock was broken');
        assert.equal(pool.check().ok, true);
      } finally {
        pool.close();
      }
    } finally {
      holder?.kill('SIGKILL');
      cleanup();
      blobs.cleanup();
    }
  });

  test('failed execs with a keeper each time leave no descriptor, process or quiesced pool behind', async () => {
    const token = `pmpool-teardown-failed-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const { path, cleanup } = shmPath('teardown-failed');
    try {
      const r = runModule(
        `import { readdirSync } from 'node:fs';
         import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
         const pool = kexec.poolFromCommandLine();
         const fds = () => readdirSync('/proc/self/fd').length;
         const before = fds();
         let refused = 0;
         for (let i = 0; i < 20; i++) {
           await kexec.exec('/nonexistent/pmpool-teardown-test', []).catch((e) => { if (e.code === 'EXEC_FAILED') refused++; else throw e; });
         }
         const a = pool.alloc(1);
         pool.release(a.pfn, a.count);
         const after = fds(); // before process.stdout is first read: on a pipe, making the stream opens descriptors of Node's own
         process.stdout.write(JSON.stringify({ refused, fdsBefore: before, fdsAfter: after }));`,
        ['--', `--pmpool=${path},1M`, token],
      );
      assert.equal(r.status, 0, r.stderr);
      const seen = JSON.parse(r.stdout) as { refused: number; fdsBefore: number; fdsAfter: number };
      assert.equal(seen.refused, 20);
      assert.equal(seen.fdsAfter, seen.fdsBefore, 'a descriptor (the keeper\'s pipe) was left open');
      assert.deepEqual(await untilNoneWith(token), [], 'a keeper outlived its failed exec');
    } finally {
      cleanup();
    }
  });
});
