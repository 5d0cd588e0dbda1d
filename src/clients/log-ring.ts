/**
 * LogRing: the pstore/ramoops idea for programs — a ring of records in one
 * pool run that the next program (after a crash, an exec, a handover) reads
 * back in order. docs/clients.md has the layout and the atomicity argument.
 *
 *   header (4 KiB)   client header, writer lock, head and tail (u64 byte
 *                    positions that only grow; the ring offset is pos % capacity)
 *   data             records, 16-byte aligned, never straddling the end:
 *                    [info u32][seq u64][crc32c u32][payload][pad]
 *                    info = payload length | TEXT bit | PAD bit
 *
 * append: move the tail past the records the new one will overwrite (one
 * store), write the record beyond the head, then publish it by one 64-bit
 * store of the head. Readers take [tail, head) and validate every record by
 * its CRC (seeded with the ring's id) and the order of its seq; a record
 * that fails is skipped, never returned.
 */
import { PmpoolError } from '../errors.js';
import type { Allocation, Pool } from '../index.js';
import { crc32c, crc32cWords } from '../util/crc32c.js';
import { describeValue } from '../util/options.js';
import { checkClientName, checkOpenArguments, findRoot, LOCK_INDEX, MUTABLE, newClientId, poolCall, readFixedHeader, TYPE_LOG, writeFixedHeader } from './client-header.js';
import { describe, isDetached, isWellFormed, LENGTH_MASK, readUtf8, typedArrayLength, writeUtf8 } from './codec.js';
import { ClientError } from './errors.js';
import { WriterLock } from './writer-lock.js';

export interface LogRingOptions {
  /** Data capacity in bytes when the ring is created, 1024 to 2^31 (rounded up to whole pages). An existing ring keeps its size. */
  bytes?: number;
  /** Open as a reader (e.g. a dump tool) while the writer, in any process, goes on appending. */
  readOnly?: boolean;
  /** Create the ring when there is none (writers only). Default true. */
  create?: boolean;
}

export interface LogRecord {
  /** 1 for the first record ever appended, then consecutive. */
  seq: number;
  /** The record's bytes (UTF-8 for a text record). */
  bytes: Uint8Array;
  /** The record as appended, when it was a string. */
  text?: string;
}

export interface LogRingStats {
  capacity: number;
  /** Bytes between tail and head (records and wrap padding). */
  used: number;
  records: number;
  firstSeq: number | null;
  lastSeq: number | null;
  /**
   * Records lost to damage (a bad header or CRC, a seq out of order) and skipped: as many as the
   * seqs of the intact records around them say, one for damage before the first or after the last.
   */
  skipped: number;
  /** Largest payload one record may carry. */
  maxRecordBytes: number;
}

/* ---------------- layout ---------------- */

const HEADER_BYTES = 4096;
const HEAD = MUTABLE / 8; // u64 index: next record's position
const TAIL = HEAD + 1; // u64 index: oldest record's position
const NEXT_SEQ = HEAD + 2; // u64 index: a hint, never ahead of the truth
const REC_HEADER = 16;
const INFO_TEXT = 0x40000000;
const INFO_PAD = 0x80000000;
const MIN_CAPACITY = 1024;
const MAX_CAPACITY = 2 ** 31;
/** The largest seq gap a scan bridges after a damaged record. */
const RESYNC_SPAN = 2 ** 40;

function align16(n: number): number {
  return (n + 15) & ~15;
}

let faultHook: ((point: string) => void) | null = null;
/** @internal the crash simulation stops the world between two stores by throwing from here; a race test runs another opener here. */
export function setLogFaultHook(hook: ((point: string) => void) | null): void {
  faultHook = hook;
}
function fault(point: string): void {
  if (faultHook !== null) faultHook(point);
}

