/**
 * Replacing the program. exec(): in place, same PID, through the addon's
 * execve (process.execve does not exist before Node 22.15). spawn(): a new
 * process receives the handover; this one stays in charge until the new one
 * reports ready, and takes everything back if it does not.
 */
import type { ChildProcess, StdioOptions } from 'node:child_process';
import { closeSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { native } from '../sys/native.js';
import { ownTid, processStartTime } from '../sys/proc.js';
import { checkExecOptions, checkSpawnOptions, TEARDOWN_MODE } from './arguments.js';
import { writeBlob, removeBlob } from './blob.js';
import { HandoverError } from './errors.js';
import { FDT_ENV, type HandoverRegistry } from './handover.js';

export const READY_FD_ENV = 'PMPOOL_READY_FD';

export interface ReplaceOptions {
  /** Environment of the next program (default: this one's). PMPOOL_FDT is added. */
  env?: NodeJS.ProcessEnv;
  /** Where the blob is written. Default /dev/shm. */
  blobDir?: string;
  /** Recorded as /pmpool,from. */
  from?: string;
  /** Append --pmpool-fdt=PATH to the arguments (default true; PMPOOL_FDT is always set). */
  passFlag?: boolean;
}

/**
 * How exec() leaves this program's image. An execve frees a Node program's
 * tens of megabytes page by page before the next program runs, most of the
 * old side's share of the downtime; a keeper — a process of pmpool's that
 * shares the image (native/pmpool.c) — can free it instead, while the next
 * program starts. The keeper exits as an orphan, for the nearest subreaper
 * or else init to reap:
 *
 * - 'auto' (the default): a keeper where init is a machine's, which reaps
 *   orphans (the initial pid namespace); inline in a container's pid
 *   namespace, whose pid 1 is whatever the container runs (npm, a Node
 *   program) and may leave each keeper a zombie for good.
 * - 'background': a keeper in a container too, for one whose pid 1 reaps
 *   orphans (tini, docker --init, dumb-init, systemd).
 * - 'inline': execve frees the image first, as any execve does: the old and
 *   new images are never in memory together.
 *
 * The keeper closes its copies of the program's descriptors before the
 * execve: on NFS, FUSE or CIFS each close flushes its file, and a program
 * with many files open there is better served by 'inline'. A program that
 * is pid 1 or a subreaper itself (orphans come back to it), or a kernel
 * before 5.9, gets 'inline' whatever it asks.
 */
export type Teardown = 'auto' | 'background' | 'inline';

export interface ExecOptions extends ReplaceOptions {
  /** Default 'auto'. */
  teardown?: Teardown;
  /**
   * How long exec() waits for output already written to stdout and stderr to reach their
   * readers. A reader that has stalled (a log shipper that stopped reading its pipe) would
   * otherwise hold the program with its pools quiesced, serving nothing, for as long as it
   * stalls. Past this the exec is refused with EXEC_FAILED: the handover is aborted, the pools
   * are usable again, no blob has been written, and the output stays queued, as it was, for the
   * reader. Default 10 s (DEFAULT_STDIO_TIMEOUT_MS).
   */
  stdioTimeoutMs?: number;
}

/** exec()'s default stdioTimeoutMs: as long as spawn() gives a new program to come up. */
export const DEFAULT_STDIO_TIMEOUT_MS = 10_000;

export interface SpawnOptions extends ReplaceOptions {
  /** How long the new program has to call kexec.ready(). Default 10 s. */
  readyTimeoutMs?: number;
  /**
   * stdio of the new program (fd 3 is taken by the ready pipe). Default inherit. With 'pipe', what
   * the program writes before it is ready is kept for the caller: child.stdout and child.stderr
   * are streams of this program's that start with it, and go on with the rest.
   */
  stdio?: 'inherit' | 'ignore' | 'pipe';
}

/**
 * Resolves once everything written to stdout and stderr so far has reached
 * the kernel: an execve drops whatever Node still holds in user space. A
 * write to a full pipe stays queued (writableLength > 0); a stream with an
 * empty queue has nothing to wait for, and skipping the round trip through
 * the event loop keeps it out of the handover's downtime.
 *
 * Only streams the program has created are looked at. process.stdout is a
 * lazy getter: the first read builds the stream (for a pipe, a net.Socket,
 * loading Node's net module), ~2.5 ms of downtime in a program that never
 * wrote there, and such a stream has nothing to flush. A created TTY, pipe
 * or socket stream is one of the process's active handles, marked
 * `_isStdio`, unless the program unref()ed it; then a write still queued
 * is an active request on its fd. A stream on a file writes synchronously
 * and never queues. A Node without these lists, and a worker thread, get
 * the plain getters.
 *
 * A program may have put a stream of its own in place of process.stdout or
 * process.stderr (Object.defineProperty: a fs.WriteStream on fd 1, a
 * Transform piped into the real stream). What it writes there queues in
 * that stream, which is no stdio handle: it is waited on first, then the
 * real streams, which may have been handed its bytes meanwhile.
 */
async function flushStdio(): Promise<void> {
  await Promise.all(
    replacedStdioStreams().map(async ({ name, stream }) => {
      if ((await withinMs(drain(stream), REPLACED_STREAM_DRAIN_MS)) === false) {
        // Said on fd 2 itself, at once: the stream that did not drain may be the stderr one.
        writeSync(2, `pmpool: exec(): the stream in place of process.${name} did not drain within ${REPLACED_STREAM_DRAIN_MS} ms; what it still holds is left behind\n`);
      }
    }),
  );
  await Promise.all(createdStdioStreams().map(drain));
}

/**
 * Whether a stream flushStdio() looks at holds bytes. Usually none does, and exec() then replaces
 * the program without a round trip through the streams.
 */
function stdioHoldsBytes(): boolean {
  return replacedStdioStreams().some(({ stream }) => holdsBytes(stream)) || createdStdioStreams().some(holdsBytes);
}

/**
 * How long exec() waits for a stream the program put in place of stdout or stderr. Node's own
 * streams always drain (their bytes go to a file, pipe or terminal); a replacement need not: a
 * Transform that nobody reads never calls back, and exec() would wait for ever, the blob written
 * and the handover prepared. Past this, what such a stream still holds is left behind.
 */
const REPLACED_STREAM_DRAIN_MS = 1_000;

/**
 * `wait`, or `ms` milliseconds, whichever ends first (the timer keeps the program alive meanwhile):
 * true when `wait` ended (or there was nothing to wait for), false when the time ran out.
 */
function withinMs(wait: Promise<void> | undefined, ms: number): Promise<boolean> {
  if (wait === undefined) return Promise.resolve(true);
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([wait.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]).finally(() => clearTimeout(timer));
}

type StdioStream = NodeJS.WritableStream & { writableLength: number; _isStdio?: boolean };

/**
 * Resolves once the bytes queued in `stream` so far are written: an empty write's callback
 * runs after every write before it (the idiom for flushing a Node stream). A stream with
 * nothing queued, or ended or destroyed (what it holds is lost either way), is not waited on.
 */
function drain(stream: StdioStream): Promise<void> | undefined {
  if (!holdsBytes(stream)) return undefined;
  return new Promise<void>((resolve) => stream.write('', () => resolve()));
}

/** Bytes queued in the stream, which is neither ended nor destroyed (what those hold is lost either way). */
function holdsBytes(stream: StdioStream): boolean {
  const state = stream as StdioStream & { destroyed?: boolean; writableEnded?: boolean };
  return state.writableLength !== 0 && state.destroyed !== true && state.writableEnded !== true;
}

/**
 * process.env as it was when this module was loaded: Node's view of environ, unless the program
 * had already put an object of its own there. A program may assign process.env (to scrub what the
 * next program inherits); environ knows nothing of that object, so exec() then passes it as is.
 */
const NODE_ENV = process.env;

/** Node's own lazy getters of process.stdout/stderr, as they were when this module was loaded. */
const NODE_STDIO_GETTERS = new Set(['stdout', 'stderr'].map((name) => Object.getOwnPropertyDescriptor(process, name)?.get));

/**
 * The streams the program has put in place of process.stdout/stderr: a data property, or a
 * getter other than Node's. Node's own getter is never called here (it may build the stream).
 */
function replacedStdioStreams(): { name: 'stdout' | 'stderr'; stream: StdioStream }[] {
  const streams: { name: 'stdout' | 'stderr'; stream: StdioStream }[] = [];
  for (const name of ['stdout', 'stderr'] as const) {
    const d = Object.getOwnPropertyDescriptor(process, name);
    if (d === undefined || (d.get !== undefined && NODE_STDIO_GETTERS.has(d.get))) continue;
    const s = ('value' in d ? d.value : d.get?.call(process)) as Partial<StdioStream> | null | undefined;
    if (s != null && typeof s.write === 'function' && typeof s.writableLength === 'number') streams.push({ name, stream: s as StdioStream });
  }
  return streams;
}

function createdStdioStreams(): StdioStream[] {
  const internals = process as unknown as { _getActiveHandles?: () => unknown[]; _getActiveRequests?: () => unknown[] };
  const activeHandles = internals._getActiveHandles;
  const activeRequests = internals._getActiveRequests;
  // In a worker, process.stdout and process.stderr are the thread's own streams, which pass what
  // they are given to the main thread through a message port: no handles, and cheap to create.
  if (ownTid() !== process.pid || typeof activeHandles !== 'function' || typeof activeRequests !== 'function') return [process.stdout, process.stderr];
  const streams = new Set(
    activeHandles.call(process).filter((h): h is StdioStream => {
      const s = h as Partial<StdioStream> | null;
      return s !== null && s._isStdio === true && typeof s.write === 'function' && typeof s.writableLength === 'number';
    }),
  );
  // An unref()ed stream is not an active handle, but a write it has in flight (and its queue waits
  // behind one) is an active request on fd 1 or 2, whose stream then exists: reading it creates nothing.
  for (const r of activeRequests.call(process)) {
    const fd = (r as { handle?: { fd?: unknown } } | null)?.handle?.fd;
    if (fd === 1) streams.add(process.stdout);
    else if (fd === 2) streams.add(process.stderr);
  }
  return [...streams];
}

function envStrings(env: NodeJS.ProcessEnv): string[] {
  return Object.entries(env)
    .filter((e): e is [string, string] => typeof e[1] === 'string')
    .map(([k, v]) => `${k}=${v}`);
}

/** The next program's arguments: `args`, and the blob's flag unless passFlag is false. */
function handoverArgs(args: readonly string[], blob: string, options: ReplaceOptions): string[] {
  // A flag from this program's own start names a blob consumed long ago; the reader takes the first.
  const own = args.filter((a) => !a.startsWith('--pmpool-fdt='));
  return options.passFlag === false ? own : [...own, `--pmpool-fdt=${blob}`];
}

/** The next program's environment: options.env, or this program's, with the blob's variable. */
function handoverEnv(blob: string, options: ReplaceOptions): NodeJS.ProcessEnv {
  return { ...(options.env ?? process.env), [FDT_ENV]: blob };
}

function checkArgs(file: unknown, args: unknown): asserts args is string[] {
  if (typeof file !== 'string' || file.length === 0) throw new HandoverError('BAD_ARGUMENT', 'the next program must be a path');
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) throw new HandoverError('BAD_ARGUMENT', 'arguments must be an array of strings');
  // execve takes C strings: one with a NUL would reach the next program cut short at it.
  if (file.includes('\0')) throw new HandoverError('BAD_ARGUMENT', 'the path of the next program must not contain a NUL byte');
  const i = args.findIndex((a) => a.includes('\0'));
  if (i >= 0) throw new HandoverError('BAD_ARGUMENT', `argument ${i} of the next program contains a NUL byte`);
}

