/**
 * The program `pmpool demo` starts, and that replaces itself in place: the
 * demo service (demo-app.ts) loaded the way a program that uses pmpool
 * loads it. It imports the package's entry, the bundle with its code cache,
 * and none of the CLI's modules, so the restore and reopen times the demo
 * reports are the ones such a program sees after a handover.
 *
 *   node demo-app-main.js --pmpool=PATH,SIZE --report=FILE --entries=N [--lifeline=DIR[,POOL]]
 *
 * --lifeline: stdin is a pipe from the demo, and its end (the demo gone) stops the service, which
 * first removes the demo's directory DIR (a pmpool-demo-* directory: anything else is left) and
 * the pool file POOL, as the demo would have at its end.
 */
import { demoApp, isPmpoolError } from './demo-app.js';

try {
  process.exitCode = await demoApp(process.argv.slice(2));
} catch (e) {
  // pmpool's own refusals (no room or no permission for the pool, say) are said in one line, as the
  // pmpool command says them; anything else is a bug, and goes up with its stack.
  if (!isPmpoolError(e)) throw e;
  process.stderr.write(`pmpool demo service: ${e.code}: ${e.message}\n`);
  process.exitCode = 1;
}
