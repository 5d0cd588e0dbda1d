/**
 * Validation of a blob, as libfdt 1.8.x validates it: fdt_check_header
 * (libfdt/fdt.c) and fdt_check_full (libfdt/fdt_check.c), with the token
 * walk of fdt_next_tag and the string lookup of fdt_get_string. Every
 * rule below is one of theirs, in their order, so a blob we refuse is one
 * libfdt refuses, with the same error name.
 *
 * Where upstream differs from older releases we follow upstream 1.8.x:
 * a NOP between the root's END_NODE and FDT_END is valid (1.6.1 said
 * BADSTRUCTURE), and a reserve map not 8-aligned or a structure block not
 * 4-aligned is ALIGNMENT (1.6.1 did not check).
 *
 * Offsets inside the structure block are kept relative to its start, as
 * libfdt keeps them (a pre-v16 value's padding depends on it); offsets
 * given to the visitor and in errors are absolute byte offsets in the blob.
 */
import { readBe32, readBe64 } from './bytes.js';
import {
  FDT_BEGIN_NODE,
  FDT_END,
  FDT_END_NODE,
  FDT_FIRST_SUPPORTED_VERSION,
  FDT_LAST_SUPPORTED_VERSION,
  FDT_MAGIC,
  FDT_NOP,
  FDT_PROP,
  FDT_V1_SIZE,
  HDR_BOOT_CPUID_PHYS,
  HDR_LAST_COMP_VERSION,
  HDR_MAGIC,
  HDR_OFF_DT_STRINGS,
  HDR_OFF_DT_STRUCT,
  HDR_OFF_MEM_RSVMAP,
  HDR_SIZE_DT_STRINGS,
  HDR_SIZE_DT_STRUCT,
  HDR_TOTALSIZE,
  HDR_VERSION,
  INT_MAX,
  RESERVE_ENTRY_SIZE,
  FDT_V17_SIZE,
  headerSize,
  tagAlign,
} from './constants.js';
import { describeValue } from '../util/options.js';
import { fail, requireBytes, type FdtErrorCode } from './errors.js';

/** The header fields, as read and checked. */
export interface FdtHeader {
  readonly totalSize: number;
  readonly offDtStruct: number;
  readonly offDtStrings: number;
  readonly offMemRsvmap: number;
  readonly version: number;
  readonly lastCompVersion: number;
  readonly bootCpuidPhys: number;
  /**
   * Size of the strings block. A version 2 header has no such field; its
   * strings run to the end of the blob (as dtc reads them), so this is
   * `totalSize - offDtStrings` there.
   */
  readonly sizeDtStrings: number;
  /** Size of the structure block; only version 17 and later record it. */
  readonly sizeDtStruct: number | undefined;
  /** Bytes of header this version has (28, 32, 36 or 40). */
  readonly headerSize: number;
}

export interface MemReservation {
  readonly address: bigint;
  readonly size: bigint;
}

/**
 * What the structure walk reports, in blob order, once each item has been
 * checked. Offsets are absolute; `nameEnd` is the offset of the name's NUL.
 */
export interface StructVisitor {
  /** Called once the header and the reserve map have passed, before the walk. */
  start?(header: FdtHeader): void;
  beginNode(tagOffset: number, nameStart: number, nameEnd: number): void;
  endNode(tagOffset: number): void;
  property(tagOffset: number, nameStart: number, nameEnd: number, valueStart: number, valueLength: number): void;
}

export interface FdtCheckResult {
  readonly header: FdtHeader;
  readonly reservations: MemReservation[];
}

/**
 * fdt_check_full's preamble and fdt_check_header: the buffer holds a
 * header, and every block the header names lies inside `totalsize`.
 * (libfdt also refuses a blob at an address that is not 8-aligned; a
 * Uint8Array has no such constraint here, we read it byte by byte.)
 */