export class LogRing {
  readonly pool: Pool;
  readonly name: string;
  readonly readOnly: boolean;
  /** Bytes of record space. */
  readonly capacity: number;
  /** Largest payload of one record: a quarter of the ring, less its header. */
  readonly maxRecordBytes: number;
  private readonly owner: string;
  private readonly what: string;
  private readonly root: Allocation;
  private readonly words: Uint32Array;
  private readonly big: BigUint64Array;
  private readonly data: Uint8Array;
  private readonly dataWords: Uint32Array;
  private readonly dataBuf: Buffer;
  private readonly lock: WriterLock;
  private ringId = 0;
  private closedFlag = false;
  /** Undoes the pool.onClose that closes the ring with its pool (a pool closed first left its lock held). */
  private unregisterClose = (): void => {};
  /* writer state */
  private head = 0;
  private tail = 0;
  private nextSeq = 1;

  private constructor(pool: Pool, name: string, root: Allocation, readOnly: boolean) {
    this.pool = pool;
    this.name = name;
    this.readOnly = readOnly;
    this.owner = `plog:${name}`;
    this.what = `log ring "${name}"`;
    this.root = root;
    const bytes = root.bytes();
    if (bytes.length < HEADER_BYTES + MIN_CAPACITY) throw new ClientError('CORRUPT', `${this.what}: its run of ${root.count} pages is too small for a ring`);
    this.words = new Uint32Array(bytes.buffer, bytes.byteOffset, HEADER_BYTES / 4);
    this.big = new BigUint64Array(bytes.buffer, bytes.byteOffset, HEADER_BYTES / 8);
    // Rounded by arithmetic: `& ~15` works in 32 signed bits, where a ring of 2 GiB is negative.
    const room = Math.min(MAX_CAPACITY, bytes.length - HEADER_BYTES);
    this.capacity = room - (room % 16);
    this.maxRecordBytes = Math.floor(this.capacity / 4) - REC_HEADER;
    this.data = bytes.subarray(HEADER_BYTES, HEADER_BYTES + this.capacity);
    this.dataWords = new Uint32Array(bytes.buffer, bytes.byteOffset + HEADER_BYTES, this.capacity / 4);
    this.dataBuf = Buffer.from(bytes.buffer, bytes.byteOffset + HEADER_BYTES, this.capacity);
    this.lock = new WriterLock(this.words, LOCK_INDEX, pool.region);
  }

  /**
   * Opens the ring `name` in `pool`, creating it with `{ bytes }` of record
   * space if there is none. One writer at a time (a dead writer's lock is
   * broken); readers with `{ readOnly: true }`.
   */
  static open(pool: Pool, name: string, options: LogRingOptions = {}): LogRing {
    options = checkOpenArguments(pool, options, 'LogRing.open', ['readOnly', 'create']);
    // Checked even when the ring exists and keeps its size: bytes: "64K" or 0 is a mistake either way.
    const bytes = options.bytes;
    if (bytes !== undefined && typeof bytes !== 'number') throw new ClientError('BAD_ARGUMENT', `a ring's bytes must be a number, got ${describeValue(bytes)}`);
    if (bytes !== undefined && (!Number.isSafeInteger(bytes) || bytes < MIN_CAPACITY || bytes > MAX_CAPACITY)) {
      throw new ClientError('BAD_ARGUMENT', `a ring's bytes must be a whole number from ${MIN_CAPACITY} to ${MAX_CAPACITY}, got ${String(bytes)}`);
    }
    checkClientName(name);
    const readOnly = options.readOnly === true;
    const what = `log ring "${name}"`;
    const owner = `plog:${name}`;
    let root = findRoot(pool, name, owner, what);
    if (root === undefined) {
      if (readOnly || options.create === false) throw new ClientError('NOT_FOUND', `there is no ${what} in the pool`);
      if (bytes === undefined) throw new ClientError('BAD_ARGUMENT', `${what} does not exist; give { bytes } to create it`);
      try {
        // Zeroed before it commits: the run may hold what a released client left (see PersistentMap.open).
        root = poolCall(() => pool.alloc(Math.ceil((HEADER_BYTES + bytes) / pool.pageSize), { name, owner, zero: true }), what);
        fault('log:allocated');
      } catch (e) {
        if (!(e instanceof PmpoolError && e.code === 'NAME_TAKEN')) throw e;
        root = findRoot(pool, name, owner, what);
        if (root === undefined) throw e;
      }
    }
    const ring = new LogRing(pool, name, root, readOnly);
    try {
      ring.attach();
    } catch (e) {
      ring.lock.release();
      ring.closedFlag = true;
      throw e;
    }
    ring.unregisterClose = pool.onClose(() => ring.close());
    return ring;
  }

