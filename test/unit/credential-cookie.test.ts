// The browser credential cookie: Cookie header parsing (attacker input), Set-Cookie formatting, the route's
// cookie path, what the upstream may receive, and decide() treating the cookie exactly as the header it
// stands for.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { cookieValues, formatSetCookie, MAX_COOKIE_HEADER, siteCookies } from '../../src/protocol/cookie.js';
import { checkForCookie, cookieCovers, cookieCredential, cookiePath, cookieScope, cookieValue, credentialSetCookie, requestCredential } from '../../src/policy/credential-cookie.js';
import { parseConfig, type RouteConfig } from '../../src/config/config.js';
import { decide, type DecideDeps, type GateRequest } from '../../src/policy/decide.js';
import { createChallenge } from '../../src/policy/challenge.js';
import { RouteTable } from '../../src/policy/routes.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroon, encodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { FUZZ_SEED, Rng } from '../fuzz/rng.js';

test('cookieValues: every value of the exact name, in order; pairs split on ";" and trimmed of SP/HTAB only', () => {
  assert.deepEqual(cookieValues('a=1; l402_x=2;l402_x=3 ;  b = 4', 'l402_x'), ['2', '3']);
  assert.deepEqual(cookieValues('L402_X=1; l402_x =\t2\t', 'l402_x'), ['2'], 'names are case-sensitive; OWS around name and value trimmed');
  assert.deepEqual(cookieValues('l402_x', 'l402_x'), [], 'a pair without "=" is no cookie');
  assert.deepEqual(cookieValues('l402_x="q"; l402_x=a=b', 'l402_x'), ['"q"', 'a=b'], 'values are never unquoted or split further');
  assert.deepEqual(cookieValues('\u00a0l402_x=1', 'l402_x'), [], 'NBSP is not whitespace');
  assert.deepEqual(cookieValues(undefined, 'l402_x'), []);
  assert.equal(cookieValues('a=1;'.repeat(300), 'l402_x'), 'too_large');
  assert.equal(cookieValues(`l402_x=1; pad=${'x'.repeat(MAX_COOKIE_HEADER)}`, 'l402_x'), 'too_large');
});

test('siteCookies: the upstream never gets a pair mentioning the gate, the site keeps its own in order', () => {
  assert.equal(siteCookies('session=abc; theme=dark'), 'session=abc; theme=dark');
  assert.equal(siteCookies('session=abc; l402_0123456789abcdef=MAC:PRE; theme=dark'), 'session=abc; theme=dark');
  assert.equal(siteCookies('L402_FOO=1;x=2;  y=l402_in_value ; z=3'), 'x=2; z=3', 'any case, name or value');
  assert.equal(siteCookies('l402_a=1'), '');
  assert.equal(siteCookies(undefined), '');
  assert.equal(siteCookies('a=1; l402_b=2; c=\x01x; d=4'), 'a=1; d=4', 'a byte no header may carry is dropped when rewriting');
  assert.equal(siteCookies('a=1, l402_b=2; c=3'), 'c=3', 'a comma-joined pair is one pair here, and it mentions the gate');
  // Property: whatever surrounds it, a credential cookie that cookieCredential reads is never in the output.
  const route = { id: 'r', match: '/r/' } as RouteConfig;
  const { name } = cookieScope(route);
  const r = new Rng(FUZZ_SEED);
  const junk = [' ', '\t', ';', '=', ',', '"', 'a', 'L402_', 'l402_', '\\', '%3B', 'x=y'];
  for (let n = 0; n < 2000; n++) {
    const value = cookieValue(randomBytes(40), r.next() < 0.5 ? randomBytes(32) : undefined);
    const parts: string[] = [];
    for (let k = 0; k < 1 + Math.floor(r.next() * 5); k++) parts.push(Array.from({ length: Math.floor(r.next() * 4) }, () => junk[Math.floor(r.next() * junk.length)]).join(''));
    parts.splice(Math.floor(r.next() * parts.length), 0, `${r.next() < 0.5 ? ' ' : ''}${name}=${value}`);
    const header = parts.join(r.next() < 0.5 ? '; ' : ';');
    const read = cookieCredential(header, route);
    const out = siteCookies(header);
    assert.ok(!/l402_/i.test(out), header);
    if (read.kind === 'l402') assert.ok(!out.includes(value.split(':')[0]!.slice(0, 20)), header);
  }
});

