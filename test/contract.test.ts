/**
 * The names DESIGN.md §6 promises, checked through the package's own entry
 * (`import ... from 'pmpool'`) and the `pmpool` binary: other checks call
 * them exactly, so a rename fails here first.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as pmpool from 'pmpool';
import { shmPath } from './support/child.js';

const BIN = fileURLToPath(new URL('../../bin/pmpool.js', import.meta.url));

test('the library names of DESIGN.md §6 exist, through `import from "pmpool"`', () => {
  const { Pool, Fdt, FdtError, kexec, PersistentMap, LogRing } = pmpool;
  for (const fn of [Pool.create, Pool.open, Pool.restore, Fdt.parse, PersistentMap.open, LogRing.open]) assert.equal(typeof fn, 'function');
  for (const fn of ['incoming', 'onHandover', 'exec', 'spawn'] as const) assert.equal(typeof kexec[fn], 'function', `kexec.${fn}`);
  assert.equal(new FdtError('BADMAGIC', 'x').code, 'BADMAGIC');
  const fdt = new Fdt();
  for (const m of ['toBytes', 'toDts', 'lint', 'get', 'getU32', 'getU64', 'getString', 'set', 'addNode', 'remove', 'has', 'children', 'props'] as const) {
    assert.equal(typeof fdt[m], 'function', `fdt.${m}`);
  }
  fdt.addNode('/a/b');
  fdt.set('/a/b', 's', 'text');
  fdt.set('/a/b', 'n', 7);
  fdt.set('/a/b', 'w', 2n ** 40n);
  fdt.set('/a/b', 'cells', [1, 2]);
  fdt.set('/a/b', 'raw', new Uint8Array([1, 2, 3]));
  assert.equal(fdt.getString('/a/b', 's'), 'text');
  assert.equal(fdt.getU32('/a/b', 'n'), 7);
  assert.equal(fdt.getU64('/a/b', 'w'), 2n ** 40n);
  assert.deepEqual([...fdt.get('/a/b', 'cells')!], [0, 0, 0, 1, 0, 0, 0, 2]);
  assert.equal(fdt.get('/a/b', 'missing'), undefined);
  assert.deepEqual(fdt.children('/a'), ['b']);
  assert.deepEqual(Fdt.parse(fdt.toBytes()).props('/a/b'), ['s', 'n', 'w', 'cells', 'raw']);

  const { path, cleanup } = shmPath('contract');
  try {
    const pool = Pool.create(path, { size: 8 * 1024 * 1024, pageSize: 4096, orderPerBit: 0 });
    const a = pool.alloc(2, { align: 2, name: 'n', owner: 'o' });
    assert.deepEqual([a.pfn % 2, a.count, a.name, a.owner, a.bytes().length], [0, 2, 'n', 'o', 8192]);
    assert.equal(pool.find('n')?.pfn, a.pfn);
    assert.equal(pool.allocations().length, 1);
    const s = pool.stats();
    for (const k of ['pages', 'free', 'used', 'largestFree', 'allocations'] as const) assert.equal(typeof s[k], 'number', `stats().${k}`);
    assert.deepEqual(pool.check({ repair: false }), { ok: true, problems: [], repaired: [] });
    assert.equal(pool.subpool('sp', { count: 64 }).pageCount, 64);
    const map = PersistentMap.open(pool, 'kv');
    map.set('k', 'v');
    assert.deepEqual([map.get('k'), map.has('k'), map.size, [...map.keys()]], ['v', true, 1, ['k']]);
    assert.equal(map.delete('k'), true);
    map.close();
    const log = LogRing.open(pool, 'log', { bytes: 65536 });
    log.append('one');
    assert.deepEqual(log.records().map((r) => r.text), ['one']);
    log.close();
    pool.release(a.pfn, a.count, { owner: 'o' });
    pool.close();
    const again = Pool.open(path);
    assert.equal(again.find('sp')?.subpool, true, 'the sub-pool survives a reopen');
    again.close();
  } finally {
    cleanup();
  }
});

test('the CLI commands of DESIGN.md §6 answer, with exit 2 on bad usage', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  for (const command of ['create', 'info', 'map', 'check', 'alloc', 'release', 'fdt', 'log', 'run']) {
    const r = run(command);
    assert.equal(r.status, 2, `pmpool ${command} with no arguments: ${r.stderr}`);
    assert.match(r.stderr, /usage|pmpool/i);
  }
  assert.equal(run('--help').status, 0);
});
