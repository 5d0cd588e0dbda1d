/**
 * Numbers of the FDT format (devicetree specification §5, libfdt's fdt.h
 * and libfdt.h). Nothing here is a choice of ours.
 */

export const FDT_MAGIC = 0xd00dfeed;

/** Structure block tokens. */
export const FDT_BEGIN_NODE = 0x1;
export const FDT_END_NODE = 0x2;
export const FDT_PROP = 0x3;
export const FDT_NOP = 0x4;
export const FDT_END = 0x9;

/** Every token, and every item after a name or value, is 4-byte aligned. */
export const FDT_TAGSIZE = 4;

/** Header sizes by version (fdt.h: FDT_V1_SIZE ... FDT_V17_SIZE). */
export const FDT_V1_SIZE = 28;
export const FDT_V2_SIZE = 32;
export const FDT_V3_SIZE = 36;
export const FDT_V16_SIZE = 36;
export const FDT_V17_SIZE = 40;

/** libfdt reads versions 2..17 (FDT_FIRST/LAST_SUPPORTED_VERSION). */
export const FDT_FIRST_SUPPORTED_VERSION = 2;
export const FDT_LAST_SUPPORTED_VERSION = 17;

/** Byte offsets of the header fields. */
export const HDR_MAGIC = 0;
export const HDR_TOTALSIZE = 4;
export const HDR_OFF_DT_STRUCT = 8;
export const HDR_OFF_DT_STRINGS = 12;
export const HDR_OFF_MEM_RSVMAP = 16;
export const HDR_VERSION = 20;
export const HDR_LAST_COMP_VERSION = 24;
export const HDR_BOOT_CPUID_PHYS = 28;
export const HDR_SIZE_DT_STRINGS = 32;
export const HDR_SIZE_DT_STRUCT = 36;

/** One reserve-map entry: a u64 address and a u64 size. */
export const RESERVE_ENTRY_SIZE = 16;

/** libfdt keeps every size and offset below INT_MAX. */
export const INT_MAX = 0x7fffffff;

/** fdt_address_cells/fdt_size_cells refuse more than this (FDT_MAX_NCELLS). */
export const FDT_MAX_NCELLS = 4;

/** 0 and 0xffffffff are not phandles (libfdt.h FDT_MAX_PHANDLE). */
export const FDT_MAX_PHANDLE = 0xfffffffe;

/** The header size libfdt assumes for a version (fdt_header_size_). */
export function headerSize(version: number): number {
  if (version <= 1) return FDT_V1_SIZE;
  if (version <= 2) return FDT_V2_SIZE;
  if (version <= 3) return FDT_V3_SIZE;
  if (version <= 16) return FDT_V16_SIZE;
  return FDT_V17_SIZE;
}

/** Rounds up to a multiple of 4, the structure block's alignment. */
export function tagAlign(offset: number): number {
  // Arithmetic, not `& ~3`: offsets here may exceed 2^31 before they are refused.
  return offset + 3 - ((offset + 3) % 4);
}
