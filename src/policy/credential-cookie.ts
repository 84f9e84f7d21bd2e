// The browser credential: after paying on the HTML page, the L402 credential travels in a cookie scoped to
// its route, and decide() reads it exactly as it reads `Authorization: L402 <macaroon>:<preimage>` (same
// verification, caveats, claims). Only when the request carries no credential header of its own: an explicit
// Authorization (or Cashu token) always wins over an ambient cookie.
import { createHash } from 'node:crypto';
import { decodeBase64Loose } from '../protocol/base64.js';
import { caveatPredicates, decodeMacaroon, MacaroonFormatError } from '../protocol/macaroon.js';
import { checkCaveats, preimageMatches } from '../protocol/caveats.js';
import { cookieValues, formatSetCookie, GATE_COOKIE_MARK } from '../protocol/cookie.js';
import { decodeIdentifier, mintedCaveatCount } from '../protocol/identifier.js';
import type { CredentialHeaders, CredentialParse } from '../protocol/l402-header.js';
import { parseCredentialRemembered } from './parsed-credentials.js';
import { MAX_MACAROON_BYTES } from '../protocol/macaroon.js';
import { signedByTokenKey } from '../protocol/root-key.js';
import { soldScope, type RouteConfig } from './route-config.js';

/** Characters kept as they are in a cookie path: the browser compares it with the URL's encoded path. */
const PLAIN = /^[A-Za-z0-9\-._~/]$/;
/** 400 days: browsers cap Max-Age there, and a credential without expiry gets that. */
export const MAX_COOKIE_AGE_SECS = 400 * 86_400;

function upToLastSlash(p: string): string {
  return p.slice(0, p.lastIndexOf('/') + 1) || '/';
}

/**
 * The cookie's Path for a route's `match`: the narrowest path the browser sends it to that covers the route's
 * paths under it. Exact (`= /a/b`) and prefix (`/premium`, `^~ /x/`) routes: the path itself (a browser sends
 * a cookie of Path=/premium to /premium and /premium/…, not to /premiumX). A regex: its literal start after
 * "^" up to the last "/" (`~ ^/api/v[0-9]+/` → /api/), the whole literal for `^/literal$`, "/" when it is
 * not anchored, has an alternation or (for `~*`) starts with a letter. Only unreserved characters and "/"
 * are kept: a path with others is cut to the last "/" before the first of them.
 */
export function cookiePath(match: string): string {
  const m = /^(=|\^~|~\*|~)?\s*(.+)$/.exec(match.trim());
  if (!m) return '/';
  const mod = m[1];
  const text = m[2]!;
  if (mod !== '~' && mod !== '~*') {
    let i = 0;
    while (i < text.length && PLAIN.test(text[i]!)) i++;
    return i === text.length ? text : upToLastSlash(text.slice(0, i));
  }
  if (!text.startsWith('^') || text.includes('|')) return '/';
  let lit = '';
  let i = 1;
  for (; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\' && i + 1 < text.length && /[./\-_~]/.test(text[i + 1]!)) {
      lit += text[++i];
      continue;
    }
    if (!PLAIN.test(c) || c === '.' || (mod === '~*' && /[A-Za-z]/.test(c))) break;
    lit += c;
  }
  // An optional last character (`a?`, `a*`, `a{0,1}`) is not part of every match.
  if (i < text.length && /[?*{]/.test(text[i]!)) lit = lit.slice(0, -1);
  if (i === text.length - 1 && text[i] === '$' && lit.startsWith('/')) return lit;
  return lit.startsWith('/') ? upToLastSlash(lit) : '/';
}

export interface CookieScope {
  /** `l402_` and 16 hex digits: one per route and path, so a changed route never reads an old cookie. */
  name: string;
  path: string;
}

const scopes = new WeakMap<RouteConfig, CookieScope>();

export function cookieScope(route: RouteConfig): CookieScope {
  let s = scopes.get(route);
  if (!s) {
    const path = cookiePath(route.match);
    const name = `${GATE_COOKIE_MARK}${createHash('sha256').update(`l402-nginx/cookie\0${route.id}\0${path}`).digest('hex').slice(0, 16)}`;
    s = { name, path };
    scopes.set(route, s);
  }
  return s;
}

/**
 * A browser sends the route's cookie with a request for this raw path (RFC 6265 path-match, on the path as
 * the client sent it, query excluded). Not so for every path the route matches: `/premium` also matches
 * `/premiumX`, which a cookie of Path=/premium never reaches. There the page keeps the credential itself.
 */