  private attach(): void {
    if (this.readOnly) {
      const header = readFixedHeader(this.root.bytes(0, 128), this.what, TYPE_LOG);
      if (header === null) throw new ClientError('NOT_FOUND', `${this.what} is still being created`);
      this.loadFixed(header.clientId, header.fixed);
      return;
    }
    // Not a ring: refuse before touching its lock words. A new run's lock words are zero from its
    // allocation; zeroing them here would free the lock of a writer that opened the ring meanwhile.
    readFixedHeader(this.root.bytes(0, 128), this.what, TYPE_LOG);
    this.lock.acquire(this.what);
    const header = readFixedHeader(this.root.bytes(0, 128), this.what, TYPE_LOG);
    if (header === null) this.initialize();
    else this.loadFixed(header.clientId, header.fixed);
    // Recovery: the head and tail are published words; the next seq follows the last valid record.
    const { head, tail } = this.cursors();
    const scan = this.scan(tail, head, this.data, this.dataWords, false);
    this.head = head;
    this.tail = tail;
    // The hint is unchecksummed and only needed when no record survives or the newest ones are
    // damaged; when the ring ends on an intact record, that one was the last published. A hint
    // past it (damage) would open a gap in the seqs, which readers count as records lost.
    const hint = Number(this.big[NEXT_SEQ]!);
    const useHint = Number.isSafeInteger(hint) && (scan.count === 0 || (scan.endsDamaged && hint - scan.lastSeq < RESYNC_SPAN));
    this.nextSeq = Math.max(scan.lastSeq + 1, useHint ? hint : 1);
  }

  private initialize(): void {
    const bytes = this.root.bytes(0, HEADER_BYTES);
    bytes.fill(0, 0, LOCK_INDEX * 4);
    bytes.fill(0, MUTABLE);
    this.ringId = newClientId();
    writeFixedHeader(bytes, {
      type: TYPE_LOG,
      headerBytes: HEADER_BYTES,
      clientId: this.ringId,
      fixed: [this.capacity, HEADER_BYTES, 0],
      poolUuid: this.pool.uuidBytes,
      createdAtMs: Date.now(),
      name: this.name,
    });
  }

  private loadFixed(clientId: number, fixed: [number, number, number]): void {
    if (fixed[0] !== this.capacity || fixed[1] !== HEADER_BYTES) {
      throw new ClientError('CORRUPT', `${this.what}: its header says ${fixed[0]} bytes of records, its run holds ${this.capacity}`);
    }
    this.ringId = clientId;
  }

  /** The published head and tail, checked. */
  private cursors(): { head: number; tail: number } {
    for (let tries = 0; ; tries++) {
      const head = Number(Atomics.load(this.big, HEAD));
      const tail = Number(Atomics.load(this.big, TAIL));
      const ok = Number.isSafeInteger(head) && tail <= head && head - tail <= this.capacity && head % 16 === 0 && tail % 16 === 0;
      if (ok) return { head, tail };
      // A reader may see a head and tail from two different appends; a writer sees its own.
      if (this.readOnly && tries < 100) continue;
      throw new ClientError('CORRUPT', `${this.what}: head ${head} and tail ${tail} do not describe a ring of ${this.capacity} bytes`);
    }
  }

  /* ---------------- appending ---------------- */

