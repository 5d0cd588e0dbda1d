/**
 * The native addon is missing or cannot be loaded here (not built, built for
 * another machine, damaged). Its own module, apart from native.ts, which
 * loads the addon as it is imported: the command line imports this one to
 * tell the failure apart, and must not fail importing it.
 */
export class NativeAddonError extends Error {
  override readonly name = 'NativeAddonError';
}
