/**
 * Edits of the tree (libfdt's fdt_rw.c role), copy-on-write: before a
 * node changes, every node from the root down to it must belong to the
 * editing tree; shared ones are copied and the copies spliced in (see
 * tree.ts). Names given by callers are checked here; names read from a
 * blob are kept whatever they are (lint() judges them).
 *
 * Where libfdt and dtc place new items differently we follow dtc (and
 * DTS order): a new property goes after the node's others and a new node
 * after its siblings (libfdt's fdt_setprop and fdt_add_subnode put them
 * first).
 */
import { isByteString } from './bytes.js';
import { fail, requireString } from './errors.js';
import type { NodeChain } from './path.js';
import { findExactChildIndex, findPropIndex, FdtNode, FdtProp } from './tree.js';

/** A tree's root and the token that lets it change nodes in place. */
export interface EditTarget {
  root: FdtNode;
  readonly owner: object;
}

/** Makes the whole chain owned by `target`, copying shared nodes; returns its last node. */
export function ownChain(target: EditTarget, chain: NodeChain): FdtNode {
  const nodes = chain.nodes;
  for (let i = 0; i < nodes.length; i++) {
    if (nodes[i].owner === target.owner) continue;
    const copy = nodes[i].copyFor(target.owner);
    if (i === 0) target.root = copy;
    else nodes[i - 1].children[chain.indexes[i - 1]] = copy; // nodes[i - 1] is owned by now
    nodes[i] = copy;
  }
  return nodes[nodes.length - 1];
}

/** Sets the first property called `name`, or appends one. */
export function setProp(target: EditTarget, chain: NodeChain, name: string, value: Uint8Array): void {
  checkPropName(name);
  const node = ownChain(target, chain);
  const i = findPropIndex(node, name);
  const prop = FdtProp.of(name, value);
  if (i >= 0) node.props[i] = prop;
  else node.props.push(prop);
}

/** Removes the first property called `name`; false if there is none. */
export function removeProp(target: EditTarget, chain: NodeChain, name: string): boolean {
  const node = chain.nodes[chain.nodes.length - 1];
  const i = findPropIndex(node, name);
  if (i < 0) return false;
  ownChain(target, chain).props.splice(i, 1);
  return true;
}

export function renameProp(target: EditTarget, chain: NodeChain, from: string, to: string): void {
  // Not a string, `from` would only ever be NOTFOUND: say what is wrong with it.
  requireString(from, 'a property name', 'BADVALUE');
  checkPropName(to);
  const node = chain.nodes[chain.nodes.length - 1];
  const i = findPropIndex(node, from);
  if (i < 0) fail('NOTFOUND', `no property "${from}"`);
  if (from !== to && findPropIndex(node, to) >= 0) fail('EXISTS', `property "${to}" already exists`);
  const owned = ownChain(target, chain);
  owned.props[i] = FdtProp.of(to, owned.props[i].value);
}

/** Removes the chain's last node from its parent. */
export function removeNode(target: EditTarget, chain: NodeChain): void {
  if (chain.nodes.length < 2) fail('BADPATH', 'the root node cannot be removed');
  const parent = ownChain(target, parentChain(chain));
  parent.children.splice(chain.indexes[chain.indexes.length - 1], 1);
}

export function renameNode(target: EditTarget, chain: NodeChain, name: string): void {
  checkNodeName(name);
  if (chain.nodes.length < 2) fail('BADPATH', 'the root node has no name to change');
  const parent = chain.nodes[chain.nodes.length - 2];
  const same = findExactChildIndex(parent, name);
  if (same >= 0 && same !== chain.indexes[chain.indexes.length - 1]) fail('EXISTS', `a sibling is already called "${name}"`);
  ownChain(target, chain).name = name;
}

/**
 * mkdir -p: creates each missing node of an absolute path. Components are
 * matched by exact name here (not libfdt's `name` ~ `name@addr`), so the
 * node created is the one the path spells.
 */
export function addNodes(target: EditTarget, path: string): NodeChain {
  requireString(path, 'a path', 'BADPATH');
  if (!path.startsWith('/')) fail('BADPATH', `"${path}" is not an absolute path`);
  const names = path.split('/').filter((c) => c.length > 0);
  names.forEach(checkNodeName);
  const chain: NodeChain = { nodes: [target.root], indexes: [] };
  let k = 0;
  for (; k < names.length; k++) {
    const node = chain.nodes[chain.nodes.length - 1];
    const i = findExactChildIndex(node, names[k]);
    if (i < 0) break;
    chain.nodes.push(node.children[i]);
    chain.indexes.push(i);
  }
  if (k === names.length) return chain;
  let parent = ownChain(target, chain);
  for (; k < names.length; k++) {
    const child = new FdtNode(names[k], target.owner);
    chain.indexes.push(parent.children.length);
    chain.nodes.push(child);
    parent.children.push(child);
    parent = child;
  }
  return chain;
}

/**
 * Puts `source` (a node of any tree) at the chain's last node, keeping
 * that node's name and place. The subtree is shared, not copied; the
 * caller must stop `source`'s tree from editing it in place.
 */
export function graftNode(target: EditTarget, chain: NodeChain, source: FdtNode): void {
  const name = chain.nodes[chain.nodes.length - 1].name;
  const node = source.name === name ? source : renamedShare(source, name, target.owner);
  if (chain.nodes.length === 1) {
    target.root = node;
    return;
  }
  const parent = ownChain(target, parentChain(chain));
  parent.children[chain.indexes[chain.indexes.length - 1]] = node;
}

/** A new node with another name and the same (shared) contents. */
function renamedShare(source: FdtNode, name: string, owner: object): FdtNode {
  const copy = source.copyFor(owner);
  copy.name = name;
  return copy;
}

function parentChain(chain: NodeChain): NodeChain {
  return { nodes: chain.nodes.slice(0, -1), indexes: chain.indexes.slice(0, -1) };
}

/** A node name a caller may give: a non-empty byte string without '/' or NUL. */
export function checkNodeName(name: string): void {
  requireString(name, 'a node name', 'BADPATH');
  if (name.length === 0 || name.includes('/') || name.includes('\0') || !isByteString(name)) {
    fail('BADPATH', `"${name}" cannot be a node name`);
  }
}

/** A property name a caller may give: a non-empty byte string without NUL. */
export function checkPropName(name: string): void {
  requireString(name, 'a property name', 'BADVALUE');
  if (name.length === 0 || name.includes('\0') || !isByteString(name)) fail('BADVALUE', `"${name}" cannot be a property name`);
}