export function checkFdtHeader(bytes: Uint8Array): FdtHeader {
  requireBytes(bytes, 'checkFdtHeader');
  const bufsize = bytes.length;
  if (bufsize < FDT_V1_SIZE) {
    fail('TRUNCATED', `buffer of ${bufsize} bytes cannot hold a header (${FDT_V1_SIZE} bytes at least)`, bufsize);
  }
  const version = readBe32(bytes, HDR_VERSION);
  const hdrsize = headerSize(version);
  if (bufsize < hdrsize) {
    fail('TRUNCATED', `buffer of ${bufsize} bytes cannot hold a version ${version} header (${hdrsize} bytes)`, bufsize);
  }
  checkMagicAndVersion(bytes, version);
  const totalSize = readBe32(bytes, HDR_TOTALSIZE);
  // fdt_check_header: totalsize must cover the header and fit an int.
  if (totalSize < hdrsize || totalSize > INT_MAX) {
    fail('TRUNCATED', `totalsize ${totalSize} is outside [${hdrsize}, INT_MAX]`, HDR_TOTALSIZE);
  }
  const header = readHeader(bytes, version, hdrsize, totalSize);
  checkBlockBounds(header);
  return header;
}

function checkMagicAndVersion(bytes: Uint8Array, version: number): void {
  const magic = readBe32(bytes, HDR_MAGIC);
  if (magic !== FDT_MAGIC) fail('BADMAGIC', `magic is 0x${hex(magic)}, not 0x${hex(FDT_MAGIC)}`, HDR_MAGIC);
  const lastComp = readBe32(bytes, HDR_LAST_COMP_VERSION);
  if (version < FDT_FIRST_SUPPORTED_VERSION) {
    fail('BADVERSION', `version ${version} is older than libfdt reads (${FDT_FIRST_SUPPORTED_VERSION})`, HDR_VERSION);
  }
  if (lastComp > FDT_LAST_SUPPORTED_VERSION) {
    fail('BADVERSION', `last_comp_version ${lastComp} is newer than ${FDT_LAST_SUPPORTED_VERSION}`, HDR_LAST_COMP_VERSION);
  }
  if (version < lastComp) fail('BADVERSION', `version ${version} is below last_comp_version ${lastComp}`, HDR_VERSION);
}

function readHeader(bytes: Uint8Array, version: number, hdrsize: number, totalSize: number): FdtHeader {
  const offDtStrings = readBe32(bytes, HDR_OFF_DT_STRINGS);
  return {
    totalSize,
    offDtStruct: readBe32(bytes, HDR_OFF_DT_STRUCT),
    offDtStrings,
    offMemRsvmap: readBe32(bytes, HDR_OFF_MEM_RSVMAP),
    version,
    lastCompVersion: readBe32(bytes, HDR_LAST_COMP_VERSION),
    bootCpuidPhys: readBe32(bytes, HDR_BOOT_CPUID_PHYS),
    // Version 2 has no size_dt_strings (libfdt would read past the header).
    sizeDtStrings: version >= 3 ? readBe32(bytes, HDR_SIZE_DT_STRINGS) : Math.max(0, totalSize - offDtStrings),
    sizeDtStruct: hdrsize >= FDT_V17_SIZE ? readBe32(bytes, HDR_SIZE_DT_STRUCT) : undefined,
    headerSize: hdrsize,
  };
}

