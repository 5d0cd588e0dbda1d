import { PmpoolError } from '../errors.js';

export type HandoverErrorCode =
  | 'UNSAFE_BLOB' // the blob is a symlink, not a regular file, someone else's, or writable by others
  | 'BAD_BLOB' // the blob is not a valid FDT (the cause is an FdtError naming libfdt's error)
  | 'BAD_BINDING' // valid FDT, but not a pmpool handover v1: a node or property missing, malformed, or of an unknown major version
  | 'STALE' // the generation is not the one the pool expects (a replayed or out-of-order blob)
  | 'MISMATCH' // the pool at the node's path is not the pool the node describes (uuid, geometry, checksum)
  | 'NOT_FOUND' // no such pool node in the handover
  | 'CALLBACK_FAILED' // a handover callback threw; the handover was aborted
  | 'EXEC_FAILED' // execve (or spawn) of the next program failed; this program keeps running
  | 'NOT_READY' // the spawned program exited or timed out before reporting ready; rolled back
  | 'BUSY' // a handover is already under way in this program
  | 'BAD_ARGUMENT'; // a bad --pmpool= flag or option

export class HandoverError extends PmpoolError {
  declare readonly code: HandoverErrorCode;
  constructor(code: HandoverErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
