import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, closeSync, fstatSync, mkdirSync, openSync, readlinkSync, readdirSync, readFileSync, statSync, symlinkSync, truncateSync, writeFileSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { FileRegion, MAX_WINDOW_BYTES, MemoryRegion, Pool, RegionError, SubRegion, parseSize } from '../src/index.js';
import { FLOCK_EXCLUSIVE, FLOCK_SHARED, FLOCK_UNLOCK, native } from '../src/sys/native.js';
import { daxDevice } from '../src/region/file-region.js';
import { PMPOOL_ENTRY, runModule, startModule, shmPath, tempDir } from './support/child.js';
import { expectError, NOT_OBJECTS, shown } from './support/expect.js';

const PAGE = 4096;

const readlinkSafe = (link: string): string | null => {
  try {
    return readlinkSync(link);
  } catch {
    return null;
  }
};

const assertRegionError = (fn: () => unknown, code: string): RegionError => expectError(fn, RegionError, code);

describe('FileRegion over /dev/shm', () => {
  test('create, map a window, write, reopen, read back', () => {
    const { path, cleanup } = shmPath('basic');
    try {
      const region = FileRegion.create(path, { size: 16 * PAGE });
      assert.equal(region.kind, 'shm');
      assert.equal(region.size, 16 * PAGE);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const w = region.map(3 * PAGE + 100, 200);
      w.bytes().set([1, 2, 3], 0);
      region.close();
      assert.equal(region.closed, true);
      const again = FileRegion.open(path);
      const r = again.map(3 * PAGE, PAGE).bytes();
      assert.deepEqual([...r.subarray(100, 103)], [1, 2, 3]);
      again.close();
    } finally {
      cleanup();
    }
  });

  test('the same file mapped by two processes shares its bytes, and CAS increments lose no update', async () => {
    const { path, cleanup } = shmPath('cas');
    const perProcess = 1_000_000;
    try {
      const region = FileRegion.create(path, { size: PAGE });
      const counter = new Int32Array(region.map(0, PAGE).buffer, 0, 2);
      const child = `
        import { FileRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
        const region = FileRegion.open(process.argv[1]);
        const w = region.map(0, ${PAGE});
        const c = new Int32Array(w.buffer, w.byteOffset, 2);
        Atomics.add(c, 1, 1);                       // announce: mapped
        while (Atomics.load(c, 1) < 2) {}            // start together
        for (let i = 0; i < ${perProcess}; i++) {
          for (;;) { const v = Atomics.load(c, 0); if (Atomics.compareExchange(c, 0, v, v + 1) === v) break; }
        }
        region.close();
      `;
      const procs = [startModule(child, [path]), startModule(child, [path])];
      const codes = await Promise.all(
        procs.map(
          (p) =>
            new Promise<number | null>((resolve) => {
              let err = '';
              p.stderr.on('data', (d) => (err += d));
              p.on('exit', (code) => {
                if (code !== 0) console.error(err);
                resolve(code);
              });
            }),
        ),
      );
      assert.deepEqual(codes, [0, 0]);
      assert.equal(Atomics.load(counter, 0), 2 * perProcess);
      region.close();
    } finally {
      cleanup();
    }
  });

  test('a window unmapped explicitly is gone, and its buffer is detached', () => {
    const { path, cleanup } = shmPath('unmap');
    try {
      const region = FileRegion.create(path, { size: 64 * PAGE });
      const before = native.mappings();
      const w = region.map(0, 64 * PAGE);
      assert.equal(native.mappings().count, before.count + 1);
      assert.equal(native.mappings().bytes, before.bytes + 64 * PAGE);
      const view = w.bytes();
      w.unmap();
      assert.equal(w.mapped, false);
      assert.equal(native.mappings().count, before.count);
      assert.equal(w.buffer.byteLength, 0, 'detached buffer');
      assert.equal(view.length, 0, 'views of a detached buffer are empty, never a dangling pointer');
      assert.throws(() => w.bytes(), RegionError);
      region.close();
    } finally {
      cleanup();
    }
  });

  test('a close that fails leaves the region closed: closing it again closes no other file', () => {
    const { path, cleanup } = shmPath('close-fails');
    const other = shmPath('close-other');
    try {
      const region = FileRegion.create(path, { size: PAGE });
      const [fd] = readdirSync('/proc/self/fd').filter((n) => readlinkSafe(`/proc/self/fd/${n}`) === path);
      // Its descriptor closed behind its back: close(2) fails (EBADF), and the number is free for the next open.
      closeSync(Number(fd));
      const e = assertRegionError(() => region.close(), 'IO');
      assert.equal(e.errno, 'EBADF');
      assert.equal(region.closed, true);
      const reused = openSync(other.path, 'w');
      assert.equal(reused, Number(fd), 'the number is taken by another file');
      region.close();
      fstatSync(reused); // still open
      closeSync(reused);
    } finally {
      cleanup();
      other.cleanup();
    }
  });

  test('a region holds its file on two descriptors (its flock on one never mapped); a close that fails on either still closes the other', () => {
    for (const which of [0, 1]) {
      const { path, cleanup } = shmPath(`close-both-${which}`);
      try {
        const region = FileRegion.create(path, { size: PAGE });
        const fds = readdirSync('/proc/self/fd').filter((n) => readlinkSafe(`/proc/self/fd/${n}`) === path).map(Number).sort((a, b) => a - b);
        assert.equal(fds.length, 2, 'the mapped descriptor and the lock\'s');
        // Both read-write: NFS takes an exclusive flock only on a file open for writing.
        const access = (fd: number) => Number.parseInt(/^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8) & 3;
        assert.deepEqual(fds.map(access), [2, 2], 'O_RDWR');
        closeSync(fds[which]!); // behind its back: that close(2) fails (EBADF)
        assertRegionError(() => region.close(), 'IO');
        const left = readdirSync('/proc/self/fd').filter((n) => readlinkSafe(`/proc/self/fd/${n}`) === path);
        assert.deepEqual(left, [], `descriptor ${fds[which]} closed behind its back: the other must be closed all the same`);
      } finally {
        cleanup();
      }
    }
  });

  test("a worker that ends with its region or pool open leaves no descriptor, and no flock, behind", () => {
    const { path, cleanup } = shmPath('worker-fds');
    try {
      Pool.create(path, { size: 1 << 20 }).close();
      // Each worker opens a region and a pool on the file and keeps them: one returns, one is terminated.
      const child = runModule(
        `import { readdirSync, readlinkSync } from 'node:fs';
         import { Worker } from 'node:worker_threads';
         import { FileRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
         const path = process.argv[1];
         const ofPath = (fd) => { try { return readlinkSync('/proc/self/fd/' + fd) === path; } catch { return false; } };
         const count = () => readdirSync('/proc/self/fd').filter(ofPath).length;
         const body = (stay) => \`const { FileRegion, Pool } = await import(\${JSON.stringify(${JSON.stringify(PMPOOL_ENTRY)})});
           const region = FileRegion.open(\${JSON.stringify(path)});
           region.map(0, 4096).bytes()[0];
           Pool.open(\${JSON.stringify(path)}).alloc(1);
           (await import('node:worker_threads')).parentPort.postMessage('open');
           \${stay ? 'setInterval(() => {}, 1000);' : ''}\`;
         const run = async (stay) => {
           const worker = new Worker(\`import(\${JSON.stringify('data:text/javascript,' + encodeURIComponent(body(stay)))})\`, { eval: true });
           await new Promise((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject); });
           if (stay) await worker.terminate();
           else await new Promise((resolve) => worker.once('exit', resolve));
         };
         for (let i = 0; i < 3; i++) { await run(false); await run(true); }
         const left = count();
         let exclusive;
         try { FileRegion.open(path, { exclusive: true }).close(); exclusive = 'taken'; } catch (e) { exclusive = e.code; }
         process.stdout.write(JSON.stringify({ left, exclusive }));`,
        [path],
      );
      assert.equal(child.status, 0, child.stderr);
      assert.deepEqual(JSON.parse(child.stdout), { left: 0, exclusive: 'taken' });
    } finally {
      cleanup();
    }
  });

  test("advice that discards contents never reaches the bytes around an unaligned window", () => {
    const { path, cleanup } = shmPath('advise');
    try {
      const region = FileRegion.create(path, { size: 4 * PAGE });
      const all = region.map(0, 4 * PAGE);
      all.bytes().fill(0xaa);
      // A window from byte 100 to byte PAGE + 50: it holds no whole page.
      region.map(100, PAGE - 50).advise('remove');
      assert.ok(all.bytes().every((b) => b === 0xaa), 'nothing was punched out');
      // From byte 100 to the end of page 2: only page 1, the whole page inside it, is removed.
      region.map(100, 3 * PAGE - 100).advise('remove');
      const bytes = all.bytes();
      assert.ok(bytes.subarray(0, PAGE).every((b) => b === 0xaa), 'page 0 (partly in the window) intact');
      assert.ok(bytes.subarray(PAGE, 3 * PAGE).every((b) => b === 0), 'pages 1 and 2, wholly inside, removed');
      assert.ok(bytes.subarray(3 * PAGE).every((b) => b === 0xaa), 'page 3 intact');
      region.close();
    } finally {
      cleanup();
    }
  });

  test("a window's flush and advice take only ranges inside the window: the bytes around it are never discarded", () => {
    const { dir, cleanup } = tempDir();
    try {
      // A durable file, so that flush reaches msync. The window holds bytes PAGE + 1 to 3 * PAGE - 2:
      // its mapping spans pages 1 and 2 whole, and so reaches a byte on either side of it.
      const region = FileRegion.create(join(dir, 'region'), { size: 4 * PAGE });
      const all = region.map(0, 4 * PAGE);
      all.bytes().fill(0xaa);
      const window = region.map(PAGE + 1, 2 * PAGE - 2);
      for (const [offset, length] of [
        [-1, 2 * PAGE],
        [0, 2 * PAGE - 1],
        [2 * PAGE - 2, 1],
        [1.5, 1],
        [Number.NaN, 1],
      ]) {
        assertRegionError(() => window.advise('remove', offset, length), 'BAD_RANGE');
        assertRegionError(() => window.advise('willneed', offset, length), 'BAD_RANGE');
        assertRegionError(() => window.flush(offset, length), 'BAD_RANGE');
      }
      assertRegionError(() => window.flush(2 * PAGE), 'BAD_RANGE');
      assert.ok(all.bytes().every((b) => b === 0xaa), 'no byte was discarded');
      window.flush(2 * PAGE - 3, 1);
      // Bytes 2 * PAGE to 3 * PAGE - 2 of the region: page 2 is not wholly inside, nothing goes.
      window.advise('remove', PAGE - 1, PAGE - 1);
      assert.ok(all.bytes().every((b) => b === 0xaa), 'a page partly outside the range is kept');
      region.close();
      const memory = new MemoryRegion(4 * PAGE).map(PAGE, PAGE);
      assertRegionError(() => memory.flush(0, 2 * PAGE), 'BAD_RANGE');
      assertRegionError(() => memory.advise('remove', -1, PAGE), 'BAD_RANGE');
    } finally {
      cleanup();
    }
  });

  test('advice the kernel refuses, or that does not exist, is a RegionError', () => {
    const { path, cleanup } = shmPath('advise-refused');
    try {
      const writer = FileRegion.create(path, { size: PAGE });
      writer.map(0, PAGE).bytes().fill(7);
      const reader = FileRegion.open(path, { readOnly: true });
      const window = reader.map(0, PAGE);
      const e = assertRegionError(() => window.advise('remove'), 'IO');
      assert.equal(e.errno, 'EACCES', 'a read-only mapping may not punch out pages');
      assert.ok(window.bytes().every((b) => b === 7));
      for (const bad of ['bogus', 42, undefined]) {
        assertRegionError(() => window.advise(bad as never), 'BAD_ARGUMENT');
        assertRegionError(() => new MemoryRegion(PAGE).map(0, PAGE).advise(bad as never), 'BAD_ARGUMENT');
      }
      reader.close();
      writer.close();
    } finally {
      cleanup();
    }
  });

  // Through a SubRegion too: the slice of a sub-pool must not keep alive the windows it maps in its parent.
  for (const through of ['FileRegion', 'SubRegion'] as const) {
    test(`a window that is collected is unmapped (mapped through a ${through})`, () => {
      const { path, cleanup } = shmPath('gc');
      try {
        FileRegion.create(path, { size: PAGE * 256 }).close();
        const child = `
          import { readFileSync } from 'node:fs';
          import { FileRegion, SubRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
          import { native } from ${JSON.stringify(new URL('./sys/native.js', PMPOOL_ENTRY).href)};
          const path = process.argv[1];
          const mapsOf = () => readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith(path)).length;
          const file = FileRegion.open(path);
          const region = process.argv[2] === 'SubRegion' ? new SubRegion(file, 4096, 128 * 4096) : file;
          (() => { for (let i = 0; i < 8; i++) region.map(i * 4096, 4096).bytes()[0] = i; })();
          const mapped = mapsOf();
          for (let i = 0; i < 20 && native.mappings().count > 0; i++) {
            globalThis.gc();
            await new Promise((r) => setTimeout(r, 10));
          }
          console.log(JSON.stringify({ mapped, after: mapsOf(), live: native.mappings().count, windows: region.windows().length }));
          region.close();
          file.close();
        `;
        const r = runModule(child, [path, through], ['--expose-gc']);
        assert.equal(r.status, 0, r.stderr);
        const out = JSON.parse(r.stdout) as { mapped: number; after: number; live: number; windows: number };
        assert.equal(out.mapped, 8);
        assert.equal(out.live, 0);
        assert.equal(out.after, 0);
        assert.equal(out.windows, 0);
      } finally {
        cleanup();
      }
    });
  }
});