/** The alignment and bounds rules of fdt_check_header, in its order. */
function checkBlockBounds(h: FdtHeader): void {
  if (h.offMemRsvmap % 8 !== 0) fail('ALIGNMENT', `reserve map at ${h.offMemRsvmap} is not 8-byte aligned`, HDR_OFF_MEM_RSVMAP);
  if (h.offDtStruct % 4 !== 0) fail('ALIGNMENT', `structure block at ${h.offDtStruct} is not 4-byte aligned`, HDR_OFF_DT_STRUCT);
  if (!offsetInside(h, h.offMemRsvmap)) {
    fail('TRUNCATED', `reserve map offset ${h.offMemRsvmap} is outside [${h.headerSize}, ${h.totalSize}]`, HDR_OFF_MEM_RSVMAP);
  }
  if (h.sizeDtStruct === undefined) {
    if (!offsetInside(h, h.offDtStruct)) {
      fail('TRUNCATED', `structure block offset ${h.offDtStruct} is outside [${h.headerSize}, ${h.totalSize}]`, HDR_OFF_DT_STRUCT);
    }
  } else if (!blockInside(h, h.offDtStruct, h.sizeDtStruct)) {
    fail('TRUNCATED', `structure block [${h.offDtStruct}, +${h.sizeDtStruct}) extends past totalsize ${h.totalSize}`, HDR_SIZE_DT_STRUCT);
  }
  const stringsField = h.version >= 3 ? HDR_SIZE_DT_STRINGS : HDR_OFF_DT_STRINGS;
  if (!blockInside(h, h.offDtStrings, h.sizeDtStrings)) {
    fail('TRUNCATED', `strings block [${h.offDtStrings}, +${h.sizeDtStrings}) extends past totalsize ${h.totalSize}`, stringsField);
  }
}

/** libfdt's check_off_: an offset between the header's end and totalsize. */
function offsetInside(h: FdtHeader, off: number): boolean {
  return off >= h.headerSize && off <= h.totalSize;
}

/** libfdt's check_block_ (exact arithmetic: no 32-bit wrap to guard). */
function blockInside(h: FdtHeader, base: number, size: number): boolean {
  return offsetInside(h, base) && offsetInside(h, base + size);
}

/**
 * fdt_check_full: the header, the buffer holding `totalsize` bytes, a
 * terminated reserve map, and a structure block that walks to FDT_END with
 * balanced nodes, an unnamed root and every property's name resolvable.
 * The visitor sees each item as soon as it has been checked.
 */
export function checkFull(bytes: Uint8Array, visitor?: StructVisitor): FdtCheckResult {
  const header = checkFdtHeader(bytes);
  if (bytes.length < header.totalSize) {
    fail('TRUNCATED', `buffer of ${bytes.length} bytes is shorter than totalsize ${header.totalSize}`, HDR_TOTALSIZE);
  }
  const reservations = readReservations(bytes, header);
  visitor?.start?.(header);
  new StructWalk(bytes, header, visitor).run();
  return { header, reservations };
}

/** fdt_check_full for callers: the header and reservations of a valid blob, or FdtError. */
export function checkFdt(bytes: Uint8Array): FdtCheckResult {
  requireBytes(bytes, 'checkFdt');
  return checkFull(bytes);
}

/**
 * fdt_num_mem_rsv: entries up to the first of size 0, each wholly inside
 * `totalsize`. The terminating entry may have any address (dtc agrees).
 */
export function readReservations(bytes: Uint8Array, h: FdtHeader): MemReservation[] {
  const list: MemReservation[] = [];
  for (let at = h.offMemRsvmap; ; at += RESERVE_ENTRY_SIZE) {
    if (at > h.totalSize - RESERVE_ENTRY_SIZE) {
      fail('TRUNCATED', `reserve map has no terminating entry before totalsize ${h.totalSize}`, at);
    }
    const size = readBe64(bytes, at + 8);
    if (size === 0n) return list;
    list.push({ address: readBe64(bytes, at), size });
  }
}

/**
 * Where a node's name starts, as fdt_get_name sees it: before version 16 a
 * node holds its full path and its name is what follows the last '/'.
 * Returns -1 for an old-style name with no '/' (libfdt: BADSTRUCTURE).
 */
export function nodeNameStart(bytes: Uint8Array, start: number, end: number, version: number): number {
  if (version >= 16) return start;
  for (let i = end - 1; i >= start; i--) if (bytes[i] === 0x2f) return i + 1;
  return -1;
}

