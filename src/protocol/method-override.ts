// Many web frameworks run a request as another method than the one on its request line when the request names
// one: a header (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override; Express's method-override, Symfony,
// Laravel, many REST clients) or a `_method` parameter (Rails, Laravel, Symfony). The gate decides on the method
// nginx serves; an upstream that honours such a name would run a method nobody paid for (a route that sells POST
// only, a credential its holder narrowed to `method=POST`, used for a DELETE). So a request that names a method
// other than its own is refused, never decided as either one. The same holds for the path: IIS-style headers
// (X-Original-URL, X-Rewrite-URL) that some frameworks read as the request's path instead of its target.

/** Header names (lower case, "-" for "_": CGI-style apps read X_HTTP_Method_Override as the same header). */
const OVERRIDE_HEADERS = new Set(['x-http-method-override', 'x-http-method', 'x-method-override']);
/** Headers some frameworks (Zend/Laminas, older Symfony, IIS modules) read as the request's path. */
const PATH_HEADERS = new Set(['x-original-url', 'x-rewrite-url']);
const OVERRIDE_HEADER_LENGTHS = new Set([...OVERRIDE_HEADERS, ...PATH_HEADERS].map((n) => n.length));

/**
 * Whether a header (any case, "_" for "-") names a method or path for the upstream to use: standalone mode never
 * forwards one, as protect.conf empties them behind nginx (a request naming another one is refused before).
 */
export function isOverrideHeader(name: string): boolean {
  if (!OVERRIDE_HEADER_LENGTHS.has(name.length)) return false;
  const n = name.toLowerCase().replaceAll('_', '-');
  return OVERRIDE_HEADERS.has(n) || PATH_HEADERS.has(n);
}

/**
 * The header or query parameter of this request that names a method other than `method` (or a path other than
 * `target`), if any. `rawHeaders`:
 * Node's list (name, value, name, value...); `target`: the request-target as the client sent it.
 */
export function methodOverride(method: string, rawHeaders: readonly string[], target: string | undefined): string | undefined {
  const own = method.toUpperCase();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const sent = rawHeaders[i]!;
    if (!OVERRIDE_HEADER_LENGTHS.has(sent.length)) continue;
    const name = sent.toLowerCase().replaceAll('_', '-');
    if (OVERRIDE_HEADERS.has(name) && rawHeaders[i + 1]!.trim().toUpperCase() !== own) return name;
    if (PATH_HEADERS.has(name) && rawHeaders[i + 1]!.trim() !== target) return name;
  }
  // Every query is read: a name can spell "method" in percent-encoded letters (`%5f%6dethod`), so no literal
  // pre-check of the raw query can tell that none is there.
  const q = target?.indexOf('?') ?? -1;
  if (q < 0) return undefined;
  for (const part of target!.slice(q + 1).split(/[&;]/)) {
    const eq = part.indexOf('=');
    const rawName = eq < 0 ? part : part.slice(0, eq);
    const name = paramName(rawName);
    // A name with an escape no decoder agrees on (`%ZZmethod`) may still be read as an override elsewhere.
    if (/%(?![0-9a-f]{2}|u[0-9a-f]{4})/i.test(rawName) && name.includes('method')) return '_method';
    // PHP reads `.method`, `_method[...]` and `_method%00...` as `_method` too.
    const overrides = name.startsWith('_method[') || name === '_method' || OVERRIDE_HEADERS.has(name.replaceAll('_', '-'));
    if (!overrides) continue;
    const value = eq < 0 ? '' : decode(part.slice(eq + 1));
    if (name.startsWith('_method[') || value.trim().toUpperCase() !== own) return name;
  }
  return undefined;
}

/**
 * A parameter's name as frameworks read it: decoded, lower case, PHP's leading `.`/space as `_`, cut at a NUL
 * (PHP registers a name as a C string, so `_method%00x` is its `_method`).
 */
function paramName(raw: string): string {
  const d = decode(raw);
  const nul = d.indexOf('\0');
  return (nul < 0 ? d : d.slice(0, nul)).trim().toLowerCase().replace(/^[. ]/, '_');
}

/**
 * Percent-decoding as lenient as the frameworks': every valid `%XX` (and IIS's `%uXXXX`) decoded, an invalid
 * sequence kept as it is (PHP, qs), never a reason to skip the rest. Bytes are read one character each: the names
 * compared are ASCII, and a value with any other byte is not its own method anyway.
 */
function decode(s: string): string {
  return s
    .replaceAll('+', ' ')
    .replace(/%u([0-9a-f]{4})|%([0-9a-f]{2})/gi, (_m, u: string | undefined, b: string | undefined) => String.fromCharCode(parseInt(u ?? b!, 16)));
}

/** Whether a name methodOverride returned is a path header (X-Original-URL, X-Rewrite-URL), not a method's. */
export function isPathHeaderName(name: string): boolean {
  return PATH_HEADERS.has(name);
}

/** Whether the request carries X-Original-URL or X-Rewrite-URL (any case, "_" for "-"), whatever it names. */
export function namesPathHeader(rawHeaders: readonly string[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const sent = rawHeaders[i]!;
    if (OVERRIDE_HEADER_LENGTHS.has(sent.length) && PATH_HEADERS.has(sent.toLowerCase().replaceAll('_', '-'))) return true;
  }
  return false;
}
