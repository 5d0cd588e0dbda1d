/**
 * The example of docs/handover.md is what the code writes today: the same
 * handover is built here (one 1 GiB pool, a map "kv" of one entry, the
 * first handover) and compared with the DTS on that page, the values that
 * differ from run to run (uuids, checksum, map id, root pfn) aside, and
 * with the blob size the page gives.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Fdt, Pool } from '../src/index.js';
import { HandoverRegistry } from '../src/kexec/handover.js';
import { PersistentMap } from '../src/clients/index.js';
import { shmPath } from './support/child.js';

const doc = readFileSync(new URL('../../docs/handover.md', import.meta.url), 'utf8');

/** The DTS with the values of one run replaced by their names. */
function normalized(dts: string): string {
  return dts.replace(/^(\s*(?:uuid|pool-uuid|superblock-crc|map-id|root)) = <[^>]*>;$/gm, '$1 = <...>;');
}

test('the dtc example of docs/handover.md is the tree a first handover writes', () => {
  const section = doc.slice(doc.indexOf('## An example'));
  const example = /```\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(example, 'docs/handover.md has an example');
  const docPath = /path = "([^"]+)";/.exec(example)![1]!;
  const docBytes = Number(/The blob is (\d+) bytes/.exec(section)?.[1]);

  const shm = shmPath('handover-doc');
  const pool = Pool.create(shm.path, { size: '1G' });
  try {
    const registry = new HandoverRegistry();
    registry.addPool(pool);
    const map = PersistentMap.open(pool, 'kv');
    map.set('a', 'b');
    PersistentMap.registerHandover(map, (name, callback) => registry.onHandover(name, callback));
    const prepared = registry.prepare({ from: 'app 1.4.2' });
    prepared.complete();
    map.close();
    const fdt = Fdt.parse(prepared.bytes);
    fdt.set('/pools/default_pmpool', 'path', docPath); // the page's path, of its length
    assert.equal(normalized(fdt.toDts()), normalized(example));
    assert.equal(fdt.toBytes().length, docBytes, 'the blob size the page gives');
  } finally {
    pool.close();
    shm.cleanup();
  }
});
