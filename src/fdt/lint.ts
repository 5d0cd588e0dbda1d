/**
 * What libfdt leaves to dtc: libfdt checks structure only, and dtc's
 * checks (checks.c) judge names, duplicates, phandles and unit addresses.
 * Each finding carries dtc's check name and severity, so `dtc` run on the
 * same tree reports the same problems; dtc refuses to write a tree with an
 * 'error' finding unless forced (-f).
 */
import { readBe32 } from './bytes.js';
import { FdtError } from './errors.js';
import { badNodeChar, badPropChar, hasMultipleAt } from './names.js';
import { addressCells, readCells } from './reg.js';
import { baseName, findProp, redundantNameProperty, unitAddress, walkWithPaths, type FdtNode } from './tree.js';

export interface FdtLintFinding {
  /** dtc's name for the check (`node_name_chars`, `explicit_phandles`, ...). */
  readonly check: string;
  /** 'error': dtc refuses the tree without -f; 'warning': dtc only warns. */
  readonly severity: 'error' | 'warning';
  /** The node's path ("/" for the root). */
  readonly path: string;
  /** The property concerned, if the finding is about one. */
  readonly property?: string;
  readonly message: string;
}

export function lintTree(root: FdtNode): FdtLintFinding[] {
  const findings: FdtLintFinding[] = [];
  const parents: FdtNode[] = [];
  const phandles = new Map<number, string>();
  walkWithPaths(root, (node, path, depth) => {
    parents[depth] = node;
    const report: Report = (check, severity, message, property) => {
      findings.push(property === undefined ? { check, severity, path, message } : { check, severity, path, property, message });
    };
    if (depth > 0) checkNodeName(node, report);
    checkProperties(node, report);
    checkPhandles(node, path, phandles, report);
    // dtc's unit_address_vs_reg looks at the root too: a root with reg or ranges has no unit name to
    // match. And its reg_format says a root has no reg at all: there is no parent whose cells size it.
    if (depth === 0 && findProp(node, 'reg') !== undefined) report('reg_format', 'warning', 'Root node has a "reg" property', 'reg');
    if (checkUnitName(node, report) && depth > 0) checkUnitAddress(node, parents[depth - 1]!, report);
  });
  return findings;
}

type Report = (check: string, severity: 'error' | 'warning', message: string, property?: string) => void;

function checkNodeName(node: FdtNode, report: Report): void {
  const name = node.name;
  if (name.length === 0) report('node_name_format', 'error', 'empty node name');
  const bad = badNodeChar(name);
  if (bad !== undefined) report('node_name_chars', 'error', `bad character ${quoteChar(bad)} in node name`);
  if (hasMultipleAt(name)) report('node_name_format', 'error', "multiple '@' characters in node name");
  if (baseName(name).length === 0 && name.length > 0) report('node_name_format', 'error', 'node name has a unit address but no base name');
}

function checkProperties(node: FdtNode, report: Report): void {
  const seen = new Set<string>();
  for (const p of node.props) {
    if (p.name.length === 0) report('property_name_chars', 'error', 'empty property name', p.name);
    const bad = badPropChar(p.name);
    if (bad !== undefined) report('property_name_chars', 'error', `bad character ${quoteChar(bad)} in property name`, p.name);
    if (seen.has(p.name)) report('duplicate_property_names', 'error', 'duplicate property name', p.name);
    seen.add(p.name);
  }
  const names = new Set<string>();
  for (const c of node.children) {
    if (names.has(c.name)) report('duplicate_node_names', 'error', `duplicate node name "${c.name}"`);
    names.add(c.name);
  }
  if (node.propsAfterSubnodes) report('property_after_subnode', 'warning', 'the blob had properties after subnodes (written first)');
  checkNameProperty(node, report);
}

/** checks.c check_name_properties: a `name` property must repeat the base name. */
function checkNameProperty(node: FdtNode, report: Report): void {
  const prop = findProp(node, 'name');
  if (prop === undefined || redundantNameProperty(node) >= 0) return;
  report('name_properties', 'error', '"name" property is not the base node name', 'name');
}

