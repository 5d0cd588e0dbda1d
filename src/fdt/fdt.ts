/**
 * Fdt: a device tree in memory — the front door of the layer. Parsing,
 * writing, DTS and lint live in their own files; this class holds a tree
 * (root node, memory reservations, boot_cpuid_phys) and offers path-based
 * access in the spirit of fdtget/fdtput (DESIGN.md §6).
 *
 * Paths are resolved as libfdt's fdt_path_offset resolves them: aliases
 * from /aliases, and a component `name` also matching `name@addr` (the
 * first matching child wins). Reads return copies; nothing handed out
 * aliases the tree.
 */
import { copyBytes, readBe32 } from './bytes.js';
import { FDT_MAX_PHANDLE } from './constants.js';
import type { MemReservation } from './check.js';
import { formatDts } from './dts.js';
import { addNodes, graftNode, removeNode, removeProp, renameNode, renameProp, setProp, type EditTarget } from './edit.js';
import { fail, requireBytes, requireString } from './errors.js';
import { describeValue } from '../util/options.js';
import { lintTree, type FdtLintFinding } from './lint.js';
import { chainNode, chainPath, resolvePath, unresolvedPathCode, type NodeChain } from './path.js';
import { readFdt } from './read.js';
import { decodeReg, type FdtRegEntry } from './reg.js';
import { findProp, FdtNode, nodesEqual, walkTree, walkWithPaths } from './tree.js';
import { decodeCells, decodeString, decodeStrings, decodeU32, decodeU64, encodeValue, type FdtValue } from './value.js';
import { encodeFdt, type FdtWriteOptions } from './write.js';

const U64_MAX = 0xffffffffffffffffn;

export class Fdt {
  #root: FdtNode;
  /** Nodes with this owner may be changed in place; any other is shared and copied first. */
  #owner: object = {};
  #reservations: MemReservation[] = [];
  #bootCpuidPhys = 0;

  /** An empty tree: a root node with nothing in it. */
  constructor() {
    this.#root = new FdtNode('', this.#owner);
  }

