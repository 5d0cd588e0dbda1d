/**
 * The command line of the hand-parsed commands (fdt, log): options and
 * operands, in the POSIX way (utility syntax guideline 10). A word that
 * starts with "-" ("-" alone excepted: it is a file name) is an option, up
 * to a lone "--"; every word after "--" is an operand, so a file or ring
 * whose name starts with "-" can still be named: `pmpool log dump PATH -- -name`.
 * (The pool commands get the same from node's util.parseArgs; `run` keeps
 * its own "--", which starts the program's command line.)
 */

/** The options in the order given (`value` for those that take one) and the operands. */
export interface SplitArgs {
  options: { name: string; value?: string }[];
  operands: string[];
}

/**
 * Splits `args`; an option named in `withValue` takes the next word as its value (whatever it is),
 * or what follows its "=" in the same word (`--free-space=16`, as parseArgs takes `--size=16M`).
 */
export function splitArgs(args: readonly string[], withValue: readonly string[] = []): SplitArgs {
  const options: SplitArgs['options'] = [];
  const operands: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      operands.push(...args.slice(i + 1));
      break;
    }
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    if (!a.startsWith('-') || a === '-') operands.push(a);
    else if (withValue.includes(a)) options.push({ name: a, value: args[++i] });
    else if (eq > 0 && withValue.includes(a.slice(0, eq))) options.push({ name: a.slice(0, eq), value: a.slice(eq + 1) });
    else options.push({ name: a });
  }
  return { options, operands };
}

/** The first option not in `known`, if any (an unknown short option such as -j is bad usage, not a name). */
export function unknownOption(split: SplitArgs, known: readonly string[]): string | undefined {
  return split.options.find((o) => !known.includes(o.name))?.name;
}
