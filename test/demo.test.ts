/**
 * `pmpool demo` when its service does not go the way the story says: held up
 * in one of its lives, killed by the kernel, or finding damage at the end.
 * The service is steered by a module preloaded into every node the demo
 * starts (NODE_OPTIONS=--import), which tells the three lives apart by their
 * arguments and report, and acts in one of them only.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CLI_PATH, tempDir } from './support/child.js';

/** The package's entry, the one the service imports as 'pmpool': the same module instance. */
const PACKAGE_ENTRY = pathToFileURL(fileURLToPath(new URL('../pmpool.js', import.meta.url))).href;

const PRELOAD = `
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
const value = (name) => process.argv.find((a) => a.startsWith('--' + name + '='))?.slice(name.length + 3);
const report = value('report');
const blob = value('pmpool-fdt');
const [action, when] = (process.env.PMPOOL_DEMO_TEST ?? '').split(':');
if (report !== undefined) {
  const life = blob !== undefined ? 'v2' : existsSync(report) && readFileSync(report, 'utf8').includes('"stage":"v2"') ? 'v3' : 'v1';
  if (life === when) {
    if (action === 'hold') {
      writeFileSync(process.env.PMPOOL_DEMO_TEST_MARK, JSON.stringify({ pid: process.pid, blob }));
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
    } else if (action === 'sigbus') {
      process.kill(process.pid, 'SIGBUS');
    } else if (action === 'map-problem') {
      const { PersistentMap } = await import(process.env.PMPOOL_DEMO_TEST_ENTRY);
      const check = PersistentMap.prototype.check;
      PersistentMap.prototype.check = function () {
        const r = check.call(this);
        return { ...r, ok: false, problems: [...r.problems, 'a problem the test made up'] };
      };
    } else if (action === 'log-lost') {
      const { LogRing } = await import(process.env.PMPOOL_DEMO_TEST_ENTRY);
      const records = LogRing.prototype.records;
      LogRing.prototype.records = function () {
        return records.call(this).filter((_, i) => i !== 1);
      };
    }
  }
}
`;

interface DemoRun {
  demo: ReturnType<typeof spawn>;
  /** The files in /dev/shm named as this demo's pools are: /dev/shm/pmpool-demo-<pid>-<random>. */
  pools: () => string[];
  /** The demo's own directories (report, blobs) in the TMPDIR it was given. */
  demoDirs: () => string[];
  mark: string;
  stdout: () => string;
  stderr: () => string;
  /** The demo's exit: its code, or the signal that ended it; undefined if it still runs after `ms`. */
  exit: (ms: number) => Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined>;
  cleanup: () => void;
}

function startDemo(action: string, entries = 20_000): DemoRun {
  const { dir, cleanup: removeDir } = tempDir('pmpool-demo-test-');
  const preload = join(dir, 'preload.mjs');
  const mark = join(dir, 'mark.json');
  writeFileSync(preload, PRELOAD);
  const demo = spawn(process.execPath, [CLI_PATH, 'demo', '--entries', String(entries)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: '/', // the demo finds its service and the package from where it is installed, not from here
    // TMPDIR: the demo's own directory (report, blob) inside the test's, gone with it even when the demo is killed.
    env: { ...process.env, TMPDIR: dir, NODE_OPTIONS: `--import=${pathToFileURL(preload).href}`, PMPOOL_DEMO_TEST: action, PMPOOL_DEMO_TEST_MARK: mark, PMPOOL_DEMO_TEST_ENTRY: PACKAGE_ENTRY },
  });
  const pools = () => demoPools(demo.pid!);
  let stdout = '';
  let stderr = '';
  demo.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  demo.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const ended = once(demo, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  return {
    demo,
    pools,
    demoDirs: () => readdirSync(dir).filter((name) => name.startsWith('pmpool-demo-')),
    mark,
    stdout: () => stdout,
    stderr: () => stderr,
    exit: (ms) => Promise.race([ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref())]),
    cleanup: () => {
      demo.kill('SIGKILL');
      for (const pid of servicePids(demo.pid!)) process.kill(pid, 'SIGKILL');
      for (const pool of pools()) rmSync(pool, { force: true });
      removeDir();
    },
  };
}

