// The Cookie request header and the Set-Cookie attributes of the browser credential (RFC 6265). Pure.
// A Cookie header is attacker input: read bounded, split strictly, never decoded (no percent or quote
// unescaping), so what l402d takes as its credential is exactly a byte run that the strip below removes.
import { trimOws } from './ows.js';

/** Cookie headers longer than this are not read for a credential (nginx's defaults allow 8-16 KiB). */
export const MAX_COOKIE_HEADER = 16 * 1024;
/** At most this many pairs are looked at. */
const MAX_PAIRS = 256;

/**
 * Every cookie of the gate has a name starting with this (followed by 16 hex digits, see
 * policy/credential-cookie.ts). A pair whose text contains it anywhere, in any case, never reaches an upstream.
 */
export const GATE_COOKIE_MARK = 'l402_';
const MARK = /l402_/i;

/** A cookie name the gate mints: the mark and 16 lowercase hex digits. */
export const GATE_COOKIE_NAME = /^l402_[0-9a-f]{16}$/;

/** A byte a header value may carry as Node writes it (HTAB, visible ASCII, SP, obs-text). */
const HEADER_SAFE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * The values of every cookie called `name` (exact, case-sensitive) in a Cookie header, in order; pairs are
 * split on ";" and trimmed of SP/HTAB only, the name ends at the first "=". 'too_large' for a header past
 * MAX_COOKIE_HEADER or with more than MAX_PAIRS pairs (then nothing in it is a credential).
 */
export function cookieValues(header: string | undefined, name: string): string[] | 'too_large' {
  if (header === undefined || header === '') return [];
  if (header.length > MAX_COOKIE_HEADER) return 'too_large';
  const pairs = header.split(';');
  if (pairs.length > MAX_PAIRS) return 'too_large';
  const out: string[] = [];
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    if (trimOws(pair.slice(0, eq)) === name) out.push(trimOws(pair.slice(eq + 1)));
  }
  return out;
}

/**
 * The Cookie header an upstream may receive: every pair whose text contains the gate's mark (name or value,
 * any case) removed, whatever else it holds, and so is a pair with a byte no header value may carry. Any
 * cookie the gate reads as a credential contains the mark, so none ever reaches the upstream; the site's own
 * cookies pass in their order. Empty when nothing is left.
 */
/**
 * The header holds nothing of the gate's (no pair mentions the mark) and only bytes a header value may carry:
 * an upstream may receive it exactly as the client sent it.
 */
export function noGateCookie(header: string): boolean {
  return !MARK.test(header) && HEADER_SAFE.test(header);
}

export function siteCookies(header: string | undefined): string {
  if (header === undefined) return '';
  // Nothing of the gate's in it: passed on as the client sent it.
  if (!MARK.test(header) && HEADER_SAFE.test(header)) return trimOws(header);
  return keepSafe(header);
}

function keepSafe(header: string): string {
  return header
    .split(';')
    .map(trimOws)
    .filter((p) => p !== '' && !MARK.test(p) && HEADER_SAFE.test(p))
    .join('; ');
}

export interface SetCookie {
  name: string;
  value: string;
  /** A cookie path: "/" and then visible ASCII other than ";" (see credential-cookie.ts). */
  path: string;
  /** Seconds; 0 deletes the cookie. */
  maxAge: number;
  secure: boolean;
  sameSite: 'Lax' | 'Strict';
}

/** A Set-Cookie header value; throws on a value or path that cannot be written as is (never escaped). */
export function formatSetCookie(c: SetCookie): string {
  if (!GATE_COOKIE_NAME.test(c.name)) throw new Error('not a gate cookie name');
  // cookie-octet (RFC 6265 4.1.1): visible ASCII except DQUOTE, comma, semicolon and backslash.
  if (!/^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$/.test(c.value)) throw new Error('cookie value outside cookie-octet');
  if (!/^\/[\x21-\x3a\x3c-\x7e]*$/.test(c.path)) throw new Error('cookie path must be "/" and visible ASCII without ";"');
  if (!Number.isInteger(c.maxAge) || c.maxAge < 0) throw new Error('cookie max-age must be a non-negative integer');
  return `${c.name}=${c.value}; Path=${c.path}; Max-Age=${c.maxAge}; HttpOnly${c.secure ? '; Secure' : ''}; SameSite=${c.sameSite}`;
}
