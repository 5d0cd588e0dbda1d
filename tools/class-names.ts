/**
 * Gives the bundle's classes their own names back.
 *
 * esbuild turns every top-level `class Pool { ... }` that names itself in
 * its body (`new Pool(...)`, `Pool.format(...)`) into
 * `var Pool = class _Pool { ... }`, and points those references at the
 * inner name: a class declaration's inner binding cannot be reassigned, a
 * `var` can. The class is then called `_Pool` everywhere a user looks —
 * `Pool.name`, `console.log(pool)` (`_Pool {`), stack traces
 * (`at _Pool.alloc`) — and esbuild's keepNames only patches `.name`.
 *
 * This pass renames the inner binding to the outer name: `class Pool`,
 * `new Pool (`. Inside the class body the inner binding then shadows the
 * outer `var`, which holds the same class and is never reassigned (esbuild
 * declares it once, for this class). It is a rename of identifiers found
 * by the TypeScript parser, never of text in strings or property names, and
 * it pads each name with a space so that the bundle keeps every byte's
 * line and column: its source map stays exact.
 *
 * A rename is refused (the build fails, saying which) when the outer name
 * is declared anywhere but the one `var` — a parameter or local of that name
 * inside the class would capture the renamed references — or when the inner
 * name appears where it is not a plain reference to the class.
 */
import ts from 'typescript';

/** The inner names esbuild gave classes (`_Pool`), each with its class's outer name (`Pool`). */
function renamedClasses(file: ts.SourceFile): Map<string, string> {
  const renamed = new Map<string, string>();
  const visit = (node: ts.Node): void => {
    if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer !== undefined && ts.isClassExpression(node.initializer)) {
      const outer = node.name.text;
      const inner = node.initializer.name?.text;
      if (inner === `_${outer}`) renamed.set(inner, outer);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return renamed;
}

/** The name a node declares, when it declares one (variables, parameters, functions, classes, catch bindings, destructured names). */
function declaredName(node: ts.Node): string | undefined {
  if (
    (ts.isVariableDeclaration(node) || ts.isParameter(node) || ts.isBindingElement(node) || ts.isFunctionDeclaration(node) || ts.isFunctionExpression(node) || ts.isClassDeclaration(node) || ts.isClassExpression(node)) &&
    node.name !== undefined &&
    ts.isIdentifier(node.name)
  ) {
    return node.name.text;
  }
  return undefined;
}

/** True for an identifier that names a property (of an access, an object literal, a class member, a destructuring pattern). */
function isPropertyName(node: ts.Identifier): boolean {
  const parent = node.parent;
  // `{ _Pool: p } = o` reads the property _Pool into p: the key is a property name, not the binding.
  if (ts.isBindingElement(parent)) return parent.propertyName === node;
  const named =
    ts.isPropertyAccessExpression(parent) || ts.isPropertyAssignment(parent) || ts.isMethodDeclaration(parent) || ts.isPropertyDeclaration(parent) || ts.isGetAccessorDeclaration(parent) || ts.isSetAccessorDeclaration(parent);
  return named && parent.name === node;
}

/**
 * `source` with each `_Name` class binding renamed to `Name ` (same length).
 * Returns the new text and the names restored.
 */
export function restoreClassNames(source: string, fileName = 'bundle.cjs'): { text: string; restored: string[] } {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.ES2022, true, ts.ScriptKind.JS);
  const renamed = renamedClasses(file);
  if (renamed.size === 0) return { text: source, restored: [] };
  const outerNames = new Set(renamed.values());
  const declarations = new Map<string, number>();
  const classNames = new Map<string, number>();
  const edits: { start: number; inner: string }[] = [];
  const problems: string[] = [];
  const visit = (node: ts.Node): void => {
    const declared = declaredName(node);
    if (declared !== undefined && outerNames.has(declared)) declarations.set(declared, (declarations.get(declared) ?? 0) + 1);
    if (ts.isIdentifier(node) && renamed.has(node.text)) {
      const parent = node.parent;
      if (ts.isClassExpression(parent) && parent.name === node) {
        classNames.set(node.text, (classNames.get(node.text) ?? 0) + 1);
        edits.push({ start: node.getStart(file), inner: node.text });
      } else if (isPropertyName(node)) {
        // `x._Pool`, `{ _Pool: 1 }`: a property, not the binding; it keeps its name.
      } else if (ts.isShorthandPropertyAssignment(parent) || (declaredName(parent) !== undefined && (parent as ts.NamedDeclaration).name === node)) {
        // `{ _Pool }` would change its key; a second binding of the name would capture references.
        problems.push(`${node.text} at offset ${node.getStart(file)} is not a reference to its class`);
      } else {
        edits.push({ start: node.getStart(file), inner: node.text });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  // Each outer name declared once (its var), each inner name by one class: the rename then has one meaning.
  for (const outer of outerNames) {
    if (declarations.get(outer) !== 1) problems.push(`${outer} is declared ${declarations.get(outer) ?? 0} times (only its var may declare it)`);
  }
  for (const inner of renamed.keys()) {
    if (classNames.get(inner) !== 1) problems.push(`${classNames.get(inner) ?? 0} classes are named ${inner}`);
  }
  if (problems.length > 0) throw new Error(`cannot restore the bundle's class names: ${problems.join('; ')}`);
  let text = '';
  let at = 0;
  for (const { start, inner } of edits.sort((a, b) => a.start - b.start)) {
    text += source.slice(at, start) + renamed.get(inner)! + ' ';
    at = start + inner.length;
  }
  text += source.slice(at);
  return { text, restored: [...outerNames].sort() };
}
