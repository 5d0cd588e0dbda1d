/**
 * The part of a handover-bench hop after its measured window, shared by the
 * ES module program (handover-app.ts) and the CommonJS one
 * (handover-app-cjs.cts): record this hop's times, then exec the next
 * generation of the same program.
 *
 * Each generation appends one line to --out=FILE: the times (ms) from the
 * predecessor's exec() call to (1) this process's start (Node's time
 * origin), (2) its main module running, (3) pmpool loaded, (4) Pool.restore
 * done, and (5), in a program that keeps clients, its PersistentMap and
 * LogRing open again. All are read on one clock, performance.timeOrigin +
 * performance.now(), which crosses the exec.
 */
import { appendFileSync } from 'node:fs';
import type { kexec as Kexec, Handover, Pool, Teardown } from '../src/index.js';

export const now = (): number => performance.timeOrigin + performance.now();

export interface HopMarks {
  main: number;
  imported: number;
  restored: number;
  /** When the program's clients were open again (a program that keeps some; see --clients). */
  clientsOpened?: number;
  /** What the program does last before it hands over (closes its clients). */
  beforeExec?: () => void;
}

export async function finishHop(kexec: typeof Kexec, incoming: Handover | null, pool: Pool, marks: HopMarks, self: string): Promise<void> {
  const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const hops = Number(arg('hops') ?? '10');
  const t0 = Number(process.env.PMPOOL_BENCH_EXEC_AT);
  const clients = marks.clientsOpened === undefined ? '' : ` ${marks.clientsOpened - t0}`;
  if (incoming) appendFileSync(arg('out')!, `${performance.timeOrigin - t0} ${marks.main - t0} ${marks.imported - t0} ${marks.restored - t0}${clients}\n`);
  if ((incoming ? Number(incoming.generation) : 0) < hops) {
    // Node's options too, as a program that upgrades itself passes them on (kexec.upgradeOnSignal).
    const args = [...process.execArgv, self, ...process.argv.slice(2).filter((a) => !a.startsWith('--pmpool-fdt='))];
    process.env.PMPOOL_BENCH_EXEC_AT = String(now()); // the program stops serving here: closing its clients counts
    marks.beforeExec?.();
    const teardown = arg('teardown') as Teardown | undefined;
    await kexec.exec(process.execPath, args, { env: process.env, ...(teardown && { teardown }) });
  }
  pool.close();
}