test('formatSetCookie: HttpOnly, Path, Max-Age, SameSite, Secure only when asked; refuses what it cannot write', () => {
  const base = { name: 'l402_0123456789abcdef', value: 'AgE:ab', path: '/timed/', maxAge: 60, secure: false, sameSite: 'Lax' as const };
  assert.equal(formatSetCookie(base), 'l402_0123456789abcdef=AgE:ab; Path=/timed/; Max-Age=60; HttpOnly; SameSite=Lax');
  assert.equal(formatSetCookie({ ...base, secure: true, sameSite: 'Strict' }), 'l402_0123456789abcdef=AgE:ab; Path=/timed/; Max-Age=60; HttpOnly; Secure; SameSite=Strict');
  assert.throws(() => formatSetCookie({ ...base, name: 'session' }));
  for (const value of ['a;b', 'a b', 'a,b', 'a"b', 'a\\b', 'a\r\nSet-Cookie: x=1', '\u00e9']) assert.throws(() => formatSetCookie({ ...base, value }), value);
  for (const path of ['timed', '/a;b', '/a\nb', '/caf\u00e9']) assert.throws(() => formatSetCookie({ ...base, path }), path);
  assert.throws(() => formatSetCookie({ ...base, maxAge: -1 }));
  assert.throws(() => formatSetCookie({ ...base, maxAge: 1.5 }));
});

test('cookiePath: the narrowest cookie path for each kind of route match', () => {
  const cases: Array<[string, string]> = [
    ['/timed/', '/timed/'],
    ['/premium', '/premium'],
    ['= /exact/page.html', '/exact/page.html'],
    ['^~ /static/', '/static/'],
    ['/caf\u00e9/x/', '/'],
    ['/a b/c/', '/'],
    ['/docs/v1 beta/', '/docs/'],
    ['/x%2F/', '/'],
    ['~ ^/api/v[0-9]+/', '/api/'],
    ['~ ^/premium$', '/premium'],
    ['~ ^/premium', '/'],
    ['~ ^/files/report\\.pdf$', '/files/report.pdf'],
    ['~ ^/files/report.pdf$', '/files/'],
    ['~ ^/a/b?/', '/a/'],
    ['~ ^/a/bc*/', '/a/'],
    ['~ \\.mp4$', '/'],
    ['~ ^/a/|^/b/', '/'],
    ['~* ^/Media/', '/'],
    ['~* ^/123/abc', '/123/'],
  ];
  for (const [match, path] of cases) assert.equal(cookiePath(match), path, match);
});

test('cookieCovers: RFC 6265 path-match of the route cookie on the raw path the client sent', () => {
  const prefix = { id: 'p', match: '/premium' } as RouteConfig;
  const dir = { id: 'd', match: '/timed/' } as RouteConfig;
  const regex = { id: 'r', match: '~ ^/api/v[0-9]+/' } as RouteConfig;
  for (const [route, uri, covered] of [
    [prefix, '/premium', true], [prefix, '/premium?x=1', true], [prefix, '/premium/a/b', true], [prefix, '/premiumX', false], [prefix, '/premium.html', false],
    [dir, '/timed/', true], [dir, '/timed/a', true], [dir, '/%74imed/a', false],
    [regex, '/api/v1/x', true], [regex, '/api/', true],
  ] as Array<[RouteConfig, string, boolean]>) assert.equal(cookieCovers(route, uri), covered, `${route.match} ${uri}`);
});

test('cookieScope: one name per route and path; a different route or scope never reads the cookie', () => {
  const a = { id: 'a', match: '/timed/' } as RouteConfig;
  const b = { id: 'b', match: '/timed/' } as RouteConfig;
  const a2 = { id: 'a', match: '/timed/x/' } as RouteConfig;
  assert.match(cookieScope(a).name, /^l402_[0-9a-f]{16}$/);
  assert.notEqual(cookieScope(a).name, cookieScope(b).name);
  assert.notEqual(cookieScope(a).name, cookieScope(a2).name);
  const value = cookieValue(Buffer.from('0201', 'hex'), Buffer.alloc(32, 7));
  assert.equal(cookieCredential(`${cookieScope(b).name}=${value}`, a).kind, 'none');
  assert.equal(cookieCredential(`${cookieScope(a).name}=${value}`, a).kind, 'l402');
  assert.match(credentialSetCookie(a, value, { maxAge: 5, singleUse: false, secure: false }), /; Path=\/timed\/; Max-Age=5; HttpOnly; SameSite=Lax$/);
  assert.match(credentialSetCookie(a, value, { maxAge: 5, singleUse: true, secure: true }), /; Secure; SameSite=Strict$/);
});

