/**
 * The DTS printer: the form of each value (dtc's guess_value_type), the
 * layout, and — the point of it — `dtc -I dts -O dtb` of our text gives
 * back the very same tree, for any bytes in any value.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Fdt } from '../src/fdt/index.js';
import type { FdtValue } from '../src/fdt/index.js';

const dir = mkdtempSync(join(tmpdir(), 'pmpool-fdt-dts-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let serial = 0;

/** dtc -I dts -O dtb of our text. */
function compile(fdt: Fdt): Uint8Array {
  const src = join(dir, `t${serial}.dts`);
  const out = join(dir, `t${serial++}.dtb`);
  writeFileSync(src, fdt.toDts());
  execFileSync('/usr/bin/dtc', ['-q', '-I', 'dts', '-O', 'dtb', '-b', String(fdt.bootCpuidPhys), '-o', out, src], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Uint8Array(readFileSync(out));
}

function line(value: FdtValue): string {
  const fdt = new Fdt();
  fdt.set('/', 'p', value);
  const found = fdt.toDts().split('\n').find((l) => l.startsWith('\tp'));
  assert.ok(found !== undefined);
  return found.trim();
}

describe('value forms', () => {
  test('strings and string lists', () => {
    assert.equal(line('hello'), 'p = "hello";');
    assert.equal(line(['a', 'b c', '']), 'p = "a", "b c", "";');
    assert.equal(line('tab\there "q" \\ \n\r\x07\x08\x0b\x0c'), 'p = "tab\\there \\"q\\" \\\\ \\n\\r\\a\\b\\v\\f";');
  });

  test('cells when the length is a multiple of 4 and it is not text', () => {
    assert.equal(line(1), 'p = <0x01>;');
    assert.equal(line([0xdeadbeef, 0]), 'p = <0xdeadbeef 0x00>;');
    assert.equal(line(0x0123456789abcdefn), 'p = <0x1234567 0x89abcdef>;');
    assert.equal(line(new Uint8Array([0x61, 0, 0, 0])), 'p = <0x61000000>;', 'more NULs than text: not a string');
  });

  test('bytes otherwise; an empty value is a boolean property', () => {
    assert.equal(line(new Uint8Array([0, 0xff, 0x10])), 'p = [00 ff 10];');
    assert.equal(line(new Uint8Array([0])), 'p = [00];');
    assert.equal(line(new Uint8Array([0x61, 0x62])), 'p = [61 62];', 'no NUL at the end: not a string');
    assert.equal(line(new Uint8Array([0xc3, 0xa9, 0])), 'p = [c3 a9 00];', 'non-ASCII is bytes, as in dtc');
    assert.equal(line(new Uint8Array(0)), 'p;');
  });
});

describe('layout', () => {
  test('header, memreserve, nested nodes with tabs, a blank line before each node', () => {
    const fdt = new Fdt();
    fdt.addReservation(0x1000n, 0x20n);
    fdt.set('/', 'model', 'm');
    fdt.addNode('/a@1/b');
    fdt.set('/a@1', 'reg', 1);
    assert.equal(
      fdt.toDts(),
      [
        '/dts-v1/;',
        '',
        '/memreserve/\t0x0000000000001000 0x0000000000000020;',
        '/ {',
        '\tmodel = "m";',
        '',
        '\ta@1 {',
        '\t\treg = <0x01>;',
        '',
        '\t\tb {',
        '\t\t};',
        '\t};',
        '};',
        '',
      ].join('\n'),
    );
  });

  test('boot_cpuid_phys: a comment only when dtc would guess another value', () => {
    const fdt = new Fdt();
    assert.doesNotMatch(fdt.toDts(), /boot_cpuid/);
    fdt.addNode('/cpus/cpu@2');
    fdt.set('/cpus/cpu@2', 'reg', 2);
    fdt.bootCpuidPhys = 2;
    assert.doesNotMatch(fdt.toDts(), /boot_cpuid/);
    fdt.bootCpuidPhys = 3;
    assert.match(fdt.toDts(), /^\/\/ boot_cpuid_phys is 0x3; DTS cannot carry it: compile with dtc -b 3$/m);
  });
});

describe('dtc reads our DTS back to the same tree', () => {
  test('every byte value, every escape, every form', () => {
    const fdt = new Fdt();
    fdt.addReservation(0xdeadbeef00000000n, 0x100000n);
    fdt.addReservation(0n, 0xffffffffffffffffn);
    for (let b = 0; b < 256; b++) {
      fdt.set('/', `b${b}`, new Uint8Array([b]));
      fdt.set('/', `s${b}`, new Uint8Array([0x61, b, 0]));
      fdt.set('/', `c${b}`, new Uint8Array([b, b, 0, b]));
    }
    fdt.set('/', 'all', new Uint8Array(256).map((_, i) => i));
    fdt.set('/', 'printable', new Uint8Array([...Buffer.from(' !"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~'), 0]));
    fdt.set('/', 'empty-strings', new Uint8Array([0x61, 0, 0, 0x62, 0]));
    fdt.set('/', 'bool', new Uint8Array(0));
    const bytes = compile(fdt);
    assert.ok(Fdt.parse(bytes).equals(fdt));
    assert.deepEqual(bytes, fdt.toBytes());
  });

  test('random values, 200 to a tree', { timeout: 60_000 }, () => {
    const values = fc.array(fc.oneof(fc.uint8Array({ maxLength: 33 }), fc.string({ maxLength: 20 }).map((s) => s.replace(/\0/g, '') + '\0').map((s) => new Uint8Array(Buffer.from(s, 'latin1')))), {
      minLength: 200,
      maxLength: 200,
    });
    fc.assert(
      fc.property(values, fc.integer({ min: 0, max: 0xffffffff }), (list, boot) => {
        const fdt = new Fdt();
        fdt.bootCpuidPhys = boot;
        list.forEach((v, i) => fdt.set('/', `v${i}`, v));
        assert.deepEqual(compile(fdt), fdt.toBytes());
      }),
      { numRuns: 8 },
    );
  });
});
