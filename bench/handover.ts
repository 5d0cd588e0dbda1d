/**
 * Handover downtime: from the kexec.exec() call to the next program's
 * Pool.restore done, next to a bare `node -e` start measured in the same
 * run (the baseline), for a 1 GiB and a 64 GiB (sparse) pool. The
 * bare start is timed like a hop: from the spawn call to the bare program's
 * main running (it prints the time), on the clock the hops use. Its whole
 * life as the parent sees it (fork, start, exit, teardown, wait: ~4 ms
 * more) is reported beside it, but is not the baseline: a hop has no exit
 * in its window.
 *
 * The machine's speed drifts by several milliseconds of a node start within
 * a minute. So the measurement goes in ROUNDS rounds, and each round takes
 * some of every sample: bare starts, then a short chain of hops of each
 * program; the figures are medians over all rounds. A baseline measured
 * once, before the hops, was off by up to 3 ms from the hops it was
 * compared with.
 *
 * Two next programs are measured: an ES module (handover-app.ts) and a
 * CommonJS one (handover-app-cjs.cts), each loading pmpool through the
 * package's entry. A bare ES module main is timed too: it shows what
 * Node's ESM start costs any program, with or without pmpool. And a bare
 * CommonJS main that requires an empty package by name — one shaped like
 * pmpool's, with an exports map of import and require conditions: what
 * any such program pays before the package's own code runs (its main
 * module read, and Node 20's resolution of an exports map, which loads and
 * runs its ESM resolver).
 *
 * The CommonJS chain is run once more with exec()'s teardown 'inline': the
 * old image freed inside execve, before the next program runs, as any
 * execve does; by default a keeper process frees it meanwhile (exec.ts,
 * native/pmpool.c). The difference is what the keeper takes off the downtime.
 *
 * And a CommonJS program started with a V8 flag (--max-old-space-size), as
 * servers often are: V8 refuses the code cache recorded at install under
 * other flags. Once with only that cache, once with one recorded under its
 * options (`pmpool code-cache record`, done here and undone after), each
 * next to a bare node started with the same flag.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cachePathOf } from '../src/entry/bundle-loader.js';
import { BUNDLE, recordCache } from '../tools/record-cache.js';

const APPS = {
  esm: fileURLToPath(new URL('./handover-app.js', import.meta.url)),
  cjs: fileURLToPath(new URL('./handover-app-cjs.cjs', import.meta.url)),
};
type AppKind = keyof typeof APPS;
const TARGET_MS = 5;
const CLIENT_ENTRIES = 100_000;
/** A V8 flag servers are started with; the bench records a cache under it, and none under FLAG_UNRECORDED. */
const FLAG = '--max-old-space-size=4096';
const FLAG_UNRECORDED = '--max-old-space-size=4097';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** A bare program that prints the time its main started (the clock every hop is timed on). */
const PRINT_MAIN_START = 'process.stdout.write(String(performance.timeOrigin + performance.now()))';

/**
 * In `dir`: node_modules/empty-package, shaped like pmpool's package (type module, an exports map with
 * import and require conditions) but empty, and a CommonJS main that requires it by name, then prints
 * the time as PRINT_MAIN_START does. Returns the main's path.
 */
function emptyPackageMain(dir: string): string {
  const pkg = join(dir, 'node_modules', 'empty-package');
  mkdirSync(pkg, { recursive: true });
  const exports = { '.': { import: { default: './index.js' }, require: { default: './index.cjs' } }, './package.json': './package.json' };
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'empty-package', type: 'module', main: './index.js', exports }));
  writeFileSync(join(pkg, 'index.js'), 'export {};\n');
  writeFileSync(join(pkg, 'index.cjs'), 'module.exports = {};\n');
  const main = join(dir, 'requires-empty-package.cjs');
  writeFileSync(main, `require('empty-package');\n${PRINT_MAIN_START};\n`);
  return main;
}

interface BareStart {
  /** The spawn call → the program's main running: what a handover's downtime is compared with. */
  main: number;
  /** The spawn call → the exit seen by the parent (fork, start, exit, teardown, wait): for reference. */
  wall: number;
}

/**
 * One bare start of `node ARGS` (a program printing PRINT_MAIN_START's time). A hop is timed from
 * the exec() call to its restore done: no fork before it, no exit after. So is this baseline, up to
 * the bare program's main; its whole life, as a parent sees it, is reported beside it.
 */
