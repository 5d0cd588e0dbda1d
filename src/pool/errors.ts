import { PmpoolError } from '../errors.js';

export type PoolErrorCode =
  | 'BAD_ARGUMENT' // a count, align, pfn, size, name or option that is not acceptable
  | 'NO_SPACE' // no free run fits; the message gives the largest free run
  | 'NO_RECORDS' // the directory is full (maxAllocations reached)
  | 'NOT_ALLOCATED' // release of a run that is not an allocation (or only part of one)
  | 'WRONG_OWNER' // release of an owner-tagged run under another owner
  | 'NAME_TAKEN' // a named allocation with that name exists
  | 'NOT_FOUND' // no allocation or sub-pool by that name
  | 'NOT_A_POOL' // the region holds no pmpool superblock
  | 'INCOMPATIBLE' // an ABI major or incompat feature this code does not know
  | 'CORRUPT' // a checksum or invariant failed; `pmpool check --repair` may fix it
  | 'LOCK_TIMEOUT' // the pool lock was held by a live process for too long
  | 'QUIESCED' // a handover is under way: this program may not allocate
  | 'CLOSED'; // the pool was closed

export class PoolError extends PmpoolError {
  declare readonly code: PoolErrorCode;
  constructor(code: PoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
