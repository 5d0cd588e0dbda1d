/**
 * Checks of the options objects every layer's public functions take. A
 * layer passes its own error maker, so the refusal is that layer's typed
 * error (PoolError BAD_ARGUMENT, ClientError BAD_ARGUMENT, ...) while the
 * wording stays the same everywhere.
 */

/** A short description of a value for an error message: `null`, `42`, `"x"`, `an array`, `a function`. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
    case 'function':
      return 'a function';
    case 'symbol':
      return value.toString();
    case 'bigint':
      return `${value}n`;
    case 'object':
      return 'an object';
    default:
      return String(value);
  }
}

export type MakeError = (message: string) => Error;

/**
 * `value` as an options object: `undefined` reads as `{}` unless `required`;
 * null, a number, a string, an array or a function is refused with
 * `makeError("<what> must be an object, got <value>")`.
 */
export function checkOptions<T extends object>(value: T | undefined, what: string, makeError: MakeError, required = false): T {
  if (value === undefined && !required) return {} as T;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw makeError(`${what} must be an object, got ${describeValue(value)}`);
  }
  return value;
}

/** An optional boolean field: undefined or true/false, nothing else (not 1, not "yes"). */
export function checkBooleanOption(value: unknown, what: string, makeError: MakeError): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') throw makeError(`${what} must be true or false, got ${describeValue(value)}`);
  return value;
}

/** An optional string field. */
export function checkStringOption(value: unknown, what: string, makeError: MakeError): string | undefined {
  if (value !== undefined && typeof value !== 'string') throw makeError(`${what} must be a string, got ${describeValue(value)}`);
  return value;
}

/** An optional function field. */
export function checkFunctionOption<F extends (...args: never[]) => unknown>(value: F | undefined, what: string, makeError: MakeError): F | undefined {
  if (value !== undefined && typeof value !== 'function') throw makeError(`${what} must be a function, got ${describeValue(value)}`);
  return value;
}

/** An optional duration in milliseconds: a finite number, not negative (NaN would wait forever or not at all). */
export function checkMillisOption(value: unknown, what: string, makeError: MakeError): number | undefined {
  if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || value < 0)) {
    throw makeError(`${what} must be a finite number of milliseconds, not negative, got ${describeValue(value)}`);
  }
  return value as number | undefined;
}

/** An optional file mode: an integer from 0 to 0o7777. */
export function checkModeOption(value: unknown, makeError: MakeError): number | undefined {
  if (value !== undefined && (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0o7777)) {
    throw makeError(`mode must be a file mode from 0 to 0o7777, got ${describeValue(value)}`);
  }
  return value as number | undefined;
}
