/**
 * Every file of test/fixtures/fdt-vectors gives the result its README
 * states, with libfdt 1.8.x where 1.8 and 1.6.1 differ.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { Fdt, FdtError, checkFdt, checkFdtHeader, fdtRwProbe } from '../src/fdt/index.js';
import type { FdtErrorCode } from '../src/fdt/index.js';

const VECTORS = new URL('../../test/fixtures/fdt-vectors/', import.meta.url);

function vector(name: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(name, VECTORS)));
}

function refusal(bytes: Uint8Array): FdtError {
  try {
    Fdt.parse(bytes);
  } catch (e) {
    assert.ok(e instanceof FdtError, `expected FdtError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected the blob to be refused');
}

describe('valid/: every blob parses, and re-encodes to the bytes dtc wrote', () => {
  const dir = new URL('valid/', VECTORS);
  const files = readdirSync(dir).filter((f) => f.endsWith('.dtb') && f !== 'test_tree1.asm.dtb');
  test('the directory holds the 11 dtc-made blobs', () => assert.equal(files.length, 11));
  for (const f of files) {
    test(f, () => {
      const bytes = vector(`valid/${f}`);
      const fdt = Fdt.parse(bytes);
      assert.deepEqual(fdt.toBytes(), bytes);
      assert.ok(Fdt.parse(fdt.toBytes()).equals(fdt));
    });
  }
});

describe('test_tree1: libfdt\'s reference tree', () => {
  const fdt = Fdt.parse(vector('valid/test_tree1.dtb'));

  test('memory reservations and header', () => {
    assert.deepEqual(fdt.reservations, [
      { address: 0xdeadbeef00000000n, size: 0x100000n },
      { address: 123456789n, size: 0o10000n },
    ]);
    assert.equal(fdt.bootCpuidPhys, 0);
  });

  test('root properties, typed', () => {
    assert.deepEqual(fdt.props('/'), ['compatible', 'prop-int', 'prop-int64', 'prop-str', '#address-cells', '#size-cells']);
    assert.equal(fdt.getString('/', 'compatible'), 'test_tree1');
    assert.equal(fdt.getU32('/', 'prop-int'), 0xdeadbeef);
    assert.equal(fdt.getU64('/', 'prop-int64'), 0xdeadbeef01abcdefn);
    assert.equal(fdt.getString('/', 'prop-str'), 'hello world');
    assert.deepEqual(fdt.children('/'), ['subnode@1', 'subnode@2']);
  });

  test('subnodes, string lists, bytes, phandles', () => {
    assert.deepEqual(fdt.get('/subnode@1', 'prop-int'), new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
    assert.deepEqual(fdt.children('/subnode@1'), ['subsubnode', 'ss1']);
    assert.deepEqual(fdt.getStrings('/subnode@1/subsubnode', 'compatible'), ['subsubnode1', 'subsubnode']);
    assert.deepEqual(fdt.getStrings('/subnode@1/subsubnode', 'placeholder'), ['this is a placeholder string', 'string2']);
    assert.equal(fdt.getU32('/subnode@2/subsubnode@0', 'prop-int'), 0o726746425);
    assert.equal(fdt.getPhandle('/subnode@2'), 0x2000); // linux,phandle
    assert.equal(fdt.getPhandle('/subnode@2/subsubnode@0'), 0x2001);
    assert.equal(fdt.findPhandle(0x2001), '/subnode@2/subsubnode@0');
    assert.deepEqual(fdt.children('/subnode@1/ss1'), []);
    assert.deepEqual(fdt.props('/subnode@2/ss2'), []);
  });

  test('paths as fdt_path_offset resolves them (tests/path_offset.c)', () => {
    assert.equal(fdt.resolve('/subnode'), '/subnode@1'); // first of subnode@1, subnode@2
    assert.equal(fdt.resolve('/subnode@2/subsubnode'), '/subnode@2/subsubnode@0');
    assert.equal(fdt.resolve('//subnode@1///subsubnode/'), '/subnode@1/subsubnode');
    assert.equal(fdt.resolve('/subnode@3'), undefined);
    assert.equal(fdt.resolve('/subnode@1/subsubnode@0'), undefined); // '@' in the name: exact match only
  });

  test('the string table shares "phandle" inside "linux,phandle"', () => {
    const bytes = vector('valid/test_tree1.dtb');
    const { header } = checkFdt(bytes);
    const strings = Buffer.from(bytes.subarray(header.offDtStrings, header.offDtStrings + header.sizeDtStrings)).toString('latin1');
    assert.ok(strings.includes('linux,phandle\0'));
    assert.ok(!strings.includes('\0phandle\0'), 'phandle stored on its own');
  });
});

describe('other layouts of test_tree1 parse to the same tree', () => {
  const reference = Fdt.parse(vector('valid/test_tree1.dtb'));
  const referenceBytes = vector('valid/test_tree1.dtb');
  for (const f of [
    'valid/test_tree1.asm.dtb', // no suffix sharing
    'derived/test_tree1.v16.dtb', // 36-byte header, no size_dt_struct
    'derived/test_tree1.padded.dtb', // 256 bytes of free space
    'derived/test_tree1.rsvslots.dtb', // two extra (0,0) reserve entries
    'derived/test_tree1.layout_smt.dtb', // blocks in the order header, strings, rsvmap, struct
  ]) {
    test(f, () => {
      const fdt = Fdt.parse(vector(f));
      assert.ok(fdt.equals(reference));
      assert.deepEqual(fdt.toBytes(), referenceBytes, 'dtc -I dtb -O dtb gives exactly test_tree1.dtb');
    });
  }

  test('test_tree1.nops.dtb: the NOPed property and node are gone', () => {
    const expected = reference.clone();
    assert.ok(expected.remove('/subnode@1', 'prop-int'));
    assert.ok(expected.remove('/subnode@2/ss2'));
    const fdt = Fdt.parse(vector('derived/test_tree1.nops.dtb'));
    assert.ok(fdt.equals(expected));
    assert.equal(fdt.toBytes().length, 721, 'dtc drops the NOPs: 721 bytes');
  });

  test('test_tree1.v16.dtb is what we write with version 16', () => {
    assert.deepEqual(reference.toBytes({ version: 16 }), vector('derived/test_tree1.v16.dtb'));
  });

  test('padded and rsvslots are what we write with dtc\'s -p 256 and -R 2', () => {
    assert.deepEqual(reference.toBytes({ freeSpace: 256 }), vector('derived/test_tree1.padded.dtb'));
    assert.deepEqual(reference.toBytes({ reserveSlots: 2 }), vector('derived/test_tree1.rsvslots.dtb'));
  });

  test('layout_smt is readable but libfdt would not edit it in place (BADLAYOUT)', () => {
    assert.equal(fdtRwProbe(checkFdt(vector('derived/test_tree1.layout_smt.dtb')).header), 'BADLAYOUT');
    assert.equal(fdtRwProbe(checkFdt(vector('valid/test_tree1.dtb')).header), null);
    assert.equal(fdtRwProbe(checkFdt(vector('derived/test_tree1.v16.dtb')).header), 'BADVERSION');
  });
});

describe('malformed/: refused with libfdt\'s code', () => {
  const expected: [string, FdtErrorCode, number][] = [
    ['truncated_property.dtb', 'BADSTRUCTURE', 64],
    ['truncated_string.dtb', 'TRUNCATED', 84],
    ['truncated_memrsv.dtb', 'TRUNCATED', 72],
    ['unterminated_memrsv.dtb', 'TRUNCATED', 72],
    ['two_roots.dtb', 'BADSTRUCTURE', 68],
    ['named_root.dtb', 'BADSTRUCTURE', 56],
    ['ovf_size_strings.dtb', 'TRUNCATED', 32],
  ];
  for (const [f, code, offset] of expected) {
    test(`${f}: ${code} at ${offset}`, () => {
      const e = refusal(vector(`malformed/${f}`));
      assert.equal(e.code, code, e.message);
      assert.equal(e.offset, offset);
      assert.equal(e.errnum, { TRUNCATED: 8, BADSTRUCTURE: 11 }[code as 'TRUNCATED' | 'BADSTRUCTURE']);
    });
  }

  test('truncated_string: a strings block cut inside "good" is TRUNCATED too', () => {
    const bytes = vector('malformed/truncated_string.dtb');
    const header = checkFdtHeader(bytes); // check_header passes: only the walk finds the fault
    const strings = Buffer.from(bytes.subarray(header.offDtStrings)).toString('latin1');
    const good = strings.indexOf('good');
    assert.ok(good >= 0);
    const cut = bytes.slice();
    new DataView(cut.buffer).setUint32(32, good + 2); // size_dt_strings ends inside "good"
    const e = refusal(cut);
    assert.equal(e.code, 'TRUNCATED');
  });

  for (const [f, check] of [
    ['bad_node_char.dtb', 'node_name_chars'],
    ['bad_node_format.dtb', 'node_name_format'],
    ['bad_prop_char.dtb', 'property_name_chars'],
  ]) {
    test(`${f}: valid structure, but lint() flags ${check}`, () => {
      const fdt = Fdt.parse(vector(`malformed/${f}`));
      const findings = fdt.lint().filter((x) => x.severity === 'error');
      assert.deepEqual(findings.map((x) => x.check), [check]);
      assert.deepEqual(fdt.toBytes(), vector(`malformed/${f}`));
    });
  }
});

describe('derived/: libfdt 1.8.x semantics', () => {
  test('empty.nop_before_end.dtb: a NOP after the root END_NODE is valid (1.6.1 said BADSTRUCTURE)', () => {
    const fdt = Fdt.parse(vector('derived/empty.nop_before_end.dtb'));
    assert.ok(fdt.equals(new Fdt()));
    assert.deepEqual(fdt.toBytes(), vector('valid/empty.dtb'));
  });

  test('test_tree1.rsvmap_misaligned.dtb: ALIGNMENT (1.6.1 accepted it)', () => {
    const e = refusal(vector('derived/test_tree1.rsvmap_misaligned.dtb'));
    assert.equal(e.code, 'ALIGNMENT');
    assert.equal(e.offset, 16, 'the off_mem_rsvmap field');
  });
});

describe('the other valid trees', () => {
  test('aliases.dtb: aliases resolve as in tests/path_offset_aliases.c; bad ones do not', () => {
    const fdt = Fdt.parse(vector('valid/aliases.dtb'));
    const pairs: [string, string][] = [
      ['/subnode@1', 's1'],
      ['/subnode@1/subsubnode', 'ss1'],
      ['/subnode@1/subsubnode', 's1/subsubnode'],
      ['/subnode@1/subsubnode/subsubsubnode', 'sss1'],
      ['/subnode@1/subsubnode/subsubsubnode', 'ss1/subsubsubnode'],
      ['/subnode@1/subsubnode/subsubsubnode', 's1/subsubnode/subsubsubnode'],
    ];
    for (const [full, alias] of pairs) assert.equal(fdt.resolve(alias), full, alias);
    for (const bad of ['empty', 'loop', 'nonull', 'relative', 'nosuchalias']) assert.equal(fdt.resolve(bad), undefined, bad);
    assert.deepEqual(fdt.getStrings('ss1', 'compatible'), ['subsubnode1', 'subsubnode']);
  });

  test('boot-cpuid.dtb: boot_cpuid_phys 0x10 from the header', () => {
    assert.equal(Fdt.parse(vector('valid/boot-cpuid.dtb')).bootCpuidPhys, 0x10);
  });

  test('references.dtb: phandle and linux,phandle, explicit and assigned', () => {
    const fdt = Fdt.parse(vector('valid/references.dtb'));
    assert.equal(fdt.findPhandle(0x2000), '/node1');
    assert.equal(fdt.findPhandle(1), '/node2');
    assert.equal(fdt.findPhandle(2), '/');
    assert.equal(fdt.findPhandle(0xfffffffe), '/node6');
    assert.equal(fdt.getU32('/node3', 'ref'), fdt.getPhandle('/node4'));
    // node6 holds the largest phandle there is, so none is left to give (fdt_generate_phandle).
    assert.throws(() => fdt.generatePhandle(), (e: unknown) => e instanceof FdtError && e.code === 'NOPHANDLES');
    assert.deepEqual(fdt.lint(), []);
  });

  test('sized_cells.dtb: odd value lengths', () => {
    const fdt = Fdt.parse(vector('valid/sized_cells.dtb'));
    assert.deepEqual(fdt.get('/', 'cells-8b'), new Uint8Array([0x0d, 0x62, 0x00, 0x27, 0xff, 0xde]));
    assert.equal(fdt.get('/', 'cells-16b')?.length, 12);
    assert.deepEqual(fdt.getCells('/', 'cells-one-32b'), [0x12345678, 0xffff]);
  });

  test('embedded_nul.dtb and stringlist.dtb: NULs inside values, a boolean property', () => {
    const nul = Fdt.parse(vector('valid/embedded_nul.dtb'));
    assert.equal(nul.get('/', 'reserved-ranges')?.length, 48);
    const list = Fdt.parse(vector('valid/stringlist.dtb'));
    assert.deepEqual(list.getStrings('/device', 'compatible'), ['foo', 'bar']);
    assert.deepEqual(list.get('/device', 'big-endian'), new Uint8Array(0));
  });

  test('overlay trees: __symbols__, fragments, fixups', () => {
    const base = Fdt.parse(vector('valid/overlay_base.dtb'));
    assert.equal(base.getString('/__symbols__', 'subtest'), '/test-node/sub-test-node');
    const overlay = Fdt.parse(vector('valid/overlay_overlay.dtb'));
    assert.ok(overlay.has('/__fixups__'));
    assert.ok(overlay.has('/__local_fixups__'));
    assert.ok(overlay.children('/').some((c) => c.startsWith('fragment@')));
  });
});

