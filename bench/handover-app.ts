/**
 * The program the handover benchmark execs into itself.
 *   node handover-app.js --pmpool=PATH,SIZE --out=FILE --hops=N
 * Each generation appends `restore-done-time - exec-call-time` (ms) to FILE,
 * then hands over again, until N hops are done. Both times are
 * performance.timeOrigin + performance.now(): one clock across the exec.
 */
import { appendFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { kexec } from '../src/index.js';

const now = () => performance.timeOrigin + performance.now();
const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const out = arg('out')!;
const hops = Number(arg('hops') ?? '10');

const pool = kexec.poolFromCommandLine()!;
const restored = now();
const incoming = kexec.incoming();
const generation = incoming ? Number(incoming.generation) : 0;
const t0 = Number(process.env.PMPOOL_BENCH_EXEC_AT);
if (incoming) appendFileSync(out, `${restored - t0}\n`);
if (generation < hops) {
  const self = fileURLToPath(import.meta.url);
  const args = [self, ...process.argv.slice(2).filter((a) => !a.startsWith('--pmpool-fdt='))];
  process.env.PMPOOL_BENCH_EXEC_AT = String(now());
  await kexec.exec(process.execPath, args, { env: process.env });
}
pool.close();