/** Hands over and replaces this process image with `file` (same PID). Returns only by throwing. */
export async function execInPlace(registry: HandoverRegistry, file: string, args: string[] = [], options: ExecOptions = {}): Promise<never> {
  checkArgs(file, args);
  options = checkExecOptions(options, 'exec options');
  const teardown = TEARDOWN_MODE[options.teardown ?? 'auto'];
  const prepared = registry.prepare({ from: options.from });
  let blob: string | undefined;
  let claimed = false;
  try {
    // One turn first, always: what the program wrote on its way here a tick later (process.nextTick,
    // a stream that passes its writes on in one) or in a promise job queued before this call is
    // written then, before the streams are looked at; an execve at once would drop it. Only when a
    // stream then holds bytes are they waited for — for as long as its reader takes: the output is
    // the program's, and not dropped. The blob is written after that wait, never before: a program
    // killed while it waits (a supervisor's SIGTERM to a program whose stdout reader has stalled)
    // leaves no blob behind, and from the blob to execve nothing but this function runs.
    await undefined;
    if (stdioHoldsBytes()) {
      const limit = options.stdioTimeoutMs ?? DEFAULT_STDIO_TIMEOUT_MS;
      if (!(await withinMs(flushStdio(), limit))) {
        throw new HandoverError('EXEC_FAILED', `exec of ${file} refused: the output already written to stdout or stderr did not drain within ${limit} ms (stdioTimeoutMs: their reader has stalled); it stays queued, and this program keeps running`);
      }
    }
    claimed = native.claimExec(true);
    if (!claimed) throw new HandoverError('EXEC_FAILED', `exec of ${file} refused: another thread of this program is replacing it; this program keeps running until then`);
    blob = writeBlob(prepared.bytes, options.blobDir);
    const argv = [file, ...handoverArgs(args, blob, options)];
    // Pools need no closing: their mappings vanish with the image, their fds
    // are O_CLOEXEC, and a quiesced pool holds no lock.
    if ((options.env === undefined || options.env === NODE_ENV) && process.env === NODE_ENV && ownTid() === process.pid) {
      // This program's environment, put together by the addon from environ, which process.env
      // writes through to on the main thread (a worker's process.env is a copy of its own, and an
      // object the program assigned to process.env is no view of environ at all). Passing
      // { env: process.env } asks for the same.
      native.execve(file, argv, null, [`${FDT_ENV}=${blob}`], teardown);
    } else {
      native.execve(file, argv, envStrings(handoverEnv(blob, options)), [], teardown);
    }
    throw new HandoverError('EXEC_FAILED', `execve of ${file} returned without replacing the program`);
  } catch (e) {
    if (blob) removeBlob(blob);
    if (claimed) native.claimExec(false);
    const error = e instanceof HandoverError ? e : new HandoverError('EXEC_FAILED', `exec of ${file} failed: ${(e as Error).message}; this program keeps running`, { cause: e });
    prepared.abort(error);
    throw error;
  }
}