describe("the addon's file operations of the cold path (loadFile, readFile, writeFile, unlink, gettid)", () => {
  test('a regular file, through a symbolic link too, is mapped whole; munmap releases it', () => {
    const { dir, cleanup } = tempDir('pmpool-mapfile-');
    try {
      const data = Buffer.from('x'.repeat(3 * PAGE + 5) + 'end');
      writeFileSync(join(dir, 'file'), data);
      symlinkSync(join(dir, 'file'), join(dir, 'link'));
      const before = native.mappings();
      for (const name of ['file', 'link']) {
        const mapped = native.loadFile(join(dir, name));
        assert.equal(native.mappings().count, before.count + 1);
        assert.deepEqual(Buffer.from(mapped), data);
        native.munmap(mapped);
        assert.equal(native.mappings().count, before.count);
        assert.equal(mapped.byteLength, 0, 'detached: no view can reach the unmapped pages');
      }
      writeFileSync(join(dir, 'empty'), '');
      const empty = native.loadFile(join(dir, 'empty'));
      assert.equal(empty.byteLength, 0);
      assert.equal(native.mappings().count, before.count, 'an empty file is no mapping');
    } finally {
      cleanup();
    }
  });

  test('loadFile is a private copy: a file rewritten or cut short in place afterwards leaves it as it was read', () => {
    const { dir, cleanup } = tempDir('pmpool-loadfile-');
    try {
      const path = join(dir, 'file');
      const data = Buffer.alloc(5 * PAGE, 'a');
      writeFileSync(path, data);
      const loaded = native.loadFile(path);
      // In place (the same inode): what a copy over an installed package does.
      writeFileSync(path, Buffer.alloc(5 * PAGE, 'b'));
      assert.deepEqual(Buffer.from(loaded), data, 'the bytes read are the bytes kept');
      truncateSync(path, 0);
      assert.deepEqual(Buffer.from(loaded), data, 'a truncated file is no SIGBUS for a copy');
      native.munmap(loaded);
    } finally {
      cleanup();
    }
  });

  test('anything but a regular file is refused with its errno, at once (a FIFO does not block)', () => {
    const { dir, cleanup } = tempDir('pmpool-mapfile-');
    try {
      execFileSync('mkfifo', [join(dir, 'fifo')]);
      const before = native.mappings();
      for (const [path, code] of [
        [join(dir, 'missing'), 'ENOENT'],
        [dir, 'EINVAL'],
        [join(dir, 'fifo'), 'EINVAL'],
        ['/dev/null', 'EINVAL'],
      ] as const) {
        assert.throws(() => native.loadFile(path), (e: NodeJS.ErrnoException) => e.code === code && e.message.includes(path), path);
      }
      assert.equal(native.mappings().count, before.count);
    } finally {
      cleanup();
    }
  });

  test('readFile: what it read and what fstat says of that file; only what it may read is read', () => {
    const { dir, cleanup } = tempDir('pmpool-readfile-');
    try {
      writeFileSync(join(dir, 'file'), 'hello', { mode: 0o640 });
      symlinkSync(join(dir, 'file'), join(dir, 'link'));
      execFileSync('mkfifo', [join(dir, 'fifo')]);
      const read = native.readFile(join(dir, 'file'), 100, true, false);
      assert.equal(Buffer.from(read.data).toString(), 'hello');
      assert.deepEqual([read.type, read.uid, read.mode, read.size], ['file', process.getuid!(), 0o640, 5]);
      assert.equal(Buffer.from(native.readFile(join(dir, 'link'), 100, false, false).data).toString(), 'hello', 'followed when allowed');
      assert.throws(() => native.readFile(join(dir, 'link'), 100, true, false), (e: NodeJS.ErrnoException) => e.code === 'ELOOP');
      const big = native.readFile(join(dir, 'file'), 4, true, false);
      assert.deepEqual([big.data.byteLength, big.size], [0, 5], 'a file over maxBytes is not read; its size says why');
      // /proc files say size 0 and are read to their end; a character device gives what is asked.
      assert.match(Buffer.from(native.readFile('/proc/self/stat', 4096, false, false).data).toString('latin1'), new RegExp(`^${process.pid} \\(`));
      const random = native.readFile('/dev/urandom', 64, false, true);
      assert.deepEqual([random.type, random.data.byteLength], ['char', 64]);
      // Each kind is read only when asked for: a device read to find it is no file consumes what it
      // reads (a terminal's typed input), and a file is not taken for a device.
      const device = native.readFile('/dev/zero', 64, false, false);
      assert.deepEqual([device.type, device.data.byteLength], ['char', 0], 'a device is not read as a file');
      const notDevice = native.readFile(join(dir, 'file'), 100, true, true);
      assert.deepEqual([notDevice.type, notDevice.data.byteLength, notDevice.size], ['file', 0, 5], 'a file is not read as a device');
      for (const [path, type] of [
        [join(dir, 'fifo'), 'fifo'],
        [dir, 'directory'],
      ] as const) {
        const other = native.readFile(path, 100, true, false);
        assert.deepEqual([other.type, other.data.byteLength], [type, 0], `${type}: opened without blocking, not read`);
      }
      assert.throws(() => native.readFile(join(dir, 'missing'), 100, true, false), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.message.includes('missing'));
      assert.throws(() => native.readFile(join(dir, 'file'), -1, true, false), TypeError);
      assert.throws(() => native.readFile(join(dir, 'file'), 2 ** 31, true, false), (e: NodeJS.ErrnoException) => e.code === 'EINVAL');
    } finally {
      cleanup();
    }
  });

  test('writeFile creates a new file with its mode, never over an existing file or a link; unlink removes it', () => {
    const { dir, cleanup } = tempDir('pmpool-writefile-');
    try {
      const path = join(dir, 'blob');
      native.writeFile(path, Buffer.from('data'), 0o600);
      assert.equal(readFileSync(path, 'utf8'), 'data');
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.throws(() => native.writeFile(path, Buffer.from('other'), 0o600), (e: NodeJS.ErrnoException) => e.code === 'EEXIST');
      assert.equal(readFileSync(path, 'utf8'), 'data', 'the existing file is untouched');
      symlinkSync(join(dir, 'target'), join(dir, 'planted'));
      assert.throws(() => native.writeFile(join(dir, 'planted'), Buffer.from('x'), 0o600), (e: NodeJS.ErrnoException) => e.code === 'EEXIST');
      assert.equal(existsSync(join(dir, 'target')), false, 'nothing was written through the link');
      assert.throws(() => native.writeFile(join(dir, 'x'), 'text' as unknown as Uint8Array, 0o600), TypeError);
      native.unlink(path);
      assert.equal(existsSync(path), false);
      assert.throws(() => native.unlink(path), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
    } finally {
      cleanup();
    }
  });

  test('gettid: the main thread is the process leader; a worker is a task of its own', async () => {
    assert.equal(native.gettid(), process.pid);
    const { Worker } = await import('node:worker_threads');
    // The worker stays alive (listening) until told to go: its task exists while it is checked.
    const addon = JSON.stringify(new URL('../../build/Release/pmpool.node', import.meta.url).pathname);
    const worker = new Worker(`const { parentPort } = require('node:worker_threads'); parentPort.once('message', () => parentPort.close()); parentPort.postMessage(require(${addon}).gettid());`, { eval: true });
    const tid = await new Promise<number>((resolve, reject) => worker.once('message', resolve).once('error', reject));
    assert.notEqual(tid, process.pid);
    assert.ok(existsSync(`/proc/${process.pid}/task/${tid}`), 'a task of this process');
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.postMessage('go');
    await exited;
  });
});

describe("the addon's flock", () => {
  test('takes the lock it is asked for, and refuses an operation that is none of unlock, shared, exclusive', () => {
    const { dir, cleanup } = tempDir('pmpool-flock-');
    try {
      const path = join(dir, 'lock');
      const fd = native.open(path, true, true, false, 0o600);
      const other = native.open(path, false, false, false, 0);
      try {
        for (const op of [3, 7, 2 ** 31 - 1]) assert.throws(() => native.flock(fd, op, true), TypeError, `op ${op}`);
        // Nothing was taken by the refused calls: another open file description gets it exclusively.
        assert.equal(native.flock(other, FLOCK_EXCLUSIVE, true), true);
        assert.equal(native.flock(fd, FLOCK_SHARED, true), false);
        assert.equal(native.flock(other, FLOCK_UNLOCK, false), true);
        assert.equal(native.flock(fd, FLOCK_SHARED, true), true);
      } finally {
        native.close(other);
        native.close(fd);
      }
    } finally {
      cleanup();
    }
  });
});

describe("the addon's flags and errors", () => {
  test('a flag is a boolean and nothing else: 1 for true would map read-only what was asked writable, or the reverse', () => {
    const { path, cleanup } = shmPath('addon-flags');
    const fd = native.open(path, true, true, false, 0o600);
    try {
      native.ftruncate(fd, PAGE);
      for (const flag of [1, 0, 'yes', undefined, null, {}]) {
        assert.throws(() => native.mmap(fd, 0, PAGE, flag as unknown as boolean, false), (e: unknown) => e instanceof TypeError && /writable must be a boolean/.test((e as Error).message), shown(flag));
        assert.throws(() => native.open(path, false, false, flag as unknown as boolean, 0), (e: unknown) => e instanceof TypeError && /readOnly must be a boolean/.test((e as Error).message), shown(flag));
        assert.throws(() => native.flock(fd, FLOCK_SHARED, flag as unknown as boolean), TypeError, shown(flag));
        assert.throws(() => native.claimExec(flag as unknown as boolean), TypeError, shown(flag));
      }
    } finally {
      native.close(fd);
      cleanup();
    }
  });

  test('an errno is named by its own name, whichever it is', () => {
    // ESPIPE: fallocate on a pipe. Not one of the handful the addon once named; they got "EUNKNOWN".
    const { dir, cleanup } = tempDir('pmpool-errno-');
    try {
      const fifo = join(dir, 'fifo');
      execFileSync('mkfifo', [fifo]);
      const fd = openSync(fifo, 'r+');
      try {
        assert.throws(() => native.fallocate(fd, 0, PAGE, false), (e: NodeJS.ErrnoException) => e.code === 'ESPIPE' && e.errno === -29 && /ESPIPE/.test(e.message));
      } finally {
        closeSync(fd);
      }
    } finally {
      cleanup();
    }
  });
});

describe("the addon's execve refuses what it cannot pass, and this program keeps running", () => {
  // A file that does not exist: a call the addon wrongly lets through fails there (ENOENT) instead
  // of replacing the test runner.
  const missing = '/nonexistent/pmpool-execve-test';

  test("an argument's getter that throws is the error reported", () => {
    // Many times over: the element the getter failed to give was read uninitialized, which crashed
    // the process only when what the stack held there happened not to be a handle.
    for (let round = 0; round < 500; round++) {
      for (const at of [0, 1]) {
        const args = at === 0 ? [] : ['a', 'b'];
        Object.defineProperty(args, at, { get: () => { throw new Error(`getter ${at}`); } });
        assert.throws(() => native.execve(missing, args, [], [], 0), { message: `getter ${at}` });
        assert.throws(() => native.execve(missing, ['a'], args, [], 0), { message: `getter ${at}` });
        assert.throws(() => native.execve(missing, ['a'], null, args, 0), { message: `getter ${at}` });
      }
    }
  });

  test('an argument or variable with a NUL is refused, not cut short at it', () => {
    const nul = (e: unknown): boolean => e instanceof TypeError && /NUL/.test(e.message);
    assert.throws(() => native.execve(missing, ['a', 'b\0c'], [], [], 0), nul);
    assert.throws(() => native.execve(missing, ['a'], ['A=1\0B=2'], [], 0), nul);
    assert.throws(() => native.execve(missing, ['a'], null, ['A=1\0B=2'], 0), nul);
    assert.throws(() => native.execve(`${missing}\0`, ['a'], [], [], 0), nul);
  });
});

describe('FileRegion refusals leave the file untouched', () => {
  function fingerprint(path: string): string {
    const s = statSync(path);
    return `${s.size}:${s.mtimeMs}:${s.uid}:${s.mode}:${readFileSync(path).toString('hex')}`;
  }

  test('a symlink is refused (O_NOFOLLOW)', () => {
    const { dir, cleanup } = tempDir();
    try {
      const target = join(dir, 'target');
      writeFileSync(target, Buffer.alloc(PAGE, 7));
      symlinkSync(target, join(dir, 'link'));
      const before = fingerprint(target);
      assertRegionError(() => FileRegion.open(join(dir, 'link')), 'SYMLINK');
      assertRegionError(() => FileRegion.create(join(dir, 'link'), { size: PAGE }), 'EXISTS');
      assert.equal(fingerprint(target), before);
    } finally {
      cleanup();
    }
  });

  test("another uid's file is refused", () => {
    const { dir, cleanup } = tempDir();
    try {
      const path = join(dir, 'theirs');
      writeFileSync(path, Buffer.alloc(PAGE, 9));
      chownSync(path, 4242, 4242);
      const before = fingerprint(path);
      const e = assertRegionError(() => FileRegion.open(path), 'NOT_OWNER');
      assert.match(e.message, /uid 4242/);
      assert.equal(fingerprint(path), before);
    } finally {
      cleanup();
    }
  });

  test('sizes that are not whole pages, zero, or beyond the file are refused', () => {
    const { dir, cleanup } = tempDir();
    try {
      const odd = join(dir, 'odd');
      writeFileSync(odd, Buffer.alloc(PAGE + 1, 1));
      const before = fingerprint(odd);
      assertRegionError(() => FileRegion.open(odd), 'BAD_SIZE');
      assert.equal(fingerprint(odd), before);
      const empty = join(dir, 'empty');
      writeFileSync(empty, '');
      assertRegionError(() => FileRegion.open(empty), 'BAD_SIZE');
      const small = join(dir, 'small');
      writeFileSync(small, Buffer.alloc(2 * PAGE, 3));
      const smallBefore = fingerprint(small);
      assertRegionError(() => FileRegion.open(small, { size: 4 * PAGE }), 'TOO_LARGE');
      assert.equal(fingerprint(small), smallBefore);
      for (const size of [0, -PAGE, PAGE + 1, 1.5, Number.NaN]) {
        assertRegionError(() => FileRegion.create(join(dir, `new-${size}`), { size }), 'BAD_SIZE');
        assert.equal(existsSync(join(dir, `new-${size}`)), false, 'nothing created');
      }
    } finally {
      cleanup();
    }
  });

  test('an existing path is not overwritten by create; a missing one is NOT_FOUND on open', () => {
    const { dir, cleanup } = tempDir();
    try {
      const path = join(dir, 'exists');
      writeFileSync(path, Buffer.alloc(PAGE, 5));
      const before = fingerprint(path);
      assertRegionError(() => FileRegion.create(path, { size: 2 * PAGE }), 'EXISTS');
      assert.equal(fingerprint(path), before);
      assertRegionError(() => FileRegion.open(join(dir, 'missing')), 'NOT_FOUND');
    } finally {
      cleanup();
    }
  });

  test('a device, fifo or directory that is not DAX is refused', () => {
    const { dir, cleanup } = tempDir();
    try {
      assertRegionError(() => FileRegion.open('/dev/zero'), 'NOT_REGULAR');
      // A directory: refused as a FIFO is (read-write, open(2) itself fails with EISDIR), in both modes, by Pool.open too.
      const sub = join(dir, 'sub');
      mkdirSync(sub);
      for (const readOnly of [false, true]) {
        const e = assertRegionError(() => FileRegion.open(sub, { readOnly }), 'NOT_REGULAR');
        assert.match(e.message, /is a directory, not a regular file/);
      }
      assertRegionError(() => Pool.open(sub), 'NOT_REGULAR');
      assert.deepEqual(readdirSync(sub), [], 'nothing was created in it');
      const fifo = join(dir, 'fifo');
      execFileSync('mkfifo', [fifo]);
      assertRegionError(() => FileRegion.open(fifo), 'NOT_REGULAR');
      // Read-only, the open itself would wait for a writer to come to the fifo (in a child: a
      // hang here would hang the suite).
      const r = runModule(
        `
        import { FileRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
        try { FileRegion.open(process.argv[1], { readOnly: true }); console.log('opened'); }
        catch (e) { console.log(e.code); }
      `,
        [fifo],
        [],
        10_000,
      );
      assert.equal(r.signal, null, 'a read-only open of a fifo must not block');
      assert.equal(r.stdout.trim(), 'NOT_REGULAR', r.stderr);
    } finally {
      cleanup();
    }
  });

  test('a Unix socket is refused as NOT_REGULAR, in both modes (open(2) itself fails, ENXIO)', async () => {
    const { dir, cleanup } = tempDir();
    const server = createServer();
    try {
      const socket = join(dir, 'socket');
      await new Promise<void>((resolve) => server.listen(socket, resolve));
      for (const readOnly of [false, true]) {
        const e = assertRegionError(() => FileRegion.open(socket, { readOnly }), 'NOT_REGULAR');
        assert.equal(e.errno, 'ENXIO');
        assert.match(e.message, /is a socket/);
      }
      assertRegionError(() => Pool.open(socket), 'NOT_REGULAR');
    } finally {
      await new Promise((resolve) => server.close(resolve));
      cleanup();
    }
  });

  test('a file on a file system that cannot map it shared is refused as NOT_REGULAR at map', (t) => {
    // A sysfs attribute: a regular file of 4096 bytes that has no mmap. Opened read-only, and never written.
    const attribute = '/sys/kernel/mm/transparent_hugepage/enabled';
    if (!existsSync(attribute) || statSync(attribute).uid !== process.getuid?.()) return t.skip(`${attribute} is not here, or not this uid's`);
    const before = readFileSync(attribute, 'utf8');
    const fds = readdirSync('/proc/self/fd').length;
    const region = FileRegion.open(attribute, { readOnly: true });
    const e = assertRegionError(() => region.map(0, PAGE), 'NOT_REGULAR');
    assert.equal(e.errno, 'ENODEV');
    assert.match(e.message, /cannot map a file shared/);
    region.close();
    assert.equal(readdirSync('/proc/self/fd').length, fds, 'no descriptor left open');
    assert.equal(readFileSync(attribute, 'utf8'), before);
  });

  test('exclusive use is refused while another process holds the region, and vice versa', () => {
    const { path, cleanup } = shmPath('busy');
    try {
      const mine = FileRegion.create(path, { size: PAGE, exclusive: true });
      const probe = `
        import { FileRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
        for (const exclusive of [false, true]) {
          try { FileRegion.open(process.argv[1], { exclusive }).close(); console.log('opened'); }
          catch (e) { console.log(e.code); }
        }
      `;
      let r = runModule(probe, [path]);
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), ['BUSY', 'BUSY']);
      mine.close();
      const shared = FileRegion.open(path);
      r = runModule(probe, [path]);
      assert.deepEqual(r.stdout.trim().split('\n'), ['opened', 'BUSY']);
      shared.close();
    } finally {
      cleanup();
    }
  });

  test('windows outside the region are refused', () => {
    const region = new MemoryRegion(4 * PAGE);
    assertRegionError(() => region.map(3 * PAGE, 2 * PAGE), 'BAD_RANGE');
    assertRegionError(() => region.map(-1, 1), 'BAD_RANGE');
    assertRegionError(() => region.map(0, 0), 'BAD_RANGE');
    region.close();
    assertRegionError(() => region.map(0, 1), 'CLOSED');
  });

  test('a window within the size limit that whole pages would take over it is refused as BAD_RANGE', () => {
    const { path, cleanup } = shmPath('widened');
    try {
      // Sparse: nothing of it is touched.
      const region = FileRegion.create(path, { size: MAX_WINDOW_BYTES + 2 * PAGE });
      const e = assertRegionError(() => region.map(PAGE / 2, MAX_WINDOW_BYTES), 'BAD_RANGE');
      assert.match(e.message, /whole 4096-byte pages, over the/);
      assert.equal(region.windows().length, 0);
      region.map(PAGE, MAX_WINDOW_BYTES).unmap();
      region.close();
    } finally {
      cleanup();
    }
  });

  test('parseSize reads units and refuses nonsense', () => {
    assert.equal(parseSize('4K'), 4096);
    assert.equal(parseSize('64M'), 64 * 1024 ** 2);
    assert.equal(parseSize('1TiB'), 1024 ** 4);
    assert.equal(parseSize('123'), 123);
    assert.equal(parseSize('2mb'), 2 * 1024 ** 2);
    assert.equal(parseSize('512B'), 512);
    for (const bad of ['', 'x', '1.5G', '-4K', '1Q', '1e3', '4i', '4iB', 'iB', 'K']) assertRegionError(() => parseSize(bad), 'BAD_SIZE');
  });
});

