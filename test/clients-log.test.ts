/**
 * LogRing: records in order across wraparound and reopen, bad input, a crash
 * simulation at every store boundary of appends, torn and corrupt records
 * skipped (never returned), hundreds of real SIGKILLs mid-append, and the
 * `pmpool log dump` command.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { Pool } from '../src/index.js';
import { MemoryRegion } from '../src/region/index.js';
import { ClientError, LogRing, PersistentMap, type LogRecord } from '../src/clients/index.js';
import { setLogFaultHook } from '../src/clients/log-ring.js';
import { logCommand } from '../src/cli/log-command.js';
import { crc32c, crc32cWords } from '../src/util/crc32c.js';
import { PMPOOL_ENTRY, runModule, shmPath, startModule } from './support/child.js';
import { runCreationRace } from './support/creation-race.js';
import { Prng, testSeed } from './support/prng.js';
import { expectError, memoryPool as poolInMemory, NOT_OBJECTS, shown, statsText } from './support/expect.js';

const MiB = 1024 * 1024;
const HEADER = 4096; // the ring's header page; records follow
const HEAD_OFFSET = 192; // u64 byte offsets in the header
const TAIL_OFFSET = 200;
const NEXT_SEQ_OFFSET = 208; // the writer's hint of the next seq

const memoryPool = (size = 16 * MiB): Pool => poolInMemory(size);

const expectClientError = (fn: () => unknown, code: string): ClientError => expectError(fn, ClientError, code);

function assertInOrder(records: LogRecord[]): void {
  for (let i = 1; i < records.length; i++) assert.equal(records[i]!.seq, records[i - 1]!.seq + 1, `seq ${records[i]!.seq} follows ${records[i - 1]!.seq}`);
}

/** A record that checks itself: "<tag>:<n>:<filler>:<crc>". */
function selfChecking(tag: string, n: number, size: number): string {
  const body = `${tag}:${n}:${'0123456789abcdef'.repeat(Math.ceil(size / 16)).slice(0, size)}`;
  return `${body}:${crc32c(Buffer.from(body)).toString(16)}`;
}
function isIntact(text: string | undefined): boolean {
  if (text === undefined) return false;
  const i = text.lastIndexOf(':');
  return crc32c(Buffer.from(text.slice(0, i))).toString(16) === text.slice(i + 1);
}

