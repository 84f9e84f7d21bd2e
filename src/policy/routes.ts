// Route lookup with nginx location semantics, so the route l402d prices is the location nginx protected:
// "= /x" exact wins; otherwise the longest prefix, unless a regex ("~", "~*") matches first in config order;
// a "^~ /x" longest prefix skips the regexes.
import { pathBytes, pathFromBytes } from '../protocol/path-bytes.js';

export { pathBytes, pathFromBytes };
export type RouteMatch =
  | { kind: 'exact'; path: string }
  | { kind: 'prefix'; path: string; noRegex: boolean }
  /** `re` is the PCRE pattern translated by pcreToJs: test it against pcreSubject(path), not the path. */
  | { kind: 'regex'; re: RegExp };

export function parseRouteMatch(text: string): RouteMatch {
  const m = /^(=|\^~|~\*|~)?\s*(.+)$/.exec(text.trim());
  if (!m) throw new Error('empty match');
  const [, mod, rest] = m as unknown as [string, string | undefined, string];
  if (mod === '~' || mod === '~*') {
    // Refusals of PCRE-only syntax name the construct; JavaScript's own syntax errors keep this prefix.
    const source = pcreToJs(rest);
    try {
      return { kind: 'regex', re: new RegExp(source, mod === '~*' ? 'i' : '') };
    } catch (e) {
      throw new Error(`invalid regular expression: ${(e as Error).message}`);
    }
  }
  if (!rest.startsWith('/')) throw new Error('a path must start with "/" (or use "~ regex")');
  if (/[\s?#]/.test(rest)) throw new Error('a path cannot contain spaces, "?" or "#"');
  return mod === '=' ? { kind: 'exact', path: rest } : { kind: 'prefix', path: rest, noRegex: mod === '^~' };
}

/** Whether one route's match covers `path` on its own (nginx's test for one location), whatever other routes say. */
export function routeMatches(m: RouteMatch, path: string): boolean {
  if (m.kind === 'exact') return path === m.path;
  if (m.kind === 'prefix') return path.startsWith(m.path);
  return m.re.test(pcreSubject(path));
}

/**
 * A route table. Routes with `pinned: true` are left out of the lookup by path: they decide only a request
 * whose nginx location names them (`set $l402_route_pin <id>;` before `include l402/protect.conf`), so one
 * server's cheaper route for a path never prices or opens another server's location for the same path.
 */
export class RouteTable<R extends { match: string; id?: string; pinned?: boolean }> {
  private readonly exact = new Map<string, R>();
  private readonly prefixes: Array<{ path: string; noRegex: boolean; route: R }> = [];
  private readonly regexes: Array<{ re: RegExp; route: R }> = [];
  private readonly byId = new Map<string, { route: R; match: RouteMatch }>();

  constructor(routes: readonly R[]) {
    for (const route of routes) {
      const m = parseRouteMatch(route.match);
      if (route.id !== undefined && !this.byId.has(route.id)) this.byId.set(route.id, { route, match: m });
      if (route.pinned === true) continue;
      if (m.kind === 'exact') this.exact.set(m.path, route);
      else if (m.kind === 'prefix') this.prefixes.push({ path: m.path, noRegex: m.noRegex, route });
      else this.regexes.push({ re: m.re, route });
    }
    this.prefixes.sort((a, b) => b.path.length - a.path.length);
  }

  /**
   * `path` must already be normalised (see normalizePath). `pin`: the route id nginx's location named (never a
   * client's value): then only that route decides, and only a path its match covers (anything else, an unknown
   * id included, is no route at all: refused, never decided by path).
   */
  lookup(path: string, pin?: string): R | undefined {
    if (pin !== undefined && pin !== '') {
      const p = this.byId.get(pin);
      return p && routeMatches(p.match, path) ? p.route : undefined;
    }
    const exact = this.exact.get(path);
    if (exact) return exact;
    const prefix = this.prefixes.find((p) => path.startsWith(p.path));
    if (prefix?.noRegex) return prefix.route;
    if (this.regexes.length > 0) {
      const subject = pcreSubject(path);
      for (const r of this.regexes) if (r.re.test(subject)) return r.route;
    }
    return prefix?.route;
  }
}

/**
 * The path nginx matches locations against ($uri): query dropped, percent-decoded, slashes merged,
 * "." and ".." resolved. We receive $request_uri (raw) because $uri can carry decoded CR/LF into headers.
 * Bytes, as in nginx: the raw target's characters are its bytes (Node reads request lines and headers as
 * latin1), and bytes that are not UTF-8 stay distinct (see pathFromBytes). Returns undefined for a path
 * nginx itself would refuse.
 */
export function normalizePath(requestUri: string): string | undefined {
  if (!requestUri.startsWith('/')) return undefined;
  let raw = requestUri;
  const q = raw.search(/[?#]/);
  if (q >= 0) raw = raw.slice(0, q);
  if (/%(?![0-9A-Fa-f]{2})/.test(raw)) return undefined;
  // A caller holding Unicode text (not bytes from the wire) gets its UTF-8 bytes.
  const wire = /^[\x00-\xff]*$/.test(raw) ? raw : Buffer.from(raw, 'utf8').toString('latin1');
  const decoded = pathFromBytes(percentDecodeBytes(wire));
  if (/[\0\r\n]/.test(decoded)) return undefined;
  const out: string[] = [];
  const parts = decoded.split('/');
  for (const [i, seg] of parts.entries()) {
    if (seg === '' || seg === '.') {
      if (i === parts.length - 1) out.push('');
      continue;
    }
    if (seg === '..') {
      if (out.length === 0) return undefined;
      out.pop();
      if (i === parts.length - 1) out.push('');
      continue;
    }
    out.push(seg);
  }
  return '/' + out.join('/');
}

/**
 * Why a raw request path (nginx's $request_uri, query excluded) is ambiguous, or undefined when it is not.
 * nginx prices and matches a normalised, decoded path, but with `proxy_pass http://app;` (no URI part) it
 * forwards the raw target, which an upstream may decode and resolve differently ("/premium/%2e%2e/cheap" is
 * matched as /cheap but could be served as /premium/..). A path is unambiguous when percent-decoding it gives
 * exactly the path that is priced: no "." or ".." segment (also with ";params" cut, as servlet containers
 * read "..;x"), no encoded "/" or "\" (%2F, %5C), no literal "\", no empty segment ("//"), no control
 * character (raw or encoded, NUL included), no "#", and only well-formed "%hh" escapes.
 */
export function pathAmbiguity(rawPath: string): string | undefined {
  if (!rawPath.startsWith('/')) return 'the path must start with /';
  if (rawPath.includes('#')) return 'a "#" in the request target';
  if (/%(?![0-9A-Fa-f]{2})/.test(rawPath)) return 'a malformed percent escape';
  if (/%(?:2f|5c)/i.test(rawPath)) return 'an encoded "/" or "\\" (%2F, %5C)';
  return decodedPathAmbiguity(percentDecodeBytes(rawPath));
}

/** Why a decoded path (nginx's $uri, bytes) is ambiguous (see pathAmbiguity), or undefined. */
export function decodedPathAmbiguity(path: Buffer): string | undefined {
  if (path[0] !== 0x2f) return 'the path must start with /';
  for (const b of path) {
    if (b < 0x20 || b === 0x7f) return 'a control character in the path';
    if (b === 0x5c) return 'a "\\" in the path';
    // Servlet containers (Tomcat, Jetty, Spring on them) cut ";params" from each segment and merge the "//"
    // left, so "/timed;x/a" and "/;/premium" are /timed/a and /premium to them, another path than was priced.
    if (b === 0x3b) return 'a ";" in the path (servlet containers cut ";params" from its segments)';
  }
  const segs = path.toString('latin1').split('/').slice(1);
  for (const [i, seg] of segs.entries()) {
    if (seg === '' && i < segs.length - 1) return 'an empty path segment ("//")';
    const name = seg.split(';')[0];
    if (name === '.' || name === '..') return 'a "." or ".." path segment';
  }
  return undefined;
}

/** Percent-decodes to bytes ("%hh" only; anything else is kept as its own bytes, as nginx reads it). */
export function percentDecodeBytes(raw: string): Buffer {
  const src = Buffer.from(raw, 'latin1');
  const out = Buffer.alloc(src.length);
  let n = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === 0x25 && i + 2 < src.length && /^[0-9A-Fa-f]{2}$/.test(src.toString('latin1', i + 1, i + 3))) {
      out[n++] = parseInt(src.toString('latin1', i + 1, i + 3), 16);
      i += 2;
    } else out[n++] = c;
  }
  return out.subarray(0, n);
}

// ---------------------------------------------------------------------------------------------------------
// nginx's "~" / "~*" locations are PCRE patterns, compiled without UTF mode (they match the bytes of $uri),
// caseless for "~*". l402d runs them as JavaScript RegExps, so each pattern is translated to a JavaScript
// pattern with the same meaning, and every PCRE construct JavaScript would read differently (often silently:
// without the `u` flag, /\A/ is the letter "A") is refused with the reason. Matching is byte-wise as in
// PCRE: the path and the pattern's literals are UTF-8 bytes, bytes 0x80-0xFF standing as U+E080-U+E0FF,
// characters that have no case and are neither word characters nor whitespace, as those bytes are for
// PCRE's default (C locale) tables. The `u` flag is not used: it would refuse escapes nginx patterns
// commonly carry (`\-`, `\ `, `\"` are plain literals in PCRE) and it changes case folding.
// Normalised paths never contain CR, LF or NUL, so "$" and "." need no translation.
// ---------------------------------------------------------------------------------------------------------

/** The string a translated route regex is tested against: the path's UTF-8 bytes, high bytes as U+E0xx. */
export function pcreSubject(path: string): string {
  if (/^[\x00-\x7f]*$/.test(path)) return path;
  let out = '';
  for (const b of pathBytes(path)) out += String.fromCharCode(b < 0x80 ? b : 0xe000 + b);
  return out;
}

/** One byte as a JavaScript pattern atom (usable inside and outside a class). */
function byteAtom(b: number): string {
  if (b >= 0x80) return `\\u${(0xe000 + b).toString(16)}`;
  if (/[A-Za-z0-9]/.test(String.fromCharCode(b))) return String.fromCharCode(b);
  return `\\x${b.toString(16).padStart(2, '0')}`;
}

/** A literal character of the pattern: its UTF-8 bytes, as PCRE without UTF mode reads them. */
function literalAtoms(ch: string): string {
  return [...Buffer.from(ch, 'utf8')].map(byteAtom).join('');
}

const POSIX_CLASSES: Record<string, string> = {
  alpha: 'A-Za-z', digit: '0-9', alnum: 'A-Za-z0-9', upper: 'A-Z', lower: 'a-z', space: '\\t\\n\\v\\f\\r ',
  blank: '\\t ', xdigit: '0-9A-Fa-f', word: 'A-Za-z0-9_', punct: '!-\\/:-@\\[-`{-~', cntrl: '\\x00-\\x1f\\x7f',
  graph: '!-~', print: ' -~', ascii: '\\x00-\\x7f',
};

const SIMPLE_BYTE_ESCAPES = new Map([['a', 0x07], ['e', 0x1b], ['f', 0x0c], ['n', 0x0a], ['r', 0x0d], ['t', 0x09]]);

/** A reference to a group that did not take part matches "" in JavaScript but fails in PCRE. */
const BACKREF = 'back references (\\1, \\k<name>, (?P=name)) match differently in JavaScript';
const GROUP_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/;
/** PCRE's limit on a {n,m} count; larger is a compile error in nginx. */
const MAX_REPEAT = 65535;

/** Backslash escapes PCRE understands but JavaScript reads differently (or not at all). */
const PCRE_ONLY_ESCAPES: Record<string, string> = {
  A: '\\A (start of subject) is PCRE-only; use ^',
  Z: '\\Z (end of subject or before a final newline) is PCRE-only; use $',
  z: '\\z (end of subject) is PCRE-only; use $',
  G: '\\G (first matching position) is PCRE-only',
  K: '\\K (reset match start) is PCRE-only',
  Q: '\\Q…\\E quoting is PCRE-only; escape each character instead',
  E: '\\Q…\\E quoting is PCRE-only; escape each character instead',
  h: '\\h (horizontal whitespace) is PCRE-only; use [ \\t]',
  H: '\\H (not horizontal whitespace) is PCRE-only; use [^ \\t]',
  v: '\\v means vertical whitespace in PCRE but a vertical tab in JavaScript; use [\\n\\x0b\\f\\r]',
  V: '\\V (not vertical whitespace) is PCRE-only',
  R: '\\R (any newline) is PCRE-only',
  N: '\\N (not a newline) is PCRE-only; use .',
  X: '\\X (extended grapheme cluster) is PCRE-only',
  C: '\\C (one code unit) is PCRE-only',
  p: '\\p{…} Unicode properties are not supported (nginx matches bytes, not Unicode characters)',
  P: '\\P{…} Unicode properties are not supported (nginx matches bytes, not Unicode characters)',
  g: '\\g back references and subroutine calls are PCRE-only',
  u: '\\u is not a PCRE escape; use \\xhh for each byte',
  U: '\\U is not a PCRE escape',
  l: '\\l is not a PCRE escape',
  L: '\\L is not a PCRE escape',
};

function groupRefusal(rest: string): string {
  if (rest.startsWith('>')) return 'atomic groups (?>…) are PCRE-only';
  if (rest.startsWith('|')) return 'branch reset groups (?|…) are PCRE-only';
  if (rest.startsWith('#')) return 'comments (?#…) are PCRE-only';
  if (rest.startsWith('(')) return 'conditional groups (?(…)…) are PCRE-only';
  if (/^(R|[+-]?\d|&|P>)/.test(rest)) return 'recursion and subroutine calls are PCRE-only';
  if (rest.startsWith('C')) return 'callouts (?C…) are PCRE-only';
  if (/^[-^a-zA-Z]/.test(rest)) return 'inline options such as (?i) are PCRE-only; use "~*" for a case-insensitive match';
  return `unsupported group "(?${rest.slice(0, 3)}"`;
}

/**
 * Translates a PCRE pattern (as nginx compiles a location regex) to a JavaScript pattern source with the same
 * meaning on pcreSubject(path), or throws naming the PCRE construct that has no faithful JavaScript form.
 */
export function pcreToJs(src: string): string {
  let out = '';
  let i = 0;
  const names = new Set<string>();
  const refuse = (why: string): never => {
    throw new Error(`unsupported in a route regex: ${why}`);
  };

  /** A quantifier was just emitted: a lazy "?" may follow; a possessive "+" is refused. */
  const afterQuantifier = (): void => {
    if (src[i] === '?') {
      out += '?';
      i++;
    } else if (src[i] === '+') refuse('possessive quantifiers (*+, ++, ?+, {n}+) are PCRE-only');
  };

  /** Escapes that stand for one byte, in and out of classes; returns undefined when `c` is not one. */
  const byteEscape = (c: string, inClass: boolean): number | undefined => {
    const simple = SIMPLE_BYTE_ESCAPES.get(c);
    if (simple !== undefined) {
      i += 2;
      return simple;
    }
    if (inClass && c === 'b') {
      i += 2;
      return 0x08;
    }
    if (c === 'x') {
      const braced = /^\{([0-9A-Fa-f]+)\}/.exec(src.slice(i + 2));
      const plain = /^[0-9A-Fa-f]{0,2}/.exec(src.slice(i + 2))![0];
      const v = braced ? parseInt(braced[1]!, 16) : plain === '' ? 0 : parseInt(plain, 16);
      i += 2 + (braced ? braced[0].length : plain.length);
      if (v > 0xff) refuse('a character above \\xff (nginx matches bytes; write each UTF-8 byte as \\xhh)');
      return v;
    }
    if (c === 'o') {
      const m = /^\{([0-7]+)\}/.exec(src.slice(i + 2));
      if (!m) refuse('\\o needs {octal digits}');
      i += 2 + m![0].length;
      const v = parseInt(m![1]!, 8);
      if (v > 0xff) refuse('a character above \\o{377} (nginx matches bytes)');
      return v;
    }
    if (c === 'c') {
      const x = src[i + 2];
      if (x === undefined || x < ' ' || x > '~') refuse('\\c must be followed by a printable ASCII character');
      i += 3;
      return x!.toUpperCase().charCodeAt(0) ^ 0x40;
    }
    if (c === '0' || (inClass && /[0-7]/.test(c))) {
      // Octal: \0, \0o, \0oo outside a class; up to three octal digits inside one.
      const m = /^[0-7]{1,3}/.exec(src.slice(i + 1))![0];
      i += 1 + m.length;
      const v = parseInt(m, 8);
      if (v > 0xff) refuse('an octal escape above \\377');
      return v;
    }
    return undefined;
  };

  const parseClass = (): void => {
    i++; // "["
    out += '[';
    if (src[i] === '^') {
      out += '^';
      i++;
    }
    // PCRE: a "]" right after "[" or "[^" is a literal; in JavaScript "[]" is an empty class.
    if (src[i] === ']') {
      out += '\\]';
      i++;
    }
    for (;;) {
      if (i >= src.length) refuse('missing terminating ] for a character class');
      const c = src[i]!;
      if (c === ']') {
        out += ']';
        i++;
        return;
      }
      if (c === '[' && /[:.=]/.test(src[i + 1] ?? '')) {
        const term = src[i + 1]!;
        // PCRE's check_posix_syntax: "[:" opens a POSIX class when ":]" comes before any "]".
        let j = i + 2;
        let closed = -1;
        for (; j < src.length; j++) {
          if (src[j] === '\\' && (src[j + 1] === ']' || src[j + 1] === '\\')) j++;
          else if ((src[j] === '[' && src[j + 1] === term) || src[j] === ']') break;
          else if (src[j] === term && src[j + 1] === ']') {
            closed = j;
            break;
          }
        }
        if (closed >= 0) {
          if (term !== ':') refuse(`POSIX collating elements [${term}…${term}] are not supported`);
          const name = src.slice(i + 2, closed);
          if (name.startsWith('^')) refuse(`negated POSIX class [:${name}:] is not supported; use a negated class`);
          const ranges = Object.hasOwn(POSIX_CLASSES, name) ? POSIX_CLASSES[name] : undefined;
          if (ranges === undefined) refuse(`unknown POSIX class [:${name}:]`);
          out += ranges;
          i = closed + 2;
          continue;
        }
      }
      if (c === '\\') {
        const d = src[i + 1];
        if (d === undefined) refuse('the pattern ends with a backslash');
        const b = byteEscape(d!, true);
        if (b !== undefined) {
          out += byteAtom(b);
          continue;
        }
        if (/[dDwWsS]/.test(d!)) {
          out += '\\' + d;
          i += 2;
          continue;
        }
        if (/[A-Za-z0-9]/.test(d!)) refuse(PCRE_ONLY_ESCAPES[d!] ?? `unknown escape \\${d} in a character class`);
        // A backslash before anything else is that character.
        const ch = String.fromCodePoint(src.codePointAt(i + 1)!);
        out += literalAtoms(ch);
        i += 1 + ch.length;
        continue;
      }
      if (c === '-') {
        out += '-';
        i++;
        continue;
      }
      const ch = String.fromCodePoint(src.codePointAt(i)!);
      out += literalAtoms(ch);
      i += ch.length;
    }
  };

  while (i < src.length) {
    const c = src[i]!;
    if (c === '\\') {
      const d = src[i + 1];
      if (d === undefined) refuse('the pattern ends with a backslash');
      const b = byteEscape(d!, false);
      if (b !== undefined) {
        out += byteAtom(b);
        continue;
      }
      if (/[dDwWsSbB]/.test(d!)) {
        out += '\\' + d;
        i += 2;
        continue;
      }
      if (/^[1-9]\d/.test(src.slice(i + 1))) {
        refuse(`\\${/^\d+/.exec(src.slice(i + 1))![0]} is a back reference or an octal escape depending on the group count; use \\xhh`);
      }
      if (/[1-9k]/.test(d!)) refuse(BACKREF);
      if (/[A-Za-z0-9]/.test(d!)) refuse(PCRE_ONLY_ESCAPES[d!] ?? `unknown escape \\${d}`);
      const ch = String.fromCodePoint(src.codePointAt(i + 1)!);
      out += literalAtoms(ch);
      i += 1 + ch.length;
      continue;
    }
    if (c === '[') {
      parseClass();
      continue;
    }
    if (c === '(') {
      if (src[i + 1] === '*') refuse('(*VERB) and (*OPTION) items are PCRE-only');
      if (src[i + 1] !== '?') {
        out += '(';
        i++;
        continue;
      }
      const rest = src.slice(i + 2);
      const simple = /^(?::|=|!|<=|<!)/.exec(rest);
      if (simple) {
        out += '(?' + simple[0];
        i += 2 + simple[0].length;
        continue;
      }
      const named = /^(?:<([^>=!]*)>|P<([^>]*)>|'([^']*)')/.exec(rest);
      if (named) {
        const name = named[1] ?? named[2] ?? named[3]!;
        if (!GROUP_NAME.test(name)) refuse(`bad group name "${name}" (letters, digits and _, not starting with a digit, at most 32)`);
        if (names.has(name)) refuse(`two groups named "${name}"`);
        names.add(name);
        out += `(?<${name}>`;
        i += 2 + named[0].length;
        continue;
      }
      if (rest.startsWith('P=')) refuse(BACKREF);
      refuse(groupRefusal(rest));
    }
    if (c === '*' || c === '+' || c === '?') {
      out += c;
      i++;
      afterQuantifier();
      continue;
    }
    if (c === '{') {
      const q = /^\{(\d+)(?:(,)(\d*))?\}/.exec(src.slice(i));
      if (q) {
        if (Number(q[1]) > MAX_REPEAT || (q[3] && Number(q[3]) > MAX_REPEAT)) refuse(`a repeat count above ${MAX_REPEAT}`);
        out += q[0];
        i += q[0].length;
        afterQuantifier();
        continue;
      }
      // PCRE2 10.43 reads "{,3}" and "{ 1, 3 }" as repeats, older versions as literal text.
      if (/^\{\s*\d*\s*(?:,\s*\d*\s*)?\}/.test(src.slice(i)) && /\d/.test(/^\{[^}]*\}/.exec(src.slice(i))![0])) {
        refuse(`"${/^\{[^}]*\}/.exec(src.slice(i))![0]}" is read differently by PCRE versions; write {n,m} without spaces, or \\{ for a literal brace`);
      }
      out += '\\{';
      i++;
      continue;
    }
    if (c === '.' || c === '^' || c === '$' || c === '|' || c === ')') {
      out += c;
      i++;
      continue;
    }
    // Everything else, "}" and "]" included, is a literal.
    const ch = String.fromCodePoint(src.codePointAt(i)!);
    out += literalAtoms(ch);
    i += ch.length;
  }
  return out;
}
