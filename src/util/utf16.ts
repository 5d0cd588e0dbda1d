/**
 * Well-formed UTF-16: what survives a round trip through UTF-8 unchanged.
 * A lone surrogate is encoded as U+FFFD, so a string holding one would be
 * stored as another string than the one given.
 */
interface WellFormed {
  isWellFormed?: () => boolean;
}
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** True when the string is well-formed UTF-16 (no lone surrogates), i.e. survives UTF-8 unchanged. */
export function isWellFormed(s: string): boolean {
  const f = (s as unknown as WellFormed).isWellFormed;
  return f !== undefined ? f.call(s) : !LONE_SURROGATE.test(s);
}
