export { Pool, setRestoreHook } from './pool.js';
export type { RestoreHook } from './pool.js';
export { Allocation } from './allocation.js';
export type { PoolCreateOptions, PoolOpenOptions, AllocOptions, ReleaseOptions, PoolStats, CheckReport } from './options.js';
export { PoolError } from './errors.js';
export type { PoolErrorCode } from './errors.js';
export { ABI_MAJOR, ABI_MINOR, computeGeometry, uuidToString } from './layout.js';
export type { Geometry } from './layout.js';
