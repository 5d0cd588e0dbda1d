/**
 * The PersistentMap's handover node (/clients/<name>, "pmpool,persistent-map-v1"):
 * written from a kexec.onHandover callback, read back untrusted, verified
 * against the map found by name; a disagreeing node is refused and the map
 * stays openable by the crash-recovery path.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Fdt, kexec, Pool } from '../src/index.js';
import { MemoryRegion } from '../src/region/index.js';
import { expectError } from './support/expect.js';
import { PMPOOL_ENTRY, runModule, shmPath } from './support/child.js';
import { ClientError, MAP_COMPATIBLE, PersistentMap, readMapNode, setIncomingHandoverSource, verifyMapNode, writeMapNode } from '../src/clients/index.js';

const MiB = 1024 * 1024;

function expectClientError(fn: () => unknown, code: string, pattern?: RegExp): ClientError {
  const e = expectError(fn, ClientError, code);
  if (pattern) assert.match(e.message, pattern);
  return e;
}

function withMap(fn: (pool: Pool, map: PersistentMap) => void): void {
  const pool = Pool.create(new MemoryRegion(16 * MiB), { size: 16 * MiB });
  const map = PersistentMap.open(pool, 'kv');
  try {
    fn(pool, map);
  } finally {
    pool.close();
  }
}

describe('PersistentMap handover node', () => {
  test('written into a tree, read back, printed as DTS', () => {
    withMap((pool, map) => {
      map.set('a', '1').set('b', '2');
      const fdt = new Fdt();
      map.handoverNode(fdt);
      const parsed = Fdt.parse(fdt.toBytes());
      assert.equal(parsed.getString('/clients/kv', 'compatible'), MAP_COMPATIBLE);
      const info = map.handoverInfo();
      assert.equal(parsed.getU64('/clients/kv', 'root'), BigInt(info.rootPfn));
      assert.deepEqual(parsed.get('/clients/kv', 'pool-uuid'), pool.uuidBytes);
      assert.equal(parsed.getU64('/clients/kv', 'entries'), 2n);
      const node = readMapNode(parsed, 'kv')!;
      assert.deepEqual(node, { ...info, poolUuid: pool.uuidBytes });
      verifyMapNode(node, info);
      assert.equal(readMapNode(parsed, 'other'), undefined);
      // A blob carries no types: dtc prints the u64 as two cells, as does our printer.
      assert.match(parsed.toDts(), /kv \{[^}]*compatible = "pmpool,persistent-map-v1";[^}]*root = <0x0+ 0x[0-9a-f]+>;/s);
    });
  });

  test('open verifies the incoming node; a disagreeing one is refused and the map stays openable', () => {
    withMap((pool, map) => {
      map.set('k', 'v');
      const fdt = new Fdt();
      map.handoverNode(fdt);
      map.close();
      PersistentMap.open(pool, 'kv', { handover: fdt }).close();
      const info = readMapNode(fdt, 'kv')!;
      const variants: Array<[string, (f: Fdt) => void, RegExp]> = [
        ['pool', (f) => f.set('/clients/kv', 'pool-uuid', new Uint8Array(16).fill(1)), /names pool/],
        ['root', (f) => f.set('/clients/kv', 'root', BigInt(info.rootPfn + 1)), /root pfn/],
        ['id', (f) => f.set('/clients/kv', 'map-id', (info.mapId + 1) >>> 0), /map-id/],
        ['entries', (f) => f.set('/clients/kv', 'entries', 5n), /5 entries, the map holds 1/],
        ['v2', (f) => f.set('/clients/kv', 'compatible', 'pmpool,persistent-map-v2'), /this code reads/],
        ['other', (f) => f.set('/clients/kv', 'compatible', 'acme,thing'), /not a persistent map/],
        ['uuid-size', (f) => f.set('/clients/kv', 'pool-uuid', new Uint8Array(15)), /15 bytes/],
        ['root-type', (f) => f.set('/clients/kv', 'root', 'text'), /malformed/],
        ['missing', (f) => f.remove('/clients/kv', 'entries'), /lacks/],
      ];
      // compatible is a string list: one that names v1 among others is read as v1.
      const listed = fdt.clone();
      listed.set('/clients/kv', 'compatible', ['pmpool,persistent-map-v2', MAP_COMPATIBLE]);
      PersistentMap.open(pool, 'kv', { handover: listed }).close();
      variants.push(['v2 only, listed', (f) => f.set('/clients/kv', 'compatible', ['pmpool,persistent-map-v3', 'pmpool,persistent-map-v2']), /"pmpool,persistent-map-v3"; this code reads/]);
      for (const [label, edit, pattern] of variants) {
        const bad = fdt.clone();
        edit(bad);
        expectClientError(() => PersistentMap.open(pool, 'kv', { handover: bad }), 'HANDOVER_MISMATCH', pattern);
        // Refused, and nothing held: the crash-recovery path opens it as found.
        const found = PersistentMap.open(pool, 'kv', { handover: null });
        assert.equal(found.get('k'), 'v', label);
        found.close();
      }
      // A node written, then the map changed: the next program would refuse it.
      const w = PersistentMap.open(pool, 'kv', { handover: null });
      w.set('late', 'write');
      w.close();
      expectClientError(() => PersistentMap.open(pool, 'kv', { handover: fdt }), 'HANDOVER_MISMATCH', /written after its handover callback/);
    });
  });

  test('the incoming tree comes from the kexec layer by default, or from a source set for it', () => {
    withMap((pool, map) => {
      map.set('x', 'y');
      const fdt = new Fdt();
      map.handoverNode(fdt);
      map.close();
      const wrong = fdt.clone();
      wrong.set('/clients/kv', 'entries', 9n);
      setIncomingHandoverSource(() => wrong);
      try {
        expectClientError(() => PersistentMap.open(pool, 'kv'), 'HANDOVER_MISMATCH');
        setIncomingHandoverSource(() => fdt);
        PersistentMap.open(pool, 'kv').close();
      } finally {
        setIncomingHandoverSource(null);
      }
      // No source set and no blob on the command line: a cold start, nothing to verify.
      assert.equal(kexec.incoming(), null);
      PersistentMap.open(pool, 'kv').close();
    });
  });

  test('registerHandover: the kexec callback writes the node into the outgoing tree', () => {
    withMap((_pool, map) => {
      for (let i = 0; i < 100; i++) map.set(`k${i}`, `v${i}`);
      const unregister = PersistentMap.registerHandover(map, kexec.onHandover);
      try {
        const prepared = kexec.prepare({ from: 'clients test' });
        try {
          assert.equal(prepared.fdt.getString('/clients/kv', 'compatible'), MAP_COMPATIBLE);
          assert.equal(prepared.fdt.getU64('/clients/kv', 'entries'), 100n);
          verifyMapNode(readMapNode(Fdt.parse(prepared.bytes), 'kv')!, map.handoverInfo());
        } finally {
          prepared.abort(new Error('test: not going anywhere'));
        }
      } finally {
        unregister();
      }
      // The map goes on after an aborted handover.
      map.set('after', 'abort');
      assert.equal(map.get('after'), 'abort');
    });
  });

  test('a map closed or destroyed after registerHandover leaves the next handover alone', () => {
    for (const end of ['close', 'destroy'] as const) {
      withMap((pool, map) => {
        map.set('k', 'v');
        const unregister = PersistentMap.registerHandover(map, kexec.onHandover);
        map[end]();
        // Its callback would throw CLOSED and abort the handover: closing unregistered it.
        const prepared = kexec.prepare({ from: `clients test (${end})` });
        try {
          assert.equal(prepared.fdt.getString('/clients/kv', 'compatible'), undefined);
        } finally {
          prepared.abort(new Error('test: not going anywhere'));
        }
        unregister(); // already done: a no-op, not an error
        if (end === 'close') assert.equal(PersistentMap.open(pool, 'kv').get('k'), 'v');
        // A closed map cannot be registered: its callback could only abort.
        expectError(() => PersistentMap.registerHandover(map, kexec.onHandover), ClientError, 'CLOSED');
      });
    }
  });

  test('a map opened from its node consumes it: changed and closed, it is neither verified again nor carried to the next program', () => {
    // A → B → C in place. A hands the map over; B opens it (verified against A's node), writes,
    // closes it and hands over without it. A's node, carried on, would say one entry where the
    // map holds two: C, and a second open in B, must open the map by name.
    const { path, cleanup } = shmPath('map-consumed');
    try {
      const r = runModule(
        `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
         import { PersistentMap } from ${JSON.stringify(new URL('../src/clients/index.js', PMPOOL_ENTRY).href)};
         const pool = kexec.poolFromCommandLine();
         const stage = Number(process.env.PMPOOL_TEST_STAGE ?? 0);
         const open = () => {
           try {
             return PersistentMap.open(pool, 'kv');
           } catch (e) {
             process.stdout.write('stage ' + stage + ': ' + e.code + '\\n');
             process.exit(1);
           }
         };
         let map = open();
         if (stage === 0) {
           map.set('a', '1');
           PersistentMap.registerHandover(map, kexec.onHandover);
         } else if (stage === 1) {
           map.set('b', '2');
           map.close();
           map = open();
           process.stdout.write('B reopened ' + map.size + '\\n');
           map.close();
         } else {
           process.stdout.write('C opened ' + map.size + ' carried ' + kexec.incoming().fdt.has('/clients/kv') + '\\n');
           process.exit(0);
         }
         process.env.PMPOOL_TEST_STAGE = String(stage + 1);
         await kexec.exec(process.execPath, [...process.execArgv, '--', ...process.argv.slice(1)]);`,
        ['--', `--pmpool=${path},64M`],
      );
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.equal(r.stdout, 'B reopened 2\nC opened 2 carried false\n');
    } finally {
      cleanup();
    }
  });

  test('a map written once its handover callback has run is refused (BUSY) until the handover is undone: the next program gets the map its node describes', () => {
    // exec() is not awaited: the rest of the caller's turn runs with the handover prepared, as
    // does whatever runs while exec() waits for stdout to drain. A set then would change the
    // map under the node its callback wrote, and the next program refuse the map.
    const { path, cleanup } = shmPath('map-late-write');
    try {
      const r = runModule(
        `import { kexec } from ${JSON.stringify(PMPOOL_ENTRY)};
         import { PersistentMap } from ${JSON.stringify(new URL('../src/clients/index.js', PMPOOL_ENTRY).href)};
         const pool = kexec.poolFromCommandLine();
         const stage = Number(process.env.PMPOOL_TEST_STAGE ?? 0);
         let map;
         try {
           map = PersistentMap.open(pool, 'kv');
         } catch (e) {
           process.stdout.write('stage ' + stage + ': ' + e.code + '\\n');
           process.exit(1);
         }
         if (stage === 1) {
           process.stdout.write('next opened ' + map.size + ' ' + map.get('a') + '\\n');
           process.exit(0);
         }
         map.set('a', '1');
         PersistentMap.registerHandover(map, kexec.onHandover);
         // A handover undone (a callback that fails) gives the map back.
         const off = kexec.onHandover('fails', () => { throw new Error('not now'); });
         try { kexec.prepare(); } catch (e) { process.stdout.write('aborted ' + e.code + '\\n'); }
         off();
         map.set('a', '2');
         process.env.PMPOOL_TEST_STAGE = '1';
         const exec = kexec.exec(process.execPath, [...process.execArgv, '--', ...process.argv.slice(1)]);
         try {
           map.set('late', 'x');
           process.stdout.write('late set accepted\\n');
         } catch (e) {
           process.stdout.write('late set ' + e.code + '\\n');
         }
         await exec;`,
        ['--', `--pmpool=${path},64M`],
      );
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.equal(r.stdout, 'aborted CALLBACK_FAILED\nlate set BUSY\nnext opened 1 2\n');
    } finally {
      cleanup();
    }
  });

  test('writeMapNode rewrites a carried-forward node rather than merging into it', () => {
    const fdt = new Fdt();
    fdt.addNode('/clients/kv');
    fdt.set('/clients/kv', 'stale', 'from an older program');
    writeMapNode(fdt, { name: 'kv', rootPfn: 10, poolUuid: new Uint8Array(16), mapId: 7, entries: 0 });
    assert.deepEqual(fdt.props('/clients/kv').sort(), ['compatible', 'entries', 'map-id', 'pool-uuid', 'root']);
  });
});
