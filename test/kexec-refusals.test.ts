import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, symlinkSync, writeFileSync, chownSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Fdt, Pool, PoolError, HandoverError, kexec } from '../src/index.js';
import { execInPlace, spawnNext } from '../src/kexec/exec.js';
import { HandoverRegistry } from '../src/kexec/handover.js';
import { poolFromCommandLine, restorePool } from '../src/kexec/restore.js';
import { MAX_BLOB_BYTES, writeBlob } from '../src/kexec/blob.js';
import { poolInternals } from '../src/pool/internals.js';
import { shmPath, tempDir } from './support/child.js';
import { expectError, NOT_OBJECTS, shown } from './support/expect.js';

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

/** Moves a node's properties to a new node of another name (a valid FDT name the binding may refuse). */
function renameNode(fdt: Fdt, from: string, to: string): void {
  fdt.addNode(to);
  for (const prop of fdt.props(from)) fdt.set(to, prop, fdt.get(from, prop)!);
  fdt.remove(from);
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
    ['pool node name', (f) => renameNode(f, '/pools/default_pmpool', '/pools/pool@1000'), 'BAD_BINDING'],
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

  // poolFromCommandLine reads the pool node once per call (restore.ts restoreNode): what it checks is the
  // tree the Handover holds at that call, edited in place or replaced since incoming(), never an earlier read.
  const edits: Array<[string, (incoming: { fdt: Fdt }) => void, string]> = [
    ['uuid edited in place', (i) => i.fdt.set('/pools/default_pmpool', 'uuid', new Uint8Array(16).fill(7)), 'MISMATCH'],
    ['node generation edited in place', (i) => i.fdt.set('/pools/default_pmpool', 'generation', 7n), 'STALE'],
    [
      'tree replaced by an edited copy',
      (i) => {
        const copy = i.fdt.clone();
        copy.set('/pools/default_pmpool', 'superblock-crc', 12345);
        i.fdt = copy;
      },
      'MISMATCH',
    ],
  ];
  for (const [what, edit, code] of edits) {
    test(`a received handover's ${what} after incoming(): poolFromCommandLine → ${code}`, () => {
      const h = handedOver(`edited-${what.replace(/\W/g, '')}`);
      try {
        const blob = h.blob();
        const argv = ['node', `--pmpool=${h.path},4M`, `--pmpool-fdt=${blob}`];
        const registry = new HandoverRegistry();
        const incoming = registry.incoming(argv)!;
        edit(incoming);
        expectHandoverError(() => poolFromCommandLine(registry, argv)?.close(), code);
        assertPoolUntouched(h.path);
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
      assert.equal(pool.generation, 2n, 'the aborted generation 1 is burned (N+2): no blob of that attempt can ever match');
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
      // One callback unregistered by another that runs before it, during the handover: it does not run.
      const ran: string[] = [];
      let unregisterLater = (): void => undefined;
      registry2.onHandover('closes the other', () => {
        ran.push('first');
        unregisterLater();
      });
      unregisterLater = registry2.onHandover('closed', () => {
        ran.push('unregistered');
      });
      const prepared = registry2.prepare();
      assert.deepEqual(ran, ['first']);
      assert.equal(prepared.generation, 3n, 'the next handover moves past the burned generation');
      assert.throws(() => pool.alloc(1), /quiesced/);
      prepared.abort(new Error('test'));
      assert.equal(pool.alloc(1).count, 1);
      pool.close();
    } finally {
      cleanup();
    }
  });
});