test('cookieCredential: strict value syntax; two different copies refused; headers win over the cookie', () => {
  const route = { id: 'r', match: '/r/' } as RouteConfig;
  const { name } = cookieScope(route);
  const mac = Buffer.from('02010a', 'hex');
  const pre = Buffer.alloc(32, 0xab);
  const good = cookieValue(mac, pre);
  const ok = cookieCredential(`x=1; ${name}=${good}`, route);
  assert.ok(ok.kind === 'l402' && ok.credential.source === 'cookie' && ok.credential.macaroon.equals(mac) && ok.credential.preimage!.equals(pre));
  const macOnly = cookieCredential(`${name}=${mac.toString('base64url')}`, route);
  assert.ok(macOnly.kind === 'l402' && macOnly.credential.preimage === undefined);
  assert.equal(cookieCredential(`${name}=${good}; ${name}=${good}`, route).kind, 'l402', 'identical copies are one');
  assert.deepEqual(cookieCredential(`${name}=${good}; ${name}=${cookieValue(mac, Buffer.alloc(32, 1))}`, route), { kind: 'malformed', reason: 'two different credential cookies' });
  for (const v of [`"${good}"`, `${good}:`, `${good.toUpperCase()}`, `${mac.toString('base64')}+/=:${pre.toString('hex')}`, `${good.replace(':', '%3A')}`, `${mac.toString('base64url')}:${pre.toString('hex').toUpperCase()}`, `${mac.toString('base64url')}:${'ab'.repeat(31)}`, '', 'L402 x', '\u00ff']) {
    assert.equal(cookieCredential(`${name}=${v}`, route).kind, 'malformed', JSON.stringify(v));
  }
  const header = `L402 ${mac.toString('base64')}:${'cd'.repeat(32)}`;
  const both = requestCredential({ authorization: header, cookie: `${name}=${good}` }, route);
  assert.ok(both.kind === 'l402' && both.credential.source === 'authorization', 'an explicit Authorization wins');
  const bearer = requestCredential({ authorization: 'Bearer app', cookie: `${name}=${good}` }, route);
  assert.ok(bearer.kind === 'l402' && bearer.credential.source === 'cookie', "the app's own Bearer does not hide the cookie");
});

// decide(): the cookie is exactly as strong as the Authorization header it stands for.
const cfg = parseConfig(
  `lightning: { type: dev }\nroutes:
  - { match: /premium, amount_msat: 10000 }
  - { match: /other/, amount_msat: 10000, access: timed, macaroon_timeout: 60 }
  - { match: /timed/, amount_msat: 5000, access: timed, macaroon_timeout: 60 }
  - { match: /forever/, amount_msat: 5000, access: indefinite }
`,
  { env: {} },
);
const MASTER = randomBytes(32);
let dir: string;
let wallet: DevWallet;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'l402-cookie-'));
  wallet = DevWallet.open(dir);
});
after(() => {
  wallet.close();
  rmSync(dir, { recursive: true, force: true });
});
const routeOf = (m: string) => cfg.routes.find((r) => r.match === m)!;
async function buy(match: string, path: string): Promise<{ macaroon: string; preimage: string }> {
  const c = await createChallenge(routeOf(match), { path, method: 'GET', amountMsat: routeOf(match).amountMsat }, { backend: wallet, rootKey: MASTER, service: 'l402', location: 'l402', memo: 't', invoiceExpirySecs: 600, backendTimeoutMs: 2000 });
  return { macaroon: c.macaroon, preimage: wallet.pay(c.invoice).toString('hex') };
}
function asCookie(path: string, macaroonB64: string, preimage: string): string {
  const route = new RouteTable(cfg.routes).lookup(path)!;
  return `${cookieScope(route).name}=${cookieValue(Buffer.from(macaroonB64, 'base64'), Buffer.from(preimage, 'hex'))}`;
}
/** The cookie a browser would hold for `path`, but for the route the credential was bought for. */
function asCookieOf(match: string, macaroonB64: string, preimage: string): string {
  return `${cookieScope(routeOf(match)).name}=${cookieValue(Buffer.from(macaroonB64, 'base64'), Buffer.from(preimage, 'hex'))}`;
}