describe('DAX devices', () => {
  // No DAX device here to open: a tree shaped as sysfs shows one, its subsystem link pointing at the
  // kernel's own dax bus where there is one (whose uevent file even root cannot read).
  test('a character device whose subsystem is dax (a bus, or a class before Linux 5.1) is found, with its size and alignment', () => {
    const { dir: sysfs, cleanup } = tempDir('pmpool-sysfs-');
    try {
      const subsystems: [string, string][] = [['class', join(sysfs, 'class', 'dax')], ['class', join(sysfs, 'class', 'mem')]];
      if (existsSync('/sys/bus/dax')) subsystems.push(['bus', '/sys/bus/dax']);
      subsystems.forEach(([, subsystem], minor) => {
        const device = join(sysfs, 'devices', `dev${minor}`);
        mkdirSync(device, { recursive: true });
        mkdirSync(subsystem, { recursive: true });
        symlinkSync(subsystem, join(device, 'subsystem'));
        writeFileSync(join(device, 'size'), `${4 * 1024 ** 3}\n`);
        writeFileSync(join(device, 'uevent'), `MAJOR=252\nMINOR=${minor}\nDEVNAME=dax0.${minor}\nDRIVER=device_dax\n`);
        mkdirSync(join(sysfs, 'dev', 'char'), { recursive: true });
        symlinkSync(device, join(sysfs, 'dev', 'char', `252:${minor}`));
      });
      writeFileSync(join(sysfs, 'devices', 'dev0', 'align'), `${PAGE}\n`);
      assert.deepEqual(daxDevice({ rdevMajor: 252, rdevMinor: 0 }, sysfs), { size: 4 * 1024 ** 3, align: PAGE }, 'class/dax');
      assert.equal(daxDevice({ rdevMajor: 252, rdevMinor: 1 }, sysfs), null, 'class/mem is no DAX device');
      if (subsystems.length > 2) {
        assert.deepEqual(daxDevice({ rdevMajor: 252, rdevMinor: 2 }, sysfs), { size: 4 * 1024 ** 3, align: 2 * 1024 ** 2 }, 'bus/dax, default alignment');
      }
      assert.equal(daxDevice({ rdevMajor: 252, rdevMinor: 3 }, sysfs), null, 'no such device');
    } finally {
      cleanup();
    }
  });
});

