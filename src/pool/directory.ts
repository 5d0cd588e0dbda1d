/**
 * The directory: one fixed-size record per allocation, the pool's source of
 * truth. Everything else in the metadata (bitmaps, indices) is derived from
 * it and can be rebuilt by repair.
 *
 * Record v1 (128 bytes, little-endian):
 *   0 u32 state (0 = free, RECORD_LIVE = committed)   4 u32 crc32c
 *   8 u64 pfn   16 u64 pageCount   24 u64 seq   32 u32 flags
 *  36 u8 ownerLength   37 u8 nameLength   38 u16 zero
 *  40 owner[24] (UTF-8)   64 name[64] (UTF-8)
 * The CRC covers the LIVE state word, bytes [8, 40) and the owner and name
 * bytes in use; the unused tails of owner and name must be zero, which
 * status() verifies, so a flipped bit anywhere is caught. A record is written
 * whole with state 0, then committed by one aligned u32 store of the state:
 * a crash leaves it either committed and whole, or not committed. A free
 * record is all zeros, so a stray bit anywhere is seen by check().
 */
import { crc32c, crc32cWords } from '../util/crc32c.js';
import { MAX_NAME_BYTES, MAX_OWNER_BYTES, RECORD_BYTES } from './layout.js';
import type { MetaWriter } from './meta-writer.js';

/** "LIVE" in ASCII: a single bit flip turns it into neither 0 nor LIVE. */
export const RECORD_LIVE = 0x4556494c;
/**
 * The state of a record claimed by a release, not yet uncommitted (claim()): "RELE" in ASCII with
 * its first byte the claimer's tag — CLAIM_BY_POOL_LOCK ("R") for the pool lock's holder, or
 * CLAIM_BY_CACHE + e ("0" to "7") for cache entry e. Left behind only by a crash inside a
 * release; its recovery knows, by the tag, whose it is.
 */
export const RECORD_RELEASING = 0x454c4500;
export const CLAIM_BY_POOL_LOCK = 0x52;
export const CLAIM_BY_CACHE = 0x30;

/** The claimer's tag of a RELE state word, or -1 for any other state. */
export function claimTag(state: number): number {
  const tag = state & 0xff;
  return (state & 0xffffff00) === RECORD_RELEASING && (tag === CLAIM_BY_POOL_LOCK || (tag >= CLAIM_BY_CACHE && tag < CLAIM_BY_CACHE + 8)) ? tag : -1;
}
export const RECORD_FLAG_SUBPOOL = 1;
/**
 * The CRC-32C of the LIVE state word, crc32cU32(RECORD_LIVE): where every
 * record checksum starts. A constant rather than computed at load, which
 * would fill the CRC tables on every start (test/util-crc32c.test.ts checks it).
 */
export const LIVE_CRC = 0xe9450540;

const STATE = 0;
const CRC = 4;
const PFN = 8;
const PAGES = 16;
const SEQ = 24;
const FLAGS = 32;
const LENGTHS = 36;
const OWNER = 40;
const NAME = 64;

/**
 * free: all zeros. live: committed, checksum good. uncommitted: state 0 with
 * bytes written (an allocation that stopped before its commit). corrupt:
 * anything else.
 */
export type RecordStatus = 'free' | 'live' | 'uncommitted' | 'corrupt';

const encoder = new TextEncoder();
let decoder: InstanceType<typeof TextDecoder> | undefined; // made on first use: the first TextDecoder costs ~0.1 ms of start-up
const EMPTY = new Uint8Array(0);

export function encodeLabel(text: string | undefined): Uint8Array {
  return text === undefined || text === '' ? EMPTY : encoder.encode(text);
}
export function decodeLabel(bytes: Uint8Array): string {
  decoder ??= new TextDecoder('utf-8', { fatal: false });
  return decoder.decode(bytes);
}
/** encodeLabel's inverse: no bytes is no label (an allocation without a name or an owner). */
export function optionalLabel(bytes: Uint8Array): string | undefined {
  return bytes.length === 0 ? undefined : decodeLabel(bytes);
}

export class Directory {
  constructor(
    private readonly w: MetaWriter,
    private readonly base: number,
    readonly capacity: number,
  ) {}

  offsetOf(slot: number): number {
    return this.base + slot * RECORD_BYTES;
  }

  state(slot: number): number {
    return this.w.u32[this.offsetOf(slot) >>> 2]!;
  }

  /** Committed (state word only; status() also verifies the checksum). */
  isCommitted(slot: number): boolean {
    return this.w.u32[this.offsetOf(slot) >>> 2] === RECORD_LIVE;
  }

