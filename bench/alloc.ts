/**
 * Bench of the allocator layer alone (src/alloc), each scenario next to a peer
 * measured in the same run: a CMA-style first-fit search over a flat bitmap,
 * as mm/cma.c's cma_alloc() does with lib/bitmap.c's
 * bitmap_find_next_zero_area_off() (always from bit 0, no summaries).
 *
 *   node dist/bench/alloc.js        human table, then one JSON line
 *
 * Scenarios (1 GiB of 4 KiB pages = 262,144 units):
 *   single50   50% random occupancy; alloc(1, 1) + release of a random used unit
 *   frag90     90% occupancy, the free units mostly scattered singles, plus 64
 *              free aligned 64-unit blocks; alloc(64, 64), releasing the oldest
 *              once 32 are outstanding (latency measured on the alloc)
 *   miss90     90% occupancy of scattered singles only: alloc(64, 64) that fails
 */
import { pathToFileURL } from 'node:url';
import { ArrayWordStore, BitmapAllocator, allocatorGeometry } from '../src/alloc/index.js';

const UNITS = 262_144;

/** Deterministic PRNG (mulberry32) so both sides see the same setup. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ------------------------------------------------------------- the peer

/**
 * A flat bitmap searched the way cma_alloc() searches: find_next_zero_bit,
 * align up, find_next_bit over the candidate, restart after the set bit.
 * 32-bit words (the kernel uses longs); set = used, as in CMA.
 */
export class CmaFirstFit {
  readonly bitmap: Uint32Array;
  readonly size: number;

  constructor(size: number) {
    this.size = size;
    this.bitmap = new Uint32Array(Math.ceil(size / 32));
  }

  /** lib/find_bit.c: first clear bit >= start, or size. */
  findNextZeroBit(start: number): number {
    const size = this.size;
    if (start >= size) return size;
    let idx = start >>> 5;
    let tmp = ~this.bitmap[idx] & (-1 << (start & 31));
    while (tmp === 0) {
      idx++;
      if (idx * 32 >= size) return size;
      tmp = ~this.bitmap[idx];
    }
    return Math.min(idx * 32 + (31 - Math.clz32(tmp & -tmp)), size);
  }

  /** lib/find_bit.c: first set bit in [start, end), or end. */
  findNextBit(start: number, end: number): number {
    if (start >= end) return end;
    let idx = start >>> 5;
    let tmp = this.bitmap[idx] & (-1 << (start & 31));
    while (tmp === 0) {
      idx++;
      if (idx * 32 >= end) return end;
      tmp = this.bitmap[idx];
    }
    return Math.min(idx * 32 + (31 - Math.clz32(tmp & -tmp)), end);
  }

  /** lib/bitmap.c bitmap_find_next_zero_area_off (offset 0): returns >= size - nr + 1 when none. */
  findNextZeroArea(start: number, nr: number, alignMask: number): number {
    for (;;) {
      let index = this.findNextZeroBit(start);
      index = (index + alignMask) & ~alignMask;
      const end = index + nr;
      if (end > this.size) return end;
      const i = this.findNextBit(index, end);
      if (i < end) {
        start = i + 1;
        continue;
      }
      return index;
    }
  }

  /** bitmap_set / bitmap_clear, word at a time. */
  setRange(start: number, count: number, used: boolean): void {
    const end = start + count;
    for (let w = start >>> 5; w <= (end - 1) >>> 5; w++) {
      let mask = -1;
      if (w === start >>> 5) mask &= -1 << (start & 31);
      if (w === (end - 1) >>> 5) mask &= -1 >>> (31 - ((end - 1) & 31));
      this.bitmap[w] = used ? this.bitmap[w] | mask : this.bitmap[w] & ~mask;
    }
  }

  /** cma_alloc: first fit from bit 0. */
  alloc(count: number, align: number): number {
    const index = this.findNextZeroArea(0, count, align - 1);
    if (index + count > this.size) return -1;
    this.setRange(index, count, true);
    return index;
  }

  /** cma_release. */
  release(start: number, count: number): void {
    this.setRange(start, count, false);
  }
}

// ------------------------------------------------------ the two sides

/** What a scenario drives: our allocator or the peer. */
export interface Side {
  alloc(count: number, align: number): number;
  release(start: number, count: number): void;
  markUsed(start: number, count: number): void;
}

