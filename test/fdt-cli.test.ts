/**
 * `pmpool fdt dump | check | pack` through fdtCommand: output, exit codes
 * (0 ok, 1 refused, 2 usage), and the files it writes, checked with dtc.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fdtCommand } from '../src/cli/fdt-command.js';
import { Fdt } from '../src/fdt/index.js';
import { CLI_PATH } from './support/child.js';

const VECTORS = new URL('../../test/fixtures/fdt-vectors/', import.meta.url);
const vector = (name: string): string => fileURLToPath(new URL(name, VECTORS));
const dir = mkdtempSync(join(tmpdir(), 'pmpool-fdt-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(...args: string[]): { code: number; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const code = fdtCommand(args, (s) => out.push(s), (s) => err.push(s));
  return { code, out, err };
}

function dtcToBlob(args: string[], input: string): Buffer {
  const out = join(dir, `dtc-${Math.random().toString(36).slice(2)}.dtb`);
  execFileSync('/usr/bin/dtc', ['-q', ...args, '-o', out, input]);
  return readFileSync(out);
}

describe('pmpool fdt dump', () => {
  test('prints DTS that dtc compiles back to the same blob', () => {
    const r = run('dump', vector('valid/test_tree1.dtb'));
    assert.equal(r.code, 0);
    assert.equal(r.out.length, 1);
    assert.match(r.out[0], /^\/dts-v1\/;/);
    const dts = join(dir, 'dump.dts');
    writeFileSync(dts, r.out[0] + '\n');
    assert.deepEqual(dtcToBlob(['-I', 'dts', '-O', 'dtb'], dts), readFileSync(vector('valid/test_tree1.dtb')));
  });

  test('control characters in a node or property name are written as \\xHH, not sent to the terminal', () => {
    // libfdt takes any byte but NUL and '/' in a name: a blob from anywhere may hold an ESC there.
    const tree = new Fdt();
    tree.addNode('/nodeQname');
    tree.set('/nodeQname', 'propQname', 'v');
    const blob = Buffer.from(tree.toBytes());
    blob[blob.indexOf('nodeQname')! + 4] = 0x1b; // in the structure block
    blob[blob.indexOf('propQname')! + 4] = 0x0a; // in the strings block
    assert.equal(Fdt.parse(blob).children('/')[0], 'node\x1bname', 'the blob is valid, with an ESC in a name');
    const file = join(dir, 'control-names.dtb');
    writeFileSync(file, blob);
    const r = run('dump', file);
    assert.equal(r.code, 0);
    assert.match(r.out[0]!, /^\tnode\\x1bname \{$/m);
    assert.match(r.out[0]!, /^\t\tprop\\x0aname = "v";$/m);
    assert.doesNotMatch(r.out[0]!, /[\x00-\x08\x0b-\x1f\x7f-\x9f]/, "no control character but tab and newline, which the text's own lines use");
  });

  test('a malformed blob: exit 1 and libfdt\'s error', () => {
    const r = run('dump', vector('malformed/two_roots.dtb'));
    assert.equal(r.code, 1);
    assert.deepEqual(r.out, []);
    assert.match(r.err[0], /BADSTRUCTURE at offset 68/);
  });
});

describe('pmpool fdt check', () => {
  test('a valid blob: exit 0, a summary line', () => {
    const r = run('check', vector('valid/test_tree1.dtb'));
    assert.equal(r.code, 0);
    assert.match(r.out[0], /ok \(version 17, 749 bytes, 2 reservations\)/);
    assert.equal(r.out.length, 1);
  });

  test('a refused blob: exit 1, the error name and offset', () => {
    const cases: [string, RegExp][] = [
      ['malformed/truncated_property.dtb', /: BADSTRUCTURE at offset 64: /],
      ['malformed/truncated_string.dtb', /: TRUNCATED at offset 84: /],
      ['malformed/ovf_size_strings.dtb', /: TRUNCATED at offset 32: /],
      ['derived/test_tree1.rsvmap_misaligned.dtb', /: ALIGNMENT at offset 16: /],
    ];
    for (const [f, expected] of cases) {
      const r = run('check', vector(f));
      assert.equal(r.code, 1, f);
      assert.match(r.out[0], expected, f);
    }
  });

  test('--json', () => {
    const bad = run('check', vector('malformed/named_root.dtb'), '--json');
    assert.equal(bad.code, 1);
    const b = JSON.parse(bad.out[0]);
    assert.deepEqual([b.ok, b.code, b.offset], [false, 'BADSTRUCTURE', 56]);
    assert.equal(typeof b.message, 'string');
    const good = run('check', '--json', vector('derived/test_tree1.layout_smt.dtb'));
    assert.equal(good.code, 0);
    const g = JSON.parse(good.out[0]);
    assert.deepEqual([g.ok, g.version, g.rw, g.lint], [true, 17, 'BADLAYOUT', []]);
  });

  test('lint findings are reported; with --lint an error finding fails the check', () => {
    const plain = run('check', vector('malformed/bad_prop_char.dtb'));
    assert.equal(plain.code, 0);
    assert.match(plain.out[1], /^error \(property_name_chars\): \/:prop\$erty: /);
    const strict = run('check', '--lint', vector('malformed/bad_prop_char.dtb'));
    assert.equal(strict.code, 1);
    const json = run('check', '--lint', '--json', vector('malformed/bad_node_char.dtb'));
    assert.equal(json.code, 1);
    assert.equal(JSON.parse(json.out[0]).lint[0].check, 'node_name_chars');
  });

  test('the read-write layout note', () => {
    const r = run('check', vector('derived/test_tree1.layout_smt.dtb'));
    assert.equal(r.code, 0);
    assert.match(r.out[1], /BADLAYOUT/);
  });
});

describe('pmpool fdt pack', () => {
  test('writes what dtc -I dtb -O dtb writes', () => {
    for (const f of ['valid/test_tree1.asm.dtb', 'derived/test_tree1.nops.dtb', 'derived/test_tree1.v16.dtb']) {
      const out = join(dir, 'packed.dtb');
      const r = run('pack', vector(f), out);
      assert.equal(r.code, 0, r.err.join('\n'));
      assert.deepEqual(readFileSync(out), dtcToBlob(['-I', 'dtb', '-O', 'dtb'], vector(f)), f);
    }
  });

  test('--free-space BYTES is dtc -p', () => {
    const out = join(dir, 'padded.dtb');
    assert.equal(run('pack', vector('valid/test_tree1.dtb'), out, '--free-space', '256').code, 0);
    assert.deepEqual(readFileSync(out), readFileSync(vector('derived/test_tree1.padded.dtb')));
    // Written --free-space=BYTES, as every option with a value of the other commands can be.
    const joined = join(dir, 'padded-joined.dtb');
    const r = spawnSync(process.execPath, [CLI_PATH, 'fdt', 'pack', vector('valid/test_tree1.dtb'), joined, '--free-space=256'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readFileSync(joined), readFileSync(vector('derived/test_tree1.padded.dtb')));
  });

  test('the output is replaced whole or not at all: a write that fails midway leaves the old file, and no temporary', () => {
    const sub = mkdtempSync(join(dir, 'pack-'));
    const out = join(sub, 'out.dtb');
    assert.equal(run('pack', vector('valid/test_tree1.dtb'), out).code, 0);
    chmodSync(out, 0o640);
    const before = readFileSync(out);
    // RLIMIT_FSIZE of 8 KiB: writing the 64 KiB blob fails with EFBIG after its first 8 KiB (SIGXFSZ ignored), as a full disk would fail it.
    const r = spawnSync('/bin/sh', ['-c', 'ulimit -f 16 && trap "" XFSZ && exec "$0" "$@"', process.execPath, CLI_PATH, 'fdt', 'pack', vector('valid/test_tree1.dtb'), out, '--free-space', '65536'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^pmpool fdt pack: .*EFBIG/);
    assert.deepEqual(readFileSync(out), before, 'the old output is still there, whole');
    assert.deepEqual(readdirSync(sub), ['out.dtb'], 'the temporary was removed');
    // A pack that succeeds replaces the file and keeps its mode; through a symlink, it replaces the file the link names.
    symlinkSync(out, join(sub, 'link.dtb'));
    assert.equal(run('pack', vector('valid/test_tree1.dtb'), join(sub, 'link.dtb'), '--free-space', '256').code, 0);
    assert.deepEqual(readFileSync(out), readFileSync(vector('derived/test_tree1.padded.dtb')));
    assert.equal(statSync(out).mode & 0o777, 0o640);
    assert.ok(lstatSync(join(sub, 'link.dtb')).isSymbolicLink());
    assert.deepEqual(readdirSync(sub).sort(), ['link.dtb', 'out.dtb']);
  });

  test('pack keeps what a rewrite in place would have kept: the owner, a read-only refusal, a dangling link', (t) => {
    const sub = mkdtempSync(join(dir, 'pack-keep-'));
    const packed = readFileSync(vector('valid/test_tree1.dtb'));
    // Through a dangling symbolic link: the file it names is created, the link stays.
    symlinkSync('target.dtb', join(sub, 'dangling.dtb'));
    assert.equal(run('pack', vector('valid/test_tree1.dtb'), join(sub, 'dangling.dtb')).code, 0);
    assert.ok(lstatSync(join(sub, 'dangling.dtb')).isSymbolicLink());
    assert.deepEqual(readFileSync(join(sub, 'target.dtb')), packed);
    if (process.getuid?.() !== 0) return t.skip('the owner and read-only cases need root (to hand a file to another user)');
    // Root replacing another user's file: the file stays that user's.
    const theirs = join(sub, 'theirs.dtb');
    writeFileSync(theirs, 'old', { mode: 0o644 });
    chownSync(theirs, 65534, 65534);
    assert.equal(run('pack', vector('valid/test_tree1.dtb'), theirs).code, 0);
    assert.deepEqual([statSync(theirs).uid, statSync(theirs).gid, statSync(theirs).mode & 0o777], [65534, 65534, 0o644]);
    assert.deepEqual(readFileSync(theirs), packed);
    // A user may not replace a read-only file of theirs in a directory they may write: refused, untouched.
    // Its own directory under tmpdir(): `dir` is 0700, where uid 65534 could not even stat the file,
    // and EACCES would then say nothing of the read-only check.
    const open = mkdtempSync(join(tmpdir(), 'pmpool-fdt-user-'));
    t.after(() => rmSync(open, { recursive: true, force: true }));
    chmodSync(open, 0o777);
    const readOnly = join(open, 'read-only.dtb');
    writeFileSync(readOnly, 'old', { mode: 0o444 });
    chownSync(readOnly, 65534, 65534);
    const r = spawnSync(process.execPath, [CLI_PATH, 'fdt', 'pack', vector('valid/test_tree1.dtb'), readOnly], { encoding: 'utf8', uid: 65534, gid: 65534 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^pmpool fdt pack: .*read-only\.dtb: EACCES: permission denied, access /);
    assert.equal(readFileSync(readOnly, 'utf8'), 'old');
    assert.deepEqual(readdirSync(open), ['read-only.dtb'], 'no temporary left');
  });

  test("pack resolves `..` after a symbolic link as the kernel does: the file written is the one the path names", () => {
    const sub = mkdtempSync(join(dir, 'pack-dotdot-'));
    const packed = readFileSync(vector('valid/test_tree1.dtb'));
    mkdirSync(join(sub, 'real', 'deep'), { recursive: true });
    mkdirSync(join(sub, 'cwd'));
    symlinkSync('../real/deep', join(sub, 'cwd', 'deep'));
    // A dangling link whose relative target climbs out of a directory reached through a link.
    symlinkSync('../new.dtb', join(sub, 'real', 'deep', 'link.dtb'));
    assert.equal(run('pack', vector('valid/test_tree1.dtb'), join(sub, 'cwd', 'deep', 'link.dtb')).code, 0);
    assert.deepEqual(readFileSync(join(sub, 'real', 'new.dtb')), packed, 'created where the link leads');
    assert.deepEqual(readdirSync(join(sub, 'cwd')), ['deep'], 'nothing created beside the directory link');
    // An existing output named with `..` after a directory link: that file is replaced, not its namesake.
    writeFileSync(join(sub, 'real', 'x.dtb'), 'old');
    writeFileSync(join(sub, 'cwd', 'x.dtb'), 'namesake');
    assert.equal(run('pack', vector('valid/test_tree1.dtb'), `${join(sub, 'cwd', 'deep')}/../x.dtb`).code, 0);
    assert.deepEqual(readFileSync(join(sub, 'real', 'x.dtb')), packed);
    assert.equal(readFileSync(join(sub, 'cwd', 'x.dtb'), 'utf8'), 'namesake');
    assert.deepEqual(readdirSync(join(sub, 'real')).sort(), ['deep', 'new.dtb', 'x.dtb'], 'no temporary left');
  });

  test('a member of a shared group replacing a group-writable file keeps its group, where the owner cannot be kept', (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root (to run as two users sharing a group)');
    const [alice, bob, shared] = [65531, 65532, 65530];
    const top = mkdtempSync(join(tmpdir(), 'pmpool-fdt-group-'));
    try {
      chmodSync(top, 0o755);
      const room = join(top, 'room');
      mkdirSync(room);
      chownSync(room, alice, shared);
      chmodSync(room, 0o770);
      const out = join(room, 'board.dtb');
      writeFileSync(out, 'old');
      chownSync(out, alice, shared);
      chmodSync(out, 0o660);
      // bob, in the shared group: the owner cannot be given back to alice, the group can be kept.
      const asBob = `process.setgroups([${shared}]); process.setgid(${bob}); process.setuid(${bob});
        process.argv = [process.execPath, ${JSON.stringify(CLI_PATH)}, 'fdt', 'pack', ${JSON.stringify(vector('valid/test_tree1.dtb'))}, ${JSON.stringify(out)}];
        await import(${JSON.stringify(CLI_PATH)});`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', asBob], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(readFileSync(out), readFileSync(vector('valid/test_tree1.dtb')));
      assert.deepEqual([statSync(out).uid, statSync(out).gid, statSync(out).mode & 0o777], [bob, shared, 0o660], 'the group, and with it alice\'s access, kept');
    } finally {
      rmSync(top, { recursive: true, force: true });
    }
  });

  test('a refused input writes nothing and exits 1', () => {
    const out = join(dir, 'never.dtb');
    const r = run('pack', vector('malformed/two_roots.dtb'), out);
    assert.equal(r.code, 1);
    assert.throws(() => readFileSync(out));
  });
});

describe('usage and files', () => {
  const usage: string[][] = [
    [],
    ['frobnicate'],
    ['dump'],
    ['dump', 'a', 'b'],
    ['check'],
    ['check', 'x.dtb', '--yaml'],
    ['pack', 'in.dtb'],
    ['pack', 'in.dtb', 'out.dtb', '--free-space'],
    ['pack', 'in.dtb', 'out.dtb', '--free-space', '-3'],
    ['pack', 'in.dtb', 'out.dtb', '--free-space='],
    ['check', 'x.dtb', '--json=yes'],
  ];
  for (const args of usage) {
    test(`bad usage [${args.join(' ')}]: exit 2 and the usage text`, () => {
      const r = run(...args);
      assert.equal(r.code, 2);
      assert.ok(r.err.some((l) => l.startsWith('usage: pmpool fdt')));
    });
  }

  test('a missing file: exit 1 with the reason', () => {
    const r = run('check', join(dir, 'absent.dtb'));
    assert.equal(r.code, 1);
    assert.match(r.err[0], /ENOENT/);
  });

  test('check --json on a file that cannot be read still prints a report: ok false, the errno or NOT_REGULAR', () => {
    const missing = join(dir, 'missing.dtb');
    const r = run('check', missing, '--json');
    assert.equal(r.code, 1);
    assert.equal(r.out.length, 1);
    const report = JSON.parse(r.out[0]!) as { ok: boolean; code: string; message: string };
    assert.deepEqual([report.ok, report.code], [false, 'ENOENT']);
    assert.match(report.message, /missing\.dtb/);
    assert.match(r.err.join('\n'), /^pmpool fdt check: .*missing\.dtb: ENOENT/);
    assert.deepEqual(run('check', missing).out, [], 'without --json, stdout stays empty');
  });

  test('a FIFO, a directory or a device is refused at once: exit 1, nothing read or written', () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const sub = join(dir, 'subdir');
    mkdirSync(sub);
    const blob = vector('valid/test_tree1.dtb');
    // The FIFO in a child: an open that waits for a writer would hang the suite (the timeout only ends such a hang).
    for (const args of [['dump', fifo], ['check', fifo, '--json', '--lint'], ['pack', fifo, join(dir, 'from-fifo.dtb')], ['pack', blob, fifo]]) {
      const r = spawnSync(process.execPath, [CLI_PATH, 'fdt', ...args], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.signal, null, `fdt ${args.join(' ')} must not wait for the FIFO's other end`);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /: a FIFO, not a regular file\n$/);
      // check --json reports the refusal on stdout too; nothing else writes there.
      const report = args.includes('--json') ? `${JSON.stringify({ ok: false, code: 'NOT_REGULAR', message: `${fifo}: a FIFO, not a regular file` })}\n` : '';
      assert.equal(r.stdout, report);
    }
    assert.ok(statSync(fifo).isFIFO(), 'pack left the FIFO as it was');
    assert.throws(() => statSync(join(dir, 'from-fifo.dtb')), 'nothing written');
    for (const [file, what] of [
      [sub, 'a directory'],
      ['/dev/null', 'a character device'],
      ['/dev/zero', 'a character device'],
    ] as const) {
      for (const args of [['dump', file], ['check', file], ['pack', file, join(dir, 'never.dtb')], ['pack', blob, file]]) {
        const r = run(...args);
        assert.equal(r.code, 1, `fdt ${args.join(' ')}`);
        assert.deepEqual(r.err, [`pmpool fdt ${args[0]}: ${file}: ${what}, not a regular file`]);
        assert.deepEqual(r.out, []);
      }
    }
    assert.deepEqual(readdirSync(sub), []);
    assert.throws(() => statSync(join(dir, 'never.dtb')));
  });

  test('a blob at the start of a file of gigabytes: judged by its totalsize, without reading the rest into memory', () => {
    const big = join(dir, 'image.bin');
    writeFileSync(big, readFileSync(vector('valid/test_tree1.dtb')));
    truncateSync(big, 2 ** 31 + 4096); // sparse
    try {
      // Under 1.5 GiB of address space: reading the file whole (2 GiB) cannot even be tried.
      const r = spawnSync('/bin/sh', ['-c', 'ulimit -v 1572864 && exec "$0" "$@"', process.execPath, CLI_PATH, 'fdt', 'check', big], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.stderr, '');
      assert.equal(r.status, 0);
      assert.match(r.stdout, /ok \(version 17, 749 bytes, 2 reservations\)/);
    } finally {
      rmSync(big);
    }
  });
});

describe('trees too deep to print, and an output named as a directory', () => {
  /** A valid blob of `depth` nested nodes, each named `name` (libfdt reads it; dtc prints it). */
  function nested(depth: number, name: string): string {
    // The name, NUL-terminated and padded to whole words, as the structure block holds it.
    const padded = Buffer.alloc(Math.ceil((name.length + 1) / 4) * 4);
    padded.write(name, 'latin1');
    const nameWords = Array.from({ length: padded.length / 4 }, (_, i) => padded.readUInt32BE(i * 4));
    const words: number[] = [1, 0]; // the root
    for (let i = 1; i < depth; i++) words.push(1, ...nameWords);
    for (let i = 0; i < depth; i++) words.push(2);
    words.push(9);
    const blob = Buffer.alloc(56 + words.length * 4);
    words.forEach((w, i) => blob.writeUInt32BE(w >>> 0, 56 + i * 4));
    [0xd00dfeed, blob.length, 56, blob.length, 40, 17, 16, 0, 0, words.length * 4].forEach((w, i) => blob.writeUInt32BE(w, i * 4));
    const file = join(dir, `nested-${depth}-${name || 'root'}.dtb`);
    writeFileSync(file, blob);
    return file;
  }

  test('a blob nested too deep for its DTS text is NOSPACE, exit 1; its --json lint report too long is exit 1', () => {
    // 30,000 levels: every line indented by its depth, some 450 million tabs.
    const deep = nested(30_000, 'a');
    const dump = run('dump', deep);
    assert.equal(dump.code, 1, dump.err.join('\n'));
    assert.match(dump.err.join('\n'), /NOSPACE: the tree's DTS text is longer than a string can hold/);
    // 20,000 nodes "a@1" without reg: a finding each, each naming its whole path.
    const findings = nested(20_000, 'a@1');
    const check = run('check', '--json', findings);
    assert.equal(check.code, 1, check.err.join('\n'));
    assert.match(check.err.join('\n'), /longer than a string can hold; run without --json/);
    assert.equal(run('check', findings).code, 0, 'without --json it reports them line by line');
  });

  test('pack to a name ending in "/" that does not exist is refused, as dtc refuses it: no file is made', () => {
    const out = join(dir, 'no-such-dir') + '/';
    const r = run('pack', vector('test_tree1.dtb'), out);
    assert.equal(r.code, 1, r.err.join('\n'));
    assert.throws(() => lstatSync(out.slice(0, -1)), /ENOENT/);
  });
});
