export { RegionError, HUGE_EXTENT_BYTES, MAX_WINDOW_BYTES, SYSTEM_PAGE_SIZE, parseSize } from './region.js';
export type { Region, RegionKind, RegionWindow, RegionErrorCode, WindowAdvice } from './region.js';
export { FileRegion } from './file-region.js';
export type { RegionOpenOptions, RegionCreateOptions } from './file-region.js';
export { MemoryRegion } from './memory-region.js';
export { SubRegion } from './sub-region.js';
