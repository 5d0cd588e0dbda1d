/**
 * Who is this process, and is that one still alive? A pid alone is not an
 * identity (pids are reused), so a lock holder is named by pid + the kernel's
 * process start time (/proc/PID/stat field 22) + a hash of the boot id (a
 * file-backed pool outlives reboots, and pids restart with them).
 *
 * And by its thread: the kernel task id (/proc/thread-self) + the task's
 * start time. A worker thread that ends while holding the lock
 * (worker.terminate() mid-operation) leaves its process alive but its task
 * gone, and so does every thread but the caller when a process execve()s in
 * place: the holder is dead either way, though its pid lives on.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { crc32c } from '../util/crc32c.js';

export interface ProcessIdentity {
  pid: number;
  /** Clock ticks after boot at which the process started. */
  startTime: number;
  /** CRC-32C of /proc/sys/kernel/random/boot_id. */
  bootHash: number;
  /** Node's threadId (for messages). */
  threadId: number;
  /** The kernel task id of the thread, 0 when unknown (no /proc/thread-self: process liveness only). */
  tid: number;
  /** Clock ticks after boot at which that task started. */
  tidStartTime: number;
}

/** Start time of a process, or null when it is gone (or a zombie: killed, not yet reaped). */
export function processStartTime(pid: number): number | null {
  return startTimeOf(`/proc/${pid}/stat`);
}

/** Start time of task `tid` of process `pid`, or null when that thread is gone. */
export function taskStartTime(pid: number, tid: number): number | null {
  return startTimeOf(`/proc/${pid}/task/${tid}/stat`);
}

function startTimeOf(statPath: string): number | null {
  let stat: string;
  try {
    stat = readFileSync(statPath, 'latin1');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  if (state === 'Z' || state === 'X' || state === 'x') return null;
  const start = Number(fields[19]); // field 22 overall; fields[0] is field 3
  return Number.isFinite(start) ? start : null;
}

let bootHashCache: number | undefined;
export function bootHash(): number {
  if (bootHashCache === undefined) {
    let id = 'unknown-boot';
    try {
      id = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      /* no procfs: every boot looks the same, pid + start time still apply */
    }
    bootHashCache = crc32c(Buffer.from(id));
  }
  return bootHashCache;
}

/** This thread's kernel task id: /proc/thread-self links to "PID/task/TID". 0 when unknown. */
function selfTid(): number {
  try {
    const m = /^(\d+)\/task\/(\d+)$/.exec(readlinkSync('/proc/thread-self'));
    return m && Number(m[1]) === process.pid ? Number(m[2]) : 0;
  } catch {
    return 0;
  }
}

// Module state is per isolate, so this cache is per thread: a worker computes its own identity.
let selfCache: ProcessIdentity | undefined;
export function selfIdentity(): ProcessIdentity {
  if (selfCache === undefined || selfCache.pid !== process.pid) {
    const tid = selfTid();
    const tidStartTime = tid === 0 ? 0 : (taskStartTime(process.pid, tid) ?? 0);
    selfCache = {
      pid: process.pid,
      startTime: processStartTime(process.pid) ?? 0,
      bootHash: bootHash(),
      // node:worker_threads is loaded here, not at import: it costs start-up time a restore should not pay.
      threadId: (createRequire(import.meta.url)('node:worker_threads') as typeof import('node:worker_threads')).threadId,
      tid: tidStartTime === 0 ? 0 : tid,
      tidStartTime,
    };
  }
  return selfCache;
}

/**
 * True when the thread named by `id` may still be running: its process, and
 * — when the holder recorded its task — that task, each with the start time
 * recorded (a reused pid or tid has another).
 */
export function isAlive(id: ProcessIdentity): boolean {
  if (id.pid <= 0) return false;
  if (id.bootHash !== bootHash()) return false;
  const start = processStartTime(id.pid);
  if (start === null || start !== id.startTime) return false;
  if (id.tid === 0) return true;
  const taskStart = taskStartTime(id.pid, id.tid);
  return taskStart !== null && taskStart === id.tidStartTime;
}
