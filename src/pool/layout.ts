/**
 * The region ABI, version 2.2: where everything lives and how the superblock
 * is encoded. docs/abi.md is the prose twin of this file; change both or
 * neither. All integers are little-endian (the region is host memory and
 * pmpool refuses big-endian hosts).
 */
import { allocatorGeometry } from '../alloc/index.js';
import { crc32c } from '../util/crc32c.js';
import { PoolError } from './errors.js';

export const ABI_MAJOR = 2;
export const ABI_MINOR = 2;
/** "PMPOOLv2" — the first eight bytes of every pool (the suffix is the ABI major). */
export const MAGIC = Uint8Array.from([0x50, 0x4d, 0x50, 0x4f, 0x4f, 0x4c, 0x76, 0x32]);

/**
 * The control page's cache table is in use (caches.ts): units on its lists are marked used with
 * no record of theirs, and a record's state word may read RELEASING. A reader that does not know
 * this would take them for leaks and damage, and repair them away under their owners.
 */
export const INCOMPAT_OPEN_CACHES = 1;
/**
 * The pool has a bare-unit map (bare-units.ts): one-unit allocations without a name or an owner,
 * made and released through the caches, are recorded by a bit there and have no directory record.
 * A reader that does not know this would take their units for leaks, and free them under their
 * holders.
 */
export const INCOMPAT_BARE_UNITS = 2;
/** Incompatible features this code understands (a reader refuses any other incompat bit). */
export const INCOMPAT_SUPPORTED = INCOMPAT_OPEN_CACHES | INCOMPAT_BARE_UNITS;
/**
 * Read-only-compatible features this code understands. A reader that does not
 * know one may only read the pool, and pmpool has no read-only open (every
 * open may recover, every check may repair): an unknown bit refuses the open.
 */
export const RO_COMPAT_SUPPORTED = 0;

/** Superblock flags (not features: facts about this pool). */
export const SB_FLAG_SUBPOOL = 1;

/** Layout granule of metadata areas: the system page, whatever the pool's page size. */
export const AREA_ALIGN = 4096;
export const SUPERBLOCK_BYTES = 256;
/** A backup superblock lives in page 0 too, so a damaged primary can be restored by repair. */
export const SUPERBLOCK_BACKUP_OFFSET = 2048;

export const RECORD_BYTES = 128;
/** A hash index entry: u32 directory slot + 1, u32 key hash. */
export const INDEX_ENTRY_BYTES = 8;
export const MAX_OWNER_BYTES = 24;
export const MAX_NAME_BYTES = 64;

/**
 * Default directory capacity: one record per 8 units (so the directory costs
 * under 0.5% of a 4 KiB-page pool), at least 256 and at most 2^17. The cap
 * keeps a big pool's metadata window near 20 MiB: V8 collects garbage when
 * external ArrayBuffer memory grows by 64 MiB, and an open must not cost a
 * GC. A pool meant for more allocations sets maxAllocations (up to 2^24).
 */
export const DEFAULT_MAX_RECORDS = 1 << 17;
export const MIN_DEFAULT_RECORDS = 256;
export function defaultMaxRecords(unitCount: number): number {
  return Math.min(unitCount, DEFAULT_MAX_RECORDS, Math.max(MIN_DEFAULT_RECORDS, Math.ceil(unitCount / 8)));
}
/** The metadata is mapped as one window; keep it well under Node 20's 4 GiB. */
export const MAX_METADATA_BYTES = 2 * 1024 ** 3;

export type AreaName = 'control' | 'unitBitmap' | 'recordBitmap' | 'pfnIndex' | 'nameIndex' | 'records';
export const AREA_NAMES: readonly AreaName[] = ['control', 'unitBitmap', 'recordBitmap', 'pfnIndex', 'nameIndex', 'records'];

export interface Area {
  offset: number;
  length: number;
}

/**
 * Units per word of the bare-unit map: the low half of a u32 holds one bit per unit, the high half
 * the same bits again (bare-units.ts), so that one atomic store changes both and a flipped bit
 * shows as halves that differ.
 */
export const BARE_UNITS_PER_WORD = 16;
/**
 * A pool made by create has a bare-unit map when its opens use caches — a directory of at least
 * this many records, CACHE_MIN_RECORDS of caches.ts, which asserts the two agree — and ...
 */
export const BARE_UNITS_MIN_RECORDS = 2048;
/**
 * ... at most this many units: 2 bits a unit, the map of a pool of 2^28 units (1 TiB of 4 KiB
 * pages) is 64 MiB of metadata window; past that, one-unit allocations keep directory records.
 */
export const BARE_UNITS_MAX_UNITS = 2 ** 28;

