/**
 * pmpool needs Node.js 20.16 or later (package.json "engines"): its modules
 * take Node's built-ins through process.getBuiltinModule (see native.ts for
 * why). npm only warns about "engines"; on an older Node, say what is wrong
 * instead of failing with "process.getBuiltinModule is not a function".
 * Imported first by every entry (the package's, the command's), so that it
 * runs before any module that needs the function.
 */
if (typeof process.getBuiltinModule !== 'function') {
  throw new Error(`pmpool needs Node.js 20.16 or later (for process.getBuiltinModule); this is Node.js ${process.version}`);
}

export {};
