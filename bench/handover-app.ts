/**
 * The ES module program the handover benchmark execs into itself:
 *   node handover-app.js --pmpool=PATH,SIZE --out=FILE --hops=N
 * (handover-hop.ts records the times and execs the next generation).
 *
 * Nothing but pmpool is loaded before `restored`: the window measures what
 * pmpool adds to a program's start, not this program's own bookkeeping.
 */
const main = performance.timeOrigin + performance.now();
const { kexec } = await import('pmpool'); // the package's entry, as a program that uses pmpool loads it
const imported = performance.timeOrigin + performance.now();
const incoming = kexec.incoming();
const pool = kexec.poolFromCommandLine()!;
const restored = performance.timeOrigin + performance.now();

const { finishHop } = await import('./handover-hop.js');
const { fileURLToPath } = await import('node:url');
await finishHop(kexec, incoming, pool, { main, imported, restored }, fileURLToPath(import.meta.url));
