/**
 * lint(): what libfdt leaves to dtc's checks. Each finding names dtc's
 * check, and where dtc has the check, dtc run on the same blob reports it.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fdt } from '../src/fdt/index.js';
import type { FdtLintFinding } from '../src/fdt/index.js';

const dir = mkdtempSync(join(tmpdir(), 'pmpool-fdt-lint-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let serial = 0;

/** The checks dtc reports on a blob ("ERROR (x)" / "Warning (x)"), other than prerequisite notes. */
function dtcChecks(blob: Uint8Array): string[] {
  const path = join(dir, `l${serial++}.dtb`);
  writeFileSync(path, blob);
  const r = spawnSync('/usr/bin/dtc', ['-f', '-I', 'dtb', '-O', 'dtb', '-o', '/dev/null', path], { encoding: 'utf8' });
  return [...r.stderr.matchAll(/(?:ERROR|Warning) \((\w+)\): (?!Failed prerequisite)/g)].map((m) => m[1]);
}

function checks(findings: FdtLintFinding[]): string[] {
  return findings.map((f) => f.check);
}

/** A blob with some bytes replaced (same length): how duplicates get into a blob. */
function patched(blob: Uint8Array, from: string, to: string): Uint8Array {
  const buf = Buffer.from(blob);
  const at = buf.lastIndexOf(Buffer.from(from, 'latin1'));
  assert.ok(at >= 0 && from.length === to.length);
  buf.write(to, at, 'latin1');
  return new Uint8Array(buf);
}

describe('a clean tree', () => {
  test('has no findings, and dtc agrees', () => {
    const fdt = new Fdt();
    fdt.set('/', '#address-cells', 1);
    fdt.set('/', '#size-cells', 1);
    fdt.addNode('/soc@1000');
    fdt.set('/soc@1000', 'reg', [0x1000, 0x100]);
    fdt.set('/soc@1000', 'phandle', 1);
    fdt.addNode('/chosen');
    assert.deepEqual(fdt.lint(), []);
    assert.deepEqual(dtcChecks(fdt.toBytes()), []);
  });
});

describe('names', () => {
  test('node name characters and format', () => {
    const fdt = new Fdt();
    fdt.addNode('/sub$node');
    const f = fdt.lint();
    assert.deepEqual(checks(f), ['node_name_chars']);
    assert.equal(f[0].path, '/sub$node');
    assert.equal(f[0].severity, 'error');
    assert.match(f[0].message, /'\$'/);
    assert.deepEqual(dtcChecks(fdt.toBytes()), ['node_name_chars']);
    const two = new Fdt();
    two.addNode('/a@1@2');
    two.set('/a@1@2', 'reg', 1);
    assert.ok(checks(two.lint()).includes('node_name_format'));
    assert.ok(dtcChecks(two.toBytes()).includes('node_name_format'));
    const nonAscii = new Fdt();
    nonAscii.addNode('/caf\u00e9');
    assert.match(nonAscii.lint()[0].message, /0xe9/);
  });

  test('property name characters', () => {
    const fdt = new Fdt();
    fdt.set('/', 'prop$erty', 1);
    fdt.set('/', '#good,name?', 1);
    const f = fdt.lint();
    assert.deepEqual(checks(f), ['property_name_chars']);
    assert.equal(f[0].property, 'prop$erty');
    assert.deepEqual(dtcChecks(fdt.toBytes()), ['property_name_chars']);
  });

  test('an empty node name in a blob', () => {
    const fdt = new Fdt();
    fdt.addNode('/x');
    const blob = fdt.toBytes();
    const empty = Fdt.parse(patched(blob, '\x01x\0', '\x01\0\0'));
    assert.deepEqual(empty.children('/'), ['']);
    assert.ok(checks(empty.lint()).includes('node_name_format'));
  });

  test('duplicate node names and duplicate property names (only a blob can hold them)', () => {
    const fdt = new Fdt();
    fdt.addNode('/n1');
    fdt.addNode('/n2');
    fdt.set('/', 'aa', 1);
    fdt.set('/', 'bb', 2);
    let blob = patched(fdt.toBytes(), 'n2\0', 'n1\0');
    blob = patched(blob, 'bb\0', 'aa\0');
    const dup = Fdt.parse(blob);
    assert.deepEqual(dup.children('/'), ['n1', 'n1']);
    assert.deepEqual(dup.props('/'), ['aa', 'aa']);
    assert.equal(dup.getU32('/', 'aa'), 1, 'the first of duplicates, as libfdt');
    assert.deepEqual(checks(dup.lint()).sort(), ['duplicate_node_names', 'duplicate_property_names']);
    // dtc stops running checks after the first error: it reports the first only.
    assert.deepEqual(dtcChecks(blob), ['duplicate_node_names']);
  });
});

describe('structure the blob had', () => {
  test('properties after subnodes', () => {
    const fdt = new Fdt();
    fdt.addNode('/n');
    fdt.set('/', 'late', 1);
    const blob = fdt.toBytes();
    // Move the root's property after the subnode: swap the two items of the structure block.
    const s = new DataView(blob.buffer).getUint32(8);
    const prop = blob.slice(s + 8, s + 24);
    const node = blob.slice(s + 24, s + 36);
    const moved = blob.slice();
    moved.set(node, s + 8);
    moved.set(prop, s + 20);
    const late = Fdt.parse(moved);
    assert.deepEqual(checks(late.lint()), ['property_after_subnode']);
    assert.equal(late.lint()[0].path, '/');
    assert.deepEqual(late.toBytes(), blob, 'written properties-first, as dtc writes it');
  });
});

