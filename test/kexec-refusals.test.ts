import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, symlinkSync, writeFileSync, chownSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Fdt, Pool, HandoverError } from '../src/index.js';
import { HandoverRegistry } from '../src/kexec/handover.js';
import { restorePool } from '../src/kexec/restore.js';
import { writeBlob } from '../src/kexec/blob.js';
import { shmPath, tempDir } from './support/child.js';
import { expectError } from './support/expect.js';

const expectHandoverError = (fn: () => unknown, code: string): HandoverError => expectError(fn, HandoverError, code);

/** A pool handed over once: returns the blob's path and what the next program would see. */
function handedOver(label: string) {
  const shm = shmPath(label);
  const pool = Pool.create(shm.path, { size: '4M' });
  const data = pool.alloc(2, { name: 'data' });
  data.bytes()[0] = 99;
  const out = new HandoverRegistry();
  out.addPool(pool);
  const prepared = out.prepare({ from: 'test' });
  pool.close();
  return {
    path: shm.path,
    prepared,
    blob: (bytes: Uint8Array = prepared.bytes) => writeBlob(bytes),
    incoming: (blob: string) => new HandoverRegistry().incoming(['node', `--pmpool-fdt=${blob}`]),
    cleanup: shm.cleanup,
  };
}

/** The pool must still open through the crash-recovery path, its data intact. */
function assertPoolUntouched(path: string): void {
  const pool = Pool.open(path);
  assert.equal(pool.find('data')?.bytes()[0], 99);
  assert.equal(pool.check().ok, true);
  pool.close();
}

describe('handover refusals leave the pool untouched and openable', () => {
  test('a good blob restores; it is consumed once', () => {
    const h = handedOver('good');
    try {
      const blob = h.blob();
      const registry = new HandoverRegistry();
      const incoming = registry.incoming(['node', `--pmpool-fdt=${blob}`])!;
      assert.equal(incoming.generation, 1n);
      assert.equal(existsSync(blob), false, 'a consumed blob is removed');
      const pool = restorePool(registry, incoming);
      assert.equal(pool.find('data')?.bytes()[0], 99);
      pool.close();
    } finally {
      h.cleanup();
    }
  });

  const tamper: Array<[string, (fdt: Fdt) => void, string]> = [
    ['uuid', (f) => f.set('/pools/default_pmpool', 'uuid', new Uint8Array(16).fill(7)), 'MISMATCH'],
    ['page-size', (f) => f.set('/pools/default_pmpool', 'page-size', 8192), 'MISMATCH'],
    ['nr-pages', (f) => f.set('/pools/default_pmpool', 'nr-pages', 2048n), 'MISMATCH'],
    ['order-per-bit', (f) => f.set('/pools/default_pmpool', 'order-per-bit', 1), 'MISMATCH'],
    ['superblock-crc', (f) => f.set('/pools/default_pmpool', 'superblock-crc', 12345), 'MISMATCH'],
    ['node generation', (f) => f.set('/pools/default_pmpool', 'generation', 7n), 'STALE'],
    ['root generation', (f) => f.set('/', 'pmpool,generation', 9n), 'STALE'],
    ['path', (f) => f.set('/pools/default_pmpool', 'path', '/dev/shm/pmpool-no-such-pool'), 'MISMATCH'],
    ['relative path', (f) => f.set('/pools/default_pmpool', 'path', 'relative'), 'BAD_BINDING'],
    ['uuid length', (f) => f.set('/pools/default_pmpool', 'uuid', new Uint8Array(3)), 'BAD_BINDING'],
    ['missing nr-pages', (f) => void f.remove('/pools/default_pmpool', 'nr-pages'), 'BAD_BINDING'],
    ['root major version', (f) => f.set('/', 'compatible', 'pmpool,handover-v2'), 'BAD_BINDING'],
    ['pool major version', (f) => f.set('/pools/default_pmpool', 'compatible', 'pmpool,pool-v9'), 'BAD_BINDING'],
    ['generation type', (f) => f.set('/pools/default_pmpool', 'generation', 'one'), 'BAD_BINDING'],
  ];
  for (const [field, edit, code] of tamper) {
    test(`tampered ${field} → ${code}`, () => {
      const h = handedOver(`tamper-${field.replace(/\W/g, '')}`);
      try {
        const fdt = Fdt.parse(h.prepared.bytes);
        edit(fdt);
        const blob = h.blob(fdt.toBytes());
        expectHandoverError(() => {
          const registry = new HandoverRegistry();
          const incoming = registry.incoming(['node', `--pmpool-fdt=${blob}`])!;
          restorePool(registry, incoming).close();
        }, code);
        assertPoolUntouched(h.path);
        if (existsSync(blob)) unlinkSync(blob);
      } finally {
        h.cleanup();
      }
    });
  }

  test('a corrupt blob → BAD_BLOB naming the libfdt error', () => {
    const h = handedOver('corrupt');
    try {
      const bytes = h.prepared.bytes.slice();
      bytes[0] = 0; // magic
      const badMagic = h.blob(bytes);
      const e = expectHandoverError(() => h.incoming(badMagic), 'BAD_BLOB');
      assert.match(e.message, /BADMAGIC/);
      assert.ok(existsSync(badMagic), 'a refused blob is left for inspection');
      unlinkSync(badMagic);
      const truncated = h.blob(h.prepared.bytes.slice(0, h.prepared.bytes.length - 9));
      expectHandoverError(() => h.incoming(truncated), 'BAD_BLOB');
      unlinkSync(truncated);
      assertPoolUntouched(h.path);
    } finally {
      h.cleanup();
    }
  });

  test('a blob for another pool, and a replayed older blob, are refused', () => {
    const h = handedOver('replay');
    const other = handedOver('other');
    try {
      // Another pool's blob pointed at by a node whose path is ours.
      const foreign = Fdt.parse(other.prepared.bytes);
      foreign.set('/pools/default_pmpool', 'path', h.path);
      expectHandoverError(() => {
        const registry = new HandoverRegistry();
        restorePool(registry, registry.incoming(['node', `--pmpool-fdt=${h.blob(foreign.toBytes())}`])!).close();
      }, 'MISMATCH');
      // Replay: restore generation 1, hand over again (generation 2), then replay the generation-1 blob.
      const first = h.prepared.bytes;
      const registry = new HandoverRegistry();
      const pool = restorePool(registry, registry.incoming(['node', `--pmpool-fdt=${h.blob(first)}`])!);
      const second = registry.prepare();
      assert.equal(second.generation, 2n);
      pool.close();
      const e = expectHandoverError(() => {
        const r = new HandoverRegistry();
        restorePool(r, r.incoming(['node', `--pmpool-fdt=${h.blob(first)}`])!).close();
      }, 'STALE');
      assert.match(e.message, /replayed/);
      assertPoolUntouched(h.path);
    } finally {
      h.cleanup();
      other.cleanup();
    }
  });

  test('unsafe blob files: symlink, writable by others, another uid, not a file', () => {
    const h = handedOver('unsafe');
    const tmp = tempDir();
    try {
      const real = join(tmp.dir, 'real.dtb');
      writeFileSync(real, h.prepared.bytes, { mode: 0o600 });
      const link = join(tmp.dir, 'link.dtb');
      symlinkSync(real, link);
      expectHandoverError(() => h.incoming(link), 'UNSAFE_BLOB');
      chmodSync(real, 0o622);
      expectHandoverError(() => h.incoming(real), 'UNSAFE_BLOB');
      chmodSync(real, 0o600);
      chownSync(real, 4321, 4321);
      expectHandoverError(() => h.incoming(real), 'UNSAFE_BLOB');
      expectHandoverError(() => h.incoming(tmp.dir), 'UNSAFE_BLOB');
      expectHandoverError(() => h.incoming(join(tmp.dir, 'missing.dtb')), 'UNSAFE_BLOB');
      assert.deepEqual(readFileSync(real), Buffer.from(h.prepared.bytes), 'a refused blob is not consumed');
      assertPoolUntouched(h.path);
    } finally {
      h.cleanup();
      tmp.cleanup();
    }
  });
});