test('decide: the same outcome and reason with the cookie as with the Authorization header, use after use', async () => {
  const tamper = (m: string) => {
    const b = Buffer.from(m, 'base64');
    b[b.length - 1]! ^= 1;
    return b.toString('base64');
  };
  const expired = (m: string) => encodeMacaroonBase64(attenuate(decodeMacaroonBase64(m), `l402_valid_until=${Math.floor(Date.now() / 1000) - 10}`));
  const cases: Array<{ name: string; match: string; buyPath: string; path: string; edit?: (m: string) => string; uses: number; wrongRoute?: string }> = [
    { name: 'per-request', match: '/premium', buyPath: '/premium', path: '/premium', uses: 3 },
    { name: 'timed', match: '/timed/', buyPath: '/timed/a', path: '/timed/b', uses: 3 },
    { name: 'indefinite', match: '/forever/', buyPath: '/forever/a', path: '/forever/x/y', uses: 3 },
    { name: 'tampered', match: '/timed/', buyPath: '/timed/a', path: '/timed/a', edit: tamper, uses: 1 },
    { name: 'expired (appended caveat)', match: '/timed/', buyPath: '/timed/a', path: '/timed/a', edit: expired, uses: 1 },
    { name: 'other route', match: '/timed/', buyPath: '/timed/a', path: '/other/a', uses: 1, wrongRoute: '/other/' },
    { name: 'per-request, other path', match: '/premium', buyPath: '/premium', path: '/premium/x', uses: 1 },
  ];
  for (const c of cases) {
    const viaHeader: DecideDeps = { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: [MASTER], store: new MemoryStore(), storeTimeoutMs: 500 };
    const viaCookie: DecideDeps = { ...viaHeader, store: new MemoryStore() };
    const { macaroon, preimage } = await buy(c.match, c.buyPath);
    const mac = c.edit ? c.edit(macaroon) : macaroon;
    // A browser holding the cookie of route A visiting route B sends it only if the paths overlap; here the
    // cookie is named for route B (as if planted there) to reach decide at all.
    const cookie = c.wrongRoute ? asCookieOf(c.wrongRoute, mac, preimage) : asCookie(c.path, mac, preimage);
    for (let i = 0; i < c.uses; i++) {
      const h = await decide({ path: c.path, method: 'GET', credentials: { authorization: `L402 ${mac}:${preimage}` } } satisfies GateRequest, viaHeader);
      const k = await decide({ path: c.path, method: 'GET', credentials: { cookie: `site=1; ${cookie}` } } satisfies GateRequest, viaCookie);
      assert.deepEqual([k.outcome, k.reason], [h.outcome, h.reason], `${c.name}, use ${i + 1}`);
    }
  }
  // And the per-request one really was refused on its second use, the timed one allowed on its third.
  const d: DecideDeps = { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: [MASTER], store: new MemoryStore(), storeTimeoutMs: 500 };
  const once = await buy('/premium', '/premium');
  const cookie = asCookie('/premium', once.macaroon, once.preimage);
  assert.equal((await decide({ path: '/premium', method: 'GET', credentials: { cookie } }, d)).outcome, 'allow');
  const again = await decide({ path: '/premium', method: 'GET', credentials: { cookie } }, d);
  assert.deepEqual([again.outcome, again.reason], ['invalid', 'already_used']);
  // A cookie of the route next door, sent under another route's path, is no credential there: a challenge.
  const t = await buy('/timed/', '/timed/a');
  assert.equal((await decide({ path: '/other/a', method: 'GET', credentials: { cookie: asCookie('/timed/a', t.macaroon, t.preimage) } }, d)).outcome, 'challenge');
});

