/**
 * Code caches recorded under Node options (src/entry/node-options.ts,
 * `pmpool code-cache`). V8 refuses a cache recorded under other V8 flags, and
 * a program's Node options set them: a program started with
 * --max-old-space-size must find a cache recorded under exactly its options,
 * whether they come from its command line or from NODE_OPTIONS, and fall
 * back to the default cache when there is none — and anything that does not
 * belong to it must cost speed only, with the reason, never a wrong program.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cachePathOf, checkCache, type CacheHeader } from '../src/entry/bundle-loader.js';
import { formatNodeOptions, nodeOptionsOf, splitNodeOptions } from '../src/entry/node-options.js';
import { recordCache, recordCaches } from '../tools/record-cache.js';
import { CLI_PATH, tempDir } from './support/child.js';

const DIST = fileURLToPath(new URL('../', import.meta.url));
const BUNDLE = join(DIST, 'pmpool.bundle.cjs');
const LOADER = join(DIST, 'src', 'entry', 'bundle-loader.js');

interface Loaded {
  cache: string;
  cachePath: string | null;
  problem: string | null;
  works: boolean;
}

/**
 * A copy of the bundle in a directory of its own inside the package (its addon is found from
 * there), and a program file beside it that loads the copy as the entries do and uses it: a
 * program file, not -e, so that its options are only the ones given.
 */
