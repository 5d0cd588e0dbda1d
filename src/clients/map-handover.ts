/**
 * The PersistentMap's node in the handover FDT (docs/handover.md, DESIGN.md §5):
 *
 *   clients {
 *     kv {
 *       compatible = "pmpool,persistent-map-v1";
 *       root = /bits/ 64 <pfn>;        // the map's header run
 *       pool-uuid = [ 16 bytes ];
 *       map-id = <id>;                 // random per map, also in every segment header
 *       entries = /bits/ 64 <n>;
 *     };
 *   };
 *
 * Only an `Fdt` is needed here: the kexec layer calls `writeMapNode` from a
 * handover callback and hands the incoming tree to `PersistentMap.open`
 * (directly, or through `setIncomingHandoverSource`). Every value read is
 * untrusted input.
 */
import { kexec, type Fdt } from '../index.js';
import { ClientError } from './errors.js';

export const MAP_COMPATIBLE = 'pmpool,persistent-map-v1';
const COMPATIBLE_PREFIX = 'pmpool,persistent-map-v';

export interface MapHandoverInfo {
  name: string;
  rootPfn: number;
  poolUuid: Uint8Array;
  mapId: number;
  entries: number;
}

export function mapNodePath(name: string): string {
  return `/clients/${name}`;
}

/** Writes (or rewrites) `/clients/<name>` for a map. */
export function writeMapNode(fdt: Fdt, info: MapHandoverInfo): void {
  const path = mapNodePath(info.name);
  if (fdt.has(path)) fdt.remove(path);
  fdt.addNode(path);
  fdt.set(path, 'compatible', MAP_COMPATIBLE);
  fdt.set(path, 'root', BigInt(info.rootPfn));
  fdt.set(path, 'pool-uuid', info.poolUuid.slice());
  fdt.set(path, 'map-id', info.mapId >>> 0);
  fdt.set(path, 'entries', BigInt(info.entries));
}

/**
 * The node for map `name` in an incoming tree, or undefined when there is none.
 * A node that is not a v1 map node, or is malformed, is refused.
 */
export function readMapNode(fdt: Fdt, name: string): MapHandoverInfo | undefined {
  const path = mapNodePath(name);
  if (!fdt.has(path)) return undefined;
  const what = `handover node ${path}`;
  try {
    // A string list, as a device tree's compatible is ("most specific first"): a later version may
    // name itself and the versions it can still be read as, as the root and pool nodes may.
    const compatible = fdt.getStrings(path, 'compatible');
    if (compatible === undefined || !compatible.includes(MAP_COMPATIBLE)) {
      const other = compatible?.find((c) => c.startsWith(COMPATIBLE_PREFIX));
      if (other === undefined) throw new ClientError('HANDOVER_MISMATCH', `${what} is not a persistent map (compatible = ${JSON.stringify(compatible ?? null)})`);
      throw new ClientError('HANDOVER_MISMATCH', `${what} is "${other}"; this code reads "${MAP_COMPATIBLE}"`);
    }
    const root = fdt.getU64(path, 'root');
    const poolUuid = fdt.get(path, 'pool-uuid');
    const mapId = fdt.getU32(path, 'map-id');
    const entries = fdt.getU64(path, 'entries');
    if (root === undefined || poolUuid === undefined || mapId === undefined || entries === undefined) {
      throw new ClientError('HANDOVER_MISMATCH', `${what} lacks one of root, pool-uuid, map-id, entries`);
    }
    if (poolUuid.length !== 16) throw new ClientError('HANDOVER_MISMATCH', `${what}: pool-uuid is ${poolUuid.length} bytes, not 16`);
    if (root > BigInt(Number.MAX_SAFE_INTEGER) || entries > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new ClientError('HANDOVER_MISMATCH', `${what}: root or entries out of range`);
    }
    return { name, rootPfn: Number(root), poolUuid, mapId, entries: Number(entries) };
  } catch (e) {
    if (e instanceof ClientError) throw e;
    throw new ClientError('HANDOVER_MISMATCH', `${what} is malformed: ${(e as Error).message}`, { cause: e });
  }
}

/** Refuses a map whose node disagrees with what was found in the pool by name. */
export function verifyMapNode(node: MapHandoverInfo, found: MapHandoverInfo): void {
  const what = `persistent map "${found.name}": the incoming handover node`;
  const uuidHex = (u: Uint8Array) => Buffer.from(u).toString('hex');
  if (uuidHex(node.poolUuid) !== uuidHex(found.poolUuid)) {
    throw new ClientError('HANDOVER_MISMATCH', `${what} names pool ${uuidHex(node.poolUuid)}, but the map is in pool ${uuidHex(found.poolUuid)}`);
  }
  if (node.rootPfn !== found.rootPfn) {
    throw new ClientError('HANDOVER_MISMATCH', `${what} says root pfn ${node.rootPfn}, but the map's header is at pfn ${found.rootPfn}`);
  }
  if (node.mapId !== found.mapId) {
    throw new ClientError('HANDOVER_MISMATCH', `${what} says map-id ${node.mapId}, but the map found by name has id ${found.mapId} (recreated since?)`);
  }
  if (node.entries !== found.entries) {
    throw new ClientError(
      'HANDOVER_MISMATCH',
      `${what} says ${node.entries} entries, the map holds ${found.entries} (was it written after its handover callback ran?); open it with { handover: null } to take it as found`,
    );
  }
}

let incomingSource: (() => Fdt | null) | null = null;

/** Overrides where PersistentMap.open finds the incoming handover tree (tests; programs that read the blob themselves). */
export function setIncomingHandoverSource(source: (() => Fdt | null) | null): void {
  incomingSource = source;
}

/** The incoming handover tree: from the source set above, else the one kexec.incoming() received (null on a cold start). */
export function incomingHandoverFdt(): Fdt | null {
  if (incomingSource !== null) return incomingSource();
  return kexec.incoming()?.fdt ?? null;
}
