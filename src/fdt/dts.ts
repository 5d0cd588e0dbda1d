/**
 * Device tree source text for a tree, in the layout of dtc's treesource.c:
 * `/dts-v1/;`, the /memreserve/ lines, then the nodes with tab indents.
 * `dtc -I dts -O dtb` of this text gives back the same tree.
 *
 * A value's form is guessed as dtc guesses it (guess_value_type): a
 * string list if it is printable text ending in NUL with no more NULs
 * than other bytes, else cells if its length is a multiple of 4, else
 * bytes. Unlike dtc we print a string list as "a", "b" rather than "a\0b";
 * both compile to the same bytes.
 *
 * What DTS cannot say: boot_cpuid_phys (dtc takes it from the first cpu's
 * `reg`, or `-b`; we leave a comment when that guess would be wrong), and
 * names outside dtc's lexer alphabet [a-zA-Z0-9,._+*#?@-], which we print
 * as they are (lint() reports them; dtc cannot read them back).
 */
import { readBe32 } from './bytes.js';
import { FdtError } from './errors.js';
import type { MemReservation } from './check.js';
import { findExactChildIndex, findProp, walkTree, type FdtNode } from './tree.js';

export interface DtsSource {
  readonly root: FdtNode;
  readonly reservations: readonly MemReservation[];
  readonly bootCpuidPhys: number;
}

export function formatDts(tree: DtsSource): string {
  try {
    return formatLines(tree);
  } catch (e) {
    // Each level of nesting indents every line below it by one more tab: a valid blob of some
    // tens of thousands of nested nodes has a text past the longest string V8 can make.
    if (e instanceof RangeError) throw new FdtError('NOSPACE', `the tree's DTS text is longer than a string can hold (${e.message}): its nodes nest too deep, or its values are too large, to print`);
    throw e;
  }
}

function formatLines(tree: DtsSource): string {
  const lines: string[] = ['/dts-v1/;'];
  const guessed = guessBootCpuid(tree.root);
  if (tree.bootCpuidPhys !== guessed) {
    lines.push(`// boot_cpuid_phys is 0x${tree.bootCpuidPhys.toString(16)}; DTS cannot carry it: compile with dtc -b ${tree.bootCpuidPhys}`);
  }
  lines.push('');
  for (const r of tree.reservations) {
    lines.push(`/memreserve/\t0x${r.address.toString(16).padStart(16, '0')} 0x${r.size.toString(16).padStart(16, '0')};`);
  }
  walkTree(tree.root, {
    enter(node, depth) {
      if (depth > 0) lines.push('');
      const indent = '\t'.repeat(depth);
      lines.push(`${indent}${depth === 0 ? '/' : visibleName(node.name)} {`);
      for (const p of node.props) lines.push(`${indent}\t${visibleName(p.name)}${formatValue(p.value)};`);
    },
    leave(_node, depth) {
      lines.push(`${'\t'.repeat(depth)}};`);
    },
  });
  return lines.join('\n') + '\n';
}

/**
 * livetree.c guess_boot_cpuid: what `dtc -I dts` puts in boot_cpuid_phys
 * when not told: the one-cell `reg` of the first child of /cpus, else 0.
 */
export function guessBootCpuid(root: FdtNode): number {
  const cpus = findExactChildIndex(root, 'cpus');
  if (cpus < 0) return 0;
  const first = root.children[cpus].children[0];
  if (first === undefined) return 0;
  const reg = findProp(first, 'reg');
  return reg !== undefined && reg.value.length === 4 ? readBe32(reg.value, 0) : 0;
}

/**
 * A node or property name as DTS text. libfdt takes any bytes but NUL and '/' in a name, and a
 * blob from anywhere may hold control characters there: printed raw (as dtc prints names), an ESC
 * would act on the terminal of whoever dumps the blob, a newline forge a line of the tree. Those
 * (C0, DEL, C1) are written as \xHH, which no name dtc compiles holds, so nothing that DTS can
 * carry changes; so is the soft hyphen (0xAD), which a terminal shows as nothing and would hide a
 * difference between two names. A name holds one character per byte (bytes.ts): the other format
 * controls of Unicode (a right-to-left override) cannot be one, their UTF-8 bytes show as three
 * characters, one of them C1 (U+202E as "â\x80®").
 */
function visibleName(name: string): string {
  return name.replace(/[\x00-\x1f\x7f-\x9f\xad]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** " = <value>" or "" for an empty (boolean) property. */
export function formatValue(v: Uint8Array): string {
  if (v.length === 0) return '';
  if (looksLikeStrings(v)) return ' = ' + formatStrings(v);
  if (v.length % 4 === 0) return ' = ' + formatCells(v);
  return ' = ' + formatBytes(v);
}

/** treesource.c isstring: printable ASCII, NUL, or a C escape character. */
function isStringByte(b: number): boolean {
  return (b >= 0x20 && b < 0x7f) || b === 0 || (b >= 0x07 && b <= 0x0d);
}

function looksLikeStrings(v: Uint8Array): boolean {
  if (v[v.length - 1] !== 0) return false;
  let nuls = 0;
  for (let i = 0; i < v.length; i++) {
    if (!isStringByte(v[i])) return false;
    if (v[i] === 0) nuls++;
  }
  return nuls <= v.length - nuls;
}

const ESCAPES: Record<number, string> = {
  0x07: '\\a',
  0x08: '\\b',
  0x09: '\\t',
  0x0a: '\\n',
  0x0b: '\\v',
  0x0c: '\\f',
  0x0d: '\\r',
  0x22: '\\"',
  0x5c: '\\\\',
};

function formatStrings(v: Uint8Array): string {
  const parts: string[] = [];
  let s = '';
  for (let i = 0; i < v.length; i++) {
    const b = v[i];
    if (b === 0) {
      parts.push(`"${s}"`);
      s = '';
    } else {
      s += ESCAPES[b] ?? String.fromCharCode(b);
    }
  }
  return parts.join(', ');
}

function formatCells(v: Uint8Array): string {
  const cells: string[] = [];
  for (let i = 0; i < v.length; i += 4) cells.push('0x' + readBe32(v, i).toString(16).padStart(2, '0'));
  return `<${cells.join(' ')}>`;
}

function formatBytes(v: Uint8Array): string {
  const bytes: string[] = [];
  for (let i = 0; i < v.length; i++) bytes.push(v[i].toString(16).padStart(2, '0'));
  return `[${bytes.join(' ')}]`;
}
