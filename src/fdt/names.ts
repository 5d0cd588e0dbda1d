/**
 * dtc's rules for names (checks.c): the characters a node or property
 * name may hold, and the one-'@' format of node names. libfdt checks none
 * of this; lint.ts reports it, and write.ts needs it to know when dtc
 * would run its name_properties check at all.
 */

/** checks.c NODECHARS and PROPCHARS. */
const NODE_CHARS = /^[a-zA-Z0-9,._+@-]*$/;
const PROP_CHARS = /^[a-zA-Z0-9,._+*#?-]*$/;

/** The first character dtc's node_name_chars refuses, or undefined. */
export function badNodeChar(name: string): string | undefined {
  return firstBad(name, NODE_CHARS);
}

/** The first character dtc's property_name_chars refuses, or undefined. */
export function badPropChar(name: string): string | undefined {
  return firstBad(name, PROP_CHARS);
}

/** dtc's node_name_format: at most one '@'. */
export function hasMultipleAt(name: string): boolean {
  const at = name.indexOf('@');
  return at >= 0 && name.indexOf('@', at + 1) >= 0;
}

function firstBad(name: string, allowed: RegExp): string | undefined {
  if (allowed.test(name)) return undefined;
  for (const ch of name) if (!allowed.test(ch)) return ch;
  return undefined;
}

/** data.c data_is_one_string: non-empty, NUL-terminated, no NUL before the end. */
export function isOneString(v: Uint8Array): boolean {
  return v.length > 0 && v.indexOf(0) === v.length - 1;
}
