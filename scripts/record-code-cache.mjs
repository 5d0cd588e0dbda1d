// `npm install` step (package.json "install", after node-gyp): record V8's code cache of the
// bundle where the package is installed, with the Node that will run it, and again each cache
// recorded there under Node options (`npm rebuild` under a new Node: tools/record-cache.ts).
// In a clone before its first build there is no bundle yet; the build records the cache itself.
import { existsSync } from 'node:fs';

const recorder = new URL('../dist/tools/record-cache.js', import.meta.url);
if (existsSync(new URL('../dist/pmpool.bundle.cjs', import.meta.url)) && existsSync(recorder)) {
  const { recordCaches } = await import(recorder.href);
  try {
    for (const { path, problem } of recordCaches().dropped) process.stderr.write(`pmpool: removed ${path}, which cannot be recorded again: ${problem}\n`);
  } catch (e) {
    process.stderr.write(`pmpool: no code cache recorded (${e.message}); pmpool works without it, only its start is slower\n`);
  }
}
