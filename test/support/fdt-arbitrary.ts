/**
 * Random device trees for property tests (fast-check): a tree of nodes and
 * properties drawn from the alphabets a suite chooses, plus memory
 * reservations and boot_cpuid_phys.
 */
import fc from 'fast-check';
import { Fdt, type FdtValue } from '../../src/fdt/index.js';

interface TreeSpec {
  props: [string, FdtValue][];
  children: [string, TreeSpec][];
}

export interface TreeAlphabet {
  nodeName: fc.Arbitrary<string>;
  propName: fc.Arbitrary<string>;
  value: fc.Arbitrary<FdtValue>;
  /** What two sibling node names must differ in (default: the whole name). */
  nodeKey?: (name: string) => string;
}

function nodeSpec(alphabet: TreeAlphabet, depth: number): fc.Arbitrary<TreeSpec> {
  const key = alphabet.nodeKey ?? ((name: string) => name);
  return fc.record({
    props: fc.uniqueArray(fc.tuple(alphabet.propName, alphabet.value), { maxLength: 5, selector: (p) => p[0] }),
    children:
      depth === 0
        ? fc.constant([])
        : fc.uniqueArray(fc.tuple(alphabet.nodeName, nodeSpec(alphabet, depth - 1)), { maxLength: 3, selector: (c) => key(c[0]) }),
  });
}

function build(fdt: Fdt, path: string, spec: TreeSpec): void {
  for (const [name, v] of spec.props) fdt.set(path || '/', name, v);
  for (const [name, child] of spec.children) {
    fdt.addNode(`${path}/${name}`);
    build(fdt, `${path}/${name}`, child);
  }
}

/** Trees up to three levels deep over `alphabet`. */
export function fdtArbitrary(alphabet: TreeAlphabet): fc.Arbitrary<Fdt> {
  return fc
    .record({
      root: nodeSpec(alphabet, 3),
      reservations: fc.array(fc.tuple(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.bigInt({ min: 1n, max: (1n << 64n) - 1n })), { maxLength: 3 }),
      boot: fc.integer({ min: 0, max: 0xffffffff }),
    })
    .map(({ root, reservations, boot }) => {
      const fdt = new Fdt();
      build(fdt, '', root);
      for (const [a, s] of reservations) fdt.addReservation(a, s);
      fdt.bootCpuidPhys = boot;
      return fdt;
    });
}
