import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncOptionsWithStringEncoding, type SpawnSyncReturns } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PMPOOL_ENTRY, runModule, shmPath, tempDir } from './support/child.js';

const APP = fileURLToPath(new URL('./support/chain-app.js', import.meta.url));

function runChain(extra: string[]): { entries: Record<string, unknown>[]; status: number | null; stderr: string; stdout: string } {
  const { path, cleanup } = shmPath('chain');
  const tmp = tempDir();
  try {
    const log = join(tmp.dir, 'log.jsonl');
    const r = spawnSync(process.execPath, [APP, `--pmpool=${path},8M`, `--log=${log}`, ...extra], { encoding: 'utf8', timeout: 60_000 });
    const entries = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    return { entries, status: r.status, stderr: r.stderr, stdout: r.stdout };
  } finally {
    cleanup();
    tmp.cleanup();
  }
}

/** The next program of the flush tests: it prints "after" and, as a pmpool program's incoming() would, consumes its blob. */
const NEXT_PRINTS_AFTER = 'require("node:fs").rmSync(process.env.PMPOOL_FDT, { force: true }); process.stdout.write("after\\n")';

/**
 * A program that writes 512 KiB to stdout (a pipe whose buffer is 64 KiB: most of it is still
 * in the stream's queue), runs `then`, and execs a program that prints "after": every byte must
 * reach the reader, in order.
 */
function execWithQueuedOutput(path: string, then: string, before = ''): void {
  const r = runModule(
    `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
     kexec.poolFromCommandLine();
     ${before}
     process.stdout.write('x'.repeat(1 << 19) + '\\n');
     ${then}
     process.stderr.write('queued ' + (process.stdout.writableLength > 0) + '\\n');
     await kexec.exec(process.execPath, ['-e', ${JSON.stringify(NEXT_PRINTS_AFTER)}, '--']);`,
    ['--', `--pmpool=${path},1M`],
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^queued true$/m, 'the test did queue output in the stream');
  assert.doesNotMatch(r.stderr, /did not drain/, 'a stream that drains is waited for, not given up on');
  assert.equal(r.stdout.length, (1 << 19) + 1 + 'after\n'.length);
  assert.ok(r.stdout.endsWith('x\nafter\n') && /^x+$/.test(r.stdout.slice(0, 1 << 19)), 'every byte, in order');
}

/** node's arguments for an ES module program that takes a 1 MiB pool at `path` from its command line, then runs `body`. */
function poolProgram(path: string, body: string): string[] {
  return [
    '--input-type=module',
    '-e',
    `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
     const pool = kexec.poolFromCommandLine();
     ${body}`,
    '--',
    `--pmpool=${path},1M`,
  ];
}

/** Runs poolProgram(body) on a new pool under /dev/shm, removed afterwards, and waits for it. */
function runPoolProgram(label: string, body: string, options: SpawnSyncOptionsWithStringEncoding = { encoding: 'utf8' }): SpawnSyncReturns<string> {
  const { path, cleanup } = shmPath(label);
  try {
    return spawnSync(process.execPath, poolProgram(path, body), options);
  } finally {
    cleanup();
  }
}

/** Handover blobs a process wrote that are still on disk (blob names start with the writer's pid). */
function blobsLeftBy(pid: unknown): string[] {
  return readdirSync('/dev/shm').filter((f) => f.startsWith(`pmpool-handover-${String(pid)}-`));
}

/** What the next program of execReportingEnvironment saw. */
interface SeenEnvironment {
  names: string[];
  set: string | undefined;
  gone: string | null;
  fdt: number;
  blobExisted: boolean;
}

/**
 * A program that takes a pool from its command line, runs `before`, and replaces itself in place
 * (exec options `{ passFlag: false<extraOptions> }`, so the blob is found by PMPOOL_FDT alone) by
 * one that reports its environment as the kernel handed it over (/proc/self/environ) and consumes
 * the blob. `env` is added to the first program's environment.
 */
