/**
 * A program that hands itself over: the test of a real kexec chain.
 *
 *   node chain-app.js --pmpool=PATH,SIZE --log=FILE --hops=N [--mode=exec|spawn] [--fail-at=K]
 *
 * Stage 0 (cold start) creates the pool, writes a named allocation and a
 * client node; each stage appends one JSON line to the log and hands over
 * to the next, until N hops are done. Only stage 0 registers the client
 * callback: later stages carry its node forward untouched.
 */
import { appendFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { kexec, type Pool } from '../../src/index.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const log = arg('log')!;
const hops = Number(arg('hops') ?? '2');
const mode = arg('mode') ?? 'exec';
const failAt = Number(arg('fail-at') ?? '-1');

function pattern(bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + 7) & 0xff;
}
function digest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

process.on('uncaughtException', (e) => {
  appendFileSync(log, JSON.stringify({ error: String(e), code: (e as { code?: string }).code, stack: e.stack }) + '\n');
  process.exit(1);
});

const incoming = kexec.incoming();
const stage = incoming ? Number(incoming.generation) : 0;
if (stage === failAt) {
  // A new version that fails to come up.
  process.exit(3);
}
const pool: Pool = kexec.poolFromCommandLine()!;
let data = pool.find('chain-data');
if (!data) {
  data = pool.alloc(16, { name: 'chain-data', owner: 'chain' });
  pattern(data.bytes());
}
if (stage === 0) {
  kexec.onHandover('chain', (fdt) => {
    fdt.addNode('/clients/chain');
    fdt.set('/clients/chain', 'compatible', 'pmpool,test-chain-v1');
    fdt.set('/clients/chain', 'data-pfn', BigInt(data!.pfn));
    fdt.set('/clients/chain', 'written-by', process.pid);
  });
}
const entry = {
  stage,
  pid: process.pid,
  generation: String(pool.generation),
  incomingGeneration: incoming ? String(incoming.generation) : null,
  pfn: data.pfn,
  digest: digest(data.bytes()),
  client: incoming?.fdt.has('/clients/chain')
    ? { pfn: String(incoming.fdt.getU64('/clients/chain', 'data-pfn')), writtenBy: incoming.fdt.getU32('/clients/chain', 'written-by') }
    : null,
  check: pool.check().ok,
};
appendFileSync(log, JSON.stringify(entry) + '\n');
// Written before the exec, and by every later image: stdio must survive execve.
process.stdout.write(`stdout of stage ${stage}\n`);
kexec.ready();

if (stage < hops) {
  const self = fileURLToPath(import.meta.url);
  const args = [self, ...process.argv.slice(2).filter((a) => !a.startsWith('--pmpool-fdt='))];
  if (mode === 'exec') {
    await kexec.exec(process.execPath, args);
  } else {
    try {
      const { child } = await kexec.spawn(process.execPath, args, { readyTimeoutMs: 20_000 });
      appendFileSync(log, JSON.stringify({ stage, handedOverTo: child.pid }) + '\n');
      process.exit(0);
    } catch (e) {
      // Rollback: still in charge, pool usable.
      const probe = pool.alloc(1);
      pool.release(probe.pfn, probe.count);
      appendFileSync(log, JSON.stringify({ stage, rollback: (e as { code?: string }).code, stillServing: pool.check().ok, generation: String(pool.generation) }) + '\n');
      pool.close();
      process.exit(0);
    }
  }
}
pool.close();
