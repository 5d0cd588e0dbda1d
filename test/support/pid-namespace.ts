/**
 * Programs in a PID namespace of their own, as a container's are: under
 * `unshare --pid --fork --kill-child --mount-proc` (util-linux; the tests run
 * as root, as CI does). Their node is pid 1 there, and their pids name
 * nothing, or another process, in this namespace's /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { processStartTime } from '../../src/sys/proc.js';

/** Runs an ES module snippet in a new PID namespace (its node is pid 1 there); resolves once it prints "ready". */
export async function inNewPidNamespace(source: string): Promise<ChildProcess> {
  const child = spawn('unshare', ['--pid', '--fork', '--kill-child', '--mount-proc', process.execPath, '--input-type=module', '-e', source], { stdio: ['ignore', 'pipe', 'pipe'] });
  await untilReady(child);
  return child;
}

/** Resolves once `child` prints "ready" on stdout; rejects, with what it said on stderr, if it exits first. */
export async function untilReady(child: ChildProcess): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready\n')) resolve();
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => reject(new Error(`the program exited (${code}) before it was ready: ${err}`)));
  });
}

/**
 * SIGKILLs unshare, whose child (the namespace's pid 1) --kill-child kills with it, and waits until
 * that child is dead too: it dies a moment after unshare, and its descriptors (its opens' liveness
 * marks) go only then. The rest of the namespace goes with its pid 1.
 */
export async function killNamespace(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const init = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(' ')[0]);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  // Dead when its last thread has exited: the leader shows Z as soon as its own thread has, while
  // the others may still be on their way out, the descriptors shared by all of them still open.
  for (;;) {
    let lastThread: boolean;
    try {
      lastThread = readdirSync(`/proc/${init}/task`).length === 1;
    } catch {
      return; // gone
    }
    if (lastThread && processStartTime(init) === null) return; // a zombie, or gone since
    await new Promise((r) => setTimeout(r, 5));
  }
}

