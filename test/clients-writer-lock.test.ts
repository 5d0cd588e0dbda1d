/**
 * The clients' writer lock (src/clients/writer-lock.ts) judges its holder as
 * the pool lock does: a writer of another PID namespace by its liveness mark,
 * a worker thread by its task, a process that exec'd in place by its image.
 * Each test has a live holder refused to a second writer (BUSY), then the
 * holder gone and its lock broken.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { LogRing, PersistentMap, Pool } from '../src/index.js';
import { ClientError } from '../src/clients/index.js';
import { PMPOOL_ENTRY, runModule, shmPath, startModule } from './support/child.js';
import { inNewPidNamespace, killNamespace, untilReady } from './support/pid-namespace.js';

function expectBusy(open: () => unknown, holder: RegExp): void {
  assert.throws(open, (e: unknown) => e instanceof ClientError && e.code === 'BUSY' && holder.test(e.message), `BUSY naming ${holder}`);
}

/** The pool's map "kv" and ring "log", opened by this program for `fn` (the lock of a holder gone broken) and closed after it. */
function withClients(pool: Pool, fn: (map: PersistentMap, ring: LogRing) => void): void {
  const ring = LogRing.open(pool, 'log');
  const map = PersistentMap.open(pool, 'kv');
  try {
    fn(map, ring);
  } finally {
    ring.close();
    map.close();
  }
}