test('checkForCookie: verifies what it can without spending, and bounds Max-Age by the credential', async () => {
  const now = Math.floor(Date.now() / 1000);
  const o = { service: 'l402', rootKeys: [MASTER], now };
  const t = await buy('/timed/', '/timed/a');
  const mac = Buffer.from(t.macaroon, 'base64');
  const ok = checkForCookie({ macaroon: mac, preimage: Buffer.from(t.preimage, 'hex') }, routeOf('/timed/'), '/timed/b', o);
  // The credential's expiry: its invoice's (a minute) plus macaroon_timeout (60 s).
  assert.ok(ok.ok && ok.maxAge > 110 && ok.maxAge <= 120 && !ok.singleUse, JSON.stringify(ok));
  assert.deepEqual(checkForCookie({ macaroon: mac, preimage: Buffer.alloc(32) }, routeOf('/timed/'), '/timed/b', o), { ok: false, reason: 'wrong_preimage' });
  assert.deepEqual(checkForCookie({ macaroon: mac }, routeOf('/timed/'), '/timed/b', o), { ok: false, reason: 'missing_preimage' });
  assert.deepEqual(checkForCookie({ macaroon: mac, preimage: Buffer.from(t.preimage, 'hex') }, routeOf('/other/'), '/other/b', o), { ok: false, reason: 'wrong_route' });
  assert.deepEqual(checkForCookie({ macaroon: mac, preimage: Buffer.from(t.preimage, 'hex') }, routeOf('/timed/'), '/timed/b', { ...o, rootKeys: [randomBytes(32)] }), { ok: false, reason: 'bad_signature' });
  assert.deepEqual(checkForCookie({ macaroon: mac, preimage: Buffer.from(t.preimage, 'hex') }, routeOf('/timed/'), '/timed/b', { ...o, now: now + 121 }), { ok: false, reason: 'expired' });
  const short = encodeMacaroon(attenuate(decodeMacaroonBase64(t.macaroon), `l402_valid_until=${now + 7}`));
  const s = checkForCookie({ macaroon: short, preimage: Buffer.from(t.preimage, 'hex') }, routeOf('/timed/'), '/timed/b', o);
  assert.deepEqual(s, { ok: true, maxAge: 7, singleUse: false }, 'an appended expiry shortens the cookie');
  const f = await buy('/forever/', '/forever/a');
  const forever = checkForCookie({ macaroon: Buffer.from(f.macaroon, 'base64'), preimage: Buffer.from(f.preimage, 'hex') }, routeOf('/forever/'), '/forever/z', o);
  assert.deepEqual(forever, { ok: true, maxAge: 400 * 86_400, singleUse: false });
  const p = await buy('/premium', '/premium');
  const once = checkForCookie({ macaroon: Buffer.from(p.macaroon, 'base64'), preimage: Buffer.from(p.preimage, 'hex') }, routeOf('/premium'), '/premium', o);
  assert.ok(once.ok && once.singleUse);
  assert.deepEqual(checkForCookie({ macaroon: Buffer.from(p.macaroon, 'base64'), preimage: Buffer.from(p.preimage, 'hex') }, routeOf('/premium'), '/premium/x', o), { ok: false, reason: 'wrong_path' });
});

test('random Cookie headers: parsing never throws, and decide() answers every one without an error', async () => {
  const r = new Rng(FUZZ_SEED ^ 0x5eed);
  const route = routeOf('/timed/');
  const { name } = cookieScope(route);
  const t = await buy('/timed/', '/timed/f');
  const good = cookieValue(Buffer.from(t.macaroon, 'base64'), Buffer.from(t.preimage, 'hex'));
  const atoms = [name, `${name}=`, good, good.slice(0, 30), ';', '; ', '=', ':', '"', ',', ' ', '\t', '\x00', '\x7f', '\xff', '%3B', 'L402_', 'a=b', 'ab'.repeat(32)];
  const d: DecideDeps = { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: [MASTER], store: new MemoryStore(), storeTimeoutMs: 500 };
  for (let n = 0; n < 1500; n++) {
    const header = Array.from({ length: 1 + r.int(8) }, () => (r.chance(0.1) ? r.bytes(1 + r.int(8)).toString('latin1') : r.pick(atoms))).join('');
    const parsed = cookieCredential(header, route);
    assert.ok(['none', 'l402', 'malformed'].includes(parsed.kind), header);
    assert.ok(!/l402_/i.test(siteCookies(header)), header);
    if (n % 50 === 0) {
      const dec = await decide({ path: '/timed/f', method: 'GET', credentials: { cookie: header } }, d);
      assert.ok(['allow', 'challenge', 'invalid'].includes(dec.outcome), `${JSON.stringify(header)}: ${dec.outcome}`);
      if (dec.outcome === 'allow') assert.ok(header.includes(`${name}=${good}`), 'only the real credential opens the route');
    }
  }
});
