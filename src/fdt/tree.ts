/**
 * The tree model: nodes holding their properties and subnodes, each list
 * in order. Properties come before subnodes, as in dtc's model (a blob
 * may interleave them; the reader records that for lint, the writer puts
 * properties first as dtc does).
 *
 * Nodes are shared between trees (copy-on-write): `Fdt.clone()` and a
 * carried-forward subtree share node objects until one side edits, and
 * the editing side copies the nodes on the path it changes. So two
 * subtrees that no edit touched are the *same object*, and comparing them
 * is one `===`. A node may be changed in place only by the tree that owns
 * it (`owner`), which edit.ts checks. Property values are never changed in
 * place by anyone: an edit replaces the array.
 */
import { bytesEqual, writeLatin1 } from './bytes.js';

/**
 * A property. A parsed one keeps where its value lies in the parsed blob
 * and makes the view only when asked: parsing a large blob then costs one
 * small object per property, not two.
 */
export class FdtProp {
  private view: Uint8Array | undefined;

  private constructor(
    readonly name: string,
    private readonly source: Uint8Array,
    private readonly start: number,
    readonly length: number,
  ) {}

  /** A property over bytes `[start, start + length)` of a parsed blob (never changed afterwards). */
  static inBlob(name: string, blob: Uint8Array, start: number, length: number): FdtProp {
    return new FdtProp(name, blob, start, length);
  }

  /** A property holding `value`, which nobody may change afterwards. */
  static of(name: string, value: Uint8Array): FdtProp {
    return new FdtProp(name, value, 0, value.length);
  }

  get value(): Uint8Array {
    return (this.view ??= this.start === 0 && this.length === this.source.length ? this.source : this.source.subarray(this.start, this.start + this.length));
  }

  /** Writes the value at `at` of `out`, without making a view for a short one. */
  copyTo(out: Uint8Array, at: number): void {
    if (this.view !== undefined || this.length > 64) {
      out.set(this.value, at);
      return;
    }
    const src = this.source;
    for (let i = 0, j = this.start; i < this.length; i++, j++) out[at + i] = src[j];
  }
}

export class FdtNode {
  props: FdtProp[] = [];
  children: FdtNode[] = [];
  /** The blob this node came from had a property after a subnode here. */
  propsAfterSubnodes = false;

  constructor(
    public name: string,
    /** The edit token of the tree allowed to change this node in place. */
    public owner: object,
  ) {}

  /** A shallow copy owned by `owner`: new lists, the same children and values. */
  copyFor(owner: object): FdtNode {
    const copy = new FdtNode(this.name, owner);
    copy.props = this.props.slice();
    copy.children = this.children.slice();
    copy.propsAfterSubnodes = this.propsAfterSubnodes;
    return copy;
  }
}

/** The first property called `name` (libfdt returns the first of duplicates). */
export function findProp(node: FdtNode, name: string): FdtProp | undefined {
  const props = node.props;
  for (let i = 0; i < props.length; i++) if (props[i].name === name) return props[i];
  return undefined;
}

export function findPropIndex(node: FdtNode, name: string): number {
  const props = node.props;
  for (let i = 0; i < props.length; i++) if (props[i].name === name) return i;
  return -1;
}

/**
 * The first child matching `name` as fdt_subnode_offset matches it: the
 * exact name, or — when `name` has no '@' — a name of the form `name@...`.
 */
export function findChildIndex(node: FdtNode, name: string): number {
  const withAddress = name.includes('@');
  const children = node.children;
  for (let i = 0; i < children.length; i++) {
    const candidate = children[i].name;
    if (!candidate.startsWith(name)) continue;
    if (candidate.length === name.length) return i;
    if (!withAddress && candidate.charCodeAt(name.length) === 0x40 /* @ */) return i;
  }
  return -1;
}

export function findExactChildIndex(node: FdtNode, name: string): number {
  const children = node.children;
  for (let i = 0; i < children.length; i++) if (children[i].name === name) return i;
  return -1;
}

/** A node's name up to its '@' (dtc's basename). */
export function baseName(name: string): string {
  const at = name.indexOf('@');
  return at < 0 ? name : name.slice(0, at);
}

/** The unit address: what follows the first '@', or '' (dtc's get_unitname). */
export function unitAddress(name: string): string {
  const at = name.indexOf('@');
  return at < 0 ? '' : name.slice(at + 1);
}

/**
 * checks.c check_name_properties: the first `name` property, if it holds
 * exactly the node's base name and a NUL, is deleted before output.
 */
export function redundantNameProperty(node: FdtNode): number {
  const props = node.props;
  for (let i = 0; i < props.length; i++) {
    if (props[i].name !== 'name') continue;
    const v = props[i].value;
    const base = baseName(node.name);
    if (v.length !== base.length + 1 || v[base.length] !== 0) return -1;
    const expected = new Uint8Array(base.length + 1);
    writeLatin1(expected, 0, base);
    return bytesEqual(v, expected) ? i : -1;
  }
  return -1;
}

export interface TreeVisitor {
  /** Called before the node's subnodes; `depth` is 0 for the root. */
  enter(node: FdtNode, depth: number): void;
  /** Called after the node's subnodes. */
  leave?(node: FdtNode, depth: number): void;
}

/**
 * Depth-first, document order, without recursion: a blob of a few MiB can
 * nest nodes deeper than the JavaScript stack allows.
 */
export function walkTree(root: FdtNode, visitor: TreeVisitor): void {
  const nodes: FdtNode[] = [root];
  const next: number[] = [0];
  visitor.enter(root, 0);
  while (nodes.length > 0) {
    const top = nodes.length - 1;
    const node = nodes[top];
    const i = next[top];
    if (i < node.children.length) {
      next[top] = i + 1;
      const child = node.children[i];
      visitor.enter(child, top + 1);
      nodes.push(child);
      next.push(0);
    } else {
      nodes.pop();
      next.pop();
      visitor.leave?.(node, top);
    }
  }
}

/** walkTree with each node's path ("/" for the root, "/a/b@1" below it). */
export function walkWithPaths(root: FdtNode, visit: (node: FdtNode, path: string, depth: number) => void): void {
  const paths: string[] = [];
  walkTree(root, {
    enter(node, depth) {
      const path = depth === 0 ? '/' : `${depth === 1 ? '' : paths[depth - 1]}/${node.name}`;
      paths[depth] = path;
      visit(node, path, depth);
    },
  });
}

/** Names and values equal, in the same order, all the way down. */
export function nodesEqual(a: FdtNode, b: FdtNode): boolean {
  const pending: FdtNode[] = [a, b];
  while (pending.length > 0) {
    const y = pending.pop() as FdtNode;
    const x = pending.pop() as FdtNode;
    if (x === y) continue; // shared, hence equal: the common case after clone()
    if (x.name !== y.name || !propsEqual(x.props, y.props)) return false;
    if (x.children.length !== y.children.length) return false;
    for (let i = 0; i < x.children.length; i++) pending.push(x.children[i], y.children[i]);
  }
  return true;
}

function propsEqual(a: readonly FdtProp[], b: readonly FdtProp[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    if (a[i].name !== b[i].name || !bytesEqual(a[i].value, b[i].value)) return false;
  }
  return true;
}

/** The number of nodes under and including `root`. */
export function countNodes(root: FdtNode): number {
  let n = 0;
  walkTree(root, { enter: () => void n++ });
  return n;
}