  /** Appends one record (a string or bytes); returns its seq. Crash-atomic: after a kill it is there whole or not at all. */
  append(record: string | Uint8Array): number {
    this.writable();
    let n: number;
    let text = false;
    if (typeof record === 'string') {
      if (!isWellFormed(record)) throw new ClientError('BAD_VALUE', 'the record string holds a lone surrogate; it would not read back as the same string');
      n = Buffer.byteLength(record, 'utf8');
      text = true;
    } else if (record instanceof Uint8Array) {
      // Its length as the copy below will see it: the typed array's own, not a `length` a subclass
      // or a Proxy may say (the copy would then run past the record's room, over the oldest records).
      const own = typedArrayLength(record);
      if (own === undefined) throw new ClientError('BAD_VALUE', `a record must be a string or a Uint8Array, got ${describe(record)}, which only looks like one`);
      n = own;
      // Refused here: copying it would throw a TypeError after the tail had dropped the oldest records.
      if (n === 0 && isDetached(record)) throw new ClientError('BAD_VALUE', 'the record is a view of a detached ArrayBuffer, or out of its bounds');
    } else {
      throw new ClientError('BAD_VALUE', `a record must be a string or a Uint8Array, got ${describe(record)}`);
    }
    if (n > this.maxRecordBytes) throw new ClientError('TOO_LARGE', `the record is ${n} bytes; a ring of ${this.capacity} bytes takes at most ${this.maxRecordBytes}`);
    const cap = this.capacity;
    const length = align16(REC_HEADER + n);
    const pos = this.head;
    const phys = pos % cap;
    const pad = phys + length > cap ? cap - phys : 0;
    const end = pos + pad + length;
    // Positions are exact in a double up to 2^53 bytes appended over the ring's life (at 0.5 GB/s,
    // some 200 days of nothing but appends): past that they would round, and the ring read as corrupt.
    if (!Number.isSafeInteger(end)) {
      throw new ClientError('NO_SPACE', `${this.what} has had ${pos} bytes appended over its life, the most its positions count (2^53); nothing changed: read its records, then destroy() it and create it again`);
    }
    // Seqs, like positions, are exact only up to 2^53, where seq + 1 would round back onto seq: a seq
    // number past it would be reused, and a scan reads any seq past it as damage. (A writer gets near
    // only from a next-seq hint damaged upward: one record per 16 bytes never counts that far.)
    const seq = this.nextSeq;
    if (!Number.isSafeInteger(seq)) {
      throw new ClientError('NO_SPACE', `${this.what} has numbered its records up to ${seq - 1}, the most a seq counts (2^53 - 1); nothing changed: read its records, then destroy() it and create it again`);
    }
    // 1. Drop the oldest records the new one will overwrite: one store of the tail.
    if (end - this.tail > cap) {
      let t = this.tail;
      const minTail = end - cap;
      while (t < minTail) t = this.nextPosition(t);
      Atomics.store(this.big, TAIL, BigInt(t));
      this.tail = t;
      fault('log:tail-moved');
    }
    // 2. Write beyond the head, where no reader looks.
    if (pad > 0) {
      // The pad's body is cleared, not skipped: it still holds the records of an earlier lap, each
      // with a valid CRC, and a reader that resynchronises through it (its header damaged, at the
      // tail, with no seq yet to compare against) would return them. Fewer bytes than the record.
      this.data.fill(0, phys + REC_HEADER, cap);
      this.writeHeader(phys, INFO_PAD, seq, 0);
    }
    const at = (pos + pad) % cap;
    if (text) writeUtf8(this.dataBuf, record as string, at + REC_HEADER, n);
    else this.data.set(record as Uint8Array, at + REC_HEADER);
    this.writeHeader(at, (n | (text ? INFO_TEXT : 0)) >>> 0, seq, n);
    fault('log:written');
    // 3. Publish: one 64-bit store.
    Atomics.store(this.big, HEAD, BigInt(end));
    this.head = end;
    this.nextSeq = seq + 1;
    fault('log:published');
    this.big[NEXT_SEQ] = BigInt(this.nextSeq);
    return seq;
  }

  private writeHeader(at: number, info: number, seq: number, n: number): void {
    const w = this.dataWords;
    const i = at >>> 2;
    w[i] = info;
    w[i + 1] = seq >>> 0;
    w[i + 2] = Math.floor(seq / 2 ** 32);
    w[i + 3] = this.recordCrc(at, n);
  }

  private recordCrc(at: number, n: number): number {
    return crc32c(this.data, at + REC_HEADER, at + REC_HEADER + n, crc32cWords(this.dataWords, at >>> 2, 3, this.ringId));
  }