describe('handover callbacks that return a Promise', () => {
  test('an async callback aborts the handover: what it writes after an await would never reach the next program', async () => {
    const { path, cleanup } = shmPath('async-callback');
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const pool = Pool.create(path, { size: '4M' });
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      const aborted: string[] = [];
      registry.onHandover('first', () => undefined, { onAbort: () => aborted.push('first') });
      registry.onHandover('async', async (fdt) => {
        await null;
        fdt.addNode('/clients/async');
        throw new Error('failed after its await');
      }, { onAbort: () => aborted.push('async') });
      const e = expectHandoverError(() => registry.prepare(), 'CALLBACK_FAILED');
      assert.match(e.message, /"async".*returned a Promise/);
      assert.deepEqual(aborted, ['first', 'async'], 'every callback is told, the one that returned a Promise too');
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(unhandled, [], 'its later rejection is no unhandled one that would end the program');
      const a = pool.alloc(1);
      pool.release(a.pfn, a.count);
      assert.equal(pool.check().ok, true);
      pool.close();
    } finally {
      process.off('unhandledRejection', onUnhandled);
      cleanup();
    }
  });

  test('a callback whose result has a then that throws (a broken thenable, a strict proxy) aborts the handover: the pool is not left quiesced', () => {
    const { path, cleanup } = shmPath('thenable-callback');
    try {
      const pool = Pool.create(path, { size: '4M' });
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      const aborted: string[] = [];
      const broken = { then: () => { throw new Error('no then here'); } };
      const strict = new Proxy({}, { get: (_, prop) => { throw new Error(`no property ${String(prop)}`); } });
      for (const result of [broken, strict]) {
        const off = registry.onHandover('odd', () => result, { onAbort: () => aborted.push('odd') });
        expectHandoverError(() => registry.prepare(), 'CALLBACK_FAILED');
        off();
        const a = pool.alloc(1);
        pool.release(a.pfn, a.count);
      }
      assert.deepEqual(aborted, ['odd'], 'the broken thenable is told of the abort; the proxy failed itself');
      registry.prepare().complete();
      assert.equal(pool.check().ok, true);
      pool.close();
    } finally {
      cleanup();
    }
  });
});

describe('handover size', () => {
  test('a tree over the blob limit a next program reads: the handover is aborted, the program keeps its pools', () => {
    const { path, cleanup } = shmPath('too-big');
    try {
      const pool = Pool.create(path, { size: '4M' });
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      const aborted: string[] = [];
      registry.onHandover('huge', (fdt) => {
        fdt.addNode('/clients/huge');
        fdt.set('/clients/huge', 'payload', new Uint8Array(MAX_BLOB_BYTES));
      }, { onAbort: (e) => aborted.push((e as HandoverError).code) });
      const e = expectHandoverError(() => registry.prepare(), 'BAD_BLOB');
      assert.match(e.message, /over the 16777216-byte limit/);
      assert.deepEqual(aborted, ['BAD_BLOB'], 'the callbacks hear of the abort');
      assert.equal(pool.alloc(1).count, 1, 'the pool is not left quiesced');
      const again = new HandoverRegistry();
      again.addPool(pool);
      again.prepare().abort(new Error('test'));
      pool.close();
    } finally {
      cleanup();
    }
  });
});

