/**
 * The program the handover benchmark execs into itself.
 *   node handover-app.js --pmpool=PATH,SIZE --out=FILE --hops=N
 * Each generation appends one line to FILE: the times (ms) from the
 * predecessor's exec() call to (1) this process's start (Node's time origin),
 * (2) pmpool imported, (3) Pool.restore done. All are read on one clock,
 * performance.timeOrigin + performance.now(), which crosses the exec.
 */
// Nothing but pmpool is loaded before `restored`: the window measures what pmpool adds to a
// program's start, not this program's own bookkeeping (node:fs and node:url come after it).
const now = () => performance.timeOrigin + performance.now();
const beforeImport = now();
const { kexec } = await import('pmpool'); // the package's own entry, as a program that uses pmpool loads it
const imported = now();
const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const out = arg('out')!;
const hops = Number(arg('hops') ?? '10');

const incoming = kexec.incoming();
const pool = kexec.poolFromCommandLine()!;
const restored = now();
const { appendFileSync } = await import('node:fs');
const { fileURLToPath } = await import('node:url');
const generation = incoming ? Number(incoming.generation) : 0;
const t0 = Number(process.env.PMPOOL_BENCH_EXEC_AT);
if (incoming) {
  appendFileSync(out, `${performance.timeOrigin - t0} ${beforeImport - t0} ${imported - t0} ${restored - t0}\n`);
}
if (generation < hops) {
  const self = fileURLToPath(import.meta.url);
  const args = [self, ...process.argv.slice(2).filter((a) => !a.startsWith('--pmpool-fdt='))];
  process.env.PMPOOL_BENCH_EXEC_AT = String(now());
  await kexec.exec(process.execPath, args, { env: process.env });
}
pool.close();