export interface SpawnResult {
  child: ChildProcess;
  generation: bigint;
  /**
   * The registered pools whose close() threw once the new program was in charge (a final
   * flush that failed: EIO, ENOSPC). The takeover happened all the same, and each of these
   * pools is closed (Pool.close releases its mappings, fd and lock before it throws); what
   * may be lost is the durability of its last stores. Empty when every close went through.
   */
  closeFailures: { name: string; error: Error }[];
}

/**
 * Hands over to a new process. Resolves once it has called kexec.ready():
 * this program's registered pools are closed then, and the caller should
 * exit. From that moment on nothing is thrown, whatever happens: a pool
 * whose close fails is listed in `closeFailures`. If the new program exits or stays silent past the timeout, it is
 * killed, the handover is rolled back, and NOT_READY is thrown: this
 * program is still in charge, its pools usable.
 */
export async function spawnNext(registry: HandoverRegistry, file: string, args: string[] = [], options: SpawnOptions = {}): Promise<SpawnResult> {
  checkArgs(file, args);
  options = checkSpawnOptions(options);
  const prepared = registry.prepare({ from: options.from });
  let blob: string | undefined;
  let child: ChildProcess | undefined;
  try {
    blob = writeBlob(prepared.bytes, options.blobDir);
    const io = options.stdio ?? 'inherit';
    const stdio: StdioOptions = [io, io, io, 'pipe'];
    // node:child_process is loaded on first spawn: exec() and restore never need it.
    const { spawn: spawnChild } = process.getBuiltinModule('node:child_process');
    child = spawnChild(file, handoverArgs(args, blob, options), { env: { ...handoverEnv(blob, options), [READY_FD_ENV]: '3' }, stdio });
    const bound = io === 'pipe' ? holdOutput(child) : undefined;
    await waitReady(child, options.readyTimeoutMs ?? 10_000);
    bound?.();
  } catch (e) {
    if (child) await endNewProgram(child);
    if (blob) removeBlob(blob);
    const error = e instanceof HandoverError ? e : new HandoverError('EXEC_FAILED', `spawn of ${file} failed: ${(e as Error).message}`, { cause: e });
    prepared.abort(error);
    throw error;
  }
  // The new program is in charge: a throw now would tell the caller it still is. Every pool is
  // closed (a close that throws has released the pool all the same) and the handover completed.
  const closeFailures: SpawnResult['closeFailures'] = [];
  for (const [name, pool] of registry.registeredPools()) {
    try {
      pool.close();
    } catch (e) {
      closeFailures.push({ name, error: e instanceof Error ? e : new Error(String(e)) });
    }
  }
  prepared.complete();
  // Consumed by the new program's incoming(), normally; one that reported ready without reading it
  // (it restores nothing, or later) would leave it in /dev/shm for good.
  removeBlob(blob);
  return { child, generation: prepared.generation, closeFailures };
}

