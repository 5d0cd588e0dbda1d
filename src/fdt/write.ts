/**
 * Encoding a tree as `dtc -I dtb -O dtb` encodes it (dtc 1.6.1,
 * flattree.c dt_to_blob): header, reserve map at offset 40, structure
 * block, strings block, then any padding asked for — no gaps. The
 * structure block is the tree depth first, each node's properties before
 * its subnodes; names and values are NUL-padded to 4 bytes. The strings
 * block is strings.ts's.
 *
 * One dtc check edits the tree before it is written: a `name` property
 * equal to its node's base name (a leftover of v1–v3 blobs) is redundant
 * and dtc deletes it (checks.c check_name_properties). We drop it too
 * unless `keepNameProperties` is set, so our bytes stay dtc's bytes —
 * including dtc's quirk that the check does not run at all (so nothing is
 * dropped) when an earlier check fails: process_checks stops running
 * checks after the first error, and name_properties comes after the
 * duplicate-name and name-character checks and needs every `name` to be
 * one string. For such trees our bytes are those of `dtc -f`.
 */
import { writeBe32, writeBe64, writeLatin1 } from './bytes.js';
import {
  FDT_BEGIN_NODE,
  FDT_END,
  FDT_END_NODE,
  FDT_MAGIC,
  FDT_PROP,
  FDT_V17_SIZE,
  HDR_BOOT_CPUID_PHYS,
  HDR_LAST_COMP_VERSION,
  HDR_MAGIC,
  HDR_OFF_DT_STRINGS,
  HDR_OFF_DT_STRUCT,
  HDR_OFF_MEM_RSVMAP,
  HDR_SIZE_DT_STRINGS,
  HDR_SIZE_DT_STRUCT,
  HDR_TOTALSIZE,
  HDR_VERSION,
  INT_MAX,
  RESERVE_ENTRY_SIZE,
  tagAlign,
} from './constants.js';
import type { MemReservation } from './check.js';
import { FdtError, fail } from './errors.js';
import { checkBooleanOption, checkOptions, describeValue } from '../util/options.js';

const badValue = (message: string): FdtError => new FdtError('BADVALUE', message);
import { StringTable } from './strings.js';
import { badNodeChar, badPropChar, hasMultipleAt, isOneString } from './names.js';
import { findProp, redundantNameProperty, walkTree, type FdtNode } from './tree.js';

/** The knobs of dtc's blob output, named after its options. */
export interface FdtWriteOptions {
  /** Blob version, 17 (default) or 16 (dtc -V). */
  version?: 16 | 17;
  /** Extra empty reserve-map entries for a later editor to fill (dtc -R). */
  reserveSlots?: number;
  /** Bytes of free space after the strings block, for growth (dtc -p). */
  freeSpace?: number;
  /** Pads the blob to at least this many bytes (dtc -S; not with `freeSpace`, as in dtc). */
  minSize?: number;
  /** Pads the blob's size to a multiple of this power of two (dtc -a). */
  align?: number;
  /** Keep `name` properties that merely repeat the node's name (dtc deletes them). */
  keepNameProperties?: boolean;
}

export interface FdtImage {
  readonly root: FdtNode;
  readonly reservations: readonly MemReservation[];
  readonly bootCpuidPhys: number;
}

export function encodeFdt(image: FdtImage, options: FdtWriteOptions = {}): Uint8Array {
  options = checkOptions(options, 'toBytes options', badValue);
  checkBooleanOption(options.keepNameProperties, 'keepNameProperties', badValue);
  for (const field of ['reserveSlots', 'freeSpace', 'minSize', 'align'] as const) {
    const n = options[field];
    // A string or NaN would slip past the `> 0` tests below and be ignored without a word.
    if (n !== undefined && (typeof n !== 'number' || Number.isNaN(n))) fail('BADVALUE', `${field} must be a number of bytes, got ${describeValue(n)}`);
  }
  const version = options.version ?? 17;
  if (version !== 16 && version !== 17) fail('BADVERSION', `cannot write version ${String(version)}; 16 or 17`);
  const slots = wholeNumber(options.reserveSlots ?? 0, 'reserveSlots');
  const dropNames = options.keepNameProperties !== true && dtcDeletesNameProperties(image.root);
  const plan = planStructure(image.root, dropNames);
  const offRsvmap = FDT_V17_SIZE; // ALIGN(header size, 8) for both v16 and v17
  const offStruct = offRsvmap + (image.reservations.length + slots + 1) * RESERVE_ENTRY_SIZE;
  const offStrings = offStruct + plan.structSize;
  const used = offStrings + plan.strings.byteLength;
  const totalSize = used + padding(used, options);
  if (totalSize > INT_MAX) fail('NOSPACE', `the blob would be ${totalSize} bytes, more than libfdt accepts`);

  const out = new Uint8Array(totalSize);
  writeBe32(out, HDR_MAGIC, FDT_MAGIC);
  writeBe32(out, HDR_TOTALSIZE, totalSize);
  writeBe32(out, HDR_OFF_DT_STRUCT, offStruct);
  writeBe32(out, HDR_OFF_DT_STRINGS, offStrings);
  writeBe32(out, HDR_OFF_MEM_RSVMAP, offRsvmap);
  writeBe32(out, HDR_VERSION, version);
  writeBe32(out, HDR_LAST_COMP_VERSION, 16);
  writeBe32(out, HDR_BOOT_CPUID_PHYS, image.bootCpuidPhys);
  writeBe32(out, HDR_SIZE_DT_STRINGS, plan.strings.byteLength);
  // A v16 header is 36 bytes; dtc pads it to 40 with zeros.
  if (version === 17) writeBe32(out, HDR_SIZE_DT_STRUCT, plan.structSize);

  let at = offRsvmap;
  for (const r of image.reservations) {
    writeBe64(out, at, r.address);
    writeBe64(out, at + 8, r.size);
    at += RESERVE_ENTRY_SIZE;
  }
  // The extra slots and the terminator are zero entries: `out` is zeroed.
  writeStructure(out, offStruct, image.root, plan);
  plan.strings.writeTo(out, offStrings);
  return out;
}