function execReportingEnvironment(before: string, extraOptions: string, env: NodeJS.ProcessEnv): { seen: SeenEnvironment; stderr: string } {
  const next = `const env = require("node:fs").readFileSync("/proc/self/environ", "latin1").split("\\0").filter(Boolean);
    const fdt = env.filter((e) => e.startsWith("PMPOOL_FDT="));
    const blob = fdt[0]?.slice("PMPOOL_FDT=".length);
    const blobExisted = blob !== undefined && require("node:fs").existsSync(blob);
    if (blobExisted) require("node:fs").rmSync(blob);
    const names = env.map((e) => e.slice(0, e.indexOf("="))).sort();
    console.log(JSON.stringify({ names, set: process.env.PMPOOL_TEST_SET, gone: process.env.PMPOOL_TEST_GONE ?? null, fdt: fdt.length, blobExisted }));`;
  const { path, cleanup } = shmPath('exec-env');
  try {
    const r = spawnSync(
      process.execPath,
      poolProgram(path, `${before}
         await kexec.exec(process.execPath, ['-e', ${JSON.stringify(next)}], { passFlag: false${extraOptions} });`),
      { encoding: 'utf8', env: { ...process.env, ...env } },
    );
    assert.equal(r.status, 0, r.stderr);
    return { seen: JSON.parse(r.stdout) as SeenEnvironment, stderr: r.stderr };
  } finally {
    cleanup();
  }
}