/** checks.c check_explicit_phandles. */
function checkPhandles(node: FdtNode, path: string, seen: Map<number, string>, report: Report): void {
  const phandle = phandleProperty(node, 'phandle', report);
  const linux = phandleProperty(node, 'linux,phandle', report);
  if (phandle === 0 && linux === 0) return;
  if (phandle !== 0 && linux !== 0 && phandle !== linux) {
    report('explicit_phandles', 'error', "mismatching 'phandle' and 'linux,phandle' properties");
  }
  const value = phandle !== 0 ? phandle : linux;
  const other = seen.get(value);
  if (other !== undefined) {
    report('explicit_phandles', 'error', `duplicated phandle 0x${value.toString(16)} (seen before at ${other})`);
    return;
  }
  seen.set(value, path);
}

/** The value of a phandle property, or 0 when absent or invalid (invalid ones are reported). */
function phandleProperty(node: FdtNode, name: string, report: Report): number {
  const prop = findProp(node, name);
  if (prop === undefined) return 0;
  if (prop.value.length !== 4) {
    report('explicit_phandles', 'error', `bad length (${prop.value.length}) ${name} property`, name);
    return 0;
  }
  const v = readBe32(prop.value, 0);
  if (v === 0 || v === 0xffffffff) {
    report('explicit_phandles', 'error', `bad value (0x${v.toString(16)}) in ${name} property`, name);
    return 0;
  }
  return v;
}

/**
 * checks.c unit_address_vs_reg (a unit address needs `reg` or a non-empty
 * `ranges`, and `reg` needs a unit address), plus unit_address_mismatch,
 * ours: the unit address must be the first reg address in lowercase hex
 * without leading zeros (optionally followed by ",..."). dtc checks that
 * only under a simple-bus (simple_bus_reg); we check it for 1- and 2-cell
 * addresses everywhere (wider ones, like PCI's 3, have bus-specific forms).
 */
/** dtc's unit_address_vs_reg: a unit name without reg or ranges, or the reverse. False for an overlay fragment, which is exempt from both. */
function checkUnitName(node: FdtNode, report: Report): boolean {
  if (node.children.some((c) => c.name === '__overlay__')) return false; // dtc: overlay fragments are exempt
  const unit = unitAddress(node.name);
  const ranges = findProp(node, 'ranges');
  const hasAddress = findProp(node, 'reg') !== undefined || (ranges !== undefined && ranges.value.length > 0);
  if (hasAddress && unit.length === 0) report('unit_address_vs_reg', 'warning', 'node has a reg or ranges property, but no unit name');
  if (!hasAddress && unit.length > 0) report('unit_address_vs_reg', 'warning', 'node has a unit name, but no reg or ranges property');
  return true;
}

/** The unit address against the first address of reg, in the parent's cells. */
function checkUnitAddress(node: FdtNode, parent: FdtNode, report: Report): void {
  const unit = unitAddress(node.name);
  const reg = findProp(node, 'reg');
  if (reg === undefined || unit.length === 0) return;
  let cells: number;
  try {
    cells = addressCells(parent);
  } catch (e) {
    if (e instanceof FdtError) return report('reg_format', 'warning', `parent's ${e.message}`, 'reg');
    throw e;
  }
  if (cells > 2 || reg.value.length < cells * 4) return;
  const expected = readCells(reg.value, 0, cells).toString(16);
  if (unit !== expected && unit.split(',')[0] !== expected) {
    report('unit_address_mismatch', 'warning', `unit address "${unit}" does not match reg (expected "${expected}")`, 'reg');
  }
}

function quoteChar(ch: string): string {
  const code = ch.charCodeAt(0);
  return code >= 0x20 && code < 0x7f ? `'${ch}'` : `0x${code.toString(16).padStart(2, '0')}`;
}
