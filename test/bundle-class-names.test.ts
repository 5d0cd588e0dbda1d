/**
 * tools/class-names.ts: esbuild names a self-referencing class `_Pool`
 * (`var Pool = class _Pool`); the build renames it back. The rename must
 * give the class its name everywhere a user sees it, keep every other byte
 * where it was (the source map), touch no string or property, and refuse a
 * bundle where the name has a second meaning.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { runInNewContext } from 'node:vm';
import { build } from 'esbuild';
import { restoreClassNames } from '../tools/class-names.js';

/** Bundles `modules` (name → source; `entry.js` is the entry) as the build bundles pmpool: CommonJS, minified syntax and whitespace. */
async function bundle(modules: Record<string, string>): Promise<string> {
  const result = await build({
    stdin: { contents: modules['entry.js']!, sourcefile: 'entry.js', resolveDir: '/' },
    bundle: true,
    write: false,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    minifyWhitespace: true,
    minifySyntax: true,
    logLevel: 'silent',
    plugins: [
      {
        name: 'in-memory',
        setup(b) {
          b.onResolve({ filter: /^\.\// }, (args) => ({ path: args.path.slice(2), namespace: 'mem' }));
          b.onLoad({ filter: /.*/, namespace: 'mem' }, (args) => ({ contents: modules[args.path]!, loader: 'js' }));
        },
      },
    ],
  });
  return result.outputFiles[0]!.text;
}

function run(code: string): Record<string, unknown> {
  const module = { exports: {} as Record<string, unknown> };
  runInNewContext(code, { module, exports: module.exports, Error });
  return module.exports;
}

const POOL = `
export class Pool {
  static open() { return new Pool(); }
  tag = '_Pool';
  fail() { throw new Error('failed'); }
}
export class Plain { hello() { return 1; } }
`;

test('esbuild names a self-referencing class _Pool; the rename gives it back its name, byte for byte in place', async () => {
  const code = await bundle({ 'entry.js': "import { Pool, Plain } from './pool.js'; module.exports = { Pool, Plain };", 'pool.js': POOL });
  assert.match(code, /class _Pool/, 'esbuild no longer renames: this pass may be unnecessary');
  const before = run(code) as { Pool: { name: string } };
  assert.equal(before.Pool.name, '_Pool');

  const { text, restored } = restoreClassNames(code);
  assert.deepEqual(restored, ['Pool']);
  assert.equal(text.length, code.length);
  // Every line break where it was: the source map's lines and columns still hold.
  assert.deepEqual([...text.matchAll(/\n/g)].map((m) => m.index), [...code.matchAll(/\n/g)].map((m) => m.index));
  assert.doesNotMatch(text.replaceAll('"_Pool"', ''), /_Pool/, 'the only _Pool left is the string');

  const after = run(text) as { Pool: { name: string; open(): { fail(): void; tag: string } }; Plain: { name: string } };
  assert.equal(after.Pool.name, 'Pool');
  assert.equal(after.Plain.name, 'Plain');
  const pool = after.Pool.open();
  assert.equal(pool.tag, '_Pool', 'a string is not a name: left as it was');
  assert.match(inspect(pool), /^Pool \{/);
  assert.throws(() => pool.fail(), (e: Error) => /at Pool\.fail/.test(e.stack ?? ''));
});

test('the rename leaves alone properties that share the inner name, and a bundle with no renamed class', async () => {
  const code = await bundle({
    'entry.js': "import { Pool } from './pool.js'; const o = { _Pool: 1 }; o._Pool += 1; module.exports = { Pool, o };",
    'pool.js': POOL,
  });
  const { text } = restoreClassNames(code);
  const out = run(text) as { Pool: { name: string }; o: { _Pool: number } };
  assert.equal(out.Pool.name, 'Pool');
  assert.deepEqual({ ...out.o }, { _Pool: 2 });

  const plain = await bundle({ 'entry.js': 'module.exports = class Plain {};' });
  assert.deepEqual(restoreClassNames(plain), { text: plain, restored: [] });
});

test('the rename leaves alone a destructuring pattern\'s key that shares the inner name', async () => {
  // `{ _Pool: p }` reads the property _Pool, whatever p is called: renamed, it would read Pool.
  const pool = `${POOL}\nexport function pick({ _Pool: p }) { const { _Pool: q } = { _Pool: 2 }; return [p, q, Pool.open() instanceof Pool]; }\n`;
  const code = await bundle({ 'entry.js': "import { Pool, pick } from './pool.js'; module.exports = { Pool, pick };", 'pool.js': pool });
  assert.match(code, /_Pool:/, 'the bundle keeps the destructuring keys');
  const { text } = restoreClassNames(code);
  const out = run(text) as { Pool: { name: string }; pick(o: object): unknown[] };
  assert.equal(out.Pool.name, 'Pool');
  assert.deepEqual([...out.pick({ _Pool: 1 })], [1, 2, true]);
  assert.equal(restoreClassNames('var Pool = class _Pool { static f({ _Pool: p }) { return [p, new _Pool()]; } };').text, 'var Pool = class Pool  { static f({ _Pool: p }) { return [p, new Pool ()]; } };');
});

test('a bundle where the outer or inner name has a second meaning is refused, naming it', () => {
  const cases: [string, RegExp][] = [
    // A parameter named Pool inside the class would capture the renamed references.
    ['var Pool = class _Pool { make(Pool) { return new _Pool(Pool); } };', /Pool is declared 2 times/],
    // `{ _Pool }` would change its key.
    ['var Pool = class _Pool { get() { return { _Pool }; } };', /_Pool at offset \d+ is not a reference/],
    // A local binding of the inner name.
    ['var Pool = class _Pool { get() { let _Pool = 1; return _Pool; } };', /_Pool at offset \d+ is not a reference/],
    // Two classes of the same inner name.
    ['var Pool = class _Pool {}; var x = class _Pool {};', /2 classes are named _Pool/],
  ];
  for (const [code, message] of cases) {
    assert.throws(() => restoreClassNames(code), (e: Error) => /cannot restore the bundle's class names/.test(e.message) && message.test(e.message), code);
  }
});
