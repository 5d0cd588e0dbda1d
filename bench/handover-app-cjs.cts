/**
 * The CommonJS twin of handover-app.ts: the same hop, in a program that
 * loads pmpool with require(). Node starts a CommonJS main module a few
 * milliseconds sooner than an ES module one; the bench reports both.
 *
 * With --clients=N it is also a program that keeps its state in clients: the
 * first generation fills a PersistentMap of N entries and opens a LogRing;
 * every later one reopens both after the restore (the time to that is
 * recorded too), and each closes them before it hands over.
 */
const main = performance.timeOrigin + performance.now();
const { kexec, PersistentMap, LogRing } = require('pmpool') as typeof import('pmpool', { with: { 'resolution-mode': 'import' } });
const imported = performance.timeOrigin + performance.now();
const incoming = kexec.incoming();
const pool = kexec.poolFromCommandLine()!;
const restored = performance.timeOrigin + performance.now();

const clients = Number(process.argv.find((a) => a.startsWith('--clients='))?.slice('--clients='.length) ?? '0');
let clientsOpened: number | undefined;
let close = () => {};
if (clients > 0) {
  const map = PersistentMap.open(pool, 'bench-map');
  const ring = LogRing.open(pool, 'bench-ring', { bytes: 256 * 1024 });
  clientsOpened = performance.timeOrigin + performance.now();
  if (incoming === null) for (let i = 0; i < clients; i++) map.set(`key ${i}`, `value ${i}`.padEnd(100, '.'));
  else if (map.size !== clients || ring.records().length === 0) throw new Error(`the map holds ${map.size} entries of ${clients}`);
  ring.append(`generation ${incoming?.generation ?? 0n}`);
  close = () => {
    map.close();
    ring.close();
  };
}

void import('./handover-hop.js').then(({ finishHop }) => finishHop(kexec, incoming, pool, { main, imported, restored, clientsOpened, beforeExec: close }, __filename));
