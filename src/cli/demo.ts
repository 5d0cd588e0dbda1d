/**
 * `pmpool demo`: the main job, told in four steps — a pool surviving a real
 * process replacement (execve in place, same PID) and then a real SIGKILL.
 * It runs demo-app.ts as a child, a program of its own (demo-app-main.ts), and
 * narrates what the child reports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseSize, Pool } from '../index.js';
import { integer, UsageError, type Out } from './usage.js';

type Line = Record<string, unknown> & { stage: string; pid: number };

const POOL_SIZE = '256M';

/** The signals that stop the demo: Ctrl-C, kill, a terminal that goes away. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function readReport(file: string): Line[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Line);
}

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** How a life of the service ended, in words: its exit status, or the signal that killed it. */
function howItEnded({ code, signal }: Ended): string {
  if (signal === null) return `exit ${code}`;
  if (signal !== 'SIGBUS') return `killed by ${signal}`;
  // The kernel's answer to a store into a page of a MAP_SHARED file that it cannot back: on a
  // sparse /dev/shm pool, the tmpfs has run out of space (the pool's size was never reserved).
  let free = '';
  try {
    const fs = statfsSync('/dev/shm');
    free = ` (${((fs.bavail * fs.bsize) / 2 ** 20).toFixed(1)} MiB free there now)`;
  } catch {
    /* no /dev/shm to ask */
  }
  return `killed by SIGBUS: a page of the pool could not be backed; is /dev/shm full?${free}`;
}

function ms(x: unknown): string {
  return `${Number(x).toFixed(2)} ms`;
}

function n(x: unknown): string {
  return Number(x).toLocaleString('en-US');
}

