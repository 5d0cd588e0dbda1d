#!/usr/bin/env node
// The `pmpool` command: the compiled CLI (built by `npm ci` / `npm run build`).
import '../dist/src/cli/main.js';
