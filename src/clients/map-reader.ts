/**
 * The PersistentMap reader's side of the seqlock: how a reader, in any
 * process, reads consistently while the writer writes. A lookup runs until
 * it completes with the seqlock unchanged (a torn read retries); before it,
 * the reader waits for an even seqlock — the writer is not releasing memory
 * — and brings its cached table and segments up to date with the active
 * descriptor and the segment table. The writer's side (a section around
 * each release) is MapState.seqBegin/seqEnd; segments are mapped lazily by
 * the lookups themselves (map-space.ts, loadSegment).
 */
import { ClientError } from './errors.js';
import { HDR_ACTIVE, HDR_SEQ, NO_U32, SEGTAB, u32View } from './map-layout.js';
import { Torn } from './map-runtime.js';
import { forget } from './map-space.js';
import type { MapState } from './map-state.js';
import { readDescriptor } from './map-table.js';
import { sleepSync } from '../util/sleep.js';

/** How long a reader waits for a live writer to finish releasing memory. */
const READER_WAIT_MS = 10_000;

/** Reader: runs a lookup until it completes with the seqlock unchanged. */
export function shared<T>(s: MapState, fn: () => T): T {
  for (let retries = 0; ; retries++) {
    const seq = fresh(s);
    try {
      const v = fn();
      if (Atomics.load(s.hdr, HDR_SEQ) === seq) return v;
    } catch (e) {
      if (!(e instanceof Torn)) throw e;
      if (retries > 100) throw new ClientError('CORRUPT', `${s.what}: ${e.message}`);
      s.cachedSeq = -1;
    }
  }
}

/** Reader: waits for an even seqlock (or a dead writer) and makes the cached table and segments current. */
export function fresh(s: MapState): number {
  let since = 0;
  let failedSeq = -1;
  let failures = 0;
  for (let spins = 0; ; spins++) {
    const seq = Atomics.load(s.hdr, HDR_SEQ);
    // A writer found dead inside a write section is not waited for again at every lookup or
    // iteration step: the seqlock stays at that odd value until the next writer's open.
    if ((seq & 1) === 0 || seq === s.deadSeq || (spins > 200 && !s.lock.writerAlive())) {
      // An even value means the next writer has opened: the dead one's odd value may come back
      // (after 2^32 steps) while a live writer holds it.
      if ((seq & 1) !== 0) s.deadSeq = seq;
      else if (s.deadSeq !== -1) s.deadSeq = -1;
      if (seq === s.cachedSeq) return seq;
      if (reload(s, seq)) return seq;
      // A failed reload under a moving seqlock is a race; under a still one, damage.
      failures = seq === failedSeq ? failures + 1 : 1;
      failedSeq = seq;
      if (failures > 100) throw new ClientError('CORRUPT', `${s.what}: its table descriptor or table does not verify`);
    } else if (spins > 20) {
      // The writer is releasing memory (for a few microseconds, normally): wait, but not for ever
      // (by a monotonic clock: the wall clock may be set back meanwhile).
      if (since === 0) since = performance.now();
      else if (performance.now() - since > READER_WAIT_MS) throw new ClientError('BUSY', `${s.what}: the writer has been restructuring the map for ${READER_WAIT_MS} ms (stopped?)`);
      sleepSync(1);
    }
  }
}

function reload(s: MapState, seq: number): boolean {
  const d = Atomics.load(s.hdr, HDR_ACTIVE) & 1;
  const desc = readDescriptor(s.hdr, d, s.mapId);
  if (!desc.ok) return false;
  if (desc.pfn === 0) {
    s.setTable(NO_U32, 0, desc.seq, null);
  } else if (desc.pfn !== s.tablePfn || desc.seq !== s.tableSeq) {
    const run = s.describedTable(desc);
    if (run === undefined) return false;
    s.setTable(u32View(run.bytes(0, 2 ** desc.log2 * 8)), desc.log2, desc.seq, run);
  }
  for (const k of [...s.loaded]) {
    const run = s.segRun[k]!;
    if (Atomics.load(s.hdr, SEGTAB + 2 * k) !== run.pfn || s.hdr[SEGTAB + 2 * k + 1] !== run.count) forget(s, k);
  }
  s.activeDesc = d;
  s.cachedSeq = seq;
  return true;
}
