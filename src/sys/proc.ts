/**
 * What /proc says about a process: the pieces of a robust lock holder's
 * identity, shared by the pool lock (src/pool/control.ts) and the clients'
 * writer locks. A pid alone is no identity (pids are reused), so a holder is
 * named by pid + the kernel's start time + the boot it ran in.
 */
import { crc32c } from '../util/crc32c.js';
import { native } from './native.js';

/**
 * A small /proc file as latin1 text, through the addon: these are read on
 * the way to a handover's first lock, where Node's readFileSync costs more
 * cold than the read itself. Throws (ENOENT) when it is gone.
 */
function readProc(path: string): string {
  return Buffer.from(native.readFile(path, PROC_FILE_BYTES, false, false).data).toString('latin1');
}
/** Enough for any /proc/PID/stat (52 fields) and boot_id. */
const PROC_FILE_BYTES = 4096;

/** Start time (clock ticks after boot, /proc/PID/stat field 22) of a live process; null when gone or a zombie. */
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
    stat = readProc(statPath);
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  // A killed process stays a zombie until reaped: it is dead all the same.
  if (state === 'Z' || state === 'X' || state === 'x') return null;
  const start = Number(fields[19]); // field 22 overall; fields[0] is field 3
  return Number.isFinite(start) ? start : null;
}

let ownStart: { pid: number; startTime: number | null } | undefined;
/**
 * This process's start time, read once per process (an execve in place keeps
 * the pid and the start time alike). The pool lock and a client's writer lock
 * both name their holder by it.
 */
export function ownStartTime(): number | null {
  if (ownStart === undefined || ownStart.pid !== process.pid) ownStart = { pid: process.pid, startTime: processStartTime(process.pid) };
  return ownStart.startTime;
}

/**
 * Whether the thread a lock holder recorded may still run: its process (the pid with the start
 * time recorded: a reused pid has another), in the program image recorded (when it was, and
 * /proc/PID/auxv can be read: an exec in place keeps pid and start time), and its task (when it
 * was recorded: a worker that died leaves its process alive). The pool lock's and the clients'
 * writer locks' rule alike.
 */
export function recordedThreadAlive(h: { pid: number; startTime: number; imageId: number; tid: number; tidStartTime: number }): boolean {
  if (h.pid <= 0) return false;
  const start = processStartTime(h.pid);
  if (start === null || start !== h.startTime) return false;
  if (h.imageId !== 0) {
    const image = processImageId(h.pid);
    if (image !== null && image !== h.imageId) return false;
  }
  if (h.tid === 0) return true;
  const taskStart = taskStartTime(h.pid, h.tid);
  return taskStart !== null && taskStart === h.tidStartTime;
}

let pidNamespaceCache: number | undefined;
/**
 * The inode number of this process's PID namespace (the link /proc/self/ns/pid, "pid:[N]"), 0 when
 * unknown. Pids, and /proc, mean something only within one namespace: a lock holder recorded by a
 * process of another (a container sharing this one's /dev/shm) is judged by other means. Fixed for
 * the life of the process (unshare(CLONE_NEWPID) moves its children, not itself).
 */
export function ownPidNamespace(): number {
  if (pidNamespaceCache === undefined) {
    let ns = 0;
    try {
      const match = /^pid:\[(\d+)\]$/.exec(process.getBuiltinModule('node:fs').readlinkSync('/proc/self/ns/pid'));
      if (match) ns = Number(match[1]) >>> 0;
    } catch {
      /* no procfs: every holder is taken for one of this namespace, as before pmpool recorded it */
    }
    pidNamespaceCache = ns;
  }
  return pidNamespaceCache;
}

/** This thread's kernel task id (gettid). */
export function ownTid(): number {
  return native.gettid();
}

/**
 * Node's threadId of the thread whose task id is `tid`. The main thread is the
 * process's first task (tid == pid) and has threadId 0: it is known without
 * loading node:worker_threads, which costs 0.5-1.5 ms of the start-up after a
 * handover. A worker loads it at its own start, so asking there costs nothing.
 */
export function ownThreadId(tid: number = ownTid()): number {
  if (tid === process.pid) return 0;
  return process.getBuiltinModule('node:worker_threads').threadId;
}

