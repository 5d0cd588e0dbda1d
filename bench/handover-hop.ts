/**
 * The part of a handover-bench hop after its measured window, shared by the
 * ES module program (handover-app.ts) and the CommonJS one
 * (handover-app-cjs.cts): record this hop's times, then exec the next
 * generation of the same program.
 *
 * Each generation appends one line to --out=FILE: the times (ms) from the
 * predecessor's exec() call to (1) this process's start (Node's time
 * origin), (2) its main module running, (3) pmpool loaded, (4) Pool.restore
 * done. All are read on one clock, performance.timeOrigin +
 * performance.now(), which crosses the exec.
 */
import { appendFileSync } from 'node:fs';
import type { kexec as Kexec, Handover, Pool } from '../src/index.js';

export const now = (): number => performance.timeOrigin + performance.now();

export interface HopMarks {
  main: number;
  imported: number;
  restored: number;
}

export async function finishHop(kexec: typeof Kexec, incoming: Handover | null, pool: Pool, marks: HopMarks, self: string): Promise<void> {
  const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const hops = Number(arg('hops') ?? '10');
  const t0 = Number(process.env.PMPOOL_BENCH_EXEC_AT);
  if (incoming) appendFileSync(arg('out')!, `${performance.timeOrigin - t0} ${marks.main - t0} ${marks.imported - t0} ${marks.restored - t0}\n`);
  if ((incoming ? Number(incoming.generation) : 0) < hops) {
    const args = [self, ...process.argv.slice(2).filter((a) => !a.startsWith('--pmpool-fdt='))];
    process.env.PMPOOL_BENCH_EXEC_AT = String(now());
    await kexec.exec(process.execPath, args, { env: process.env });
  }
  pool.close();
}
