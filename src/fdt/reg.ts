/**
 * `reg` decoding (devicetree specification §2.3.6): a child's `reg` is a
 * list of (address, size) pairs whose widths in cells come from its
 * parent's #address-cells and #size-cells, read as libfdt's
 * fdt_address_cells / fdt_size_cells read them (fdt_addresses.c).
 */
import { readBe32 } from './bytes.js';
import { FDT_MAX_NCELLS } from './constants.js';
import { fail } from './errors.js';
import { findProp, type FdtNode } from './tree.js';

export interface FdtRegEntry {
  readonly address: bigint;
  /** 0n when the parent's #size-cells is 0 (the entry has no size). */
  readonly size: bigint;
}

/** #address-cells: 2 when absent; one cell of 1..4 otherwise (else BADNCELLS). */
export function addressCells(node: FdtNode): number {
  const n = cellsProperty(node, '#address-cells');
  if (n === undefined) return 2;
  if (n === 0) fail('BADNCELLS', '#address-cells is 0');
  return n;
}

/** #size-cells: 1 when absent; one cell of 0..4 otherwise (else BADNCELLS). */
export function sizeCells(node: FdtNode): number {
  return cellsProperty(node, '#size-cells') ?? 1;
}

function cellsProperty(node: FdtNode, name: string): number | undefined {
  const prop = findProp(node, name);
  if (prop === undefined) return undefined;
  if (prop.value.length !== 4) fail('BADNCELLS', `${name} is ${prop.value.length} bytes, not one cell`);
  const n = readBe32(prop.value, 0);
  if (n > FDT_MAX_NCELLS) fail('BADNCELLS', `${name} is ${n}, more than ${FDT_MAX_NCELLS}`);
  return n;
}

/**
 * The entries of `node`'s reg, sized by `parent` (the root, which has no
 * parent, uses the defaults 2 and 1). Undefined when there is no reg.
 */
export function decodeReg(node: FdtNode, parent: FdtNode | undefined): FdtRegEntry[] | undefined {
  const reg = findProp(node, 'reg');
  if (reg === undefined) return undefined;
  const ac = parent ? addressCells(parent) : 2;
  const sc = parent ? sizeCells(parent) : 1;
  const entryBytes = (ac + sc) * 4;
  const v = reg.value;
  if (v.length % entryBytes !== 0) {
    fail('BADVALUE', `reg is ${v.length} bytes, not a multiple of ${entryBytes} (#address-cells ${ac}, #size-cells ${sc})`);
  }
  const entries: FdtRegEntry[] = [];
  for (let at = 0; at < v.length; at += entryBytes) {
    entries.push({ address: readCells(v, at, ac), size: readCells(v, at + ac * 4, sc) });
  }
  return entries;
}

/** `count` big-endian cells at `at` as one number. */
export function readCells(v: Uint8Array, at: number, count: number): bigint {
  let n = 0n;
  for (let i = 0; i < count; i++) n = (n << 32n) | BigInt(readBe32(v, at + i * 4));
  return n;
}
