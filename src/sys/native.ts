/**
 * Loader and typed face of the native addon (native/pmpool.c).
 *
 * The addon is built by node-gyp when the package is installed. When it is
 * missing, or cannot be loaded (built for another machine, damaged), say
 * exactly how to build it rather than failing with a bare "Cannot find
 * module" or the dynamic loader's "invalid ELF header".
 */
import type * as Fs from 'node:fs';
import type * as Path from 'node:path';
import { NativeAddonError } from './addon-error.js';

// Built-ins through process.getBuiltinModule, not ESM imports: this module is part of the package
// entries too (src/entry/checksum.ts), and an ES module program's first `import ... from 'node:fs'`
// builds an ESM facade of the whole module (~3 ms of its cold start).
const { existsSync } = process.getBuiltinModule('node:fs') as typeof Fs;
const { dirname, join } = process.getBuiltinModule('node:path') as typeof Path;

export interface NativeStat {
  size: number;
  uid: number;
  gid: number;
  mode: number;
  type: 'file' | 'char' | 'block' | 'directory' | 'symlink' | 'fifo' | 'socket' | 'unknown';
  blocks: number;
  blksize: number;
  rdevMajor: number;
  rdevMinor: number;
  dev: number;
  ino: number;
  /** The file system's magic number (fstatfs f_type): tmpfs, hugetlbfs, ... */
  fsType: number;
  /** The file system's block size (fstatfs f_bsize): on hugetlbfs, its huge page size. */
  fsBlockSize: number;
}

/** What readFile() read, and what fstat said of that very file. */
export interface NativeFileRead {
  data: ArrayBuffer;
  type: NativeStat['type'];
  uid: number;
  mode: number;
  size: number;
}

export type MadviseAdvice = 'hugepage' | 'dontneed' | 'willneed' | 'populate' | 'remove' | 'normal';

export const FLOCK_UNLOCK = 0;
export const FLOCK_SHARED = 1;
export const FLOCK_EXCLUSIVE = 2;

export interface NativeAddon {
  open(path: string, create: boolean, exclusive: boolean, readOnly: boolean, mode: number): number;
  close(fd: number): void;
  fstat(fd: number): NativeStat;
  ftruncate(fd: number, size: number): void;
  fallocate(fd: number, offset: number, length: number, keepSize: boolean): void;
  flock(fd: number, op: number, nonBlocking: boolean): boolean;
  /** Takes an open file description write lock on byte `offset` (F_OFD_SETLK): false when another description holds it. */
  markHold(fd: number, offset: number): boolean;
  markRelease(fd: number, offset: number): void;
  /** True when a description other than fd's holds a lock on byte `offset` (F_OFD_GETLK). */
  markHeld(fd: number, offset: number): boolean;
  /**
   * A shared mapping of `[offset, +length)` of fd. `extentAligned`: at an address congruent to the
   * offset modulo 2 MiB when the window spans one (tmpfs: its extents can then be PMD-mapped).
   */
  mmap(fd: number, offset: number, length: number, writable: boolean, extentAligned: boolean): ArrayBuffer;
  /** A private, read-only copy of a whole regular file (the bundle loader's reads); munmap() releases it. */
  loadFile(path: string): ArrayBuffer;
  /**
   * A regular file of at most maxBytes (`device` false), or maxBytes of a character device (`device`
   * true), with its fstat; nothing else is read (its data is empty).
   */
  readFile(path: string, maxBytes: number, noFollow: boolean, device: boolean): NativeFileRead;
  /** Creates a new file (O_EXCL, O_NOFOLLOW) holding `bytes`; removes it again on failure. */
  writeFile(path: string, bytes: Uint8Array, mode: number): void;
  unlink(path: string): void;
  /** The calling thread's kernel task id. */
  gettid(): number;
  munmap(buffer: ArrayBuffer): void;
  msync(buffer: ArrayBuffer, offset: number, length: number, synchronous: boolean): void;
  madvise(buffer: ArrayBuffer, offset: number, length: number, advice: MadviseAdvice): void;
  mappings(): { count: number; bytes: number };
  /**
   * Queues the whole 2 MiB extents (by address) of `[offset, +length)` of a mapping to be collapsed
   * into huge pages (MADV_COLLAPSE) by the addon's background thread; returns the bytes queued.
   */
  preferHugePages(buffer: ArrayBuffer, offset: number, length: number): number;
  /** Extents of 2 MiB queued and not yet done, collapsed, and refused by the kernel, over the process's life. */
  hugePageWork(): { pending: number; collapsed: number; refused: number };
  /**
   * Claims (true) the right to replace the program for this thread, or hands it back (false).
   * True when this thread holds it; false when another thread of this process does (its exec is
   * under way). A claim whose thread is gone is taken over.
   */
  claimExec(claim: boolean): boolean;
  /**
   * envp null: this process's environment (environ) with each "NAME=value" of `set` put in.
   * teardown: 0 inline; 1 a keeper frees the old image while the next program starts, in the
   * initial pid namespace; 2 a keeper in any (exec.ts Teardown).
   */
  execve(file: string, argv: string[], envp: string[] | null, set: string[], teardown: number): never;
  /** The code cache's checksum (src/entry/checksum.ts), as 16 hex digits. */
  checksum64(bytes: Uint8Array): string;
}

