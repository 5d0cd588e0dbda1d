/**
 * Checks of the options the kexec API takes: a wrong type is a
 * HandoverError BAD_ARGUMENT before anything is quiesced or written.
 */
import { checkBooleanOption, checkFunctionOption, checkMillisOption, checkOptions, checkStringOption, describeValue } from '../util/options.js';
import { HandoverError } from './errors.js';
import type { ExecOptions, ReplaceOptions, SpawnOptions, Teardown } from './exec.js';
import type { AbortHook } from './handover.js';

const badArgument = (message: string): HandoverError => new HandoverError('BAD_ARGUMENT', message);

/** An options object of the kexec API (`undefined` reads as `{}`). */
export function handoverOptions<T extends object>(value: T | undefined, what: string): T {
  return checkOptions(value, what, badArgument);
}

export function checkPrepareOptions(value: { from?: string } | undefined, what: string): { from?: string } {
  const options = handoverOptions(value, what);
  checkStringOption(options.from, 'from', badArgument);
  return options;
}

export function checkOnHandoverOptions(value: { onAbort?: AbortHook } | undefined): { onAbort?: AbortHook } {
  const options = handoverOptions(value, 'onHandover options');
  checkFunctionOption(options.onAbort, 'onAbort', badArgument);
  return options;
}

export function checkReplaceOptions(value: ReplaceOptions | undefined, what: string): ReplaceOptions {
  const options = checkPrepareOptions(value, what) as ReplaceOptions;
  const env = options.env;
  if (env !== undefined && (env === null || typeof env !== 'object' || Array.isArray(env))) {
    throw badArgument(`env must be an object of environment variables, got ${describeValue(env)}`);
  }
  // Passed to execve as C strings "NAME=value": a NUL would cut the variable short at it.
  const cut = env && Object.entries(env).find(([name, value]) => name.includes('\0') || (typeof value === 'string' && value.includes('\0')));
  if (cut) throw badArgument(`env variable ${JSON.stringify(cut[0])} contains a NUL byte`);
  const blobDir = checkStringOption(options.blobDir, 'blobDir', badArgument);
  if (blobDir === '') throw badArgument('blobDir must be a directory, got ""');
  checkBooleanOption(options.passFlag, 'passFlag', badArgument);
  return options;
}

/** Each teardown exec() takes, as execve's argument (native/pmpool.c): the one list of them. */
export const TEARDOWN_MODE: Readonly<Record<Teardown, number>> = { inline: 0, auto: 1, background: 2 };

export function checkExecOptions(value: ExecOptions | undefined, what: string): ExecOptions {
  const options = checkReplaceOptions(value, what) as ExecOptions;
  if (options.teardown !== undefined && !Object.hasOwn(TEARDOWN_MODE, options.teardown)) {
    throw badArgument(`teardown must be "auto", "background" or "inline", got ${describeValue(options.teardown)}`);
  }
  checkMillisOption(options.stdioTimeoutMs, 'stdioTimeoutMs', badArgument);
  return options;
}

const STDIO = ['inherit', 'ignore', 'pipe'];

export function checkSpawnOptions(value: SpawnOptions | undefined): SpawnOptions {
  const options = checkReplaceOptions(value, 'spawn options') as SpawnOptions;
  checkMillisOption(options.readyTimeoutMs, 'readyTimeoutMs', badArgument);
  if (options.stdio !== undefined && !STDIO.includes(options.stdio)) {
    throw badArgument(`stdio must be "inherit", "ignore" or "pipe", got ${describeValue(options.stdio)}`);
  }
  return options;
}

/** A command line to read flags from: an array of strings (process.argv by default). */
export function checkArgv(argv: unknown, what: string): readonly string[] {
  if (argv === undefined) return process.argv;
  if (!Array.isArray(argv) || !argv.every((a) => typeof a === 'string')) {
    throw badArgument(`${what} needs argv as an array of strings, got ${describeValue(argv)}`);
  }
  return argv;
}
