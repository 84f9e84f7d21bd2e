// nginx's configuration grammar, read the way nginx reads it (ngx_conf_file.c): words separated by
// whitespace, `"…"` and `'…'` quotes, backslash escapes, `#` comments, `;` ends a directive, `{ … }` a block,
// and `include` (globs resolved against the conf prefix, cycles refused). Every directive keeps its file,
// line and byte offsets, so a plan can name it and a copy can be edited exactly there.
import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';

export class NginxParseError extends Error {}

export interface Token {
  kind: 'word' | ';' | '{' | '}';
  /** The word as nginx sees it (quotes removed, escapes applied). */
  text: string;
  line: number;
  /** Byte offsets into the file's text ([start, end)). */
  start: number;
  end: number;
}

export interface SourceFile {
  path: string;
  text: string;
}

export interface Directive {
  name: string;
  args: string[];
  file: SourceFile;
  line: number;
  /** Offset of the directive's first character, and just past its `;` or its block's `}`. */
  start: number;
  end: number;
  /** For a block directive: its children, the offset just past `{`, and the line of `}`. */
  block?: Directive[];
  blockOpen?: number;
  endLine?: number;
  /** The `include` directive this one was read through (innermost), if any. */
  includedBy?: Directive;
}

const SPACE = new Set([' ', '\t', '\r', '\n']);

function unescape(raw: string): string {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch === '\\' && i + 1 < raw.length) {
      const n = raw[i + 1]!;
      i++;
      if (n === '"' || n === "'" || n === '\\') out += n;
      else if (n === 't') out += '\t';
      else if (n === 'r') out += '\r';
      else if (n === 'n') out += '\n';
      else out += '\\' + n;
    } else out += ch;
  }
  return out;
}

/** Splits a config file into nginx's tokens. Errors name the file and line, as `nginx -t` would. */
export function tokenize(text: string, file = 'nginx.conf'): Token[] {
  const out: Token[] = [];
  let i = 0;
  let line = 1;
  const fail = (msg: string, at = line): never => {
    throw new NginxParseError(`${file}:${at}: ${msg}`);
  };
  while (i < text.length) {
    const ch = text[i]!;
    if (SPACE.has(ch)) {
      if (ch === '\n') line++;
      i++;
      continue;
    }
    if (ch === '#') {
      while (i < text.length && text[i] !== '\n') i++;
      continue;
    }
    if (ch === ';' || ch === '{' || ch === '}') {
      out.push({ kind: ch, text: ch, line, start: i, end: i + 1 });
      i++;
      continue;
    }
    const start = i;
    const startLine = line;
    if (ch === '"' || ch === "'") {
      i++;
      let raw = '';
      for (;;) {
        if (i >= text.length) fail(`unexpected end of file in a ${ch === '"' ? 'double' : 'single'}-quoted string`, startLine);
        const c = text[i]!;
        if (c === '\\' && i + 1 < text.length) {
          raw += c + text[i + 1];
          if (text[i + 1] === '\n') line++;
          i += 2;
          continue;
        }
        if (c === ch) break;
        if (c === '\n') line++;
        raw += c;
        i++;
      }
      i++; // the closing quote
      // nginx wants a separator right after a closing quote.
      const next = text[i];
      if (next !== undefined && !SPACE.has(next) && next !== ';' && next !== '{' && next !== ')') fail(`unexpected "${next}" after a quoted string`);
      out.push({ kind: 'word', text: unescape(raw), line: startLine, start, end: i });
      continue;
    }
    let raw = '';
    while (i < text.length) {
      const c = text[i]!;
      if (c === '\\' && i + 1 < text.length) {
        raw += c + text[i + 1];
        if (text[i + 1] === '\n') line++;
        i += 2;
        continue;
      }
      // `${name}`: the brace belongs to the variable, not to a block.
      if (c === '{' && raw.endsWith('$') && !raw.endsWith('\\$')) {
        raw += c;
        i++;
        continue;
      }
      if (SPACE.has(c) || c === ';' || c === '{') break;
      raw += c;
      i++;
    }
    out.push({ kind: 'word', text: unescape(raw), line: startLine, start, end: i });
  }
  return out;
}

export interface ParseOptions {
  /** nginx's conf prefix: relative `include` paths resolve against it (the main file's directory). */
  prefix: string;
  /** Read a file (tests may substitute); default fs. */
  read?: (path: string) => string;
}

/** Parses one file's tokens into directives (no includes followed). */
export function parseTokens(tokens: Token[], file: SourceFile): Directive[] {
  let pos = 0;
  const fail = (msg: string, line: number): never => {
    throw new NginxParseError(`${file.path}:${line}: ${msg}`);
  };
  const list = (depth: number, openLine: number): { items: Directive[]; close?: Token } => {
    const items: Directive[] = [];
    for (;;) {
      const t = tokens[pos];
      if (!t) {
        if (depth > 0) fail('unexpected end of file, expecting "}"', openLine);
        return { items };
      }
      if (t.kind === '}') {
        if (depth === 0) fail('unexpected "}"', t.line);
        pos++;
        return { items, close: t };
      }
      if (t.kind !== 'word') fail(`unexpected "${t.kind}"`, t.line);
      const words: Token[] = [];
      while (tokens[pos]?.kind === 'word') words.push(tokens[pos++]!);
      const end = tokens[pos];
      if (!end) fail(`unexpected end of file, expecting ";" or "}" after "${words[0]!.text}"`, words[words.length - 1]!.line);
      if (end!.kind === '}') fail('unexpected "}"', end!.line);
      const d: Directive = { name: words[0]!.text, args: words.slice(1).map((w) => w.text), file, line: words[0]!.line, start: words[0]!.start, end: end!.end };
      pos++;
      if (end!.kind === '{') {
        if (depth >= 64) fail('blocks nested too deeply', end!.line);
        const inner = list(depth + 1, end!.line);
        d.block = inner.items;
        d.blockOpen = end!.end;
        d.end = inner.close!.end;
        d.endLine = inner.close!.line;
      }
      items.push(d);
    }
  };
  return list(0, 1).items;
}