describe('handover callbacks', () => {
  test('callbacks run in order; one that throws aborts: the others hear, the pool stays usable', () => {
    const { path, cleanup } = shmPath('abort');
    try {
      const pool = Pool.create(path, { size: '4M' });
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      const order: string[] = [];
      const aborted: string[] = [];
      registry.onHandover('first', (fdt) => {
        order.push('first');
        fdt.addNode('/clients/first');
      }, { onAbort: () => aborted.push('first') });
      registry.onHandover('broken', () => {
        order.push('broken');
        throw new Error('disk on fire');
      }, { onAbort: () => aborted.push('broken') });
      registry.onHandover('third', () => order.push('third'), { onAbort: () => aborted.push('third') });
      const e = expectHandoverError(() => registry.prepare(), 'CALLBACK_FAILED');
      assert.match(e.message, /"broken".*disk on fire/);
      assert.deepEqual(order, ['first', 'broken']);
      assert.deepEqual(aborted, ['first', 'third'], 'every other callback is told');
      assert.equal(pool.generation, 0n, 'the generation bump is undone');
      const a = pool.alloc(3);
      pool.release(a.pfn, a.count);
      assert.equal(pool.check().ok, true);
      // Unregistered, the handover goes through; the pool is quiesced until resumed.
      const registry2 = new HandoverRegistry();
      registry2.addPool(pool);
      const unregister = registry2.onHandover('gone', () => {
        throw new Error('never');
      });
      unregister();
      const prepared = registry2.prepare();
      assert.equal(prepared.generation, 1n);
      assert.throws(() => pool.alloc(1), /quiesced/);
      prepared.abort(new Error('test'));
      assert.equal(pool.alloc(1).count, 1);
      pool.close();
    } finally {
      cleanup();
    }
  });
});