let bootHashCache: number | undefined;
/** CRC-32C of /proc/sys/kernel/random/boot_id: a file-backed pool outlives reboots, and pids restart with them. */
export function bootHash(): number {
  if (bootHashCache === undefined) {
    let id = 'unknown-boot';
    try {
      id = readProc('/proc/sys/kernel/random/boot_id').trim();
    } catch {
      /* no procfs: every boot looks the same; pid + start time still apply */
    }
    bootHashCache = crc32c(Buffer.from(id));
  }
  return bootHashCache;
}

/**
 * A number that changes at every execve of this process and is the same in
 * all its threads: a hash of its ELF auxiliary vector, which holds the
 * addresses of the vDSO and of the kernel's random bytes on the new stack,
 * both randomised per image by ASLR (a few hundred bytes to read, where
 * /proc/self/maps is tens of KB). Without ASLR it is constant, and a stale
 * lock of the same pid is recognised by thread and token. 0 when unknown.
 */
export function ownImageId(): number {
  return imageIdOf('/proc/self/auxv') ?? 0;
}

/**
 * ownImageId() of process `pid`, read from its /proc/PID/auxv; null when it
 * cannot be read (gone, or another user's: reading it needs the same ptrace
 * read access as /proc/PID/environ). A lock waiter compares it with the image
 * id its holder recorded: a process that exec'd in place kept its pid, its
 * start time and, when the exec came from a worker thread, its main thread's
 * task and start time too (fs/exec.c de_thread) — only the image tells.
 */
export function processImageId(pid: number): number | null {
  return imageIdOf(`/proc/${pid}/auxv`);
}

function imageIdOf(auxvPath: string): number | null {
  let auxv: ArrayBuffer;
  try {
    auxv = native.readFile(auxvPath, PROC_FILE_BYTES, false, false).data;
  } catch {
    return null;
  }
  // A zombie's auxv reads empty: no image at all.
  return auxv.byteLength === 0 ? null : crc32c(new Uint8Array(auxv)) >>> 0;
}

/**
 * Who a lock holder is: the process (pid, start time, boot), its thread (Node's id for messages;
 * the kernel task and its start time for liveness, 0 when unknown), the program image and the
 * PID namespace (0 when unknown). What the pool lock, the cache entries and the clients' writer
 * locks record, and each judges its holders by (recordedThreadAlive, judgedByMark).
 */
export interface ThreadIdentity {
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
  /** The program image (ownImageId()), 0 when unknown (an older pmpool's record, no /proc). */
  imageId: number;
  /** The PID namespace (ownPidNamespace()), 0 when unknown (no /proc). */
  pidNs: number;
}

// Module state is per isolate, so this cache is per thread: a worker computes its own identity.
let ownIdentityCache: ThreadIdentity | undefined;
/** This thread of this program image. */
export function ownIdentity(): ThreadIdentity {
  if (ownIdentityCache === undefined || ownIdentityCache.pid !== process.pid) {
    const tid = ownTid();
    // The main thread's task is the process's first (tid == pid), and its start time is the
    // process's (an execve from another thread gives that thread the leader's, fs/exec.c de_thread):
    // already read once per process, and one /proc read fewer on the way to a handover's first lock.
    const tidStartTime = tid === 0 ? 0 : tid === process.pid ? (ownStartTime() ?? 0) : (taskStartTime(process.pid, tid) ?? 0);
    ownIdentityCache = {
      pid: process.pid,
      startTime: ownStartTime() ?? 0,
      bootHash: bootHash(),
      threadId: ownThreadId(tid),
      tid: tidStartTime === 0 ? 0 : tid,
      tidStartTime,
      imageId: ownImageId(),
      pidNs: ownPidNamespace(),
    };
  }
  return ownIdentityCache;
}

/** Whether a holder recorded in PID namespace `ns` is of another than this process's (both known): its pid names nothing here. */
export function otherPidNamespace(ns: number): boolean {
  const mine = ownPidNamespace();
  return ns !== 0 && mine !== 0 && ns !== mine;
}

/**
 * Whether a holder recorded in PID namespace `ns` is judged by its liveness mark rather than by
 * /proc: it recorded its namespace, and that is another than this process's — or this process
 * cannot tell its own (no /proc/self/ns), when /proc may name another process by the holder's
 * pid. A holder of this namespace is judged by /proc, down to its thread.
 */
export function judgedByMark(ns: number): boolean {
  const mine = ownPidNamespace();
  return ns !== 0 && (mine === 0 || ns !== mine);
}
