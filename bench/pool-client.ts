/**
 * One client of the concurrency scenario of bench/pool.ts: opens a pool that
 * another program made, keeps a ring of `ring` single pages of its own, and
 * for a fixed window of wall time allocates one page and releases its oldest
 * (one "pair"), counting pairs and timing every `sampleEvery`-th pair alone.
 *
 * Runs as a worker thread (workerData + parentPort) or as a child process
 * (options as argv[2], messages as JSON lines on stdin/stdout). Protocol:
 *   client → { ready: true }                 pool open, ring filled, JIT warm
 *   parent → { startAt, endAt }              epoch milliseconds (timeOrigin + now)
 *   client → ClientResult                    after the window; ring released, pool closed
 */
import { isMainThread, parentPort, threadId, workerData } from 'node:worker_threads';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { Pool } from '../src/pool/index.js';

export interface ClientOptions {
  path: string;
  /** Single pages this client keeps allocated; each pair allocates one and releases the oldest. */
  ring: number;
  /** Pairs run before reporting ready (JIT warm-up). */
  warmup: number;
  /** Every this-many-th pair is timed on its own with hrtime. */
  sampleEvery: number;
}

export interface ClientResult {
  pid: number;
  threadId: number;
  pairs: number;
  /** From the first pair at or after startAt to the clock check that saw endAt. */
  elapsedMs: number;
  /** Individually timed pairs, nanoseconds (clock reads included). */
  samples: number[];
  /**
   * CPU time (user + system) over the window, ms, from process.cpuUsage():
   * this process's alone for a child process; the whole process's — every
   * thread's — for a worker thread (Node 20 has no per-thread figure).
   */
  cpuMs: number;
}

export interface StartMessage {
  startAt: number;
  endAt: number;
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/** Wall clock comparable across processes and threads, in ms with sub-µs resolution. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

class Client {
  private readonly pool: Pool;
  private readonly ring: Float64Array;
  private head = 0;

  constructor(private readonly o: ClientOptions) {
    this.pool = Pool.open(o.path);
    this.ring = new Float64Array(o.ring);
    for (let i = 0; i < o.ring; i++) this.ring[i] = this.pool.alloc(1).pfn;
    for (let i = 0; i < o.warmup; i++) this.pair();
  }

  private pair(): void {
    const pfn = this.pool.alloc(1).pfn;
    this.pool.release(this.ring[this.head], 1);
    this.ring[this.head] = pfn;
    this.head = this.head + 1 === this.ring.length ? 0 : this.head + 1;
  }

  run(start: StartMessage): ClientResult {
    // Sleep to just before the common start (no CPU burnt), then spin to it.
    while (epochMs() < start.startAt - 2) Atomics.wait(sleepCell, 0, 0, 1);
    while (epochMs() < start.startAt) {
      /* spin */
    }
    const cpu0 = process.cpuUsage();
    const t0 = epochMs();
    const every = this.o.sampleEvery;
    const samples: number[] = [];
    let pairs = 0;
    let now = t0;
    while (now < start.endAt) {
      for (let i = 0; i < 64; i++) {
        if ((pairs + i) % every === 0) {
          const a = process.hrtime.bigint();
          this.pair();
          samples.push(Number(process.hrtime.bigint() - a));
        } else {
          this.pair();
        }
      }
      pairs += 64;
      now = epochMs();
    }
    const elapsedMs = now - t0;
    const cpu = process.cpuUsage(cpu0);
    for (const pfn of this.ring) this.pool.release(pfn, 1);
    this.pool.close();
    return { pid: process.pid, threadId, pairs, elapsedMs, samples, cpuMs: (cpu.user + cpu.system) / 1000 };
  }
}

if (!isMainThread && parentPort && (workerData as { poolClient?: ClientOptions } | null)?.poolClient) {
  const port = parentPort;
  const client = new Client((workerData as { poolClient: ClientOptions }).poolClient);
  port.once('message', (m: StartMessage) => {
    port.postMessage(client.run(m));
  });
  port.postMessage({ ready: true });
} else if (isMainThread && process.argv[2]?.startsWith('{')) {
  const client = new Client(JSON.parse(process.argv[2]) as ClientOptions);
  const lines = createInterface({ input: process.stdin });
  lines.once('line', (line) => {
    lines.close();
    const result = client.run(JSON.parse(line) as StartMessage);
    process.stdout.write(JSON.stringify(result) + '\n');
  });
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
}