describe('LogRing basics', () => {
  test('records come back in order through wraparound, reopen and readers; text and bytes as appended', () => {
    const pool = memoryPool();
    const ring = LogRing.open(pool, 'events', { bytes: 16 * 1024 });
    assert.equal(ring.capacity, 16 * 1024);
    assert.deepEqual(ring.records(), []);
    const rng = new Prng(3);
    const appended: Array<string | Uint8Array> = [];
    for (let i = 0; i < 2000; i++) {
      const r = rng.chance(0.3) ? new Uint8Array(rng.range(0, 300)).map(() => rng.int(256)) : `event ${i} ` + 'é'.repeat(rng.range(0, 100));
      assert.equal(ring.append(r), i + 1);
      appended.push(r);
    }
    const records = ring.records();
    assert.ok(records.length > 20 && records.length < 2000);
    assertInOrder(records);
    assert.equal(records[records.length - 1]!.seq, 2000);
    for (const r of records) {
      const original = appended[r.seq - 1]!;
      if (typeof original === 'string') {
        assert.equal(r.text, original);
        assert.deepEqual(r.bytes, new TextEncoder().encode(original));
      } else {
        assert.equal(r.text, undefined);
        assert.deepEqual(r.bytes, original);
      }
    }
    const stats = ring.stats();
    assert.equal(stats.records, records.length);
    assert.equal(stats.skipped, 0);
    assert.ok(stats.used <= stats.capacity && stats.used > stats.capacity - 2 * (stats.maxRecordBytes + 16));
    // A reader sees the same; a reopened writer goes on from seq 2001.
    const reader = LogRing.open(pool, 'events', { readOnly: true });
    assert.deepEqual(reader.records(), records);
    ring.close();
    const again = LogRing.open(pool, 'events', { bytes: 999_999 });
    assert.equal(again.capacity, 16 * 1024, 'an existing ring keeps its size');
    assert.equal(again.append(''), 2001);
    const last = again.records().at(-1)!;
    assert.equal(last.text, '');
    assert.deepEqual(reader.records().at(-1), last);
    again.close();
    reader.close();
    pool.close();
  });

  test('a reader of an empty ring gets no records, at once (also behind a writer killed before its first append)', () => {
    // In a child with a deadline: the reader used to wait for the tail to differ from the head, for ever.
    const { path, cleanup } = shmPath('log-empty');
    try {
      const r = spawnSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `import { Pool, LogRing } from ${JSON.stringify(PMPOOL_ENTRY)};
           const pool = Pool.create(process.argv[1], { size: '4M' });
           LogRing.open(pool, 'empty', { bytes: 64 * 1024 }).close();
           const reader = LogRing.open(pool, 'empty', { readOnly: true });
           process.stdout.write(JSON.stringify([reader.records().length, reader.stats().records]));`,
          path,
        ],
        { encoding: 'utf8', timeout: 20_000 },
      );
      assert.equal(r.signal, null, 'the reader returned (it was not killed at the deadline)');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, '[0,0]');
    } finally {
      cleanup();
    }
  });

  test('a ring of the largest size, 2 GiB, opens and wraps exactly at the end of its run', () => {
    const { path, cleanup } = shmPath('log-2g');
    try {
      const pool = Pool.create(path, { size: '3G' });
      // The run LogRing.open allocates for { bytes: 2 ** 31 }, as a crash between its allocation and its
      // header leaves it: the writer formats it, and the test does not zero 2 GiB of /dev/shm to get there.
      pool.alloc((HEADER + 2 ** 31) / pool.pageSize, { name: 'big', owner: 'plog:big' });
      let ring = LogRing.open(pool, 'big', { bytes: 2 ** 31 });
      assert.equal(ring.capacity, 2 ** 31);
      assert.equal(ring.maxRecordBytes, 2 ** 29 - 16);
      ring.close();
      // An empty ring whose next record ends exactly at the end of the run: the one after it starts at 0.
      const headerBytes = pool.find('big')!.bytes(0, HEADER);
      const header = new DataView(headerBytes.buffer, headerBytes.byteOffset, HEADER);
      header.setBigUint64(HEAD_OFFSET, 2n ** 31n - 32n, true);
      header.setBigUint64(TAIL_OFFSET, 2n ** 31n - 32n, true);
      ring = LogRing.open(pool, 'big', { bytes: 2 ** 31 });
      ring.append('at the end');
      ring.append('wrapped');
      assert.equal(ring.stats().used, 64);
      const reader = LogRing.open(pool, 'big', { readOnly: true });
      assert.deepEqual(reader.records().map((r) => r.text), ['at the end', 'wrapped']);
      assert.deepEqual(reader.records(), ring.records());
      reader.close();
      ring.close();
      pool.close();
    } finally {
      cleanup();
    }
  });

  test('a process that creates a ring while another opens it as it is created: one writer, the other BUSY', () => {
    // The creator stops right after its run is allocated; a second process opens the new ring as its
    // writer then, and holds it while the creator goes on.
    const { path, cleanup } = shmPath('log-create-race');
    try {
      Pool.create(path, { size: '4M' }).close();
      const outcome = runCreationRace(path, {
        client: 'LogRing',
        hookModule: './clients/log-ring.js',
        hookSetter: 'setLogFaultHook',
        point: 'log:allocated',
        open: "const c = Client.open(pool, 'race', { bytes: 8192 });",
        write: (text) => `c.append(${JSON.stringify(text)});`,
        written: 'r.records().length > 0',
      });
      assert.match(outcome, /^BUSY log ring "race" is open for writing by process \d+/);
      const pool = Pool.open(path);
      const reader = LogRing.open(pool, 'race', { readOnly: true });
      assert.deepEqual(reader.records().map((rec) => rec.text), ['from the other writer']);
      reader.close();
      pool.close();
    } finally {
      cleanup();
    }
  });

  test('bad input and bad use: typed errors, and the ring unchanged', () => {
    const pool = memoryPool();
    expectClientError(() => LogRing.open(pool, 'log'), 'BAD_ARGUMENT');
    for (const bytes of [0, -1, 1.5, 100, 2 ** 40, '1M']) expectClientError(() => LogRing.open(pool, 'log', { bytes: bytes as number }), 'BAD_ARGUMENT');
    expectClientError(() => LogRing.open(pool, 'a/b', { bytes: 8192 }), 'BAD_ARGUMENT');
    const ring = LogRing.open(pool, 'log', { bytes: 8192 });
    ring.append('first');
    for (const r of [1, null, undefined, {}, [1], new Uint32Array(2)]) expectClientError(() => ring.append(r as unknown as string), 'BAD_VALUE');
    expectClientError(() => ring.append('\udfff'), 'BAD_VALUE');
    expectClientError(() => ring.append(new Uint8Array(ring.maxRecordBytes + 1)), 'TOO_LARGE');
    expectClientError(() => ring.append('x'.repeat(ring.maxRecordBytes + 1)), 'TOO_LARGE');
    ring.append(new Uint8Array(ring.maxRecordBytes));
    expectClientError(() => LogRing.open(pool, 'log', { bytes: 8192 }), 'BUSY');
    const reader = LogRing.open(pool, 'log', { readOnly: true });
    expectClientError(() => reader.append('x'), 'READ_ONLY');
    expectClientError(() => LogRing.open(pool, 'nothing', { readOnly: true }), 'NOT_FOUND');
    PersistentMap.open(pool, 'kv').close();
    expectClientError(() => LogRing.open(pool, 'kv', { bytes: 8192 }), 'WRONG_TYPE');
    pool.alloc(4, { name: 'plain' });
    expectClientError(() => LogRing.open(pool, 'plain', { readOnly: true }), 'WRONG_TYPE');
    assert.deepEqual(ring.records().map((r) => r.seq), [1, 2]);
    assert.equal(ring.records()[0]!.text, 'first');
    ring.close();
    expectClientError(() => ring.append('x'), 'CLOSED');
    reader.close();
    // A size no ring can have is as wrong for a ring that exists (and keeps its size) as for a new one.
    for (const bytes of [0, -1, 1.5, 100, 2 ** 40, NaN]) {
      expectClientError(() => LogRing.open(pool, 'log', { bytes }), 'BAD_ARGUMENT');
      expectClientError(() => LogRing.open(pool, 'log', { bytes, readOnly: true }), 'BAD_ARGUMENT');
    }
    LogRing.open(pool, 'log', { bytes: 8192 }).close();
    const used = pool.stats().used;
    const doomed = LogRing.open(pool, 'doomed', { bytes: 64 * 1024 });
    doomed.append('bye');
    doomed.destroy();
    assert.equal(pool.stats().used, used);
    expectClientError(() => LogRing.open(pool, 'doomed', { readOnly: true }), 'NOT_FOUND');
    pool.close();
  });
});

