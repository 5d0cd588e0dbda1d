/**
 * The tree model and its path-based access (DESIGN.md §6): typed getters
 * and setters, node and property edits, aliases and `name@addr` lookup,
 * reg decoding, phandles, and copy-on-write sharing behind clone(),
 * copyNode() and nodeEquals().
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Fdt, FdtError, FDT_ERR_NUMBERS, checkFdt, checkFdtHeader, fdtRwProbe, fdtStrerror } from '../src/fdt/index.js';
import type { FdtErrorCode } from '../src/fdt/index.js';
import { shown } from './support/expect.js';

function throwsCode(fn: () => unknown, code: FdtErrorCode): void {
  assert.throws(fn, (e: unknown) => e instanceof FdtError && e.code === code, `expected ${code}`);
}

describe('a new Fdt', () => {
  test('is an empty root with no reservations', () => {
    const fdt = new Fdt();
    assert.ok(fdt.has('/'));
    assert.deepEqual(fdt.children('/'), []);
    assert.deepEqual(fdt.props('/'), []);
    assert.deepEqual(fdt.reservations, []);
    assert.equal(fdt.bootCpuidPhys, 0);
    assert.equal(fdt.toBytes().length, 72, 'the same 72 bytes as dtc\'s empty.dtb');
  });
});

describe('set and the typed getters', () => {
  const fdt = new Fdt();
  fdt.set('/', 'str', 'hello');
  fdt.set('/', 'list', ['a', 'bc', '']);
  fdt.set('/', 'u32', 0xdeadbeef);
  fdt.set('/', 'cells', [1, 2, 0xffffffff]);
  fdt.set('/', 'u64', 0x0123456789abcdefn);
  fdt.set('/', 'bytes', new Uint8Array([1, 2, 3]));
  fdt.set('/', 'empty', new Uint8Array(0));
  fdt.set('/', 'utf8', 'héllo ✓');

  test('each value type has its encoding', () => {
    assert.deepEqual(fdt.get('/', 'str'), new Uint8Array([0x68, 0x65, 0x6c, 0x6c, 0x6f, 0]));
    assert.deepEqual(fdt.get('/', 'list'), new Uint8Array([0x61, 0, 0x62, 0x63, 0, 0]));
    assert.deepEqual(fdt.get('/', 'u32'), new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
    assert.deepEqual(fdt.get('/', 'u64'), new Uint8Array([1, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]));
    assert.equal(fdt.get('/', 'cells')?.length, 12);
    assert.deepEqual(fdt.get('/', 'empty'), new Uint8Array(0));
  });

  test('and reads back through the getters', () => {
    assert.equal(fdt.getString('/', 'str'), 'hello');
    assert.deepEqual(fdt.getStrings('/', 'list'), ['a', 'bc', '']);
    assert.equal(fdt.getU32('/', 'u32'), 0xdeadbeef);
    assert.deepEqual(fdt.getCells('/', 'cells'), [1, 2, 0xffffffff]);
    assert.equal(fdt.getU64('/', 'u64'), 0x0123456789abcdefn);
    assert.equal(fdt.getString('/', 'utf8'), 'héllo ✓');
    assert.deepEqual(fdt.props('/'), ['str', 'list', 'u32', 'cells', 'u64', 'bytes', 'empty', 'utf8']);
  });

  test('a missing node or property reads as undefined', () => {
    assert.equal(fdt.get('/', 'nope'), undefined);
    assert.equal(fdt.get('/nope', 'str'), undefined);
    assert.equal(fdt.getU32('/nope', 'u32'), undefined);
    assert.equal(fdt.getString('/', 'nope'), undefined);
  });

  test('a value of the wrong shape is BADVALUE', () => {
    throwsCode(() => fdt.getU32('/', 'u64'), 'BADVALUE');
    throwsCode(() => fdt.getU64('/', 'u32'), 'BADVALUE');
    throwsCode(() => fdt.getString('/', 'list'), 'BADVALUE');
    throwsCode(() => fdt.getString('/', 'u32'), 'BADVALUE');
    throwsCode(() => fdt.getCells('/', 'bytes'), 'BADVALUE');
    const bad = new Fdt();
    bad.set('/', 'latin', new Uint8Array([0xff, 0xfe, 0]));
    throwsCode(() => bad.getString('/', 'latin'), 'BADVALUE');
  });

  test('values that cannot be encoded are BADVALUE', () => {
    const t = new Fdt();
    throwsCode(() => t.set('/', 'x', -1), 'BADVALUE');
    throwsCode(() => t.set('/', 'x', 1.5), 'BADVALUE');
    throwsCode(() => t.set('/', 'x', 2 ** 32), 'BADVALUE');
    throwsCode(() => t.set('/', 'x', [1, -2]), 'BADVALUE');
    throwsCode(() => t.set('/', 'x', -1n), 'BADVALUE');
    throwsCode(() => t.set('/', 'x', 1n << 64n), 'BADVALUE');
    throwsCode(() => t.set('/', 'x', 'a\0b'), 'BADVALUE');
    throwsCode(() => t.set('/', 'x', [1, 'a'] as unknown as number[]), 'BADVALUE');
    throwsCode(() => t.set('/', '', 1), 'BADVALUE');
    throwsCode(() => t.set('/', 'a\0b', 1), 'BADVALUE');
    throwsCode(() => t.set('/', 'snow☃', 1), 'BADVALUE');
    assert.deepEqual(t.props('/'), []);
  });

  test('get returns a copy; a Uint8Array set is copied too', () => {
    const t = new Fdt();
    const mine = new Uint8Array([1, 2]);
    t.set('/', 'b', mine);
    mine[0] = 9;
    const got = t.get('/', 'b');
    assert.deepEqual(got, new Uint8Array([1, 2]));
    got![1] = 9;
    assert.deepEqual(t.get('/', 'b'), new Uint8Array([1, 2]));
  });

  test('a Buffer is copied as a Uint8Array is: given to parse or set, or handed out by get', () => {
    // Buffer's slice() is a view of the same memory, not a copy.
    const source = new Fdt();
    source.set('/', 's', 'abc');
    const blob = Buffer.from(source.toBytes());
    const parsed = Fdt.parse(blob);
    blob.fill(0x41);
    assert.equal(parsed.getString('/', 's'), 'abc');

    const mine = Buffer.from([1, 2]);
    const t = new Fdt();
    t.set('/', 'b', mine);
    mine[0] = 9;
    assert.deepEqual(t.get('/', 'b'), new Uint8Array([1, 2]));
    const got = t.get('/', 'b')!;
    got[1] = 9;
    assert.deepEqual(t.get('/', 'b'), new Uint8Array([1, 2]));
    assert.equal(Object.getPrototypeOf(got), Uint8Array.prototype);
  });

  test('set replaces the first property of that name in place, else appends', () => {
    const t = new Fdt();
    t.set('/', 'a', 1);
    t.set('/', 'b', 2);
    t.set('/', 'a', 3);
    assert.deepEqual(t.props('/'), ['a', 'b']);
    assert.equal(t.getU32('/', 'a'), 3);
  });

  test('set on a missing node is NOTFOUND', () => {
    throwsCode(() => new Fdt().set('/missing', 'a', 1), 'NOTFOUND');
  });
});

describe('nodes: add, remove, rename, list', () => {
  test('addNode creates missing parents and is idempotent', () => {
    const t = new Fdt();
    t.addNode('/a/b/c@1');
    assert.deepEqual(t.children('/'), ['a']);
    assert.deepEqual(t.children('/a/b'), ['c@1']);
    t.addNode('/a/b/c@1');
    t.addNode('//a///d/');
    assert.deepEqual(t.children('/a'), ['b', 'd']);
  });

  test('addNode matches components exactly (not name ~ name@addr)', () => {
    const t = new Fdt();
    t.addNode('/cpu@0');
    t.addNode('/cpu');
    assert.deepEqual(t.children('/'), ['cpu@0', 'cpu']);
    assert.equal(t.resolve('/cpu'), '/cpu@0', 'lookups still match as libfdt does: first child wins');
  });

  test('addNode refuses relative paths and impossible names', () => {
    const t = new Fdt();
    throwsCode(() => t.addNode('a'), 'BADPATH');
    throwsCode(() => t.addNode('/a\0b'), 'BADPATH');
    throwsCode(() => t.addNode('/snow☃'), 'BADPATH');
    throwsCode(() => t.has(''), 'BADPATH');
  });

  test('remove a property, a node; false when there is nothing to remove', () => {
    const t = new Fdt();
    t.addNode('/a/b');
    t.set('/a', 'p', 1);
    assert.equal(t.remove('/a', 'p'), true);
    assert.equal(t.remove('/a', 'p'), false);
    assert.equal(t.remove('/a/b'), true);
    assert.equal(t.remove('/a/b'), false);
    assert.equal(t.remove('/x', 'p'), false);
    assert.deepEqual(t.children('/a'), []);
    throwsCode(() => t.remove('/'), 'BADPATH');
  });

  test('renameNode and renameProp keep places; clashes are EXISTS', () => {
    const t = new Fdt();
    t.addNode('/a');
    t.addNode('/b');
    t.set('/a', 'x', 1);
    t.set('/a', 'y', 2);
    t.renameNode('/a', 'c@1');
    assert.deepEqual(t.children('/'), ['c@1', 'b']);
    throwsCode(() => t.renameNode('/c@1', 'b'), 'EXISTS');
    throwsCode(() => t.renameNode('/', 'r'), 'BADPATH');
    throwsCode(() => t.renameNode('/b', 'x/y'), 'BADPATH');
    t.renameProp('/c@1', 'x', 'z');
    assert.deepEqual(t.props('/c@1'), ['z', 'y']);
    throwsCode(() => t.renameProp('/c@1', 'z', 'y'), 'EXISTS');
    throwsCode(() => t.renameProp('/c@1', 'nope', 'w'), 'NOTFOUND');
    throwsCode(() => t.renameNode('/nope', 'w'), 'NOTFOUND');
  });

  test('children and props of a missing node are NOTFOUND; has() answers', () => {
    const t = new Fdt();
    t.addNode('/a');
    t.set('/a', 'p', 'v');
    throwsCode(() => t.children('/b'), 'NOTFOUND');
    throwsCode(() => t.props('/b'), 'NOTFOUND');
    assert.equal(t.has('/a'), true);
    assert.equal(t.has('/a', 'p'), true);
    assert.equal(t.has('/a', 'q'), false);
    assert.equal(t.has('/b'), false);
  });
});

describe('paths', () => {
  const t = new Fdt();
  t.addNode('/soc/serial@1000');
  t.addNode('/soc/serial@2000');
  t.addNode('/soc/serial');
  t.addNode('/aliases');
  t.set('/aliases', 'uart1', '/soc/serial@2000');
  t.set('/aliases', 'soc', '/soc');
  t.set('/aliases', 'chain', 'uart1');
  t.set('/soc/serial@2000', 'p', 7);

  test('name matches name@addr, the first matching child wins', () => {
    assert.equal(t.resolve('/soc/serial'), '/soc/serial@1000');
    assert.equal(t.resolve('/soc/serial@2000'), '/soc/serial@2000');
    assert.equal(t.resolve('/soc/serial@3000'), undefined);
  });

  test('aliases start a path; an alias naming an alias is no alias', () => {
    assert.equal(t.getU32('uart1', 'p'), 7);
    assert.equal(t.resolve('soc/serial@2000'), '/soc/serial@2000');
    assert.equal(t.resolve('chain'), undefined);
    assert.equal(t.resolve('nothing/here'), undefined);
  });

  test('an alias /aliases does not define is BADPATH; a missing node after a good one is NOTFOUND (fdtget and fdtput say the same)', () => {
    for (const path of ['nothing', 'nothing/here', 'chain']) {
      throwsCode(() => t.children(path), 'BADPATH');
      throwsCode(() => t.props(path), 'BADPATH');
      throwsCode(() => t.set(path, 'p', 1), 'BADPATH');
      throwsCode(() => t.getReg(path), 'BADPATH');
    }
    throwsCode(() => new Fdt().children('nothing'), 'BADPATH'); // no /aliases at all
    throwsCode(() => t.children('soc/nothing'), 'NOTFOUND');
    throwsCode(() => t.children('/nothing'), 'NOTFOUND');
  });

  test('set and remove accept aliases', () => {
    const c = t.clone();
    c.set('uart1', 'q', 'x');
    assert.equal(c.getString('/soc/serial@2000', 'q'), 'x');
    assert.ok(c.remove('uart1'));
    assert.deepEqual(c.children('/soc'), ['serial@1000', 'serial']);
  });
});

describe('reg, #address-cells and #size-cells', () => {
  test('entries sized by the parent; defaults 2 and 1', () => {
    const t = new Fdt();
    t.set('/', '#address-cells', 2);
    t.set('/', '#size-cells', 1);
    t.addNode('/memory@80000000');
    t.set('/memory@80000000', 'reg', [0, 0x80000000, 0x1000, 1, 0, 0x2000]);
    assert.deepEqual(t.getReg('/memory@80000000'), [
      { address: 0x80000000n, size: 0x1000n },
      { address: 0x100000000n, size: 0x2000n },
    ]);
    t.addNode('/bus');
    t.set('/bus', '#address-cells', 1);
    t.set('/bus', '#size-cells', 0);
    t.addNode('/bus/dev@4');
    t.set('/bus/dev@4', 'reg', 4);
    assert.deepEqual(t.getReg('/bus/dev@4'), [{ address: 4n, size: 0n }]);
    assert.equal(t.getReg('/bus'), undefined);
    const d = new Fdt();
    d.addNode('/x');
    d.set('/x', 'reg', [0, 1, 2]);
    assert.deepEqual(d.getReg('/x'), [{ address: 1n, size: 2n }]);
  });

  test('bad cell counts are BADNCELLS; a reg of the wrong length is BADVALUE', () => {
    const t = new Fdt();
    t.addNode('/x');
    t.set('/x', 'reg', [1, 2, 3, 4]);
    t.set('/', '#address-cells', 5);
    throwsCode(() => t.getReg('/x'), 'BADNCELLS');
    t.set('/', '#address-cells', 0);
    throwsCode(() => t.getReg('/x'), 'BADNCELLS');
    t.set('/', '#address-cells', new Uint8Array(2));
    throwsCode(() => t.getReg('/x'), 'BADNCELLS');
    t.set('/', '#address-cells', 1);
    t.set('/', '#size-cells', 2);
    throwsCode(() => t.getReg('/x'), 'BADVALUE');
    throwsCode(() => t.getReg('/nope'), 'NOTFOUND');
  });
});

describe('phandles', () => {
  const t = new Fdt();
  t.addNode('/a');
  t.addNode('/b');
  t.addNode('/c');
  t.set('/a', 'phandle', 5);
  t.set('/b', 'linux,phandle', 9);
  t.set('/c', 'phandle', new Uint8Array(2)); // not one cell: ignored, as libfdt does

  test('phandle, else linux,phandle; lookup in document order', () => {
    assert.equal(t.getPhandle('/a'), 5);
    assert.equal(t.getPhandle('/b'), 9);
    assert.equal(t.getPhandle('/c'), undefined);
    assert.equal(t.findPhandle(9), '/b');
    assert.equal(t.findPhandle(6), undefined);
    assert.equal(t.generatePhandle(), 10);
  });

  test('0 and 0xffffffff are not phandles', () => {
    throwsCode(() => t.findPhandle(0), 'BADPHANDLE');
    throwsCode(() => t.findPhandle(0xffffffff), 'BADPHANDLE');
  });
});

describe('reservations and boot_cpuid_phys', () => {
  test('set, add, validate', () => {
    const t = new Fdt();
    t.addReservation(0x1000n, 0x1000n);
    t.reservations = [...t.reservations, { address: 0n, size: 1n }];
    assert.deepEqual(t.reservations, [
      { address: 0x1000n, size: 0x1000n },
      { address: 0n, size: 1n },
    ]);
    throwsCode(() => t.addReservation(0n, 0n), 'BADVALUE'); // size 0 would end the map
    throwsCode(() => t.addReservation(-1n, 1n), 'BADVALUE');
    throwsCode(() => t.addReservation(0n, 1n << 64n), 'BADVALUE');
    t.bootCpuidPhys = 3;
    throwsCode(() => (t.bootCpuidPhys = -1), 'BADVALUE');
    const back = Fdt.parse(t.toBytes());
    assert.equal(back.bootCpuidPhys, 3);
    assert.ok(back.equals(t));
  });

  test('the list handed out is a copy', () => {
    const t = new Fdt();
    t.addReservation(1n, 1n);
    t.reservations.pop();
    assert.equal(t.reservations.length, 1);
  });
});

describe('equality, clone and copy-on-write sharing', () => {
  function sample(): Fdt {
    const t = new Fdt();
    t.addNode('/pools/default_pmpool');
    t.set('/pools/default_pmpool', 'page-size', 4096);
    t.addNode('/clients/kv');
    t.set('/clients/kv', 'root', 42n);
    return t;
  }

  test('equals compares everything: names, values, order, reservations, boot cpu', () => {
    const a = sample();
    assert.ok(a.equals(sample()));
    const b = sample();
    b.set('/clients/kv', 'root', 43n);
    assert.ok(!a.equals(b));
    const c = sample();
    c.addReservation(1n, 1n);
    assert.ok(!a.equals(c));
    const d = sample();
    d.bootCpuidPhys = 1;
    assert.ok(!a.equals(d));
  });

  test('a clone is independent in both directions', () => {
    const a = sample();
    const b = a.clone();
    b.set('/clients/kv', 'root', 1n);
    a.set('/pools/default_pmpool', 'page-size', 8192);
    assert.equal(a.getU64('/clients/kv', 'root'), 42n);
    assert.equal(b.getU32('/pools/default_pmpool', 'page-size'), 4096);
    a.addNode('/extra');
    assert.ok(!b.has('/extra'));
    b.remove('/clients');
    assert.ok(a.has('/clients/kv'));
  });

  test('nodeEquals: untouched subtrees equal, edited ones not, missing never', () => {
    const incoming = sample();
    const outgoing = incoming.clone();
    outgoing.set('/clients/kv', 'root', 7n);
    assert.ok(outgoing.nodeEquals('/pools', incoming));
    assert.ok(!outgoing.nodeEquals('/clients', incoming));
    assert.ok(!outgoing.nodeEquals('/clients/kv', incoming));
    assert.ok(!outgoing.nodeEquals('/nope', incoming));
    // Equal content built separately is equal too.
    assert.ok(sample().nodeEquals('/pools', incoming));
    assert.ok(incoming.nodeEquals('/pools/default_pmpool', outgoing, '/pools/default_pmpool'));
  });

  test('copyNode carries a subtree forward; later edits on either side stay apart', () => {
    const incoming = sample();
    const outgoing = new Fdt();
    outgoing.copyNode(incoming, '/clients/kv');
    outgoing.copyNode(incoming, '/pools', '/carried/pools');
    assert.ok(outgoing.nodeEquals('/clients/kv', incoming));
    assert.ok(outgoing.nodeEquals('/carried/pools', incoming, '/pools'));
    assert.deepEqual(outgoing.children('/carried'), ['pools']);
    incoming.set('/clients/kv', 'root', 99n);
    outgoing.set('/carried/pools/default_pmpool', 'page-size', 1);
    assert.equal(outgoing.getU64('/clients/kv', 'root'), 42n);
    assert.equal(incoming.getU32('/pools/default_pmpool', 'page-size'), 4096);
    throwsCode(() => outgoing.copyNode(incoming, '/missing'), 'NOTFOUND');
    // Not an Fdt to copy from: BADVALUE, not the bare TypeError of a private-field read; nothing changed.
    const before = outgoing.toBytes();
    for (const bad of [null, 42, {}, incoming.toBytes()]) throwsCode(() => outgoing.copyNode(bad as never, '/clients/kv', '/other'), 'BADVALUE');
    assert.deepEqual(outgoing.toBytes(), before);
  });

  test('copyNode onto an existing node replaces its contents and keeps its name and place', () => {
    const src = sample();
    const dst = new Fdt();
    dst.addNode('/x');
    dst.addNode('/target');
    dst.addNode('/y');
    dst.set('/target', 'old', 1);
    dst.copyNode(src, '/pools/default_pmpool', '/target');
    assert.deepEqual(dst.children('/'), ['x', 'target', 'y']);
    assert.deepEqual(dst.props('/target'), ['page-size']);
    assert.ok(dst.nodeEquals('/target', src, '/pools/default_pmpool') === false, 'names differ');
    // Copy a tree into a subnode of itself: no cycle, the copy is a snapshot.
    const self = sample();
    self.copyNode(self, '/clients', '/clients/kv/again');
    assert.deepEqual(self.children('/clients/kv/again'), ['kv']);
    assert.deepEqual(self.children('/clients/kv/again/kv'), []);
    // The whole tree onto the root.
    const whole = new Fdt();
    whole.copyNode(src, '/');
    assert.ok(whole.equals(src));
  });

  test('a parsed tree round-trips and its clone stays equal until edited', () => {
    const a = Fdt.parse(sample().toBytes());
    const b = a.clone();
    assert.ok(a.equals(b));
    b.renameNode('/clients/kv', 'kv2');
    assert.ok(!a.equals(b));
    assert.deepEqual(a.children('/clients'), ['kv']);
  });
});

describe('toBytes with options that are not an object, or fields of the wrong type', () => {
  test('refused with BADVALUE; the tree is unchanged', () => {
    const fdt = new Fdt();
    fdt.addNode('/chosen');
    fdt.set('/chosen', 'bootargs', 'console=ttyS0');
    const before = fdt.toBytes();
      for (const bad of [null, 42, 'x', []]) {
      try {
        fdt.toBytes(bad as never);
        assert.fail(`toBytes(${shown(bad)}) did not throw`);
      } catch (e) {
        assert.ok(e instanceof FdtError, String(e));
        assert.equal(e.code, 'BADVALUE');
        assert.equal(e.message, `toBytes options must be an object, got ${shown(bad)}`);
      }
    }
    const fields: object[] = [{ freeSpace: '64' }, { freeSpace: Number.NaN }, { align: 'x' }, { minSize: null }, { reserveSlots: '2' }, { keepNameProperties: 'yes' }];
    for (const options of fields) throwsCode(() => fdt.toBytes(options as never), 'BADVALUE');
    assert.deepEqual(fdt.toBytes(), before);
  });
});

describe('arguments of the wrong type', () => {
  const bads: unknown[] = [null, undefined, 42, 'x', []];

  test('Fdt.parse, checkFdt and checkFdtHeader refuse anything but bytes with BADVALUE, naming what they got', () => {
    for (const bad of bads) {
      for (const [name, read] of [
        ['Fdt.parse', Fdt.parse],
        ['checkFdt', checkFdt],
        ['checkFdtHeader', checkFdtHeader],
      ] as const) {
        try {
          read(bad as never);
          assert.fail(`${name}(${shown(bad)}) did not throw`);
        } catch (e) {
          assert.ok(e instanceof FdtError, `${name}(${shown(bad)}): ${String(e)}`);
          assert.equal(e.code, 'BADVALUE');
          assert.equal(e.message, `${name} takes a Uint8Array (or Buffer), got ${shown(bad)}`);
        }
      }
    }
    throwsCode(() => fdtRwProbe(null as never), 'BADVALUE');
  });

  test('a path that is not a string is BADPATH, a property name BADVALUE, another tree BADVALUE; nothing changes', () => {
    const fdt = new Fdt();
    fdt.addNode('/a');
    fdt.set('/a', 'p', 'x');
    const before = fdt.toBytes();
    for (const bad of [null, undefined, 42, {}, 1n] as never[]) {
      for (const read of [
        () => fdt.has(bad),
        () => fdt.get(bad, 'p'),
        () => fdt.getU32(bad, 'p'),
        () => fdt.getString(bad, 'p'),
        () => fdt.getReg(bad),
        () => fdt.children(bad),
        () => fdt.props(bad),
        () => fdt.resolve(bad),
        () => fdt.getPhandle(bad),
        () => fdt.set(bad, 'p', 1),
        () => fdt.addNode(bad),
        () => fdt.remove(bad),
        () => fdt.renameNode(bad, 'b'),
        () => fdt.renameNode('/a', bad),
        () => fdt.copyNode(fdt, bad),
        () => fdt.nodeEquals(bad, fdt),
      ]) {
        throwsCode(read, 'BADPATH');
      }
    }
    for (const bad of [null, 42, {}, 1n] as never[]) {
      for (const call of [
        () => fdt.has('/a', bad),
        () => fdt.get('/a', bad),
        () => fdt.getU64('/a', bad),
        () => fdt.set('/a', bad, 1),
        () => fdt.remove('/a', bad),
        () => fdt.renameProp('/a', 'p', bad),
        () => fdt.renameProp('/a', bad, 'q'),
        () => fdt.equals(bad),
        () => fdt.nodeEquals('/a', bad),
        () => {
          fdt.reservations = bad;
        },
        () => {
          fdt.reservations = [bad];
        },
      ]) {
        throwsCode(call, 'BADVALUE');
      }
    }
    assert.deepEqual(fdt.toBytes(), before);
  });
});

test('fdtStrerror: every code has its meaning; anything else is "<unknown error>", as libfdt says', () => {
  for (const code of Object.keys(FDT_ERR_NUMBERS) as FdtErrorCode[]) {
    const meaning = fdtStrerror(code);
    assert.equal(typeof meaning, 'string', code);
    assert.ok(meaning.length > 0 && meaning !== '<unknown error>', code);
  }
  for (const bad of ['NOPE', 'toString', '__proto__', 'constructor', '', 42, null, undefined]) {
    assert.equal(fdtStrerror(bad as never), '<unknown error>', String(bad));
  }
});
