/**
 * The handover binding, version 1 (docs/handover.md is its prose twin):
 *
 *   / { compatible = "pmpool,handover-v1"; pmpool,generation = /bits/ 64 <N>;
 *       pmpool,from = "..."; pools { NAME { compatible = "pmpool,pool-v1";
 *       path; uuid = [16 bytes]; page-size; nr-pages = /bits/ 64; order-per-bit;
 *       generation = /bits/ 64; superblock-crc; }; }; clients { ... }; };
 *
 * Versioning: the major version is in the compatible string; a reader
 * refuses a major it does not know, and ignores properties it does not know
 * (minor additions). Every value read here is validated: the blob is
 * untrusted input.
 */
import { describeValue } from '../util/options.js';
import type { Fdt } from '../fdt/index.js';
import { FdtError } from '../fdt/index.js';
import { HandoverError } from './errors.js';

export const ROOT_COMPATIBLE = 'pmpool,handover-v1';
export const POOL_COMPATIBLE = 'pmpool,pool-v1';
/** The node name the kernel RFC gives its pool. */
export const DEFAULT_POOL_NAME = 'default_pmpool';
export const POOLS = '/pools';
export const CLIENTS = '/clients';

export interface PoolNode {
  name: string;
  path: string;
  uuid: Uint8Array;
  pageSize: number;
  pageCount: number;
  orderPerBit: number;
  generation: bigint;
  superblockCrc: number;
}

/** Reads a property through `read`, turning absence or a malformed value into BAD_BINDING. */
function required<T>(what: string, read: () => T | undefined): T {
  let value: T | undefined;
  try {
    value = read();
  } catch (e) {
    if (e instanceof FdtError) throw new HandoverError('BAD_BINDING', `${what} is malformed: ${e.message}`, { cause: e });
    throw e;
  }
  if (value === undefined) throw new HandoverError('BAD_BINDING', `${what} is missing`);
  return value;
}

/** Checks a "vendor,thing-vN" compatible against the one this code speaks; an unknown major is refused. */
function checkCompatible(fdt: Fdt, path: string, expected: string): void {
  const compatible = required(`${path} compatible`, () => fdt.getStrings(path, 'compatible'));
  if (compatible.includes(expected)) return;
  const family = expected.replace(/-v\d+$/, '-v');
  const other = compatible.find((c) => c.startsWith(family));
  throw new HandoverError(
    'BAD_BINDING',
    other ? `${path} is ${other}, a major version this pmpool does not know (it reads ${expected})` : `${path} is not compatible with ${expected} (compatible = ${JSON.stringify(compatible)})`,
  );
}

/**
 * The largest generation a handover may carry: the next program's handover is N + 1, and a
 * rollback of that burns N + 2, both written as u64s (a superblock's generation field). Past it,
 * a u64 store would wrap the pool's generation round to 0, where old blobs match again.
 */
export const MAX_GENERATION = 2n ** 64n - 3n;

export function readRoot(fdt: Fdt): { generation: bigint; from: string | undefined } {
  checkCompatible(fdt, '/', ROOT_COMPATIBLE);
  const generation = required('/ pmpool,generation', () => fdt.getU64('/', 'pmpool,generation'));
  if (generation < 1n) throw new HandoverError('BAD_BINDING', '/ pmpool,generation must be at least 1');
  if (generation > MAX_GENERATION) {
    throw new HandoverError('BAD_BINDING', `/ pmpool,generation ${generation} leaves no generation for the next handover (at most ${MAX_GENERATION})`);
  }
  let from: string | undefined;
  try {
    from = fdt.getString('/', 'pmpool,from');
  } catch {
    from = undefined; // informational only
  }
  return { generation, from };
}

export function writeRoot(fdt: Fdt, generation: bigint, from: string): void {
  fdt.set('/', 'compatible', ROOT_COMPATIBLE);
  fdt.set('/', 'pmpool,generation', generation);
  fdt.set('/', 'pmpool,from', from);
  fdt.addNode(POOLS);
  fdt.addNode(CLIENTS);
}

/** A pool node's name: a device tree node name without a unit address (no "@"), at most 31 characters. */
const POOL_NAME = /^[A-Za-z0-9,._+-]{1,31}$/;
const POOL_NAME_RULE = '1-31 of A-Z a-z 0-9 , . _ + -';

export function poolNodePath(name: string): string {
  // typeof first: test() would read 42 as "42".
  if (typeof name !== 'string' || !POOL_NAME.test(name)) {
    throw new HandoverError('BAD_ARGUMENT', `pool node name ${describeValue(name)} is not a valid device tree node name (${POOL_NAME_RULE})`);
  }
  return `${POOLS}/${name}`;
}

export function writePoolNode(fdt: Fdt, node: PoolNode): void {
  const path = poolNodePath(node.name);
  fdt.remove(path); // rewritten whole: nothing of an older node lingers
  fdt.addNode(path);
  fdt.set(path, 'compatible', POOL_COMPATIBLE);
  fdt.set(path, 'path', node.path);
  fdt.set(path, 'uuid', node.uuid);
  fdt.set(path, 'page-size', node.pageSize);
  fdt.set(path, 'nr-pages', BigInt(node.pageCount));
  fdt.set(path, 'order-per-bit', node.orderPerBit);
  fdt.set(path, 'generation', node.generation);
  fdt.set(path, 'superblock-crc', node.superblockCrc);
}

export function readPoolNode(fdt: Fdt, name: string): PoolNode {
  const path = poolNodePath(name);
  if (!fdt.has(path)) throw new HandoverError('NOT_FOUND', `the handover has no pool node ${path} (it has: ${poolNames(fdt).join(', ') || 'none'})`);
  checkCompatible(fdt, path, POOL_COMPATIBLE);
  const poolPath = required(`${path} path`, () => fdt.getString(path, 'path'));
  if (!poolPath.startsWith('/')) throw new HandoverError('BAD_BINDING', `${path} path must be absolute, got "${poolPath}"`);
  const uuid = required(`${path} uuid`, () => fdt.get(path, 'uuid'));
  if (uuid.length !== 16) throw new HandoverError('BAD_BINDING', `${path} uuid must be 16 bytes, got ${uuid.length}`);
  const nrPages = required(`${path} nr-pages`, () => fdt.getU64(path, 'nr-pages'));
  if (nrPages < 1n || nrPages > BigInt(Number.MAX_SAFE_INTEGER)) throw new HandoverError('BAD_BINDING', `${path} nr-pages ${nrPages} is out of range`);
  return {
    name,
    path: poolPath,
    uuid,
    pageSize: required(`${path} page-size`, () => fdt.getU32(path, 'page-size')),
    pageCount: Number(nrPages),
    orderPerBit: required(`${path} order-per-bit`, () => fdt.getU32(path, 'order-per-bit')),
    generation: required(`${path} generation`, () => fdt.getU64(path, 'generation')),
    superblockCrc: required(`${path} superblock-crc`, () => fdt.getU32(path, 'superblock-crc')),
  };
}

/**
 * The names of a tree's pool nodes. The tree came from a blob: a name the
 * binding does not allow is the blob's fault (BAD_BINDING), not a caller's
 * bad argument, though poolNodePath() would call it one.
 */
export function poolNames(fdt: Fdt): string[] {
  const names = fdt.has(POOLS) ? fdt.children(POOLS) : [];
  for (const name of names) {
    if (!POOL_NAME.test(name)) throw new HandoverError('BAD_BINDING', `${POOLS}/${name}: a pool node name is ${POOL_NAME_RULE}`);
  }
  return names;
}
