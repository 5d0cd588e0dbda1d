/**
 * The race at a client's creation, run with real processes: the creator
 * allocates the client's run and stops at a fault point right after it; a
 * second process opens the new client as its writer then, writes, and holds
 * it while the creator goes on. Exactly one may be the writer: the creator
 * must get BUSY, and what the other wrote must be what a reader finds.
 */
import { PMPOOL_ENTRY, runModule } from './child.js';

export interface CreationRace {
  /** The client class exported by pmpool (`LogRing`, `PersistentMap`). */
  client: string;
  /** The module (under src/, relative to src/index.ts) exporting the fault hook setter, and its name. */
  hookModule: string;
  hookSetter: string;
  /** The fault point right after the run is allocated. */
  point: string;
  /** Code run with `pool` and `Client` in scope: opens the client as a writer into `c`. */
  open: string;
  /** Code that writes `text` through writer `c`. */
  write: (text: string) => string;
  /** An expression, true when reader `r` sees what the other process wrote. */
  written: string;
}

/** Runs the race on the pool file at `path`; returns what the creator printed: `BUSY <message>`, or `WRITER` if it wrote too. */
export function runCreationRace(path: string, race: CreationRace): string {
  const entry = JSON.stringify(PMPOOL_ENTRY);
  const other = `
    import { Pool, ${race.client} as Client } from ${entry};
    const pool = Pool.open(process.argv[1]);
    ${race.open}
    ${race.write('from the other writer')}
    process.stdin.resume().on('end', () => process.exit(0));`;
  const creator = `
    import { spawn } from 'node:child_process';
    import { Pool, ${race.client} as Client } from ${entry};
    import { ${race.hookSetter} as setHook } from ${JSON.stringify(new URL(race.hookModule, PMPOOL_ENTRY).href)};
    const path = process.argv[1];
    const pool = Pool.open(path);
    const pause = new Int32Array(new SharedArrayBuffer(4));
    setHook((point) => {
      if (point !== ${JSON.stringify(race.point)}) return;
      spawn(process.execPath, ['--input-type=module', '-e', ${JSON.stringify(other)}, path], { stdio: ['pipe', 'inherit', 'inherit'] });
      // On once the other process has written: then it holds the writer's lock.
      for (;;) {
        try {
          const r = Client.open(pool, 'race', { readOnly: true });
          if (${race.written}) return;
        } catch (e) {
          if (e.code !== 'NOT_FOUND') throw e;
        }
        Atomics.wait(pause, 0, 0, 5);
      }
    });
    try {
      ${race.open}
      ${race.write('from the creator')}
      process.stdout.write('WRITER');
    } catch (e) {
      process.stdout.write(e.code + ' ' + e.message);
    }
    process.exit(0);`;
  const r = runModule(creator, [path], [], 30_000);
  if (r.status !== 0) throw new Error(`the creator failed (${r.signal ?? `exit ${r.status}`}): ${r.stderr}`);
  return r.stdout;
}
