/**
 * Re-attaching what was handed over. Pool.restore checks the pool at the
 * node's path against everything the node says — uuid, geometry,
 * generation, superblock checksum — and refuses, leaving the pool untouched
 * (still openable by Pool.open's crash-recovery path), on any difference.
 */
import { Fdt } from '../fdt/index.js';
import { Pool, PoolError, setRestoreHook } from '../pool/index.js';
import { parseSize, RegionError } from '../region/index.js';
import { DEFAULT_POOL_NAME, readPoolNode, poolNames, poolNodePath, type PoolNode } from './binding.js';
import { checkArgv } from './arguments.js';
import { HandoverError } from './errors.js';
import type { Handover, HandoverRegistry } from './handover.js';
import { bytesEqual } from '../util/bytes.js';
import { dirname } from 'node:path';
import { FLOCK_EXCLUSIVE, native } from '../sys/native.js';
import { sleepSync } from '../util/sleep.js';

function asHandover(value: unknown, what = 'Pool.restore'): Handover {
  const h = value as Partial<Handover> | null;
  if (!h || !(h.fdt instanceof Fdt) || typeof h.generation !== 'bigint') {
    throw new HandoverError('BAD_ARGUMENT', `${what} needs the handover from kexec.incoming()`);
  }
  return h as Handover;
}


export function restorePool(registry: HandoverRegistry, handover: unknown, name = DEFAULT_POOL_NAME): Pool {
  const h = asHandover(handover);
  return restoreNode(registry, h, name, readPoolNode(h.fdt, name));
}

/** restorePool with the pool node already read from `h.fdt` (by the same call: a Handover's tree may be edited between calls). */
function restoreNode(registry: HandoverRegistry, h: Handover, name: string, node: PoolNode): Pool {
  if (node.generation !== h.generation) {
    throw new HandoverError('STALE', `pool node ${name} is at generation ${node.generation}, the handover at ${h.generation}`);
  }
  let pool: Pool;
  try {
    pool = Pool.open(node.path);
  } catch (e) {
    // A pool whose lock stays held is no mismatch of the handover: the wait's own error says who holds it.
    if ((e instanceof RegionError || e instanceof PoolError) && !(e instanceof PoolError && e.code === 'LOCK_TIMEOUT')) {
      throw new HandoverError('MISMATCH', `pool node ${name} names ${node.path}, which cannot be opened as that pool: ${e.message}`, { cause: e });
    }
    throw e;
  }
  const mismatch = (what: string, mine: unknown, theirs: unknown) =>
    new HandoverError('MISMATCH', `pool ${node.path} has ${what} ${String(mine)} but the handover says ${String(theirs)}; refused, the pool is untouched`);
  try {
    if (!bytesEqual(pool.uuidBytes, node.uuid)) throw mismatch('uuid', pool.uuid, Buffer.from(node.uuid).toString('hex'));
    if (pool.pageSize !== node.pageSize) throw mismatch('page size', pool.pageSize, node.pageSize);
    if (pool.pageCount !== node.pageCount) throw mismatch('page count', pool.pageCount, node.pageCount);
    if (pool.orderPerBit !== node.orderPerBit) throw mismatch('order-per-bit', pool.orderPerBit, node.orderPerBit);
    if (pool.generation !== node.generation) {
      throw new HandoverError(
        'STALE',
        `pool ${node.path} is at generation ${pool.generation} but the handover is for generation ${node.generation}: a replayed or out-of-order blob; refused`,
      );
    }
    if (pool.superblockCrc !== node.superblockCrc) throw mismatch('superblock checksum', pool.superblockCrc, node.superblockCrc);
    registry.addPool(pool, name);
  } catch (e) {
    pool.close();
    throw e;
  }
  return pool;
}

/** Every pool node of a handover, restored. */
export function restoreAll(registry: HandoverRegistry, handover: Handover): Map<string, Pool> {
  const h = asHandover(handover, 'kexec.restoreAll');
  const out = new Map<string, Pool>();
  try {
    for (const name of poolNames(h.fdt)) out.set(name, restorePool(registry, h, name));
  } catch (e) {
    for (const pool of out.values()) pool.close();
    throw e;
  }
  return out;
}

export interface PoolFlag {
  path: string;
  size: number;
  /** `,preallocate`: the pool's memory reserved when it is created or opened cold (Pool.create/open { preallocate }). */
  preallocate: boolean;
}

const PREALLOCATE_SUFFIX = ',preallocate';

/**
 * Parses `--pmpool=PATH,SIZE[,preallocate]` (the kernel's `pmpool=<base>,<size>`, whose memory is
 * reserved at boot: `,preallocate` reserves the pool file's), or undefined when absent. SIZE is
 * the last comma-separated word but for that one, so a PATH may hold commas.
 */