describe('LogRing crash safety', () => {
  test('a crash at every store boundary of every append: the ring holds a prefix of what was appended, whole records only', () => {
    const seed = testSeed('PLOG_CRASH_SEED');
    const rng = new Prng(seed);
    const pool = memoryPool();
    let ring = LogRing.open(pool, 'sim', { bytes: 4096 });
    const committed: string[] = []; // by seq - 1
    let crashes = 0;
    for (let i = 0; i < 400; i++) {
      const text = selfChecking('sim', i, rng.range(0, 600));
      for (let target = 0; ; target++) {
        let n = 0;
        setLogFaultHook((point) => {
          if (n++ === target) throw new Error(`crash at ${point}`);
        });
        let crashed = false;
        try {
          ring.append(text);
        } catch (e) {
          if (!(e as Error).message.startsWith('crash at')) throw e;
          crashed = true;
        } finally {
          setLogFaultHook(null);
        }
        if (!crashed) {
          committed.push(text);
          break;
        }
        crashes++;
        ring.abandon();
        ring = LogRing.open(pool, 'sim');
        const records = ring.records();
        assertInOrder(records);
        assert.equal(ring.stats().skipped, 0);
        const last = records.at(-1);
        if (last !== undefined && last.seq === committed.length + 1) {
          // The crash came after the publish: the record is there, whole.
          assert.equal(last.text, text);
          committed.push(text);
          break;
        }
        for (const r of records) assert.equal(r.text, committed[r.seq - 1], `seed ${seed}: record ${r.seq}`);
        if (records.length > 0) assert.equal(records.at(-1)!.seq, committed.length, `seed ${seed}: the newest committed record survives`);
      }
    }
    assert.ok(crashes >= 800, `${crashes} crashes`);
    ring.close();
    pool.close();
  });

  test('torn and corrupt records are detected by their CRC and skipped, never returned', () => {
    const pool = memoryPool();
    const ring = LogRing.open(pool, 'torn', { bytes: 64 * 1024 });
    for (let i = 0; i < 40; i++) ring.append(selfChecking('t', i, 100 + i));
    const run = pool.find('torn')!;
    const bytes = run.bytes();
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const before = ring.records();
    assert.equal(before.length, 40);
    const positionOf = (seq: number) => {
      let pos = 0;
      for (let s = 1; s < seq; s++) pos += (16 + before[s - 1]!.bytes.length + 15) & ~15;
      return HEADER + pos;
    };
    // A flipped payload byte in record 10, a flipped length in record 20.
    bytes[positionOf(10) + 16 + 5]! ^= 0x40;
    view.setUint32(positionOf(20), view.getUint32(positionOf(20), true) + 32, true);
    const after = ring.records();
    assert.deepEqual(after.map((r) => r.seq), before.map((r) => r.seq).filter((s) => s !== 10 && s !== 20));
    assert.ok(after.every((r) => isIntact(r.text)));
    assert.equal(ring.stats().skipped, 2);
    // A record written past the head but never published (the writer died before the head moved) is not there.
    const head = Number(view.getBigUint64(HEAD_OFFSET, true));
    const fake = new TextEncoder().encode(selfChecking('t', 99, 50));
    bytes.set(fake, HEADER + head + 16);
    view.setUint32(HEADER + head, fake.length, true);
    assert.equal(ring.records().length, after.length);
    // Published, but torn (the CRC was never written): skipped, and the ring stays readable.
    view.setBigUint64(HEAD_OFFSET, BigInt(head + ((16 + fake.length + 15) & ~15)), true);
    assert.deepEqual(ring.records().map((r) => r.seq), after.map((r) => r.seq));
    // A head and tail that cannot describe the ring: CORRUPT.
    view.setBigUint64(TAIL_OFFSET, BigInt(head + 4096), true);
    expectClientError(() => ring.records(), 'CORRUPT');
    pool.close();
  });

  test('a writer SIGKILLed mid-append 200 times: every surviving record intact and in order, no seq ever reused', async () => {
    const { path, cleanup } = shmPath('log-kill');
    const child = `
      import { Pool, LogRing } from ${JSON.stringify(PMPOOL_ENTRY)};
      import { crc32c } from ${JSON.stringify(new URL('./util/crc32c.js', PMPOOL_ENTRY).href)};
      import { writeSync } from 'node:fs';
      const [path, run] = [process.argv[1], process.argv[2]];
      const pool = Pool.open(path);
      const ring = LogRing.open(pool, 'crashlog');
      let s = Number(run) * 7919 + 1;
      for (let n = 0; ; n++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        const size = s % 3000;
        const body = 'run' + run + ':' + n + ':' + '0123456789abcdef'.repeat(Math.ceil(size / 16)).slice(0, size);
        ring.append(body + ':' + crc32c(Buffer.from(body)).toString(16));
        // Ready once a record is in: a kill before the first append of run 0 would leave nothing to check.
        if (n === 0) writeSync(1, 'ready\\n');
      }
    `;
    try {
      const pool = Pool.create(path, { size: '16M' });
      LogRing.open(pool, 'crashlog', { bytes: 64 * 1024 }).close();
      const reader = LogRing.open(pool, 'crashlog', { readOnly: true });
      const seen = new Map<number, string>();
      let total = 0;
      for (let run = 0; run < 200; run++) {
        const proc = startModule(child, [path, String(run)]);
        let stderr = '';
        proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
        await new Promise<void>((resolve, reject) => {
          proc.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
          proc.on('exit', (code) => reject(new Error(`run ${run}: the writer exited (${code}) before it was ready: ${stderr}`)));
        });
        await new Promise((r) => setTimeout(r, Math.random() * 15));
        proc.kill('SIGKILL');
        await once(proc, 'exit');
        const records = reader.records();
        assert.ok(records.length > 0, `run ${run}`);
        assertInOrder(records);
        let prev: { run: number; n: number } | null = null;
        for (const r of records) {
          assert.ok(isIntact(r.text), `run ${run}: record ${r.seq} is not intact`);
          const [tag, n] = r.text!.split(':') as [string, string];
          const cur = { run: Number(tag.slice(3)), n: Number(n) };
          if (prev !== null) assert.ok(cur.run > prev.run || (cur.run === prev.run && cur.n === prev.n + 1), `run ${run}: record ${r.seq} out of order`);
          prev = cur;
          const was = seen.get(r.seq);
          assert.ok(was === undefined || was === r.text, `run ${run}: seq ${r.seq} was reused`);
          seen.set(r.seq, r.text!);
        }
        assert.equal(reader.stats().skipped, 0);
        total = records.at(-1)!.seq;
      }
      assert.ok(total > 200, `${total} records appended in all`);
      reader.close();
      pool.close();
    } finally {
      cleanup();
    }
  });
});

