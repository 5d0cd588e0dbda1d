// Injected into the bundle by tools/bundle.ts, which defines import.meta.url as this: the
// bundle is CommonJS (V8's code cache needs a classic script), and the native addon's loader
// finds the package root from its module's URL.
export const import_meta_url = require('node:url').pathToFileURL(__filename).href;