describe('handover edge cases', () => {
  test('a pool node carried in but not restored is dropped, so the next program can still restore', () => {
    const a = shmPath('keep');
    const b = shmPath('drop');
    try {
      const poolA = Pool.create(a.path, { size: '4M' });
      const poolB = Pool.create(b.path, { size: '4M' });
      const v1 = new HandoverRegistry();
      v1.addPool(poolA, 'a');
      v1.addPool(poolB, 'b');
      const first = writeBlob(v1.prepare().bytes);
      poolA.close();
      poolB.close();
      // v2 restores only "a" and hands over again.
      const v2 = new HandoverRegistry();
      const restoredA = restorePool(v2, v2.incoming(['node', `--pmpool-fdt=${first}`])!, 'a');
      const second = v2.prepare();
      assert.equal(second.fdt.has('/pools/a'), true);
      assert.equal(second.fdt.has('/pools/b'), false, 'b was not restored: its node would be stale');
      restoredA.close();
      // v3 accepts the handover and restores "a"; "b" is still openable the cold way.
      const v3 = new HandoverRegistry();
      const incoming = v3.incoming(['node', `--pmpool-fdt=${writeBlob(second.bytes)}`])!;
      restorePool(v3, incoming, 'a').close();
      Pool.open(b.path).close();
    } finally {
      a.cleanup();
      b.cleanup();
    }
  });

  test('one handover at a time; after an abort, its blob is never accepted, even after the next handover', () => {
    const { path, cleanup } = shmPath('burn');
    try {
      const pool = Pool.create(path, { size: '4M' });
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      const attempt = registry.prepare();
      expectHandoverError(() => registry.prepare(), 'BUSY');
      const abandoned = attempt.bytes;
      attempt.abort(new Error('upgrade cancelled'));
      const next = registry.prepare();
      assert.equal(next.generation, 3n);
      next.abort(new Error('test'));
      pool.close();
      const e = expectHandoverError(() => {
        const r = new HandoverRegistry();
        restorePool(r, r.incoming(['node', `--pmpool-fdt=${writeBlob(abandoned)}`])!).close();
      }, 'STALE');
      assert.match(e.message, /generation/);
    } finally {
      cleanup();
    }
  });

  test('abort() and complete() act once: a late abort does not resume the pools of a later handover', () => {
    const { path, cleanup } = shmPath('abort-once');
    try {
      const pool = Pool.create(path, { size: '4M' });
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      const aborts: string[] = [];
      registry.onHandover('client', () => undefined, { onAbort: (reason) => aborts.push(reason.message) });
      const first = registry.prepare();
      first.abort(new Error('first'));
      const second = registry.prepare();
      first.abort(new Error('first, again'));
      first.complete();
      // The second handover still holds its pools quiesced, and is still the one under way.
      expectError(() => pool.alloc(1), PoolError, 'QUIESCED');
      expectHandoverError(() => registry.prepare(), 'BUSY');
      assert.deepEqual(aborts, ['first']);
      second.complete();
      second.abort(new Error('after complete'));
      expectError(() => pool.alloc(1), PoolError, 'QUIESCED');
      assert.deepEqual(aborts, ['first']);
      pool.close();
    } finally {
      cleanup();
    }
  });

  test('a refused incoming blob does not block this program\'s own handovers', () => {
    const h = handedOver('refused-then-cold');
    try {
      const bytes = h.prepared.bytes.slice();
      bytes[0] = 0;
      const bad = h.blob(bytes);
      const registry = new HandoverRegistry();
      const argv = ['node', `--pmpool-fdt=${bad}`];
      expectHandoverError(() => registry.incoming(argv), 'BAD_BLOB');
      assert.equal(registry.incoming(argv), null, 'refused once: a cold start from then on');
      const pool = Pool.open(h.path);
      registry.addPool(pool);
      const prepared = registry.prepare();
      assert.equal(prepared.generation, 2n);
      prepared.abort(new Error('test'));
      pool.close();
      unlinkSync(bad);
    } finally {
      h.cleanup();
    }
  });

  test('generations at the top of the u64 range: a blob is refused, a pool is not handed over, neither wraps to 0', () => {
    const U64_MAX = 2n ** 64n - 1n;
    const h = handedOver('generation-top');
    try {
      // A blob whose generation leaves no N + 1 for the next handover (and no N + 2 for its rollback).
      for (const top of [U64_MAX, U64_MAX - 1n]) {
        const fdt = Fdt.parse(h.prepared.bytes);
        fdt.set('/', 'pmpool,generation', top);
        fdt.set('/pools/default_pmpool', 'generation', top);
        const blob = h.blob(fdt.toBytes());
        const registry = new HandoverRegistry();
        const e = expectHandoverError(() => registry.incoming(['node', `--pmpool-fdt=${blob}`]), 'BAD_BINDING');
        assert.match(e.message, /generation/);
        unlinkSync(blob);
        // Refused, a cold start: this program's own handovers go on.
        const pool = Pool.open(h.path);
        registry.addPool(pool);
        const before = pool.generation;
        const prepared = registry.prepare();
        assert.equal(prepared.generation, before + 1n);
        prepared.abort(new Error('test'));
        pool.close();
      }
      // A pool whose superblock is that far on: no handover, rather than a rollback that writes 2^64 (0 on disk).
      const pool = Pool.open(h.path);
      pool.setGeneration(U64_MAX - 1n);
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      expectHandoverError(() => registry.prepare(), 'STALE');
      const a = pool.alloc(1);
      pool.release(a.pfn, a.count);
      pool.close();
      const reopened = Pool.open(h.path);
      assert.equal(reopened.generation, U64_MAX - 1n);
      reopened.close();
    } finally {
      h.cleanup();
    }
  });

  test('a rollback resumes every pool even when restoring its generation fails', () => {
    const { path, cleanup } = shmPath('rollback-lock');
    try {
      Pool.create(path, { size: '4M' }).close();
      const pool = Pool.open(path, { lockTimeoutMs: 100 });
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      registry.onHandover('fails', () => {
        throw new Error('no');
      });
      // Another open holds the pool lock while the rollback wants it.
      const holder = Pool.open(path);
      registry.onHandover('grab', () => undefined, {
        onAbort: () => poolInternals(holder).parts.control.lock(),
      });
      expectHandoverError(() => registry.prepare(), 'CALLBACK_FAILED');
      poolInternals(holder).parts.control.unlock();
      const a = pool.alloc(1);
      pool.release(a.pfn, a.count);
      assert.equal(pool.check().ok, true);
      holder.close();
      pool.close();
    } finally {
      cleanup();
    }
  });

  test('a sub-pool is refused for handover: its parent is what is handed over', () => {
    const { path, cleanup } = shmPath('subpool-handover');
    try {
      const pool = Pool.create(path, { size: '8M' });
      const sub = pool.subpool('cache', { count: 256 });
      expectHandoverError(() => new HandoverRegistry().addPool(sub, 'cache'), 'BAD_ARGUMENT');
      pool.close();
    } finally {
      cleanup();
    }
  });
});

