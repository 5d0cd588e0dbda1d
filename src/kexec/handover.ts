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
import { Pool } from '../pool/index.js';
import { describeValue } from '../util/options.js';
import { checkOnHandoverOptions, checkPrepareOptions } from './arguments.js';
import { SubRegion } from '../region/index.js';
import { readRoot, readPoolNode, poolNames, writePoolNode, writeRoot, poolNodePath, DEFAULT_POOL_NAME, MAX_GENERATION } from './binding.js';
import { MAX_BLOB_BYTES, readBlob, removeBlob } from './blob.js';
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
  /** Undoes the handover: abort hooks told, pools resumed. Once: later calls (and calls after complete()) do nothing. */
  abort(reason: Error): void;
  /** The handover went through (the next program is running): another may be prepared. Once, like abort(). */
  complete(): void;
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
  return env[FDT_ENV] || (env === process.env ? startupFdt : undefined) || undefined;
}

/**
 * The blob PMPOOL_FDT named when pmpool loaded, taken out of the environment there: left in it
 * until the program calls incoming(), it passed to every process the program started meanwhile,
 * which could consume the blob first (and a child of a program that never calls incoming() got it
 * for good). exec.ts takes the ready pipe's variable out the same way.
 */
const startupFdt = takeStartupFdt();
function takeStartupFdt(): string | undefined {
  const value = process.env[FDT_ENV];
  delete process.env[FDT_ENV];
  return value;
}

export class HandoverRegistry {
  private readonly callbacks: CallbackEntry[] = [];
  private readonly pools = new Map<string, Pool>();
  private incomingCache: Handover | null | undefined;
  /** A handover is prepared and neither aborted nor complete. */
  private inFlight = false;

  /** Registers a callback that edits the outgoing tree; callbacks run in registration order. */
  onHandover(name: string, callback: HandoverCallback, options: { onAbort?: AbortHook } = {}): () => void {
    // The name is how messages (CALLBACK_FAILED) name the callback, and conventionally its node.
    if (typeof name !== 'string' || name === '') throw new HandoverError('BAD_ARGUMENT', `onHandover needs a name, got ${describeValue(name)}`);
    if (typeof callback !== 'function') throw new HandoverError('BAD_ARGUMENT', 'onHandover needs a callback function');
    options = checkOnHandoverOptions(options);
    const entry: CallbackEntry = { name, callback, onAbort: options.onAbort };
    this.callbacks.push(entry);
    return () => {
      const i = this.callbacks.indexOf(entry);
      if (i >= 0) this.callbacks.splice(i, 1);
    };
  }

  /** Makes `pool` part of every handover, as /pools/<name>. */
  addPool(pool: Pool, name = DEFAULT_POOL_NAME): () => void {
    if (!(pool instanceof Pool)) throw new HandoverError('BAD_ARGUMENT', `addPool needs a Pool, got ${describeValue(pool)}`);
    poolNodePath(name); // validates the name now, not at handover time
    if (pool.path === null) throw new HandoverError('BAD_ARGUMENT', 'only a pool with a path can be handed over (an in-memory region dies with its process)');
    // The node names the pool by its path to a program that may start in another directory.
    if (!pool.path.startsWith('/')) throw new HandoverError('BAD_ARGUMENT', `a pool handed over must be opened by an absolute path (the next program may start in another directory), got "${pool.path}"`);
    // A sub-pool has no file of its own: its parent is handed over, and the sub-pool found in it by name.
    if (pool.region instanceof SubRegion) throw new HandoverError('BAD_ARGUMENT', 'a sub-pool is handed over with its parent pool; register the parent');
    this.checkPoolName(name, pool);
    this.pools.set(name, pool);
    return () => {
      if (this.pools.get(name) === pool) this.pools.delete(name);
    };
  }

