/**
 * The CommonJS twin of handover-app.ts: the same hop, in a program that
 * loads pmpool with require(). Node starts a CommonJS main module a few
 * milliseconds sooner than an ES module one; the bench reports both.
 */
const main = performance.timeOrigin + performance.now();
const { kexec } = require('pmpool') as typeof import('pmpool', { with: { 'resolution-mode': 'import' } });
const imported = performance.timeOrigin + performance.now();
const incoming = kexec.incoming();
const pool = kexec.poolFromCommandLine()!;
const restored = performance.timeOrigin + performance.now();

void import('./handover-hop.js').then(({ finishHop }) => finishHop(kexec, incoming, pool, { main, imported, restored }, __filename));