  status(slot: number): RecordStatus {
    const at = this.offsetOf(slot);
    const state = this.w.u32[at >>> 2]!;
    if (state === RECORD_LIVE) {
      return this.lengthsValid(at) && this.checksum(at) === this.w.u32[(at + CRC) >>> 2] && this.tailsZero(at) ? 'live' : 'corrupt';
    }
    if (state !== 0) return 'corrupt';
    const words = this.w.u32;
    for (let i = at >>> 2, end = (at + RECORD_BYTES) >>> 2; i < end; i++) if (words[i] !== 0) return 'uncommitted';
    return 'free';
  }

  /** All zeros (status() === 'free'), without classifying what is not. */
  isFree(slot: number): boolean {
    const w = this.w.i32;
    let any = 0;
    // Eight words a step: alloc checks a whole record on every call.
    for (let i = this.offsetOf(slot) >>> 2, end = i + (RECORD_BYTES >>> 2); i < end; i += 8) {
      any |= w[i]! | w[i + 1]! | w[i + 2]! | w[i + 3]! | w[i + 4]! | w[i + 5]! | w[i + 6]! | w[i + 7]!;
    }
    return any === 0;
  }

  pfn(slot: number): number {
    return this.w.load64(this.offsetOf(slot) + PFN);
  }
  pageCount(slot: number): number {
    return this.w.load64(this.offsetOf(slot) + PAGES);
  }
  seq(slot: number): number {
    return this.w.load64(this.offsetOf(slot) + SEQ);
  }
  flags(slot: number): number {
    return this.w.u32[(this.offsetOf(slot) + FLAGS) >>> 2]!;
  }
  /** True when the record's owner is exactly `owner` (no copy: release checks it on every call). */
  ownerIs(slot: number, owner: Uint8Array): boolean {
    const at = this.offsetOf(slot);
    const b = this.w.bytes;
    if (b[at + LENGTHS] !== owner.length) return false;
    for (let i = 0; i < owner.length; i++) if (b[at + OWNER + i] !== owner[i]) return false;
    return true;
  }
  nameLength(slot: number): number {
    return this.w.bytes[this.offsetOf(slot) + LENGTHS + 1]!;
  }
  ownerLength(slot: number): number {
    return this.w.bytes[this.offsetOf(slot) + LENGTHS]!;
  }
  ownerBytes(slot: number): Uint8Array {
    const at = this.offsetOf(slot);
    return this.w.bytes.subarray(at + OWNER, at + OWNER + Math.min(this.w.bytes[at + LENGTHS]!, MAX_OWNER_BYTES));
  }
  nameBytes(slot: number): Uint8Array {
    const at = this.offsetOf(slot);
    return this.w.bytes.subarray(at + NAME, at + NAME + Math.min(this.w.bytes[at + LENGTHS + 1]!, MAX_NAME_BYTES));
  }
  owner(slot: number): string | undefined {
    return optionalLabel(this.ownerBytes(slot));
  }
  name(slot: number): string | undefined {
    return optionalLabel(this.nameBytes(slot));
  }

  /** Writes a whole record, uncommitted (state stays 0). The caller commits it after a barrier. */
  write(slot: number, pfn: number, pageCount: number, seq: number, flags: number, owner: Uint8Array, name: Uint8Array): void {
    const at = this.offsetOf(slot);
    const w = this.w;
    w.store64(at + PFN, pfn);
    w.store64(at + PAGES, pageCount);
    w.store64(at + SEQ, seq);
    w.store32(at + FLAGS, flags);
    w.store32(at + LENGTHS, owner.length | (name.length << 8));
    if (owner.length > 0) w.storeBytes(at + OWNER, owner);
    if (name.length > 0) w.storeBytes(at + NAME, name);
    w.store32(at + CRC, this.checksum(at));
  }

  /** The commit point of an allocation: one aligned u32 store. */
  commit(slot: number): void {
    this.w.store32(this.offsetOf(slot), RECORD_LIVE);
  }

  /**
   * Claims a committed record for its release: one compare-and-swap of the state word from LIVE
   * to RELE with the claimer's `tag`, which settles a race between two releases of it (the pool
   * lock's holder and the opens' caches, caches.ts). False when it is not LIVE (released, or
   * being released, already). A claimed record is changed by its claimer alone, which checks it
   * and then either commits the release (uncommit) or puts it back (unclaim).
   */
  claim(slot: number, tag: number): boolean {
    return this.w.compareExchange(this.offsetOf(slot), RECORD_LIVE, RECORD_RELEASING | tag) === RECORD_LIVE;
  }

