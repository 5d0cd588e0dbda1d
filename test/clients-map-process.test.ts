/**
 * PersistentMap across real processes: a map of 1,000,000 entries that
 * survives an in-place execve (same PID, handover node verified) and then a
 * SIGKILL in the middle of rewriting it; a writer killed at random moments
 * of mixed work (growth, compaction, clear) again and again; readers in
 * another process while the writer writes.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from '../src/index.js';
import { PersistentMap } from '../src/clients/index.js';
import { crc32c } from '../src/util/crc32c.js';
import { PMPOOL_ENTRY, shmPath, startModule, tempDir } from './support/child.js';
import { runCreationRace } from './support/creation-race.js';
import { Prng, testSeed } from './support/prng.js';

const NATIVE_URL = new URL('./sys/native.js', PMPOOL_ENTRY).href;
const CRC_URL = new URL('./util/crc32c.js', PMPOOL_ENTRY).href;

/** Shared by the test and its children: a value names its key and round and carries a CRC, so garbage cannot pass for one. */
const VALUE_CODE = `
const enc = new TextEncoder();
function key(i) { return 'key:' + i.toString(16).padStart(12, '0'); }
function value(i, round) {
  const body = key(i) + '|r' + round + '|' + 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(3).slice(0, (i * 7 + round) % 64 + 20);
  return body + '|' + crc32c(enc.encode(body)).toString(16);
}
function roundOf(i, v) {
  if (typeof v !== 'string') return null;
  const bar = v.lastIndexOf('|');
  const body = v.slice(0, bar);
  if (bar < 0 || crc32c(enc.encode(body)).toString(16) !== v.slice(bar + 1)) return null;
  const m = /^([^|]*)\\|r(\\d+)\\|/.exec(body);
  return m && m[1] === key(i) ? Number(m[2]) : null;
}
`;
const enc = new TextEncoder();
const key = (i: number) => 'key:' + i.toString(16).padStart(12, '0');
function roundOf(i: number, v: unknown): number | null {
  if (typeof v !== 'string') return null;
  const bar = v.lastIndexOf('|');
  const body = v.slice(0, bar);
  if (bar < 0 || crc32c(enc.encode(body)).toString(16) !== v.slice(bar + 1)) return null;
  const m = /^([^|]*)\|r(\d+)\|/.exec(body);
  return m && m[1] === key(i) ? Number(m[2]) : null;
}