describe('LogRing damage and racing readers', () => {
  test('a view of a detached buffer is refused as BAD_VALUE before the tail moves: no record is dropped', () => {
    const pool = memoryPool();
    const ring = LogRing.open(pool, 'full', { bytes: 4096 });
    for (let i = 0; i < 400; i++) ring.append(`record ${i}`);
    const before = ring.records();
    const buffer = new ArrayBuffer(8);
    const view = new Uint8Array(buffer);
    structuredClone(buffer, { transfer: [buffer] });
    expectClientError(() => ring.append(view), 'BAD_VALUE');
    assert.deepEqual(ring.records(), before);
    assert.equal(ring.append(new Uint8Array(0)), 401, 'an empty record is still a record');
    ring.close();
    pool.close();
  });

  test('a next-seq hint damaged upward does not hide the records appended after it', () => {
    for (const jump of [5n, 2n ** 41n]) {
      const pool = memoryPool();
      const ring = LogRing.open(pool, 'hint', { bytes: 64 * 1024 });
      for (let i = 1; i <= 10; i++) ring.append(`r${i}`);
      ring.close();
      const bytes = pool.find('hint')!.bytes();
      new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setBigUint64(NEXT_SEQ_OFFSET, 11n + jump, true);
      const again = LogRing.open(pool, 'hint');
      for (let i = 11; i <= 13; i++) again.append(`r${i}`);
      const records = again.records();
      assert.deepEqual(records.map((r) => r.text), Array.from({ length: 13 }, (_, i) => `r${i + 1}`), `jump ${jump}`);
      assertInOrder(records);
      assert.equal(again.stats().skipped, 0);
      again.close();
      pool.close();
    }
  });

  test('stats().skipped and the dump count the records damage took, not the damaged stretches', () => {
    const { path, cleanup } = shmPath('log-skipped');
    try {
      const pool = Pool.create(path, { size: '8M' });
      const ring = LogRing.open(pool, 'dmg', { bytes: 8192 });
      for (let i = 1; i <= 40; i++) ring.append(`record ${i}`.padEnd(48, '.')); // 64 bytes each, record i at (i - 1) * 64
      const bytes = pool.find('dmg')!.bytes();
      const damage = (seq: number) => (bytes[HEADER + (seq - 1) * 64 + 20]! ^= 1);
      [10, 11, 12].forEach(damage);
      assert.equal(ring.records().length, 37);
      assert.equal(ring.stats().skipped, 3, 'three records in a row');
      damage(20);
      assert.equal(ring.stats().skipped, 4);
      // Before the first intact record and after the last one no seq says how many were lost: at least one each.
      damage(1);
      damage(40);
      assert.deepEqual([ring.records().length, ring.stats().skipped], [34, 6]);
      ring.close();
      pool.close();
      const out: string[] = [];
      assert.equal(logCommand(['dump', path, 'dmg'], (l) => out.push(l), () => {}), 0);
      assert.match(out[0]!, /: 34 records, seq 2\.\.39; .*; 6 damaged record\(s\) skipped$/);
    } finally {
      cleanup();
    }
  });

  test('the record after a damaged one and a wrap pad is returned', () => {
    const pool = memoryPool();
    const ring = LogRing.open(pool, 'pad', { bytes: 4096 });
    assert.equal(ring.capacity, 4096);
    for (let i = 1; i <= 25; i++) ring.append(`${i}:`.padEnd(100, '.')); // 128 bytes each: the head ends at 3200
    pool.find('pad')!.bytes()[HEADER + 24 * 128 + 16 + 5]! ^= 1; // record 25's payload
    ring.append('last:'.padEnd(1000, '.')); // 1024 bytes: a pad at 3200, then the record at 0, both seq 26
    const records = ring.records();
    assert.deepEqual(records.map((r) => r.seq), [...Array.from({ length: 16 }, (_, i) => i + 9), 26]);
    assert.ok(records.at(-1)!.text!.startsWith('last:'));
    assert.equal(ring.stats().skipped, 1);
    ring.close();
    pool.close();
  });

  test('a damaged wrap pad at the tail: the records an earlier lap left under it are not returned', () => {
    const pool = memoryPool();
    const ring = LogRing.open(pool, 'stale', { bytes: 4096 });
    // Two laps of 128-byte records, then one of 1024 bytes with the head at 3200: a pad over [3200, 4096),
    // whose body still holds records 18 to 24 of the previous lap.
    for (let i = 1; i <= 57; i++) ring.append(`${i}:`.padEnd(100, '.'));
    ring.append('big:'.padEnd(1000, '.'));
    const bytes = pool.find('stale')!.bytes();
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // More records until the oldest one left is the pad.
    while (Number(view.getBigUint64(TAIL_OFFSET, true)) % 4096 !== 3200) ring.append('more:'.padEnd(100, '.'));
    const before = ring.records();
    bytes[HEADER + 3200 + 9]! ^= 1; // the pad's seq
    const after = ring.records();
    const intact = new Map(before.map((r) => [r.seq, r.text]));
    for (const r of after) assert.equal(intact.get(r.seq), r.text, `seq ${r.seq} is no record the ring held`);
    assert.deepEqual(after.map((r) => r.seq), before.map((r) => r.seq));
    ring.close();
    pool.close();
  });

  test('a head damaged to point inside a wrap pad: all the writer appends next comes back', () => {
    const pool = memoryPool();
    const ring = LogRing.open(pool, 'pad', { bytes: 4096 });
    for (let i = 1; i <= 25; i++) ring.append(`${i}:`.padEnd(100, '.')); // 128 bytes each: the head ends at 3200
    ring.append('last:'.padEnd(1000, '.')); // a pad over [3200, 4096), then the record at 0, both seq 26
    ring.close();
    const bytes = pool.find('pad')!.bytes();
    new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setBigUint64(HEAD_OFFSET, 3200n + 256n, true);
    const again = LogRing.open(pool, 'pad');
    // Seven records of 128 bytes from 3456: five inside what the pad spans, one at 0 where its record was.
    const seqs = Array.from({ length: 7 }, (_, i) => again.append(`after ${i}:`.padEnd(100, '.')));
    const records = again.records();
    assert.deepEqual(records.slice(-7).map((r) => r.seq), seqs);
    assert.deepEqual(records.slice(-7).map((r) => r.text!.split(':')[0]), seqs.map((_, i) => `after ${i}`));
    for (let i = 1; i < records.length; i++) assert.ok(records[i]!.seq > records[i - 1]!.seq, 'in order');
    again.close();
    pool.close();
  });

  test('a damaged oldest record makes the next append drop only the room it needs, not the intact records after it', () => {
    // 128-byte records: 512 fill a ring of 64 KiB, and each append of one more drops exactly the oldest.
    const damages: Array<[string, (info: number) => number]> = [
      ['its pad bit set', (info) => (info | 0x80000000) >>> 0],
      ['its length 1024 bytes larger', (info) => info + 1024],
      ['its length 40 bytes smaller', (info) => info - 40],
    ];
    for (const [what, damage] of damages) {
      const pool = memoryPool();
      const ring = LogRing.open(pool, 'dmg', { bytes: 64 * 1024 });
      for (let i = 1; i <= 600; i++) ring.append(`${i}:`.padEnd(100, '.'));
      const bytes = pool.find('dmg')!.bytes();
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const at = HEADER + (Number(view.getBigUint64(TAIL_OFFSET, true)) % ring.capacity);
      assert.equal(view.getBigUint64(at + 4, true), 89n, 'record 89 is the oldest');
      view.setUint32(at, damage(view.getUint32(at, true)), true);
      assert.deepEqual([ring.stats().firstSeq, ring.stats().records], [90, 511], `${what}: record 89 skipped, the others read`);
      ring.append('601:'.padEnd(100, '.'));
      const records = ring.records();
      assert.deepEqual(records.map((r) => r.seq), Array.from({ length: 512 }, (_, i) => i + 90), `${what}: only the damaged record made room`);
      for (const r of records) assert.equal(r.text, `${r.seq}:`.padEnd(100, '.'));
      const reader = LogRing.open(pool, 'dmg', { readOnly: true });
      assert.deepEqual(reader.records(), records);
      assert.equal(reader.stats().skipped, 0);
      reader.close();
      ring.close();
      pool.close();
    }
  });

  test('a record whose seq jumps past records damage took is returned, though no damaged bytes lie before it', () => {
    const pool = memoryPool();
    const ring = LogRing.open(pool, 'jump', { bytes: 4096 });
    for (let i = 1; i <= 40; i++) ring.append(`${i}:`.padEnd(100, '.')); // 128 bytes each: record 40 at [4992, 5120), the tail at 1024
    ring.close();
    const bytes = pool.find('jump')!.bytes();
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // The head one record back, and the tail where record 40 lies a lap earlier: the writer finds
    // seq 40 and goes on from 41, at the head, right after record 39.
    view.setBigUint64(HEAD_OFFSET, 4992n, true);
    view.setBigUint64(TAIL_OFFSET, 4992n - 4096n, true);
    const again = LogRing.open(pool, 'jump');
    const seq = again.append('after the damage');
    const records = again.records();
    assert.deepEqual(records.at(-1), { seq, bytes: new TextEncoder().encode('after the damage'), text: 'after the damage' });
    assert.deepEqual(records.at(-2)!.seq, 39);
    assert.equal(again.stats().skipped, seq - 39 - 1);
    again.close();
    pool.close();
  });

  test('a record with a valid CRC and a seq past 2^53 is damage: skipped, and the records after it returned and appended after', () => {
    for (const forged of [2n ** 53n, 2n ** 60n + 12345n, 2n ** 64n - 1n]) {
      const pool = memoryPool();
      const ring = LogRing.open(pool, 'big', { bytes: 4096 });
      for (let i = 1; i <= 10; i++) ring.append(`${i}:`.padEnd(100, '.')); // 128 bytes each, record i at (i - 1) * 128
      ring.close();
      // Record 1, the oldest, given a seq no writer writes and a CRC that matches it (seeded with the ring id).
      const bytes = pool.find('big')!.bytes();
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      view.setBigUint64(HEADER + 4, forged, true);
      const words = new Uint32Array(bytes.buffer, bytes.byteOffset + HEADER, 4);
      const payload = view.getUint32(HEADER, true) & 0x3fffffff;
      view.setUint32(HEADER + 12, crc32c(bytes, HEADER + 16, HEADER + 16 + payload, crc32cWords(words, 0, 3, view.getUint32(16, true))), true);
      const expected = Array.from({ length: 9 }, (_, i) => i + 2);
      const reader = LogRing.open(pool, 'big', { readOnly: true });
      assert.deepEqual(reader.records().map((r) => r.seq), expected, `seq ${forged}`);
      assert.equal(reader.stats().skipped, 1);
      reader.close();
      const again = LogRing.open(pool, 'big');
      assert.equal(again.append('after'), 11, `seq ${forged}: the writer goes on from the last real record`);
      assert.deepEqual(again.records().map((r) => r.seq), [...expected, 11]);
      again.close();
      pool.close();
    }
  });

  test('seqs are numbered up to 2^53 - 1: an append past that is NO_SPACE, never a seq read back as another', () => {
    const pool = memoryPool();
    let ring = LogRing.open(pool, 'log', { bytes: 4096 });
    ring.close();
    // An empty ring whose next-seq hint says almost 2^53 (a ring with no record left trusts it).
    const headerBytes = pool.find('log')!.bytes(0, HEADER);
    new DataView(headerBytes.buffer, headerBytes.byteOffset, HEADER).setBigUint64(NEXT_SEQ_OFFSET, 2n ** 53n - 2n, true);
    ring = LogRing.open(pool, 'log');
    assert.equal(ring.append('a'), 2 ** 53 - 2);
    assert.equal(ring.append('b'), 2 ** 53 - 1);
    const e = expectClientError(() => ring.append('c'), 'NO_SPACE');
    assert.match(e.message, /2\^53/);
    assert.deepEqual(ring.records().map((r) => [r.seq, r.text]), [[2 ** 53 - 2, 'a'], [2 ** 53 - 1, 'b']], 'nothing changed');
    ring.close();
    ring = LogRing.open(pool, 'log');
    expectClientError(() => ring.append('c'), 'NO_SPACE');
    ring.close();
    pool.close();
  });

  test('a ring damaged at random offsets: records intact and in order, only ClientError, and all the writer appends next comes back', () => {
    const seed = testSeed('PLOG_DAMAGE_SEED');
    const rng = new Prng(seed);
    for (let iter = 0; iter < 1500; iter++) {
      const pool = memoryPool(4 * MiB);
      let ring = LogRing.open(pool, 'dmg', { bytes: 8192 });
      const appended = rng.int(300);
      for (let i = 0; i < appended; i++) ring.append(selfChecking('d', i, rng.int(400)));
      ring.close();
      const bytes = pool.find('dmg')!.bytes();
      const inHeader = rng.chance(0.3);
      for (let k = rng.range(1, 4); k > 0; k--) {
        const at = rng.int(inHeader ? HEADER : bytes.length);
        bytes[at] = rng.chance(0.5) ? bytes[at]! ^ (1 << rng.int(8)) : rng.int(256);
      }
      const where = `seed ${seed}, iteration ${iter}`;
      const checkRecords = (records: LogRecord[]) => {
        for (let i = 0; i < records.length; i++) {
          assert.ok(isIntact(records[i]!.text), `${where}: record ${records[i]!.seq}`);
          if (i > 0) assert.ok(records[i]!.seq > records[i - 1]!.seq, `${where}: out of order`);
        }
      };
      const typed = (fn: () => void) => {
        try {
          fn();
        } catch (e) {
          assert.ok(e instanceof ClientError, `${where}: ${String(e)}`);
        }
      };
      typed(() => {
        const reader = LogRing.open(pool, 'dmg', { readOnly: true });
        checkRecords(reader.records());
        reader.stats();
        reader.close();
      });
      typed(() => {
        ring = LogRing.open(pool, 'dmg');
        const seqs = [0, 1, 2].map((i) => ring.append(selfChecking('new', i, 10)));
        const records = ring.records();
        checkRecords(records);
        assert.deepEqual(records.slice(-3).map((r) => r.seq), seqs, `${where}: the new records`);
        ring.close();
      });
      pool.close();
    }
  });

  test('property: damage never hides an intact record, and the next append drops only the room it needs', () => {
    // Records of text, of random bytes and of small integers (whose words look like record headers
    // to a scan that resynchronises through them), then bytes of the record space damaged, some of
    // them in records' headers. A record is intact when no byte of its header, payload or padding
    // was touched: every intact record must be read, and after one more append every intact record
    // that starts past the room that append needed must still be.
    const recordArb = fc.record({ kind: fc.constantFrom('text', 'bytes', 'small'), size: fc.oneof(fc.nat(200), fc.nat(1008)), seed: fc.nat() });
    // Anywhere in the record space, in some record's header, or in the oldest one's (which the next append drops).
    const damageArb = fc.record({ where: fc.constantFrom('anywhere', 'header', 'oldest'), pick: fc.nat(), byte: fc.oneof(fc.nat(15), fc.constantFrom(1, 3)), xor: fc.oneof(fc.integer({ min: 1, max: 255 }), fc.constant(0x80)) });
    fc.assert(
      fc.property(fc.constantFrom(4096, 8192), fc.array(recordArb, { maxLength: 200 }), fc.array(damageArb, { minLength: 1, maxLength: 4 }), fc.nat(1008), (bytesOption, specs, damages, nextSize) => {
        const pool = memoryPool(4 * MiB);
        try {
          const ring = LogRing.open(pool, 'prop', { bytes: bytesOption });
          const cap = ring.capacity;
          const appended = new Map<number, Uint8Array>();
          for (const { kind, size, seed } of specs) {
            const n = Math.min(size, ring.maxRecordBytes);
            const rng = new Prng(seed);
            const record = kind === 'text' ? `${seed}:`.padEnd(n, '.').slice(0, n) : new Uint8Array(n).map(() => rng.int(kind === 'small' ? 4 : 256));
            appended.set(ring.append(record), typeof record === 'string' ? new TextEncoder().encode(record) : record);
          }
          const bytes = pool.find('prop')!.bytes();
          const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
          const head = Number(view.getBigUint64(HEAD_OFFSET, true));
          // The records as the writer laid them out, before any damage.
          const laid: Array<{ pos: number; phys: number; length: number; seq: number }> = [];
          for (let pos = Number(view.getBigUint64(TAIL_OFFSET, true)); pos < head; ) {
            const phys = pos % cap;
            const info = view.getUint32(HEADER + phys, true);
            const length = info & 0x80000000 ? cap - phys : (16 + (info & 0x3fffffff) + 15) & ~15;
            if (!(info & 0x80000000)) laid.push({ pos, phys, length, seq: Number(view.getBigUint64(HEADER + phys + 4, true)) });
            pos += length;
          }
          const damaged = new Set<number>();
          for (const { where, pick, byte, xor } of damages) {
            const at = where === 'anywhere' || laid.length === 0 ? pick % cap : laid[where === 'oldest' ? 0 : pick % laid.length]!.phys + byte;
            bytes[HEADER + at]! ^= xor;
            damaged.add(at);
          }
          const intact = laid.filter((r) => ![...damaged].some((d) => d >= r.phys && d < r.phys + r.length));
          const check = (records: LogRecord[], expected: number[], what: string) => {
            for (let i = 0; i < records.length; i++) {
              const r = records[i]!;
              if (i > 0) assert.ok(r.seq > records[i - 1]!.seq, `${what}: seq ${r.seq} after ${records[i - 1]!.seq}`);
              assert.deepEqual(r.bytes, appended.get(r.seq), `${what}: record ${r.seq} as appended`);
            }
            const seqs = new Set(records.map((r) => r.seq));
            assert.deepEqual(expected.filter((seq) => !seqs.has(seq)), [], `${what}: intact records not returned`);
          };
          const reader = LogRing.open(pool, 'prop', { readOnly: true });
          check(reader.records(), intact.map((r) => r.seq), 'reader');
          // One more append: the room it needs ends at minTail; an intact record from there on stays.
          const length = (16 + nextSize + 15) & ~15;
          const phys = head % cap;
          const minTail = head + (phys + length > cap ? cap - phys : 0) + length - cap;
          const next = new Uint8Array(nextSize).fill(7);
          const seq = ring.append(next);
          appended.set(seq, next);
          const kept = intact.filter((r) => r.pos >= minTail).map((r) => r.seq);
          check(ring.records(), [...kept, seq], 'writer, after one more append');
          check(reader.records(), [...kept, seq], 'reader, after one more append');
          assert.equal(ring.records().at(-1)!.seq, seq);
          reader.close();
          ring.close();
        } finally {
          pool.close();
        }
      }),
      { numRuns: 800 },
    );
  });

  test('a reader beside a writer that wraps the ring thousands of times: every record intact and in order, none counted as damaged', async () => {
    const { path, cleanup } = shmPath('log-race');
    const child = `
      import { Pool, LogRing } from ${JSON.stringify(PMPOOL_ENTRY)};
      import { crc32c } from ${JSON.stringify(new URL('./util/crc32c.js', PMPOOL_ENTRY).href)};
      const pool = Pool.open(process.argv[1]);
      const ring = LogRing.open(pool, 'race');
      process.stdout.write('ready\\n');
      let s = 1;
      for (let n = 0, end = Date.now() + 1500; Date.now() < end; n++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        const size = s % 1900;
        const body = 'w:' + n + ':' + '0123456789abcdef'.repeat(Math.ceil(size / 16)).slice(0, size);
        ring.append(body + ':' + crc32c(Buffer.from(body)).toString(16));
      }
      ring.close();
      pool.close();
    `;
    try {
      const pool = Pool.create(path, { size: '4M' });
      LogRing.open(pool, 'race', { bytes: 8192 }).close();
      const reader = LogRing.open(pool, 'race', { readOnly: true });
      const proc = startModule(child, [path]);
      let stderr = '';
      proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = once(proc, 'exit');
      await new Promise<void>((resolve, reject) => {
        proc.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
        proc.on('exit', (code) => reject(new Error(`the writer exited (${code}) before it was ready: ${stderr}`)));
      });
      let running = true;
      void exited.then(() => (running = false));
      let reads = 0;
      let lastSeq = 0;
      while (running) {
        const stats = reader.stats();
        assert.equal(stats.skipped, 0, `read ${reads}: ${JSON.stringify(stats)}`);
        const records = reader.records();
        assertInOrder(records);
        for (const r of records) assert.ok(isIntact(r.text), `record ${r.seq}`);
        if (reads % 50 === 0) {
          const out: string[] = [];
          assert.equal(logCommand(['dump', path, 'race'], (l) => out.push(l), () => {}), 0);
          assert.doesNotMatch(out[0]!, /damaged/);
        }
        lastSeq = Math.max(lastSeq, records.at(-1)?.seq ?? 0);
        reads++;
        await new Promise((r) => setImmediate(r));
      }
      const [code] = (await exited) as [number | null];
      assert.equal(code, 0, stderr);
      assert.ok(lastSeq > 1000 && reads > 100, `${reads} reads, ${lastSeq} records`);
      reader.close();
      pool.close();
    } finally {
      cleanup();
    }
  });
});