  /**
   * The position after the record at `pos`, or `pos + 16` when the record there is not one the
   * writer can vouch for. Its length is taken when the record after it carries the seq that follows
   * (a pad: the record at the ring's start carries the pad's own), one word read; else only when its
   * CRC matches. A damaged length or pad bit is not believed: taken, it moved the tail over up to
   * the whole ring of intact records to make room for one; stepping drops only the room needed.
   */
  private nextPosition(pos: number): number {
    const cap = this.capacity;
    const w = this.dataWords;
    const phys = pos % cap;
    const i = phys >>> 2;
    const info = w[i]!;
    const n = info & LENGTH_MASK;
    const isPad = (info & INFO_PAD) !== 0;
    const next = pos + (isPad ? cap - phys : align16(REC_HEADER + n));
    const sane = isPad ? n === 0 && (info & INFO_TEXT) === 0 : n <= this.maxRecordBytes && phys + (next - pos) <= cap;
    if (!sane || next > this.head) return pos + REC_HEADER;
    if (next < this.head) {
      const j = (next % cap) >>> 2;
      const seq = w[i + 1]! + w[i + 2]! * 2 ** 32;
      if (w[j + 1]! + w[j + 2]! * 2 ** 32 === (isPad ? seq : seq + 1)) return next;
    }
    return w[i + 3] === this.recordCrc(phys, n) ? next : pos + REC_HEADER;
  }

  /* ---------------- reading ---------------- */

  /** The surviving records, oldest first: every one intact (CRC) and in order (seq). */
  records(): LogRecord[] {
    this.live();
    return this.consistentScan(true).scan.records;
  }

  stats(): LogRingStats {
    this.live();
    // Through the same copy as records(): a reader scanning the live ring would count what the
    // writer is overwriting at that moment as damaged records.
    const { head, tail, scan } = this.consistentScan(false);
    return {
      capacity: this.capacity,
      used: head - tail,
      records: scan.count,
      firstSeq: scan.firstSeq,
      lastSeq: scan.count === 0 ? null : scan.lastSeq,
      skipped: scan.skipped,
      maxRecordBytes: this.maxRecordBytes,
    };
  }

  /** The scan of [tail, head), for a reader over a copy that no concurrent append has touched. */
  private consistentScan(collect: boolean) {
    if (!this.readOnly) {
      const { head, tail } = this.cursors();
      return { head, tail, scan: this.scan(tail, head, this.data, this.dataWords, collect) };
    }
    for (;;) {
      // A reader copies [tail, head), then keeps what the writer had not begun to overwrite when the copy ended.
      const { head, tail } = this.cursors();
      const copy = this.copyOf(tail, head);
      const nowTail = Number(Atomics.load(this.big, TAIL));
      // Past the head read: the writer dropped everything copied here; read again. At the head: no
      // record survives (an empty ring, or one a writer emptied and may have died on), so none is
      // returned. Waiting for it to differ would spin for ever behind a writer killed there.
      if (nowTail > head) continue;
      const from = Math.max(tail, nowTail);
      return { head, tail: from, scan: this.scan(from, head, copy, new Uint32Array(copy.buffer), collect) };
    }
  }

  /**
   * The ring's bytes at positions [from, to), each at its own offset in a buffer of the ring's
   * size: the scan reads nothing else, and the rest of the buffer is never touched, so a reader
   * costs what the ring holds, not what it could hold.
   */
  private copyOf(from: number, to: number): Uint8Array {
    const cap = this.capacity;
    const copy = new Uint8Array(cap);
    const start = from % cap;
    const end = start + (to - from);
    copy.set(this.data.subarray(start, Math.min(end, cap)), start);
    if (end > cap) copy.set(this.data.subarray(0, end - cap));
    return copy;
  }