function oursSide(): Side {
  const store = new ArrayWordStore(new Uint32Array(allocatorGeometry(UNITS).wordCount));
  const allocator = BitmapAllocator.format(store, UNITS);
  return {
    alloc: (count, align) => allocator.alloc(count, align),
    release: (start, count) => allocator.markFree(start, count),
    markUsed: (start, count) => allocator.markUsed(start, count),
  };
}

function peerSide(): Side {
  const peer = new CmaFirstFit(UNITS);
  return {
    alloc: (count, align) => peer.alloc(count, align),
    release: (start, count) => peer.release(start, count),
    markUsed: (start, count) => peer.setRange(start, count, true),
  };
}

// ------------------------------------------------------------ timing

interface Figures {
  opsPerSec: number;
  p50: number;
  p99: number;
}

function percentile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Runs `op` for about `seconds`, then `samples` more times one by one under the clock. */
function measure(op: () => void, seconds: number, samples: number): Figures {
  for (let i = 0; i < 20_000; i++) op(); // warm-up: let the JIT settle
  let ops = 0;
  const t0 = process.hrtime.bigint();
  const budget = BigInt(Math.round(seconds * 1e9));
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let i = 0; i < 1024; i++) op();
    ops += 1024;
    elapsed = process.hrtime.bigint() - t0;
  }
  const opsPerSec = ops / (Number(elapsed) / 1e9);
  const lat = new Float64Array(samples);
  for (let i = 0; i < samples; i++) {
    const a = process.hrtime.bigint();
    op();
    lat[i] = Number(process.hrtime.bigint() - a);
  }
  lat.sort();
  return { opsPerSec, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) };
}

/** Cost of reading the clock twice (included in every latency figure). */
function timerOverhead(): number {
  const lat = new Float64Array(100_000);
  for (let i = 0; i < lat.length; i++) {
    const a = process.hrtime.bigint();
    lat[i] = Number(process.hrtime.bigint() - a);
  }
  lat.sort();
  return percentile(lat, 0.5);
}

// --------------------------------------------------------- scenarios

/** 50% random occupancy; each op allocates one unit and releases a random used one. */
function single50(side: Side, seconds: number): Figures {
  const rnd = prng(50);
  const used = new Float64Array(UNITS);
  let nUsed = 0;
  for (let u = 0; u < UNITS; u++) {
    if (rnd() < 0.5) {
      side.markUsed(u, 1);
      used[nUsed++] = u;
    }
  }
  return measure(() => {
    const u = side.alloc(1, 1);
    const k = (rnd() * nUsed) | 0;
    const v = used[k];
    used[k] = u;
    side.release(v, 1);
  }, seconds, 200_000);
}

/**
 * 90% used. Every 64-unit block is used except `freeBlocks` wholly free ones;
 * then random single units outside those blocks are freed until 10% is free.
 */
export function fragment90(side: Side, freeBlocks: number, seed: number): void {
  const rnd = prng(seed);
  const blocks = UNITS / 64;
  const isFreeBlock = new Uint8Array(blocks);
  for (let placed = 0; placed < freeBlocks; ) {
    const b = Math.floor(rnd() * blocks);
    if (!isFreeBlock[b]) {
      isFreeBlock[b] = 1;
      placed++;
    }
  }
  const freeSingles = Math.round(UNITS * 0.1) - freeBlocks * 64;
  const freeUnit = new Uint8Array(UNITS);
  for (let placed = 0; placed < freeSingles; ) {
    const u = Math.floor(rnd() * UNITS);
    if (!isFreeBlock[u >>> 6] && !freeUnit[u]) {
      freeUnit[u] = 1;
      placed++;
    }
  }
  for (let b = 0; b < blocks; b++) {
    if (isFreeBlock[b]) continue;
    for (let u = b * 64; u < b * 64 + 64; u++) if (!freeUnit[u]) side.markUsed(u, 1);
  }
}

/** What the frag90 workload needs of a side: the allocator layer, the CMA peer, a Pool. */
export interface BlockSide {
  alloc(count: number, align: number): number;
  release(start: number, count: number): void;
}

/**
 * The frag90 workload, shared by bench/alloc and bench/pool: alloc(64, 64)
 * with 32 blocks kept outstanding, oldest released first.
 */