/**
 * With { stdio: 'pipe' }, the new program's stdout and stderr are pipes that only this program
 * reads, and the caller gets the child to read them from only once spawn() resolves. Left unread
 * until then, a program that writes more than a pipe and Node's read-ahead hold (~128 KiB) before
 * it calls kexec.ready() blocks in that write for good, and is rolled back as NOT_READY. So they
 * are read from the start into a stream of this program's, which the caller gets in their place
 * (child.stdout, child.stderr, child.stdio[1] and [2]) and reads from the first byte. Until the
 * program is ready that stream holds whatever it is given; the function returned bounds it from
 * then on, as a pipe is bounded: the pipe is read only as fast as the caller reads the stream.
 */
function holdOutput(child: ChildProcess): () => void {
  const { PassThrough } = process.getBuiltinModule('node:stream');
  const bounds: (() => void)[] = [];
  for (const fd of [1, 2] as const) {
    const pipe = child.stdio[fd];
    if (!pipe) continue;
    const held = new PassThrough();
    let bounded = false;
    const wait = () => {
      pipe.pause();
      held.once('drain', () => pipe.resume());
    };
    pipe.on('data', (chunk: Buffer) => {
      if (!held.write(chunk) && bounded) wait();
    });
    pipe.once('end', () => held.end());
    pipe.once('error', (e: Error) => held.destroy(e));
    if (fd === 1) child.stdout = held;
    else child.stderr = held;
    child.stdio[fd] = held;
    bounds.push(() => {
      bounded = true;
      if (held.writableNeedDrain) wait();
    });
  }
  return () => {
    for (const bound of bounds) bound();
  };
}

