// The command around importNgxL402: read the files, write the outputs (never over an original, never over an
// earlier output without --force), print a report without secrets, and say by the exit code whether the
// import is complete (0), incomplete (1, each problem listed), or impossible (2).
import { chmodSync, existsSync, mkdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { nginxSnippets } from '../nginx-conf.js';
import { parseEnvFile, type EnvEntry } from './env-file.js';
import { applyEdits, importNgxL402, type Edit, type ImportResult } from './import.js';
import { loadConfig, locateMainFile, NginxParseError, type Directive, type SourceFile } from './nginx-parse.js';

export class ImportError extends Error {}

export interface ImportOptions {
  env?: string;
  out?: string;
  force?: boolean;
  listen?: string;
  /** nginx's conf directory (relative includes resolve against it); default: the main file's directory. */
  prefix?: string;
  /** metrics.listen when ngx_l402 served metrics; default 127.0.0.1:9402. */
  metricsListen?: string;
}

export interface ImportRun {
  result: ImportResult;
  written: string[];
  report: string;
  exitCode: 0 | 1;
}

/** Every file the tree was read from (the main file first). */
function filesOf(tree: Directive[]): SourceFile[] {
  const seen = new Map<string, SourceFile>();
  const walk = (items: Directive[]) => {
    for (const d of items) {
      if (!seen.has(d.file.path)) seen.set(d.file.path, d.file);
      if (d.block) walk(d.block);
    }
  };
  walk(tree);
  return [...seen.values()];
}

function envFromProcess(env: NodeJS.ProcessEnv): Map<string, EnvEntry> {
  const out = new Map<string, EnvEntry>();
  const names = /^(ROOT_KEY|LN_CLIENT_TYPE|LNURL_ADDRESS|LND_ADDRESS|MACAROON_FILE_PATH|CERT_FILE_PATH|SOCKS5_PROXY|LNC_.*|CLN_.*|BOLT12_OFFER|NWC_URI|ECLAIR_.*|REDIS_.*|L402_.*|CASHU_.*|RUST_LOG)$/;
  for (const [k, v] of Object.entries(env)) if (v !== undefined && names.test(k) && k !== 'L402_CONFIG') out.set(k, { value: v, line: 0 });
  return out;
}

export function runImport(target: string, opts: ImportOptions, processEnv: NodeJS.ProcessEnv = process.env): ImportRun {
  let main: { file: string; prefix: string };
  let tree: Directive[];
  let env: Map<string, EnvEntry>;
  let envSource: string;
  try {
    main = locateMainFile(target);
    if (opts.prefix) main = { file: main.file, prefix: resolve(opts.prefix) };
    tree = loadConfig(main.file, { prefix: main.prefix });
    if (opts.env) {
      let text: string;
      try {
        text = readFileSync(opts.env, 'utf8');
      } catch (e) {
        throw new NginxParseError(`cannot read ${opts.env}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      env = parseEnvFile(text, opts.env);
      envSource = opts.env;
    } else {
      env = envFromProcess(processEnv);
      envSource = '(environment)';
    }
  } catch (e) {
    if (e instanceof NginxParseError) throw new ImportError(e.message);
    throw e;
  }
  const result = importNgxL402({ tree, env, envSource, listen: opts.listen, metricsListen: opts.metricsListen });
  const out = resolve(opts.out ?? 'l402-import');
  const files = filesOf(tree);
  const originals = new Set(files.map((f) => realpathSync(f.path)));
  if (opts.env) originals.add(realpathSync(opts.env));

  // What to write: the yaml, the plan, a copy of every nginx file read (edits applied), the snippets.
  // Each with a mode: the copies keep their original's (a config may hold credentials), the yaml is private.
  const writes: Array<[string, string, number?]> = [[join(out, 'l402.yaml'), result.yaml, 0o600]];
  const copyRoot = join(out, 'nginx');
  const copyPath = (f: SourceFile): string | undefined => {
    const rel = relative(main.prefix, resolve(f.path));
    return rel.startsWith('..') || isAbsolute(rel) ? undefined : join(copyRoot, rel);
  };
  const outside: SourceFile[] = [];
  for (const f of files) {
    const p = copyPath(f);
    if (p) writes.push([p, applyEdits(f, result.edits), statSync(f.path).mode & 0o777]);
    else if (result.edits.some((e) => e.file.path === f.path)) outside.push(f);
  }
  if (result.config) {
    for (const [name, text] of Object.entries(nginxSnippets(result.config))) writes.push([join(copyRoot, 'l402', name), text]);
  }
  writes.push([join(out, 'nginx-changes.txt'), planText(result, main, out, outside)]);

  for (const [p] of writes) {
    if (originals.has(p) || (existsSync(p) && originals.has(realpathSync(p)))) throw new ImportError(`${p}: is one of the files read; choose another --out`);
  }
  const existing = writes.map(([p]) => p).filter((p) => existsSync(p));
  if (existing.length > 0 && !opts.force) {
    throw new ImportError(`refusing to overwrite ${existing.length === 1 ? existing[0] : `${existing.length} files in ${out} (${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', …' : ''})`}: give --force, or another --out`);
  }
  for (const [p, text, mode] of writes) {
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, text, { mode: mode ?? 0o644 });
    if (mode !== undefined) chmodSync(p, mode);
  }
  const report = reportText(result, out, env);
  return { result, written: writes.map(([p]) => p), report, exitCode: result.complete ? 0 : 1 };
}

function planText(r: ImportResult, main: { file: string; prefix: string }, out: string, outside: SourceFile[]): string {
  const lines: string[] = [];
  lines.push(`nginx changes to move from ngx_l402 to l402d (l402d import-ngx-l402 ${main.file})`);
  lines.push('');
  lines.push(`A copy of the nginx files read, with every change below applied, is in ${join(out, 'nginx')}/`);
  lines.push(`(compare: diff -ru ${main.prefix} ${join(out, 'nginx')}). The originals were not touched.`);
  lines.push('');
  lines.push(`1. Snippets: copy ${join(out, 'nginx', 'l402')}/ to ${join(main.prefix, 'l402')}/`);
  lines.push(`   (or: l402d nginx-conf --config ${join(out, 'l402.yaml')} --out ${join(main.prefix, 'l402')}).`);
  lines.push('');
  lines.push('2. Edits, by file and line:');
  const byFile = new Map<string, Edit[]>();
  for (const e of r.edits) byFile.set(e.file.path, [...(byFile.get(e.file.path) ?? []), e]);
  for (const [file, edits] of byFile) {
    lines.push(`   ${file}:`);
    for (const e of [...edits].sort((a, b) => a.line - b.line || a.start - b.start)) lines.push(`     line ${e.line}: ${e.what}`);
  }
  if (!r.httpFound) lines.push('   the http {} block that includes these files (not read): add `include l402/upstream.conf;` once.');
  for (const f of outside) lines.push(`   (${f.path} is outside ${main.prefix}: not copied; make its edits by hand)`);
  lines.push('');
  lines.push(`3. Start l402d: l402d start --config ${join(out, 'l402.yaml')}`);
  if (r.envRefs.length) lines.push(`   with these variables set as ngx_l402 had them: ${r.envRefs.join(', ')}`);
  lines.push('   (l402d doctor --config … checks the backend and the store first). Its data_dir (SQLite store, Cashu');
  lines.push('   wallet) is ./data beside the yaml: set data_dir before you move the file elsewhere.');
  lines.push('');
  lines.push("4. nginx -t, then nginx -s reload (the module's load_module line is gone; `env` lines for its variables may go too).");
  lines.push('');
  if (r.findings.length) {
    lines.push(r.complete ? 'Notes:' : 'Problems (the import is INCOMPLETE until each is handled) and notes:');
    for (const f of r.findings) lines.push(`  ${f.level === 'problem' ? 'PROBLEM' : 'note   '} ${f.where ? `${f.where}: ` : ''}${f.text.replace(/\n/g, '\n          ')}`);
  }
  return lines.join('\n') + '\n';
}

function reportText(r: ImportResult, out: string, env: Map<string, EnvEntry>): string {
  const lines: string[] = [];
  lines.push(`routes: ${r.routes.length}${r.routes.length ? ` (${r.routes.map((x) => x.match).join(', ')})` : ''}`);
  lines.push(`wrote ${join(out, 'l402.yaml')}, ${join(out, 'nginx-changes.txt')} and ${join(out, 'nginx')}/`);
  for (const f of r.findings) lines.push(`${f.level === 'problem' ? 'PROBLEM' : 'note'}: ${f.where ? `${f.where}: ` : ''}${f.text}`);
  lines.push(r.complete ? 'import complete: follow nginx-changes.txt' : `import INCOMPLETE: ${r.findings.filter((f) => f.level === 'problem').length} problem(s) above`);
  let text = lines.join('\n') + '\n';
  // Belt and braces: no value of the environment that could be a secret reaches the terminal.
  for (const [name, e] of env) if (e.value.length >= 6 && /KEY|PASSWORD|SECRET|MNEMONIC|PHRASE|URI|URL|PROXY/.test(name)) text = text.split(e.value).join(`<${name}>`);
  return text;
}