describe('options that are not an object, or fields of the wrong type', () => {

  test('each kexec entry point refuses them with BAD_ARGUMENT before anything is quiesced or written', async () => {
    const shm = shmPath('bad-options');
    const pool = Pool.create(shm.path, { size: '4M' });
    try {
      const registry = new HandoverRegistry();
      registry.addPool(pool);
      const generation = pool.generation;
      const sync: [string, (options: never) => unknown][] = [
        ['prepare options', (o) => registry.prepare(o)],
        ['onHandover options', (o) => registry.onHandover('client', () => undefined, o)],
        ['upgradeOnSignal options', (o) => kexec.upgradeOnSignal('SIGUSR2', o)],
      ];
      const listeners = process.listenerCount('SIGUSR2');
      for (const [what, call] of sync) {
        for (const bad of NOT_OBJECTS) {
          const e = expectHandoverError(() => call(bad as never), 'BAD_ARGUMENT');
          assert.equal(e.message, `${what} must be an object, got ${shown(bad)}`);
        }
      }
      const async: [string, (options: never) => Promise<unknown>][] = [
        ['exec options', (o) => execInPlace(registry, '/bin/true', [], o)],
        ['spawn options', (o) => spawnNext(registry, '/bin/true', [], o)],
      ];
      for (const [what, call] of async) {
        for (const bad of NOT_OBJECTS) {
          await assert.rejects(call(bad as never), (e: unknown) => e instanceof HandoverError && e.code === 'BAD_ARGUMENT' && e.message === `${what} must be an object, got ${shown(bad)}`);
        }
      }
      const fields: [(options: never) => unknown, object][] = [
        [(o) => registry.prepare(o), { from: 42 }],
        [(o) => registry.onHandover('client', () => undefined, o), { onAbort: 'log it' }],
        [(o) => kexec.upgradeOnSignal('SIGUSR2', o), { passFlag: 'no' }],
        [(o) => kexec.upgradeOnSignal('SIGUSR2', o), { teardown: 'later' }],
      ];
      for (const [call, options] of fields) expectHandoverError(() => call(options as never), 'BAD_ARGUMENT');
      // A callback's name is what its CALLBACK_FAILED message calls it.
      for (const name of [42, '', undefined, null, {}]) {
        const e = expectHandoverError(() => registry.onHandover(name as never, () => undefined), 'BAD_ARGUMENT');
        assert.match(e.message, /^onHandover needs a name, got /);
      }
      const asyncFields: object[] = [{ env: 'PATH=/bin' }, { env: null }, { blobDir: 7 }, { blobDir: '' }, { passFlag: 1 }, { from: {} }];
      for (const options of asyncFields) {
        await assert.rejects(execInPlace(registry, '/bin/true', [], options as never), (e: unknown) => e instanceof HandoverError && e.code === 'BAD_ARGUMENT');
        await assert.rejects(spawnNext(registry, '/bin/true', [], options as never), (e: unknown) => e instanceof HandoverError && e.code === 'BAD_ARGUMENT');
      }
      // exec() alone tears an image down: a teardown that is neither way is refused before anything is prepared.
      for (const teardown of ['later', 'Background', true, null, 0]) {
        await assert.rejects(execInPlace(registry, '/bin/true', [], { teardown } as never), (e: unknown) => e instanceof HandoverError && e.code === 'BAD_ARGUMENT' && e.message === `teardown must be "auto", "background" or "inline", got ${shown(teardown)}`);
      }
      for (const stdioTimeoutMs of [Number.NaN, -1, Infinity, '10s']) {
        await assert.rejects(execInPlace(registry, '/bin/true', [], { stdioTimeoutMs } as never), (e: unknown) => e instanceof HandoverError && e.code === 'BAD_ARGUMENT' && e.message.startsWith('stdioTimeoutMs must be a finite number of milliseconds'));
      }
      for (const options of [{ readyTimeoutMs: Number.NaN }, { readyTimeoutMs: -1 }, { readyTimeoutMs: '10s' }, { stdio: 'inherited' }, { stdio: ['pipe'] }]) {
        await assert.rejects(spawnNext(registry, '/bin/true', [], options as never), (e: unknown) => e instanceof HandoverError && e.code === 'BAD_ARGUMENT');
      }
      for (const bad of [null, 42, {}, shm.path]) expectHandoverError(() => registry.addPool(bad as never, 'other'), 'BAD_ARGUMENT');
      // The command-line and restore helpers: argv not an array of strings, a pool name that is no
      // string, a handover that is not one. With the flag present, so that nothing is refused for lack of it.
      const flag = [`--pmpool=${shm.path},4M`];
      for (const argv of [null, 42, 'node app.js', [1, 2], [flag[0], null]]) {
        const e = expectHandoverError(() => kexec.poolFromCommandLine(argv as never), 'BAD_ARGUMENT');
        assert.match(e.message, /needs argv as an array of strings/);
      }
      for (const name of [42, null, {}, ['pool']]) {
        expectHandoverError(() => kexec.poolFromCommandLine(flag, name as never), 'BAD_ARGUMENT');
        expectHandoverError(() => kexec.poolFromCommandLine([], name as never), 'BAD_ARGUMENT');
      }
      for (const bad of [null, 42, {}, { fdt: {}, generation: 1n }]) {
        const e = expectHandoverError(() => kexec.restoreAll(bad as never), 'BAD_ARGUMENT');
        assert.equal(e.message, 'kexec.restoreAll needs the handover from kexec.incoming()');
      }
      // Nothing changed: no listener, the pool neither quiesced nor moved on, and a handover still works.
      assert.equal(process.listenerCount('SIGUSR2'), listeners);
      assert.equal(pool.generation, generation);
      pool.release(pool.alloc(1).pfn, 1);
      assert.deepEqual([...registry.registeredPools().keys()], ['default_pmpool']);
      const prepared = registry.prepare({ from: 'test' });
      assert.equal(prepared.generation, generation + 1n);
      prepared.abort(new Error('test over'));
    } finally {
      pool.close();
      shm.cleanup();
    }
  });
});