export function cookieCovers(route: RouteConfig, rawUri: string): boolean {
  const raw = rawUri.split(/[?#]/)[0]!;
  const p = cookieScope(route).path;
  return raw === p || (raw.startsWith(p) && (p.endsWith('/') || raw[p.length] === '/'));
}

/** The cookie value for a credential: base64url macaroon, then ":" and the hex preimage when there is one. */
export function cookieValue(macaroon: Buffer, preimage?: Buffer): string {
  return macaroon.toString('base64url') + (preimage ? `:${preimage.toString('hex')}` : '');
}

const VALUE = /^([A-Za-z0-9_-]+)(?::([0-9a-f]{64}))?$/;

/** The route's credential cookie in a Cookie header, parsed strictly ('none' when absent or unreadable). */
export function cookieCredential(header: string | undefined, route: RouteConfig): CredentialParse {
  const values = cookieValues(header, cookieScope(route).name);
  if (values === 'too_large' || values.length === 0) return { kind: 'none' };
  // Two different credentials are refused, never one picked (identical copies are one).
  if (new Set(values).size > 1) return { kind: 'malformed', reason: 'two different credential cookies' };
  const m = VALUE.exec(values[0]!);
  if (!m || m[1]!.length > Math.ceil((MAX_MACAROON_BYTES * 4) / 3)) return { kind: 'malformed', reason: 'credential cookie is not <base64url macaroon>[:<hex preimage>]' };
  const macaroon = decodeBase64Loose(m[1]!, MAX_MACAROON_BYTES);
  if (!macaroon) return { kind: 'malformed', reason: 'credential cookie is not <base64url macaroon>[:<hex preimage>]' };
  return { kind: 'l402', credential: { scheme: 'L402', macaroon, preimage: m[2] ? Buffer.from(m[2], 'hex') : undefined, source: 'cookie' } };
}

/** The raw values of the route's credential cookie in a Cookie header, joined ('' when none). */
export function routeCookieText(header: string | undefined, route: RouteConfig): string {
  const values = cookieValues(header, cookieScope(route).name);
  return values === 'too_large' ? '' : values.join('; ');
}

/**
 * The request's L402 credential as decide() takes it: its headers first; the route's cookie only when they
 * carry none.
 */
export function requestCredential(c: CredentialHeaders & { cookie?: string }, route: RouteConfig): CredentialParse {
  const parsed = parseCredentialRemembered(c, route.access !== 'per-request');
  return parsed.kind === 'none' ? cookieCredential(c.cookie, route) : parsed;
}

/** What the cookie endpoint learns from a credential before setting it: how long, and how it may be used. */
export type CookieCheck = { ok: true; maxAge: number; singleUse: boolean } | { ok: false; reason: string };

/**
 * The checks decide() makes that need no store or backend (signature, every caveat for this route, path and
 * GET, the preimage): a credential that fails them is never set as a cookie. The cookie lives no longer than
 * the credential's earliest expiry (400 days without one).
 */
export function checkForCookie(
  cred: { macaroon: Buffer; preimage?: Buffer },
  route: RouteConfig,
  path: string,
  o: { service: string; rootKeys: readonly Buffer[]; now: number },
): CookieCheck {
  let mac;
  try {
    mac = decodeMacaroon(cred.macaroon);
  } catch (e) {
    if (e instanceof MacaroonFormatError) return { ok: false, reason: 'malformed_macaroon' };
    throw e;
  }
  const id = decodeIdentifier(mac.identifier);
  if (!id) return { ok: false, reason: 'unknown_identifier' };
  if (!signedByTokenKey(mac, id.tokenId, o.rootKeys)) return { ok: false, reason: 'bad_signature' };
  const v = checkCaveats(caveatPredicates(mac), { service: o.service, routeId: soldScope(route), path, method: 'GET', now: o.now, paymentHash: id.paymentHash }, mintedCaveatCount(id.tokenId));
  if (!v.ok) return { ok: false, reason: v.reason };
  const preimage = cred.preimage ?? v.preimage;
  // On a balance route the preimage may be a top-up's: only the store knows which token it credits, so the gate
  // checks it when the cookie is used (a wrong one is refused there and the cookie deleted).
  const topup = route.access === 'balance' && v.sold.balanceMsat !== undefined && preimage?.length === 32;
  if (preimage && !topup && !preimageMatches(preimage, id.paymentHash)) return { ok: false, reason: 'wrong_preimage' };
  if (!preimage && !route.autoDetect) return { ok: false, reason: 'missing_preimage' };
  const left = v.validUntil === undefined ? MAX_COOKIE_AGE_SECS : Math.min(MAX_COOKIE_AGE_SECS, v.validUntil - o.now);
  if (left <= 0) return { ok: false, reason: 'expired' };
  return { ok: true, maxAge: left, singleUse: route.access === 'per-request' || v.sold.singleUse || v.singleUse };
}

/**
 * Set-Cookie for a route's credential. SameSite=Lax lets a reusable credential follow a link into the site;
 * a cookie whose every use spends (single-use, or a prepaid balance, each request a draw) is Strict, so a
 * cross-site link or redirect cannot spend it.
 */
export function credentialSetCookie(route: RouteConfig, value: string, o: { maxAge: number; singleUse: boolean; secure: boolean }): string {
  const { name, path } = cookieScope(route);
  const spends = o.singleUse || route.access === 'balance';
  return formatSetCookie({ name, value, path, maxAge: o.maxAge, secure: o.secure, sameSite: spends ? 'Strict' : 'Lax' });
}

/** Deletes a route's credential cookie (sent with the refusal of a cookie that no longer pays). */
export function clearingSetCookie(route: RouteConfig, secure: boolean): string {
  const { name, path } = cookieScope(route);
  return formatSetCookie({ name, value: '', path, maxAge: 0, secure, sameSite: 'Lax' });
}