  /** Refuses `name` when it is no node name, or names another open pool (`pool` itself may hold it). */
  checkPoolName(name: string, pool?: Pool): void {
    poolNodePath(name);
    const existing = this.pools.get(name);
    if (existing && existing !== pool && !existing.closed) throw new HandoverError('BAD_ARGUMENT', `a pool is already registered as "${name}"`);
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
    try {
      const { fdt } = readBlob(path);
      const { generation, from } = readRoot(fdt);
      for (const name of poolNames(fdt)) {
        const node = readPoolNode(fdt, name);
        if (node.generation !== generation) {
          throw new HandoverError('STALE', `pool node ${name} is at generation ${node.generation} but the handover is ${generation}`);
        }
      }
      removeBlob(path);
      this.incomingCache = { fdt, generation, path, from };
      return this.incomingCache;
    } catch (e) {
      // Refused once, refused for good: the program falls back to a cold start (Pool.open), and its
      // own next handover must not trip over this blob again. The blob stays on disk for inspection.
      this.incomingCache = null;
      throw e;
    } finally {
      if (process.env[FDT_ENV] === path) delete process.env[FDT_ENV];
      // Nor does a child the program starts with its own arguments (cluster.fork passes them on).
      // From argv[1] on: a program given by -e or -p has no script there, and its first argument
      // is the flag when it has no other (a script's path, absolute, is never taken for it).
      if (argv === process.argv) {
        for (let i = process.argv.length - 1; i >= 1; i--) if (process.argv[i]!.startsWith(FDT_FLAG)) process.argv.splice(i, 1);
      }
    }
  }

