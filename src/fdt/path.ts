/**
 * Paths to nodes, resolved as fdt_path_offset resolves them (fdt_ro.c):
 * components separated by runs of '/', each matched by fdt_subnode_offset's
 * rule (see tree.ts findChildIndex), and a path that does not start with
 * '/' begins with an alias from /aliases.
 */
import { decodeLatin1 } from './bytes.js';
import { fail, requireString } from './errors.js';
import { findChildIndex, findProp, type FdtNode } from './tree.js';

/**
 * The nodes from the root down to the one a path names. `indexes[i]` is
 * the position of `nodes[i + 1]` among the children of `nodes[i]`, so an
 * edit can copy the chain and splice the copies in.
 */
export interface NodeChain {
  readonly nodes: FdtNode[];
  readonly indexes: number[];
}

/** The chain to the node `path` names, or undefined if there is none. */
export function resolvePath(root: FdtNode, path: string): NodeChain | undefined {
  requireString(path, 'a path', 'BADPATH');
  if (path.length === 0) fail('BADPATH', 'empty path');
  let chain: NodeChain = { nodes: [root], indexes: [] };
  let rest = path;
  if (path.charCodeAt(0) !== 0x2f /* / */) {
    const slash = path.indexOf('/');
    const target = aliasTarget(root, leadingAlias(path));
    if (target === undefined) return undefined;
    const resolved = walkComponents(target, chain);
    if (resolved === undefined) return undefined;
    chain = resolved;
    rest = slash < 0 ? '' : path.slice(slash);
  }
  return walkComponents(rest, chain);
}

/**
 * Why a path resolvePath found no node for is refused, as fdt_path_offset
 * answers: BADPATH when it starts with an alias that /aliases does not
 * define (fdtget and fdtput say so too), NOTFOUND when a node is missing.
 */
export function unresolvedPathCode(root: FdtNode, path: string): 'BADPATH' | 'NOTFOUND' {
  if (path.charCodeAt(0) === 0x2f /* / */) return 'NOTFOUND';
  return aliasTarget(root, leadingAlias(path)) === undefined ? 'BADPATH' : 'NOTFOUND';
}

/** The alias a relative path starts with: everything up to its first '/'. */
function leadingAlias(path: string): string {
  const slash = path.indexOf('/');
  return slash < 0 ? path : path.slice(0, slash);
}

/** Descends from the end of `chain` along the '/'-separated components of `path`. */
function walkComponents(path: string, chain: NodeChain): NodeChain | undefined {
  const nodes = chain.nodes.slice();
  const indexes = chain.indexes.slice();
  for (const component of path.split('/')) {
    if (component.length === 0) continue; // libfdt skips runs of '/'
    const node = nodes[nodes.length - 1];
    const i = findChildIndex(node, component);
    if (i < 0) return undefined;
    nodes.push(node.children[i]);
    indexes.push(i);
  }
  return { nodes, indexes };
}

/**
 * fdt_get_alias: the value of /aliases/<name>, which must be a NUL
 * terminated string that starts with '/' (an alias naming an alias, or a
 * relative path, is no alias).
 */
export function aliasTarget(root: FdtNode, name: string): string | undefined {
  const aliases = walkComponents('/aliases', { nodes: [root], indexes: [] });
  if (aliases === undefined) return undefined;
  const prop = findProp(aliases.nodes[aliases.nodes.length - 1], name);
  if (prop === undefined) return undefined;
  const v = prop.value;
  if (v.length === 0 || v[v.length - 1] !== 0 || v[0] !== 0x2f) return undefined;
  const nul = v.indexOf(0);
  return decodeLatin1(v, 0, nul);
}

/** The canonical path of the last node of a chain: "/" for the root. */
export function chainPath(chain: NodeChain): string {
  if (chain.nodes.length === 1) return '/';
  let s = '';
  for (let i = 1; i < chain.nodes.length; i++) s += '/' + chain.nodes[i].name;
  return s;
}

/** The last node of a chain. */
export function chainNode(chain: NodeChain): FdtNode {
  return chain.nodes[chain.nodes.length - 1];
}