const GLOB = /[*?[]/;

function globSegment(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 2);
      if (close < 0) re += '\\[';
      else {
        let body = pattern.slice(i + 1, close);
        if (body.startsWith('!')) body = '^' + body.slice(1);
        re += `[${body.replace(/\\/g, '\\\\')}]`;
        i = close;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(re + '$');
}

/** glob(3) as nginx calls it: sorted, `*` does not match a leading dot, no match is not an error. */
export function expandGlob(pattern: string): string[] {
  const abs = resolve(pattern);
  const parts = abs.split('/').filter((p, i) => i === 0 || p !== '');
  let paths = ['/'];
  for (const part of parts.slice(1)) {
    const next: string[] = [];
    for (const base of paths) {
      if (!GLOB.test(part)) {
        next.push(join(base, part));
        continue;
      }
      let names: string[];
      try {
        names = readdirSync(base);
      } catch {
        continue;
      }
      const re = globSegment(part);
      for (const n of names.sort()) if (re.test(n) && !(n.startsWith('.') && !part.startsWith('.'))) next.push(join(base, n));
    }
    paths = next;
  }
  return paths.filter((p) => {
    try {
      return statSync(p).isFile();
    } catch {
      return false;
    }
  });
}

/**
 * Reads `path` and every file it includes. An `include` directive is kept in the tree (its `block` holds what
 * the file(s) it names contain, each directive marked `includedBy`), so callers see both where a directive
 * is written and where it applies.
 */
export function loadConfig(path: string, opts: ParseOptions): Directive[] {
  const read = opts.read ?? ((p: string) => readFileSync(p, 'utf8'));
  const open = (p: string, chain: string[], by?: Directive): Directive[] => {
    let real: string;
    try {
      real = realpathSync(p);
    } catch {
      throw new NginxParseError(`${by ? `${by.file.path}:${by.line}: ` : ''}cannot open ${p}: no such file`);
    }
    if (chain.includes(real)) throw new NginxParseError(`${by ? `${by.file.path}:${by.line}: ` : ''}include cycle: ${[...chain, real].join(' -> ')}`);
    if (chain.length > 32) throw new NginxParseError(`${by ? `${by.file.path}:${by.line}: ` : ''}includes nested too deeply`);
    let text: string;
    try {
      text = read(p);
    } catch (e) {
      throw new NginxParseError(`${by ? `${by.file.path}:${by.line}: ` : ''}cannot read ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const file: SourceFile = { path: p, text };
    const tree = parseTokens(tokenize(text, p), file);
    const walk = (items: Directive[], includedBy: Directive | undefined): void => {
      for (const d of items) {
        if (includedBy && !d.includedBy) d.includedBy = includedBy;
        if (d.name === 'include' && !d.block) {
          if (d.args.length !== 1) throw new NginxParseError(`${d.file.path}:${d.line}: invalid number of arguments in "include" directive`);
          const target = isAbsolute(d.args[0]!) ? d.args[0]! : join(opts.prefix, d.args[0]!);
          const files = GLOB.test(target) ? expandGlob(target) : [target];
          d.block = files.flatMap((f) => {
            const inner = open(f, [...chain, real], d);
            for (const x of inner) x.includedBy ??= d;
            return inner;
          });
        } else if (d.block) walk(d.block, includedBy);
      }
    };
    walk(tree, by);
    return tree;
  };
  return open(path, []);
}

/** The directives that apply at this level: `include`s replaced by what they include. */
export function flatten(items: Directive[] | undefined): Directive[] {
  const out: Directive[] = [];
  for (const d of items ?? []) {
    if (d.name === 'include' && d.block) out.push(...flatten(d.block));
    else out.push(d);
  }
  return out;
}

/** `nginx.conf` inside a directory, or the file itself; the conf prefix is that file's directory. */
export function locateMainFile(pathArg: string): { file: string; prefix: string } {
  let st;
  try {
    st = statSync(pathArg);
  } catch {
    throw new NginxParseError(`cannot open ${pathArg}: no such file or directory`);
  }
  if (st.isDirectory()) {
    const f = join(pathArg, 'nginx.conf');
    try {
      statSync(f);
    } catch {
      throw new NginxParseError(`${pathArg} is a directory without nginx.conf: give the main config file`);
    }
    return { file: f, prefix: resolve(pathArg) };
  }
  return { file: pathArg, prefix: resolve(dirname(pathArg)) };
}

