/**
 * The Node options a program runs with, as the code cache sees them.
 *
 * V8 refuses a code cache recorded under other V8 flags (it keeps a hash of
 * them in the cache), and a program's V8 flags come from its Node options:
 * `node --max-old-space-size=4096 server.js` loses the cache recorded at
 * install, and every start of it compiles the bundle again (~4 ms more of a
 * handover's downtime, measured). So a cache may be recorded under a set of
 * options (`pmpool code-cache record -- OPTIONS`), and the loader looks for
 * the one recorded under exactly the options it runs with before the
 * default one.
 *
 * The options are NODE_OPTIONS, split as Node splits it, then
 * process.execArgv, without the program of `-e`/`-p` (a program is not an
 * option: `node --max-old-space-size=4096 -e ...` is the same case as the
 * server above). Options that do not reach V8 (--inspect, --no-warnings)
 * count too — telling them apart would need Node's own tables — which only
 * means no cache is recorded under them: the loader then tries the default
 * cache, and V8 takes it.
 */

/** Options after which the next word is the program itself. */
const PROGRAM_OPTIONS = new Set(['-e', '--eval', '-pe']);

/**
 * Options after which the next word is the program only when it does not start with "-": Node's
 * `--print <arg>` alias. Otherwise --print is a flag of its own (`node -p -e CODE`, `node --print
 * --stack-size=900 -e CODE`), and the next word is an option.
 */
const PRINT_OPTIONS = new Set(['-p', '--print']);

/** The options of this process (or of the given execArgv and NODE_OPTIONS), as a cache is keyed by them. */
export function nodeOptionsOf(execArgv: readonly string[] = process.execArgv, nodeOptions: string | undefined = process.env.NODE_OPTIONS): string[] {
  const options = nodeOptions ? splitNodeOptions(nodeOptions) : [];
  for (let i = 0; i < execArgv.length; i++) {
    const option = execArgv[i]!;
    if (PROGRAM_OPTIONS.has(option)) i++;
    else if (PRINT_OPTIONS.has(option)) {
      if (i + 1 < execArgv.length && !execArgv[i + 1]!.startsWith('-')) i++;
    } else if (!option.startsWith('--eval=') && !option.startsWith('--print=')) options.push(option);
  }
  return options;
}

/**
 * NODE_OPTIONS split into words as Node 20 splits it (ParseNodeOptionsEnvVar
 * in src/node_options.cc): spaces separate words outside double quotes; a
 * double quote opens or closes a quoted part and is dropped; inside one, a
 * backslash takes the next character as it is. A value Node would reject
 * (an unterminated quote) never reaches a running program.
 */
export function splitNodeOptions(value: string): string[] {
  const words: string[] = [];
  let quoted = false;
  let startsWord = true;
  for (let i = 0; i < value.length; i++) {
    let c = value[i]!;
    if (c === '\\' && quoted && i + 1 < value.length) c = value[++i]!;
    else if (c === ' ' && !quoted) {
      startsWord = true;
      continue;
    } else if (c === '"') {
      quoted = !quoted;
      continue;
    }
    if (startsWord) words.push(c);
    else words[words.length - 1] += c;
    startsWord = false;
  }
  return words;
}

/** Options as a shell line: each word quoted when the shell would split or expand it. */
export function formatNodeOptions(options: readonly string[]): string {
  return options.map((o) => (/^[\w@%+=:,./-]+$/.test(o) ? o : `'${o.replace(/'/g, `'\\''`)}'`)).join(' ');
}