describe('a 1 TiB sparse region on a 24 GiB machine', () => {
  for (const where of ['shm', 'disk'] as const) {
    test(`${where}: created, opened, one page written and read back; RSS grows by about one page`, (t) => {
      const tmp = tempDir();
      const shm = shmPath('tib');
      const path = where === 'shm' ? shm.path : join(tmp.dir, 'tib');
      try {
        const child = `
          import { FileRegion } from ${JSON.stringify(PMPOOL_ENTRY)};
          import { readFileSync } from 'node:fs';
          // Resident bytes of this file's mappings, from /proc/self/smaps: the JS heap,
          // the JIT and the node binary's own pages move VmRSS on their own.
          const rss = () => {
            let total = 0, ours = false;
            for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\\n')) {
              if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) ours = line.endsWith(process.argv[1]);
              else if (ours && line.startsWith('Rss:')) total += Number(line.split(/\\s+/)[1]) * 1024;
            }
            return total;
          };
          const TiB = 1024 ** 4;
          FileRegion.create(process.argv[1], { size: TiB }).close();
          const region = FileRegion.open(process.argv[1]);
          const offset = TiB - 1024 ** 3 * 3 + 4096 * 7;     // somewhere far in
          const w = region.map(offset - (offset % (1024 ** 3)), 1024 ** 3);
          const view = w.bytes();
          const at = offset % (1024 ** 3);
          const before = rss();
          for (let i = 0; i < 4096; i++) view[at + i] = (i * 7) & 255;
          const after = rss();
          region.close();
          const again = FileRegion.open(process.argv[1]);
          const back = again.map(offset, 4096).bytes();
          let same = true;
          for (let i = 0; i < 4096; i++) if (back[i] !== ((i * 7) & 255)) same = false;
          again.close();
          console.log(JSON.stringify({ size: again.size, grew: after - before, same }));
        `;
        const r = runModule(child, [path]);
        assert.equal(r.status, 0, r.stderr);
        const out = JSON.parse(r.stdout) as { size: number; grew: number; same: boolean };
        assert.equal(out.size, 1024 ** 4);
        assert.equal(out.same, true);
        // One 4 KiB page touched: never the window's gigabyte, never megabytes.
        assert.ok(out.grew >= 4096 && out.grew <= 16 * 1024, `RSS grew by ${out.grew} bytes`);
        const blocks = Number(execFileSync('stat', ['-c', '%b', path], { encoding: 'utf8' }).trim());
        t.diagnostic(`1 TiB region on ${where}: the mapping's RSS grew by ${out.grew} bytes for one 4 KiB page written; ${blocks * 512} bytes allocated on disk`);
        assert.ok(blocks * 512 <= 64 * 1024, `file uses ${blocks * 512} bytes on disk`);
      } finally {
        shm.cleanup();
        tmp.cleanup();
      }
    });
  }
});

