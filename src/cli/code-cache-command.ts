/**
 * `pmpool code-cache record [-- OPTIONS...]` and
 * `pmpool code-cache status [--json] [-- OPTIONS...]`: the V8 code cache
 * the package loads with (src/entry/bundle-loader.ts), for programs that run
 * with the Node options given, or with none.
 *
 * V8 refuses a cache recorded under other V8 flags, and a program's Node
 * options set them: `node --max-old-space-size=4096 server.js` would compile
 * the bundle at every start, a few milliseconds more of every handover's
 * downtime. `record -- --max-old-space-size=4096` records a cache for it,
 * beside the bundle (the installation must be writable); `status` loads the
 * bundle as such a program would and says whether a cache is used, and if
 * not, why. OPTIONS are the program's options as it is started
 * (NODE_OPTIONS and the command line alike), without the program itself.
 *
 * Exit 0 when recorded / used, 1 when not, 2 on bad usage.
 */
import { spawnSync } from 'node:child_process';
import { formatNodeOptions } from '../entry/node-options.js';
import { BUNDLE, childEnv, notProgramOptions, recordCacheUntil, UnrecordableOptionsError, WARM } from '../../tools/record-cache.js';
import { UsageError, type Out } from './usage.js';

interface Status {
  cache: 'accepted' | 'rejected' | 'absent' | 'bypassed';
  cachePath: string | null;
  problem: string | null;
}

/** The signals that stop a recording: Ctrl-C, kill, a terminal that goes away. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Records, stopped by any of STOP_SIGNALS: the signal is noted, the recording removes what it made
 * (a 64 MiB pool, a blob, a cache file not yet in place), and then the signal ends this process as
 * it would have without a handler (status 128 + its number). Left to its default, it ended the
 * process at once, and the files stayed.
 */
async function record(options: string[], under: string, out: Out, err: Out): Promise<number> {
  const stop = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    stoppedBy ??= signal;
    stop.abort(new Error(`stopped by ${signal}`));
  };
  for (const s of STOP_SIGNALS) process.on(s, onSignal);
  try {
    const path = await recordCacheUntil(stop.signal, BUNDLE, options);
    if (stoppedBy === undefined) out(`recorded ${path} for ${under}`);
    return 0;
  } catch (e) {
    // The options are checked first of all (unrecordableOptions): a refusal of them is bad usage.
    if (e instanceof UnrecordableOptionsError) throw new UsageError(e.message);
    if (stoppedBy === undefined) err(`pmpool code-cache: no cache recorded for ${under}: ${(e as Error).message}`);
    return 1;
  } finally {
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
    if (stoppedBy !== undefined) process.kill(process.pid, stoppedBy);
  }
}

export function codeCacheCommand(args: string[], out: Out, err: Out): number | Promise<number> {
  const [sub, ...rest] = args;
  const dashdash = rest.indexOf('--');
  const flags = dashdash < 0 ? rest : rest.slice(0, dashdash);
  const options = dashdash < 0 ? [] : rest.slice(dashdash + 1);
  if (sub !== 'record' && sub !== 'status') throw new UsageError(sub === undefined ? 'code-cache needs record or status' : `unknown code-cache subcommand "${sub}"`);
  const allowed = sub === 'status' ? ['--json'] : [];
  const unknown = flags.find((f) => !allowed.includes(f));
  if (unknown !== undefined) throw new UsageError(unknown.startsWith('-') ? `unknown option ${unknown}` : `unexpected "${unknown}": the Node options go after --`);
  const under = options.length === 0 ? 'programs run without Node options' : `programs run with ${formatNodeOptions(options)}`;

  if (sub === 'record') return record(options, under, out, err);

  const problem = notProgramOptions(options);
  if (problem !== undefined) throw new UsageError(problem);

  const child = spawnSync(process.execPath, [...options, WARM, `--bundle=${BUNDLE}`, '--phase=check'], { encoding: 'utf8', env: childEnv() });
  if (child.status !== 0) {
    err(`pmpool code-cache: node ${formatNodeOptions(options)} could not load the bundle (${child.signal ?? `exit ${child.status}`}): ${child.stderr.trim()}`);
    return 1;
  }
  const status = JSON.parse(child.stdout.trim().split('\n').pop()!) as Status;
  if (flags.includes('--json')) {
    out(JSON.stringify({ ...status, options }));
  } else if (status.cache === 'accepted') {
    out(`accepted: ${status.cachePath} is used by ${under}`);
  } else if (status.cache === 'absent') {
    out(`absent: no code cache at ${status.cachePath} for ${under}; \`pmpool code-cache record${options.length > 0 ? ` -- ${formatNodeOptions(options)}` : ''}\` records one`);
  } else if (status.cache === 'bypassed') {
    out(`bypassed: ${under} load the bundle without a code cache (--enable-source-maps)`);
  } else {
    out(`rejected: ${status.cachePath}: ${status.problem}`);
  }
  return status.cache === 'accepted' ? 0 : 1;
}
