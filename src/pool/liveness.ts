/**
 * Who is this process, and is that one still alive? A pid alone is not an
 * identity (pids are reused), so a lock holder is named by pid + the kernel's
 * process start time (/proc/PID/stat field 22) + a hash of the boot id (a
 * file-backed pool outlives reboots, and pids restart with them).
 */
import { readFileSync } from 'node:fs';
import { threadId } from 'node:worker_threads';
import { crc32c } from '../util/crc32c.js';

export interface ProcessIdentity {
  pid: number;
  /** Clock ticks after boot at which the process started. */
  startTime: number;
  /** CRC-32C of /proc/sys/kernel/random/boot_id. */
  bootHash: number;
  threadId: number;
}

/** Start time of a process, or null when it is gone (or a zombie: killed, not yet reaped). */
export function processStartTime(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
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

let selfCache: ProcessIdentity | undefined;
export function selfIdentity(): ProcessIdentity {
  if (selfCache === undefined || selfCache.pid !== process.pid) {
    selfCache = { pid: process.pid, startTime: processStartTime(process.pid) ?? 0, bootHash: bootHash(), threadId };
  }
  return selfCache;
}

/**
 * True when the process named by `id` may still be running. A thread of a
 * live process counts as alive: a worker that dies holding the lock is not
 * detectable from outside (documented in docs/abi.md).
 */
export function isAlive(id: ProcessIdentity): boolean {
  if (id.pid <= 0) return false;
  if (id.bootHash !== bootHash()) return false;
  const start = processStartTime(id.pid);
  return start !== null && start === id.startTime;
}