  /**
   * Walks [tail, head) of `data`: a record counts when its header is sane,
   * its CRC matches and its seq is larger than the last one's; anything
   * else is skipped by resynchronising on the next 16-byte boundary that
   * holds a valid record with a larger seq.
   */
  private scan(tail: number, head: number, data: Uint8Array, words: Uint32Array, collect: boolean) {
    const cap = this.capacity;
    const records: LogRecord[] = [];
    let lastSeq = 0;
    let firstSeq: number | null = null;
    let count = 0;
    let skipped = 0;
    let resyncing = false;
    for (let pos = tail; pos < head; ) {
      const phys = pos % cap;
      const i = phys >>> 2;
      const info = words[i]!;
      const seq = words[i + 1]! + words[i + 2]! * 2 ** 32;
      const n = info & LENGTH_MASK;
      const isPad = (info & INFO_PAD) !== 0;
      const length = isPad ? cap - phys : align16(REC_HEADER + n);
      // A pad is published together with the record after it, at the ring's start, which carries the
      // pad's seq. A pad without that record (a damaged head put the writer inside it) would hide
      // what was written where it claims to reach.
      const fits = isPad
        ? n === 0 && (info & INFO_TEXT) === 0 && pos + length < head && words[1]! + words[2]! * 2 ** 32 === seq
        : n <= this.maxRecordBytes && phys + length <= cap;
      const next = lastSeq + 1;
      // Larger than the last one's: consecutive but where damage took records, of which the next seq
      // the writer went on from may be all that is left (a damaged head it wrote after).
      // No writer writes a seq past 2^53 - 1 (append refuses it), and one read as a double there is not
      // the seq stored: a record that claims one is damage, whatever its CRC says. Taken, it would make
      // every real record after it look out of order, and the writer go on from a seq past it.
      const ordered = Number.isSafeInteger(seq) && (lastSeq === 0 ? seq >= 1 : seq >= next && seq - lastSeq < RESYNC_SPAN);
      if (!(fits && pos + length <= head && ordered && words[i + 3] === crc32c(data, phys + REC_HEADER, phys + REC_HEADER + n, crc32cWords(words, i, 3, this.ringId)))) {
        resyncing = true;
        pos += 16;
        continue;
      }
      pos += length;
      // A pad carries the seq of the record after it, which lastSeq does not take.
      if (isPad) continue;
      // Damage took the records between the last intact one and this one; before the first, no seq
      // says how many (at least one).
      skipped += lastSeq === 0 ? (resyncing ? 1 : 0) : seq - next;
      resyncing = false;
      if (collect) {
        const bytes = data.slice(phys + REC_HEADER, phys + REC_HEADER + n);
        const record: LogRecord = { seq, bytes };
        if ((info & INFO_TEXT) !== 0) record.text = readUtf8(Buffer.from(bytes.buffer, bytes.byteOffset, n), 0, n);
        records.push(record);
      }
      if (firstSeq === null) firstSeq = seq;
      lastSeq = seq;
      count++;
    }
    // Damage after the last intact record: no seq says how many it took either.
    if (resyncing) skipped++;
    return { records, lastSeq, firstSeq, count, skipped, endsDamaged: resyncing };
  }

  /* ---------------- lifetime ---------------- */

  private live(): void {
    // Its pool's closing first: pool.close() closes the ring too (onClose), and says why.
    if (this.pool.closed) throw new ClientError('CLOSED', `${this.what}: its pool is closed`);
    if (this.closedFlag) throw new ClientError('CLOSED', `${this.what} is closed`);
  }

  private writable(): void {
    this.live();
    if (this.readOnly) throw new ClientError('READ_ONLY', `${this.what} was opened read-only`);
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Releases the writer lock and detaches. Idempotent. */
  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.unregisterClose();
    // Open, its pool is too: pool.close() closes the ring first (onClose).
    if (this.readOnly) return;
    this.lock.release();
  }

  /**
   * Removes the ring from the pool: its run goes back (the writer only). A release the pool
   * refuses (quiesced for a handover) leaves the ring open, its lock held: closed first, the ring
   * could neither append nor be destroyed again, and its lock stood held for every other process.
   */
  destroy(): void {
    this.writable();
    poolCall(() => this.pool.release(this.root.pfn, this.root.count, { owner: this.owner }), this.what);
    // The lock's words went with the run: forgotten, not released.
    this.closedFlag = true;
    this.unregisterClose();
    this.lock.abandon();
  }

  /** @internal crash simulation: drop the ring as a killed process would (its lock still held). */
  abandon(): void {
    this.closedFlag = true;
    this.unregisterClose();
    this.lock.abandon();
  }
}
