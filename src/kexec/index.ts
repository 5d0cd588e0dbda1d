/**
 * kexec for a process: hand the pools and every client's state to the next
 * program through an FDT blob. `kexec` is the front door (DESIGN.md §6).
 */
import type { Pool } from '../pool/index.js';
import { checkExecOptions } from './arguments.js';
import { DEFAULT_POOL_NAME } from './binding.js';
import { execInPlace, reportReady, spawnNext, type ExecOptions, type ReplaceOptions, type SpawnOptions, type SpawnResult, type Teardown } from './exec.js';
import { HandoverRegistry, type AbortHook, type Handover, type HandoverCallback, type PreparedHandover } from './handover.js';
import { installRestoreHook, parsePoolFlag, poolFromCommandLine, restoreAll } from './restore.js';

const registry = new HandoverRegistry();
installRestoreHook(registry);

export const kexec = {
  /** The handover this program received, or null on a cold start. */
  incoming: (): Handover | null => registry.incoming(),
  /** Registers a callback that writes this client's node into the outgoing tree. Returns an unregister function. */
  onHandover: (name: string, callback: HandoverCallback, options?: { onAbort?: AbortHook }): (() => void) =>
    registry.onHandover(name, callback, options),
  /** Makes a pool part of the handover as /pools/<name> (default "default_pmpool"). */
  addPool: (pool: Pool, name: string = DEFAULT_POOL_NAME): (() => void) => registry.addPool(pool, name),
  /** Replaces this program in place (same PID). */
  exec: (file: string, args?: string[], options?: ExecOptions): Promise<never> => execInPlace(registry, file, args, options),
  /** Starts the next program as a new process; resolves when it reports ready. */
  spawn: (file: string, args?: string[], options?: SpawnOptions): Promise<SpawnResult> => spawnNext(registry, file, args, options),
  /** In the new program: tells a spawn()ing predecessor that this one is up. */
  ready: (): boolean => reportReady(),
  /** Builds the outgoing handover without replacing the program (inspection, tests); abort() undoes it. */
  prepare: (options?: { from?: string }): PreparedHandover => registry.prepare(options),
  /** `--pmpool=PATH,SIZE`: the pool restored, opened or created. */
  poolFromCommandLine: (argv?: readonly string[], name?: string): Pool | undefined => poolFromCommandLine(registry, argv, name),
  /** Restores every pool of a handover. */
  restoreAll: (handover: Handover): Map<string, Pool> => restoreAll(registry, handover),
  parsePoolFlag,
  /**
   * Live upgrade on a signal (SIGHUP by default, as `pmpool run` forwards
   * it): hand over and exec this program's entry script again, in place —
   * the new code on disk is the new version.
   */
  upgradeOnSignal: (signal: NodeJS.Signals = 'SIGHUP', options?: ExecOptions): (() => void) => {
    // Checked now: at the signal, a bad option could only be reported on stderr.
    options = checkExecOptions(options, 'upgradeOnSignal options');
    const handler = () => {
      const programArgs = process.argv.slice(1).filter((a) => !a.startsWith('--pmpool-fdt='));
      // A program given by -e or -p has no script among its arguments: without `--` the next Node
      // would read them (--pmpool=PATH,SIZE first) as options of its own, and refuse to start.
      const evaluated = process.execArgv.some((a) => /^(-e|--eval|-p|--print|-pe)(=|$)/.test(a));
      const args = [...process.execArgv, ...(evaluated ? ['--'] : []), ...programArgs];
      execInPlace(registry, process.execPath, args, options).catch((e: Error) => {
        process.stderr.write(`pmpool: live upgrade refused, still running the old version: ${e.message}\n`);
      });
    };
    process.on(signal, handler);
    return () => void process.off(signal, handler);
  },
};

export { HandoverError } from './errors.js';
export type { HandoverErrorCode } from './errors.js';
export type { Handover, HandoverCallback, AbortHook, PreparedHandover, ExecOptions, ReplaceOptions, SpawnOptions, SpawnResult, Teardown };
export { ROOT_COMPATIBLE, POOL_COMPATIBLE, DEFAULT_POOL_NAME, readPoolNode, writePoolNode } from './binding.js';
export type { PoolNode } from './binding.js';
export { readBlob, writeBlob, MAX_BLOB_BYTES } from './blob.js';