describe('phandles (dtc explicit_phandles)', () => {
  function withPhandles(setup: (f: Fdt) => void): Fdt {
    const fdt = new Fdt();
    fdt.addNode('/a');
    fdt.addNode('/b');
    setup(fdt);
    return fdt;
  }
  const cases: [string, (f: Fdt) => void, RegExp][] = [
    ['bad length', (f) => f.set('/a', 'phandle', [1, 2]), /bad length \(8\) phandle/],
    ['zero', (f) => f.set('/a', 'phandle', 0), /bad value \(0x0\)/],
    ['all ones', (f) => f.set('/a', 'linux,phandle', 0xffffffff), /bad value \(0xffffffff\)/],
    ['mismatch', (f) => (f.set('/a', 'phandle', 1), f.set('/a', 'linux,phandle', 2)), /mismatching/],
    ['duplicate', (f) => (f.set('/a', 'phandle', 7), f.set('/b', 'linux,phandle', 7)), /duplicated phandle 0x7 \(seen before at \/a\)/],
  ];
  for (const [what, setup, message] of cases) {
    test(what, () => {
      const fdt = withPhandles(setup);
      const f = fdt.lint();
      assert.deepEqual(checks(f), ['explicit_phandles']);
      assert.match(f[0].message, message);
      assert.deepEqual(dtcChecks(fdt.toBytes()), ['explicit_phandles']);
    });
  }

  test('phandle equal to linux,phandle is fine', () => {
    assert.deepEqual(withPhandles((f) => (f.set('/a', 'phandle', 3), f.set('/a', 'linux,phandle', 3))).lint(), []);
  });
});

describe('unit addresses', () => {
  function bus(cells: number, build: (f: Fdt) => void): Fdt {
    const fdt = new Fdt();
    fdt.set('/', '#address-cells', cells);
    fdt.set('/', '#size-cells', 1);
    build(fdt);
    return fdt;
  }

  test('a unit address without reg, reg without a unit address (dtc unit_address_vs_reg)', () => {
    const noReg = bus(1, (f) => f.addNode('/dev@10'));
    assert.deepEqual(checks(noReg.lint()), ['unit_address_vs_reg']);
    assert.deepEqual(dtcChecks(noReg.toBytes()), ['unit_address_vs_reg']);
    const noUnit = bus(1, (f) => (f.addNode('/dev'), f.set('/dev', 'reg', [0x10, 1])));
    assert.deepEqual(checks(noUnit.lint()), ['unit_address_vs_reg']);
    assert.deepEqual(dtcChecks(noUnit.toBytes()), ['unit_address_vs_reg']);
  });

  test('the root with reg has no unit name to match it, as dtc says of it too', () => {
    const root = bus(1, (f) => f.set('/', 'reg', [1, 2]));
    assert.deepEqual(checks(root.lint()), ['reg_format', 'unit_address_vs_reg']);
    assert.deepEqual(dtcChecks(root.toBytes()), ['reg_format', 'unit_address_vs_reg']);
  });

  test('non-empty ranges stands in for reg; empty ranges does not', () => {
    assert.deepEqual(bus(1, (f) => (f.addNode('/b@0'), f.set('/b@0', 'ranges', [0, 0, 1]))).lint(), []);
    assert.deepEqual(checks(bus(1, (f) => (f.addNode('/b@0'), f.set('/b@0', 'ranges', new Uint8Array(0)))).lint()), ['unit_address_vs_reg']);
  });

  test('a unit address that disagrees with reg', () => {
    const ok1 = bus(1, (f) => (f.addNode('/d@1f'), f.set('/d@1f', 'reg', [0x1f, 1])));
    assert.deepEqual(ok1.lint(), []);
    const ok2 = bus(2, (f) => (f.addNode('/m@180000000'), f.set('/m@180000000', 'reg', [1, 0x80000000, 1])));
    assert.deepEqual(ok2.lint(), []);
    for (const name of ['d@20', 'd@0x1f', 'd@001f', 'd@1F']) {
      const bad = bus(1, (f) => (f.addNode(`/${name}`), f.set(`/${name}`, 'reg', [0x1f, 1])));
      const f = bad.lint();
      assert.deepEqual(checks(f), ['unit_address_mismatch'], name);
      assert.match(f[0].message, /expected "1f"/);
    }
    const func = bus(1, (f) => (f.addNode('/d@1f,2'), f.set('/d@1f,2', 'reg', [0x1f, 1])));
    assert.deepEqual(func.lint(), [], 'a ",function" suffix after the address is allowed');
    const pci = bus(3, (f) => (f.addNode('/d@5'), f.set('/d@5', 'reg', [0, 0, 9, 1])));
    assert.deepEqual(pci.lint(), [], '3-cell addresses are bus-specific: not judged');
  });

  test('overlay fragments are exempt, as in dtc', () => {
    const fdt = new Fdt();
    fdt.addNode('/fragment@0/__overlay__');
    assert.deepEqual(fdt.lint(), []);
  });
});

describe('name properties', () => {
  test('a `name` that is not the base node name', () => {
    const fdt = new Fdt();
    fdt.addNode('/dev@1');
    fdt.set('/dev@1', 'reg', 1);
    fdt.set('/', '#address-cells', 1);
    fdt.set('/', '#size-cells', 0);
    fdt.set('/dev@1', 'name', 'dev');
    assert.deepEqual(fdt.lint(), []);
    fdt.set('/dev@1', 'name', 'other');
    assert.deepEqual(checks(fdt.lint()), ['name_properties']);
    assert.deepEqual(dtcChecks(fdt.toBytes()), ['name_properties']);
  });
});
