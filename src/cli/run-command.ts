/**
 * `pmpool run [--pool PATH:SIZE] -- CMD ARGS...`: a supervisor for a program
 * that keeps its state in a pool.
 *
 *  - the program gets `--pmpool=PATH,SIZE` (the pool is created on first run);
 *  - SIGHUP is a live upgrade: it is forwarded, and the program (with
 *    kexec.upgradeOnSignal) hands over and execs its new version in place —
 *    same PID, so the supervisor keeps watching the same process; a program
 *    without a SIGHUP handler dies of it, and is started again at once (a
 *    cold upgrade, not a crash: no back-off, and it does not count towards
 *    giving up);
 *  - a crash (a signal, or a non-zero exit) restarts the program after a
 *    short back-off: the next Pool.open repairs whatever it was doing;
 *  - SIGINT/SIGTERM are forwarded, and the supervisor exits with the program's
 *    status: its exit code, or 128 + the signal's number when the signal ended
 *    it (as a shell reports it); stopped between a crash and its restart, with
 *    128 + the number of the signal that stopped it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { constants } from 'node:os';
import { Pool, PoolError, parseSize } from '../index.js';
import { UsageError, type Out } from './usage.js';

const MAX_RESTARTS = 5;

/** The status of a program ended by `signal`, as a shell reports it: 128 + the signal's number. */
function signalStatus(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

const RESTART_WINDOW_MS = 60_000;
/** A death by SIGHUP this soon after the supervisor forwarded one is the program's answer to the upgrade. */
const UPGRADE_ANSWER_MS = 10_000;

export function parseRunArgs(args: string[]): { pool?: { path: string; size: number }; command: string[] } {
  const dashdash = args.indexOf('--');
  if (dashdash < 0 || dashdash === args.length - 1) throw new UsageError('usage: pmpool run [--pool PATH:SIZE] -- CMD ARGS...');
  const own = args.slice(0, dashdash);
  const command = args.slice(dashdash + 1);
  let pool: { path: string; size: number } | undefined;
  for (let i = 0; i < own.length; i++) {
    const a = own[i]!;
    const value = a === '--pool' ? own[++i] : a.startsWith('--pool=') ? a.slice(7) : undefined;
    // main() puts "pmpool run: " before the message; a bare --pool is missing its value, not unknown.
    if (value === undefined) throw new UsageError(a === '--pool' ? '--pool needs PATH:SIZE' : `unknown option ${a}`);
    if (pool !== undefined) throw new UsageError('--pool given twice');
    const colon = value.lastIndexOf(':');
    if (colon <= 0) throw new UsageError(`--pool needs PATH:SIZE, got "${value}"`);
    // The program is handed --pmpool=PATH,SIZE, which takes absolute paths only.
    if (!value.startsWith('/')) throw new UsageError(`--pool needs an absolute PATH, got "${value.slice(0, colon)}"`);
    try {
      pool = { path: value.slice(0, colon), size: parseSize(value.slice(colon + 1)) };
    } catch (e) {
      throw new UsageError(`--pool: ${(e as Error).message}`);
    }
  }
  return { pool, command };
}

/**
 * A file already at PATH must be a pool of SIZE bytes: the program would refuse anything else
 * at every start (NOT_A_POOL, a size mismatch), and the supervisor restart it until it gave up.
 * Refused here, once, with the pool layer's error (exit 1), before any program is started.
 */
function checkExistingPool(path: string, size: number): void {
  const existing = Pool.open(path);
  const actual = existing.pageCount * existing.pageSize;
  existing.close();
  if (actual !== size) throw new PoolError('BAD_ARGUMENT', `--pool ${path}:${size}: the pool there is ${actual} bytes`);
}

export function runCommand(args: string[], _out: Out, err: Out): Promise<number> {
  const { pool, command } = parseRunArgs(args);
  const created = pool !== undefined && !existsSync(pool.path);
  if (created) Pool.create(pool.path, { size: pool.size }).close();
  else if (pool !== undefined) checkExistingPool(pool.path, pool.size);
  const argv = pool ? [...command.slice(1), `--pmpool=${pool.path},${pool.size}`] : command.slice(1);
  const restarts: number[] = [];

  return new Promise((resolve) => {
    let stopping = false;
    /** Set while a restart waits out its back-off: no child is running then. */
    let restartTimer: NodeJS.Timeout | undefined;
    /** When a SIGHUP was last forwarded to the running program (0: none to it). */
    let upgradeAskedAt = 0;
    /** Whether a program was ever started with the pool: from then on its state is there. */
    let ran = false;
    let child: ChildProcess | undefined;
    /** The program could not be started: said once, and the supervisor ends with 1. */
    function cannotStart(e: Error): undefined {
      err(`pmpool run: cannot start ${command[0]}: ${e.message}`);
      // A pool made for a program that never ran is not left behind.
      // A cold start after an upgrade counts no restart: whether one ran is its own question.
      if (created && !ran) rmSync(pool.path, { force: true });
      cleanup();
      resolve(1);
      return undefined;
    }
    function start(): ChildProcess | undefined {
      let c: ChildProcess;
      try {
        c = spawn(command[0]!, argv, { stdio: 'inherit' });
      } catch (e) {
        // Node throws, rather than emit 'error', for most reasons a program cannot be started
        // (ENOTDIR, ENAMETOOLONG, E2BIG, ELOOP...): the same refusal as an ENOENT.
        return cannotStart(e as Error);
      }
      upgradeAskedAt = 0;
      // No pid: the program could not be started (the 'error' below says why). On stderr, as
      // every word of the supervisor's: the program's stdout is its own (JSON, a pipe's data).
      if (c.pid !== undefined) {
        ran = true;
        err(`pmpool run: started ${command[0]} as pid ${c.pid}`);
      }
      c.on('error', (e) => void cannotStart(e));
      c.on('exit', (code, signal) => {
        if (stopping || code === 0) {
          cleanup();
          resolve(code ?? (signal !== null ? signalStatus(signal) : 1));
          return;
        }
        const now = Date.now();
        if (signal === 'SIGHUP' && upgradeAskedAt !== 0 && now - upgradeAskedAt < UPGRADE_ANSWER_MS) {
          // The program has no SIGHUP handler: the upgrade it was asked for is a cold start of the code on disk.
          err(`pmpool run: pid ${c.pid} ended on the upgrade signal (it has no SIGHUP handler); starting ${command[0]} again, cold — the pool recovers on open`);
          child = start();
          return;
        }
        restarts.push(now);
        while (restarts.length && now - restarts[0]! > RESTART_WINDOW_MS) restarts.shift();
        if (restarts.length > MAX_RESTARTS) {
          err(`pmpool run: ${command[0]} failed ${restarts.length} times in a minute; giving up`);
          cleanup();
          resolve(1);
          return;
        }
        err(`pmpool run: pid ${c.pid} ended (${signal ?? `exit ${code}`}); restarting — the pool recovers on open`);
        restartTimer = setTimeout(() => {
          restartTimer = undefined;
          child = start();
        }, 100 * restarts.length);
      });
      return c;
    }
    const forward = (signal: NodeJS.Signals) => () => {
      if (restartTimer !== undefined) {
        // Between a crash and its restart there is no program to tell: a stop stops here,
        // and an upgrade needs nothing — the restart runs the code on disk anyway.
        if (signal === 'SIGHUP') return;
        clearTimeout(restartTimer);
        restartTimer = undefined;
        cleanup();
        resolve(signalStatus(signal));
        return;
      }
      if (signal !== 'SIGHUP') stopping = true;
      else upgradeAskedAt = Date.now();
      child?.kill(signal);
    };
    const handlers: Array<[NodeJS.Signals, () => void]> = (['SIGHUP', 'SIGINT', 'SIGTERM'] as const).map((s) => [s, forward(s)]);
    for (const [s, h] of handlers) process.on(s, h);
    // Started once the handlers are in place: a start that fails at once removes them.
    child = start();
    function cleanup() {
      for (const [s, h] of handlers) process.off(s, h);
    }
  });
}