/** Free space after the strings, as dt_to_blob computes it from -S, -p and -a. */
function padding(used: number, options: FdtWriteOptions): number {
  if (options.minSize !== undefined && options.freeSpace !== undefined) fail('BADVALUE', 'freeSpace and minSize exclude each other (dtc: "Can\'t set both -p and -S")');
  let pad = 0;
  if (options.minSize !== undefined) pad = Math.max(0, wholeNumber(options.minSize, 'minSize') - used);
  // Negative values refused, as dtc refuses -p/-a with one; 0 asks for nothing.
  if (options.freeSpace !== undefined) pad = wholeNumber(options.freeSpace, 'freeSpace');
  const a = options.align === undefined ? 0 : wholeNumber(options.align, 'align');
  if (a > 0) {
    if ((a & (a - 1)) !== 0) fail('BADVALUE', `align ${a} is not a power of two`);
    pad = Math.ceil((used + pad) / a) * a - used;
  }
  return pad;
}

function wholeNumber(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 0 || n > INT_MAX) fail('BADVALUE', `${what} must be a whole number of bytes, not ${n}`);
  return n;
}

interface StructurePlan {
  readonly structSize: number;
  readonly strings: StringTable;
  /** The string offset of each written property, in writing order. */
  readonly nameOffsets: number[];
  /** Per node (in walk order), the index of a property left out, or -1. */
  readonly skipped: number[];
}

/** First pass: sizes, and the strings block in dtc's order of first use. */
function planStructure(root: FdtNode, dropNames: boolean): StructurePlan {
  const strings = new StringTable();
  const nameOffsets: number[] = [];
  const skipped: number[] = [];
  let size = 4; // FDT_END
  walkTree(root, {
    enter(node) {
      const skip = dropNames ? redundantNameProperty(node) : -1;
      skipped.push(skip);
      size += 8 + tagAlign(node.name.length + 1); // BEGIN_NODE, name, END_NODE
      const props = node.props;
      for (let i = 0; i < props.length; i++) {
        if (i === skip) continue;
        nameOffsets.push(strings.offsetOf(props[i].name));
        size += 12 + tagAlign(props[i].length);
      }
    },
  });
  return { structSize: size, strings, nameOffsets, skipped };
}

/**
 * Whether dtc gets as far as check_name_properties: the checks before it
 * in checks.c's table (duplicate node and property names, node and
 * property name characters, node name format, `name` being one string)
 * all pass. False too when no node has a `name` property: nothing to do.
 */
export function dtcDeletesNameProperties(root: FdtNode): boolean {
  let anyName = false;
  walkTree(root, { enter: (node) => void (anyName ||= findProp(node, 'name') !== undefined) });
  if (!anyName) return false; // the common case: nothing to delete, nothing more to look at
  let clean = true;
  walkTree(root, {
    enter(node) {
      if (clean) clean = passesEarlierChecks(node);
    },
  });
  return clean;
}

function passesEarlierChecks(node: FdtNode): boolean {
  const props = new Set<string>();
  for (const p of node.props) {
    if (props.has(p.name) || badPropChar(p.name) !== undefined) return false;
    props.add(p.name);
  }
  const children = new Set<string>();
  for (const c of node.children) {
    if (children.has(c.name) || badNodeChar(c.name) !== undefined || hasMultipleAt(c.name)) return false;
    children.add(c.name);
  }
  const name = findProp(node, 'name');
  return name === undefined || isOneString(name.value);
}

/** Second pass: the structure block itself. */
function writeStructure(out: Uint8Array, offset: number, root: FdtNode, plan: StructurePlan): void {
  let at = offset;
  let prop = 0;
  let node = 0;
  walkTree(root, {
    enter(n) {
      writeBe32(out, at, FDT_BEGIN_NODE);
      at = tagAlign(writeLatin1(out, at + 4, n.name) + 1);
      const skip = plan.skipped[node++];
      const props = n.props;
      for (let i = 0; i < props.length; i++) {
        if (i === skip) continue;
        const length = props[i].length;
        writeBe32(out, at, FDT_PROP);
        writeBe32(out, at + 4, length);
        writeBe32(out, at + 8, plan.nameOffsets[prop++]);
        props[i].copyTo(out, at + 12);
        at = tagAlign(at + 12 + length);
      }
    },
    leave() {
      writeBe32(out, at, FDT_END_NODE);
      at += 4;
    },
  });
  writeBe32(out, at, FDT_END);
}
