/**
 * The header every client keeps at the start of its root run (the run named
 * after the client): a magic shared by all clients, a type tag ("pmap",
 * "plog"), a format version and the client's fixed fields under a CRC-32C,
 * then its writer lock and its mutable words. The magic is written last, so a
 * run whose magic is still zero is a client whose creation never finished.
 *
 *   0  magic "PMCL"        16 client id (random)     32 pool uuid (16 bytes)
 *   4  version (major<<16) 20 three type-specific    48 created at (ms, u64)
 *   8  type tag            ..  fixed words          56 name length, 60 name (64 bytes)
 *  12  header bytes                                 124 CRC-32C of bytes [0, 124)
 * 128  writer lock (14 words)                       192 the client's mutable words
 */
import { randomNonZeroU31 } from '../sys/random.js';
import { Pool, PoolError, type Allocation } from '../index.js';
import { checkBooleanOption, checkOptions, describeValue } from '../util/options.js';
import { crc32c } from '../util/crc32c.js';
import { ClientError } from './errors.js';

export const CLIENT_MAGIC = 0x4c434d50; // "PMCL" little-endian
export const TYPE_MAP = 0x70616d70; // "pmap"
export const TYPE_LOG = 0x676f6c70; // "plog"
export const FORMAT_MAJOR = 1;
export const FORMAT_MINOR = 0;

/* Byte offsets. */
const MAGIC = 0;
const VERSION = 4;
const TYPE = 8;
const HEADER_BYTES = 12;
const CLIENT_ID = 16;
export const FIXED_WORDS = 20; // three type-specific u32s
const POOL_UUID = 32;
const CREATED = 48;
const NAME_LENGTH = 56;
const NAME = 60;
const NAME_MAX = 64;
const FIXED_CRC = 124;
/** u32 index of the writer lock. */
export const LOCK_INDEX = 128 / 4;
/** Byte offset of a client's first mutable word. */
export const MUTABLE = 192;

/** Names: what an FDT node name allows (they become /clients/<name>), short enough for the pool's owner label. */
const NAME_PATTERN = /^[A-Za-z0-9,._+-]{1,19}$/;

const badArgument = (message: string): ClientError => new ClientError('BAD_ARGUMENT', message);

/**
 * The first arguments of a client's open: a Pool, and an options object whose
 * `booleans` are true, false or absent (`readOnly: 1` is not read as false).
 */
export function checkOpenArguments<T extends object>(pool: unknown, options: T | undefined, what: string, booleans: readonly (keyof T & string)[]): T {
  if (!(pool instanceof Pool)) throw badArgument(`${what} needs a Pool, got ${describeValue(pool)}`);
  const checked = checkOptions(options, `${what} options`, badArgument);
  for (const field of booleans) checkBooleanOption(checked[field], field, badArgument);
  return checked;
}

export function checkClientName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw new ClientError(
      'BAD_ARGUMENT',
      `a client name is 1 to 19 of the characters A-Z a-z 0-9 , . _ + - (it names pool runs, an owner label and an FDT node); got ${JSON.stringify(name)}`,
    );
  }
  return name;
}

export function typeName(tag: number): string {
  if (tag === TYPE_MAP) return 'a persistent map';
  if (tag === TYPE_LOG) return 'a log ring';
  return `a client of type 0x${tag.toString(16)}`;
}

export interface FixedHeader {
  type: number;
  headerBytes: number;
  clientId: number;
  /** Three type-specific words. */
  fixed: [number, number, number];
  poolUuid: Uint8Array;
  createdAtMs: number;
  name: string;
}

export function newClientId(): number {
  return randomNonZeroU31();
}

/** Writes the fixed header; the magic last, after everything it vouches for. */
export function writeFixedHeader(bytes: Uint8Array, h: FixedHeader): void {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, 128);
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, 32);
  Atomics.store(words, MAGIC / 4, 0);
  bytes.fill(0, 4, 128);
  dv.setUint32(VERSION, (FORMAT_MAJOR << 16) | FORMAT_MINOR, true);
  dv.setUint32(TYPE, h.type, true);
  dv.setUint32(HEADER_BYTES, h.headerBytes, true);
  dv.setUint32(CLIENT_ID, h.clientId, true);
  for (let i = 0; i < 3; i++) dv.setUint32(FIXED_WORDS + 4 * i, h.fixed[i]!, true);
  bytes.set(h.poolUuid, POOL_UUID);
  dv.setUint32(CREATED, h.createdAtMs % 2 ** 32, true);
  dv.setUint32(CREATED + 4, Math.floor(h.createdAtMs / 2 ** 32), true);
  const name = Buffer.from(h.name, 'utf8');
  dv.setUint32(NAME_LENGTH, name.length, true);
  bytes.set(name, NAME);
  const crc = crc32c(bytes, 4, FIXED_CRC, crc32c(u32le(CLIENT_MAGIC)));
  dv.setUint32(FIXED_CRC, crc, true);
  Atomics.store(words, MAGIC / 4, CLIENT_MAGIC);
}