export interface Geometry {
  pageSize: number;
  pageCount: number;
  orderPerBit: number;
  unitCount: number;
  maxRecords: number;
  /** Slots in each of the two hash indices (a power of two, at least twice maxRecords). */
  indexSlots: number;
  areas: Record<AreaName, Area>;
  /** The bare-unit map, after the directory; null when the pool has none (no INCOMPAT_BARE_UNITS). */
  bareUnits: Area | null;
  /** Bytes of metadata (superblock through records), before rounding to pages. */
  metadataBytes: number;
  /** Pages holding metadata: exactly ceil(metadataBytes / pageSize). */
  metadataPages: number;
  /** Units reserved for metadata: ceil(metadataPages / 2^orderPerBit). */
  reservedUnits: number;
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

function nextPowerOfTwo(x: number): number {
  let p = 1;
  while (p < x) p *= 2;
  return p;
}

export function isPowerOfTwo(x: number): boolean {
  return Number.isSafeInteger(x) && x > 0 && (x & (x - 1)) === 0 && x <= 2 ** 30;
}

export interface GeometryInput {
  size: number;
  pageSize: number;
  orderPerBit: number;
  maxRecords?: number;
  /**
   * Whether the pool has a bare-unit map. A superblock says (INCOMPAT_BARE_UNITS); left out, as
   * at create, the pool has one when its opens use caches (BARE_UNITS_MIN_RECORDS), it has at most
   * BARE_UNITS_MAX_UNITS units, and the map leaves the metadata within the pool.
   */
  bareUnits?: boolean;
}

/**
 * Lays out a pool. The allocator bitmap covers every unit of the region —
 * the metadata's own units included, marked used at format — which is how
 * the kernel RFC keeps its bitmap inside the reserved memory. Unlike the RFC
 * (which sized the bitmap in longs and used it as bytes), every area is sized
 * in bytes and the pages reserved are exactly the pages the areas occupy.
 */
export function computeGeometry(input: GeometryInput): Geometry {
  const { size, pageSize, orderPerBit } = input;
  if (!isPowerOfTwo(pageSize) || pageSize < 4096) {
    throw new PoolError('BAD_ARGUMENT', `page size must be a power of two of at least 4096 bytes, got ${pageSize}`);
  }
  if (!Number.isSafeInteger(orderPerBit) || orderPerBit < 0 || orderPerBit > 20) {
    throw new PoolError('BAD_ARGUMENT', `orderPerBit must be an integer from 0 to 20, got ${orderPerBit}`);
  }
  if (!Number.isSafeInteger(size) || size <= 0 || size % pageSize !== 0) {
    throw new PoolError('BAD_ARGUMENT', `pool size must be a positive multiple of the page size ${pageSize}, got ${size}`);
  }
  const pageCount = size / pageSize;
  const unitPages = 2 ** orderPerBit;
  const unitCount = Math.floor(pageCount / unitPages);
  if (unitCount < 2) {
    throw new PoolError('BAD_ARGUMENT', `a pool of ${pageCount} pages has fewer than 2 units of ${unitPages} pages`);
  }
  if (unitCount > 0xffffffff) {
    throw new PoolError('BAD_ARGUMENT', `a pool may hold at most 2^32-1 units; raise orderPerBit or the page size`);
  }
  const maxRecords = input.maxRecords ?? defaultMaxRecords(unitCount);
  if (!Number.isSafeInteger(maxRecords) || maxRecords < 1 || maxRecords > 1 << 24) {
    throw new PoolError('BAD_ARGUMENT', `maxAllocations must be an integer from 1 to 2^24, got ${maxRecords}`);
  }
  const indexSlots = Math.max(16, nextPowerOfTwo(2 * maxRecords));

  const sizes: Record<AreaName, number> = {
    control: AREA_ALIGN,
    unitBitmap: allocatorGeometry(unitCount).wordCount * 4,
    recordBitmap: allocatorGeometry(maxRecords).wordCount * 4,
    pfnIndex: indexSlots * INDEX_ENTRY_BYTES,
    nameIndex: indexSlots * INDEX_ENTRY_BYTES,
    records: maxRecords * RECORD_BYTES,
  };
  let cursor = AREA_ALIGN; // page 0: the superblock and its backup
  const areas = {} as Record<AreaName, Area>;
  for (const name of AREA_NAMES) {
    areas[name] = { offset: cursor, length: sizes[name] };
    cursor = alignUp(cursor + sizes[name], AREA_ALIGN);
  }
  const fixed = { pageSize, pageCount, orderPerBit, unitCount, maxRecords, indexSlots, areas };
  const withBare = (bare: boolean): Geometry => {
    const bareUnits = bare ? { offset: cursor, length: Math.ceil(unitCount / BARE_UNITS_PER_WORD) * 4 } : null;
    const last = bareUnits ?? areas.records;
    const metadataBytes = last.offset + last.length;
    if (metadataBytes > MAX_METADATA_BYTES) {
      throw new PoolError('BAD_ARGUMENT', `metadata of ${metadataBytes} bytes is over the ${MAX_METADATA_BYTES}-byte limit; lower maxAllocations`);
    }
    const metadataPages = Math.ceil(metadataBytes / pageSize);
    const reservedUnits = Math.ceil(metadataPages / unitPages);
    if (reservedUnits >= unitCount) {
      throw new PoolError(
        'BAD_ARGUMENT',
        `a pool of ${pageCount} pages is too small: its metadata alone takes ${metadataPages} pages (lower maxAllocations or grow the pool)`,
      );
    }
    return { ...fixed, bareUnits, metadataBytes, metadataPages, reservedUnits };
  };
  if (input.bareUnits !== undefined) return withBare(input.bareUnits);
  if (maxRecords < BARE_UNITS_MIN_RECORDS || unitCount > BARE_UNITS_MAX_UNITS) return withBare(false);
  // A pool the map would leave without room for data (or metadata past the limit) does without it.
  try {
    return withBare(true);
  } catch {
    return withBare(false);
  }
}

/**
 * The home slot of an allocation whose first unit is `unit`: the unit modulo the directory's
 * capacity (docs/abi.md, "Home slots"). parts.ts homeSlot() takes a pfn; the pool's hot paths and
 * the opens' caches know the unit.
 */
export function homeSlotOfUnit(g: Pick<Geometry, 'maxRecords'>, unit: number): number {
  return unit % g.maxRecords;
}

/** The superblock: fixed fields, checksummed. */
export interface Superblock {
  abiMajor: number;
  abiMinor: number;
  compat: number;
  incompat: number;
  roCompat: number;
  uuid: Uint8Array;
  flags: number;
  geometry: Geometry;
  generation: bigint;
  createdAtMs: number;
}

/*
 * Superblock byte layout (256 bytes, little-endian):
 *   0 magic[8]   8 u16 abiMajor  10 u16 abiMinor  12 u32 compat  16 u32 incompat
 *  20 u32 roCompat  24 uuid[16]  40 u32 pageSize  44 u32 orderPerBit
 *  48 u64 pageCount  56 u64 unitCount  64 u64 metadataPages  72 u32 maxRecords
 *  76 u32 indexSlots  80 area table: 6 x (u64 offset, u64 length) = 96 bytes
 * 176 u64 generation  184 u64 createdAtMs  192 u32 flags
 * 196 u64 bare-unit map offset  204 u64 its length (both 0 without INCOMPAT_BARE_UNITS)
 * 212..251 zero  252 u32 crc32c of bytes [0, 252)
 */
const SB_CRC_OFFSET = 252;

export function encodeSuperblock(sb: Superblock, out: Uint8Array): void {
  if (out.length < SUPERBLOCK_BYTES) throw new RangeError('superblock buffer too small');
  out.fill(0, 0, SUPERBLOCK_BYTES);
  const v = new DataView(out.buffer, out.byteOffset, SUPERBLOCK_BYTES);
  const g = sb.geometry;
  out.set(MAGIC, 0);
  v.setUint16(8, sb.abiMajor, true);
  v.setUint16(10, sb.abiMinor, true);
  v.setUint32(12, sb.compat, true);
  v.setUint32(16, sb.incompat, true);
  v.setUint32(20, sb.roCompat, true);
  out.set(sb.uuid, 24);
  v.setUint32(40, g.pageSize, true);
  v.setUint32(44, g.orderPerBit, true);
  v.setBigUint64(48, BigInt(g.pageCount), true);
  v.setBigUint64(56, BigInt(g.unitCount), true);
  v.setBigUint64(64, BigInt(g.metadataPages), true);
  v.setUint32(72, g.maxRecords, true);
  v.setUint32(76, g.indexSlots, true);
  AREA_NAMES.forEach((name, i) => {
    v.setBigUint64(80 + i * 16, BigInt(g.areas[name].offset), true);
    v.setBigUint64(88 + i * 16, BigInt(g.areas[name].length), true);
  });
  v.setBigUint64(176, sb.generation, true);
  v.setBigUint64(184, BigInt(sb.createdAtMs), true);
  v.setUint32(192, sb.flags, true);
  v.setBigUint64(196, BigInt(g.bareUnits?.offset ?? 0), true);
  v.setBigUint64(204, BigInt(g.bareUnits?.length ?? 0), true);
  v.setUint32(SB_CRC_OFFSET, crc32c(out, 0, SB_CRC_OFFSET), true);
}

export type SuperblockProblem = { code: 'NOT_A_POOL' | 'CORRUPT' | 'INCOMPATIBLE'; message: string };

/** Decodes and validates a superblock; returns the problem instead of throwing, for check(). */
export function decodeSuperblock(bytes: Uint8Array, regionSize: number): Superblock | SuperblockProblem {
  if (bytes.length < SUPERBLOCK_BYTES) return { code: 'NOT_A_POOL', message: 'region too small for a superblock' };
  for (let i = 0; i < MAGIC.length - 1; i++) {
    if (bytes[i] !== MAGIC[i]) return { code: 'NOT_A_POOL', message: 'no pmpool magic at offset 0' };
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, SUPERBLOCK_BYTES);
  if (bytes[MAGIC.length - 1] !== MAGIC[MAGIC.length - 1]) {
    // A pool of another major names its major twice: in the magic's suffix and in the u16 at
    // offset 8, which every major keeps where it is. Both differ from ours: that pool is refused
    // by its version, before its checksum (another major may keep it elsewhere). The suffix alone
    // differing is damage, not a version: the backup superblock may still be good.
    const major = v.getUint16(8, true);
    if (major === ABI_MAJOR) return { code: 'NOT_A_POOL', message: 'no pmpool magic at offset 0' };
    return otherMajor(`${major} (magic suffix ${JSON.stringify(String.fromCharCode(bytes[MAGIC.length - 1]!))})`);
  }
  const stored = v.getUint32(SB_CRC_OFFSET, true);
  const actual = crc32c(bytes, 0, SB_CRC_OFFSET);
  if (stored !== actual) {
    return { code: 'CORRUPT', message: `superblock checksum mismatch (stored ${hex(stored)}, computed ${hex(actual)})` };
  }
  const abiMajor = v.getUint16(8, true);
  const incompat = v.getUint32(16, true);
  if (abiMajor !== ABI_MAJOR) return otherMajor(String(abiMajor));
  if ((incompat & ~INCOMPAT_SUPPORTED) !== 0) {
    return { code: 'INCOMPATIBLE', message: `pool uses incompatible features ${hex(incompat & ~INCOMPAT_SUPPORTED)} unknown to this pmpool` };
  }
  const roCompat = v.getUint32(20, true);
  if ((roCompat & ~RO_COMPAT_SUPPORTED) !== 0) {
    return {
      code: 'INCOMPATIBLE',
      message: `pool uses read-only-compatible features ${hex(roCompat & ~RO_COMPAT_SUPPORTED)} unknown to this pmpool, which has no read-only open`,
    };
  }
  const pageSize = v.getUint32(40, true);
  const orderPerBit = v.getUint32(44, true);
  const pageCount = Number(v.getBigUint64(48, true));
  const maxRecords = v.getUint32(72, true);
  let geometry: Geometry;
  try {
    geometry = computeGeometry({ size: pageCount * pageSize, pageSize, orderPerBit, maxRecords, bareUnits: (incompat & INCOMPAT_BARE_UNITS) !== 0 });
  } catch (e) {
    return { code: 'CORRUPT', message: `superblock geometry is impossible: ${(e as Error).message}` };
  }
  // The stored layout must be the one this code computes: a reader never trusts offsets it cannot derive.
  const mismatch =
    Number(v.getBigUint64(56, true)) !== geometry.unitCount ||
    Number(v.getBigUint64(64, true)) !== geometry.metadataPages ||
    v.getUint32(76, true) !== geometry.indexSlots ||
    AREA_NAMES.some(
      (name, i) =>
        Number(v.getBigUint64(80 + i * 16, true)) !== geometry.areas[name].offset ||
        Number(v.getBigUint64(88 + i * 16, true)) !== geometry.areas[name].length,
    ) ||
    Number(v.getBigUint64(196, true)) !== (geometry.bareUnits?.offset ?? 0) ||
    Number(v.getBigUint64(204, true)) !== (geometry.bareUnits?.length ?? 0);
  if (mismatch) return { code: 'CORRUPT', message: 'superblock layout fields disagree with its geometry' };
  if (pageCount * pageSize > regionSize) {
    return { code: 'CORRUPT', message: `superblock says ${pageCount * pageSize} bytes but the region has ${regionSize}` };
  }
  return {
    abiMajor,
    abiMinor: v.getUint16(10, true),
    compat: v.getUint32(12, true),
    incompat,
    roCompat,
    uuid: bytes.slice(24, 40),
    flags: v.getUint32(192, true),
    geometry,
    generation: v.getBigUint64(176, true),
    createdAtMs: Number(v.getBigUint64(184, true)),
  };
}

function otherMajor(major: string): SuperblockProblem {
  return { code: 'INCOMPATIBLE', message: `pool ABI major ${major} is not ${ABI_MAJOR}; this pmpool cannot read it` };
}

export function isSuperblockProblem(x: Superblock | SuperblockProblem): x is SuperblockProblem {
  return 'message' in x && !('geometry' in x);
}

export function hex(x: number): string {
  return '0x' + (x >>> 0).toString(16).padStart(8, '0');
}

export function uuidToString(uuid: Uint8Array): string {
  const h = Buffer.from(uuid).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
