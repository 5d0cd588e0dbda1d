/**
 * Differential tests against the real dtc and fdtdump (Debian
 * device-tree-compiler 1.6.1): our bytes are dtc's bytes, dtc reads our
 * DTS back to the same tree, we read what dtc writes in every version it
 * writes, and fdtdump reads what we write.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Fdt, FdtError } from '../src/fdt/index.js';
import type { FdtValue } from '../src/fdt/index.js';
import { fdtArbitrary } from './support/fdt-arbitrary.js';

const DTC = '/usr/bin/dtc';
const FDTDUMP = '/usr/bin/fdtdump';
const VECTORS = new URL('../../test/fixtures/fdt-vectors/', import.meta.url);
const dir = mkdtempSync(join(tmpdir(), 'pmpool-fdt-interop-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let serial = 0;
function tmp(ext: string, content?: Uint8Array | string): string {
  const path = join(dir, `f${serial++}.${ext}`);
  if (content !== undefined) writeFileSync(path, content);
  return path;
}

/** Runs dtc; returns the blob it writes. */
function dtc(args: string[], input: string): Uint8Array {
  const out = tmp('dtb');
  execFileSync(DTC, ['-q', ...args, '-o', out, input], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Uint8Array(readFileSync(out));
}

/** dtc -I dts -O dtb of our DTS text (boot_cpuid_phys passed with -b: DTS cannot carry it). */
function compileDts(fdt: Fdt, extra: string[] = []): Uint8Array {
  return dtc(['-I', 'dts', '-O', 'dtb', '-b', String(fdt.bootCpuidPhys), ...extra], tmp('dts', fdt.toDts()));
}

function repack(blob: Uint8Array, extra: string[] = []): Uint8Array {
  return dtc(['-I', 'dtb', '-O', 'dtb', ...extra], tmp('dtb', blob));
}

// ---- generated trees that dtc accepts without -f: valid, unique names; no phandle or name properties.

const nodeName = fc
  .tuple(fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9,._+-]{0,10}$/), fc.option(fc.integer({ min: 0, max: 0xfffff }), { nil: undefined }))
  .map(([base, addr]) => (addr === undefined ? base : `${base}@${addr.toString(16)}`));