describe('MemoryRegion', () => {
  test('windows of one range share bytes; clone copies', () => {
    const region = new MemoryRegion(8 * PAGE);
    const a = region.map(PAGE, PAGE).bytes();
    const b = region.map(0, 2 * PAGE).bytes();
    a[5] = 42;
    assert.equal(b[PAGE + 5], 42);
    const copy = region.clone();
    a[5] = 43;
    assert.equal(copy.map(PAGE, PAGE).bytes()[5], 42);
    assertRegionError(() => new MemoryRegion(100), 'BAD_SIZE');
  });
});

describe('options that are not an object, or fields of the wrong type', () => {

  test('FileRegion.create / FileRegion.open refuse them with BAD_ARGUMENT and touch no file', () => {
    const fresh = shmPath('bad-options-new');
    const existing = shmPath('bad-options-old');
    try {
      FileRegion.create(existing.path, { size: PAGE }).close();
      for (const bad of NOT_OBJECTS) {
        let e = assertRegionError(() => FileRegion.create(fresh.path, bad as never), 'BAD_ARGUMENT');
        assert.equal(e.message, `FileRegion.create options must be an object, got ${shown(bad)}`);
        e = assertRegionError(() => FileRegion.open(existing.path, bad as never), 'BAD_ARGUMENT');
        assert.equal(e.message, `FileRegion.open options must be an object, got ${shown(bad)}`);
      }
      assertRegionError(() => FileRegion.create(fresh.path, undefined as never), 'BAD_ARGUMENT');
      assertRegionError(() => FileRegion.create(fresh.path, { size: PAGE, mode: '600' as never }), 'BAD_ARGUMENT');
      assertRegionError(() => FileRegion.create(fresh.path, { size: PAGE, exclusive: 'yes' as never }), 'BAD_ARGUMENT');
      assertRegionError(() => FileRegion.create(fresh.path, { size: PAGE, preallocate: 1 as never }), 'BAD_ARGUMENT');
      assertRegionError(() => FileRegion.create(fresh.path, { size: '64K' as never }), 'BAD_SIZE');
      assertRegionError(() => FileRegion.create(null as never, { size: PAGE }), 'BAD_ARGUMENT');
      assertRegionError(() => FileRegion.open(existing.path, { readOnly: 1 as never }), 'BAD_ARGUMENT');
      assertRegionError(() => FileRegion.open(existing.path, { exclusive: 'no' as never }), 'BAD_ARGUMENT');
      assertRegionError(() => FileRegion.open(existing.path, { size: '4K' as never }), 'BAD_SIZE');
      assertRegionError(() => FileRegion.open(42 as never), 'BAD_ARGUMENT');
      assert.equal(existsSync(fresh.path), false);
      assert.equal(statSync(existing.path).size, PAGE);
    } finally {
      fresh.cleanup();
      existing.cleanup();
    }
  });

  test('a SubRegion refuses a parent that is no Region', () => {
    for (const bad of [null, 42, 'x', {}, { map: () => undefined }]) {
      const e = assertRegionError(() => new SubRegion(bad as never, 0, PAGE), 'BAD_ARGUMENT');
      assert.match(e.message, /^a SubRegion needs a parent Region, got /);
    }
    assertRegionError(() => new SubRegion(new MemoryRegion(4 * PAGE), PAGE, 4 * PAGE), 'BAD_RANGE');
  });

  test('MemoryRegion refuses what is neither a size nor a SharedArrayBuffer', () => {
    for (const bad of [null, 'x', [], {}, new ArrayBuffer(PAGE)]) {
      const e = assertRegionError(() => new MemoryRegion(bad as never), 'BAD_ARGUMENT');
      assert.match(e.message, /^MemoryRegion needs a size in bytes or a SharedArrayBuffer, got /);
    }
    assertRegionError(() => new MemoryRegion(42), 'BAD_SIZE');
  });
});
