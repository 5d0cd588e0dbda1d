/**
 * The README's example, as a long-running service for the supervisor test:
 * counts its own starts in a PersistentMap, upgrades in place on SIGHUP.
 */
import { kexec, PersistentMap } from '../../src/index.js';

const pool = kexec.poolFromCommandLine()!;
const visits = PersistentMap.open(pool, 'visits');
visits.set('hello', String(Number(visits.get('hello') ?? 0) + 1));
PersistentMap.registerHandover(visits, kexec.onHandover);
kexec.upgradeOnSignal('SIGHUP');
kexec.ready();

// Every signal handler is in place before "started" is printed: a test may send SIGTERM as soon as it reads it.
process.on('SIGTERM', () => {
  visits.close();
  pool.close();
  process.exit(0);
});
const incoming = kexec.incoming();
process.stdout.write(`started pid=${process.pid} count=${String(visits.get('hello'))} generation=${incoming ? incoming.generation : 0}\n`);
setInterval(() => undefined, 1000);