/** One pass over the structure block: fdt_next_tag driven by fdt_check_full. */
class StructWalk {
  private readonly base: number;
  /** Absolute end of what fdt_offset_ptr lets a read reach. */
  private readonly limit: number;
  /**
   * The NUL each byte from the strings block on is followed by, once a name's scan has passed it
   * (-1 before). Names may start anywhere in a string (a suffix shared with a longer name): scanned
   * from each start alone, N names inside one string of S bytes cost N * S, and a blob of some
   * hundreds of kilobytes took minutes. With this, every byte is scanned once.
   */
  private nulAfter: Int32Array | undefined;
  /** The NUL ending the node name `skip` just stepped over. */
  private lastNodeNameEnd = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly h: FdtHeader,
    private readonly visitor: StructVisitor | undefined,
  ) {
    this.base = h.offDtStruct;
    // Before v17 only totalsize bounds the structure block (fdt_offset_ptr).
    this.limit = h.sizeDtStruct === undefined ? h.totalSize : h.offDtStruct + h.sizeDtStruct;
  }

  run(): void {
    let depth = 0;
    let expectEnd = false;
    for (let off = 0; ; ) {
      const tagAt = this.base + off;
      const tag = this.tagAt(off);
      const next = this.skip(tag, off);
      // After the root closes only NOPs and FDT_END may follow (1.8.x allows the NOPs).
      if (expectEnd && tag !== FDT_END && tag !== FDT_NOP) this.broken('a second root node, or an item after the root', tagAt);
      switch (tag) {
        case FDT_END:
          if (depth !== 0) this.broken(`FDT_END inside a node (depth ${depth})`, tagAt);
          return;
        case FDT_BEGIN_NODE:
          depth++;
          this.beginNode(tagAt, depth === 1);
          break;
        case FDT_END_NODE:
          if (depth === 0) this.broken('FDT_END_NODE with no node open', tagAt);
          depth--;
          if (depth === 0) expectEnd = true;
          this.visitor?.endNode(tagAt);
          break;
        case FDT_PROP:
          this.property(off);
          break;
        default: // FDT_NOP
          break;
      }
      off = next;
    }
  }

  /** The token at `off`; a structure block that ends first is TRUNCATED. */
  private tagAt(off: number): number {
    if (!this.reachable(off, 4)) fail('TRUNCATED', 'structure block ends before FDT_END', this.base + off);
    return readBe32(this.bytes, this.base + off);
  }

  /** fdt_next_tag: the offset of the token after the one at `off`. */
  private skip(tag: number, off: number): number {
    let end = off + 4;
    switch (tag) {
      case FDT_BEGIN_NODE:
        this.lastNodeNameEnd = this.base + this.nameEnd(end, off);
        end = this.lastNodeNameEnd - this.base + 1;
        break;
      case FDT_PROP:
        end = this.propEnd(end, off);
        break;
      case FDT_END:
      case FDT_END_NODE:
      case FDT_NOP:
        break;
      default:
        this.broken(`unknown token 0x${hex(tag)}`, this.base + off);
    }
    if (!this.reachable(off, end - off)) this.broken('item runs past the end of the structure block', this.base + off);
    return tagAlign(end);
  }

  /** The NUL ending a node name that starts at `start` (relative). */
  private nameEnd(start: number, tagOff: number): number {
    const limit = this.limit;
    let i = this.base + start;
    while (i < limit && this.bytes[i] !== 0) i++;
    if (i >= limit) this.broken('node name has no terminating NUL inside the structure block', this.base + tagOff);
    return i - this.base;
  }

  /** The end of a property's value; the length is untrusted. */
  private propEnd(lenOff: number, tagOff: number): number {
    if (!this.reachable(lenOff, 4)) this.broken('property header runs past the end of the structure block', this.base + tagOff);
    const len = readBe32(this.bytes, this.base + lenOff);
    // fdt_next_tag: offset + len must stay below INT_MAX.
    if (len + lenOff >= INT_MAX) this.broken(`property length ${len} is impossible`, this.base + tagOff);
    let end = lenOff + 8 + len;
    if (this.oldAlignment(end - len, len)) end += 4;
    return end;
  }

  /** Before v16, values of 8 bytes or more start 8-aligned (in the structure block). */
  private oldAlignment(valueOff: number, len: number): boolean {
    return this.h.version < 16 && len >= 8 && valueOff % 8 !== 0;
  }

  private beginNode(tagAt: number, isRoot: boolean): void {
    const nameStart = tagAt + 4;
    const nameEnd = this.lastNodeNameEnd;
    if (isRoot) {
      // fdt_check_full: the root node's name is empty (fdt_get_name).
      const leaf = nodeNameStart(this.bytes, nameStart, nameEnd, this.h.version);
      if (leaf < 0) this.broken('pre-v16 root node name is not a path', tagAt);
      if (leaf !== nameEnd) this.broken('root node has a name', tagAt);
    }
    this.visitor?.beginNode(tagAt, nameStart, nameEnd);
  }

  /** fdt_getprop_by_offset: the property's name must resolve. */
  private property(off: number): void {
    const at = this.base + off;
    const len = readBe32(this.bytes, at + 4);
    const nameoff = readBe32(this.bytes, at + 8);
    let valueStart = at + 12;
    if (this.oldAlignment(off + 12, len)) valueStart += 4;
    const nameStart = this.h.offDtStrings + nameoff;
    const nameEnd = this.stringEnd(nameoff, at + 8);
    this.visitor?.property(at, nameStart, nameEnd, valueStart, len);
  }

  /** fdt_get_string: the NUL ending the string at `nameoff` (each byte scanned once: nulAfter). */
  private stringEnd(nameoff: number, fieldAt: number): number {
    const h = this.h;
    const abs = h.offDtStrings + nameoff;
    // nameoff is a C int in libfdt: 2^31 and above are negative, refused.
    if (nameoff > INT_MAX || abs >= h.totalSize) fail('BADOFFSET', `name offset ${nameoff} is outside the blob`, fieldAt);
    let end = h.totalSize;
    // Only v17+ bounds names by size_dt_strings; older blobs by totalsize alone.
    if (h.version >= 17) {
      if (nameoff >= h.sizeDtStrings) {
        fail('BADOFFSET', `name offset ${nameoff} is past the strings block (${h.sizeDtStrings} bytes)`, fieldAt);
      }
      end = Math.min(end, abs + (h.sizeDtStrings - nameoff));
    }
    // `end` is the same for every name of the blob (the strings block's end, or the blob's).
    const from = h.offDtStrings;
    const nul = (this.nulAfter ??= new Int32Array(h.totalSize - from).fill(-1));
    let i = abs;
    while (i < end && this.bytes[i] !== 0 && nul[i - from] === -1) i++;
    const found = i >= end ? end : this.bytes[i] === 0 ? i : nul[i - from]!;
    for (let j = abs; j < i; j++) nul[j - from] = found;
    if (found >= end) fail('TRUNCATED', `property name at strings offset ${nameoff} has no terminating NUL`, fieldAt);
    return found;
  }

  /** fdt_offset_ptr: `len` bytes at relative `off` lie inside the structure block. */
  private reachable(off: number, len: number): boolean {
    return this.base + off + len <= this.limit;
  }

  private broken(message: string, at: number): never {
    fail('BADSTRUCTURE', message, at);
  }
}

/**
 * fdt_rw_probe_: libfdt's read-write functions edit a blob in place only
 * if it is version 17 and its blocks come in the order header, reserve
 * map, structure, strings. A valid blob that fails this is readable, but
 * libfdt answers BADVERSION or BADLAYOUT to an edit until fdt_open_into.
 */
export function fdtRwProbe(h: FdtHeader): FdtErrorCode | null {
  if (h === null || typeof h !== 'object') fail('BADVALUE', `fdtRwProbe takes a header from checkFdtHeader, got ${describeValue(h)}`);
  if (h.version < 17 || h.sizeDtStruct === undefined) return 'BADVERSION';
  // libfdt counts one reserve entry here, whatever the map holds.
  const misordered =
    h.offMemRsvmap < FDT_V17_SIZE ||
    h.offDtStruct < h.offMemRsvmap + RESERVE_ENTRY_SIZE ||
    h.offDtStrings < h.offDtStruct + h.sizeDtStruct ||
    h.totalSize < h.offDtStrings + h.sizeDtStrings;
  return misordered ? 'BADLAYOUT' : null;
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