  /**
   * The incoming handover, for prepare() to carry forward. A program that never read it (it opened
   * its pools cold, and reads no client node) learns here that it was refused — as a warning, once:
   * its own handover takes nothing from that blob, and failing it would refuse the first upgrade of
   * a program over a blob it ignored. A program that read it was told by incoming() itself.
   */
  private incomingToCarry(): Handover | null {
    try {
      return this.incoming();
    } catch (e) {
      if (!(e instanceof HandoverError)) throw e;
      process.emitWarning(`the handover this program was started with was refused (${e.code}: ${e.message}); its own handover carries nothing forward from it`, { code: 'PMPOOL_INCOMING_REFUSED' });
      return null;
    }
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
    // One handover at a time: a second one (SIGHUP twice) would bump the generation under the first.
    options = checkPrepareOptions(options, 'prepare options');
    if (this.inFlight) throw new HandoverError('BUSY', 'a handover is already under way in this program');
    const incoming = this.incomingToCarry();
    const fdt = incoming ? incoming.fdt.clone() : new Fdt();
    const pools = [...this.pools.entries()].filter(([, pool]) => !pool.closed);
    // A pool node carried in but not restored by this program describes a generation its pool will
    // never be at: passed on, it would make the next program refuse the whole handover as stale.
    for (const name of poolNames(fdt)) if (!pools.some(([registered]) => registered === name)) fdt.remove(poolNodePath(name));
    let generation = incoming?.generation ?? 0n;
    let highest: [string, Pool] | undefined;
    for (const entry of pools) {
      if (entry[1].generation > generation) {
        generation = entry[1].generation;
        highest = entry;
      }
    }
    generation += 1n;
    // A pool's superblock holds a u64: a generation past MAX_GENERATION + 1 would leave its
    // rollback's burn (N + 2) to wrap round to 0, where a blob of an old handover matches again.
    if (generation > MAX_GENERATION + 1n) {
      const what = highest ? `pool ${highest[0]} (${highest[1].path})` : 'the incoming handover';
      throw new HandoverError('STALE', `${what} is at generation ${generation - 1n}: no generation is left for a handover after it; nothing was changed`);
    }

    this.inFlight = true;
    // The callbacks of this handover: one registered while it runs (by another callback) takes
    // part in the next one, and is not told of this one's abort.
    const participants = [...this.callbacks];
    const quiesced: Pool[] = [];
    const bumped = new Set<Pool>();
    // Aborted or completed, once: a second abort() (or one after complete()) would resume pools
    // that a later handover has quiesced since, and tell the callbacks of an abort twice.
    let settled = false;
    const rollback = (reason: Error, failed?: CallbackEntry): void => {
      if (settled) return;
      settled = true;
      // The pools first, then the hooks: a hook may start the next handover at once (a retry),
      // which must find them as this one found them, and quiesce them for itself.
      for (const pool of quiesced) {
        try {
          // Burn the aborted generation: the pool moves to N+2, a generation no blob carries, so
          // a blob of this attempt can never be restored later (not even after the next handover).
          if (bumped.has(pool) && !pool.closed) pool.setGeneration(generation + 1n);
        } catch {
          /* the pool stays at N+1: still no blob will match once the next handover moves past it */
        } finally {
          pool.resume();
        }
      }
      this.inFlight = false;
      for (const entry of participants) {
        if (entry === failed || !entry.onAbort || !this.callbacks.includes(entry)) continue;
        try {
          entry.onAbort(reason);
        } catch {
          /* an abort hook must not stop the others from hearing */
        }
      }
    };

    try {
      writeRoot(fdt, generation, options.from ?? defaultFrom());
      for (const [name, pool] of pools) {
        pool.quiesce();
        quiesced.push(pool);
        pool.setGeneration(generation);
        bumped.add(pool);
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

    for (const entry of participants) {
      // Unregistered by a callback that ran before it (a client closed in another's callback): it is
      // out of this handover as it would be out of the next one.
      if (!this.callbacks.includes(entry)) continue;
      let result: unknown;
      let thenable: boolean;
      try {
        result = entry.callback(fdt);
        // Inside the try: reading `then` runs code of the callback's (a getter, a proxy).
        thenable = isThenable(result);
      } catch (e) {
        const error = new HandoverError('CALLBACK_FAILED', `handover callback "${entry.name}" failed: ${thrownMessage(e)}; handover aborted`, { cause: e });
        rollback(error, entry);
        throw error;
      }
      if (thenable) {
        // The tree is serialised as soon as the callbacks return: what an async callback writes
        // after its first await would never reach the next program, and its failure could not
        // abort the handover. Its later rejection is this abort, not an unhandled one that ends
        // the program; it is told like the others, for it did not fail itself.
        const error = new HandoverError('CALLBACK_FAILED', `handover callback "${entry.name}" returned a Promise; a callback must write its node before it returns; handover aborted`);
        rollback(error);
        try {
          (result as PromiseLike<unknown>).then(undefined, () => undefined);
        } catch {
          // A then() that throws leaves no rejection to wait for; the handover is rolled back all the same.
        }
        throw error;
      }
    }

    let bytes: Uint8Array;
    let carried: string[];
    try {
      carried = incoming && fdt.has('/clients') && incoming.fdt.has('/clients')
        ? incoming.fdt.children('/clients').filter((c) => fdt.nodeEquals(`/clients/${c}`, incoming.fdt))
        : [];
      bytes = fdt.toBytes();
      // The next program refuses a blob over the limit (readBlob): refused here, the handover is
      // aborted and this program keeps running, instead of handing over to one that cannot start.
      if (bytes.length > MAX_BLOB_BYTES) {
        throw new HandoverError('BAD_BLOB', `the handover tree is ${bytes.length} bytes, over the ${MAX_BLOB_BYTES}-byte limit a next program reads; handover aborted`);
      }
    } catch (e) {
      rollback(e as Error);
      throw e;
    }
    return {
      fdt,
      generation,
      bytes,
      carried,
      abort: (reason) => rollback(reason),
      complete: () => {
        if (settled) return;
        settled = true;
        this.inFlight = false;
      },
    };
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

function defaultFrom(): string {
  return `${process.title} pid ${process.pid}`;
}

export { removeBlob };

/** What a callback threw, as text: an Error's message, or any other value (null, a string, an object whose toString throws) shown as it is. */
function thrownMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  try {
    return `it threw ${describeValue(e)}`;
  } catch {
    return 'it threw a value that cannot be shown';
  }
}
