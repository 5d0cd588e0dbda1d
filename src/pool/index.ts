export { Pool, Allocation, setRestoreHook } from './pool.js';
export type { PoolCreateOptions, PoolOpenOptions, AllocOptions, ReleaseOptions, PoolStats, CheckReport, RestoreHook } from './pool.js';
export { PoolError } from './errors.js';
export type { PoolErrorCode } from './errors.js';
export { ABI_MAJOR, ABI_MINOR, computeGeometry, uuidToString } from './layout.js';
export type { Geometry } from './layout.js';