export async function demoCommand(args: string[], out: Out, err: Out): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args, options: { keep: { type: 'boolean' }, entries: { type: 'string' } }, strict: true }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const entries = integer(values.entries, '--entries') ?? 100_000;
  if (entries < 1 || entries > 2_000_000) throw new UsageError('--entries must be 1..2000000');

  const app = fileURLToPath(new URL('./demo-app-main.js', import.meta.url));
  // A name of the pid alone could already be taken (by anyone: /dev/shm is shared), and the
  // service would open what is there and the clean-up remove it. The random part makes the name
  // this demo's, and the pool is created here, exclusively (O_EXCL), before any service starts:
  // the service opens this demo's pool, and the clean-up removes only a pool this demo made.
  const pool = `/dev/shm/pmpool-demo-${process.pid}-${randomBytes(6).toString('hex')}`;
  let poolMade = false;
  let dir: string | undefined;

  const cleanup = () => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    if (poolMade && !values.keep) rmSync(pool, { force: true });
  };
  // Stopped midway, the demo takes its service with it: the service serves writes until it is
  // killed, and would go on for ever, orphaned, its pool kept alive in /dev/shm.
  let service: ChildProcess | undefined;
  const interrupted = (signal: NodeJS.Signals) => {
    for (const s of STOP_SIGNALS) process.off(s, interrupted);
    // The files go once the service is dead (one still starting could create the pool again);
    // then the demo ends as the signal would have ended it.
    const end = () => {
      cleanup();
      process.kill(process.pid, signal);
    };
    if (service !== undefined && service.exitCode === null && service.signalCode === null) {
      service.once('exit', end);
      service.kill('SIGKILL');
    } else end();
  };
  for (const s of STOP_SIGNALS) process.on(s, interrupted);

  dir = mkdtempSync(join(tmpdir(), 'pmpool-demo-'));
  const report = join(dir, 'report.jsonl');
  // The service is told the pool's size as the flag says it, and opens the pool made here with it.
  // --lifeline: the service stops when this demo is gone, and removes what the demo would have at
  // its end — the directory, and the pool unless it is to be kept (a demo killed by SIGKILL cannot).
  const lifeline = values.keep ? `--lifeline=${dir}` : `--lifeline=${dir},${pool}`;
  const appArgs = [app, `--pmpool=${pool},${POOL_SIZE}`, `--report=${report}`, `--entries=${entries}`, lifeline];
  try {
    Pool.create(pool, { size: parseSize(POOL_SIZE) }).close();
    poolMade = true;
  } catch (e) {
    for (const s of STOP_SIGNALS) process.off(s, interrupted);
    cleanup();
    throw e;
  }

  /**
   * Starts one life of the service. Each runs as a child the stop signals above can reach: one
   * run synchronously would hold the demo's event loop, and a stop would wait for its end.
   */
  const startService = () => {
    // Its stdin is a pipe whose other end only this demo holds, never written to: the service's
    // lifeline (--lifeline). A demo killed by SIGKILL runs no handler, but its end of the pipe is
    // closed all the same, and the service, reading end of file, stops; the pipe is the service's
    // fd 0, which outlives its execve in place.
    const child = spawn(process.execPath, appArgs, { stdio: ['pipe', 'inherit', 'inherit'] });
    service = child;
    const exited = new Promise<Ended>((resolve) =>
      child.on('exit', (code, signal) => {
        child.stdin?.destroy();
        resolve({ code, signal });
      }),
    );
    return { child, exited };
  };

  out('pmpool demo — a pool that outlives the program that made it');
  out(`  pool: ${pool}, ${POOL_SIZE} (a sparse /dev/shm file; only touched pages cost memory)`);
  try {
    // Lives 1 and 2: v1 fills the map and execs itself; v2 restores and serves until killed.
    const { child, exited } = startService();
    let v1: Line | undefined;
    let v2: Line | undefined;
    let serving: Line | undefined;
    const deadline = Date.now() + 120_000;
    // Until the service ends, by an exit or by a signal (which leaves exitCode null).
    while (!serving && Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
      await new Promise((r) => setTimeout(r, 20));
      const lines = readReport(report);
      v1 ??= lines.find((l) => l.stage === 'v1');
      v2 ??= lines.find((l) => l.stage === 'v2');
      serving = lines.filter((l) => l.stage === 'v2-serving')[1];
    }
    if (!v1 || !v2 || !serving) {
      child.kill('SIGKILL');
      err(`pmpool demo: the service did not get through its upgrade (${howItEnded(await exited)}); report: ${JSON.stringify(readReport(report))}`);
      return 1;
    }
    out(`[1] pid ${v1.pid}, cold start on the new, empty pool: PersistentMap "visits" filled with ${n(v1.entries)} entries in ${ms(v1.writeMs)}`);
    out(`[2] pid ${v2.pid} replaced itself in place (execve — ${v1.pid === v2.pid ? 'same PID' : 'NEW PID?!'}), handing over generation ${v2.generation} as an FDT blob`);
    out(`    Pool.restore ${ms(v2.restoreMs)}, PersistentMap + LogRing open ${ms(v2.openMs)}: ${n(v2.intact)} of ${n(entries)} entries intact, not a byte copied`);

    // The crash: SIGKILL in the middle of a stream of writes.
    child.kill('SIGKILL');
    await exited;
    const last = readReport(report).filter((l) => l.stage === 'v2-serving').pop()!;
    out(`[3] SIGKILL to pid ${v2.pid} while it was rewriting entries (${n(last.updates)}+ updates done, more in flight)`);

    // Life 3: a cold start on what the crash left.
    const restarted = startService();
    const hung = setTimeout(() => restarted.child.kill('SIGKILL'), 120_000);
    const ended = await restarted.exited;
    clearTimeout(hung);
    const v3 = readReport(report).find((l) => l.stage === 'v3');
    if (!v3) {
      err(`pmpool demo: the restarted service reported nothing (${howItEnded(ended)})`);
      return 1;
    }
    out(`[4] pid ${v3.pid}, cold start after the crash: Pool.open ${ms(v3.restoreMs)}${Number(v3.recovered) > 0 ? ' (repaired an interrupted operation)' : ''}`);
    out(`    ${n(v3.valid)} of ${n(entries)} entries valid — each the old or the new value, ${n(v3.garbage)} garbage; ${n(v3.newer)} carry v2's updates`);
    // v2 logs each LOG_EVERY-th update before it reports it: the last update the demo read of
    // before the kill must be in the ring (the service checked the rest of it, record by record).
    const logProblems = [...((v3.logProblems as string[] | undefined) ?? ['no log check reported'])];
    const lastLogged = /^v2 update (\d+)$/.exec(String(v3.lastLog));
    if (!lastLogged || Number(lastLogged[1]) < Number(last.updates)) logProblems.push(`the last record is ${JSON.stringify(v3.lastLog)}, before update ${last.updates}`);
    out(
      `    LogRing "events": ${n(v3.logRecords)} records survived in order; last: "${String(v3.lastLog)}"` +
        (logProblems.length > 0 ? `; PROBLEMS ${JSON.stringify(logProblems)}` : ''),
    );
    out(`    map check: ${v3.mapCheck ? 'clean' : `PROBLEMS ${JSON.stringify(v3.mapProblems)}`}; pool check: ${v3.poolCheck ? 'clean' : `PROBLEMS ${JSON.stringify(v3.problems)}`}`);
    // Each figure printed above that can go wrong is part of the verdict (the service's exit
    // status says so too, but a line read here is not taken on trust from elsewhere).
    const ok =
      ended.code === 0 &&
      v1.pid === v2.pid &&
      v2.intact === entries &&
      v3.garbage === 0 &&
      v3.valid === entries &&
      v3.size === entries &&
      logProblems.length === 0 &&
      v3.mapCheck === true &&
      v3.poolCheck === true;
    out(ok ? 'pmpool demo: ok' : 'pmpool demo: FAILED');
    if (values.keep) out(`  kept ${pool}: try \`pmpool info ${pool}\`, \`pmpool map ${pool}\`, \`pmpool check ${pool}\``);
    return ok ? 0 : 1;
  } finally {
    for (const s of STOP_SIGNALS) process.off(s, interrupted);
    cleanup();
  }
}