export function parsePoolFlag(argv: readonly string[] = process.argv): PoolFlag | undefined {
  const flag = argv.find((a) => a.startsWith('--pmpool='));
  if (!flag) return undefined;
  const value = flag.slice('--pmpool='.length);
  const preallocate = value.endsWith(PREALLOCATE_SUFFIX);
  const pathAndSize = preallocate ? value.slice(0, -PREALLOCATE_SUFFIX.length) : value;
  const comma = pathAndSize.lastIndexOf(',');
  if (comma <= 0) throw new HandoverError('BAD_ARGUMENT', `--pmpool=${value}: expected --pmpool=PATH,SIZE[,preallocate] (e.g. --pmpool=/dev/shm/pmpool-app,1G)`);
  const path = pathAndSize.slice(0, comma);
  if (!path.startsWith('/')) throw new HandoverError('BAD_ARGUMENT', `--pmpool path must be absolute, got "${path}"`);
  try {
    return { path, size: parseSize(pathAndSize.slice(comma + 1)), preallocate };
  } catch (e) {
    throw new HandoverError('BAD_ARGUMENT', `--pmpool=${value}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * The pool named on the command line: restored from the handover when the
 * previous program passed it on, else opened (recovering from a crash), else
 * created. Registered for the next handover under `name`.
 */
export function poolFromCommandLine(registry: HandoverRegistry, argv: readonly string[] = process.argv, name = DEFAULT_POOL_NAME): Pool | undefined {
  argv = checkArgv(argv, 'kexec.poolFromCommandLine');
  poolNodePath(name); // a bad name is refused with or without the flag
  const flag = parsePoolFlag(argv);
  if (!flag) return undefined;
  // Refused before the pool is opened or created: a refusal must neither hold the file nor leave a new one.
  registry.checkPoolName(name);
  const incoming = registry.incoming(argv);
  if (incoming) {
    // The node is read once here and restored from what was read: reading it again in restorePool
    // cost ~0.04 ms of a handover's cold path (measured), for the same answer within one call.
    const h = asHandover(incoming, 'kexec.poolFromCommandLine');
    if (poolNames(h.fdt).includes(name)) {
      const node = readPoolNode(h.fdt, name);
      if (node.path === flag.path) {
        // The flag's size holds for a restore as for a cold start: refused before anything is
        // attached (the pool stays as it was handed over, openable by Pool.open).
        if (node.pageCount * node.pageSize !== flag.size) {
          throw new HandoverError('BAD_ARGUMENT', `--pmpool=${flag.path},${flag.size}: the pool handed over there is ${node.pageCount * node.pageSize} bytes`);
        }
        return restoreNode(registry, h, name, node);
      }
    }
  }
  // A cold start: the pool's memory is reserved here when the flag asks. A restore (above) does not
  // reserve it again: its predecessor did, under the same flag, and visiting every block of the
  // pool would make the restore O(size).
  const options = flag.preallocate ? { preallocate: true } : {};
  const pool = whileNoOtherCreates(flag.path, () => {
    try {
      return Pool.open(flag.path, options);
    } catch (e) {
      if (!(e instanceof RegionError) || e.code !== 'NOT_FOUND') throw e;
      return Pool.create(flag.path, { size: flag.size, ...options });
    }
  });
  if (pool.pageCount * pool.pageSize !== flag.size) {
    const actual = pool.pageCount * pool.pageSize;
    pool.close();
    throw new HandoverError('BAD_ARGUMENT', `--pmpool=${flag.path},${flag.size}: the pool there is ${actual} bytes`);
  }
  try {
    registry.addPool(pool, name);
  } catch (e) {
    pool.close(); // not handed out: its fd, flock and mappings go back
    throw e;
  }
  return pool;
}

/** How long a cold start waits for the lock on its pool's directory (whileNoOtherCreates). */
const CREATE_LOCK_WAIT_MS = 5000;

/**
 * Runs `openOrCreate` holding an exclusive flock on the directory of `path`. Programs started
 * together with the same flag (cluster workers, which get the same arguments) open or create the
 * pool at once: Pool.create makes the file (O_EXCL) and writes the superblock last, so one that
 * came second found the path taken (EXISTS) or a file with no pool in it yet (NOT_A_POOL, or no
 * size at all), and was refused its pool. Under the lock, each finds no file or a whole pool. The
 * lock is the directory's own, so nothing is left beside the pool; it goes with its descriptor
 * (O_CLOEXEC). A directory that cannot be opened or locked is run without it, as before.
 */
function whileNoOtherCreates<T>(path: string, openOrCreate: () => T): T {
  let fd: number | undefined;
  try {
    // "/.": the directory itself, even where it is reached through a symbolic link (open is O_NOFOLLOW).
    fd = native.open(`${dirname(path)}/.`, false, false, true, 0);
    // Another program's open or create holds it for a millisecond or so. Any other holder (the
    // directory is shared: /dev/shm) is not waited for past CREATE_LOCK_WAIT_MS: then the pool
    // is opened as before the lock, and a create racing it is told apart by its errors.
    const deadline = performance.now() + CREATE_LOCK_WAIT_MS;
    while (!native.flock(fd, FLOCK_EXCLUSIVE, true)) {
      if (performance.now() > deadline) throw new Error('the directory stays locked');
      sleepSync(1);
    }
  } catch {
    if (fd !== undefined) native.close(fd);
    fd = undefined;
  }
  try {
    return openOrCreate();
  } finally {
    if (fd !== undefined) native.close(fd);
  }
}

export function installRestoreHook(registry: HandoverRegistry): void {
  setRestoreHook((handover, name) => restorePool(registry, handover, name));
}
