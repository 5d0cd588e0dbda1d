import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { Fdt, LogRing, Pool } from '../src/index.js';
import { CLI_PATH, shmPath } from './support/child.js';

function pmpool(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI_PATH, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('pmpool CLI', () => {
  test('info names each owner in quotes, and allocations without one apart: an owner named "(none)" is not taken for them', () => {
    const { path, cleanup } = shmPath('cli-owners');
    try {
      assert.equal(pmpool('create', path, '--size', '4M').code, 0);
      assert.equal(pmpool('alloc', path, '1').code, 0);
      assert.equal(pmpool('alloc', path, '2', '--owner', '(none)').code, 0);
      assert.equal(pmpool('alloc', path, '3', '--owner', 'say "hi"').code, 0);
      const lines = pmpool('info', path).stdout.split('\n');
      assert.ok(lines.includes('  no owner: 1 allocations, 1 pages'), lines.join('\n'));
      assert.ok(lines.includes('  owner "(none)": 1 allocations, 2 pages'), lines.join('\n'));
      assert.ok(lines.includes('  owner "say \\"hi\\"": 1 allocations, 3 pages'), lines.join('\n'));
    } finally {
      cleanup();
    }
  });

  test('info says how many free pages are held in opens\' caches', () => {
    const { path, cleanup } = shmPath('cli-cached');
    try {
      assert.equal(pmpool('create', path, '--size', '64M').code, 0);
      // A program that allocated one page and ended without closing: its cache keeps the rest of a batch.
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import { Pool } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)}; Pool.open(${JSON.stringify(path)}).alloc(1);`], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const info = pmpool('info', path);
      // 85 pages of metadata: 84 as at 2.1, and the bare-unit map's page.
      assert.match(info.stdout, /^free +16298 pages \(63\.7 MiB\), largest run 16298 pages, fragmentation 0\.0%; 31 of them held in opens' caches$/m);
      assert.match(info.stdout, /^used +86 pages in 1 allocations/m);
      assert.match(info.stdout, /^abi +2\.2, generation 0, per-open caches on, bare units on$/m);
      const json = JSON.parse(pmpool('info', path, '--json').stdout) as { abi: string; caches: boolean; bareUnits: boolean; cached: number };
      assert.deepEqual([json.abi, json.caches, json.bareUnits, json.cached], ['2.2', true, true, 31]);
      assert.equal(pmpool('check', path).code, 0);
    } finally {
      cleanup();
    }
  });
  test('create --no-bare-units makes a pool without the bare-unit map, which pmpool of ABI 2.1 opens; misused, it is bad usage', () => {
    const { path, cleanup } = shmPath('cli-no-bare');
    try {
      // 64M: a pool big enough for caches, so bare units would be on without the flag.
      let r = pmpool('create', path, '--size', '64M', '--no-bare-units', '--json');
      assert.equal(r.code, 0, r.stderr);
      r = pmpool('info', path, '--json');
      assert.equal(r.code, 0, r.stderr);
      const info = JSON.parse(r.stdout) as { caches: boolean; bareUnits: boolean; metadata: number };
      assert.deepEqual([info.caches, info.bareUnits], [true, false]);
      assert.equal(info.metadata, 84, 'the metadata of 2.1: no page for the map');
      assert.match(pmpool('info', path).stdout, /^abi +2\.2, generation 0, per-open caches on, bare units off$/m);
      assert.equal(pmpool('check', path).code, 0);
      // A one-page allocation without a name or owner is then a record.
      assert.equal(pmpool('alloc', path, '1').code, 0);
      assert.equal((JSON.parse(pmpool('info', path, '--json').stdout) as { allocations: number }).allocations, 1);
      rmSync(path, { force: true });
      assert.equal(pmpool('create', path, '--size', '64M').code, 0);
      assert.equal((JSON.parse(pmpool('info', path, '--json').stdout) as { bareUnits: boolean }).bareUnits, true, 'the default is unchanged');
      rmSync(path, { force: true });
      // The flag takes no value, has no positive form, and belongs to create only.
      for (const args of [['create', path, '--size', '64M', '--no-bare-units=1'], ['create', path, '--size', '64M', '--bare-units'], ['info', path, '--no-bare-units']]) {
        r = pmpool(...args);
        assert.equal(r.code, 2, `pmpool ${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /usage: pmpool create/);
      }
      assert.ok(!existsSync(path), 'no pool made by bad usage');
    } finally {
      cleanup();
    }
  });

  test('create, alloc (prints the pfn), info, map, check, release; --json', () => {
    const { path, cleanup } = shmPath('cli');
    try {
      let r = pmpool('create', path, '--size', '16M', '--order-per-bit', '1');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /created .*16 MiB in 4096 pages/);
      r = pmpool('alloc', path, '10', '--name', 'cfg', '--align', '8');
      assert.equal(r.code, 0, r.stderr);
      const pfn = Number(r.stdout.trim());
      assert.ok(Number.isInteger(pfn) && pfn % 8 === 0);
      r = pmpool('alloc', path, '3', '--json');
      const second = JSON.parse(r.stdout) as { pfn: number; count: number };
      assert.equal(second.count, 4, 'rounded up to 2-page units');
      r = pmpool('info', path, '--json');
      assert.equal(r.code, 0, r.stderr);
      const info = JSON.parse(r.stdout) as { allocations: number; pages: number; free: number; orderPerBit: number; uuid: string };
      assert.equal(info.allocations, 2);
      assert.equal(info.pages, 4096);
      assert.equal(info.orderPerBit, 1);
      r = pmpool('info', path);
      assert.match(r.stdout, /2 allocations/);
      r = pmpool('map', path, '--width', '32', '--rows', '4');
      assert.equal(r.code, 0, r.stderr);
      const rows = r.stdout.split('\n').filter((l) => /^[M#+.]+$/.test(l));
      assert.equal(rows.length, 4);
      assert.ok(rows.every((l) => l.length === 32));
      assert.match(rows[0]!, /^[M+#]/, 'the metadata comes first');
      assert.match(r.stdout, new RegExp(`free ${info.free} pages`));
      r = pmpool('check', path, '--json');
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { ok: true, problems: [], repaired: [] });
      // A file that is no pool (or none at all): still one JSON report on stdout, exit 1.
      // A directory is refused as a device is: NOT_REGULAR, not an IO error (EISDIR).
      for (const [where, code] of [['/dev/null', 'NOT_REGULAR'], [tmpdir(), 'NOT_REGULAR'], [`${path}-missing`, 'NOT_FOUND']] as const) {
        r = pmpool('check', where, '--json');
        assert.equal(r.code, 1, r.stderr);
        const report = JSON.parse(r.stdout) as { ok: boolean; problems: string[]; repaired: string[]; error: { code: string } };
        assert.deepEqual([report.ok, report.repaired, report.error.code, report.problems.length], [false, [], code, 1]);
      }
      // The pfn printed names the allocation for any later program.
      const pool = Pool.open(path);
      assert.equal(pool.at(pfn)?.name, 'cfg');
      pool.close();
      r = pmpool('release', path, String(pfn), '10');
      assert.equal(r.code, 0, r.stderr);
      r = pmpool('release', path, String(pfn), '10');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /NOT_ALLOCATED/);
    } finally {
      cleanup();
    }
  });

  test('map: a dot is a free page — the metadata\'s whole units and the unusable tail are not free, whatever the unit', () => {
    const { path, cleanup } = shmPath('cli-map-units');
    try {
      // Sizes of odd page counts (a tail past the last whole unit) and metadata that does not fill its last unit.
      for (const [size, orderPerBit] of [['4222976', '3'], ['1M', '0'], ['2101248', '2'], ['8392704', '5']] as const) {
        let r = pmpool('create', path, '--size', size, '--order-per-bit', orderPerBit);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(pmpool('alloc', path, '1').code, 0);
        assert.equal(pmpool('alloc', path, '3', '--align', '4').code, 0);
        const info = JSON.parse(pmpool('info', path, '--json').stdout) as { pages: number; free: number; metadata: number; tail: number };
        // One page per cell: 64 × 40 cells hold each of these pools.
        r = pmpool('map', path, '--width', '64', '--rows', '40');
        assert.equal(r.code, 0, r.stderr);
        const picture = r.stdout.split('\n').filter((l) => /^[M#+.x]+$/.test(l)).join('');
        const count = (c: string) => picture.split(c).length - 1;
        const what = `${size} --order-per-bit ${orderPerBit}`;
        assert.equal(picture.length, info.pages, what);
        assert.equal(count('.'), info.free, `${what}: the dots are the free pages`);
        assert.equal(count('x'), info.tail, `${what}: the tail is shown as such`);
        assert.equal(count('M') % 2 ** Number(orderPerBit), 0, `${what}: the metadata in whole units`);
        assert.ok(count('M') >= info.metadata, what);
        assert.equal(count('+'), 0, what);
        assert.match(r.stdout, info.tail > 0 ? /; M metadata, # used, \+ partly used, \. free, x unusable tail\n/ : /\. free\n/, what);
        rmSync(path);
      }
    } finally {
      cleanup();
    }
  });

  test('owners and names a program stored are printed escaped: they forge no line and send the terminal nothing', () => {
    const { path, cleanup } = shmPath('cli-escape');
    const owner = 'x\n  owner root: 9\x1b[31m';
    const escaped = 'x\\n  owner root: 9\\x1b[31m';
    try {
      assert.equal(pmpool('create', path, '--size', '4M').code, 0);
      let r = pmpool('alloc', path, '1', '--owner', owner, '--name', `cfg\r${owner}`);
      assert.equal(r.code, 0, r.stderr);
      const pfn = r.stdout.trim();
      r = pmpool('info', path);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.split('\n').includes(`  owner "${escaped}": 1 allocations, 1 pages`), r.stdout);
      assert.doesNotMatch(r.stdout, /^ +owner root/m, 'no line forged');
      assert.doesNotMatch(r.stdout, /\x1b/, 'no escape sequence reaches the terminal');
      // Refusals that quote the stored owner, or the name, are one line too.
      r = pmpool('release', path, pfn, '1', '--owner', 'someone');
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `pmpool release: WRONG_OWNER: the allocation at pfn ${pfn} belongs to "${escaped}", not "someone"\n`);
      r = pmpool('alloc', path, '1', '--name', `cfg\r${owner}`);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `pmpool alloc: NAME_TAKEN: an allocation named "cfg\\r${escaped}" exists\n`);
      // The JSON says the same text, JSON's way.
      assert.deepEqual(Object.keys((JSON.parse(pmpool('info', path, '--json').stdout) as { byOwner: object }).byOwner), [owner]);
      // A node's name in a blob is bytes too, which lint finds bad and names.
      const blob = new Fdt();
      blob.addNode(`/${owner}`);
      writeFileSync(`${path}.dtb`, blob.toBytes());
      r = pmpool('fdt', 'check', `${path}.dtb`, '--lint');
      assert.ok(r.stdout.split('\n').some((l) => l.startsWith(`error (node_name_chars): /${escaped}: `)), r.stdout);
      assert.doesNotMatch(r.stdout, /\x1b|^ +owner root/m);
    } finally {
      cleanup();
      rmSync(`${path}.dtb`, { force: true });
    }
  });

  test('log dump, info and fdt dump escape Unicode format controls and line separators: a record cannot reorder what the terminal shows', () => {
    const { path, cleanup } = shmPath('cli-bidi');
    // A right-to-left override makes "exe.txt" of "\u202etxt.exe"; the isolates, marks and U+061C
    // reorder as well, U+2028/U+2029 end a line where a terminal honours them, and the other
    // format characters (U+FEFF, the soft hyphen, a tag) are invisible.
    const hostile = ['\u202etxt.exe', 'a\u202ab\u202bc\u202cd\u202de', '\u2066x\u2067y\u2068z\u2069', '\u200el\u200fr\u061cy', 'one\u2028two\u2029three', '\ufeffsoft\u00adhyphen\u{e0041}'];
    const escaped = ['\\u{202e}txt.exe', 'a\\u{202a}b\\u{202b}c\\u{202c}d\\u{202d}e', '\\u{2066}x\\u{2067}y\\u{2068}z\\u{2069}', '\\u{200e}l\\u{200f}r\\u{61c}y', 'one\\u{2028}two\\u{2029}three', '\\u{feff}soft\\xadhyphen\\u{e0041}'];
    const controls = /[\p{Cf}\p{Zl}\p{Zp}]/u;
    try {
      const pool = Pool.create(path, { size: '4M' });
      const ring = LogRing.open(pool, 'app', { bytes: 8192 });
      for (const text of hostile) ring.append(text);
      // Letters of a right-to-left script and marks are text, not controls: shown as they are.
      ring.append('עברית é ✓ 𝄞');
      ring.close();
      pool.alloc(1, { owner: '\u202eroot' });
      pool.close();
      let r = pmpool('log', 'dump', path, 'app');
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.split('\n').slice(1), [...escaped.map((e, i) => `${i + 1} ${e}`), '7 עברית é ✓ 𝄞', '']);
      assert.doesNotMatch(r.stdout, controls);
      // JSON carries the text as it is: its reader escapes (JSON.stringify leaves these raw).
      r = pmpool('log', 'dump', path, 'app', '--json');
      assert.deepEqual((JSON.parse(r.stdout) as { records: { text: string }[] }).records.slice(0, 6).map((x) => x.text), hostile);
      r = pmpool('info', path);
      assert.ok(r.stdout.split('\n').includes('  owner "\\u{202e}root": 1 allocations, 1 pages'), r.stdout);
      assert.doesNotMatch(r.stdout, controls);
      // A blob's names are bytes, one character each: the UTF-8 of U+202E is three of them, one a
      // C1 control; the soft hyphen (0xAD) is the one format control a byte can be.
      const blob = new Fdt();
      blob.addNode('/aQQQbQc');
      const bytes = Buffer.from(blob.toBytes());
      Buffer.from([0xe2, 0x80, 0xae, 0x2d, 0xad]).copy(bytes, bytes.indexOf('QQQbQ'));
      writeFileSync(`${path}.dtb`, bytes);
      r = pmpool('fdt', 'dump', `${path}.dtb`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^\ta\u00e2\\x80\u00ae-\\xadc \{$/m);
      assert.doesNotMatch(r.stdout, controls);
    } finally {
      cleanup();
      rmSync(`${path}.dtb`, { force: true });
    }
  });

  test('release says how many pages it freed: the whole allocation, in units', () => {
    const { path, cleanup } = shmPath('cli-release');
    try {
      assert.equal(pmpool('create', path, '--size', '16M', '--order-per-bit', '2').code, 0);
      for (const [asked, pages] of [['1', 4], ['3', 4], ['5', 8]] as const) {
        const pfn = pmpool('alloc', path, asked).stdout.trim();
        const free = (JSON.parse(pmpool('info', path, '--json').stdout) as { free: number }).free;
        const r = pmpool('release', path, pfn, asked);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, `released ${pages} pages at pfn ${pfn}\n`);
        assert.equal((JSON.parse(pmpool('info', path, '--json').stdout) as { free: number }).free, free + pages);
      }
      assert.equal(pmpool('create', `${path}-1`, '--size', '16M').code, 0);
      try {
        const pfn = pmpool('alloc', `${path}-1`, '1').stdout.trim();
        assert.equal(pmpool('release', `${path}-1`, pfn, '1').stdout, `released 1 page at pfn ${pfn}\n`);
      } finally {
        rmSync(`${path}-1`, { force: true });
      }
    } finally {
      cleanup();
    }
  });

  test('bad usage exits 2; refused operations exit 1 with the error code', () => {
    const { path, cleanup } = shmPath('cli-bad');
    try {
      assert.equal(pmpool().code, 2);
      assert.equal(pmpool('frobnicate').code, 2);
      assert.equal(pmpool('create', path).code, 2, 'no --size');
      assert.equal(pmpool('create', path, '--size', 'lots').code, 2);
      assert.equal(pmpool('alloc', path).code, 2);
      assert.equal(pmpool('alloc', path, '-3').code, 2);
      assert.equal(pmpool('info', path, '--bogus').code, 2);
      // --entries is a decimal whole number like every other count (Number() took 1e3 and 0x10).
      for (const entries of ['1e3', '0x10', '-5', '', 'x', '0']) assert.equal(pmpool('demo', '--entries', entries).code, 2, entries);
      let r = pmpool('info', path);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /NOT_FOUND/);
      assert.equal(pmpool('create', path, '--size', '4M').code, 0);
      r = pmpool('create', path, '--size', '4M');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /EXISTS/);
      r = pmpool('alloc', path, '100000');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /BAD_ARGUMENT|NO_SPACE/);
      r = pmpool('create', '/dev/shm/pmpool-test-odd', '--size', '12345');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /BAD_SIZE|BAD_ARGUMENT/);
      assert.equal(pmpool('--help').code, 0);
    } finally {
      cleanup();
    }
  });

  test('--help and -h after any command: the usage on stdout, exit 0, as `pmpool --help`; after run\'s -- they are the program\'s', () => {
    const top = pmpool('--help');
    assert.equal(top.code, 0);
    for (const command of [['create'], ['info', '/nonexistent'], ['map'], ['check', '--json'], ['alloc', 'p', '3'], ['release'], ['fdt'], ['fdt', 'dump'], ['fdt', 'check'], ['fdt', 'pack', 'in.dtb'], ['log', 'dump'], ['run'], ['demo'], ['code-cache'], ['code-cache', 'status']]) {
      for (const flag of ['--help', '-h']) {
        const r = pmpool(...command, flag);
        assert.equal(r.code, 0, `pmpool ${command.join(' ')} ${flag}: ${r.stderr}`);
        assert.equal(r.stdout, top.stdout, `pmpool ${command.join(' ')} ${flag}`);
        assert.equal(r.stderr, '');
      }
    }
    // Every option a command takes is in the usage.
    for (const [command, options] of [
      ['create', ['--size', '--page-size', '--order-per-bit', '--max-allocations', '--preallocate', '--no-bare-units', '--json']],
      ['map', ['--width', '--rows']],
      ['fdt check', ['--json', '--lint']],
      ['fdt pack', ['--free-space']],
      ['code-cache status', ['--json']],
    ] as const) {
      const shown = top.stdout.split(/\n| \| /).find((part) => part.includes(`${command} `)) ?? '';
      for (const option of options) assert.match(shown, new RegExp(`${option}\\b`), `${command} ${option}`);
    }
    // ...and none it refuses: code-cache record takes no --json.
    const record = top.stdout.split(/\n| \| /).filter((part) => part.includes('code-cache record'));
    assert.equal(record.length, 1);
    assert.doesNotMatch(record[0]!, /--json/);
    assert.equal(pmpool('code-cache', 'record', '--json').code, 2);
    const r = pmpool('run', '--', '/bin/sh', '-c', 'echo "program got [$1]"', 'sh', '--help');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /program got \[--help\]/);
  });

  test('the README\'s command block is the usage `pmpool --help` prints, line for line', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const block = /^## The command\n\n```\n([\s\S]*?)```\n/m.exec(readme);
    assert.ok(block, 'README.md has a "## The command" section with a code block');
    const help = pmpool('--help');
    assert.equal(help.code, 0);
    const usage = help.stdout.split('\n').filter((l) => l.startsWith('usage: ') || l.startsWith('       pmpool '));
    assert.deepEqual(block[1]!.trimEnd().split('\n'), usage);
  });

  test('fdt and log: an unknown short option is bad usage (exit 2), not a file or ring name', () => {
    const { path, cleanup } = shmPath('cli-short');
    try {
      assert.equal(pmpool('create', path, '--size', '4M').code, 0);
      for (const args of [['fdt', 'dump', '-x'], ['fdt', 'check', '-j'], ['fdt', 'pack', '-x', 'out.dtb'], ['log', 'dump', '-j', 'events'], ['log', 'dump', path, '-j']]) {
        const r = pmpool(...args);
        assert.equal(r.code, 2, `pmpool ${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /unknown option -[xj]/);
        assert.equal(r.stdout, '');
      }
    } finally {
      cleanup();
    }
  });

  test('a lone -- ends the options of every command: a ring or file named "-..." follows it', () => {
    const { path, cleanup } = shmPath('cli-dashdash');
    const dir = mkdtempSync(join(tmpdir(), 'pmpool-cli-dashdash-'));
    try {
      const pool = Pool.create(path, { size: '4M' });
      const ring = LogRing.open(pool, '-name', { bytes: 8192 });
      ring.append('hello');
      ring.close();
      pool.close();
      let r = pmpool('log', 'dump', path, '--', '-name');
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.split('\n').slice(1), ['1 hello', '']);
      r = pmpool('log', 'dump', '--json', path, '--', '-name');
      assert.equal(r.code, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { name: string }).name, '-name');
      // After --, even --json or -h is a name (no ring is called that: exit 1, not usage or help).
      r = pmpool('log', 'dump', path, '--', '-h');
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /NOT_FOUND/);
      // Without --, the name reads as an option: bad usage; the usage says how to write it.
      r = pmpool('log', 'dump', path, '-name');
      assert.equal(r.code, 2);
      assert.match(r.stderr, /unknown option -name/);
      assert.match(r.stderr, /pmpool log dump PATH -- -name/);
      // fdt: a file named "-...", also as pack's output.
      const blob = join(dir, '-tree.dtb');
      writeFileSync(blob, Fdt.parse(new Fdt().toBytes()).toBytes());
      const packed = spawnSync(process.execPath, [CLI_PATH, 'fdt', 'pack', '--free-space', '16', '--', '-tree.dtb', '-packed.dtb'], { cwd: dir, encoding: 'utf8', timeout: 30_000 });
      assert.equal(packed.status, 0, packed.stderr);
      assert.equal(readFileSync(join(dir, '-packed.dtb')).length, 72 + 16);
      r = pmpool('fdt', 'dump', '--', blob);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^\/dts-v1\/;/);
      // The pool commands (node's parseArgs) take -- as well.
      r = pmpool('info', '--json', '--', path);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { allocations: number }).allocations, 1);
    } finally {
      cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('run: a command that cannot start exits 1, claims no pid, and leaves no pool it made behind', () => {
    const { path, cleanup } = shmPath('cli-run');
    try {
      let r = pmpool('run', '--pool', `${path}:4M`, '--', '/nonexistent/pmpool-no-such-program');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /cannot start .*ENOENT/);
      assert.doesNotMatch(r.stdout, /started/);
      assert.equal(existsSync(path), false, 'the pool made for it is gone');
      // A pool that was there before stays, whatever the program does.
      Pool.create(path, { size: '4M' }).close();
      r = pmpool('run', '--pool', `${path}:4M`, '--', '/nonexistent/pmpool-no-such-program');
      assert.equal(r.code, 1);
      assert.equal(existsSync(path), true);
      for (const [args, message] of [
        [['--pool', '--', 'true'], 'pmpool run: --pool needs PATH:SIZE\n'],
        [['--bogus', '--', 'true'], 'pmpool run: unknown option --bogus\n'],
        // The program is handed one pool: a second --pool is a mistake, not a replacement of the first.
        [['--pool', `${path}:4M`, `--pool=${path}-b:4M`, '--', 'true'], 'pmpool run: --pool given twice\n'],
      ] as const) {
        r = pmpool('run', ...args);
        assert.equal(r.code, 2);
        assert.ok(r.stderr.startsWith(message), r.stderr);
      }
    } finally {
      cleanup();
    }
  });

  test('run: a command Node refuses to spawn at once (ENOTDIR, ENAMETOOLONG) is a "cannot start", exit 1, not an internal error', () => {
    const { path, cleanup } = shmPath('cli-run-enotdir');
    try {
      // A path through a regular file (ENOTDIR), and one longer than PATH_MAX (ENAMETOOLONG):
      // spawn() throws for these rather than emit 'error' as for an ENOENT.
      for (const program of ['/etc/passwd/pmpool-no-such-program', `/${'x'.repeat(5000)}`]) {
        const r = pmpool('run', '--pool', `${path}:4M`, '--', program);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /^pmpool run: cannot start .*(ENOTDIR|ENAMETOOLONG)/m);
        assert.doesNotMatch(r.stderr, /internal error/);
        assert.doesNotMatch(r.stderr, /started/);
        assert.equal(existsSync(path), false, 'the pool made for it is gone');
      }
    } finally {
      cleanup();
    }
  });

  test('run: a PATH that holds no pool, or a pool of another size, is refused with exit 1 before the program starts', () => {
    const { path, cleanup } = shmPath('cli-run-not-a-pool');
    try {
      writeFileSync(path, Buffer.alloc(1 << 20, 7));
      let r = pmpool('run', '--pool', `${path}:4M`, '--', process.execPath, '-e', 'process.exit(0)');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^pmpool run: NOT_A_POOL: /);
      assert.doesNotMatch(r.stdout, /started/);
      assert.deepEqual(readFileSync(path), Buffer.alloc(1 << 20, 7), 'the file is untouched');
      rmSync(path);
      Pool.create(path, { size: '4M' }).close();
      r = pmpool('run', '--pool', `${path}:8M`, '--', process.execPath, '-e', 'process.exit(0)');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^pmpool run: BAD_ARGUMENT: --pool .*the pool there is 4194304 bytes/);
      assert.doesNotMatch(r.stdout, /started/);
    } finally {
      cleanup();
    }
  });

  test('demo: interrupted, it stops its service and removes its pool and report', async () => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const demo = spawn(process.execPath, [CLI_PATH, 'demo', '--entries', '200000'], { stdio: ['ignore', 'pipe', 'pipe'] });
      // The demo's pool: /dev/shm/pmpool-demo-<its pid>-<random>.
      const prefix = `pmpool-demo-${demo.pid}-`;
      const pools = () => readdirSync('/dev/shm').filter((name) => name.startsWith(prefix)).map((name) => join('/dev/shm', name));
      /** The demo's service (the process started with its pool on the command line): pid and arguments. */
      const service = (): { pid: number; args: string[] }[] =>
        readdirSync('/proc')
          .filter((d) => /^\d+$/.test(d))
          .flatMap((d) => {
            try {
              const args = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
              return args.some((a) => a.startsWith(`--pmpool=/dev/shm/${prefix}`)) ? [{ pid: Number(d), args }] : [];
            } catch {
              return []; // gone meanwhile
            }
          });
      let report: string | undefined;
      try {
        demo.stdout.resume();
        demo.stderr.resume();
        // The service fills its map for a while before it execs itself: it is interrupted in there.
        while (report === undefined && demo.exitCode === null) {
          await new Promise((r) => setTimeout(r, 10));
          report = service()[0]?.args.find((a) => a.startsWith('--report='))?.slice('--report='.length);
        }
        assert.ok(report !== undefined, `${signal}: the service started`);
        demo.kill(signal);
        const [code, killedBy] = (await once(demo, 'exit')) as [number | null, NodeJS.Signals | null];
        assert.ok(code === null ? killedBy === signal : code !== 0, `${signal}: ended by ${killedBy ?? `exit ${code}`}`);
        assert.deepEqual(service(), [], `${signal}: no service left running`);
        assert.deepEqual(pools(), [], `${signal}: the pool is gone`);
        assert.equal(existsSync(dirname(report)), false, `${signal}: the report's directory is gone`);
      } finally {
        demo.kill('SIGKILL');
        for (const { pid } of service()) process.kill(pid, 'SIGKILL');
        for (const pool of pools()) rmSync(pool, { force: true });
        if (report !== undefined) rmSync(dirname(report), { recursive: true, force: true });
      }
    }
  });

  test('alloc whose pfn cannot be written (a full disk, a reader gone) releases what it allocated and exits 1', async () => {
    const { path, cleanup } = shmPath('cli-alloc-out');
    const allocations = () => (JSON.parse(pmpool('info', path, '--json').stdout) as { allocations: number; free: number });
    try {
      assert.equal(pmpool('create', path, '--size', '4M', '--order-per-bit', '1').code, 0);
      const before = allocations();
      const full = openSync('/dev/full', 'w');
      try {
        for (const json of [[], ['--json']]) {
          const r = spawnSync(process.execPath, [CLI_PATH, 'alloc', path, '3', '--name', `n${json.length}`, '--owner', 'me', ...json], { encoding: 'utf8', stdio: ['ignore', full, 'pipe'], timeout: 30_000 });
          assert.equal(r.status, 1, r.stderr);
          assert.match(r.stderr, /^pmpool alloc: cannot write the output \(ENOSPC.*nothing was allocated\n$/);
          assert.deepEqual(allocations(), before, 'the allocation went back');
        }
      } finally {
        closeSync(full);
      }
      // The reader closes its end before the command writes: EPIPE, which no one would otherwise see.
      const child = spawn(process.execPath, [CLI_PATH, 'alloc', path, '3'], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.destroy();
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const [code] = (await once(child, 'close')) as [number | null];
      assert.equal(code, 1, stderr);
      assert.match(stderr, /^pmpool alloc: cannot write the output \(EPIPE.*nothing was allocated\n$/);
      assert.deepEqual(allocations(), before);
      assert.equal(pmpool('check', path).code, 0);
    } finally {
      cleanup();
    }
  });

  test('output that cannot be written: a message and exit 1 (a full disk), or nothing (a reader gone); never a stack trace', async () => {
    const { path, cleanup } = shmPath('cli-out');
    try {
      assert.equal(pmpool('create', path, '--size', '4M').code, 0);
      const full = openSync('/dev/full', 'w');
      try {
        const r = spawnSync(process.execPath, [CLI_PATH, 'info', path], { encoding: 'utf8', stdio: ['ignore', full, 'pipe'], timeout: 30_000 });
        assert.equal(r.status, 1);
        assert.match(r.stderr, /^pmpool: cannot write the output: ENOSPC/);
        assert.doesNotMatch(r.stderr, /\n\s+at /);
      } finally {
        closeSync(full);
      }
      // The reader closes its end before the command writes: EPIPE.
      const child = spawn(process.execPath, [CLI_PATH, 'map', path], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.destroy();
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const [code] = (await once(child, 'exit')) as [number | null];
      assert.equal(stderr, '');
      assert.equal(code, 0);
    } finally {
      cleanup();
    }
  });
});