describe('kexec chains of real programs', () => {
  test('exec in place: the next program gets this environment as process.env left it, with one PMPOOL_FDT naming the blob', () => {
    // No env option, { env: process.env } (the same environment), and an object of the program's own.
    for (const option of ['', ', env: process.env', ", env: { PMPOOL_TEST_SET: 'given' }"]) {
      const given = option.includes('given');
      const r = execReportingEnvironment(
        `process.env.PMPOOL_TEST_SET = 'yes';
         delete process.env.PMPOOL_TEST_GONE;
         // As a restored program's environment holds its predecessor's (consumed) blob: replaced, not doubled.
         process.env.PMPOOL_FDT = '/dev/shm/pmpool-handover-consumed.dtb';
         process.stderr.write('count ' + Object.keys(process.env).length + '\\n');`,
        option,
        { PMPOOL_TEST_GONE: 'present' },
      );
      assert.deepEqual([r.seen.set, r.seen.gone, r.seen.fdt, r.seen.blobExisted], [given ? 'given' : 'yes', null, 1, true]);
      // The old program's own environment, PMPOOL_FDT replaced in place; or exactly the one given, plus PMPOOL_FDT.
      assert.equal(r.seen.names.length, given ? 2 : Number(/^count (\d+)$/m.exec(r.stderr)![1]));
    }
  });

  test('exec in place after the program assigned process.env: the next program gets that object, not environ', () => {
    // A program that scrubs what the next one inherits.
    const r = execReportingEnvironment("process.env = { PMPOOL_TEST_KEPT: 'yes' };", '', { PMPOOL_TEST_SECRET: 'not for the next program' });
    assert.deepEqual(r.seen.names, ['PMPOOL_FDT', 'PMPOOL_TEST_KEPT']);
  });

  test('A → B → C in place: same PID, generations 0, 1, 2; data and a carried client node intact', () => {
    const { entries, status, stderr, stdout } = runChain(['--hops=2', '--mode=exec']);
    assert.equal(status, 0, stderr);
    assert.equal(stdout, 'stdout of stage 0\nstdout of stage 1\nstdout of stage 2\n', 'stdout is flushed before exec and inherited by each image');
    assert.equal(entries.length, 3, JSON.stringify(entries));
    const [a, b, c] = entries as Array<Record<string, any>>;
    assert.equal(a.pid, b.pid);
    assert.equal(b.pid, c.pid, 'execve keeps the PID');
    assert.deepEqual([a.generation, b.generation, c.generation], ['0', '1', '2']);
    assert.deepEqual([a.incomingGeneration, b.incomingGeneration, c.incomingGeneration], [null, '1', '2']);
    assert.equal(a.digest, c.digest, 'data written in A is read back in C byte for byte');
    assert.equal(a.pfn, c.pfn);
    assert.equal(b.client.pfn, String(a.pfn));
    assert.deepEqual(c.client, b.client, 'the client node written in A passes through B untouched');
    assert.ok(entries.every((e) => e.check === true));
    assert.deepEqual(blobsLeftBy(a.pid), [], 'every blob was consumed');
  });

  test('spawn mode: a new process takes over; a version that fails to start is rolled back', () => {
    const ok = runChain(['--hops=2', '--mode=spawn']);
    assert.equal(ok.status, 0, ok.stderr);
    const stages = ok.entries.filter((e) => 'digest' in e) as Array<Record<string, any>>;
    assert.deepEqual(stages.map((e) => e.generation), ['0', '1', '2']);
    assert.notEqual(stages[0]!.pid, stages[1]!.pid, 'spawn starts a new process');
    assert.equal(stages[0]!.digest, stages[2]!.digest);

    const failing = runChain(['--hops=2', '--mode=spawn', '--fail-at=1']);
    assert.equal(failing.status, 0, failing.stderr);
    const rollback = failing.entries.find((e) => 'rollback' in e) as Record<string, any>;
    assert.ok(rollback, JSON.stringify(failing.entries));
    assert.equal(rollback.rollback, 'NOT_READY');
    assert.equal(rollback.stillServing, true, 'the old program still allocates from its pool');
    assert.equal(rollback.generation, '2', 'the aborted generation 1 is burned: no blob of that attempt can match again');
  });
  test('spawn: a process the new program starts before it is ready does not inherit the ready pipe', () => {
    const { path, cleanup } = shmPath('ready-inherit');
    try {
      // The next program starts a child of its own before ready(): the child must see no
      // PMPOOL_READY_FD (its ready() would write READY to whatever its fd 3 is), and the
      // next program's own ready() must still reach the predecessor.
      const next = `
        import { spawnSync } from 'node:child_process';
        import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
        const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(process.env.PMPOOL_READY_FD ?? "none")'], { encoding: 'utf8' });
        process.stdout.write('grandchild sees ' + child.stdout + '\\n');
        kexec.incoming();
        process.stdout.write('ready ' + kexec.ready() + '\\n');`;
      const r = runModule(
        `import { kexec, Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
         const pool = Pool.create(process.argv[1], { size: '4M' });
         kexec.addPool(pool);
         const { generation } = await kexec.spawn(process.execPath, ['--input-type=module', '-e', ${JSON.stringify(next)}, '--'], { stdio: 'inherit' });
         process.stdout.write('took over ' + generation + '\\n');`,
        [path],
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /grandchild sees none\n/);
      assert.match(r.stdout, /ready true\n/);
      assert.match(r.stdout, /took over 1\n/);
    } finally {
      cleanup();
    }
  });

  test('spawn: a new program that reports ready and exits at once did take over (30 times)', () => {
    const { path, cleanup } = shmPath('ready-exit');
    try {
      // The parent blocks until the child is a zombie, so that its exit and its READY line are
      // both pending when the parent's event loop next looks: either may be handled first.
      const r = runModule(
        `import { kexec, Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
         import { readFileSync } from 'node:fs';
         const next = "import { kexec } from ${JSON.stringify(PMPOOL_ENTRY).replace(/"/g, '\\"')}; kexec.incoming(); kexec.ready(); process.exit(0);";
         const childrenExited = () => {
           const kids = readFileSync('/proc/self/task/' + process.pid + '/children', 'utf8').split(' ').filter(Boolean);
           return kids.length > 0 && kids.every((k) => { try { return / Z /.test(readFileSync('/proc/' + k + '/stat', 'utf8')); } catch { return false; } });
         };
         const outcomes = [];
         let pool = Pool.create(process.argv[1], { size: '4M' });
         for (let i = 0; i < 30; i++) {
           kexec.addPool(pool);
           const handover = kexec.spawn(process.execPath, ['--input-type=module', '-e', next, '--']);
           for (const t = Date.now(); !childrenExited() && Date.now() - t < 20000; );
           try {
             const { generation, closeFailures } = await handover;
             outcomes.push(pool.closed ? 'took over ' + generation : 'took over, pool still open');
             if (!Array.isArray(closeFailures) || closeFailures.length !== 0) outcomes.push('close failures: ' + JSON.stringify(closeFailures));
             pool = Pool.open(process.argv[1]);
           } catch (e) {
             outcomes.push(e.code + ': ' + e.message);
           }
         }
         pool.close();
         process.stdout.write(JSON.stringify(outcomes));`,
        [path],
      );
      assert.equal(r.status, 0, r.stderr);
      const outcomes = JSON.parse(r.stdout) as string[];
      assert.deepEqual(outcomes, Array.from({ length: 30 }, (_, i) => `took over ${i + 1}`));
    } finally {
      cleanup();
    }
  });
  test('output still queued for a full pipe at exec() reaches the reader whole; streams never created stay uncreated', () => {
    const { path, cleanup } = shmPath('flush');
    try {
      execWithQueuedOutput(path, '');

      // A program that never touched process.stdout: exec() leaves it uncreated (no stream, no handle).
      const quiet = runModule(
        `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
         kexec.poolFromCommandLine();
         const before = process._getActiveHandles().length;
         await kexec.exec('/nonexistent/pmpool-next', []).catch(() => {});
         const after = process._getActiveHandles().length;
         process.stderr.write('handles ' + before + ' ' + after + '\\n');`,
        ['--', `--pmpool=${path},1M`],
      );
      assert.equal(quiet.status, 0, quiet.stderr);
      assert.match(quiet.stderr, /^handles (\d+) \1$/m, 'no stdio stream was created by exec()');
    } finally {
      cleanup();
    }
  });
  test('what a program writes a tick or a promise job later, from before its exec() call, reaches the reader before the next program', () => {
    // exec() called from a callback (a timer here; a signal handler, as upgradeOnSignal's, is one too):
    // a log stream that passes what it is given on a tick later, a write put off to process.nextTick,
    // and one in a promise job queued before the call. None is queued in a stream when exec() is
    // called; each is written before the execve, which would drop it.
    const { path, cleanup } = shmPath('exec-deferred-output');
    try {
      const r = runModule(
        `import { Writable } from 'node:stream';
         import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
         kexec.poolFromCommandLine();
         const log = new Writable({ write(chunk, _encoding, callback) { process.nextTick(() => { process.stdout.write(chunk); callback(); }); } });
         setTimeout(() => {
           log.write('logged\\n');
           process.nextTick(() => process.stdout.write('tick\\n'));
           queueMicrotask(() => process.stdout.write('job\\n'));
           kexec.exec(process.execPath, ['-e', ${JSON.stringify(NEXT_PRINTS_AFTER)}, '--']);
         }, 0);`,
        ['--', `--pmpool=${path},1M`],
      );
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'logged\ntick\njob\nafter\n');
    } finally {
      cleanup();
    }
  });
  test('exec in place hands the next program its stdio blocking, as a program expects it; a failed exec leaves them as Node had them', () => {
    // Node makes a pipe it has a stream on non-blocking (O_NONBLOCK is on the pipe itself, not on
    // the fd). The next program is a shell, in place (same PID): it reports the flags of its fds
    // 0, 1 and 2 as it got them. A program that is not Node writes a full pipe and gets EAGAIN.
    const next = 'rm -f "$PMPOOL_FDT"; for fd in 0 1 2; do sed -n "s/^flags:[[:space:]]*/fd$fd /p" /proc/$$/fdinfo/$fd; done';
    const r = runPoolProgram(
      'stdio-blocking',
      `const { readFileSync } = await import('node:fs');
       const flags = () => [0, 1, 2].map((fd) => /^flags:\\s*(\\d+)/m.exec(readFileSync('/proc/self/fdinfo/' + fd, 'utf8'))[1]).join(' ');
       process.stdin.pause();
       process.stdout.write('');
       process.stderr.write('before ' + flags() + '\\n');
       await kexec.exec('/nonexistent/pmpool-next', []).catch(() => {});
       process.stderr.write('after failure ' + flags() + '\\n');
       await kexec.exec('/bin/sh', ['-c', ${JSON.stringify(next)}, 'sh'], { passFlag: false });`,
      { encoding: 'utf8', input: '' },
    );
    assert.equal(r.status, 0, r.stderr);
    const before = /^before (.*)$/m.exec(r.stderr)![1]!;
    assert.ok(before.split(' ').every((f) => (parseInt(f, 8) & 0o4000) !== 0), `the test did make Node's stdio non-blocking: ${before}`);
    assert.equal(/^after failure (.*)$/m.exec(r.stderr)![1], before, 'a failed exec puts the flags back: Node goes on writing');
    const seen = [...r.stdout.matchAll(/^fd(\d) (\d+)$/gm)].map((m) => [m[1], (parseInt(m[2]!, 8) & 0o4000) === 0]);
    assert.deepEqual(seen, [['0', true], ['1', true], ['2', true]], `the next program's stdio is blocking: ${r.stdout}`);
  });
  test('exec in place hands a next program that is not Node SIGPIPE and SIGXFSZ at their defaults, as spawn does; a failed exec leaves them ignored, as Node had them', () => {
    // Node ignores both as it starts. A handled signal is reset by execve, an ignored one is
    // inherited: a pipeline's writer gets EPIPE where it expected to be ended, a C program EFBIG
    // where it expected to be stopped. The next program reports what it ignores (SigIgn, a mask of bit n-1
    // for signal n), as does one that Node spawns, for comparison.
    const report = 'exec grep "^SigIgn:" /proc/self/status';
    const r = runPoolProgram(
      'exec-signals',
      `const { readFileSync } = await import('node:fs');
       const { spawnSync } = await import('node:child_process');
       const ignored = () => /^SigIgn:\\s*(\\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))[1];
       process.stderr.write('before ' + ignored() + '\\n');
       await kexec.exec('/nonexistent/pmpool-next', []).catch(() => {});
       process.stderr.write('after failure ' + ignored() + '\\n');
       process.stderr.write('spawned ' + spawnSync('/bin/sh', ['-c', ${JSON.stringify(report)}], { encoding: 'utf8' }).stdout);
       await kexec.exec('/bin/sh', ['-c', 'rm -f "$PMPOOL_FDT"; ' + ${JSON.stringify(report)}, 'sh'], { passFlag: false });`,
    );
    assert.equal(r.status, 0, r.stderr);
    const mask = (text: string, label: string) => /^([0-9a-f]{16})$/.exec(new RegExp(`^${label}\\s*(\\S+)$`, 'm').exec(text)?.[1] ?? '')?.[1] ?? assert.fail(`no ${label} mask in:\n${text}`);
    const names = (hex: string) =>
      Object.entries(constants.signals)
        .filter(([, n]) => ((BigInt(`0x${hex}`) >> BigInt(n - 1)) & 1n) === 1n)
        .map(([name]) => name)
        .sort();
    const before = names(mask(r.stderr, 'before'));
    assert.ok(before.includes('SIGPIPE') && before.includes('SIGXFSZ'), `the test's Node does ignore both: ${before.join(' ')}`);
    assert.deepEqual(names(mask(r.stderr, 'after failure')), before, 'a failed exec puts them back: a write to a closed pipe stays EPIPE for Node');
    const next = names(mask(r.stdout, 'SigIgn:'));
    assert.ok(!next.includes('SIGPIPE') && !next.includes('SIGXFSZ'), `the next program ignores: ${next.join(' ')}`);
    // SIGPROF alone stays ignored across the execve, on purpose (native/pmpool.c, js_execve: a
    // profiler's signal in flight must not kill the next program).
    assert.deepEqual(next, [...names(mask(r.stderr, 'spawned SigIgn:')), 'SIGPROF'].sort());
  });
  test('output queued in a stream the program put in place of process.stdout reaches the reader whole', () => {
    const { path, cleanup } = shmPath('flush-replaced');
    const replace = (stream: string) => `Object.defineProperty(process, 'stdout', { value: ${stream}, configurable: true, writable: true, enumerable: true });`;
    try {
      // A fs.WriteStream on fd 1: its writes go through the thread pool, queued in the stream, no stdio handle in sight.
      execWithQueuedOutput(path, '', `const { createWriteStream } = await import('node:fs'); ${replace("createWriteStream('', { fd: 1, autoClose: false })")}`);
      // A Transform piped into the real stdout: its bytes reach the real stream only as it goes.
      execWithQueuedOutput(
        path,
        '',
        `const { Transform } = await import('node:stream');
         const relay = new Transform({ transform: (chunk, _enc, done) => setImmediate(() => done(null, chunk)) });
         relay.pipe(process.stdout);
         ${replace('relay')}`,
      );
    } finally {
      cleanup();
    }
  });
  test('a stream put in place of process.stdout that never drains delays exec() by a bounded wait, not for ever', () => {
    const { path, cleanup } = shmPath('flush-stuck');
    try {
      // A PassThrough that nobody reads: past its buffer, its writes' callbacks never run.
      const r = runModule(
        `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
         import { PassThrough } from 'node:stream';
         kexec.poolFromCommandLine();
         const stuck = new PassThrough();
         Object.defineProperty(process, 'stdout', { value: stuck, configurable: true, writable: true, enumerable: true });
         stuck.write('x'.repeat(1 << 20));
         process.stderr.write('stuck ' + (stuck.writableLength > 0) + '\\n');
         await kexec.exec(process.execPath, ['-e', ${JSON.stringify(NEXT_PRINTS_AFTER)}, '--']);`,
        ['--', `--pmpool=${path},1M`],
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /^stuck true$/m, 'the test did queue output that cannot drain');
      assert.match(r.stderr, /^pmpool: exec\(\): the stream in place of process\.stdout did not drain within 1000 ms; what it still holds is left behind$/m, 'and it is said');
      assert.equal(r.stdout, 'after\n', 'the next program ran; the stuck stream\'s bytes stayed behind');
      assert.deepEqual(blobsLeftBy(r.pid), [], 'its blob was consumed');
    } finally {
      cleanup();
    }
  });
  test('upgradeOnSignal re-runs a program given by -e: its arguments stay the program\'s, not the next Node\'s options', () => {
    // On a SIGUSR2, the first generation hands over and execs itself again; the second reports.
    const r = runPoolProgram(
      'upgrade-eval',
      `const incoming = kexec.incoming();
       if (incoming === null) {
         kexec.upgradeOnSignal('SIGUSR2');
         process.kill(process.pid, 'SIGUSR2');
         setTimeout(() => process.exit(3), 10_000);
       } else {
         process.stdout.write('generation ' + incoming.generation + ', pool ' + (pool.closed ? 'closed' : 'restored') + '\\n');
       }`,
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'generation 1, pool restored\n');
  });

  test('a NUL byte in the file, an argument or the environment is refused: execve would cut the string short', () => {
    // The shell reports what it got; a string with a NUL would reach it cut at the NUL.
    const next = 'rm -f "$PMPOOL_FDT"; echo "[$1] [$PMPOOL_TEST_NUL]"';
    const r = runPoolProgram(
      'exec-nul',
      `const attempts = [
         ['/bin/sh', ['-c', ${JSON.stringify(next)}, 'sh', 'kept\\0cut']],
         ['/bin/sh\\0ignored', ['-c', ${JSON.stringify(next)}]],
         ['/bin/sh', ['-c', ${JSON.stringify(next)}], { env: { PMPOOL_TEST_NUL: 'kept\\0cut' } }],
       ];
       for (const [file, args, options] of attempts) {
         await kexec.exec(file, args, options).then(() => {}, (e) => process.stderr.write(e.code + ': ' + e.message + '\\n'));
       }
       process.stderr.write('generation ' + pool.generation + '\\n');`,
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '', 'no next program ran with a string cut short');
    assert.deepEqual(r.stderr.match(/^[A-Z_]+(?=: )/gm), ['BAD_ARGUMENT', 'BAD_ARGUMENT', 'BAD_ARGUMENT'], r.stderr);
    assert.match(r.stderr, /^generation 0$/m, 'refused before anything was quiesced or bumped');
  });
  test('a program killed while exec() waits for its output leaves no blob: exec() writes it after the wait', async () => {
    // Its stdout is a pipe nobody reads: exec() waits for the queued output, and SIGTERM comes
    // meanwhile — from a supervisor, say — to the default action, or to a handler that exits (as a
    // service's does). Neither leaves a handover blob in /dev/shm: none is written before the wait.
    for (const handled of [false, true]) {
      const { path, cleanup } = shmPath(`exit-in-flush-${handled}`);
      const child = spawn(
        process.execPath,
        poolProgram(
          path,
          `${handled ? "process.on('SIGTERM', () => process.exit(0));" : ''}
           process.stdout.write('x'.repeat(1 << 20));
           process.stderr.write('exec\\n');
           await kexec.exec(process.execPath, ['-e', '0', '--']);`,
        ),
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      try {
        const exited = new Promise<[number | null, string | null]>((resolve) => child.on('exit', (code, signal) => resolve([code, signal])));
        await new Promise<void>((resolve, reject) => {
          let err = '';
          child.stderr.on('data', (d: Buffer) => {
            err += d.toString();
            if (err.includes('exec\n')) resolve();
          });
          child.once('exit', () => reject(new Error(`the program exited before its exec(): ${err}`)));
        });
        await new Promise((r) => setTimeout(r, 300));
        assert.deepEqual([child.exitCode, child.signalCode], [null, null], 'exec() waits for the output nobody reads');
        assert.deepEqual(blobsLeftBy(child.pid), [], 'and has written no blob while it waits');
        child.kill('SIGTERM');
        assert.deepEqual(await exited, handled ? [0, null] : [null, 'SIGTERM']);
        assert.deepEqual(blobsLeftBy(child.pid), [], 'no handover happened: no blob is left in /dev/shm');
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        child.stdout.destroy();
        for (const f of blobsLeftBy(child.pid)) rmSync(join('/dev/shm', f), { force: true });
        cleanup();
      }
    }
  });
  test('exec() gives up on a stalled stdout reader after stdioTimeoutMs: refused, no blob, pools usable, the output kept for the reader', async () => {
    // Its stdout is a pipe nobody reads yet. The first exec() waits 300 ms for the queued output,
    // then is refused; the program allocates (its pool is no longer quiesced) and says so, and only
    // then does the reader start reading. The second exec() (default timeout) goes through, and the
    // reader gets every byte, then the next program's.
    const { path, cleanup } = shmPath('stalled-reader');
    const child = spawn(
      process.execPath,
      poolProgram(
        path,
        `process.stdout.write('x'.repeat(1 << 20));
         const started = Date.now();
         const refused = await kexec.exec(process.execPath, ['-e', ${JSON.stringify(NEXT_PRINTS_AFTER)}, '--'], { stdioTimeoutMs: 300 }).catch((e) => e);
         const waited = Date.now() - started;
         const a = pool.alloc(1);
         pool.release(a.pfn, a.count);
         process.stderr.write(JSON.stringify({ code: refused.code, message: refused.message, waited, generation: String(pool.generation), queued: process.stdout.writableLength > 0 }) + '\\n');
         await kexec.exec(process.execPath, ['-e', ${JSON.stringify(NEXT_PRINTS_AFTER)}, '--']);`,
      ),
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      const exited = new Promise<[number | null, string | null]>((resolve) => child.on('exit', (code, signal) => resolve([code, signal])));
      child.stdout.pause();
      const report = await new Promise<{ code: string; message: string; waited: number; generation: string; queued: boolean }>((resolve, reject) => {
        let err = '';
        child.stderr.on('data', (d: Buffer) => {
          err += d.toString();
          const line = err.split('\n').find((l) => l.startsWith('{'));
          if (line !== undefined) resolve(JSON.parse(line) as { code: string; message: string; waited: number; generation: string; queued: boolean });
        });
        child.once('exit', () => reject(new Error(`the program exited before its report: ${err}`)));
        // An exec() that never gives up waits for this test to read: the test ends it instead.
        setTimeout(() => reject(new Error('exec() was still waiting for the stalled reader after 20 s')), 20_000).unref();
      });
      assert.equal(report.code, 'EXEC_FAILED');
      assert.match(report.message, /did not drain within 300 ms/);
      assert.ok(report.waited >= 300, `it waited the whole 300 ms (${report.waited} ms)`);
      assert.equal(report.generation, '2', 'the handover was aborted, its generation burned');
      assert.ok(report.queued, 'the output is still queued for the reader, not dropped');
      assert.deepEqual(blobsLeftBy(child.pid), [], 'the refused exec wrote no blob');
      let out = '';
      child.stdout.setEncoding('latin1');
      child.stdout.on('data', (d: string) => (out += d));
      child.stdout.resume();
      assert.deepEqual(await exited, [0, null]);
      await new Promise<void>((resolve) => (child.stdout.readableEnded ? resolve() : child.stdout.once('end', () => resolve())));
      assert.equal(out.length, (1 << 20) + 'after\n'.length, 'every byte reached the reader, then the next program ran');
      assert.ok(/^x+after\n$/.test(out), 'in order');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      child.stdout.destroy();
      for (const f of blobsLeftBy(child.pid)) rmSync(join('/dev/shm', f), { force: true });
      cleanup();
    }
  });
  test('one thread replaces the program at a time: an exec() from another meanwhile is refused before it writes a blob', () => {
    // A worker holds the claim exec() takes just before it writes its blob (as a worker half-way
    // through its own exec() would). The main thread's exec() is refused, writes nothing and leaves
    // the pool usable. The worker is then terminated without handing the claim back: the claim of a
    // thread that is gone is taken over, and the next exec() goes through.
    const blobs = tempDir('pmpool-claim-');
    const nativeModule = new URL('../src/sys/native.js', import.meta.url).href;
    try {
      const r = runPoolProgram(
        'exec-claim',
        `const { Worker } = await import('node:worker_threads');
         const { readdirSync } = await import('node:fs');
         const cells = new Int32Array(new SharedArrayBuffer(4));
         const worker = new Worker(
           \`import { workerData } from 'node:worker_threads';
            import { native } from \${JSON.stringify(${JSON.stringify(nativeModule)})};
            const cells = new Int32Array(workerData);
            Atomics.store(cells, 0, native.claimExec(true) ? 1 : 2);
            Atomics.notify(cells, 0);
            setInterval(() => {}, 1000);\`,
           { eval: true, workerData: cells.buffer },
         );
         Atomics.wait(cells, 0, 0);
         process.stderr.write('worker claimed ' + (Atomics.load(cells, 0) === 1) + '\\n');
         const options = { passFlag: false, blobDir: ${JSON.stringify(blobs.dir)} };
         const next = ['-c', 'rm -f "$PMPOOL_FDT"; echo next ran'];
         await kexec.exec('/bin/sh', next, options).catch((e) => process.stderr.write('refused ' + e.code + ': ' + e.message + '\\n'));
         process.stderr.write('blobs ' + readdirSync(${JSON.stringify(blobs.dir)}).length + '\\n');
         const a = pool.alloc(1);
         pool.release(a.pfn, a.count);
         process.stderr.write('pool usable\\n');
         await worker.terminate();
         await kexec.exec('/bin/sh', next, options);`,
        { encoding: 'utf8', timeout: 60_000 },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /^worker claimed true$/m);
      assert.match(r.stderr, /^refused EXEC_FAILED: exec of \/bin\/sh refused: another thread of this program is replacing it/m, 'the second exec() is refused');
      assert.match(r.stderr, /^blobs 0$/m, 'before it wrote a blob');
      assert.match(r.stderr, /^pool usable$/m, 'and its pool is not left quiesced');
      assert.equal(r.stdout, 'next ran\n', 'the claim of the terminated worker was taken over');
    } finally {
      blobs.cleanup();
    }
  });
  test('output queued in an unref()ed stdout at exec() reaches the reader whole', () => {
    const { path, cleanup } = shmPath('flush-unref');
    try {
      // An unref()ed stream is not among the process's active handles; its write in flight is an active request.
      execWithQueuedOutput(path, 'process.stdout.unref();');
    } finally {
      cleanup();
    }
  });
  test('output a worker thread wrote before its exec() reaches the reader whole', () => {
    const { path, cleanup } = shmPath('flush-worker');
    try {
      // A worker's process.stdout passes what it is given to the main thread through a message port.
      const worker = `(async () => {
        const { kexec } = await import(${JSON.stringify(PMPOOL_ENTRY)});
        kexec.poolFromCommandLine();
        for (let i = 0; i < 20; i++) console.log('line ' + i);
        await kexec.exec(process.execPath, ['-e', ${JSON.stringify(NEXT_PRINTS_AFTER)}, '--']);
      })();`;
      const r = runModule(
        `import { Worker } from 'node:worker_threads';
         new Worker(${JSON.stringify(worker)}, { eval: true, argv: process.argv.filter((a) => a.startsWith('--pmpool=')) });`,
        ['--', `--pmpool=${path},1M`],
      );
      assert.equal(r.status, 0, r.stderr);
      const expected = Array.from({ length: 20 }, (_, i) => `line ${i}\n`).join('') + 'after\n';
      assert.equal(r.stdout, expected);
    } finally {
      cleanup();
    }
  });
});