/** Resolves with the first stdout line that satisfies `pred` (and collects stderr for messages). */
function waitForLine(child: ReturnType<typeof startModule>, pred: (line: string) => boolean, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for the child; stderr: ${stderr}`)), timeoutMs);
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      buffer += d.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (pred(line)) {
          clearTimeout(timer);
          resolve(line);
        }
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`child exited (${code ?? signal}) before the expected line; stderr: ${stderr}`));
    });
  });
}

describe('PersistentMap across processes', () => {
  test('1,000,000 entries survive an in-place exec and a SIGKILL mid-rewrite: every entry old or new, never garbage', async () => {
    const N = 1_000_000;
    const { path, cleanup } = shmPath('map-1m');
    const tmp = tempDir();
    const fdtPath = join(tmp.dir, 'handover.dtb');
    const report = join(tmp.dir, 'report.txt');
    // Node opens fds 0-2 close-on-exec: after execve the program reports through a file.
    const stage2 = `
      import { Pool, PersistentMap, Fdt } from ${JSON.stringify(PMPOOL_ENTRY)};
      import { crc32c } from ${JSON.stringify(CRC_URL)};
      import { appendFileSync, readFileSync } from 'node:fs';
      ${VALUE_CODE}
      const [path, fdtPath, N, report] = [process.argv[1], process.argv[2], Number(process.argv[3]), process.argv[4]];
      process.on('uncaughtException', (e) => { appendFileSync(report, 'error ' + e.stack + '\\n'); process.exit(1); });
      const pool = Pool.open(path);
      const t0 = performance.now();
      const map = PersistentMap.open(pool, 'big', { handover: Fdt.parse(readFileSync(fdtPath)) });
      const openMs = performance.now() - t0;
      let intact = 0;
      for (let i = 0; i < N; i++) if (roundOf(i, map.get(key(i))) === 0) intact++;
      appendFileSync(report, JSON.stringify({ stage: 2, pid: process.pid, size: map.size, intact, openMs }) + '\\n');
      // Rewrite every entry, in a scattered order, round after round, until killed.
      for (let round = 1; ; round++) {
        for (let j = 0; j < N; j++) {
          const i = (j * 7919) % N;
          map.set(key(i), value(i, round));
          if (j % 100000 === 0) appendFileSync(report, 'progress ' + round + ' ' + j + '\\n');
        }
      }
    `;
    const stage1 = `
      import { Pool, PersistentMap, Fdt } from ${JSON.stringify(PMPOOL_ENTRY)};
      import { native } from ${JSON.stringify(NATIVE_URL)};
      import { crc32c } from ${JSON.stringify(CRC_URL)};
      import { appendFileSync, writeFileSync } from 'node:fs';
      ${VALUE_CODE}
      const [path, fdtPath, N, report, stage2] = [process.argv[1], process.argv[2], Number(process.argv[3]), process.argv[4], process.argv[5]];
      const pool = Pool.create(path, { size: '512M' });
      const map = PersistentMap.open(pool, 'big');
      for (let i = 0; i < N; i++) map.set(key(i), value(i, 0));
      const fdt = new Fdt();
      map.handoverNode(fdt);
      writeFileSync(fdtPath, fdt.toBytes());
      appendFileSync(report, JSON.stringify({ stage: 1, pid: process.pid, size: map.size }) + '\\n');
      // Replace this program in place without closing anything: the map's writer lock is left held by "us".
      native.execve(process.execPath, [process.execPath, '--input-type=module', '-e', stage2, path, fdtPath, String(N), report],
        Object.entries(process.env).map(([k, v]) => k + '=' + v), [], 1);
    `;
    const child = startModule(stage1, [path, fdtPath, String(N), report, stage2]);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      const lines = () => (existsSync(report) ? readFileSync(report, 'utf8').split('\n').filter(Boolean) : []);
      const deadline = Date.now() + 120_000;
      while (!lines().some((l) => l.startsWith('progress 1 300000') || l.startsWith('error'))) {
        assert.ok(Date.now() < deadline && child.exitCode === null, `the child stopped early: ${stderr} ${lines().join('\n')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, Math.random() * 30));
      child.kill('SIGKILL');
      await once(child, 'exit');
      const all = lines();
      assert.ok(!all.some((l) => l.startsWith('error')), all.join('\n'));
      const s1 = JSON.parse(all.find((l) => l.includes('"stage":1'))!) as { pid: number; size: number };
      const s2 = JSON.parse(all.find((l) => l.includes('"stage":2'))!) as { pid: number; size: number; intact: number; openMs: number };
      assert.equal(s1.size, N);
      assert.equal(s2.pid, s1.pid, 'execve kept the PID');
      assert.equal(s2.size, N);
      assert.equal(s2.intact, N, 'every entry written before the exec reads back intact after it');

      const pool = Pool.open(path);
      const map = PersistentMap.open(pool, 'big', { handover: null });
      assert.equal(map.size, N);
      const rounds = new Map<number, number>();
      for (let i = 0; i < N; i++) {
        const round = roundOf(i, map.get(key(i)));
        assert.ok(round !== null, `entry ${i} is garbage: ${String(map.get(key(i)))}`);
        assert.ok(round <= 2, `entry ${i} is at round ${round}`);
        rounds.set(round, (rounds.get(round) ?? 0) + 1);
      }
      assert.ok((rounds.get(1) ?? 0) >= 300_000, `rewritten entries: ${JSON.stringify([...rounds])}`);
      assert.deepEqual(map.check().problems, []);
      assert.equal(pool.stats().byOwner['pmap:big']!.pages, map.stats().pages, 'no page of the map leaked');
      assert.ok(pool.check().ok);
      map.close();
      pool.close();
    } finally {
      child.kill('SIGKILL');
      cleanup();
      tmp.cleanup();
    }
  });

  test('a writer killed at random moments of mixed work, again and again: the map always opens intact, no page leaked', async () => {
    const seed = testSeed('PMAP_KILL_SEED');
    const rng = new Prng(seed);
    const { path, cleanup } = shmPath('map-kill');
    const worker = `
      import { Pool, PersistentMap } from ${JSON.stringify(PMPOOL_ENTRY)};
      import { crc32c } from ${JSON.stringify(CRC_URL)};
      import { writeSync } from 'node:fs';
      ${VALUE_CODE}
      const [path, seed] = [process.argv[1], Number(process.argv[2])];
      let s = seed >>> 0;
      const rnd = (n) => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s % n; };
      const pool = Pool.open(path);
      const map = PersistentMap.open(pool, 'mixed');
      writeSync(1, 'ready ' + map.size + '\\n');
      for (let step = 0; ; step++) {
        const i = rnd(30000);
        const r = rnd(1000);
        if (r < 600) map.set(key(i), value(i, step));
        else if (r < 640) map.set(key(i), value(i, step) + '|' + 'L'.repeat(rnd(2) ? 300000 : 20000));
        else if (r < 998) map.delete(key(i));
        else map.clear();
      }
    `;
    try {
      Pool.create(path, { size: '256M' }).close();
      for (let round = 0; round < 25; round++) {
        const child = startModule(worker, [path, String(rng.next())]);
        await waitForLine(child, (l) => l.startsWith('ready'));
        await new Promise((r) => setTimeout(r, rng.range(0, 150)));
        child.kill('SIGKILL');
        await once(child, 'exit');
        const pool = Pool.open(path);
        const map = PersistentMap.open(pool, 'mixed', { handover: null });
        let n = 0;
        for (const [k, v] of map.entries()) {
          assert.equal(typeof k, 'string');
          const i = parseInt((k as string).slice(4), 16);
          const text = v as string;
          const plain = text.includes('|L') ? text.slice(0, text.indexOf('|L')) : text;
          assert.ok(roundOf(i, plain) !== null, `seed ${seed} round ${round}: ${k} holds garbage`);
          n++;
        }
        assert.equal(n, map.size);
        assert.deepEqual(map.check().problems, [], `seed ${seed} round ${round}`);
        assert.equal(pool.stats().byOwner['pmap:mixed']?.pages ?? 0, map.stats().pages, `seed ${seed} round ${round}: leaked pages`);
        assert.ok(pool.check().ok);
        map.close();
        pool.close();
      }
    } finally {
      cleanup();
    }
  });

  test('readers in another process read consistently while the writer inserts, rewrites, deletes and clears', async () => {
    const { path, cleanup } = shmPath('map-readers');
    const writer = `
      import { Pool, PersistentMap } from ${JSON.stringify(PMPOOL_ENTRY)};
      import { crc32c } from ${JSON.stringify(CRC_URL)};
      import { writeSync } from 'node:fs';
      ${VALUE_CODE}
      const pool = Pool.open(process.argv[1]);
      const map = PersistentMap.open(pool, 'shared');
      writeSync(1, 'ready\\n');
      for (let round = 0; ; round++) {
        const n = 2000 + (round % 7) * 3000;
        for (let i = 0; i < n; i++) map.set(key(i), value(i, round));
        for (let i = 0; i < n; i += 3) map.delete(key(i));
        if (round % 5 === 4) map.clear();
      }
    `;
    try {
      const pool = Pool.create(path, { size: '128M' });
      const child = startModule(writer, [path]);
      try {
        await waitForLine(child, (l) => l === 'ready');
        const reader = PersistentMap.open(pool, 'shared', { readOnly: true });
        let reads = 0;
        let found = 0;
        const until = Date.now() + 2000;
        while (Date.now() < until) {
          for (let k = 0; k < 500; k++) {
            const i = (reads * 7919) % 20000;
            const v = reader.get(key(i));
            reads++;
            if (v === undefined) continue;
            found++;
            assert.ok(roundOf(i, v) !== null, `reader got garbage for ${key(i)}: ${String(v)}`);
          }
          let walked = 0;
          try {
            for (const [k, v] of reader.entries()) {
              assert.ok(roundOf(parseInt((k as string).slice(4), 16), v) !== null);
              if (++walked > 300) break;
            }
          } catch (e) {
            // A resize while iterating is reported, never papered over.
            assert.equal((e as { code?: string }).code, 'CHANGED');
          }
          await new Promise((r) => setImmediate(r));
        }
        assert.ok(found > 1000, `the reader found ${found} of ${reads}`);
        reader.close();
      } finally {
        child.kill('SIGKILL');
        await once(child, 'exit').catch(() => undefined);
      }
      const map = PersistentMap.open(pool, 'shared', { handover: null });
      assert.deepEqual(map.check().problems, []);
      map.close();
      pool.close();
    } finally {
      cleanup();
      rmSync(path, { force: true });
    }
  });

  test('a process that creates a map while another opens it as it is created: one writer, the other BUSY', () => {
    // The creator stops right after its header run is allocated; a second process opens the new map
    // as its writer then, and holds it while the creator goes on.
    const { path, cleanup } = shmPath('map-create-race');
    try {
      Pool.create(path, { size: '4M' }).close();
      const outcome = runCreationRace(path, {
        client: 'PersistentMap',
        hookModule: './clients/persistent-map.js',
        hookSetter: 'setMapFaultHook',
        point: 'open:allocated',
        open: "const c = Client.open(pool, 'race');",
        write: (text) => `c.set('writer', ${JSON.stringify(text)});`,
        written: "r.get('writer') !== undefined",
      });
      assert.match(outcome, /^BUSY persistent map "race" is open for writing by process \d+/);
      const pool = Pool.open(path);
      const reader = PersistentMap.open(pool, 'race', { readOnly: true });
      assert.deepEqual([...reader.entries()], [['writer', 'from the other writer']]);
      reader.close();
      pool.close();
    } finally {
      cleanup();
    }
  });

  test('a reader\'s check() beside a writer that goes on writing in another process reports only what is wrong', async () => {
    const { path, cleanup } = shmPath('map-reader-check');
    let writer: ReturnType<typeof startModule> | undefined;
    try {
      const pool = Pool.create(path, { size: '128M' });
      try {
        const first = PersistentMap.open(pool, 'rc');
        for (let i = 0; i < 20_000; i++) first.set(key(i), 'initial');
        first.close();
        // Inserts and updates for as long as the reader checks: appends, compactions, no pause.
        writer = startModule(
          `import { Pool, PersistentMap } from ${JSON.stringify(PMPOOL_ENTRY)};
           const pool = Pool.open(${JSON.stringify(path)});
           const map = PersistentMap.open(pool, 'rc');
           process.stdout.write('writing\\n');
           const write = () => { for (let n = 0; n < 2000; n++) { const i = Math.floor(Math.random() * 25_000); map.set('key:' + i.toString(16).padStart(12, '0'), 'v'.repeat(i % 50)); } setImmediate(write); };
           write();`,
        );
        await waitForLine(writer, (l) => l === 'writing');
        const reader = PersistentMap.open(pool, 'rc', { readOnly: true });
        try {
          const problems: string[] = [];
          for (let n = 0; n < 20; n++) problems.push(...reader.check().problems);
          assert.deepEqual(problems, [], 'a healthy map, checked 20 times as it changed');
        } finally {
          reader.close();
        }
      } finally {
        pool.close();
      }
    } finally {
      writer?.kill('SIGKILL');
      cleanup();
    }
  });
});
