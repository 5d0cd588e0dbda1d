/**
 * CRC-32C: the published check values, and the table-driven functions
 * against the bitwise definition (one bit of the polynomial at a time, no
 * tables) over random inputs, split and continued anywhere. The tables are
 * filled on first need: the check values are computed before (bit by bit,
 * as a restoring program's superblock is), the random inputs mostly after.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32c, crc32cU32, crc32cWords } from '../src/util/crc32c.js';
import { LIVE_CRC, RECORD_LIVE } from '../src/pool/directory.js';

/** The definition: reflected CRC-32C, init and final XOR all ones. */
function bitwise(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (const byte of bytes) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

test('the check values: "123456789" (the catalogue of CRC parameters) and the iSCSI vectors of RFC 3720 B.4', () => {
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

test('bytes, any range, continued from any CRC: the same as the bitwise definition', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 0xffffffff }), (bytes, a, b, seed) => {
      const start = bytes.length === 0 ? 0 : a % (bytes.length + 1);
      const end = start + (b % (bytes.length - start + 1));
      assert.equal(crc32c(bytes, start, end, seed), bitwise(bytes.subarray(start, end), seed));
      // Split anywhere: the CRC of the whole is the CRC of the second part continued from the first.
      assert.equal(crc32c(bytes, end, bytes.length, crc32c(bytes, 0, end)), crc32c(bytes));
    }),
    { numRuns: 500 },
  );
});

test('words (little-endian u32s, any count, odd or even) and a single u32: the same as their bytes', () => {
  fc.assert(
    fc.property(fc.uint32Array({ maxLength: 40 }), fc.nat(), fc.integer({ min: 0, max: 0xffffffff }), (words, a, seed) => {
      const start = words.length === 0 ? 0 : a % (words.length + 1);
      const count = words.length - start;
      const bytes = new Uint8Array(words.buffer, words.byteOffset + start * 4, count * 4);
      assert.equal(crc32cWords(words, start, count, seed), bitwise(bytes, seed));
      if (count > 0) assert.equal(crc32cU32(words[start]!, seed), bitwise(bytes.subarray(0, 4), seed));
    }),
    { numRuns: 500 },
  );
});

test("runs of 1 to 8 words once the position tables are filled (a busy allocator's checksums): the same as their bytes", () => {
  // Past the cold budget (4,096 short runs, counted across this process), crc32cWords takes runs
  // of up to eight words through the position tables; the test above checked the first ones by
  // slicing. Runs rich in zero words, which the tables skip, and zero first words under any seed.
  const one = new Uint32Array([0x01020304]);
  for (let i = 0; i < 5000; i++) assert.equal(crc32cWords(one, 0, 1, i), bitwise(new Uint8Array(one.buffer), i));
  const word = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xff }));
  fc.assert(
    fc.property(fc.array(word, { minLength: 1, maxLength: 10 }), fc.nat(), fc.oneof(fc.constant(0), fc.constant(0xffffffff), fc.integer({ min: 0, max: 0xffffffff })), (list, a, seed) => {
      const words = Uint32Array.from(list);
      const start = a % words.length;
      const count = Math.min(8, words.length - start);
      const bytes = new Uint8Array(words.buffer, start * 4, count * 4);
      assert.equal(crc32cWords(words, start, count, seed), bitwise(bytes, seed));
    }),
    { numRuns: 2000 },
  );
});

test('the directory record checksum starts from the CRC of the LIVE state word, kept as a constant', () => {
  assert.equal(LIVE_CRC, crc32cU32(RECORD_LIVE));
  assert.equal(LIVE_CRC, bitwise(new Uint8Array(new Uint32Array([RECORD_LIVE]).buffer)));
});
