/**
 * Regions and pools on hugetlbfs (2 MiB pages). The test mounts a hugetlbfs
 * of its own and reserves a few huge pages when it runs as root, and puts
 * the system back as it found it; elsewhere it is skipped, saying why.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileRegion, Pool, PoolError, RegionError } from '../src/index.js';
import { expectError } from './support/expect.js';

const HUGE = 2 * 1024 * 1024;
const NR_HUGEPAGES = '/proc/sys/vm/nr_hugepages';

let mountPoint: string | undefined;
let savedHugepages: string | undefined;
let unavailable: string | undefined;

before(() => {
  try {
    if (process.getuid?.() !== 0) throw new Error('needs root to mount hugetlbfs and reserve huge pages');
    savedHugepages = readFileSync(NR_HUGEPAGES, 'utf8').trim();
    if (Number(savedHugepages) < 16) writeFileSync(NR_HUGEPAGES, '16');
    if (Number(readFileSync(NR_HUGEPAGES, 'utf8').trim()) < 8) throw new Error('the kernel would not reserve 8 huge pages');
    mountPoint = mkdtempSync(join(tmpdir(), 'pmpool-huge-'));
    execFileSync('mount', ['-t', 'hugetlbfs', '-o', 'pagesize=2M', 'none', mountPoint], { stdio: 'pipe' });
  } catch (e) {
    unavailable = `hugetlbfs unavailable here: ${(e as Error).message.split('\n')[0]}`;
  }
});

after(() => {
  if (mountPoint) {
    try {
      execFileSync('umount', [mountPoint], { stdio: 'pipe' });
    } catch {
      /* not mounted */
    }
    rmSync(mountPoint, { recursive: true, force: true });
  }
  if (savedHugepages !== undefined) writeFileSync(NR_HUGEPAGES, savedHugepages);
});

describe('hugetlbfs', () => {
  test('a region has 2 MiB pages; sizes that are not whole huge pages are refused', (t) => {
    if (unavailable) return t.skip(unavailable);
    const path = join(mountPoint!, 'region');
    expectError(() => FileRegion.create(path, { size: 3 * 1024 * 1024 }), RegionError, 'BAD_SIZE');
    assert.equal(existsSync(path), false, 'a refused create leaves no file');
    const region = FileRegion.create(path, { size: 4 * HUGE });
    assert.equal(region.kind, 'hugetlbfs');
    assert.equal(region.pageSize, HUGE);
    region.map(HUGE + 10, 100).bytes()[0] = 42;
    region.close();
    const again = FileRegion.open(path);
    assert.equal(again.map(HUGE, HUGE).bytes()[10], 42);
    again.close();
    rmSync(path);
  });

  test('a pool of 2 MiB pages: alloc, write, reopen, read back; 4 KiB pages are refused', (t) => {
    if (unavailable) return t.skip(unavailable);
    const path = join(mountPoint!, 'pool');
    expectError(() => Pool.create(path, { size: 8 * HUGE }), PoolError, 'BAD_ARGUMENT');
    assert.equal(existsSync(path), false, 'a refused Pool.create leaves no file behind');
    const pool = Pool.create(path, { size: 8 * HUGE, pageSize: HUGE });
    assert.equal(pool.pageSize, HUGE);
    assert.equal(pool.stats().metadata, 1, 'the metadata fits one huge page');
    const big = pool.alloc(2, { name: 'big' });
    big.bytes()[0] = 7;
    big.bytes()[2 * HUGE - 1] = 9;
    pool.close();
    const again = Pool.open(path);
    const found = again.find('big')!;
    assert.deepEqual([found.bytes()[0], found.bytes()[2 * HUGE - 1]], [7, 9]);
    assert.equal(again.check().ok, true);
    again.close();
    rmSync(path);
  });
});