function bundleCopy(): { bundle: string; load: (options?: string[], nodeOptions?: string) => Loaded; cleanup: () => void } {
  mkdirSync(join(DIST, 'test-tmp'), { recursive: true });
  const dir = mkdtempSync(join(DIST, 'test-tmp', 'code-cache-'));
  const bundle = join(dir, 'pmpool.bundle.cjs');
  copyFileSync(BUNDLE, bundle);
  const program = join(dir, 'program.mjs');
  writeFileSync(
    program,
    `const { loadBundle } = await import(${JSON.stringify(LOADER)});
     const b = loadBundle(${JSON.stringify(bundle)});
     const m = b.exports;
     const pool = m.Pool.create(new m.MemoryRegion(1 << 20), { size: 1 << 20 });
     const works = pool.alloc(3, { name: 'x' }).count === 3 && m.Fdt.parse(new m.Fdt().toBytes()) instanceof m.Fdt;
     console.log(JSON.stringify({ cache: b.cache, cachePath: b.cachePath ?? null, problem: b.cacheProblem ?? null, works }));`,
  );
  const load = (options: string[] = [], nodeOptions = ''): Loaded => {
    const r = spawnSync(process.execPath, [...options, program], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: nodeOptions } });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as Loaded;
  };
  return { bundle, load, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function pmpool(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI_PATH, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NODE_OPTIONS: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('Node options as a cache sees them', () => {
  test('NODE_OPTIONS is split as Node splits it: spaces outside double quotes, quotes dropped, backslash escapes inside them', () => {
    assert.deepEqual(splitNodeOptions(''), []);
    assert.deepEqual(splitNodeOptions('   '), []);
    assert.deepEqual(splitNodeOptions('--a  --b=1 '), ['--a', '--b=1']);
    assert.deepEqual(splitNodeOptions('--title="x y" --c'), ['--title=x y', '--c']);
    assert.deepEqual(splitNodeOptions('"--a b"'), ['--a b']);
    assert.deepEqual(splitNodeOptions('--t="a\\"b\\\\c"'), ['--t=a"b\\c']);
    assert.deepEqual(splitNodeOptions('--t=a\\b'), ['--t=a\\b'], 'outside quotes a backslash is a character');
    assert.deepEqual(splitNodeOptions('--x ""'), ['--x'], 'an empty quoted word is no word');
    assert.deepEqual(splitNodeOptions('--a\t--b'), ['--a\t--b'], 'only spaces separate');
  });

  test('the options are NODE_OPTIONS then execArgv, without the program of -e or -p', () => {
    assert.deepEqual(nodeOptionsOf([], undefined), []);
    assert.deepEqual(nodeOptionsOf(['--max-old-space-size=64'], '--no-warnings'), ['--no-warnings', '--max-old-space-size=64']);
    assert.deepEqual(nodeOptionsOf(['--stack-size=900', '-e', 'require("pmpool")', '--no-warnings'], ''), ['--stack-size=900', '--no-warnings']);
    assert.deepEqual(nodeOptionsOf(['-p', '1', '--eval=2', '--print=3', '--input-type=module', '-pe', '4'], undefined), ['--input-type=module']);
    assert.equal(formatNodeOptions(['--max-old-space-size=64', '--title=a b', "--x='"]), `--max-old-space-size=64 '--title=a b' '--x='\\'''`);
  });

  test('-p and --print take the next word as the program only when it is not an option, as node does', () => {
    // What node itself puts in execArgv for each command line, read back as the options a cache is keyed by.
    const program = 'JSON.stringify(process.execArgv)';
    for (const [args, options] of [
      [['--stack-size=900', '-p', '-e', program], ['--stack-size=900']],
      [['-p', '--stack-size=900', '-e', program], ['--stack-size=900']],
      [['--print', '--no-warnings', '--eval', program, '--stack-size=900'], ['--no-warnings', '--stack-size=900']],
      [['--print', program, '--stack-size=900'], ['--stack-size=900']],
      [['-p', program], []],
      [['-pe', program, '--no-warnings'], ['--no-warnings']],
    ] as const) {
      const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(nodeOptionsOf(JSON.parse(r.stdout) as string[], undefined), options, args.join(' '));
    }
  });

  test('a cache recorded under options has its own file; the default one is where it always was', () => {
    assert.equal(cachePathOf('/p/b.cjs'), '/p/b.cjs.cache');
    assert.equal(cachePathOf('/p/b.cjs', []), '/p/b.cjs.cache');
    const keyed = cachePathOf('/p/b.cjs', ['--max-old-space-size=64']);
    assert.match(keyed, /^\/p\/b\.cjs\.[0-9a-f]{16}\.cache$/);
    assert.notEqual(cachePathOf('/p/b.cjs', ['--max-old-space-size=65']), keyed);
    assert.notEqual(cachePathOf('/p/b.cjs', ['--a', '--b']), cachePathOf('/p/b.cjs', ['--a--b']), 'word boundaries count');
    assert.notEqual(cachePathOf('/p/b.cjs', ['--b', '--a']), cachePathOf('/p/b.cjs', ['--a', '--b']), 'so does order: a later V8 flag wins');
  });
});

describe('caches recorded under Node options', () => {
  test('a program with V8 flags finds the cache recorded under its options, from argv or NODE_OPTIONS; others fall back to the default', () => {
    const copy = bundleCopy();
    try {
      const flag = '--max-old-space-size=3187';
      recordCache(copy.bundle);
      // Before a recording under the flag: the default cache, refused by V8, and the reason says what to run.
      const before = copy.load([flag]);
      assert.equal(before.cache, 'rejected');
      assert.equal(before.cachePath, cachePathOf(copy.bundle));
      assert.match(before.problem ?? '', /recorded without Node options, and this program runs with --max-old-space-size=3187/);
      assert.match(before.problem ?? '', /`npx pmpool code-cache record -- --max-old-space-size=3187`/);
      assert.equal(before.works, true, 'a refused cache costs speed only');

      const keyed = recordCache(copy.bundle, [flag]);
      assert.equal(keyed, cachePathOf(copy.bundle, [flag]));
      const header = JSON.parse(readFileSync(keyed, 'latin1').split('\n')[1]!) as CacheHeader;
      assert.deepEqual(header.options, [flag]);
      for (const [how, loaded] of [
        ['on the command line', copy.load([flag])],
        ['in NODE_OPTIONS', copy.load([], flag)],
      ] as const) {
        assert.deepEqual(loaded, { cache: 'accepted', cachePath: keyed, problem: null, works: true }, how);
      }
      // Without options, and with options that set no V8 flag: the default cache, which V8 takes.
      assert.deepEqual(copy.load(), { cache: 'accepted', cachePath: cachePathOf(copy.bundle), problem: null, works: true });
      assert.deepEqual(copy.load(['--no-warnings']), { cache: 'accepted', cachePath: cachePathOf(copy.bundle), problem: null, works: true });
      // Options that include the flag and more have no cache of their own: the default, refused, naming them all.
      const more = copy.load([flag, '--no-warnings']);
      assert.equal(more.cachePath, cachePathOf(copy.bundle));
      assert.match(more.problem ?? '', /runs with --max-old-space-size=3187 --no-warnings/);
    } finally {
      copy.cleanup();
    }
  });

  test('options that need quoting reach the same cache through NODE_OPTIONS as through the command line', () => {
    const copy = bundleCopy();
    try {
      const options = ['--title=pmpool cache test', '--max-old-space-size=3188'];
      const keyed = recordCache(copy.bundle, options);
      assert.deepEqual(copy.load(options), { cache: 'accepted', cachePath: keyed, problem: null, works: true });
      assert.deepEqual(copy.load([], '--title="pmpool cache test" --max-old-space-size=3188'), { cache: 'accepted', cachePath: keyed, problem: null, works: true });
    } finally {
      copy.cleanup();
    }
  });

  test('a keyed cache that does not belong to the program is refused with the reason, and the program works', () => {
    const copy = bundleCopy();
    try {
      const flag = '--max-old-space-size=3189';
      const keyed = recordCache(copy.bundle, [flag]);
      const recorded = readFileSync(keyed);
      const refused = (what: string, options: string[], problem: RegExp) => {
        const r = copy.load(options);
        assert.equal(r.cache, 'rejected', what);
        assert.match(r.problem ?? '', problem, what);
        assert.equal(r.works, true, what);
      };
      // Recorded under other options, found under these (a renamed file): our check refuses it before V8 reads it.
      const other = '--max-old-space-size=2999';
      writeFileSync(cachePathOf(copy.bundle, [other]), recorded);
      refused('recorded under other options', [other], /recorded under the Node options --max-old-space-size=3189, and this program runs with --max-old-space-size=2999/);
      // Damaged payload.
      const damaged = Buffer.from(recorded);
      damaged[damaged.length - 100]! ^= 0x10;
      writeFileSync(keyed, damaged);
      refused('damaged payload', [flag], /payload is damaged/);
      // The bundle rebuilt (here: edited to the same length) since the cache was recorded.
      writeFileSync(keyed, recorded);
      assert.equal(copy.load([flag]).cache, 'accepted');
      const bytes = readFileSync(copy.bundle);
      const at = bytes.indexOf('NO_SPACE');
      bytes.write('NO_SPACF', at, 'latin1');
      writeFileSync(copy.bundle, bytes);
      refused('bundle changed', [flag], /bundle has changed/);
    } finally {
      copy.cleanup();
    }
  });

  test('checkCache refuses a header whose options are not a list of strings, and a keyed cache for a program without options', () => {
    const file = readFileSync(cachePathOf(BUNDLE));
    const bundleBytes = readFileSync(BUNDLE);
    const magicEnd = file.indexOf(10);
    const headerEnd = file.indexOf(10, magicEnd + 1);
    const header = JSON.parse(file.toString('utf8', magicEnd + 1, headerEnd)) as CacheHeader;
    const withHeader = (h: unknown) => Buffer.concat([file.subarray(0, magicEnd + 1), Buffer.from(`${JSON.stringify(h)}\n`), file.subarray(headerEnd + 1)]);
    assert.ok('payload' in checkCache(file, BUNDLE, bundleBytes, []));
    assert.ok('payload' in checkCache(file, BUNDLE, bundleBytes, ['--no-warnings']), 'a default cache is for anyone: V8 decides');
    for (const options of ['--x', 42, [1], { 0: '--x' }, [null]]) {
      assert.deepEqual(checkCache(withHeader({ ...header, options }), BUNDLE, bundleBytes, []), { problem: `its options ${JSON.stringify(options)} are not a list of strings` });
    }
    assert.deepEqual(checkCache(withHeader({ ...header, options: ['--max-old-space-size=64'] }), BUNDLE, bundleBytes, []), {
      problem: 'it was recorded under the Node options --max-old-space-size=64, and this program runs with none',
    });
    assert.ok('payload' in checkCache(withHeader({ ...header, options: ['--max-old-space-size=64'] }), BUNDLE, bundleBytes, ['--max-old-space-size=64']));
  });

  test('recording again after a rebuild: the default cache and each one recorded under options; one that cannot be is removed', () => {
    const copy = bundleCopy();
    try {
      const flag = '--max-old-space-size=3192';
      recordCache(copy.bundle);
      const keyed = recordCache(copy.bundle, [flag]);
      // No longer recordable: options node now refuses (as after a Node upgrade), a header naming no options,
      // and a header whose options are not the ones its file name is the checksum of.
      const template = readFileSync(keyed, 'latin1').split('\n');
      const forged = (options: unknown, path: string) => {
        writeFileSync(path, [template[0], JSON.stringify({ ...(JSON.parse(template[1]!) as object), options }), ...template.slice(2)].join('\n'), 'latin1');
        return path;
      };
      const refusedByNode = forged(['--no-such-node-option'], cachePathOf(copy.bundle, ['--no-such-node-option']));
      const noOptions = forged(undefined, `${copy.bundle}.0123456789abcdef.cache`);
      const misnamed = forged(['--max-old-space-size=64'], `${copy.bundle}.fedcba9876543210.cache`);
      const unrelated = `${copy.bundle}.notes.cache`;
      writeFileSync(unrelated, 'not a cache of ours by its name');
      // The bundle rebuilt: every cache recorded for the old one is refused.
      const bytes = readFileSync(copy.bundle);
      bytes.write('NO_SPACF', bytes.indexOf('NO_SPACE'), 'latin1');
      writeFileSync(copy.bundle, bytes);
      assert.match(copy.load([flag]).problem ?? '', /bundle has changed/);

      const { recorded, dropped } = recordCaches(copy.bundle);
      assert.deepEqual(recorded, [cachePathOf(copy.bundle), keyed]);
      assert.deepEqual(dropped.map((d) => d.path).sort(), [noOptions, misnamed, refusedByNode].sort());
      assert.match(dropped.find((d) => d.path === refusedByNode)!.problem, /bad option: --no-such-node-option/);
      for (const path of [noOptions, misnamed, refusedByNode]) assert.equal(existsSync(path), false, path);
      assert.equal(existsSync(unrelated), true, 'a file not named as a cache is not touched');
      assert.deepEqual(copy.load([flag]), { cache: 'accepted', cachePath: keyed, problem: null, works: true });
      assert.deepEqual(copy.load(), { cache: 'accepted', cachePath: cachePathOf(copy.bundle), problem: null, works: true });
    } finally {
      copy.cleanup();
    }
  });

  test('recordCache refuses options under which no program would load with it', () => {
    const copy = bundleCopy();
    try {
      for (const [options, problem] of [
        [['app.js'], /"app\.js" is not a Node option/],
        [['--max-old-space-size=64', '--'], /"--" is not a Node option/],
        [['-e', '1'], /-e makes node run something other than a program/],
        [['--eval=1'], /--eval=1 makes node run something other than a program/],
        [['--test'], /--test makes node run something other than a program/],
        [['--enable-source-maps'], /loads without a code cache/],
      ] as const) {
        assert.throws(() => recordCache(copy.bundle, options), problem, JSON.stringify(options));
      }
      // A program's whole command line: node would run the program in place of the warm-up (a server
      // would start, and the recording never end). It is refused before anything runs.
      const server = join(dirname(copy.bundle), 'server.cjs');
      const ran = join(dirname(copy.bundle), 'server-ran');
      writeFileSync(server, `require('node:fs').writeFileSync(${JSON.stringify(ran)}, 'ran')`);
      for (const options of [['--max-old-space-size=64', server], ['-r', server, '--no-warnings', server, '--title=x']]) {
        assert.throws(() => recordCache(copy.bundle, options), { name: 'UnrecordableOptionsError', message: `${JSON.stringify(server)} is not a Node option: node would run it as the program (the options come before a program, and a cache is not recorded for one)` });
        assert.equal(existsSync(ran), options[0] === '-r', `${options.join(' ')}: only a preload given by -r ran`);
        rmSync(ran, { force: true });
      }
      // An option node itself refuses: the recording fails with node's word for it, and leaves nothing.
      assert.throws(() => recordCache(copy.bundle, ['--no-such-node-option']), /bad option: --no-such-node-option/);
      assert.equal(existsSync(cachePathOf(copy.bundle, ['--no-such-node-option'])), false);
    } finally {
      copy.cleanup();
    }
  });
});

describe('pmpool code-cache', () => {
  test('status of the default cache; record and status under options', () => {
    const flag = '--max-old-space-size=3190';
    const keyed = cachePathOf(BUNDLE, [flag]);
    rmSync(keyed, { force: true });
    try {
      let r = pmpool('code-cache', 'status');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `accepted: ${cachePathOf(BUNDLE)} is used by programs run without Node options\n`);

      r = pmpool('code-cache', 'status', '--', flag);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stdout, /^rejected: .*pmpool\.bundle\.cjs\.cache: V8 refused it: .*`npx pmpool code-cache record -- --max-old-space-size=3190`/);

      r = pmpool('code-cache', 'record', '--', flag);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `recorded ${keyed} for programs run with ${flag}\n`);

      r = pmpool('code-cache', 'status', '--json', '--', flag);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { cache: 'accepted', cachePath: keyed, problem: null, options: [flag] });

      r = pmpool('code-cache', 'status', '--', '--enable-source-maps');
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stdout, /^bypassed: /);
    } finally {
      rmSync(keyed, { force: true });
    }
  });

  test('record stopped by a signal removes what it made (the scratch pool and blob, the cache not yet in place), then ends by that signal', async () => {
    const flag = '--max-old-space-size=3193';
    const keyed = cachePathOf(BUNDLE, [flag]);
    // Moments of a recording, each told by a file it has made: the warm-up's pool, the cache being checked.
    const moments: [NodeJS.Signals, string, (tmp: string, pid: number) => boolean][] = [
      ['SIGINT', 'the warm-up runs', (tmp) => readdirSync(tmp).some((d) => d.startsWith('pmpool-warm-') && existsSync(join(tmp, d, 'pool')))],
      ['SIGTERM', 'the warm-up runs', (tmp) => readdirSync(tmp).some((d) => d.startsWith('pmpool-warm-') && existsSync(join(tmp, d, 'pool')))],
      ['SIGINT', 'the recorded cache is checked', (_tmp, pid) => existsSync(`${keyed}.${pid}`)],
    ];
    for (const [signal, moment, reached] of moments) {
      // TMPDIR: the recording's scratch directory inside one of the test's own, where nothing else runs.
      const { dir: tmp, cleanup } = tempDir('pmpool-code-cache-stop-');
      const child = spawn(process.execPath, [CLI_PATH, 'code-cache', 'record', '--', flag], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '', TMPDIR: tmp } });
      let stderr = '';
      child.stdout.resume();
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const ended = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
      try {
        while (child.exitCode === null && child.signalCode === null && !reached(tmp, child.pid!)) await new Promise((r) => setTimeout(r, 2));
        assert.ok(reached(tmp, child.pid!), `${moment}: the recording ended before (${stderr})`);
        child.kill(signal);
        const [code, killedBy] = await ended;
        assert.equal(killedBy, signal, `${moment}, ${signal}: ended by ${killedBy ?? `exit ${code}`}; ${stderr}`);
        assert.deepEqual(readdirSync(tmp), [], `${moment}, ${signal}: the scratch directory is gone`);
        const prefix = `${basename(BUNDLE)}.`;
        assert.deepEqual(readdirSync(DIST).filter((name) => name.startsWith(prefix) && name.endsWith(`.cache.${child.pid}`)), [], `${moment}, ${signal}: no cache file of its left`);
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        rmSync(`${keyed}.${child.pid}`, { force: true });
        rmSync(keyed, { force: true });
        cleanup();
      }
    }
  });

  test('a program among the options is bad usage, found before it runs', () => {
    mkdirSync(join(DIST, 'test-tmp'), { recursive: true });
    const dir = mkdtempSync(join(DIST, 'test-tmp', 'code-cache-cli-'));
    try {
      const server = join(dir, 'server.cjs');
      const ran = join(dir, 'server-ran');
      writeFileSync(server, `require('node:fs').writeFileSync(${JSON.stringify(ran)}, 'ran')`);
      for (const sub of ['record', 'status']) {
        const r = pmpool('code-cache', sub, '--', '--max-old-space-size=64', server);
        assert.equal(r.code, 2, `${sub}: ${r.stderr}`);
        assert.match(r.stderr, /^pmpool code-cache: ".*server\.cjs" is not a Node option: node would run it as the program/, sub);
        assert.equal(existsSync(ran), false, `${sub} did not run the program`);
      }
      assert.equal(existsSync(cachePathOf(BUNDLE, ['--max-old-space-size=64', server])), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a recording node refuses is exit 1 with its reason; bad usage is exit 2', () => {
    let r = pmpool('code-cache', 'record', '--', '--no-such-node-option');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no cache recorded for programs run with --no-such-node-option: .*bad option: --no-such-node-option/);
    for (const args of [
      [],
      ['frobnicate'],
      ['record', 'extra'],
      ['record', '--json'],
      ['status', '--verbose'],
      ['record', '--', 'app.js'],
      ['record', '--', '-e', '1'],
      ['record', '--', '--enable-source-maps'],
      ['status', '--', '--max-old-space-size=64', '--'],
    ]) {
      r = pmpool('code-cache', ...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^pmpool code-cache: /, args.join(' '));
    }
  });
});
