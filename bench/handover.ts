/**
 * Handover downtime: from the kexec.exec() call to the next program's
 * Pool.restore done, next to a bare `node -e 0` start measured in the same
 * run, for a 1 GiB and a 64 GiB (sparse) pool.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const APP = fileURLToPath(new URL('./handover-app.js', import.meta.url));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function bareNodeStartMs(runs: number): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    spawnSync(process.execPath, ['-e', '0']);
    times.push(performance.now() - t);
  }
  return median(times);
}

interface Downtime {
  /** exec() call → the next process starts (its time origin). */
  start: number;
  /** → its main module runs (Node's bootstrap). */
  running: number;
  /** → pmpool imported (module loading). */
  imported: number;
  /** → kexec.incoming() and Pool.restore done: the whole downtime. */
  restored: number;
}

function downtime(size: string, hops: number): Downtime {
  const dir = mkdtempSync(join(tmpdir(), 'pmpool-bench-'));
  const pool = `/dev/shm/pmpool-bench-handover-${process.pid}-${size}`;
  try {
    const out = join(dir, 'times');
    const r = spawnSync(process.execPath, [APP, `--pmpool=${pool},${size}`, `--out=${out}`, `--hops=${hops}`], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`handover app failed: ${r.stderr}`);
    const rows = readFileSync(out, 'utf8').trim().split('\n').map((l) => l.split(' ').map(Number));
    const column = (i: number) => median(rows.map((row) => row[i]!));
    return { start: column(0), running: column(1), imported: column(2), restored: column(3) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(pool, { force: true });
  }
}

export async function benchHandover(): Promise<Record<string, number>> {
  const hops = 15;
  bareNodeStartMs(3); // warm the page cache
  const bare = bareNodeStartMs(15);
  const small = downtime('1G', hops);
  const large = downtime('64G', hops);
  const bare2 = bareNodeStartMs(15);
  const baseline = Math.min(bare, bare2);
  return {
    bareNodeStartMs: baseline,
    handover1GiBMs: small.restored,
    handover64GiBMs: large.restored,
    overhead1GiBMs: small.restored - baseline,
    overhead64GiBMs: large.restored - baseline,
    ratio64to1: large.restored / small.restored,
    // Where the downtime goes (1 GiB): up to the new process's start, loading pmpool, pmpool's own restore.
    execToStartMs: small.start,
    nodeBootstrapMs: small.running - small.start,
    importMs: small.imported - small.running,
    incomingAndRestore1GiBMs: small.restored - small.imported,
    incomingAndRestore64GiBMs: large.restored - large.imported,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await benchHandover();
  console.log('handover downtime (exec() call → Pool.restore done), median of 15 hops, next to a bare node start');
  console.log(`  bare \`node -e 0\` start     ${r.bareNodeStartMs!.toFixed(2)} ms`);
  console.log(`  1 GiB pool                  ${r.handover1GiBMs!.toFixed(2)} ms  (+${r.overhead1GiBMs!.toFixed(2)} ms over bare node)`);
  console.log(`  64 GiB pool                 ${r.handover64GiBMs!.toFixed(2)} ms  (+${r.overhead64GiBMs!.toFixed(2)} ms over bare node)`);
  console.log(`  64 GiB / 1 GiB              ${r.ratio64to1!.toFixed(3)}`);
  console.log('where it goes (1 GiB, median):');
  console.log(`  exec() → new process starts ${r.execToStartMs!.toFixed(2)} ms (handover built, blob written, execve)`);
  console.log(`  Node's bootstrap            ${r.nodeBootstrapMs!.toFixed(2)} ms (until the main module runs)`);
  console.log(`  loading pmpool's modules    ${r.importMs!.toFixed(2)} ms`);
  console.log(`  kexec.incoming + restore    ${r.incomingAndRestore1GiBMs!.toFixed(2)} ms (64 GiB: ${r.incomingAndRestore64GiBMs!.toFixed(2)} ms)`);
  console.log(JSON.stringify({ bench: 'handover', ...r }));
}