/** An errno failure from the addon: `code` is the errno name. */
export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as NativeError).code === 'string' && typeof (e as NativeError).syscall === 'string';
}

/**
 * The directory holding package.json, above this module's. import.meta.dirname
 * rather than a URL: the bundle (tools/bundle.ts) defines it as its own
 * __dirname, and building a file URL costs ~0.25 ms of a cold start.
 */
function packageRoot(): string {
  const start = import.meta.dirname;
  let dir = start;
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('pmpool: cannot find the package root above ' + start);
    dir = parent;
  }
  return dir;
}

/**
 * The addon, loaded once per thread and file: the package entry loads it
 * first (to check the bundle's code cache), and the bundle's copy of this
 * module finds it here instead of loading it again. Keyed by the file, so
 * that two installations of pmpool in one program each get their own.
 */
const LOADED = Symbol.for('pmpool.nativeAddons');
const loaded: Map<string, NativeAddon> = ((globalThis as Record<symbol, Map<string, NativeAddon> | undefined>)[LOADED] ??= new Map());

/**
 * The addon an entry of this package has already loaded: the one registered
 * under the directory above this module's. Strings only, no file
 * system calls: the package entry walked up to the package root and loaded
 * it a moment ago, and the bundle's copy of this module runs on every cold
 * start, where the walk's existsSync() calls cost ~0.1 ms.
 */
function alreadyLoaded(): NativeAddon | undefined {
  // The bundle and the entries sit in dist/, one level below the package root, where the entry
  // registered the addon. Only there: a walk further up could find another installation's addon
  // (a pmpool inside node_modules of a checkout of pmpool), registered by its own entry.
  for (const file of addonFiles(dirname(import.meta.dirname))) {
    const addon = loaded.get(file);
    if (addon !== undefined) return addon;
  }
  return undefined;
}

/** Where node-gyp puts the addon under a package root, in the order it is looked for. */
function addonFiles(root: string): string[] {
  return [join(root, 'build', 'Release', 'pmpool.node'), join(root, 'build', 'Debug', 'pmpool.node')];
}

/** How an addon for this machine is built, as the two refusals below say it. */
function howToBuild(root: string): string {
  return `\`npm rebuild pmpool\` (or \`npx node-gyp rebuild\` in ${root}); it needs python3, make and a C compiler.`;
}

/** The addon; throws, saying how to build it, when it is not built. */
function loadNative(): NativeAddon {
  const registered = loaded.size > 0 ? alreadyLoaded() : undefined;
  if (registered !== undefined) return registered;
  const root = packageRoot();
  const candidates = addonFiles(root);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new NativeAddonError(
      `pmpool: the native addon is not built (looked for ${candidates.join(', ')}). ` +
        `Build it with ${howToBuild(root)}`,
    );
  }
  let addon = loaded.get(found);
  if (addon === undefined) {
    // process.dlopen, not require(): the addon is all this needs of the CommonJS loader.
    const module = { exports: {} as NativeAddon };
    try {
      process.dlopen(module, found);
    } catch (e) {
      // dlopen's own message names the file and what the dynamic loader said ("invalid ELF header",
      // "wrong ELF class", a missing libc symbol): a build for another machine, copied with
      // node_modules, or a damaged one. Say whose addon it is and how to make a good one.
      throw new NativeAddonError(
        `pmpool: the native addon ${found} cannot be loaded (${(e as Error).message}). Rebuild it on this machine with ${howToBuild(root)}`,
        { cause: e },
      );
    }
    addon = module.exports;
    loaded.set(found, addon);
  }
  return addon;
}

export const native: NativeAddon = loadNative();