const propName = fc
  .stringMatching(/^[a-zA-Z0-9#?,._+*-]{1,16}$/)
  .filter((n) => n !== 'name' && n !== 'phandle' && n !== 'linux,phandle');
const printable = fc.string({ unit: fc.integer({ min: 0x07, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 16 }).filter((s) => !/[\x0e-\x1f]/.test(s));
const value: fc.Arbitrary<FdtValue> = fc.oneof(
  fc.uint8Array({ maxLength: 24 }),
  printable,
  fc.array(printable, { minLength: 1, maxLength: 4 }),
  fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 6 }),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);

// Sibling names must differ before the '@': dtc matches `name` to `name@addr`.
const treeArb = fdtArbitrary({ nodeName, propName, value, nodeKey: (name) => name.split('@')[0]! });

describe('generated trees against dtc', () => {
  test('our bytes equal dtc\'s, dtc reads our DTS back, dtc -I dtb -O dtb is a fixpoint', { timeout: 60_000 }, () => {
    fc.assert(
      fc.property(treeArb, (fdt) => {
        const ours = fdt.toBytes();
        const theirs = compileDts(fdt);
        assert.deepEqual(theirs, ours);
        assert.ok(Fdt.parse(theirs).equals(fdt));
        assert.deepEqual(repack(ours), ours);
      }),
      { numRuns: 80 },
    );
  });

  test('dtc -V 2, 3, 16 output reads back to the same tree, and re-encodes to dtc\'s v17', { timeout: 60_000 }, () => {
    fc.assert(
      fc.property(treeArb, fc.constantFrom('2', '3', '16'), (fdt, version) => {
        const ours = fdt.toBytes();
        const old = repack(ours, ['-V', version]);
        const read = Fdt.parse(old);
        // v2/v3 blobs carry a `name` property per node; dtc drops them again when writing v17.
        assert.deepEqual(read.toBytes(), ours);
        assert.deepEqual(repack(old), ours);
        if (version === '16') assert.ok(read.equals(fdt));
      }),
      { numRuns: 40 },
    );
  });

  test('fdtdump reads our blobs: header fields and every property', { timeout: 60_000 }, () => {
    fc.assert(
      fc.property(treeArb, (fdt) => {
        const ours = fdt.toBytes();
        const text = execFileSync(FDTDUMP, [tmp('dtb', ours)], { encoding: 'latin1', stdio: ['ignore', 'pipe', 'ignore'] });
        assert.match(text, new RegExp(`// totalsize:\\s+0x${ours.length.toString(16)} \\(${ours.length}\\)`));
        assert.match(text, /\/\/ version:\s+17/);
        assert.match(text, new RegExp(`// boot_cpuid_phys:\\s+0x${fdt.bootCpuidPhys.toString(16)}\\b`));
        for (const name of allPropNames(fdt, '/')) assert.ok(text.includes(`${name}`), name);
      }),
      { numRuns: 40 },
    );
  });
});

function allPropNames(fdt: Fdt, path: string): string[] {
  const names = [...fdt.props(path)];
  for (const c of fdt.children(path)) names.push(...allPropNames(fdt, `${path === '/' ? '' : path}/${c}`));
  return names;
}

describe('the vectors through dtc', () => {
  const valid = readdirSync(new URL('valid/', VECTORS)).filter((f) => f.endsWith('.dtb'));
  for (const f of valid) {
    test(`${f}: dtc compiles our DTS to dtc's bytes; fdtdump's view compiles to them too`, () => {
      const bytes = new Uint8Array(readFileSync(new URL(`valid/${f}`, VECTORS)));
      const fdt = Fdt.parse(bytes);
      const canonical = repack(bytes);
      assert.deepEqual(fdt.toBytes(), canonical);
      assert.deepEqual(compileDts(fdt), canonical);
      const dump = execFileSync(FDTDUMP, [tmp('dtb', fdt.toBytes())], { encoding: 'latin1', stdio: ['ignore', 'pipe', 'ignore'] });
      assert.deepEqual(dtc(['-I', 'dts', '-O', 'dtb', '-b', String(fdt.bootCpuidPhys)], tmp('dts', dump)), canonical);
    });
  }

  for (const f of ['test_tree1.nops.dtb', 'test_tree1.layout_smt.dtb', 'test_tree1.padded.dtb', 'test_tree1.rsvslots.dtb', 'test_tree1.v16.dtb']) {
    test(`derived/${f}: our re-encoding is dtc -I dtb -O dtb`, () => {
      const bytes = new Uint8Array(readFileSync(new URL(`derived/${f}`, VECTORS)));
      assert.deepEqual(Fdt.parse(bytes).toBytes(), repack(bytes));
    });
  }

  test('fdtdump of our re-encoded fdtdump.dtb is fdtdump.dts (whitespace aside), as tests/fdtdump-runtest.sh checks', () => {
    const ours = Fdt.parse(new Uint8Array(readFileSync(new URL('valid/fdtdump.dtb', VECTORS)))).toBytes();
    const dump = execFileSync(FDTDUMP, [tmp('dtb', ours)], { encoding: 'latin1', stdio: ['ignore', 'pipe', 'ignore'] });
    const strip = (s: string): string =>
      s
        .split('\n')
        .filter((l) => !l.includes('//') && !l.startsWith('****'))
        .join('')
        .replace(/\s+/g, '');
    assert.equal(strip(dump), strip(readFileSync(new URL('valid/fdtdump.dts', VECTORS), 'latin1')));
  });

  test('dtc refuses a NOP between the root END_NODE and FDT_END; libfdt 1.8 (and we) accept it', () => {
    const path = new URL('derived/empty.nop_before_end.dtb', VECTORS).pathname;
    const r = spawnSync(DTC, ['-I', 'dtb', '-O', 'dtb', '-o', tmp('dtb'), path], { encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /doesn't end with FDT_END/);
    assert.doesNotThrow(() => Fdt.parse(new Uint8Array(readFileSync(path))));
  });
});

describe('the writer\'s dtc rules, checked against dtc', () => {
  const tree1 = () => Fdt.parse(new Uint8Array(readFileSync(new URL('valid/test_tree1.dtb', VECTORS))));

  test('free space, minimum size, alignment, reserve slots, version 16 (dtc -p -S -a -R -V)', () => {
    const fdt = tree1();
    const src = tmp('dtb', fdt.toBytes());
    const cases: [Parameters<Fdt['toBytes']>[0], string[]][] = [
      [{ freeSpace: 100 }, ['-p', '100']],
      [{ minSize: 4096 }, ['-S', '4096']],
      [{ minSize: 10 }, ['-S', '10']],
      [{ align: 256 }, ['-a', '256']],
      [{ freeSpace: 3, align: 64 }, ['-p', '3', '-a', '64']],
      [{ reserveSlots: 3 }, ['-R', '3']],
      [{ version: 16 }, ['-V', '16']],
      [{ version: 16, reserveSlots: 1, freeSpace: 12 }, ['-V', '16', '-R', '1', '-p', '12']],
    ];
    for (const [options, args] of cases) {
      assert.deepEqual(fdt.toBytes(options), dtc(['-I', 'dtb', '-O', 'dtb', ...args], src), args.join(' '));
    }
    // dtc: "Can't set both -p and -S".
    assert.notEqual(spawnSync(DTC, ['-I', 'dtb', '-O', 'dtb', '-S', '2000', '-p', '7', '-o', tmp('dtb'), src]).status, 0);
    assert.throws(() => fdt.toBytes({ minSize: 2000, freeSpace: 7 }), /exclude each other/);
    // dtc refuses a negative -a or -p ("Invalid argument"): so does toBytes, whatever the sign's size.
    assert.notEqual(spawnSync(DTC, ['-I', 'dtb', '-O', 'dtb', '-a', '-4', '-o', tmp('dtb'), src]).status, 0);
    for (const options of [{ align: -4 }, { align: -Infinity }, { freeSpace: -1 }, { freeSpace: -Infinity }]) {
      assert.throws(() => fdt.toBytes(options), (e: unknown) => e instanceof FdtError && e.code === 'BADVALUE', JSON.stringify(options));
    }
    assert.deepEqual(fdt.toBytes({ align: 0, freeSpace: 0 }), fdt.toBytes(), 'zero asks for nothing');
  });

  test('strings block: first use order, suffixes shared backwards only', () => {
    const fdt = new Fdt();
    fdt.addNode('/n');
    // "handle" is a suffix of the earlier "x,handle"; "x,handle" is not stored inside the later "ax,handle".
    for (const name of ['x,handle', 'handle', 'ax,handle', 'le', 'e', 'x,handle', 'b', 'ab', 'cab']) fdt.set('/n', name, 1);
    fdt.set('/', 'dle', 'root props come first');
    assert.deepEqual(compileDts(fdt), fdt.toBytes());
    assert.deepEqual(repack(fdt.toBytes()), fdt.toBytes());
  });

  test('a `name` property equal to the node name is dropped, as dtc drops it', () => {
    const fdt = new Fdt();
    fdt.set('/', 'name', '');
    fdt.addNode('/dev@10');
    fdt.set('/dev@10', 'reg', 0x10);
    fdt.set('/dev@10', 'name', 'dev');
    fdt.set('/dev@10', 'other', 1);
    fdt.addNode('/x');
    fdt.set('/x', 'name', 'not-x'); // wrong: kept (and dtc needs -f)
    const ours = fdt.toBytes();
    assert.deepEqual(ours, dtc(['-f', '-I', 'dtb', '-O', 'dtb'], tmp('dtb', fdt.toBytes({ keepNameProperties: true }))));
    const back = Fdt.parse(ours);
    assert.deepEqual(back.props('/'), []);
    assert.deepEqual(back.props('/dev@10'), ['reg', 'other']);
    assert.deepEqual(back.props('/x'), ['name']);
    assert.ok(Fdt.parse(fdt.toBytes({ keepNameProperties: true })).equals(fdt));
  });

  test('...unless an earlier dtc check fails: then dtc drops none, and neither do we', () => {
    const base = new Fdt();
    base.addNode('/dev');
    base.set('/dev', 'name', 'dev');
    const spoilers: [string, (t: Fdt) => void][] = [
      ['a `name` that is not one string', (t) => t.set('/', 'name', new Uint8Array([0, 0]))],
      ['a bad property name', (t) => t.set('/', 'bad$prop', 1)],
      ['a bad node name', (t) => t.addNode('/bad$node')],
      ['two @ in a node name', (t) => t.addNode('/a@1@2')],
    ];
    for (const [what, spoil] of spoilers) {
      const t = base.clone();
      spoil(t);
      const kept = t.toBytes({ keepNameProperties: true });
      assert.deepEqual(t.toBytes(), kept, what);
      assert.deepEqual(dtc(['-f', '-I', 'dtb', '-O', 'dtb'], tmp('dtb', kept)), kept, what);
    }
    assert.notDeepEqual(base.toBytes(), base.toBytes({ keepNameProperties: true }));
  });

  test('boot_cpuid_phys: dtc guesses it from /cpus when compiling DTS; we say so in a comment when it differs', () => {
    const fdt = Fdt.parse(new Uint8Array(readFileSync(new URL('valid/boot-cpuid.dtb', VECTORS))));
    const noB = dtc(['-I', 'dts', '-O', 'dtb'], tmp('dts', fdt.toDts()));
    assert.deepEqual(noB, fdt.toBytes());
    assert.doesNotMatch(fdt.toDts(), /boot_cpuid_phys/);
    fdt.bootCpuidPhys = 0x11;
    assert.match(fdt.toDts(), /boot_cpuid_phys is 0x11.*dtc -b 17/);
  });
});
