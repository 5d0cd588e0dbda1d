/**
 * pmpool — a persistent memory pool for Node.js.
 * The public API; see docs/ and README.md.
 */
export { PmpoolError } from './errors.js';
export { RegionError, FileRegion, MemoryRegion, MAX_WINDOW_BYTES, parseSize } from './region/index.js';
export type { Region, RegionKind, RegionWindow, RegionErrorCode, RegionOpenOptions, RegionCreateOptions } from './region/index.js';
