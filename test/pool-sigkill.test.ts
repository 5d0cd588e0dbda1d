/**
 * Crash consistency with real processes and real SIGKILL (issue items 4
 * and 5), on a /dev/shm pool:
 *  - several processes churn one pool (allocate named runs, fill and seal
 *    them, verify and release them); the test kills one at a random moment,
 *    hundreds of times. After every kill: Pool.open and check() are clean,
 *    and every sealed run of the dead process holds its data.
 *  - a process stopped at a chosen store inside an alloc or a release, lock
 *    held: a live holder is waited for (LOCK_TIMEOUT), never broken; killed,
 *    it is detected as dead by the next locker (pid + start time), its lock
 *    broken (lockBreaks + 1) and its operation repaired, all or nothing.
 *
 * Replay a run's choices: PMPOOL_SIGKILL_SEED=<seed printed by a run>.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool, PoolError } from '../src/pool/index.js';
import { poolInternals, setAttachHook } from '../src/pool/internals.js';
import { CONTROL_LAYOUT } from '../src/pool/control.js';
import { PersistentMap } from '../src/clients/index.js';
import { LOCK_INDEX } from '../src/clients/client-header.js';
import { PMPOOL_ENTRY, runModule, shmPath, startModule } from './support/child.js';
import { sealState } from './support/pool-churn.js';
import { Prng, testSeed } from './support/prng.js';

const CHURN_URL = new URL('./support/pool-churn.js', import.meta.url).href;
const INTERNALS_URL = new URL('./pool/internals.js', PMPOOL_ENTRY).href;
const KILLS = Number(process.env.PMPOOL_SIGKILL_KILLS ?? 200);
const CHILDREN = 3;

interface Churner {
  proc: ChildProcess;
  prefix: string;
  ready: Promise<void>;
  isReady: boolean;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
}

const CHURN_SOURCE = `
  import { writeSync } from 'node:fs';
  import { churn } from ${JSON.stringify(CHURN_URL)};
  const options = JSON.parse(process.argv[1]);
  try {
    churn({ ...options, iterations: Infinity, onReady: () => writeSync(1, 'ready\\n') });
  } catch (e) {
    writeSync(2, String(e && e.stack || e));
    process.exit(3);
  }
`;

function startChurner(path: string, prefix: string, seed: number): Churner {
  const proc = startModule(CHURN_SOURCE, [JSON.stringify({ path, prefix, seed, maxLive: 12, maxCount: 8 })]);
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const churner: Churner = { proc, prefix, ready: Promise.resolve(), isReady: false, exit, stderr: () => err };
  churner.ready = new Promise<void>((resolve) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d;
      if (out.includes('ready\n')) {
        churner.isReady = true;
        resolve();
      }
    });
    proc.once('exit', () => resolve());
  });
  return churner;
}

describe('SIGKILL', () => {
  test('processes killed at random moments, hundreds of times: every open is clean, sealed data intact', async (t) => {
    const seed = testSeed('PMPOOL_SIGKILL_SEED');
    const rng = new Prng(seed);
    const { path, cleanup } = shmPath('sigkill');
    const children: Churner[] = [];
    let incarnation = 0;
    const spawn = (): Churner => startChurner(path, `c${incarnation++}`, rng.next());
    let lockBreaks = 0;
    let killsUnderLock = 0;
    let intactRuns = 0;
    let unsealedRuns = 0;
    let recoveries = 0;
    try {
      Pool.create(path, { size: '16M' }).close();
      for (let i = 0; i < CHILDREN; i++) children.push(spawn());

      /** Opens the pool as the next program would; check() must be clean. Verifies, then releases, the runs named `prefix`. */
      const inspect = (label: string, prefix: string | null): void => {
        const pool = Pool.open(path);
        try {
          if (pool.recovered.length > 0) recoveries++;
          const report = pool.check();
          assert.deepEqual(report, { ok: true, problems: [], repaired: [] }, `${label} (seed ${seed})`);
          const breaks = pool.stats().lockBreaks;
          if (breaks > lockBreaks) killsUnderLock++;
          lockBreaks = breaks;
          for (const a of pool.allocations()) {
            if (prefix !== null && !a.name!.startsWith(`${prefix}-`)) continue;
            const state = sealState(a, a.name!);
            assert.notEqual(state, 'damaged', `${label}: ${a.name} at pfn ${a.pfn} was sealed and is damaged (seed ${seed})`);
            if (state === 'intact') intactRuns++;
            else unsealedRuns++;
            pool.release(a.pfn, a.count, { owner: a.owner });
          }
        } finally {
          pool.close();
        }
      };

      for (let kill = 0; kill < KILLS; kill++) {
        // A churning child, at random (while the others start up again, the ready ones take the kills).
        if (!children.some((c) => c.isReady)) await Promise.race(children.map((c) => c.ready));
        const ready = children.filter((c) => c.isReady);
        const victim = ready.length > 0 ? rng.pick(ready) : children[rng.int(CHILDREN)]!;
        const slot = children.indexOf(victim);
        await sleep(rng.range(1, 30));
        victim.proc.kill('SIGKILL');
        const { code, signal } = await victim.exit;
        assert.equal(signal, 'SIGKILL', `${victim.prefix} ended by itself (code ${code}) before the kill: ${victim.stderr()}`);
        inspect(`after kill ${kill + 1} (${victim.prefix})`, victim.prefix);
        children[slot] = spawn();
      }
      for (const c of children) c.proc.kill('SIGKILL');
      for (const c of children) {
        const { code, signal } = await c.exit;
        assert.ok(signal === 'SIGKILL' || code === 0, `${c.prefix}: ${c.stderr()}`);
      }
      inspect('after the last kills', null);
      // The repair after a kill is what this test is for: kills that all fell between two
      // operations (a churner spending its time outside the lock) would leave it unexercised.
      assert.ok(killsUnderLock > 0, `none of ${KILLS} kills left the pool lock held (seed ${seed})`);
      const pool = Pool.open(path);
      assert.equal(pool.allocations().length, 0);
      assert.equal(pool.stats().free, pool.stats().pages - pool.stats().metadata - pool.stats().tail);
      pool.close();
      t.diagnostic(
        `seed ${seed}: ${KILLS} kills of ${incarnation} processes; ${killsUnderLock} left the lock held (broken: ${lockBreaks}), ` +
          `${recoveries} opens repaired an interrupted operation; ${intactRuns} sealed runs verified, ${unsealedRuns} unsealed`,
      );
    } finally {
      for (const c of children) c.proc.kill('SIGKILL');
      await Promise.all(children.map((c) => c.exit));
      cleanup();
    }
  });

  /** A process that opens the pool, then stops dead (spinning, lock held) right after store `stopAt` of one operation. */
  const HOLDER_SOURCE = `
    import { writeSync } from 'node:fs';
    import { Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
    import { poolInternals, setAttachHook } from ${JSON.stringify(INTERNALS_URL)};
    const [path, op, stopAtText] = process.argv.slice(1);
    const stopAt = Number(stopAtText);
    setAttachHook(() => {}); // attached under a hook, the pool gets a traced writer, whose store log is set below
    const pool = Pool.open(path);
    setAttachHook(null);
    const { parts } = poolInternals(pool);
    const victim = op === 'release' ? pool.find('victim') : undefined;
    const victimCommitted = () => {
      const d = parts.directory;
      for (let slot = 0; slot < d.capacity; slot++) if (d.status(slot) === 'live' && d.name(slot) === 'victim') return true;
      return false;
    };
    let n = 0;
    parts.writer.log = { records: { push(r) {
      if (!('offset' in r)) return 0;
      if (++n === stopAt) {
        const state = { stopped: n, intent: parts.control.intent(), lockHeld: parts.control.held(), committed: victimCommitted() };
        writeSync(1, JSON.stringify(state) + '\\n');
        for (;;) {}
      }
      return 0;
    } } };
    if (op === 'alloc') pool.alloc(3, { name: 'victim', owner: 'holder' });
    else pool.release(victim.pfn, victim.count, { owner: 'holder' });
    writeSync(1, JSON.stringify({ finished: n }) + '\\n');
  `;

  interface HolderState {
    stopped?: number;
    finished?: number;
    intent?: unknown;
    lockHeld?: boolean;
    committed?: boolean;
  }

  function runHolder(path: string, op: 'alloc' | 'release', stopAt: number): { proc: ChildProcess; state: Promise<HolderState>; exit: Promise<unknown> } {
    const proc = startModule(HOLDER_SOURCE, [path, op, String(stopAt)]);
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => (err += d));
    const exit = new Promise((resolve) => proc.once('exit', resolve));
    const state = new Promise<HolderState>((resolve, reject) => {
      let out = '';
      proc.stdout!.on('data', (d: Buffer) => {
        out += d;
        const line = out.indexOf('\n');
        if (line >= 0) resolve(JSON.parse(out.slice(0, line)) as HolderState);
      });
      proc.once('exit', (code) => reject(new Error(`holder exited (${code}) without a word: ${err}`)));
    });
    return { proc, state, exit };
  }

  test('a holder killed mid-operation is detected by pid + start time, its lock broken and its operation repaired', async (t) => {
    const { path, cleanup } = shmPath('holder');
    let stops = 0;
    let timeouts = 0;
    try {
      Pool.create(path, { size: '4M' }).close();
      {
        const pool = Pool.open(path);
        pool.alloc(5, { name: 'bystander' });
        pool.close();
      }
      const cases: ['alloc' | 'release', number][] = [
        ...[1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 25, 28].map((k) => ['alloc', k] as ['alloc', number]),
        ...[1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 24].map((k) => ['release', k] as ['release', number]),
      ];
      for (const [op, stopAt] of cases) {
        const label = `${op} stopped after store ${stopAt}`;
        // Set the stage: the victim exists before a release, not before an alloc.
        {
          const pool = Pool.open(path);
          const v = pool.find('victim');
          if (op === 'release' && !v) pool.alloc(3, { name: 'victim', owner: 'holder' });
          if (op === 'alloc' && v) pool.release(v.pfn, v.count, { owner: 'holder' });
          pool.close();
        }
        const before = (() => {
          const pool = Pool.open(path);
          const breaks = pool.stats().lockBreaks;
          pool.close();
          return breaks;
        })();
        const holder = runHolder(path, op, stopAt);
        const state = await holder.state;
        if (state.finished !== undefined) {
          // The operation has fewer stores than stopAt: it simply completed.
          await holder.exit;
        } else {
          stops++;
          if (state.lockHeld && timeouts < 2) {
            // Alive and holding: waited for, then LOCK_TIMEOUT — never broken.
            assert.throws(() => Pool.open(path, { lockTimeoutMs: 150 }), (e: unknown) => e instanceof PoolError && e.code === 'LOCK_TIMEOUT', label);
            timeouts++;
          }
          holder.proc.kill('SIGKILL');
          await holder.exit;
        }
        const pool = Pool.open(path);
        try {
          const report = pool.check();
          assert.deepEqual(report, { ok: true, problems: [], repaired: [] }, label);
          const breaks = pool.stats().lockBreaks;
          assert.equal(breaks - before, state.lockHeld ? 1 : 0, `${label}: lock breaks`);
          if (state.intent) assert.ok(pool.recovered.some((r) => r.startsWith(`repaired an interrupted ${op}`)), `${label}: ${pool.recovered.join('; ')}`);
          else assert.deepEqual(pool.recovered, [], label);
          // All or nothing, decided by the commit store alone.
          const present = pool.find('victim') !== undefined;
          const expected = state.finished !== undefined ? op === 'alloc' : state.committed;
          assert.equal(present, expected, `${label}: victim ${present ? 'present' : 'absent'}`);
          assert.ok(pool.find('bystander'), label);
        } finally {
          pool.close();
        }
      }
      assert.ok(stops >= cases.length - 4, `${stops} of ${cases.length} holders stopped mid-operation`);
      t.diagnostic(`${stops} holders killed mid-operation, ${timeouts} LOCK_TIMEOUTs while they lived`);
    } finally {
      cleanup();
    }
  });

  test('run ids: a lock word whose holder never wrote its identity is broken; the stale identity beside it is not trusted', async () => {
    const { path, cleanup } = shmPath('stale-identity');
    let holder: ChildProcess | undefined;
    try {
      Pool.create(path, { size: '4M' }).close();
      // A live holder — the identity matches the lock word — is waited for, not broken. Another
      // process: this thread waiting for a lock recorded as its own would take the record for a
      // previous image's (liveness.ts isAliveForWaiter).
      holder = startModule(
        `import { Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
         import { poolInternals } from ${JSON.stringify(new URL('../src/pool/internals.js', import.meta.url).href)};
         poolInternals(Pool.open(${JSON.stringify(path)})).parts.control.lock();
         process.stdout.write('held\\n');
         setInterval(() => {}, 1000);`,
      );
      await new Promise<void>((resolve, reject) => {
        holder!.stdout!.once('data', () => resolve());
        holder!.once('exit', (code) => reject(new Error(`the holder exited (${code})`)));
      });
      assert.throws(() => Pool.open(path, { lockTimeoutMs: 100 }), (e: unknown) => e instanceof PoolError && e.code === 'LOCK_TIMEOUT');
      holder.kill('SIGKILL');
      await new Promise((resolve) => holder!.once('exit', resolve));
      holder = undefined;
      const pool = Pool.open(path); // the dead holder's lock broken
      const { parts } = poolInternals(pool);
      const control = pool.geometry.areas.control.offset;
      // The identity slot names this open (this process, alive) under its run id.
      pool.stats(); // a locked operation: this open writes its identity beside the lock word
      const ourRun = parts.writer.atomicLoad(control + CONTROL_LAYOUT.OWNER_RUN_ID);
      assert.notEqual(ourRun, 0);
      // Another run won the lock word and died before writing its identity: the identity beside
      // the word (alive, but of another run) says nothing about it. Broken after the grace period.
      parts.writer.atomicStore(control, (ourRun % 0x7ffffffe) + 1);
      pool.close();
      const again = Pool.open(path, { lockTimeoutMs: 10_000 });
      try {
        assert.equal(again.stats().lockBreaks, 2, 'the killed holder\'s, then the unidentified one\'s');
        assert.deepEqual(again.check(), { ok: true, problems: [], repaired: [] });
      } finally {
        again.close();
      }
    } finally {
      holder?.kill('SIGKILL');
      cleanup();
    }
  });

  /**
   * A process that opens the pool and allocates `name`, stopping itself (a real SIGSTOP) right after
   * its compare-and-swap claims the pool lock — before it has written who it is beside the word.
   */
  const CLAIMER_SOURCE = `
    import { writeSync } from 'node:fs';
    import { Pool } from ${JSON.stringify(PMPOOL_ENTRY)};
    import { poolInternals, setAttachHook } from ${JSON.stringify(INTERNALS_URL)};
    const [path, name] = process.argv.slice(1);
    setAttachHook(() => {}); // attached under a hook, the pool gets a traced writer, whose store log is set below
    const pool = Pool.open(path);
    setAttachHook(null);
    const { parts } = poolInternals(pool);
    const lockWord = pool.geometry.areas.control.offset + ${CONTROL_LAYOUT.LOCK_WORD};
    let stopped = false;
    parts.writer.log = { records: { push(r) {
      // The store log sees the claim (a successful compare-and-swap) before the identity's stores.
      if (!stopped && 'offset' in r && r.offset === lockWord && parts.writer.atomicLoad(lockWord) === parts.control.runId) {
        stopped = true;
        writeSync(1, 'claimed ' + parts.control.runId + '\\n');
        process.kill(process.pid, 'SIGSTOP');
      }
      return 0;
    } } };
    pool.alloc(2, { name });
    parts.writer.log = null;
    writeSync(1, 'allocated\\n');
    pool.close();
  `;

  /** Starts a claimer of `name`; resolves, with its run id, once it has claimed the lock and is stopped (state T in /proc). */
  function startClaimer(path: string, name: string): { proc: ChildProcess; said: () => string; stopped: Promise<number>; exit: Promise<number | null> } {
    const proc = startModule(CLAIMER_SOURCE, [path, name]);
    let out = '';
    let err = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d));
    proc.stderr!.on('data', (d: Buffer) => (err += d));
    const exit = new Promise<number | null>((resolve) => proc.once('exit', resolve));
    const stopped = (async () => {
      for (;;) {
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`the claimer exited (${proc.exitCode ?? proc.signalCode}): ${err}`);
        const claimed = /claimed (\d+)\n/.exec(out);
        const stat = readFileSync(`/proc/${proc.pid}/stat`, 'utf8');
        if (claimed && stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return Number(claimed[1]);
        await sleep(5);
      }
    })();
    return { proc, said: () => out, stopped, exit };
  }

  test('a claimer stopped (SIGSTOP) between its claim of the pool lock and its identity keeps the lock; killed there, its lock is broken', async () => {
    const { path, cleanup } = shmPath('claim-stopped');
    let claimer: ReturnType<typeof startClaimer> | undefined;
    try {
      // Opened before any claim, to look at the control page while the lock is held (an open waits only when it finds the lock held).
      const pool = Pool.create(path, { size: '4M' });
      try {
        const { parts } = poolInternals(pool);
        const control = pool.geometry.areas.control.offset;
        /** The lock word names `run`, which has not confirmed it: the claimer is stopped in its window. */
        const unconfirmed = (run: number) => {
          assert.equal(parts.writer.atomicLoad(control + CONTROL_LAYOUT.LOCK_WORD), run);
          assert.notEqual(parts.writer.atomicLoad(control + CONTROL_LAYOUT.OWNER_RUN_ID), run);
        };

        // Alive, though stopped: waited for past the identity grace (200 ms), then LOCK_TIMEOUT — never broken.
        claimer = startClaimer(path, 'stopped');
        unconfirmed(await claimer.stopped);
        assert.throws(
          () => Pool.open(path, { lockTimeoutMs: 2000 }).close(),
          (e: unknown) => e instanceof PoolError && e.code === 'LOCK_TIMEOUT' && /not yet written who it is/.test(e.message),
        );
        // Resumed, it goes on as the one holder: its allocation made, no lock broken.
        claimer.proc.kill('SIGCONT');
        assert.equal(await claimer.exit, 0);
        assert.ok(claimer.said().includes('allocated\n'));
        claimer = undefined;
        assert.ok(pool.find('stopped'));
        assert.equal(pool.stats().lockBreaks, 0);
        assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });

        // Killed in the same window, stopped or not: its open's liveness mark goes with it, and its lock is broken.
        claimer = startClaimer(path, 'killed');
        unconfirmed(await claimer.stopped);
        claimer.proc.kill('SIGKILL');
        await claimer.exit;
        claimer = undefined;
        const again = Pool.open(path, { lockTimeoutMs: 10_000 });
        try {
          assert.equal(again.stats().lockBreaks, 1);
          assert.equal(again.find('killed'), undefined);
          assert.ok(again.find('stopped'));
          assert.deepEqual(again.check(), { ok: true, problems: [], repaired: [] });
        } finally {
          again.close();
        }
      } finally {
        pool.close();
      }
    } finally {
      claimer?.proc.kill('SIGKILL');
      cleanup();
    }
  });

  test('an open whose identity write throws right after its claim takes the claim back: the lock is free for it and for others', () => {
    const { path, cleanup } = shmPath('claim-throws');
    try {
      Pool.create(path, { size: '4M' }).close();
      setAttachHook(() => {}); // attached under a hook, the pool gets a traced writer, whose store log is set below
      const pool = Pool.open(path);
      setAttachHook(null);
      try {
        const { parts } = poolInternals(pool);
        const lockWord = pool.geometry.areas.control.offset + CONTROL_LAYOUT.LOCK_WORD;
        let claimed = false;
        let thrown = false;
        parts.writer.log = { records: { push(r: { offset?: number }) {
          // The claim (a compare-and-swap) is logged before the identity's stores: the first of those fails.
          if (!claimed && r.offset === lockWord && parts.writer.atomicLoad(lockWord) === parts.control.runId) claimed = true;
          else if (claimed && !thrown) {
            thrown = true;
            throw new RangeError('Maximum call stack size exceeded');
          }
          return 0;
        } } } as unknown as typeof parts.writer.log;
        assert.throws(() => pool.alloc(2, { name: 'first' }), RangeError);
        parts.writer.log = null;
        assert.ok(thrown, 'the identity write failed');
        // Left claimed, the word would hold this open's run id under its live mark: waited for, never broken.
        assert.equal(parts.writer.atomicLoad(lockWord), 0, 'the claim is taken back');
        const other = Pool.open(path, { lockTimeoutMs: 2000 });
        try {
          other.alloc(1, { name: 'other' });
          assert.equal(other.stats().lockBreaks, 0);
        } finally {
          other.close();
        }
        pool.alloc(2, { name: 'second' });
        assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
      } finally {
        pool.close();
      }
    } finally {
      setAttachHook(null);
      cleanup();
    }
  });

  test('a wall clock set back while a holder is dead does not hold off the break (pool lock and map writer lock)', () => {
    const { path, cleanup } = shmPath('clock-back');
    try {
      const pool = Pool.create(path, { size: '4M' });
      PersistentMap.open(pool, 'kv').set('key', 'value').close();
      // Both locks taken by holders that died before writing who they are.
      const bytes = pool.find('kv')!.bytes();
      new Uint32Array(bytes.buffer, bytes.byteOffset, LOCK_INDEX + 1)[LOCK_INDEX] = 12345;
      const { parts } = poolInternals(pool);
      parts.writer.atomicStore(pool.geometry.areas.control.offset + CONTROL_LAYOUT.LOCK_WORD, 12345);
      pool.close();
      // In a child with a deadline, its wall clock set back an hour every 100 ms: waits timed by it never ended.
      const r = runModule(
        `const wall = Date.now;
         const first = wall();
         Date.now = () => wall() - 3_600_000 * Math.floor((wall() - first) / 100);
         const { Pool, PersistentMap } = await import(${JSON.stringify(PMPOOL_ENTRY)});
         const pool = Pool.open(process.argv[1]);
         const map = PersistentMap.open(pool, 'kv');
         process.stdout.write(JSON.stringify([pool.stats().lockBreaks, map.get('key')]));`,
        [path],
        [],
        20_000,
      );
      assert.equal(r.signal, null, 'the opens returned (they were not killed at the deadline)');
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), [1, 'value']);
    } finally {
      cleanup();
    }
  });
});
