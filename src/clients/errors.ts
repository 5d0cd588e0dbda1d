import { PmpoolError } from '../errors.js';

export type ClientErrorCode =
  | 'BAD_ARGUMENT' // a name or option that is not acceptable
  | 'BAD_KEY' // a key that is neither a string nor a Uint8Array, or a string that is not well-formed UTF-16
  | 'BAD_VALUE' // the same for a value or a log record
  | 'TOO_LARGE' // a key, value or record larger than the client allows
  | 'NO_SPACE' // the pool (or the map's segment table) is full; nothing changed
  | 'WRONG_TYPE' // the name belongs to another client type, or to a plain allocation
  | 'INCOMPATIBLE' // an on-pool format version this code does not know
  | 'BUSY' // another live opener holds the writer lock, or the pool is quiesced for a handover
  | 'READ_ONLY' // a write through a read-only opener
  | 'NOT_FOUND' // no client by that name (and creation was not asked for)
  | 'CORRUPT' // a checksum or a structural invariant failed
  | 'CHANGED' // the map was resized while an iterator was walking it
  | 'HANDOVER_MISMATCH' // the incoming handover node disagrees with what is in the pool
  | 'CLOSED'; // the client (or its pool) was closed

/** Errors of the clients (PersistentMap, LogRing); `code` is one of ClientErrorCode. */
export class ClientError extends PmpoolError {
  declare readonly code: ClientErrorCode;
  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