/**
 * Ends a new program a rollback gives up on, with every process it started: one run through a
 * wrapper (`sh -c 'node next.js'`) is the wrapper's child, and killing the wrapper alone left it
 * running, in charge of the pools beside this program. The tree is stopped first, so that no
 * process forks past the look at its children, then killed; the rollback goes on once they are
 * dead (at most ROLLBACK_EXIT_MS). Processes that left the tree before it was looked
 * at (a daemon's double fork) are beyond this; /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)
 * is how the tree is found, and without it the new program alone is killed.
 */
async function endNewProgram(child: ChildProcess): Promise<void> {
  const root = child.pid;
  if (root === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const stopped = new Set<number>();
  for (let look = 0; look < 16; look++) {
    const found = [root, ...descendantsOf(root)].filter((pid) => !stopped.has(pid));
    if (found.length === 0) break;
    for (const pid of found) {
      try {
        process.kill(pid, 'SIGSTOP');
        stopped.add(pid);
      } catch {
        /* gone already */
      }
    }
  }
  for (const pid of [root, ...stopped]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }
  // Dead, each of them, before the rollback goes on (SIGKILL is delivered, not done, when kill() returns).
  const deadline = performance.now() + ROLLBACK_EXIT_MS;
  // processStartTime: null once a process is gone or a zombie.
  while ([root, ...stopped].some((pid) => processStartTime(pid) !== null) && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
}

/** How long a rollback waits for the killed processes to be dead. */
const ROLLBACK_EXIT_MS = 2_000;

/** Every process below `pid`, by /proc/PID/task/TID/children; none when that cannot be read. */
function descendantsOf(pid: number): number[] {
  const found: number[] = [];
  const pending = [pid];
  while (pending.length > 0) {
    const parent = pending.pop()!;
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${parent}/task`);
    } catch {
      continue;
    }
    for (const task of tasks) {
      let children = '';
      try {
        children = readFileSync(`/proc/${parent}/task/${task}/children`, 'latin1');
      } catch {
        /* the task is gone, or no CONFIG_PROC_CHILDREN */
      }
      for (const word of children.split(' ')) {
        const child = Number(word);
        if (word !== '' && Number.isInteger(child) && !found.includes(child)) {
          found.push(child);
          pending.push(child);
        }
      }
    }
  }
  return found;
}

/**
 * After the new program has exited, how long the READY line it may have
 * written still gets to arrive: its write end of the pipe is closed with
 * it, so this only bounds the wait when a program it started kept fd 3.
 */
const EXIT_DRAIN_MS = 1_000;

function waitReady(child: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const pipe = child.stdio[3] as (NodeJS.ReadableStream & { destroyed?: boolean }) | null;
    let text = '';
    let drain: NodeJS.Timeout | undefined;
    let exited: (() => void) | undefined;
    const timer = setTimeout(() => finish(new HandoverError('NOT_READY', `the new program did not report ready within ${timeoutMs} ms; rolled back`)), timeoutMs);
    // A program that reports ready and exits at once can have its exit handled before its READY
    // line is read from the pipe. It did take over then (what it does afterwards is its own
    // business), so the exit is judged only once the pipe has given up everything it holds.
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      exited = () => finish(new HandoverError('NOT_READY', `the new program exited (${signal ?? `code ${code}`}) before reporting ready; rolled back`));
      if (!pipe || pipe.destroyed) return exited();
      pipe.once('close', exited);
      drain = setTimeout(exited, EXIT_DRAIN_MS);
    };
    const onError = (e: Error) => finish(new HandoverError('EXEC_FAILED', `could not start the new program: ${e.message}`, { cause: e }));
    let settled = false;
    function finish(error?: Error): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(drain);
      child.off('exit', onExit);
      child.off('error', onError);
      pipe?.removeAllListeners('data');
      if (exited) pipe?.off('close', exited);
      if (error) reject(error);
      else resolve();
    }
    child.on('exit', onExit);
    child.on('error', onError);
    pipe?.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.includes('READY\n')) finish();
    });
  });
}

/**
 * The pipe a spawn()ing predecessor waits on for READY, taken out of the environment as pmpool loads:
 * left there until ready(), it would pass to every process this program starts meanwhile, whose own
 * ready() would write READY to whatever its descriptor of that number is.
 */
let readyFd: number | undefined = takeReadyFd();
function takeReadyFd(): number | undefined {
  const value = process.env[READY_FD_ENV];
  if (value === undefined) return undefined;
  delete process.env[READY_FD_ENV];
  const fd = Number(value);
  return Number.isInteger(fd) && fd >= 3 ? fd : undefined;
}

/** Called by the new program once it has restored its state: tells a spawn()ing predecessor to step down. */
export function reportReady(): boolean {
  const fd = readyFd ?? takeReadyFd();
  readyFd = undefined;
  if (fd === undefined) return false;
  try {
    writeSync(fd, 'READY\n');
    closeSync(fd);
    return true;
  } catch {
    return false;
  }
}