describe('pmpool log dump', () => {
  test('prints the records (text and JSON); 1 for a missing or wrong ring, 2 for bad usage', () => {
    const { path, cleanup } = shmPath('log-cli');
    try {
      const pool = Pool.create(path, { size: '8M' });
      const ring = LogRing.open(pool, 'app', { bytes: 8192 });
      ring.append('started');
      ring.append('two\nlines');
      ring.append(new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
      PersistentMap.open(pool, 'kv').close();
      const run = (args: string[]) => {
        const out: string[] = [];
        const err: string[] = [];
        const code = logCommand(args, (s) => out.push(s), (s) => err.push(s));
        return { code, out, err };
      };
      const text = run(['dump', path, 'app']);
      assert.equal(text.code, 0, text.err.join('\n'));
      assert.match(text.out[0]!, /^# log ring "app": 3 records, seq 1\.\.3/);
      assert.deepEqual(text.out.slice(1), ['1 started', '2 two\\nlines', '3 0xdeadbeef']);
      const json = run(['dump', path, 'app', '--json']);
      assert.equal(json.code, 0);
      const doc = JSON.parse(json.out.join('')) as { records: unknown[]; capacity: number };
      assert.equal(doc.capacity, 8192);
      assert.deepEqual(doc.records, [
        { seq: 1, text: 'started' },
        { seq: 2, text: 'two\nlines' },
        { seq: 3, base64: Buffer.from([0xde, 0xad, 0xbe, 0xef]).toString('base64') },
      ]);
      // The writer still holds the ring: a dump reads alongside it.
      ring.append('later');
      assert.equal(run(['dump', path, 'app']).out.at(-1), '4 later');
      const missing = run(['dump', path, 'nope']);
      assert.equal(missing.code, 1);
      assert.match(missing.err.join('\n'), /NOT_FOUND/);
      assert.equal(run(['dump', path, 'kv']).code, 1);
      assert.equal(run(['dump', `${path}-absent`, 'app']).code, 1);
      // A NAME that is no client name is bad usage whatever the pool: it is not opened for it.
      const badNames = [['dump', path, 'a/b'], ['dump', `${path}-absent`, 'a/b'], ['dump', '/', 'a/b'], ['dump', `${path}-absent`, '']];
      for (const bad of [[], ['dump'], ['dump', path], ['show', path, 'app'], ['dump', path, 'app', '--yaml'], ['dump', path, 'app', 'extra'], ...badNames]) {
        const r = run(bad);
        assert.equal(r.code, 2, JSON.stringify(bad));
        assert.match(r.err.join('\n'), /usage: pmpool log dump/);
      }
      ring.close();
      pool.close();
    } finally {
      cleanup();
    }
  });

  test('a text line says what the record holds: control characters escaped, and text never read as bytes', () => {
    const { path, cleanup } = shmPath('log-cli-text');
    try {
      const pool = Pool.create(path, { size: '8M' });
      const ring = LogRing.open(pool, 'app', { bytes: 8192 });
      ring.append('ok');
      ring.append('\x1b[1A\x1b[2Kerased the line above'); // a terminal would run it
      ring.append('tab\tbell\x07nul\x00del\x7f csi\x9b back\\slash');
      ring.append('0xdeadbeef'); // text
      ring.append(new Uint8Array([0xde, 0xad, 0xbe, 0xef])); // bytes
      ring.append('é ✓ 𝄞');
      ring.close();
      pool.close();
      const out: string[] = [];
      assert.equal(logCommand(['dump', path, 'app'], (l) => out.push(l), () => {}), 0);
      assert.deepEqual(out.slice(1), [
        '1 ok',
        '2 \\x1b[1A\\x1b[2Kerased the line above',
        '3 tab\\tbell\\x07nul\\x00del\\x7f csi\\x9b back\\\\slash',
        '4 \\x30xdeadbeef',
        '5 0xdeadbeef',
        '6 é ✓ 𝄞',
      ]);
    } finally {
      cleanup();
    }
  });
});

describe('pmpool log dump of a large ring', () => {
  test('costs what the ring holds, not its size: two records of a 256 MiB ring', () => {
    const { path, cleanup } = shmPath('log-dump-large');
    try {
      const pool = Pool.create(path, { size: '300M' });
      const ring = LogRing.open(pool, 'big', { bytes: 256 * MiB });
      ring.append('one');
      ring.append('two');
      ring.close();
      pool.close();
      const r = runModule(
        `import { readFileSync } from 'node:fs';
         import { logCommand } from ${JSON.stringify(new URL('./cli/log-command.js', PMPOOL_ENTRY).href)};
         const out = [];
         const code = logCommand(['dump', process.argv[1], 'big'], (s) => out.push(s), (s) => out.push(s));
         // VmHWM, this image's own peak: getrusage's maxRSS keeps the peak from before the execve,
         // which after a fork is the parent's (the test runner's) resident size.
         const peakKiB = Number(/^VmHWM:\\s+(\\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
         process.stdout.write(JSON.stringify({ code, out, maxRss: peakKiB * 1024 }));`,
        [path],
      );
      assert.equal(r.status, 0, r.stderr);
      const dump = JSON.parse(r.stdout) as { code: number; out: string[]; maxRss: number };
      assert.equal(dump.code, 0, dump.out.join('\n'));
      assert.deepEqual(dump.out.slice(1), ['1 one', '2 two']);
      // A reader that copied the whole ring (it did, once for the summary and once for the records)
      // would have touched its 256 MiB and as much again for each copy.
      assert.ok(dump.maxRss < 128 * MiB, `the dump's peak resident memory was ${(dump.maxRss / MiB).toFixed(0)} MiB`);
    } finally {
      cleanup();
    }
  });
});

describe('LogRing.open with options that are not an object, or fields of the wrong type', () => {

  test('refused with BAD_ARGUMENT; the ring and the pool are unchanged, no ring is created', () => {
    const pool = poolInMemory(4 << 20);
    const ring = LogRing.open(pool, 'log', { bytes: 16384 });
    ring.append('first');
    ring.close();
    const before = statsText(pool);
    for (const bad of NOT_OBJECTS) {
      const e = expectError(() => LogRing.open(pool, 'log', bad as never), ClientError, 'BAD_ARGUMENT');
      assert.equal(e.message, `LogRing.open options must be an object, got ${shown(bad)}`);
      expectError(() => LogRing.open(pool, 'other', bad as never), ClientError, 'BAD_ARGUMENT');
    }
    const fields: object[] = [{ bytes: '64K' }, { bytes: null }, { readOnly: 1 }, { create: 'no' }, { bytes: 16384, create: 0 }];
    for (const options of fields) {
      expectError(() => LogRing.open(pool, 'log', options as never), ClientError, 'BAD_ARGUMENT');
      expectError(() => LogRing.open(pool, 'other', options as never), ClientError, 'BAD_ARGUMENT');
    }
    for (const bad of [null, 42, {}]) expectError(() => LogRing.open(bad as never, 'log'), ClientError, 'BAD_ARGUMENT');
    assert.equal(statsText(pool), before);
    assert.equal(pool.find('other'), undefined);
    const again = LogRing.open(pool, 'log', { readOnly: true });
    assert.deepEqual([...again.records()].map((r) => r.text), ['first']);
    again.close();
  });

  test('a Uint8Array whose length lies is appended as the bytes it holds; one that only looks like one is BAD_VALUE; nothing else changes', () => {
    const pool = memoryPool();
    const ring = LogRing.open(pool, 'log', { bytes: 4096 });
    for (let i = 0; i < 8; i++) ring.append(`record ${i}`);
    const before = ring.records();
    // A subclass that says it is empty over 300 real bytes: the copy takes all 300, and the
    // room made for them is 300 bytes' worth, not none (which let the copy run over the oldest).
    class Lying extends Uint8Array {
      override get length(): number {
        return 0;
      }
    }
    const lying = new Lying(300).fill(7);
    const seq = ring.append(lying);
    const after = ring.records();
    assert.equal(after.at(-1)!.seq, seq);
    assert.deepEqual(after.at(-1)!.bytes, new Uint8Array(300).fill(7));
    assert.equal(ring.stats().skipped, 0, 'no record was overwritten unannounced');
    assertInOrder(after);
    assert.deepEqual(after.slice(0, -1), before.slice(before.length - (after.length - 1)), 'the older records kept are intact');
    const held = ring.records();
    for (const fake of [new Proxy(new Uint8Array(16), {}), Object.create(Uint8Array.prototype) as Uint8Array]) {
      const e = expectClientError(() => ring.append(fake), 'BAD_VALUE');
      assert.match(e.message, /only looks like one/);
    }
    assert.deepEqual(ring.records(), held, 'refused: nothing changed');
    ring.close();
    pool.close();
  });

  test('positions are counted to 2^53 bytes over a ring\'s life: an append past that is NO_SPACE, and the ring stays readable', () => {
    const pool = memoryPool();
    let ring = LogRing.open(pool, 'log', { bytes: 4096 });
    ring.close();
    // An empty ring whose positions have counted almost 2^53 bytes, as a ring that long in use has.
    const headerBytes = pool.find('log')!.bytes(0, HEADER);
    const header = new DataView(headerBytes.buffer, headerBytes.byteOffset, HEADER);
    const near = 2n ** 53n - 256n;
    header.setBigUint64(HEAD_OFFSET, near, true);
    header.setBigUint64(TAIL_OFFSET, near, true);
    ring = LogRing.open(pool, 'log');
    ring.append('x'.repeat(100)); // 128 bytes: still within
    const e = expectClientError(() => ring.append('y'.repeat(200)), 'NO_SPACE');
    assert.match(e.message, /2\^53/);
    assert.deepEqual(ring.records().map((r) => r.text), ['x'.repeat(100)], 'nothing changed');
    ring.close();
    const reader = LogRing.open(pool, 'log', { readOnly: true });
    assert.deepEqual(reader.records().map((r) => r.text), ['x'.repeat(100)], 'readable, and reopened');
    reader.close();
    pool.close();
  });

  test('a destroy() the pool refuses (quiesced for a handover) leaves the ring open, its writer able to append and destroy it later', () => {
    const { path, cleanup } = shmPath('log-destroy-refused');
    try {
      const pool = Pool.create(path, { size: '4M' });
      const ring = LogRing.open(pool, 'log', { bytes: 4096 });
      ring.append('kept');
      pool.quiesce();
      expectClientError(() => ring.destroy(), 'BUSY');
      pool.resume();
      assert.equal(ring.closed, false, 'refused: the ring is still open');
      assert.equal(ring.append('after'), 2);
      // Still its writer: another process is refused the ring while this one holds it.
      const other = runModule(
        `import { Pool, LogRing } from ${JSON.stringify(PMPOOL_ENTRY)};
         const pool = Pool.open(process.argv[1]);
         try { LogRing.open(pool, 'log'); process.stdout.write('opened'); } catch (e) { process.stdout.write(e.code); }
         pool.close();`,
        [path],
      );
      assert.equal(other.stdout, 'BUSY', other.stderr);
      assert.deepEqual(ring.records().map((r) => r.text), ['kept', 'after']);
      ring.destroy();
      assert.equal(pool.find('log'), undefined);
      pool.close();
    } finally {
      cleanup();
    }
  });

  test('a ring larger than the whole pool is NO_SPACE, a ClientError like every other refusal', () => {
    const pool = memoryPool(4 * MiB);
    const e = expectClientError(() => LogRing.open(pool, 'huge', { bytes: 8 * MiB }), 'NO_SPACE');
    assert.match(e.message, /more than the whole pool holds/);
    assert.equal(pool.find('huge'), undefined);
    assert.deepEqual(pool.check(), { ok: true, problems: [], repaired: [] });
    pool.close();
  });
});
