// The layering rule (docs/ARCHITECTURE, "the decision core imports no backend, store or HTTP code"), checked
// from the source itself: every import, export-from, dynamic import(), import type and require in src/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SRC = join(ROOT, 'src');

interface Edge {
  file: string;
  line: number;
  /** The module specifier; undefined when it is not a literal (a computed dynamic import). */
  spec: string | undefined;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(c|m)?tsx?$/.test(name) || /\.(c|m)?js$/.test(name)) out.push(p);
  }
  return out;
}

function literal(node: ts.Node | undefined): string | undefined {
  if (node && (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node))) return node.text;
  return undefined;
}

/** Every module reference in a file, with its line. */
export function importsOf(file: string, text: string): Edge[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const edges: Edge[] = [];
  const add = (node: ts.Node, spec: string | undefined) => edges.push({ file, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1, spec });
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
      if (node.moduleSpecifier) add(node, literal(node.moduleSpecifier));
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node, literal(node.moduleReference.expression));
    } else if (ts.isImportTypeNode(node)) {
      const arg = node.argument;
      add(node, ts.isLiteralTypeNode(arg) ? literal(arg.literal) : undefined);
    } else if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const isImport = callee.kind === ts.SyntaxKind.ImportKeyword;
      const isRequire = ts.isIdentifier(callee) && callee.text === 'require';
      // createRequire(import.meta.url)(…) and friends: any call whose callee is a require function.
      const isRequireLike = ts.isIdentifier(callee) && /^require$|Require$/.test(callee.text) && callee.text !== 'createRequire';
      if (isImport || isRequire || isRequireLike) add(node, literal(node.arguments[0]));
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return edges;
}

/** The folder under src/ a specifier lands in ("policy", "rails", …), "node:" for builtins, "package" otherwise. */
function target(file: string, spec: string): string {
  if (spec.startsWith('node:')) return 'node:';
  if (!spec.startsWith('.') && !spec.startsWith('/')) return 'package';
  const abs = resolve(dirname(file), spec);
  const rel = relative(SRC, abs);
  if (rel.startsWith('..')) return 'outside-src';
  return rel.split(sep)[0]!;
}

const layer = (file: string) => relative(SRC, file).split(sep)[0]!;

/** What a file in `from` may not import; undefined when allowed. */
function violation(from: string, to: string, spec: string | undefined): string | undefined {
  if (spec === undefined) return from === 'policy' || from === 'protocol' ? 'a computed module name (cannot be checked)' : undefined;
  if (from === 'policy' && ['rails', 'store', 'server', 'cli', 'config', 'outside-src'].includes(to)) return `policy imports no adapter (${to}/)`;
  // Packages the core may use: pure schema/logic libraries only, never a client for something outside.
  if (from === 'policy' && to === 'package' && !['zod'].includes(spec)) return `policy imports no package but zod (${spec})`;
  if (from === 'protocol' && to !== 'protocol' && to !== 'node:') return `protocol imports only itself and node: builtins (${to})`;
  // util/ is shared by every layer, the core included: it depends on nothing else of ours.
  if (from === 'util' && !['util', 'node:', 'package'].includes(to)) return `util imports nothing of ours (${to}/)`;
  return undefined;
}

export function violations(files: string[], read: (f: string) => string = (f) => readFileSync(f, 'utf8')): string[] {
  const out: string[] = [];
  for (const f of files) {
    for (const e of importsOf(f, read(f))) {
      const from = layer(f);
      const to = e.spec === undefined ? '?' : target(f, e.spec);
      const why = violation(from, to, e.spec);
      if (why) out.push(`${relative(ROOT, f)}:${e.line}: ${e.spec ?? '(computed)'}: ${why}`);
    }
  }
  return out;
}

test('src/policy imports no adapter, src/protocol nothing outside itself but node: builtins', () => {
  const files = sourceFiles(SRC);
  assert.ok(files.length > 50, 'found the sources');
  assert.ok(files.some((f) => layer(f) === 'policy') && files.some((f) => layer(f) === 'protocol'));
  assert.deepEqual(violations(files), []);
});

test('the checker sees every form of import (so an empty list above means something)', () => {
  const policy = join(SRC, 'policy', 'x.ts');
  const protocol = join(SRC, 'protocol', 'x.ts');
  const text = [
    "import { a } from '../store/store.js';",
    "import type { B } from '../rails/lightning/backend.js';",
    'import {\n  c,\n  d,\n} from "../server/app.js";',
    "export { e } from '../cli/main.js';",
    "export * from '../config/config.js';",
    "const f = await import('../store/redis-store.js');",
    "type G = typeof import('../rails/cashu/index.js');",
    "const h = require('../store/sqlite-store.js');",
    'const i = await import(`../server/gate.js`);',
    'const j = await import(name);',
    "import 'ioredis';",
    "import { k } from './decide.js';",
    "import { l } from '../protocol/macaroon.js';",
    "import { m } from '../util/timeout.js';",
    "import { z } from 'zod';",
    "import { n } from 'node:crypto';",
  ].join('\n');
  const found = violations([policy], () => text);
  assert.equal(found.length, 11, found.join('\n'));
  const p = violations([protocol], () => "import { o } from '../util/private-file.js';\nimport { q } from './macaroon.js';\nimport { r } from 'node:fs';\nimport { s } from '@noble/hashes';");
  assert.equal(p.length, 2, p.join('\n'));
});