function demoPools(demoPid: number): string[] {
  return readdirSync('/dev/shm')
    .filter((name) => name.startsWith(`pmpool-demo-${demoPid}-`))
    .map((name) => join('/dev/shm', name));
}

/** The processes started with a pool of the demo `demoPid` on their command line (its service, in any life). */
function servicePids(demoPid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const flag = new RegExp(`^--pmpool=/dev/shm/pmpool-demo-${demoPid}[-,]`);
        return readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').some((a) => flag.test(a));
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

/** Waits until the preloaded module says the service is held in the life it was told. */
async function held(run: DemoRun): Promise<{ pid: number; blob?: string }> {
  while (!existsSync(run.mark)) {
    const ended = await run.exit(20);
    if (ended) assert.fail(`the demo ended (${JSON.stringify(ended)}) before its service got there: ${run.stderr()}`);
  }
  return JSON.parse(readFileSync(run.mark, 'utf8')) as { pid: number; blob?: string };
}

describe('pmpool demo', () => {
  test('interrupted while the restarted service verifies, it stops the service at once and removes its files', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const run = startDemo('hold:v3');
      try {
        const service = await held(run);
        run.demo.kill(signal);
        // The demo would wait for a hung service for minutes: a stop is answered long before.
        const ended = await run.exit(30_000);
        assert.ok(ended !== undefined, `${signal}: the demo still runs`);
        assert.equal(ended.signal, signal, `${signal}: ended by ${JSON.stringify(ended)}`);
        assert.deepEqual(servicePids(run.demo.pid!), [], `${signal}: no service left running`);
        assert.equal(existsSync(`/proc/${service.pid}`), false, `${signal}: the held service is gone`);
        assert.deepEqual(run.pools(), [], `${signal}: the pool is gone`);
      } finally {
        run.cleanup();
      }
    }
  });

  test('interrupted between the upgrade exec and the restore, it leaves no handover blob behind', async () => {
    const run = startDemo('hold:v2');
    let blob: string | undefined;
    try {
      ({ blob } = await held(run));
      assert.ok(blob !== undefined && existsSync(blob), 'the service was handed a blob it has not read yet');
      run.demo.kill('SIGTERM');
      const ended = await run.exit(30_000);
      assert.equal(ended?.signal, 'SIGTERM');
      assert.equal(existsSync(blob), false, `${blob} is left behind`);
      assert.deepEqual(run.pools(), []);
    } finally {
      run.cleanup();
      if (blob !== undefined) rmSync(blob, { force: true });
    }
  });

  test('killed by SIGKILL, which runs no handler of its, it still takes its service with it: the service stops on its own', async () => {
    const run = startDemo('none:v1');
    try {
      // Killed while its service is in its first life: that life goes on to exec itself, and its
      // second would serve writes for ever, with nobody left to kill it.
      while (servicePids(run.demo.pid!).length === 0) {
        const ended = await run.exit(10);
        if (ended) assert.fail(`the demo ended (${JSON.stringify(ended)}) before its service started: ${run.stderr()}`);
      }
      run.demo.kill('SIGKILL');
      assert.equal((await run.exit(30_000))?.signal, 'SIGKILL');
      const deadline = Date.now() + 30_000;
      while (servicePids(run.demo.pid!).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(servicePids(run.demo.pid!), [], `the service still runs, orphaned: ${run.stderr()}`);
      assert.match(run.stderr(), /pmpool demo service: the demo is gone; stopping/);
      // And it took the demo's files with it, as the demo would have at its end: no pool left in
      // /dev/shm, no directory of the demo's in its TMPDIR.
      assert.deepEqual(run.pools(), []);
      assert.deepEqual(run.demoDirs(), []);
    } finally {
      run.cleanup();
    }
  });

  test('a file already at the pid-named path is none of the demo\'s business: neither opened nor removed', () => {
    const { dir, cleanup } = tempDir('pmpool-demo-taken-');
    let shell: number | undefined;
    try {
      // The shell writes the file at its own pid, then becomes the demo (exec): the demo's pid is the file's name.
      const r = spawnSync('bash', ['-c', 'echo precious > /dev/shm/pmpool-demo-$$; exec "$@"', 'bash', process.execPath, CLI_PATH, 'demo', '--entries', '1000'], {
        encoding: 'utf8',
        timeout: 120_000,
        env: { ...process.env, TMPDIR: dir },
      });
      shell = r.pid;
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /pmpool demo: ok/);
      assert.equal(readFileSync(`/dev/shm/pmpool-demo-${r.pid}`, 'utf8'), 'precious\n', 'the file is as it was');
      assert.deepEqual(demoPools(r.pid!), [], 'and the demo\'s own pool is gone');
    } finally {
      if (shell !== undefined) {
        rmSync(`/dev/shm/pmpool-demo-${shell}`, { force: true });
        for (const pool of demoPools(shell)) rmSync(pool, { force: true });
      }
      cleanup();
    }
  });

  test('a service killed by a signal is reported as such, not as "exit null"', async () => {
    const run = startDemo('sigbus:v1');
    try {
      const ended = await run.exit(60_000);
      assert.equal(ended?.code, 1, run.stderr());
      assert.doesNotMatch(run.stderr(), /exit null/);
      assert.match(run.stderr(), /killed by SIGBUS/);
      assert.match(run.stderr(), /\/dev\/shm/, 'a SIGBUS on a mapped pool is named for what it most likely is');
      assert.deepEqual(run.pools(), []);
    } finally {
      run.cleanup();
    }
  });

  test('a problem the map check finds fails the demo', async () => {
    const run = startDemo('map-problem:v3');
    try {
      const ended = await run.exit(60_000);
      assert.match(run.stdout(), /map check: PROBLEMS/);
      assert.doesNotMatch(run.stdout(), /pmpool demo: ok/);
      assert.match(run.stdout(), /pmpool demo: FAILED/);
      assert.equal(ended?.code, 1, run.stderr());
    } finally {
      run.cleanup();
    }
  });

  test('a log record lost before the restart fails the demo: "survived in order" is checked, not assumed', async () => {
    const run = startDemo('log-lost:v3');
    try {
      const ended = await run.exit(60_000);
      assert.doesNotMatch(run.stdout(), /pmpool demo: ok/);
      assert.match(run.stdout(), /pmpool demo: FAILED/);
      assert.equal(ended?.code, 1, run.stderr());
    } finally {
      run.cleanup();
    }
  });

  test('the service refused its pool says why in one line, as the command does; a bug keeps its stack', () => {
    const app = fileURLToPath(new URL('../src/cli/demo-app-main.js', import.meta.url));
    const { dir, cleanup } = tempDir('pmpool-demo-refused-');
    try {
      // A pool the service cannot make (here: its directory does not exist; a full or read-only /dev/shm alike).
      const refused = spawnSync(process.execPath, [app, `--pmpool=${join(dir, 'missing', 'pool')},1M`, `--report=${join(dir, 'report')}`, '--entries=10'], { encoding: 'utf8' });
      assert.equal(refused.status, 1);
      assert.equal(refused.stderr, `pmpool demo service: NOT_FOUND: ${join(dir, 'missing', 'pool')} does not exist\n`);
      // Not a refusal of pmpool's: a bug of the service's, with its stack.
      const bug = spawnSync(process.execPath, [app, `--pmpool=${join(dir, 'pool')},1M`], { encoding: 'utf8' });
      assert.equal(bug.status, 1);
      assert.match(bug.stderr, /demo-app needs --report=FILE[\s\S]*\n\s+at /);
    } finally {
      cleanup();
    }
  });
  test('undisturbed, it tells the story and ends ok, from any working directory', async () => {
    const run = startDemo('none:v1');
    try {
      const ended = await run.exit(60_000);
      assert.equal(ended?.code, 0, run.stdout() + run.stderr());
      assert.match(run.stdout(), /20,000 of 20,000 entries intact/);
      assert.match(run.stdout(), /LogRing "events": \d+ records/);
      assert.match(run.stdout(), /pmpool demo: ok/);
      assert.deepEqual(run.pools(), []);
    } finally {
      run.cleanup();
    }
  });
});
