/**
 * The Flattened Device Tree layer: a libfdt-grade validating reader, a
 * tree model with fdtget/fdtput-style access, a dtc-identical writer, a
 * DTS printer and dtc's lint checks. See docs/fdt.md.
 */
export { Fdt } from './fdt.js';
export { FdtError, FDT_ERR_NUMBERS, fdtStrerror } from './errors.js';
export type { FdtErrorCode } from './errors.js';
export { checkFdt, checkFdtHeader, fdtRwProbe } from './check.js';
export type { FdtHeader, FdtCheckResult, MemReservation } from './check.js';
export type { FdtValue } from './value.js';
export type { FdtWriteOptions } from './write.js';
export type { FdtLintFinding } from './lint.js';
export type { FdtRegEntry } from './reg.js';
