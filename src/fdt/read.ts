/**
 * Parsing a blob into the tree model. Validation is check.ts's (libfdt's
 * fdt_check_full); this file only builds nodes from what the walk reports.
 *
 * A few blobs pass fdt_check_full yet hold something no tree can: a
 * property outside the root node, a structure block with no node at all,
 * or (before v16) a node whose stored path has no '/'. libfdt accepts the
 * first two and then cannot reach the root by path (fdt_path_offset("/")
 * lands on offset 0, which is not a node); on the third fdt_get_name
 * answers BADSTRUCTURE. We refuse all three with BADSTRUCTURE (dtc refuses
 * them too), but only once fdt_check_full has passed, so any error libfdt
 * would report comes first.
 */
import { copyBytes, decodeLatin1, readBe32 } from './bytes.js';
import { FDT_V17_SIZE, HDR_TOTALSIZE } from './constants.js';
import { checkFull, nodeNameStart, type FdtHeader, type MemReservation, type StructVisitor } from './check.js';
import { FdtError } from './errors.js';
import { FdtNode, FdtProp } from './tree.js';

export interface ParsedFdt {
  readonly header: FdtHeader;
  readonly root: FdtNode;
  readonly reservations: MemReservation[];
}

/**
 * Checks and parses `bytes`. The blob is copied first, so a buffer that
 * changes underneath (a shared mapping) cannot change what was checked,
 * and the tree's values are views of that private copy.
 */
export function readFdt(bytes: Uint8Array, owner: object): ParsedFdt {
  const blob = privateCopy(bytes);
  const builder = new TreeBuilder(blob, owner);
  const { header, reservations } = checkFull(blob, builder);
  const root = builder.finish(header);
  return { header, root, reservations };
}

/**
 * Copies as much as libfdt could look at: `totalsize` bytes, but never
 * less than a full header, so the checks that compare the buffer's length
 * with the header and with totalsize see the same answers as on `bytes`.
 */
function privateCopy(bytes: Uint8Array): Uint8Array {
  if (bytes.length < HDR_TOTALSIZE + 4) return copyBytes(bytes);
  const declared = readBe32(bytes, HDR_TOTALSIZE);
  return copyBytes(bytes, 0, Math.min(bytes.length, Math.max(declared, FDT_V17_SIZE)));
}

class TreeBuilder implements StructVisitor {
  private readonly stack: FdtNode[] = [];
  private root: FdtNode | undefined;
  private version = 17;
  /** Property names by their offset in the blob: decoded once each. */
  private readonly names = new Map<number, string>();
  /** The first thing a tree cannot hold; thrown only if libfdt's checks all pass. */
  private refusal: FdtError | undefined;

  constructor(
    private readonly blob: Uint8Array,
    private readonly owner: object,
  ) {}

  start(h: FdtHeader): void {
    this.version = h.version;
    this.tailFrom = h.offDtStrings;
  }

  beginNode(tagOffset: number, nameStart: number, nameEnd: number): void {
    const parent = this.stack[this.stack.length - 1];
    if (parent === undefined) {
      // check.ts has verified that the root's name is empty.
      this.root = new FdtNode('', this.owner);
      this.stack.push(this.root);
      return;
    }
    const node = new FdtNode(this.nodeName(tagOffset, nameStart, nameEnd), this.owner);
    parent.children.push(node);
    this.stack.push(node);
  }

  endNode(): void {
    this.stack.pop();
  }

  property(tagOffset: number, nameStart: number, nameEnd: number, valueStart: number, valueLength: number): void {
    const node = this.stack[this.stack.length - 1];
    if (node === undefined) {
      this.refuse('a property outside the root node', tagOffset);
      return;
    }
    if (node.children.length > 0) node.propsAfterSubnodes = true;
    node.props.push(FdtProp.inBlob(this.propName(nameStart, nameEnd), this.blob, valueStart, valueLength));
  }

  finish(h: FdtHeader): FdtNode {
    if (this.refusal) throw this.refusal;
    if (this.root === undefined) throw new FdtError('BADSTRUCTURE', 'the structure block holds no root node', h.offDtStruct);
    return this.root;
  }

  /** A node's name; before v16 the blob holds its full path (fdt_get_name). */
  private nodeName(tagOffset: number, nameStart: number, nameEnd: number): string {
    const start = nodeNameStart(this.blob, nameStart, nameEnd, this.version);
    if (start < 0) {
      this.refuse('a pre-v16 node name that is not a path', tagOffset);
      return '';
    }
    return decodeLatin1(this.blob, start, nameEnd);
  }

  private propName(start: number, end: number): string {
    let name = this.names.get(start);
    if (name === undefined) {
      // A long name is a slice of the rest of the blob, decoded once: names inside one long string
      // (suffixes of it) would each decode it again, N names of S bytes costing N * S.
      if (end - start > 64) {
        // Names start in the strings block (a name offset is never negative).
        this.tail ??= decodeLatin1(this.blob, this.tailFrom, this.blob.length);
        name = this.tail.slice(start - this.tailFrom, end - this.tailFrom);
      } else {
        name = decodeLatin1(this.blob, start, end);
      }
      this.names.set(start, name);
    }
    return name;
  }
  /** The blob from the strings block on (tailFrom), as latin1 text: long names are sliced from it. */
  private tail: string | undefined;
  private tailFrom = 0;

  private refuse(message: string, offset: number): void {
    this.refusal ??= new FdtError('BADSTRUCTURE', message, offset);
  }
}
