/**
 * The clients shipped with pmpool (DESIGN.md §2): real users of the public
 * Pool API. See docs/clients.md.
 */
export { PersistentMap, MAX_KEY_BYTES, MAX_VALUE_BYTES } from './persistent-map.js';
export type { MapKey, MapValue, PersistentMapOptions, PersistentMapStats, MapCheckReport } from './persistent-map.js';
export { LogRing } from './log-ring.js';
export type { LogRingOptions, LogRecord, LogRingStats } from './log-ring.js';
export { ClientError } from './errors.js';
export type { ClientErrorCode } from './errors.js';
export { MAP_COMPATIBLE, writeMapNode, readMapNode, verifyMapNode, setIncomingHandoverSource } from './map-handover.js';
export type { MapHandoverInfo } from './map-handover.js';
