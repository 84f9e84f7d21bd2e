// Route lookup with nginx location semantics, so the route l402d prices is the location nginx protected:
// "= /x" exact wins; otherwise the longest prefix, unless a regex ("~", "~*") matches first in config order;
// a "^~ /x" longest prefix skips the regexes.
export type RouteMatch =
  | { kind: 'exact'; path: string }
  | { kind: 'prefix'; path: string; noRegex: boolean }
  | { kind: 'regex'; re: RegExp };

export function parseRouteMatch(text: string): RouteMatch {
  const m = /^(=|\^~|~\*|~)?\s*(.+)$/.exec(text.trim());
  if (!m) throw new Error('empty match');
  const [, mod, rest] = m as unknown as [string, string | undefined, string];
  if (mod === '~' || mod === '~*') {
    try {
      return { kind: 'regex', re: new RegExp(rest, mod === '~*' ? 'i' : '') };
    } catch (e) {
      throw new Error(`invalid regular expression: ${(e as Error).message}`);
    }
  }
  if (!rest.startsWith('/')) throw new Error('a path must start with "/" (or use "~ regex")');
  if (/[\s?#]/.test(rest)) throw new Error('a path cannot contain spaces, "?" or "#"');
  return mod === '=' ? { kind: 'exact', path: rest } : { kind: 'prefix', path: rest, noRegex: mod === '^~' };
}

export class RouteTable<R extends { match: string }> {
  private readonly exact = new Map<string, R>();
  private readonly prefixes: Array<{ path: string; noRegex: boolean; route: R }> = [];
  private readonly regexes: Array<{ re: RegExp; route: R }> = [];

  constructor(routes: readonly R[]) {
    for (const route of routes) {
      const m = parseRouteMatch(route.match);
      if (m.kind === 'exact') this.exact.set(m.path, route);
      else if (m.kind === 'prefix') this.prefixes.push({ path: m.path, noRegex: m.noRegex, route });
      else this.regexes.push({ re: m.re, route });
    }
    this.prefixes.sort((a, b) => b.path.length - a.path.length);
  }

  /** `path` must already be normalised (see normalizePath). */
  lookup(path: string): R | undefined {
    const exact = this.exact.get(path);
    if (exact) return exact;
    const prefix = this.prefixes.find((p) => path.startsWith(p.path));
    if (prefix?.noRegex) return prefix.route;
    for (const r of this.regexes) if (r.re.test(path)) return r.route;
    return prefix?.route;
  }
}

/**
 * The path nginx matches locations against ($uri): query dropped, percent-decoded, slashes merged,
 * "." and ".." resolved. We receive $request_uri (raw) because $uri can carry decoded CR/LF into headers.
 * Returns undefined for a path nginx itself would refuse.
 */
export function normalizePath(requestUri: string): string | undefined {
  if (!requestUri.startsWith('/')) return undefined;
  let raw = requestUri;
  const q = raw.search(/[?#]/);
  if (q >= 0) raw = raw.slice(0, q);
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    return undefined;
  }
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
