/**
 * pmpool — a persistent memory pool for Node.js.
 * The public API; see docs/ and README.md.
 */
export { PmpoolError } from './errors.js';
export { RegionError, FileRegion, MemoryRegion, MAX_WINDOW_BYTES, parseSize } from './region/index.js';
export type { Region, RegionKind, RegionWindow, RegionErrorCode, RegionOpenOptions, RegionCreateOptions } from './region/index.js';
export { SubRegion } from './region/index.js';
export { Pool, Allocation, PoolError, ABI_MAJOR, ABI_MINOR } from './pool/index.js';
export type { PoolCreateOptions, PoolOpenOptions, AllocOptions, ReleaseOptions, PoolStats, CheckReport, PoolErrorCode, Geometry } from './pool/index.js';