function bareStart(args: string[]): BareStart {
  const t = performance.timeOrigin + performance.now();
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  const wall = performance.timeOrigin + performance.now() - t;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} failed`);
  return { main: Number(r.stdout) - t, wall };
}

interface Downtime {
  /** exec() call → the next process starts (its time origin). */
  start: number;
  /** → its main module runs (Node's bootstrap). */
  running: number;
  /** → pmpool loaded (the package entry). */
  imported: number;
  /** → kexec.incoming() and Pool.restore done: the whole downtime. */
  restored: number;
  /** → the program's PersistentMap and LogRing open again (with --clients; else NaN). */
  clientsOpened: number;
}

/** One chain of `hops` hops of the program: one row of times (Downtime's fields, in order) per hop. */
function hopRows(app: AppKind, size: string, hops: number, clients = 0, nodeOptions: readonly string[] = [], teardown?: string): number[][] {
  const dir = mkdtempSync(join(tmpdir(), 'pmpool-bench-'));
  const pool = `/dev/shm/pmpool-bench-handover-${process.pid}-${app}-${size}`;
  try {
    const out = join(dir, 'times');
    const args = [...nodeOptions, APPS[app], `--pmpool=${pool},${size}`, `--out=${out}`, `--hops=${hops}`, ...(clients > 0 ? [`--clients=${clients}`] : []), ...(teardown ? [`--teardown=${teardown}`] : [])];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`handover app (${app}) failed: ${r.stderr}`);
    const rows = readFileSync(out, 'utf8').trim().split('\n').map((l) => l.split(' ').map(Number));
    if (rows.length !== hops) throw new Error(`handover app (${app}) recorded ${rows.length} hops of ${hops}`);
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(pool, { force: true });
  }
}

/** Medians, column by column, of hop rows gathered over the rounds. */
function downtimeOf(rows: number[][], clients: boolean): Downtime {
  const column = (i: number) => median(rows.map((row) => row[i]!));
  return { start: column(0), running: column(1), imported: column(2), restored: column(3), clientsOpened: clients ? column(4) : Number.NaN };
}

/** Rounds of the measurement, and per round: bare starts of each kind, and hops of each chain. */
const ROUNDS = 10;
const BARE_PER_ROUND = 3;
const HOPS_PER_ROUND = 3;

export async function benchHandover(): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'pmpool-bench-'));
  const esmMain = join(dir, 'start.mjs');
  writeFileSync(esmMain, PRINT_MAIN_START);
  const emptyPackage = emptyPackageMain(dir);
  const chains = [
    { key: 'esm1G', app: 'esm', size: '1G', clients: 0 },
    { key: 'esm64G', app: 'esm', size: '64G', clients: 0 },
    { key: 'cjs1G', app: 'cjs', size: '1G', clients: 0 },
    { key: 'cjs64G', app: 'cjs', size: '64G', clients: 0 },
    // exec() with the old image freed inside execve, as without the keeper: what the keeper saves.
    { key: 'cjs1GInline', app: 'cjs', size: '1G', clients: 0, teardown: 'inline' },
    { key: 'clients', app: 'cjs', size: '1G', clients: CLIENT_ENTRIES },
    { key: 'flagsKeyed', app: 'cjs', size: '1G', clients: 0, options: [FLAG] },
    { key: 'flagsDefault', app: 'cjs', size: '1G', clients: 0, options: [FLAG_UNRECORDED] },
  ] as const;
  const keyedCache = cachePathOf(BUNDLE, [FLAG]);
  if (existsSync(cachePathOf(BUNDLE, [FLAG_UNRECORDED]))) throw new Error(`a code cache is recorded under ${FLAG_UNRECORDED}: the bench needs none there`);
  const recordedHere = !existsSync(keyedCache);
  recordCache(BUNDLE, [FLAG]); // recorded again when there is one: one left from an earlier build would be refused

  try {
    for (let i = 0; i < 3; i++) bareStart(['-e', PRINT_MAIN_START]); // warm the page cache
    const bare: BareStart[] = [];
    const bareEsm: BareStart[] = [];
    const bareEmptyPackage: BareStart[] = [];
    const bareFlags: BareStart[] = [];
    const rows: Record<string, number[][]> = Object.fromEntries(chains.map((c) => [c.key, []]));
    // Per round, for the overheads: each chain's hop rows, and the bare starts beside them.
    const roundRows: Record<string, number[][][]> = Object.fromEntries(chains.map((c) => [c.key, []]));
    const roundBare: number[][] = [];
    const roundBareFlags: number[][] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const bareHere: BareStart[] = [];
      const bareFlagsHere: BareStart[] = [];
      for (let i = 0; i < BARE_PER_ROUND; i++) {
        bareHere.push(bareStart(['-e', PRINT_MAIN_START]));
        bareEsm.push(bareStart([esmMain]));
        bareEmptyPackage.push(bareStart([emptyPackage]));
        bareFlagsHere.push(bareStart([FLAG, '-e', PRINT_MAIN_START]));
      }
      bare.push(...bareHere);
      bareFlags.push(...bareFlagsHere);
      roundBare.push(bareHere.map((b) => b.main));
      roundBareFlags.push(bareFlagsHere.map((b) => b.main));
      for (const c of chains) {
        const hops = hopRows(c.app, c.size, HOPS_PER_ROUND, c.clients, 'options' in c ? c.options : [], 'teardown' in c ? c.teardown : undefined);
        rows[c.key]!.push(...hops);
        roundRows[c.key]!.push(hops);
      }
    }
    const baseline = median(bare.map((b) => b.main));
    /**
     * A chain's downtime over bare node, paired by round: the median, over the rounds, of the round's
     * median hop less the median of the bare starts taken just before it. The machine's speed drifts
     * (bare starts of one run have ranged over 15 ms): pooled medians taken minutes apart would
     * count the drift as pmpool's, either way.
     */
    const overOf = (key: string, bareRounds: number[][] = roundBare, column = 3): number =>
      median(roundRows[key]!.map((hops, r) => median(hops.map((row) => row[column]!)) - median(bareRounds[r]!)));
    const roundBareMedians = roundBare.map(median);
    const r: Record<string, number> = {};
    for (const app of ['esm', 'cjs'] as const) {
      const small = downtimeOf(rows[`${app}1G`]!, false);
      const large = downtimeOf(rows[`${app}64G`]!, false);
      Object.assign(r, {
        [`${app}_handover1GiBMs`]: small.restored,
        [`${app}_handover64GiBMs`]: large.restored,
        [`${app}_ratio64to1`]: large.restored / small.restored,
        // Where the downtime goes (1 GiB): up to the new process's start, Node's start, loading pmpool, pmpool's restore.
        [`${app}_execToStartMs`]: small.start,
        [`${app}_nodeBootstrapMs`]: small.running - small.start,
        [`${app}_importMs`]: small.imported - small.running,
        [`${app}_incomingAndRestore1GiBMs`]: small.restored - small.imported,
        [`${app}_incomingAndRestore64GiBMs`]: large.restored - large.imported,
        [`${app}_overhead1GiBMs`]: overOf(`${app}1G`),
        [`${app}_overhead64GiBMs`]: overOf(`${app}64G`),
      });
      r[`${app}_target_met`] = Number(Math.max(r[`${app}_overhead1GiBMs`]!, r[`${app}_overhead64GiBMs`]!) <= TARGET_MS && Math.abs(r[`${app}_ratio64to1`]! - 1) <= 0.1);
    }
    // The old image freed inside execve (teardown 'inline'), against the keeper's default.
    const inline = downtimeOf(rows.cjs1GInline!, false);
    Object.assign(r, {
      cjs_inline_handover1GiBMs: inline.restored,
      cjs_inline_execToStartMs: inline.start,
      cjs_inline_overhead1GiBMs: overOf('cjs1GInline'),
    });
    // A program that keeps its state in clients: downtime until its map (100,000 entries) and ring are open again.
    const withClients = downtimeOf(rows.clients!, true);
    Object.assign(r, {
      cjs_clients_restoredMs: withClients.restored,
      cjs_clients_openedMs: withClients.clientsOpened,
      cjs_clients_reopenMs: withClients.clientsOpened - withClients.restored,
      cjs_clients_openedOverheadMs: overOf('clients', roundBare, 4),
    });
    // Started with a V8 flag: with only the default cache (refused), and with one recorded under its options.
    const bareWithFlag = median(bareFlags.map((b) => b.main));
    const keyed = downtimeOf(rows.flagsKeyed!, false);
    const refused = downtimeOf(rows.flagsDefault!, false);
    Object.assign(r, {
      bareNodeFlagStartMs: bareWithFlag,
      cjs_flag_defaultCacheMs: refused.restored,
      cjs_flag_defaultCacheOverheadMs: overOf('flagsDefault', roundBareFlags),
      cjs_flag_defaultCacheImportMs: refused.imported - refused.running,
      cjs_flag_keyedCacheMs: keyed.restored,
      cjs_flag_keyedCacheOverheadMs: overOf('flagsKeyed', roundBareFlags),
      cjs_flag_keyedCacheImportMs: keyed.imported - keyed.running,
    });
    return {
      bareNodeStartMs: baseline,
      bareNodeStartRoundMinMs: Math.min(...roundBareMedians),
      bareNodeStartRoundMaxMs: Math.max(...roundBareMedians),
      bareNodeWallMs: median(bare.map((b) => b.wall)),
      bareEsmMainStartMs: median(bareEsm.map((b) => b.main)),
      bareEmptyPackageMs: median(bareEmptyPackage.map((b) => b.main)),
      ...r,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    if (recordedHere) rmSync(keyedCache, { force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await benchHandover();
  const f = (x: number | undefined) => x!.toFixed(2);
  /** A difference, with its sign either way (noise can make one negative). */
  const signed = (x: number | undefined) => `${x! < 0 ? '−' : '+'}${Math.abs(x!).toFixed(2)}`;
  console.log(`handover downtime (exec() call → Pool.restore done), median of ${ROUNDS * HOPS_PER_ROUND} hops, next to ${ROUNDS * BARE_PER_ROUND} bare node starts, taken in ${ROUNDS} rounds`);
  console.log(`  bare \`node -e\` start          ${f(r.bareNodeStartMs)} ms   (the baseline: spawn → its main runs; to its exit as the parent sees it: ${f(r.bareNodeWallMs)} ms)`);
  console.log(`  its median by round ranged ${f(r.bareNodeStartRoundMinMs)}–${f(r.bareNodeStartRoundMaxMs)} ms; "over bare node" below is paired by round (each round's hops less its own bare starts)`);
  console.log(`  bare \`node start.mjs\` start   ${f(r.bareEsmMainStartMs)} ms   (what an ES module main costs any program)`);
  console.log(
    `  bare CommonJS main requiring an empty package shaped like pmpool's (by name, exports map): ${f(r.bareEmptyPackageMs)} ms (${signed(r.bareEmptyPackageMs! - r.bareNodeStartMs!)} ms: what any such program pays before a package's own code runs)`,
  );
  for (const [app, title] of [['cjs', 'CommonJS program (require)'], ['esm', 'ES module program (import)']] as const) {
    const k = (name: string) => r[`${app}_${name}`];
    console.log(`${title}:`);
    console.log(`  1 GiB pool                    ${f(k('handover1GiBMs'))} ms  (${signed(k('overhead1GiBMs'))} ms over bare node)`);
    console.log(`  64 GiB pool                   ${f(k('handover64GiBMs'))} ms  (${signed(k('overhead64GiBMs'))} ms over bare node)`);
    console.log(`  64 GiB / 1 GiB                ${k('ratio64to1')!.toFixed(3)}`);
    console.log(`  where it goes (1 GiB): exec() → new process ${f(k('execToStartMs'))} ms, Node's start ${f(k('nodeBootstrapMs'))} ms, loading pmpool ${f(k('importMs'))} ms, incoming + restore ${f(k('incomingAndRestore1GiBMs'))} ms (64 GiB: ${f(k('incomingAndRestore64GiBMs'))} ms)`);
    console.log(`  target (within ${TARGET_MS} ms of bare node, 64 GiB within 10% of 1 GiB): ${k('target_met') ? 'MET' : 'MISSED'}`);
  }
  console.log(`CommonJS program, exec() with teardown 'inline' (the old image freed inside execve, before the next program runs; 1 GiB pool):`);
  console.log(`  exec() → Pool.restore done      ${f(r.cjs_inline_handover1GiBMs)} ms  (${signed(r.cjs_inline_overhead1GiBMs)} ms over bare node; exec() → new process ${f(r.cjs_inline_execToStartMs)} ms, against ${f(r.cjs_execToStartMs)} ms with the keeper)`);
  console.log(`CommonJS program that reopens a PersistentMap (${CLIENT_ENTRIES.toLocaleString('en')} entries) and a LogRing after the restore (1 GiB pool):`);
  console.log(`  exec() → Pool.restore done      ${f(r.cjs_clients_restoredMs)} ms`);
  console.log(`  exec() → map and ring open      ${f(r.cjs_clients_openedMs)} ms  (+${f(r.cjs_clients_reopenMs)} ms to reopen them; ${signed(r.cjs_clients_openedOverheadMs)} ms over bare node)`);
  console.log(`CommonJS program started with ${FLAG} (1 GiB pool; bare \`node ${FLAG} -e\` start ${f(r.bareNodeFlagStartMs)} ms):`);
  console.log(`  only the cache recorded at install (V8 refuses it)   ${f(r.cjs_flag_defaultCacheMs)} ms  (${signed(r.cjs_flag_defaultCacheOverheadMs)} ms over that bare node; loading pmpool ${f(r.cjs_flag_defaultCacheImportMs)} ms)`);
  console.log(`  a cache recorded under its options (code-cache record) ${f(r.cjs_flag_keyedCacheMs)} ms  (${signed(r.cjs_flag_keyedCacheOverheadMs)} ms; loading pmpool ${f(r.cjs_flag_keyedCacheImportMs)} ms)`);
  console.log(JSON.stringify({ bench: 'handover', ...r }));
}
