// Standalone mode's free paths (Aperture's authwhitelistpaths): requests proxied without payment. Fail closed:
// a request is free only when its raw target is unambiguous (the path-ambiguity rules of priced paths: no dot
// segment, "..;x", "//", encoded "/" or "\", ";", "#", control character), its path matches a free entry
// exactly as configured, and no priced route matches that path in any ASCII case or with or without a
// trailing slash (a caselessly routing upstream would serve the priced content). Everything else is decided
// as before: priced, or refused with 403.
import { parseRouteMatch, pathAmbiguity, pcreSubject } from './routes.js';

export type FreePath = { kind: 'exact'; path: string } | { kind: 'prefix'; path: string };

/** `= /exact` or `/prefix`: a path as a request sends it, decoded, with nothing ambiguous in it. */
export function parseFreePath(text: string): FreePath {
  const m = /^(=)?\s*(.*)$/.exec(text.trim())!;
  const path = m[2]!;
  if (!path.startsWith('/')) throw new Error('a path starting with "/" ("= /exact" for one path, "/prefix/" for a prefix); no regexes');
  if (/[\s?#%;\\]|[\x00-\x1f\x7f]/.test(path)) throw new Error('a decoded path without spaces, "?", "#", "%", ";", "\\" or control characters');
  const why = pathAmbiguity(path);
  if (why) throw new Error(`an unambiguous path: ${why}`);
  return m[1] ? { kind: 'exact', path } : { kind: 'prefix', path };
}

export class FreePaths {
  private readonly entries: FreePath[];
  /** Every route's match, folded: a path any of them matches in any case is priced, never free. */
  private readonly priced: Array<(lowerPath: string, subject: string) => boolean>;

  constructor(entries: readonly string[], routes: ReadonlyArray<{ match: string }>) {
    this.entries = entries.map(parseFreePath);
    this.priced = routes.map((r) => {
      const m = parseRouteMatch(r.match);
      if (m.kind === 'exact') {
        const p = m.path.toLowerCase();
        return (lower) => lower === p;
      }
      if (m.kind === 'prefix') {
        const p = m.path.toLowerCase();
        return (lower) => lower.startsWith(p);
      }
      // JavaScript's "i" folds more than ASCII: more paths count as priced, never fewer.
      const re = new RegExp(m.re.source, m.re.flags.includes('i') ? m.re.flags : `${m.re.flags}i`);
      return (_lower, subject) => re.test(subject);
    });
  }

  get size(): number {
    return this.entries.length;
  }

  /**
   * `rawPath`: the request target's path as the client sent it (query excluded); `path`: its normalised form
   * (normalizePath), the one forwarded.
   */
  isFree(rawPath: string, path: string | undefined): boolean {
    if (this.entries.length === 0 || path === undefined || pathAmbiguity(rawPath) !== undefined) return false;
    if (!this.entries.some((e) => (e.kind === 'exact' ? path === e.path : path.startsWith(e.path)))) return false;
    const bare = path.length > 1 ? path.replace(/\/+$/, '') : path;
    for (const variant of new Set([path, bare, `${bare}/`])) {
      // Character by character, also through upper case: Unicode letters such as "ı", "İ" or "ſ" fold to ASCII
      // ones in caseless comparisons (Java's equalsIgnoreCase reads "/prıce" and "/prİce" as "/price").
      // Folding too much only makes more paths priced, never fewer.
      const fold = (f: (ch: string) => string) => Array.from(variant, (ch) => f(ch)[0] ?? ch).join('');
      for (const folded of new Set([variant, fold((ch) => ch.toLowerCase()), fold((ch) => (ch.toUpperCase()[0] ?? ch).toLowerCase())])) {
        if (this.priced.some((hit) => hit(folded.toLowerCase(), pcreSubject(folded)))) return false;
      }
    }
    return true;
  }
}