  /**
   * Checks `bytes` as libfdt's fdt_check_full does and reads the tree.
   * Throws FdtError (`code` is libfdt's error name, `offset` where in the
   * blob) for anything libfdt would refuse.
   */
  static parse(bytes: Uint8Array): Fdt {
    requireBytes(bytes, 'Fdt.parse');
    const fdt = new Fdt();
    const parsed = readFdt(bytes, fdt.#owner);
    fdt.#root = parsed.root;
    fdt.#reservations = parsed.reservations.map(freezeReservation);
    fdt.#bootCpuidPhys = parsed.header.bootCpuidPhys;
    return fdt;
  }

  /** The blob `dtc -I dtb -O dtb` would write for this tree (see write.ts for the options). */
  toBytes(options?: FdtWriteOptions): Uint8Array {
    return encodeFdt({ root: this.#root, reservations: this.#reservations, bootCpuidPhys: this.#bootCpuidPhys }, options);
  }

  /** DTS text that `dtc -I dts -O dtb` compiles back to this tree. */
  toDts(): string {
    return formatDts({ root: this.#root, reservations: this.#reservations, bootCpuidPhys: this.#bootCpuidPhys });
  }

  /** What dtc's checks would say about this tree (names, duplicates, phandles, unit addresses). */
  lint(): FdtLintFinding[] {
    return lintTree(this.#root);
  }

  // ---- header-level parts of the tree

  get bootCpuidPhys(): number {
    return this.#bootCpuidPhys;
  }

  set bootCpuidPhys(value: number) {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) fail('BADVALUE', `boot_cpuid_phys ${value} is not a u32`);
    this.#bootCpuidPhys = value;
  }

  /** The memory reservations (/memreserve/), in order. */
  get reservations(): MemReservation[] {
    return this.#reservations.slice();
  }

  set reservations(list: readonly MemReservation[]) {
    if (!Array.isArray(list)) fail('BADVALUE', `reservations must be an array, got ${describeValue(list)}`);
    this.#reservations = list.map(checkReservation);
  }

  addReservation(address: bigint, size: bigint): void {
    this.#reservations.push(checkReservation({ address, size }));
  }

  // ---- reading

  /** True if the node exists (and has the property, if one is named). */
  has(path: string, prop?: string): boolean {
    if (prop !== undefined) requireString(prop, 'a property name', 'BADVALUE');
    const chain = resolvePath(this.#root, path);
    if (chain === undefined) return false;
    return prop === undefined || findProp(chainNode(chain), prop) !== undefined;
  }

  /** A copy of the property's raw bytes, or undefined if the node or property does not exist. */
  get(path: string, prop: string): Uint8Array | undefined {
    const v = this.#value(path, prop);
    return v && copyBytes(v);
  }

  /** One u32 cell (BADVALUE if the value is not 4 bytes). */
  getU32(path: string, prop: string): number | undefined {
    const v = this.#value(path, prop);
    return v && decodeU32(v, `${path}:${prop}`);
  }

  /** One u64, as /bits/ 64 or two cells (BADVALUE if the value is not 8 bytes). */
  getU64(path: string, prop: string): bigint | undefined {
    const v = this.#value(path, prop);
    return v && decodeU64(v, `${path}:${prop}`);
  }

  /** u32 cells (BADVALUE if the length is not a multiple of 4). */
  getCells(path: string, prop: string): number[] | undefined {
    const v = this.#value(path, prop);
    return v && decodeCells(v, `${path}:${prop}`);
  }

  /** Exactly one NUL-terminated UTF-8 string (else BADVALUE). */
  getString(path: string, prop: string): string | undefined {
    const v = this.#value(path, prop);
    return v && decodeString(v, `${path}:${prop}`);
  }

  /** A string list (else BADVALUE). */
  getStrings(path: string, prop: string): string[] | undefined {
    const v = this.#value(path, prop);
    return v && decodeStrings(v, `${path}:${prop}`);
  }

  /** The node's `reg`, sized by its parent's #address-cells/#size-cells; undefined without reg. */
  getReg(path: string): FdtRegEntry[] | undefined {
    const chain = this.#mustResolve(path);
    const parent = chain.nodes.length > 1 ? chain.nodes[chain.nodes.length - 2] : undefined;
    return decodeReg(chainNode(chain), parent);
  }

  /** Names of the node's subnodes, in order (NOTFOUND if the node does not exist). */
  children(path: string): string[] {
    return chainNode(this.#mustResolve(path)).children.map((c) => c.name);
  }

  /** Names of the node's properties, in order (NOTFOUND if the node does not exist). */
  props(path: string): string[] {
    return chainNode(this.#mustResolve(path)).props.map((p) => p.name);
  }

  /** The canonical path of the node `path` names (aliases and `name`→`name@addr` resolved). */
  resolve(path: string): string | undefined {
    const chain = resolvePath(this.#root, path);
    return chain && chainPath(chain);
  }

  // ---- phandles

  /** fdt_get_phandle: `phandle`, else `linux,phandle`, if one cell; undefined if neither. */
  getPhandle(path: string): number | undefined {
    return phandleOf(chainNode(this.#mustResolve(path)));
  }

  /** The path of the first node (document order) with this phandle, as fdt_node_offset_by_phandle finds it. */
  findPhandle(phandle: number): string | undefined {
    if (!Number.isInteger(phandle) || phandle < 1 || phandle > FDT_MAX_PHANDLE) fail('BADPHANDLE', `${phandle} is not a phandle`);
    let found: string | undefined;
    walkWithPaths(this.#root, (node, path) => {
      if (found === undefined && phandleOf(node) === phandle) found = path;
    });
    return found;
  }

  /** fdt_generate_phandle: one more than the largest phandle in use. */
  generatePhandle(): number {
    let max = 0;
    walkTree(this.#root, { enter: (node) => void (max = Math.max(max, phandleOf(node) ?? 0)) });
    if (max >= FDT_MAX_PHANDLE) fail('NOPHANDLES', 'every phandle value is taken');
    return max + 1;
  }

  // ---- editing

  /** Sets a property of an existing node (NOTFOUND if there is none); see FdtValue for the encodings. */
  set(path: string, prop: string, value: FdtValue): void {
    const encoded = encodeValue(value);
    this.#edit(path, (target, chain) => setProp(target, chain, prop, encoded));
  }

  /** Creates the node and any missing parents (an absolute path; existing nodes are left as they are). */
  addNode(path: string): void {
    const target = this.#target();
    addNodes(target, path);
    this.#root = target.root;
  }

  /** Removes a property, or the node if no property is named. False if there was nothing to remove. */
  remove(path: string, prop?: string): boolean {
    if (prop !== undefined) requireString(prop, 'a property name', 'BADVALUE');
    const chain = resolvePath(this.#root, path);
    if (chain === undefined) return false;
    const target = this.#target();
    if (prop === undefined) removeNode(target, chain);
    else if (!removeProp(target, chain, prop)) return false;
    this.#root = target.root;
    return true;
  }

  renameNode(path: string, name: string): void {
    this.#edit(path, (target, chain) => renameNode(target, chain, name));
  }

  renameProp(path: string, prop: string, name: string): void {
    this.#edit(path, (target, chain) => renameProp(target, chain, prop, name));
  }

  /**
   * Makes the node at `toPath` (created if missing) a copy of the node at
   * `fromPath` in `from` — its properties and subnodes; it keeps its own
   * name. The copy shares the source's nodes until either side edits
   * them, so it costs O(depth), and nodeEquals on it is immediate.
   */
  copyNode(from: Fdt, fromPath: string, toPath: string = fromPath): void {
    requireFdt(from, 'copyNode copies from');
    const source = chainNode(from.#mustResolve(fromPath));
    // `source` is about to be shared: neither tree may change it in place any more
    // (and if `from` is this tree, the edits below must copy, not touch, it).
    from.#owner = {};
    const target = this.#target();
    graftNode(target, addNodes(target, toPath), source);
    this.#root = target.root;
  }

  // ---- comparing and copying

  /** Same tree: nodes, properties (names, bytes, order), reservations and boot_cpuid_phys. */
  equals(other: Fdt): boolean {
    requireFdt(other, 'equals compares with');
    return (
      this.#bootCpuidPhys === other.#bootCpuidPhys &&
      reservationsEqual(this.#reservations, other.#reservations) &&
      nodesEqual(this.#root, other.#root)
    );
  }

  /**
   * True if both nodes exist and are equal all the way down. A subtree
   * shared through clone() or copyNode() and edited by neither side is
   * recognised at once, without looking inside it.
   */
  nodeEquals(path: string, other: Fdt, otherPath: string = path): boolean {
    requireFdt(other, 'nodeEquals compares with');
    const a = resolvePath(this.#root, path);
    const b = resolvePath(other.#root, otherPath);
    return a !== undefined && b !== undefined && nodesEqual(chainNode(a), chainNode(b));
  }

  /** An independent copy, made in O(1): the two share nodes until either edits. */
  clone(): Fdt {
    const copy = new Fdt();
    copy.#root = this.#root;
    copy.#reservations = this.#reservations.slice();
    copy.#bootCpuidPhys = this.#bootCpuidPhys;
    this.#owner = {}; // the nodes are shared now: neither tree may change them in place
    return copy;
  }

  // ---- internals

  #value(path: string, prop: string): Uint8Array | undefined {
    requireString(prop, 'a property name', 'BADVALUE');
    const chain = resolvePath(this.#root, path);
    return chain && findProp(chainNode(chain), prop)?.value;
  }

  #mustResolve(path: string): NodeChain {
    const chain = resolvePath(this.#root, path);
    if (chain === undefined) {
      const code = unresolvedPathCode(this.#root, path);
      fail(code, code === 'BADPATH' ? `"${path}" does not start with an alias /aliases defines` : `no node at "${path}"`);
    }
    return chain;
  }

  #target(): EditTarget {
    return { root: this.#root, owner: this.#owner };
  }

  #edit(path: string, change: (target: EditTarget, chain: NodeChain) => void): void {
    const target = this.#target();
    change(target, this.#mustResolve(path));
    this.#root = target.root;
  }
}

/**
 * Refuses anything but an Fdt as the other tree of a method: reading its
 * private fields would throw a bare TypeError ("Cannot read private member").
 */
function requireFdt(value: unknown, what: string): asserts value is Fdt {
  if (!(value instanceof Fdt)) fail('BADVALUE', `${what} an Fdt, got ${describeValue(value)}`);
}

function phandleOf(node: FdtNode): number | undefined {
  for (const name of ['phandle', 'linux,phandle']) {
    const p = findProp(node, name);
    if (p !== undefined && p.value.length === 4) return readBe32(p.value, 0);
  }
  return undefined;
}

function checkReservation(r: MemReservation): MemReservation {
  if (r === null || typeof r !== 'object') fail('BADVALUE', `a reservation is an object { address, size }, got ${describeValue(r)}`);
  const { address, size } = r;
  if (typeof address !== 'bigint' || address < 0n || address > U64_MAX) fail('BADVALUE', `reservation address ${String(address)} is not a u64`);
  // A size of 0 ends the reserve map: such an entry could not be read back.
  if (typeof size !== 'bigint' || size < 1n || size > U64_MAX) fail('BADVALUE', `reservation size ${String(size)} is not a non-zero u64`);
  return freezeReservation(r);
}

function freezeReservation(r: MemReservation): MemReservation {
  return Object.freeze({ address: r.address, size: r.size });
}

function reservationsEqual(a: readonly MemReservation[], b: readonly MemReservation[]): boolean {
  return a.length === b.length && a.every((r, i) => r.address === b[i].address && r.size === b[i].size);
}