function u32le(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

/**
 * Decodes and verifies a fixed header; `null` when its magic is zero (creation
 * never finished). Damage is CORRUPT, another client WRONG_TYPE: the
 * checksum covers bytes [4, 124) seeded with the magic it expects, not the
 * magic word itself, so it is checked first and tells the two apart — a
 * header that verifies under a wrong magic is a client's with its magic
 * damaged; one that does not, under a wrong magic, holds no client; under the
 * right magic, a damaged header. A verified header of a known other type is
 * that client's; of no known type, damaged (only a client of the type the
 * run's owner label names writes its header).
 */
export function readFixedHeader(bytes: Uint8Array, what: string, expectedType: number): FixedHeader | null {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, 128);
  const magic = dv.getUint32(MAGIC, true);
  if (magic === 0) return null;
  const verified = crc32c(bytes, 4, FIXED_CRC, crc32c(u32le(CLIENT_MAGIC))) === dv.getUint32(FIXED_CRC, true);
  if (magic !== CLIENT_MAGIC) {
    if (verified) throw new ClientError('CORRUPT', `${what}: its client header verifies but its magic is damaged (0x${magic.toString(16)})`);
    throw new ClientError('WRONG_TYPE', `${what} is an allocation that holds no pmpool client (bad magic 0x${magic.toString(16)})`);
  }
  if (!verified) throw new ClientError('CORRUPT', `${what}: the client header checksum does not match`);
  const type = dv.getUint32(TYPE, true);
  if (type !== expectedType) {
    if (type !== TYPE_MAP && type !== TYPE_LOG) throw new ClientError('CORRUPT', `${what}: its header's type tag 0x${type.toString(16)} is no client type`);
    throw new ClientError('WRONG_TYPE', `${what} is ${typeName(type)}, not ${typeName(expectedType)}`);
  }
  const version = dv.getUint32(VERSION, true);
  if (version >>> 16 !== FORMAT_MAJOR) {
    throw new ClientError('INCOMPATIBLE', `${what} has format version ${version >>> 16}.${version & 0xffff}; this code reads ${FORMAT_MAJOR}.x`);
  }
  const nameLength = dv.getUint32(NAME_LENGTH, true);
  if (nameLength > NAME_MAX) throw new ClientError('CORRUPT', `${what}: name length ${nameLength} in the header`);
  return {
    type,
    headerBytes: dv.getUint32(HEADER_BYTES, true),
    clientId: dv.getUint32(CLIENT_ID, true),
    fixed: [dv.getUint32(FIXED_WORDS, true), dv.getUint32(FIXED_WORDS + 4, true), dv.getUint32(FIXED_WORDS + 8, true)],
    poolUuid: bytes.slice(POOL_UUID, POOL_UUID + 16),
    createdAtMs: dv.getUint32(CREATED, true) + dv.getUint32(CREATED + 4, true) * 2 ** 32,
    name: Buffer.from(bytes.buffer, bytes.byteOffset + NAME, nameLength).toString('utf8'),
  };
}

/**
 * The root run of client `name`, checked to belong to a client of this type
 * (by its owner label; the header is checked by the caller). Undefined when
 * there is none.
 */
export function findRoot(pool: Pool, name: string, owner: string, what: string): Allocation | undefined {
  const run = poolCall(() => pool.find(name), what);
  if (run === undefined) return undefined;
  if (run.owner !== owner) {
    const other = run.owner?.startsWith('pmap:') ? 'a persistent map' : run.owner?.startsWith('plog:') ? 'a log ring' : run.owner ? `an allocation of "${run.owner}"` : 'a plain allocation';
    throw new ClientError('WRONG_TYPE', `${what}: the pool's allocation "${name}" is ${other}`);
  }
  return run;
}

/** Runs a pool call, turning the pool's errors into client errors (NO_SPACE stays NO_SPACE). */
export function poolCall<T>(fn: () => T, what: string): T {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof PoolError)) throw e;
    switch (e.code) {
      case 'NO_SPACE':
      case 'NO_RECORDS':
        throw new ClientError('NO_SPACE', `${what}: the pool is full (${e.message})`, { cause: e });
      case 'CLOSED':
        throw new ClientError('CLOSED', `${what}: the pool is closed`, { cause: e });
      case 'QUIESCED':
        throw new ClientError('BUSY', `${what}: the pool is quiesced for a handover`, { cause: e });
      case 'CORRUPT':
        throw new ClientError('CORRUPT', `${what}: ${e.message}`, { cause: e });
      case 'BAD_ARGUMENT':
        // The clients check what they are given, and size their runs themselves: a run the pool
        // refuses as an argument is one larger than the whole pool.
        throw new ClientError('NO_SPACE', `${what}: more than the whole pool holds (${e.message})`, { cause: e });
      default:
        throw e;
    }
  }
}