describe('the clients\' writer lock', () => {
  test('a pool closed before its map and ring closes them first: their locks are free to another process, the map closed clean', () => {
    const { path, cleanup } = shmPath('wl-pool-first');
    try {
      const pool = Pool.create(path, { size: '16M' });
      const map = PersistentMap.open(pool, 'kv');
      const ring = LogRing.open(pool, 'log', { bytes: 4096 });
      for (let i = 0; i < 1000; i++) map.set(`key ${i}`, `value ${i}`);
      ring.append('kept');
      pool.close();
      assert.equal(map.closed, true);
      assert.equal(ring.closed, true);
      // A use afterwards says why they are closed.
      for (const use of [() => map.get('key 1'), () => ring.append('late')]) {
        assert.throws(use, (e: unknown) => e instanceof ClientError && e.code === 'CLOSED' && /its pool is closed/.test(e.message));
      }
      map.close(); // their own close() afterwards is the no-op it is on any closed client
      ring.close();
      // Another process, while this one lives: before, both opens were BUSY, naming this process.
      const other = runModule(
        `import { Pool, PersistentMap, LogRing } from ${JSON.stringify(PMPOOL_ENTRY)};
         const pool = Pool.open(process.argv[1]);
         let sweeps = 0;
         const all = pool.allocations.bind(pool);
         pool.allocations = () => (sweeps++, all());
         const map = PersistentMap.open(pool, 'kv');
         const ring = LogRing.open(pool, 'log');
         process.stdout.write(JSON.stringify({ size: map.size, last: map.get('key 999'), sweeps, records: ring.records().map((r) => r.text) }));
         pool.close();`,
        [path],
      );
      assert.equal(other.status, 0, other.stderr);
      assert.deepEqual(JSON.parse(other.stdout), { size: 1000, last: 'value 999', sweeps: 0, records: ['kept'] });
    } finally {
      cleanup();
    }
  });

  test('a writer of another PID namespace is BUSY to this one while it lives; once it is killed, its lock is broken', async () => {
    const { path, cleanup } = shmPath('wl-pidns');
    let holder: ChildProcess | undefined;
    try {
      const pool = Pool.create(path, { size: '16M' });
      try {
        LogRing.open(pool, 'log', { bytes: 64 * 1024 }).close();
        PersistentMap.open(pool, 'kv').close();
        holder = await inNewPidNamespace(
          `import { LogRing, PersistentMap, Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
           const pool = Pool.open(${JSON.stringify(path)});
           const ring = LogRing.open(pool, 'log');
           const map = PersistentMap.open(pool, 'kv');
           ring.append('from the other namespace');
           map.set('who', 'the other namespace');
           process.stdout.write('ready\\n');
           setInterval(() => {}, 1000);`,
        );
        // Its pid (1, or some small number) is another process here, or none: the lock is not broken for that.
        expectBusy(() => LogRing.open(pool, 'log'), /by process \d+ of another PID namespace/);
        expectBusy(() => PersistentMap.open(pool, 'kv'), /by process \d+ of another PID namespace/);
        await killNamespace(holder);
        holder = undefined;
        withClients(pool, (map, ring) => {
          assert.deepEqual(ring.records().map((r) => r.text), ['from the other namespace']);
          assert.equal(map.get('who'), 'the other namespace');
          ring.append('here');
          map.set('who', 'here');
        });
        assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
      } finally {
        pool.close();
      }
    } finally {
      if (holder) await killNamespace(holder);
      cleanup();
    }
  });

  test('a worker thread that died holding the writer lock leaves it to be broken by another thread of its process', async () => {
    const { path, cleanup } = shmPath('wl-worker');
    try {
      const pool = Pool.create(path, { size: '16M' });
      try {
        PersistentMap.open(pool, 'kv').close();
        LogRing.open(pool, 'log', { bytes: 64 * 1024 }).close();
        const worker = new Worker(
          `import { LogRing, PersistentMap, Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
           import { parentPort } from 'node:worker_threads';
           const pool = Pool.open(${JSON.stringify(path)});
           const map = PersistentMap.open(pool, 'kv');
           const ring = LogRing.open(pool, 'log');
           map.set('who', 'the worker');
           ring.append('the worker');
           parentPort.postMessage('ready');
           parentPort.once('message', () => { throw new Error('the worker dies holding both writer locks'); });`,
          { eval: true, type: 'module' } as never,
        );
        await new Promise<void>((resolve, reject) => {
          worker.once('message', () => resolve());
          worker.once('error', reject);
        });
        // Alive: another thread of this process holds them.
        expectBusy(() => PersistentMap.open(pool, 'kv'), /by thread \d+ of this process/);
        expectBusy(() => LogRing.open(pool, 'log'), /by thread \d+ of this process/);
        const died = new Promise((resolve) => worker.once('error', resolve));
        const exited = new Promise((resolve) => worker.once('exit', resolve));
        worker.postMessage('die');
        await died;
        await exited;
        withClients(pool, (map, ring) => {
          assert.equal(map.get('who'), 'the worker');
          assert.deepEqual(ring.records().map((r) => r.text), ['the worker']);
        });
      } finally {
        pool.close();
      }
    } finally {
      cleanup();
    }
  });

  test('a writer that exec\'d in place into another program holds no lock, for any process', async () => {
    const { path, cleanup } = shmPath('wl-exec');
    let holder: ChildProcess | undefined;
    try {
      Pool.create(path, { size: '16M' }).close();
      holder = startModule(
        `import { kexec, LogRing, PersistentMap, Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
         const pool = Pool.open(${JSON.stringify(path)});
         PersistentMap.open(pool, 'kv').set('who', 'before the exec');
         LogRing.open(pool, 'log', { bytes: 64 * 1024 }).append('before the exec');
         process.stdout.write('ready\\n');
         // Neither client closed: the next program (same pid and start time) knows nothing of them.
         await kexec.exec('/bin/sh', ['-c', 'rm -f "$PMPOOL_FDT"; exec sleep 30']);`,
      );
      await untilReady(holder);
      const pool = Pool.open(path);
      try {
        // The pid lives on, with its start time: only the image tells.
        let map: PersistentMap | undefined;
        for (let tries = 0; map === undefined; tries++) {
          try {
            map = PersistentMap.open(pool, 'kv');
          } catch (e) {
            // Until the exec has happened, the writer is the live first program.
            if (!(e instanceof ClientError && e.code === 'BUSY') || tries > 500) throw e;
            await new Promise((r) => setTimeout(r, 10));
          }
        }
        const ring = LogRing.open(pool, 'log');
        try {
          assert.equal(map.get('who'), 'before the exec');
          assert.deepEqual(ring.records().map((r) => r.text), ['before the exec']);
          assert.equal(holder.exitCode, null, 'the next program is still running');
        } finally {
          map.close();
          ring.close();
        }
      } finally {
        pool.close();
      }
    } finally {
      holder?.kill('SIGKILL');
      // The next program removes its blob first thing; killed before it got to, it leaves it.
      for (const f of readdirSync('/dev/shm')) if (f.startsWith(`pmpool-handover-${holder?.pid}-`)) rmSync(join('/dev/shm', f), { force: true });
      cleanup();
    }
  });

  test('a writer stopped (SIGSTOP) between its claim of the lock and its confirmation keeps the lock: BUSY, never broken', async () => {
    const { path, cleanup } = shmPath('wl-stopped');
    let claimer: ChildProcess | undefined;
    try {
      const pool = Pool.create(path, { size: '16M' });
      try {
        PersistentMap.open(pool, 'kv').close();
        LogRing.open(pool, 'log', { bytes: 64 * 1024 }).close();
        claimer = startModule(
          `import { LogRing, PersistentMap, Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
           import { setWriterLockFaultHook } from ${JSON.stringify(new URL('./clients/writer-lock.js', PMPOOL_ENTRY).href)};
           const pool = Pool.open(${JSON.stringify(path)});
           // Stopped right after each claim, its identity not yet written.
           setWriterLockFaultHook(() => process.kill(process.pid, 'SIGSTOP'));
           process.stdout.write('claiming the map\\n');
           const map = PersistentMap.open(pool, 'kv');
           process.stdout.write('claiming the ring\\n');
           const ring = LogRing.open(pool, 'log');
           setWriterLockFaultHook(null);
           map.set('who', 'the stopped writer');
           ring.append('the stopped writer');
           process.stdout.write('ready\\n');
           setInterval(() => {}, 1000);`,
        );
        let said = '';
        claimer.stdout!.on('data', (d: Buffer) => (said += d.toString()));
        /** Once the claimer has said `line` and is stopped since. */
        const stoppedAfter = async (line: string) => {
          for (;;) {
            if (claimer!.exitCode !== null) throw new Error(`the claimer exited (${claimer!.exitCode})`);
            const stat = readFileSync(`/proc/${claimer!.pid}/stat`, 'utf8');
            if (said.includes(`${line}\n`) && stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return;
            await new Promise((r) => setTimeout(r, 5));
          }
        };
        // An open past its grace for a claimer that has not said who it is finds the claimer alive: BUSY, its lock kept.
        await stoppedAfter('claiming the map');
        expectBusy(() => PersistentMap.open(pool, 'kv'), /being opened for writing/);
        claimer.kill('SIGCONT');
        await stoppedAfter('claiming the ring');
        expectBusy(() => LogRing.open(pool, 'log'), /being opened for writing/);
        claimer.kill('SIGCONT');
        await untilReady(claimer);
        expectBusy(() => PersistentMap.open(pool, 'kv'), /by process \d+/);
        expectBusy(() => LogRing.open(pool, 'log'), /by process \d+/);
        claimer.kill('SIGKILL');
        await new Promise((resolve) => claimer!.once('exit', resolve));
        claimer = undefined;
        withClients(pool, (map, ring) => {
          assert.equal(map.get('who'), 'the stopped writer');
          assert.deepEqual(ring.records().map((r) => r.text), ['the stopped writer']);
          assert.ok(map.check().ok);
        });
      } finally {
        pool.close();
      }
    } finally {
      claimer?.kill('SIGKILL');
      cleanup();
    }
  });

  test('words an earlier writer left beside the lock say nothing of the next one, which is judged by /proc', async () => {
    // A live writer whose words 9-13 are another token's, as a pmpool that writes none of them
    // leaves the last writer's that did: a task that does not exist, another namespace.
    const { path, cleanup } = shmPath('wl-stale');
    let holder: ChildProcess | undefined;
    try {
      Pool.create(path, { size: '16M' }).close();
      holder = startModule(
        `import { PersistentMap, Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
         const pool = Pool.open(${JSON.stringify(path)});
         const map = PersistentMap.open(pool, 'kv');
         const header = pool.find('kv').bytes(128, 56); // the writer lock's 14 words
         const words = new Uint32Array(header.buffer, header.byteOffset, 14);
         words[9] = 0x7ffffff0; // no such task
         words[12] = 0x7fff0001; // nobody's namespace
         words[13] = (0x80000000 | ((words[0] % 0x7ffffffe) + 1)) >>> 0; // another token's, marked
         for (const id of [words[0], 2 ** 32 + words[0]]) pool.region.releaseLivenessMark(id); // as a pmpool that takes none
         process.stdout.write('ready\\n');
         setInterval(() => map.size, 1000);`,
      );
      await untilReady(holder);
      const pool = Pool.open(path);
      try {
        expectBusy(() => PersistentMap.open(pool, 'kv'), /by process \d+(?! of another)/);
        holder.kill('SIGKILL');
        await new Promise((resolve) => holder!.once('exit', resolve));
        holder = undefined;
        PersistentMap.open(pool, 'kv').close(); // dead: broken
      } finally {
        pool.close();
      }
    } finally {
      holder?.kill('SIGKILL');
      cleanup();
    }
  });
});