  /** Puts a claimed record back: the release it was claimed for is refused. */
  unclaim(slot: number): void {
    this.w.store32(this.offsetOf(slot), RECORD_LIVE);
  }

  /** The tag of the claim on the record, or -1 when it is not claimed. */
  claimedBy(slot: number): number {
    return claimTag(this.state(slot));
  }

  /**
   * Settles a record left claimed by a release that stopped (a crash): an intact one is put back
   * to LIVE — the release did not happen — and one whose wipe had begun is wiped whole. Returns
   * what it did, or null when the record was not claimed.
   */
  settleClaim(slot: number): 'restored' | 'wiped' | null {
    if (this.claimedBy(slot) < 0) return null;
    this.w.store32(this.offsetOf(slot), RECORD_LIVE);
    if (this.status(slot) === 'live') return 'restored';
    this.w.store32(this.offsetOf(slot), 0);
    this.wipeAll(slot);
    return 'wiped';
  }

  /** The commit point of a release (of a claimed record): the state word goes to 0 first; then the rest is zeroed. */
  uncommit(slot: number): void {
    this.w.store32(this.offsetOf(slot), 0);
  }

  /** Zeroes the whole body of a record whose contents are not to be trusted (recovery). */
  wipeAll(slot: number): void {
    this.w.fill(this.offsetOf(slot) + 4, RECORD_BYTES - 4);
  }

  /** Zeroes a record's body after uncommit: only the bytes a write() could have set. */
  wipe(slot: number): void {
    const at = this.offsetOf(slot);
    const b = this.w.bytes;
    const ownerLength = b[at + LENGTHS]!;
    const nameLength = b[at + LENGTHS + 1]!;
    // Lengths within bounds: zero only what a write() could have set. Otherwise the whole body.
    if (ownerLength > MAX_OWNER_BYTES || nameLength > MAX_NAME_BYTES) {
      this.w.fill(at + 4, RECORD_BYTES - 4);
      return;
    }
    for (let off = 4; off < OWNER; off += 4) this.w.store32(at + off, 0);
    if (ownerLength > 0) this.w.fill(at + OWNER, ownerLength);
    if (nameLength > 0) this.w.fill(at + NAME, nameLength);
  }

  private lengthsValid(at: number): boolean {
    return this.w.bytes[at + LENGTHS]! <= MAX_OWNER_BYTES && this.w.bytes[at + LENGTHS + 1]! <= MAX_NAME_BYTES && this.w.u32[(at + 36) >>> 2]! >>> 16 === 0;
  }

  /** CRC-32C of the LIVE state word, bytes [8, 40), and the owner and name bytes in use. */
  private checksum(at: number): number {
    const b = this.w.bytes;
    // Bytes [8, 40) as eight words: the same CRC as byte by byte (little-endian), at a quarter of the steps.
    let crc = crc32cWords(this.w.u32, (at + 8) >>> 2, (OWNER - 8) >>> 2, LIVE_CRC);
    const ownerLength = b[at + LENGTHS]!;
    const nameLength = b[at + LENGTHS + 1]!;
    if (ownerLength > 0) crc = crc32c(b, at + OWNER, at + OWNER + ownerLength, crc);
    if (nameLength > 0) crc = crc32c(b, at + NAME, at + NAME + nameLength, crc);
    return crc;
  }

  /** The bytes past the owner's and the name's lengths are zero. */
  private tailsZero(at: number): boolean {
    const b = this.w.bytes;
    return this.zeroRange(at + OWNER + b[at + LENGTHS]!, at + NAME) && this.zeroRange(at + NAME + b[at + LENGTHS + 1]!, at + RECORD_BYTES);
  }

  /** Bytes [from, to) are zero: a word at a time where whole words lie (status() checks every record of a scan). */
  private zeroRange(from: number, to: number): boolean {
    const b = this.w.bytes;
    let i = from;
    for (; i < to && (i & 3) !== 0; i++) if (b[i] !== 0) return false;
    for (const u = this.w.u32; i + 4 <= to; i += 4) if (u[i >>> 2] !== 0) return false;
    for (; i < to; i++) if (b[i] !== 0) return false;
    return true;
  }

  /** CRC-32C of the record's owner bytes (0 for none): stats() groups records by owner without decoding each. */
  ownerHash(slot: number): number {
    const at = this.offsetOf(slot);
    const length = Math.min(this.w.bytes[at + LENGTHS]!, MAX_OWNER_BYTES);
    return length === 0 ? 0 : crc32c(this.w.bytes, at + OWNER, at + OWNER + length);
  }
}
