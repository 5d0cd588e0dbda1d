/**
 * The root of every error pmpool throws on purpose. Each layer narrows it
 * (RegionError, FdtError, AllocError, PoolError, HandoverError, ClientError)
 * and sets `code` to a stable, documented name that callers may switch on.
 */
export class PmpoolError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}
