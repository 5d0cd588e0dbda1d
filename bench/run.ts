/**
 * `npm run bench`: every benchmark, each in a process of its own (so one's
 * JIT and heap do not colour the next), in sequence, then a summary of their
 * final JSON lines. `node dist/bench/run.js fdt pool` runs a subset.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ALL = ['fdt', 'alloc', 'pool', 'handover', 'clients'];

const chosen = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ALL;
const unknown = chosen.filter((name) => !ALL.includes(name));
if (unknown.length > 0) {
  console.error(`unknown bench ${unknown.join(', ')}; choose from ${ALL.join(', ')}`);
  process.exit(2);
}

const summary: Record<string, unknown> = {};
let failed = false;
for (const name of chosen) {
  const file = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  console.log(`\n=== bench/${name} ===`);
  const r = spawnSync(process.execPath, ['--expose-gc', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  process.stdout.write(r.stdout);
  const last = r.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  if (r.status !== 0 || !last) {
    console.error(`bench/${name} failed (exit ${r.status})`);
    failed = true;
    continue;
  }
  summary[name] = JSON.parse(last);
}
console.log('\n=== summary ===');
console.log(JSON.stringify(summary, null, 2));
process.exit(failed ? 1 : 0);