export class Frag90Ring {
  private readonly ring = new Float64Array(64);
  private head = 0;
  private outstanding = 0;
  constructor(private readonly side: BlockSide) {
    for (let i = 0; i < 32; i++) this.step();
  }
  /** Release the oldest block, allocate a new one. */
  readonly step = (): void => {
    this.releaseOldest();
    this.push(this.side.alloc(64, 64));
  };
  /** step(), returning the nanoseconds of the alloc alone. */
  timedStep(): number {
    this.releaseOldest();
    const a = process.hrtime.bigint();
    const s = this.side.alloc(64, 64);
    const ns = Number(process.hrtime.bigint() - a);
    this.push(s);
    return ns;
  }
  private releaseOldest(): void {
    if (this.outstanding < 32) return;
    this.side.release(this.ring[this.head]!, 64);
    this.head = (this.head + 1) & 63;
    this.outstanding--;
  }
  private push(start: number): void {
    if (start < 0) throw new Error('frag90: no block found, the setup guarantees one');
    this.ring[(this.head + this.outstanding) & 63] = start;
    this.outstanding++;
  }
}

/** alloc(64, 64) with 32 blocks kept outstanding (FIFO); the figures are the alloc alone. */
function frag90(side: Side, seconds: number): Figures {
  fragment90(side, 64, 90);
  const ring = new Frag90Ring(side);
  // Throughput of step (release + alloc); latency of the alloc alone.
  const throughput = measure(ring.step, seconds, 1);
  const samples = 200_000;
  const lat = new Float64Array(samples);
  for (let i = 0; i < samples; i++) lat[i] = ring.timedStep();
  lat.sort();
  return { opsPerSec: throughput.opsPerSec, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) };
}

/** alloc(64, 64) that fails: 90% used, only scattered single units free. */
function miss90(side: Side, seconds: number): Figures {
  fragment90(side, 0, 91);
  return measure(() => {
    if (side.alloc(64, 64) >= 0) throw new Error('miss90: found a block, the setup has none');
  }, seconds, 20_000);
}

// -------------------------------------------------------------- report

const SCENARIOS: { name: string; what: string; run: (side: Side, seconds: number) => Figures }[] = [
  { name: 'single50', what: '50% random, alloc(1,1)+release pair', run: single50 },
  { name: 'frag90', what: '90% fragmented, alloc(64,64) (+release)', run: frag90 },
  { name: 'miss90', what: '90% fragmented, alloc(64,64) fails', run: miss90 },
];

export async function benchAlloc(options: { seconds?: number; print?: boolean } = {}): Promise<Record<string, number>> {
  const seconds = options.seconds ?? 0.5;
  const print = options.print ?? false;
  const result: Record<string, number> = { units: UNITS, timer_overhead_ns: timerOverhead() };
  const rows: string[][] = [];
  for (const scenario of SCENARIOS) {
    const ours = scenario.run(oursSide(), seconds);
    const peer = scenario.run(peerSide(), seconds);
    const ratio = ours.opsPerSec / peer.opsPerSec;
    Object.assign(result, {
      [`${scenario.name}_ops_per_s`]: Math.round(ours.opsPerSec),
      [`${scenario.name}_p50_ns`]: ours.p50,
      [`${scenario.name}_p99_ns`]: ours.p99,
      [`${scenario.name}_peer_ops_per_s`]: Math.round(peer.opsPerSec),
      [`${scenario.name}_peer_p50_ns`]: peer.p50,
      [`${scenario.name}_peer_p99_ns`]: peer.p99,
      [`${scenario.name}_ratio`]: Number(ratio.toFixed(2)),
    });
    rows.push([
      scenario.name,
      scenario.what,
      (ours.opsPerSec / 1e6).toFixed(2) + ' M/s',
      `${ours.p50} / ${ours.p99}`,
      (peer.opsPerSec / 1e6).toFixed(3) + ' M/s',
      `${peer.p50} / ${peer.p99}`,
      ratio.toFixed(1) + 'x',
    ]);
  }
  if (print) {
    const header = ['scenario', 'workload', 'pmpool ops/s', 'p50/p99 ns', 'CMA ops/s', 'CMA p50/p99 ns', 'ratio'];
    const table = [header, ...rows];
    const widths = header.map((_, c) => Math.max(...table.map((r) => r[c].length)));
    console.log(`allocator layer, ${UNITS} units (1 GiB of 4 KiB pages); peer: CMA-style first fit (bitmap_find_next_zero_area_off)`);
    for (const r of table) console.log(r.map((cell, c) => cell.padEnd(widths[c])).join('  '));
    console.log(`(latencies include ~${result.timer_overhead_ns} ns of clock reads; frag90 latency is the alloc alone)`);
    console.log(JSON.stringify(result));
  }
  return result;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await benchAlloc({ print: true });
}
