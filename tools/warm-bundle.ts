/**
 * The warm run behind the bundle's code cache (tools/record-cache.ts runs it twice):
 *
 *   --phase=hand-over  create the pool (--pmpool=PATH,SIZE) and write a handover blob to --blob
 *   --phase=record     be the next program: receive the handover, restore, allocate, reopen a
 *                      PersistentMap and a LogRing, hand over again (to a program that does not
 *                      exist, so the exec fails and rolls back, which runs every step but the
 *                      execve), then write V8's payload to --cache, and print the Node options
 *                      it ran under (node-options.ts): the cache is recorded under those
 *   --phase=check      load the bundle as a program does, or with the cache at --cache, and
 *                      print { cache, cachePath, problem } as JSON (no pool needed)
 *
 * Each phase runs under the Node options a cache is recorded for (the
 * recording passes them to node before this script).
 *
 * The cache holds what these calls compiled: what a program that receives a
 * handover runs first (its clients' reopening included), and what it runs to
 * hand over in turn. Both phases compile the bundle from source, with no code
 * cache (--scratch=DIR, the recording's own directory, holds none): the cache
 * beside the bundle stays there while it is recorded again, and a recording
 * holds what this run compiled, not what an earlier recording held.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadBundle } from '../src/entry/bundle-loader.js';
import { nodeOptionsOf } from '../src/entry/node-options.js';
import type * as Pmpool from '../src/index.js';

const arg = (name: string): string => {
  const found = process.argv.find((a) => a.startsWith(`--${name}=`));
  if (found === undefined) throw new Error(`--${name}= is required`);
  return found.slice(name.length + 3);
};

const phase = arg('phase');
if (phase === 'check') {
  const cache = process.argv.some((a) => a.startsWith('--cache=')) ? arg('cache') : undefined;
  const checked = loadBundle(arg('bundle'), cache);
  console.log(JSON.stringify({ cache: checked.cache, cachePath: checked.cachePath ?? null, problem: checked.cacheProblem ?? null }));
  process.exit(0);
}

const loaded = loadBundle(arg('bundle'), join(arg('scratch'), 'no-code-cache'));
if (loaded.script === null) throw new Error('the warm-up must compile the bundle itself (run it without --enable-source-maps)');
if (loaded.cache !== 'absent') throw new Error(`the warm-up must compile the bundle from source (its code cache: ${loaded.cache})`);
const { kexec, PersistentMap, LogRing } = loaded.exports as unknown as typeof Pmpool;

if (phase === 'hand-over') {
  const pool = kexec.poolFromCommandLine()!;
  pool.alloc(16, { name: 'warm' });
  // The clients are created here, not recorded: a program after a handover reopens its clients,
  // and code only their creation runs would be deserialised by every start for nothing.
  const map = PersistentMap.open(pool, 'warm-map');
  for (let i = 0; i < 64; i++) map.set(`key ${i}`, `value ${i}`);
  map.close();
  const ring = LogRing.open(pool, 'warm-ring', { bytes: 64 * 1024 });
  ring.append('created');
  ring.close();
  writeFileSync(arg('blob'), kexec.prepare({ from: 'tools/warm-bundle' }).bytes, { mode: 0o600 });
} else if (phase === 'record') {
  if (kexec.incoming() === null) throw new Error('the record phase must receive a handover');
  const pool = kexec.poolFromCommandLine()!;
  if (pool.find('warm') === undefined) throw new Error('the restored pool lost its allocation');
  const a = pool.alloc(1);
  a.bytes()[0] = 1;
  pool.release(a.pfn, a.count);
  pool.stats();
  // The clients a program reopens after a handover: their open, reads and writes.
  const map = PersistentMap.open(pool, 'warm-map');
  if (map.size !== 64) throw new Error(`the reopened map holds ${map.size} entries, not 64`);
  for (let i = 0; i < 64; i++) map.set(`key ${i}`, `value ${i} again`);
  for (let i = 64; i < 96; i++) map.set(`key ${i}`, `value ${i}`); // inserts as well as updates
  map.get('key 1');
  map.delete('key 2');
  map.close();
  const ring = LogRing.open(pool, 'warm-ring', { bytes: 64 * 1024 });
  ring.append('warm');
  ring.records();
  ring.close();
  const refused = await kexec.exec('/nonexistent/pmpool-warm-up', []).catch((e: Error) => e);
  if (!(refused instanceof Error)) throw new Error('exec of a missing program did not fail');
  pool.close();
  writeFileSync(arg('cache'), loaded.script.createCachedData());
  console.log(JSON.stringify(nodeOptionsOf()));
} else {
  throw new Error(`unknown phase ${phase}`);
}
