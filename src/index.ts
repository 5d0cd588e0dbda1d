/**
 * pmpool — a persistent memory pool for Node.js.
 * The public API; see docs/ and README.md.
 */
import './sys/node-version.js'; // first: on a Node without process.getBuiltinModule, a clear error before anything needs it
export { PmpoolError } from './errors.js';
export { RegionError, FileRegion, MemoryRegion, HUGE_EXTENT_BYTES, MAX_WINDOW_BYTES, parseSize } from './region/index.js';
export type { Region, RegionKind, RegionWindow, RegionErrorCode, RegionOpenOptions, RegionCreateOptions } from './region/index.js';
export { SubRegion } from './region/index.js';
export { Pool, Allocation, PoolError, ABI_MAJOR, ABI_MINOR } from './pool/index.js';
export type { PoolCreateOptions, PoolOpenOptions, AllocOptions, ReleaseOptions, PoolStats, CheckReport, PoolErrorCode, Geometry } from './pool/index.js';
export { Fdt, FdtError, FDT_ERR_NUMBERS, fdtStrerror, checkFdt, checkFdtHeader, fdtRwProbe } from './fdt/index.js';
export type { FdtErrorCode, FdtHeader, FdtCheckResult, MemReservation, FdtValue, FdtWriteOptions, FdtLintFinding, FdtRegEntry } from './fdt/index.js';
export { kexec, HandoverError, DEFAULT_POOL_NAME, ROOT_COMPATIBLE, POOL_COMPATIBLE } from './kexec/index.js';
export type { ExecOptions, Handover, HandoverCallback, HandoverErrorCode, ReplaceOptions, SpawnOptions, Teardown, SpawnResult, PreparedHandover } from './kexec/index.js';
export { PersistentMap, LogRing, ClientError, MAX_KEY_BYTES, MAX_VALUE_BYTES, MAP_COMPATIBLE } from './clients/index.js';
export type { MapKey, MapValue, PersistentMapOptions, PersistentMapStats, MapCheckReport, LogRingOptions, LogRecord, LogRingStats, ClientErrorCode, MapHandoverInfo } from './clients/index.js';
