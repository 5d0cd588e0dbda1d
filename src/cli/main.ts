#!/usr/bin/env node
/**
 * The `pmpool` command (DESIGN.md §6). Exit 0 on success, 1 on a finding or
 * a refused operation, 2 on bad usage.
 */
import '../sys/node-version.js'; // first: on a Node without process.getBuiltinModule, a clear error before anything needs it
import { fdtCommand } from './fdt-command.js';
import { NativeAddonError } from '../sys/addon-error.js';
import { describeError, POOL_USAGE, UsageError, type Out } from './usage.js';

const USAGE = `pmpool — a persistent memory pool for Node.js

${POOL_USAGE}
       pmpool fdt dump FILE.dtb | fdt check FILE.dtb [--json] [--lint] | fdt pack IN.dtb OUT.dtb [--free-space BYTES]
       pmpool log dump PATH NAME [--json]
       pmpool run [--pool PATH:SIZE] -- CMD ARGS...
       pmpool demo [--keep] [--entries N]
       pmpool code-cache record [-- NODE_OPTIONS...] | code-cache status [--json] [-- NODE_OPTIONS...]

SIZE takes K, M, G, T suffixes (powers of 1024).
A lone -- ends the options: every word after it is an operand, even one that
starts with "-" (pmpool log dump PATH -- -name); for run, it starts CMD.`;

type Command = (args: string[], out: Out, err: Out) => number | Promise<number>;

async function lazy(module: string, name: string): Promise<Command> {
  const m = (await import(module)) as Record<string, Command>;
  return m[name]!;
}

// The commands that use pools load them (and the native addon) when they run: the usage and
// the fdt commands need neither, and work where the addon cannot be loaded.
const commands: Record<string, () => Command | Promise<Command>> = {
  create: () => lazy('./pool-commands.js', 'createCommand'),
  info: () => lazy('./pool-commands.js', 'infoCommand'),
  map: () => lazy('./pool-commands.js', 'mapCommand'),
  check: () => lazy('./pool-commands.js', 'checkCommand'),
  alloc: () => lazy('./pool-commands.js', 'allocCommand'),
  release: () => lazy('./pool-commands.js', 'releaseCommand'),
  fdt: () => fdtCommand,
  run: () => lazy('./run-command.js', 'runCommand'),
  log: () => lazy('./log-command.js', 'logCommand'),
  demo: () => lazy('./demo.js', 'demoCommand'),
  'code-cache': () => lazy('./code-cache-command.js', 'codeCacheCommand'),
};

export async function main(argv: string[]): Promise<number> {
  const out: Out = (s) => process.stdout.write(s + '\n');
  const err: Out = (s) => process.stderr.write(s + '\n');
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? err : out)(USAGE);
    return name === undefined ? 2 : 0;
  }
  const factory = commands[name];
  if (!factory) {
    err(`pmpool: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  // `pmpool CMD --help` (or -h) is the usage, as `pmpool --help` is: on stdout, exit 0.
  // For `run`, only its own options count: what follows `--` belongs to the program.
  const dashdash = args.indexOf('--');
  if ((dashdash < 0 ? args : args.slice(0, dashdash)).some((a) => a === '--help' || a === '-h')) {
    out(USAGE);
    return 0;
  }
  try {
    return await (await factory())(args, out, err);
  } catch (e) {
    if (e instanceof UsageError) {
      err(`pmpool ${name}: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    // The addon missing or unusable here is the installation's state, not a bug of this command: its message says how to mend it.
    if (e instanceof NativeAddonError) {
      err(`pmpool ${name}: ${e.message}`);
      return 1;
    }
    const known = describeError(e);
    if (known !== null) {
      err(`pmpool ${name}: ${known}`);
      return 1;
    }
    throw e;
  }
}

// Output that cannot be written (stdout on a full disk) is a message and exit 1, not a stack
// trace; a reader that went away early (pmpool map | head) is no failure at all.
let outputFailed = false;
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE' || outputFailed) return;
  outputFailed = true;
  process.stderr.write(`pmpool: cannot write the output: ${e.message}\n`);
  if (!process.exitCode) process.exitCode = 1;
});
process.stderr.on('error', () => {});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = outputFailed && code === 0 ? 1 : code;
  },
  (e: unknown) => {
    process.stderr.write(`pmpool: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 70;
  },
);
