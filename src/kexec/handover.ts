/**
 * The handover: what this program passes to the next one.
 *
 * Like kexec_file's FDT modification callbacks, each client registers a
 * callback that edits the outgoing tree (its own node under /clients); each
 * registered pool writes /pools/<name> and is quiesced. Like the x86 patch
 * that transfers the existing FDT to the new kernel, the outgoing tree
 * starts as the incoming one: nodes no callback changes pass on unchanged.
 */
import { Fdt } from '../fdt/index.js';
import type { Pool } from '../pool/index.js';
import { readRoot, readPoolNode, poolNames, writePoolNode, writeRoot, poolNodePath, DEFAULT_POOL_NAME } from './binding.js';
import { readBlob, removeBlob } from './blob.js';
import { HandoverError } from './errors.js';

export type HandoverCallback = (fdt: Fdt) => void;
export type AbortHook = (reason: Error) => void;

/** What the previous program handed over. */
export interface Handover {
  fdt: Fdt;
  generation: bigint;
  /** Where the blob was read from (it has been removed: a blob is consumed once). */
  path: string;
  from: string | undefined;
}

/** An outgoing handover, built but not yet committed: `abort()` undoes it. */
export interface PreparedHandover {
  fdt: Fdt;
  generation: bigint;
  bytes: Uint8Array;
  /** Names of incoming top-level /clients nodes passed on untouched (carry-forward). */
  carried: string[];
  abort(reason: Error): void;
}

interface CallbackEntry {
  name: string;
  callback: HandoverCallback;
  onAbort: AbortHook | undefined;
}

const FDT_FLAG = '--pmpool-fdt=';
export const FDT_ENV = 'PMPOOL_FDT';

export function fdtPathFromCommandLine(argv: readonly string[] = process.argv, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const flag = argv.find((a) => a.startsWith(FDT_FLAG));
  if (flag) return flag.slice(FDT_FLAG.length);
  return env[FDT_ENV] || undefined;
}

export class HandoverRegistry {
  private readonly callbacks: CallbackEntry[] = [];
  private readonly pools = new Map<string, Pool>();
  private incomingCache: Handover | null | undefined;

  /** Registers a callback that edits the outgoing tree; callbacks run in registration order. */
  onHandover(name: string, callback: HandoverCallback, options: { onAbort?: AbortHook } = {}): () => void {
    if (typeof callback !== 'function') throw new HandoverError('BAD_ARGUMENT', 'onHandover needs a callback function');
    const entry: CallbackEntry = { name, callback, onAbort: options.onAbort };
    this.callbacks.push(entry);
    return () => {
      const i = this.callbacks.indexOf(entry);
      if (i >= 0) this.callbacks.splice(i, 1);
    };
  }

  /** Makes `pool` part of every handover, as /pools/<name>. */
  addPool(pool: Pool, name = DEFAULT_POOL_NAME): () => void {
    poolNodePath(name); // validates the name now, not at handover time
    if (pool.path === null) throw new HandoverError('BAD_ARGUMENT', 'only a pool with a path can be handed over (an in-memory region dies with its process)');
    const existing = this.pools.get(name);
    if (existing && existing !== pool && !existing.closed) throw new HandoverError('BAD_ARGUMENT', `a pool is already registered as "${name}"`);
    this.pools.set(name, pool);
    return () => {
      if (this.pools.get(name) === pool) this.pools.delete(name);
    };
  }

  registeredPools(): ReadonlyMap<string, Pool> {
    return this.pools;
  }

  /**
   * The handover this program received, or null on a cold start. Read once:
   * the blob is validated, then removed, and its path dropped from the
   * environment so that no child inherits a consumed blob.
   */
  incoming(argv: readonly string[] = process.argv): Handover | null {
    if (this.incomingCache !== undefined) return this.incomingCache;
    const path = fdtPathFromCommandLine(argv);
    if (path === undefined) {
      this.incomingCache = null;
      return null;
    }
    const { fdt } = readBlob(path);
    const { generation, from } = readRoot(fdt);
    for (const name of poolNames(fdt)) {
      const node = readPoolNode(fdt, name);
      if (node.generation !== generation) {
        throw new HandoverError('STALE', `pool node ${name} is at generation ${node.generation} but the handover is ${generation}`);
      }
    }
    removeBlob(path);
    if (process.env[FDT_ENV] === path) delete process.env[FDT_ENV];
    this.incomingCache = { fdt, generation, path, from };
    return this.incomingCache;
  }

  /** @internal for tests: forget the cached incoming handover. */
  resetIncoming(): void {
    this.incomingCache = undefined;
  }

  /**
   * Builds the outgoing tree: carry-forward of the incoming one, the root and
   * pool nodes at generation N+1, then every callback in order. Pools are
   * quiesced. If a callback throws, the others' abort hooks run, pools are
   * resumed at their old generation, and a CALLBACK_FAILED error is thrown.
   */
  prepare(options: { from?: string } = {}): PreparedHandover {
    const incoming = this.incoming();
    const fdt = incoming ? incoming.fdt.clone() : new Fdt();
    const pools = [...this.pools.entries()].filter(([, pool]) => !pool.closed);
    let generation = incoming?.generation ?? 0n;
    for (const [, pool] of pools) if (pool.generation > generation) generation = pool.generation;
    generation += 1n;

    const previous = new Map<Pool, bigint>();
    const rollback = (reason: Error, failed?: CallbackEntry): void => {
      for (const entry of this.callbacks) {
        if (entry === failed || !entry.onAbort) continue;
        try {
          entry.onAbort(reason);
        } catch {
          /* an abort hook must not stop the others from hearing */
        }
      }
      for (const [pool, gen] of previous) {
        if (pool.closed) continue;
        pool.setGeneration(gen);
        pool.resume();
      }
    };

    try {
      writeRoot(fdt, generation, options.from ?? defaultFrom());
      for (const [name, pool] of pools) {
        previous.set(pool, pool.generation);
        pool.quiesce();
        pool.setGeneration(generation);
        writePoolNode(fdt, {
          name,
          path: pool.path!,
          uuid: pool.uuidBytes,
          pageSize: pool.pageSize,
          pageCount: pool.pageCount,
          orderPerBit: pool.orderPerBit,
          generation,
          superblockCrc: pool.superblockCrc,
        });
      }
    } catch (e) {
      rollback(e as Error);
      throw e;
    }

    for (const entry of [...this.callbacks]) {
      try {
        entry.callback(fdt);
      } catch (e) {
        const error = new HandoverError('CALLBACK_FAILED', `handover callback "${entry.name}" failed: ${(e as Error).message}; handover aborted`, { cause: e });
        rollback(error, entry);
        throw error;
      }
    }

    const carried = incoming && fdt.has('/clients') && incoming.fdt.has('/clients')
      ? incoming.fdt.children('/clients').filter((c) => fdt.nodeEquals(`/clients/${c}`, incoming.fdt))
      : [];
    return { fdt, generation, bytes: fdt.toBytes(), carried, abort: (reason) => rollback(reason) };
  }
}

function defaultFrom(): string {
  return `${process.title} pid ${process.pid}`;
}

export { removeBlob };
