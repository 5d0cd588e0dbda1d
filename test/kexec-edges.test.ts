/**
 * Handovers at their edges: what callbacks throw, what abort hooks do, what
 * a program does before it reads its handover, how a new program that does
 * not come up is ended, and what a flag says about a pool handed over.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HandoverError, Pool, PoolError } from '../src/index.js';
import { spawnNext } from '../src/kexec/exec.js';
import { HandoverRegistry } from '../src/kexec/handover.js';
import { poolFromCommandLine } from '../src/kexec/restore.js';
import { processStartTime } from '../src/sys/proc.js';
import { PMPOOL_ENTRY, runModule, shmPath, startModule, tempDir } from './support/child.js';
import { expectError } from './support/expect.js';

const expectHandoverError = (fn: () => unknown, code: string): HandoverError => expectError(fn, HandoverError, code);

describe('handover edges', () => {
  test('a callback that throws something other than an Error aborts the handover like any other: the others told, the pools usable', () => {
    const { path, cleanup } = shmPath('edge-throw');
    try {
      const pool = Pool.create(path, { size: '4M' });
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      for (const thrown of [null, undefined, 'a string', 42, { toString: () => { throw new Error('no'); } }]) {
        const told: unknown[] = [];
        const offFirst = registry.onHandover('first', () => undefined, { onAbort: (e) => told.push(e) });
        const offBad = registry.onHandover('bad', () => {
          throw thrown;
        });
        const e = expectHandoverError(() => registry.prepare(), 'CALLBACK_FAILED');
        assert.match(e.message, /handover callback "bad" failed: it threw/);
        assert.equal(told.length, 1, 'the other callback was told');
        const a = pool.alloc(1);
        pool.release(a.pfn, a.count);
        offFirst();
        offBad();
      }
      const prepared = registry.prepare();
      prepared.abort(new Error('done'));
      pool.close();
    } finally {
      cleanup();
    }
  });

  test('a program that put its terminal in raw mode execs the next one on a terminal as Node leaves it at exit', () => {
    // script(1) gives the program a terminal of its own; stty(1), exec'd in place, reads its mode.
    // The blob goes in the test's directory: a shell never reads it, and it goes with the directory.
    const { dir, cleanup } = tempDir();
    try {
      const program = join(dir, 'raw.mjs');
      writeFileSync(
        program,
        `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
        process.stdin.setRawMode(true);
        await kexec.exec('/bin/sh', ['-c', 'stty -a; echo "exec ok"'], { blobDir: ${JSON.stringify(dir)} });`,
      );
      const r = spawnSync('/usr/bin/script', ['-qec', `${process.execPath} ${program}`, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
      assert.match(r.stdout, /exec ok/, r.stdout + r.stderr);
      // Raw mode is -icanon -echo; the terminal Node started on (script's, cooked) has both.
      assert.match(r.stdout, /(^|[\s;])icanon([\s;]|$)/m, r.stdout);
      assert.match(r.stdout, /(^|[\s;])echo([\s;]|$)/m, r.stdout);
    } finally {
      cleanup();
    }
  });

  test('a handover quiesces the open sub-pools of its pools too, and gives them back with them', () => {
    const { path, cleanup } = shmPath('edge-subpools');
    try {
      const pool = Pool.create(path, { size: '16M' });
      const sub = pool.subpool('inner', { count: 1024 });
      const subsub = sub.subpool('deeper', { count: 128 });
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      const prepared = registry.prepare();
      for (const p of [pool, sub, subsub]) {
        assert.equal(p.handingOver, true);
        expectError(() => p.alloc(1), PoolError, 'QUIESCED');
      }
      prepared.abort(new Error('undone'));
      for (const p of [pool, sub, subsub]) {
        assert.equal(p.handingOver, false);
        const a = p.alloc(1);
        p.release(a.pfn, a.count);
      }
      pool.close();
    } finally {
      cleanup();
    }
  });

  test('an abort hook that starts the next handover gets its pools quiesced for it, not resumed under it', () => {
    const { path, cleanup } = shmPath('edge-retry');
    try {
      const pool = Pool.create(path, { size: '4M' });
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      let retry: ReturnType<HandoverRegistry['prepare']> | undefined;
      let failOnce = true;
      registry.onHandover('flaky', () => {
        if (failOnce) {
          failOnce = false;
          throw new Error('not yet');
        }
      });
      registry.onHandover('retrier', () => undefined, { onAbort: () => void (retry ??= registry.prepare()) }); // retries once
      expectHandoverError(() => registry.prepare(), 'CALLBACK_FAILED');
      assert.ok(retry, 'the hook started the retry');
      assert.throws(() => pool.alloc(1), (e: unknown) => e instanceof PoolError && e.code === 'QUIESCED', 'no allocation races the retry');
      expectHandoverError(() => registry.prepare(), 'BUSY');
      retry.abort(new Error('the test ends it'));
      const a = pool.alloc(1);
      pool.release(a.pfn, a.count);
      pool.close();
    } finally {
      cleanup();
    }
  });

  test('a callback registered while a handover runs takes part in the next one, and is not told of this one\'s abort', () => {
    const registry = new HandoverRegistry();
    const heard: string[] = [];
    const ran: string[] = [];
    let failing = true;
    registry.onHandover('first', () => {
      ran.push('first');
      if (failing) registry.onHandover('late', () => void ran.push('late'), { onAbort: () => heard.push('late') });
    });
    registry.onHandover('failing', () => {
      if (failing) throw new Error('abort this one');
    });
    expectHandoverError(() => registry.prepare(), 'CALLBACK_FAILED');
    assert.deepEqual([ran, heard], [['first'], []]);
    failing = false;
    const prepared = registry.prepare();
    assert.deepEqual(ran, ['first', 'first', 'late']);
    prepared.abort(new Error('done'));
  });

  test('a pool opened by a relative path is refused when it is registered: the next program may start elsewhere', () => {
    const { dir, cleanup } = tempDir();
    const cwd = process.cwd();
    try {
      process.chdir(dir);
      const pool = Pool.create('relative-pool', { size: '4M' });
      try {
        const e = expectHandoverError(() => new HandoverRegistry().addPool(pool), 'BAD_ARGUMENT');
        assert.match(e.message, /absolute path/);
      } finally {
        pool.close();
      }
    } finally {
      process.chdir(cwd);
      cleanup();
    }
  });

  test('--pmpool=PATH,SIZE started by several processes at once: each opens the one pool, none finds it half made', async () => {
    const { dir, cleanup: cleanDir } = tempDir();
    const go = join(dir, 'go');
    // Each process loads pmpool, says so, and waits for the others before it takes the pool.
    const source = `import { existsSync } from 'node:fs';
      import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
      process.stdout.write('loaded\\n');
      while (!existsSync(${JSON.stringify(go)}));
      try {
        const pool = kexec.poolFromCommandLine();
        process.stdout.write('opened ' + pool.pageCount * pool.pageSize + '\\n');
        pool.close();
      } catch (e) {
        process.stdout.write('refused ' + e.code + ': ' + e.message + '\\n');
      }`;
    try {
      for (let round = 0; round < 8; round++) {
        const { path, cleanup } = shmPath(`edge-create-race-${round}`);
        try {
          const children = Array.from({ length: 4 }, () => startModule(source, ['--', `--pmpool=${path},64M`]));
          const outputs = children.map(
            (child) =>
              new Promise<string>((resolve) => {
                let out = '';
                child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
                child.on('close', () => resolve(out));
              }),
          );
          await Promise.all(children.map((child) => new Promise((resolve) => child.stdout.once('data', resolve))));
          writeFileSync(go, '');
          for (const out of await Promise.all(outputs)) assert.equal(out, `loaded\nopened ${64 * 1024 * 1024}\n`);
          rmSync(go);
        } finally {
          cleanup();
        }
      }
    } finally {
      cleanDir();
    }
  });

  test('--pmpool=PATH,SIZE in a directory another program keeps locked: the cold start waits a few seconds at most, then makes its pool', async () => {
    const { dir, cleanup: cleanDir } = tempDir();
    // flock(1) holds an exclusive lock on the directory itself for as long as it runs.
    const holder = spawn('/usr/bin/flock', ['--exclusive', dir, 'sleep', '120'], { stdio: 'ignore' });
    try {
      // The lock taken: flock(1) has started its sleep under it (a non-blocking try fails).
      for (let tries = 0; spawnSync('/usr/bin/flock', ['--exclusive', '--nonblock', dir, 'true']).status === 0; tries++) {
        assert.ok(tries < 500, 'flock(1) took the lock');
        await new Promise((r) => setTimeout(r, 10));
      }
      const r = runModule(
        `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
        const pool = kexec.poolFromCommandLine();
        process.stdout.write('opened ' + pool.pageCount * pool.pageSize + '\\n');
        pool.close();`,
        ['--', `--pmpool=${join(dir, 'pool')},4M`],
      );
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `opened ${4 * 1024 * 1024}\n`);
      const pool = Pool.open(join(dir, 'pool'));
      assert.equal(pool.check().ok, true);
      pool.close();
    } finally {
      holder.kill('SIGKILL');
      cleanDir();
    }
  });

  test('--pmpool=PATH,SIZE with another size than the pool handed over is refused, as at a cold start; the pool stays openable', () => {
    const { path, cleanup } = shmPath('edge-size');
    const { dir, cleanup: cleanDir } = tempDir();
    try {
      const pool = Pool.create(path, { size: '4M' });
      const out = new HandoverRegistry();
      out.addPool(pool);
      const prepared = out.prepare();
      const blob = join(dir, 'handover.dtb');
      writeFileSync(blob, prepared.bytes, { mode: 0o600 });
      prepared.complete();
      pool.close();
      const e = expectHandoverError(() => poolFromCommandLine(new HandoverRegistry(), ['node', `--pmpool=${path},8M`, `--pmpool-fdt=${blob}`]), 'BAD_ARGUMENT');
      assert.match(e.message, /the pool handed over there is 4194304 bytes/);
      Pool.open(path).close();
    } finally {
      cleanDir();
      cleanup();
    }
  });

  test('a program given by -e whose only argument is --pmpool-fdt: incoming() takes the flag out of process.argv too', () => {
    const { path, cleanup } = shmPath('edge-argv1');
    try {
      // Node gives a program run by -e its arguments from process.argv[1] on: there is no script.
      const next = `import { kexec, Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
        const flagged = () => process.argv.some((a) => a.startsWith('--pmpool-fdt='));
        const before = flagged();
        Pool.restore(kexec.incoming(), 'default_pmpool').close();
        process.stdout.write(JSON.stringify({ before, after: flagged(), argv: process.argv.length }) + '\\n');`;
      const r = runModule(
        `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
         kexec.poolFromCommandLine();
         await kexec.exec(process.execPath, ['--input-type=module', '-e', ${JSON.stringify(next)}, '--']);`,
        ['--', `--pmpool=${path},4M`],
      );
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout.trim()), { before: true, after: false, argv: 1 });
    } finally {
      cleanup();
    }
  });

  test('a program that never read the handover it was started with still hands over: a refused blob is a warning there, not a failed handover', () => {
    const { path, cleanup } = shmPath('edge-unread');
    const { dir, cleanup: cleanDir } = tempDir();
    try {
      // Started with a blob that is not there (a damaged one is refused the same way), the program
      // opens its pool cold and never calls incoming(); its own handover, the first, must go through.
      const program = `import { kexec, Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
        const warnings = [];
        process.on('warning', (w) => warnings.push({ code: w.code, message: w.message }));
        const pool = Pool.create(${JSON.stringify(path)}, { size: '4M' });
        kexec.addPool(pool);
        const first = kexec.prepare();
        const generation = String(first.generation);
        first.abort(new Error('inspected'));
        const second = kexec.prepare();
        second.abort(new Error('inspected'));
        await new Promise((resolve) => setImmediate(resolve));
        process.stdout.write(JSON.stringify({ generation, warnings, incoming: kexec.incoming() }) + '\\n');
        pool.close();`;
      const r = runModule(program, ['--', `--pmpool-fdt=${join(dir, 'missing.dtb')}`]);
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout.trim()) as { generation: string; warnings: { code: string; message: string }[]; incoming: null };
      assert.equal(out.generation, '1');
      assert.equal(out.incoming, null);
      assert.equal(out.warnings.length, 1, 'told once, at the first handover');
      assert.equal(out.warnings[0]!.code, 'PMPOOL_INCOMING_REFUSED');
      assert.match(out.warnings[0]!.message, /UNSAFE_BLOB.*missing\.dtb/);
    } finally {
      cleanDir();
      cleanup();
    }
  });

  test('a child the next program starts, before or after it reads its handover, gets neither PMPOOL_FDT nor --pmpool-fdt', () => {
    const { path, cleanup } = shmPath('edge-env');
    try {
      // The child prints what it got; the next program starts one before incoming() and one after,
      // each with the program's own arguments (as cluster.fork does).
      const child = `process.stdout.write(JSON.stringify({ env: process.env.PMPOOL_FDT ?? null, flag: process.argv.some((a) => a.startsWith('--pmpool-fdt=')) }) + '\\n')`;
      const next = `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
        import { spawn, spawnSync } from 'node:child_process';
        const run = () => spawnSync(process.execPath, ['-e', ${JSON.stringify(child)}, '--', ...process.argv.slice(2)], { encoding: 'utf8' }).stdout.trim();
        const before = run();
        const pool = kexec.poolFromCommandLine();
        const after = run();
        process.stdout.write(JSON.stringify({ before: JSON.parse(before), after: JSON.parse(after), generation: String(pool.generation) }) + '\\n');
        pool.close();`;
      const r = runModule(
        `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
         kexec.poolFromCommandLine();
         await kexec.exec(process.execPath, ['--input-type=module', '-e', ${JSON.stringify(next)}, '--', '--pmpool=${path},4M']);`,
        ['--', `--pmpool=${path},4M`],
      );
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout.trim()), {
        before: { env: null, flag: true }, // the flag is the program's own until it has read the handover
        after: { env: null, flag: false },
        generation: '1',
      });
    } finally {
      cleanup();
    }
  });

  test("spawn() with stdio 'pipe': a new program that writes more than a pipe holds before it is ready still comes up, and its output reaches the caller whole", async () => {
    const { path, cleanup } = shmPath('edge-spawn-pipe');
    try {
      const pool = Pool.create(path, { size: '4M' });
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      // 1 MiB on stdout and 256 KiB on stderr before ready(): the caller gets the child only once
      // spawn() resolves, so until then nobody else can read them.
      const next = `import { writeSync } from 'node:fs';
        import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
        kexec.incoming();
        writeSync(1, 'o'.repeat(1 << 20));
        writeSync(2, 'e'.repeat(1 << 18));
        kexec.ready();
        writeSync(1, 'after');`;
      const result = await spawnNext(registry, process.execPath, ['--input-type=module', '-e', next, '--'], { stdio: 'pipe', readyTimeoutMs: 5000 });
      assert.equal(result.generation, 1n);
      const text = (stream: NodeJS.ReadableStream | null) =>
        new Promise<string>((resolve, reject) => {
          let all = '';
          stream!.setEncoding('latin1');
          stream!.on('data', (chunk: string) => (all += chunk));
          stream!.on('end', () => resolve(all));
          stream!.on('error', reject);
        });
      const [out, err] = await Promise.all([text(result.child.stdout), text(result.child.stderr)]);
      assert.equal(out, 'o'.repeat(1 << 20) + 'after');
      assert.equal(err, 'e'.repeat(1 << 18));
    } finally {
      cleanup();
    }
  });

  test('spawn(): a new program that does not come up is ended with every process it started; one that reports ready without reading its blob leaves none', async () => {
    const { path, cleanup } = shmPath('edge-spawn');
    const { dir, cleanup: cleanDir } = tempDir();
    try {
      const pool = Pool.create(path, { size: '4M' });
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      // Through a wrapper that does not exec: the real program is the wrapper's child. It says its
      // pid, and never reports ready.
      const pidFile = join(dir, 'pid');
      const slow = join(dir, 'slow.mjs');
      writeFileSync(slow, `import { writeFileSync } from 'node:fs'; writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 1000);`);
      await assert.rejects(
        spawnNext(registry, '/bin/sh', ['-c', `"${process.execPath}" ${slow}; echo wrapper done`], { readyTimeoutMs: 1500, stdio: 'ignore' }),
        (e: unknown) => e instanceof HandoverError && e.code === 'NOT_READY',
      );
      const pid = Number(readFileSync(pidFile, 'utf8'));
      assert.equal(processStartTime(pid), null, 'the wrapper\'s child was ended with it (gone, or a zombie)');
      const a = pool.alloc(1); // still this program's
      pool.release(a.pfn, a.count);
      // A new program that reports ready without reading its blob: the blob does not outlive the handover.
      const blobDir = join(dir, 'blobs');
      rmSync(blobDir, { recursive: true, force: true });
      spawnSync('mkdir', ['-m', '700', blobDir]);
      const result = await spawnNext(registry, process.execPath, ['--input-type=module', '-e', `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)}; kexec.ready();`, '--'], { blobDir, stdio: 'ignore' });
      assert.equal(result.generation, 3n);
      assert.deepEqual(readdirSync(blobDir), [], 'no blob left');
      assert.equal(existsSync(path), true);
    } finally {
      cleanDir();
      cleanup();
    }
  });
});

