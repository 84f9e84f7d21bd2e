// Red team, round 11a: the gate's first promise attacked with real requests in standalone mode (l402d with
// `upstream:` facing clients, plain HTTP and its own `tls:`): unpaid requests never get through, and one
// payment opens what it bought and no more. Request shapes a proxy can get wrong (pipelining, HTTP/1.0
// keep-alive, Upgrade, absolute-form and asterisk targets, Expect, chunk extensions and trailers, HEAD for a
// GET credential), and MPP and x402 charges replayed on another path, method or route, or carried by two
// schemes at once.
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as connectH2 } from 'node:http2';
import { join } from 'node:path';
import { headerLines, httpsRequest, makeCert, paymentParams, type HttpsResult } from '../support/https-client.js';
import { Cleanup, freePort, requireTool, startCountingUpstream, startNginx, startRedis, type CountingUpstream } from './harness.js';
import { startGateProcess, withUpstream } from './gate-process.js';
import { buyStandalone, sendTo, STANDALONE_ROUTES, standaloneConfig, startStandalone, startStandaloneGate, startStandaloneTls, tempDir, type Standalone, type StandaloneTlsGate } from './standalone-fixture.js';
import { TEST_ROOT_KEY, writeSnippets } from './gate-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { sleep } from '../../src/util/timeout.js';

const opensslBin = requireTool('openssl');
const nginxBin = requireTool('nginx');
const redisBin = requireTool('redis-server');
const cleanup = new Cleanup();
let stack: Standalone;
let upstream: CountingUpstream;

before(async () => {
  stack = await startStandalone(cleanup, 'redteam-s11a', 'error');
  upstream = stack.upstream;
});
after(() => cleanup.run());

/** Writes `bytes` on one connection (plain or TLS) and returns all l402d sends until it closes, or 3 s pass. */
function exchange(bytes: string, o: { port?: number; ca?: Buffer } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const port = o.port ?? stack.port;
    const sock = o.ca ? tls.connect({ host: '127.0.0.1', port, ca: o.ca }, () => sock.write(bytes, 'latin1')) : net.connect(port, '127.0.0.1', () => sock.write(bytes, 'latin1'));
    let out = '';
    sock.on('data', (c: Buffer) => (out += c.toString('latin1')));
    sock.on('close', () => resolve(out));
    sock.on('error', (e) => (out ? resolve(out) : reject(e)));
    // A connection kept open after its answers ends here: what was answered by then is what counts.
    sock.setTimeout(3000, () => sock.destroy());
  });
}

/** The status lines of every answer on a connection, in order (100 Continue included). */
const statuses = (raw: string): number[] => [...raw.matchAll(/HTTP\/1\.[01] (\d{3}) [A-Z]/g)].map((m) => Number(m[1]));

async function settle(): Promise<void> {
  // The upstream records a request when its body ends: give a smuggled one the same chance to arrive.
  for (let i = 0; i < 8; i++) await sleep(25);
}

test('standalone: on one connection, a paid request followed by unpaid or replayed ones (pipelined, HTTP/1.1 and 1.0 keep-alive) opens only the first', async () => {
  const cases: Array<[string, (a: string) => string, number[]]> = [
    ['pipelined, the second unpaid', (a) => `GET /expensive/p1 HTTP/1.1\r\nHost: a\r\nAuthorization: ${a}\r\n\r\nGET /expensive/p2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`, [200, 402]],
    ['pipelined, the same single-use credential twice', (a) => `GET /expensive/p1 HTTP/1.1\r\nHost: a\r\nAuthorization: ${a}\r\n\r\nGET /expensive/p1 HTTP/1.1\r\nHost: a\r\nAuthorization: ${a}\r\nConnection: close\r\n\r\n`, [200, 401]],
    ['HTTP/1.0 keep-alive, the second unpaid', (a) => `GET /expensive/p1 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nAuthorization: ${a}\r\n\r\nGET /expensive/p2 HTTP/1.0\r\nHost: a\r\n\r\n`, [200, 402]],
    ['pipelined after a paid POST whose body looks like a request', (a) => `POST /expensive/p1 HTTP/1.1\r\nHost: a\r\nAuthorization: ${a}\r\nContent-Length: 37\r\n\r\nGET /expensive/p3 HTTP/1.1\r\nHost: a\r\n\r\nGET /expensive/p2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`, [200, 402]],
  ];
  for (const [name, bytes, want] of cases) {
    const method = name.includes('POST') ? 'POST' : 'GET';
    const auth = await buyStandalone(stack, '/expensive/p1', method);
    upstream.reset();
    const raw = await exchange(bytes(auth));
    await settle();
    assert.deepEqual(statuses(raw), want, `${name}: ${raw.slice(0, 600)}`);
    assert.deepEqual(upstream.requests.map((q) => `${q.method} ${q.url}`), [`${method} /expensive/p1`], `${name}: only the paid request reaches the upstream`);
  }
});

test('standalone: Upgrade (WebSocket, h2c) on a paid route opens no tunnel: the upstream gets a plain request, and nothing after it on the connection passes unpaid', async () => {
  for (const [name, hdrs] of [
    ['websocket', 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'],
    ['h2c', 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n'],
  ] as const) {
    const auth = await buyStandalone(stack, '/expensive/ws');
    upstream.reset();
    // After the paid upgrade request: a WebSocket frame's worth of bytes, then a plain unpaid request.
    const raw = await exchange(`GET /expensive/ws HTTP/1.1\r\nHost: a\r\nAuthorization: ${auth}\r\n${hdrs}\r\n\x81\x05hello\r\nGET /expensive/tunnelled HTTP/1.1\r\nHost: a\r\n\r\n`);
    await settle();
    assert.ok(!statuses(raw).includes(101), `${name}: no switch of protocols: ${raw.slice(0, 400)}`);
    assert.deepEqual(upstream.requests.map((q) => q.url), ['/expensive/ws'], `${name}: ${raw.slice(0, 400)}`);
    const q = upstream.requests[0]!;
    assert.equal(q.headers.upgrade, undefined, `${name}: Upgrade is hop-by-hop, never forwarded`);
    assert.ok(!/upgrade/i.test(String(q.headers.connection ?? '')), `${name}: Connection forwarded as ${q.headers.connection}`);
    // Unpaid, the same upgrade is a 402 and nothing reaches the upstream.
    upstream.reset();
    const unpaid = await exchange(`GET /expensive/ws HTTP/1.1\r\nHost: a\r\n${hdrs}\r\nGET /expensive/tunnelled HTTP/1.1\r\nHost: a\r\n\r\n`);
    await settle();
    assert.ok(!statuses(unpaid).includes(101) && !statuses(unpaid).includes(200), `${name} unpaid: ${unpaid.slice(0, 300)}`);
    assert.equal(upstream.hits, 0, `${name} unpaid reached the upstream`);
  }
});

test('standalone: absolute-form and asterisk targets, HEAD on a GET credential, and Expect: 100-continue never pass unpaid nor as another request', async () => {
  const auth = await buyStandalone(stack, '/expensive/t');
  upstream.reset();
  // A paid credential with an absolute-form target naming its own path, another host or another path: refused
  // (l402d never decides on a target that is not origin-form), and the credential stays unspent.
  for (const target of ['http://a/expensive/t', 'http://other.example/expensive/t', 'https://a/cheap/../expensive/t', '*', 'expensive/t']) {
    const raw = await exchange(`GET ${target} HTTP/1.1\r\nHost: a\r\nAuthorization: ${auth}\r\nConnection: close\r\n\r\n`);
    assert.ok(statuses(raw)[0]! >= 400 && statuses(raw)[0]! < 500, `${target}: ${raw.slice(0, 300)}`);
  }
  const star = await exchange(`OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);
  assert.ok(statuses(star)[0]! >= 400 && statuses(star)[0]! < 500, star);
  // A credential bought for GET is not a HEAD (nor a POST) credential.
  for (const method of ['HEAD', 'POST']) {
    const raw = await exchange(`${method} /expensive/t HTTP/1.1\r\nHost: a\r\nAuthorization: ${auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    assert.equal(statuses(raw)[0], 401, `${method}: ${raw.slice(0, 300)}`);
  }
  assert.equal(upstream.hits, 0, 'nothing above reached the upstream');
  // Still unspent: it opens its own request once.
  const own = await exchange(`GET /expensive/t HTTP/1.1\r\nHost: a\r\nAuthorization: ${auth}\r\nConnection: close\r\n\r\n`);
  assert.deepEqual(statuses(own), [200], own);
  // Expect: 100-continue, unpaid, with a request in its body: a 402 (after Node's 100), and that request is
  // read as the body it was framed as, never decided or forwarded.
  upstream.reset();
  const smuggled = 'GET /expensive/z HTTP/1.1\r\nHost: a\r\n\r\n';
  const exp = await exchange(`POST /expensive/t HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}GET /expensive/y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);
  await settle();
  assert.deepEqual(statuses(exp).filter((s) => s !== 100), [402, 402], exp.slice(0, 400));
  assert.equal(upstream.hits, 0, 'the unpaid Expect request reached the upstream');
});

test('standalone: chunk extensions and trailers on a paid POST reach the upstream as one request with its body; ambiguous framing is a 400', async () => {
  const post = (): Promise<string> => buyStandalone(stack, '/expensive/body', 'POST');
  const inner = 'GET /expensive/inner HTTP/1.1\r\nHost: a\r\n\r\n';
  const hex = inner.length.toString(16);
  for (const [name, framing, body] of [
    ['chunk extensions and a trailer', 'Transfer-Encoding: chunked', `${hex};ext="a b";x=1\r\n${inner}\r\n0;last\r\nX-Trailer: 1\r\nAuthorization: L402 x:y\r\n\r\n`],
  ] as const) {
    const auth = await post();
    upstream.reset();
    const raw = await exchange(`POST /expensive/body HTTP/1.1\r\nHost: a\r\nAuthorization: ${auth}\r\n${framing}\r\n\r\n${body}GET /expensive/after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);
    await settle();
    assert.deepEqual(statuses(raw), [200, 402], `${name}: ${raw.slice(0, 400)}`);
    assert.equal(upstream.hits, 1, `${name}: ${JSON.stringify(upstream.requests.map((q) => q.url))}`);
    assert.equal(upstream.requests[0]!.body, inner, `${name}: the body as sent`);
    assert.equal(upstream.requests[0]!.headers.authorization, undefined, `${name}: no credential (nor a trailer's) at the upstream`);
  }
  // Ambiguous framing: refused before any decision, the credential left unspent.
  const auth = await post();
  upstream.reset();
  for (const [name, head, body] of [
    ['Transfer-Encoding and Content-Length', 'Transfer-Encoding: chunked\r\nContent-Length: 4\r\n', `0\r\n\r\n`],
    ['two Content-Lengths', 'Content-Length: 3\r\nContent-Length: 40\r\n', 'abc'],
    ['Content-Length list', 'Content-Length: 3, 40\r\n', 'abc'],
    ['chunked not last', 'Transfer-Encoding: chunked, identity\r\n', '0\r\n\r\n'],
    ['Transfer-Encoding twice', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n', '0\r\n\r\n'],
    ['obs-fold', 'X-A: 1\r\n  folded\r\nContent-Length: 0\r\n', ''],
    ['space before colon', 'Transfer-Encoding : chunked\r\n', '0\r\n\r\n'],
  ] as const) {
    const raw = await exchange(`POST /expensive/body HTTP/1.1\r\nHost: a\r\nAuthorization: ${auth}\r\n${head}\r\n${body}${inner}`);
    assert.equal(statuses(raw)[0], 400, `${name}: ${raw.slice(0, 300)}`);
  }
  await settle();
  assert.equal(upstream.hits, 0, JSON.stringify(upstream.requests.map((q) => q.url)));
  const ok = await exchange(`POST /expensive/body HTTP/1.1\r\nHost: a\r\nAuthorization: ${auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  assert.deepEqual(statuses(ok), [200], `the credential was not spent by the refused framings: ${ok.slice(0, 300)}`);
});

test('standalone: very long headers are a 431 problem before any decision, never a 5xx or a pass', async () => {
  upstream.reset();
  for (const [name, extra] of [
    ['one 70 KiB header', `X-Big: ${'a'.repeat(70 * 1024)}\r\n`],
    ['2,000 small headers', Array.from({ length: 2000 }, (_, i) => `X-H${i}: ${'b'.repeat(30)}\r\n`).join('')],
  ] as const) {
    const raw = await exchange(`GET /expensive/h HTTP/1.1\r\nHost: a\r\n${extra}Connection: close\r\n\r\n`);
    assert.equal(statuses(raw)[0], 431, `${name}: ${raw.slice(0, 200)}`);
  }
  assert.equal(upstream.hits, 0);
});

// --- MPP and x402 over standalone's own TLS ---

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64');
const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

interface Offers {
  mpp: string;
  x402: string;
  l402: string;
}

/** Every offer in one 402 paid with the dev wallet: an MPP credential, an x402 payload, an L402 credential. */
function payEveryOffer(offer: HttpsResult, w: DevWallet): Offers {
  assert.equal(offer.status, 402, offer.body);
  const www = headerLines(offer, 'www-authenticate');
  const pp = paymentParams(www.find((l) => l.startsWith('Payment '))!);
  const inv = (JSON.parse(Buffer.from(pp.request!, 'base64url').toString()) as { methodDetails: { invoice: string } }).methodDetails.invoice;
  const preimage = w.pay(inv).toString('hex');
  const challenge = { id: pp.id, realm: pp.realm, method: pp.method, intent: pp.intent, request: pp.request, expires: pp.expires };
  const mac = /^L402 macaroon="([^"]+)"/.exec(www.find((l) => l.startsWith('L402 '))!)![1]!;
  const a = (JSON.parse(Buffer.from(String(offer.headers['payment-required']), 'base64').toString()) as { accepts: Array<{ scheme: string; network: string; extra: { invoice: string } }> }).accepts[0]!;
  w.pay(a.extra.invoice);
  return {
    mpp: `Payment ${b64url({ challenge, payload: { preimage } })}`,
    x402: b64({ x402Version: 2, scheme: a.scheme, network: a.network, payload: { invoice: a.extra.invoice }, accepted: a }),
    l402: `L402 ${mac}:${preimage}`,
  };
}

/** A silent standalone l402d over its own TLS, each route (a match and its price) sold through L402, MPP and x402; stopped after test `t`. */
async function startAllSchemes(t: TestContext, name: string, routes: Array<[string, number]>): Promise<StandaloneTlsGate> {
  const c = new Cleanup();
  t.after(() => c.run());
  const config = `lightning: { type: dev }\nroutes:\n${routes.map(([match, msat]) => `  - { match: ${match}, amount_msat: ${msat}, schemes: [l402, mpp, x402] }\n`).join('')}`;
  return startStandaloneTls(c, opensslBin!, { name, level: 'silent', config });
}

/** The header carrying scheme `s`'s credential. */
const carry = (o: Offers, s: 'mpp' | 'x402' | 'l402'): Record<string, string> => (s === 'x402' ? { 'payment-signature': o.x402 } : { authorization: o[s] });

test('standalone with tls: an MPP or x402 charge opens only the route, path and method it was offered for, once, whichever scheme carries the payment', { skip: opensslBin ? false : 'openssl not installed', timeout: 120_000 }, async (t) => {
  const { ca, origin, upstream: up, wallet: w } = await startAllSchemes(t, 'redteam-s11a-tls', [['/a/', 10000], ['/b/', 10000], ['/dear/', 50000]]);
  const req = (path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<HttpsResult> => httpsRequest(ca, origin + path, headers, { method, ...(method === 'POST' ? { body: '' } : {}) });

  const buyAll = async (path: string, method = 'GET'): Promise<Offers> => payEveryOffer(await req(path, {}, method), w);

  // Replayed elsewhere: another path of its route, another route at the same price, a dearer route, another
  // method. Refused each time (a fresh offer), nothing reaches the upstream, and it still pays for its own.
  for (const s of ['mpp', 'x402', 'l402'] as const) {
    const o = await buyAll('/a/x');
    up.reset();
    for (const [path, method] of [['/a/y', 'GET'], ['/a/x/', 'GET'], ['/A/x', 'GET'], ['/b/x', 'GET'], ['/dear/x', 'GET'], ['/a/x', 'POST'], ['/a/x', 'DELETE'], ['/a/x', 'HEAD']] as const) {
      const r = await req(path, carry(o, s), method);
      assert.ok(r.status === 402 || r.status === 401 || r.status === 403, `${s} on ${method} ${path}: ${r.status} ${r.body}`);
    }
    assert.equal(up.hits, 0, `${s}: ${JSON.stringify(up.requests.map((q) => `${q.method} ${q.url}`))}`);
    const own = await req('/a/x', carry(o, s));
    assert.equal(own.status, 200, `${s} on its own request: ${own.body}`);
    const again = await req('/a/x', carry(o, s));
    assert.equal(again.status, s === 'l402' ? 401 : 402, `${s} replayed: ${again.body}`);
    assert.equal(up.hits, 1);
  }

  // One payment under MPP and L402 at once (they share the invoice), each sent several times concurrently on
  // separate connections: exactly one request is served. x402's invoice is its own payment: one more.
  for (let round = 0; round < 3; round++) {
    const o = await buyAll('/a/race');
    up.reset();
    const tries = [...Array(4)].flatMap(() => [req('/a/race', carry(o, 'mpp')), req('/a/race', carry(o, 'l402')), req('/a/race', carry(o, 'x402'))]);
    const got = await Promise.all(tries);
    const served = got.filter((r) => r.status === 200);
    assert.ok(got.every((r) => r.status === 200 || r.status === 402 || r.status === 401), got.map((r) => r.status).join(','));
    assert.equal(served.length, 2, `one served for the shared MPP/L402 invoice and one for x402's: ${got.map((r) => r.status).join(',')}`);
    assert.equal(up.hits, 2);
  }
});

// --- Found: a free path carried the path an upstream serves in a header ---

test('standalone: no request reaches the upstream naming another path or method in a header (X-Original-URL, X-Rewrite-URL, method overrides, any spelling): refused on a free path, dropped on a paid one', async (t) => {
  // An upstream that reads X-Original-URL or X-Rewrite-URL as the request's path (Zend/Laminas, older Symfony,
  // IIS modules) would serve /expensive/ through a free path, or the raw target's `..` unresolved on a paid one.
  const c = new Cleanup();
  t.after(() => c.run());
  const free = await startStandaloneGate(c, { name: 'redteam-s11a-free', level: 'silent', config: `free_paths: ["/public/"]\n${STANDALONE_ROUTES}` });
  const { port, upstream: up } = free;
  const named = ['X-Original-URL', 'X-Rewrite-URL', 'X_Original_URL', 'x-rewrite_url'];
  const overrides = ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override', 'X_HTTP_Method_Override'];
  for (const name of named) {
    const r = await sendTo(port, 'GET', '/public/x', { [name]: '/expensive/secret' });
    assert.ok(r.status >= 400 && r.status < 500, `free path with ${name}: ${r.status} ${r.body}`);
  }
  for (const name of overrides) {
    const r = await sendTo(port, 'GET', '/public/x', { [name]: 'DELETE' });
    assert.ok(r.status >= 400 && r.status < 500, `free path with ${name}: ${r.status} ${r.body}`);
  }
  assert.deepEqual(up.requests.map((q) => q.url), [], 'nothing naming another path or method reached the upstream');
  // The free path itself still passes, with the header naming its own target (as on a paid request).
  const own = await sendTo(port, 'GET', '/public/x', { 'X-Original-URL': '/public/x' });
  assert.equal(own.status, 200, own.body);
  // A paid request whose header names its own raw target (so it is decided) never hands that raw form to the
  // upstream: the cheap credential, on /expensive/../cheap/x (decided, and forwarded, as /cheap/x).
  const auth = await buyStandalone(free, '/cheap/x');
  up.reset();
  for (const name of [...named, ...overrides]) {
    const value = overrides.includes(name) ? 'GET' : '/expensive/../cheap/x';
    const r = await sendTo(port, 'GET', '/expensive/../cheap/x', { authorization: auth, [name]: value });
    assert.equal(r.status, 200, `${name}: ${r.body}`);
  }
  assert.equal(up.hits, named.length + overrides.length);
  for (const q of up.requests) {
    assert.equal(q.url, '/cheap/x');
    const leaked = Object.keys(q.headers).filter((k) => /^x[-_](original[-_]url|rewrite[-_]url|http[-_]method([-_]override)?|method[-_]override)$/i.test(k));
    assert.deepEqual(leaked, [], `the upstream got ${leaked.join(', ')}`);
  }
});

// --- Found: a transfer-coding list was forwarded as the client sent it ---

test('standalone: a Transfer-Encoding other than exactly "chunked" is refused (400) before any decision, as nginx refuses it: an upstream that reads "identity, chunked" as no body would run the body as a request', async () => {
  const inner = 'GET /expensive/inner HTTP/1.1\r\nHost: a\r\n\r\n';
  const chunked = `${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`;
  const auth = await buyStandalone(stack, '/expensive/te', 'POST');
  upstream.reset();
  for (const te of ['identity, chunked', 'gzip, chunked', 'x, chunked', 'identity,chunked', 'foo;a=b, chunked']) {
    for (const who of ['paid', 'unpaid']) {
      const raw = await exchange(`POST /expensive/te HTTP/1.1\r\nHost: a\r\n${who === 'paid' ? `Authorization: ${auth}\r\n` : ''}Transfer-Encoding: ${te}\r\n\r\n${chunked}`);
      assert.equal(statuses(raw)[0], 400, `${who} with ${te}: ${raw.slice(0, 300)}`);
      assert.match(raw, /Connection: close/i, `${who} with ${te}: the connection closes`);
    }
  }
  await settle();
  assert.deepEqual(upstream.requests.map((q) => `${q.method} ${q.url} ${q.headers['transfer-encoding']}`), []);
  // "chunked" in any case, with optional whitespace, still passes, forwarded as plain chunked; the credential was kept.
  const ok = await exchange(`POST /expensive/te HTTP/1.1\r\nHost: a\r\nAuthorization: ${auth}\r\nTransfer-Encoding:  Chunked \r\nConnection: close\r\n\r\n${chunked}`);
  assert.deepEqual(statuses(ok), [200], ok.slice(0, 300));
  assert.equal(upstream.requests[0]!.body, inner);
  assert.equal(upstream.requests[0]!.headers['transfer-encoding'], 'chunked');
});

// --- Found: an x402 offer, a bearer credential once paid, was handed to several requests ---

test('standalone with tls: an x402 offer is never handed to two requests (its invoice paid, the offer alone opens the route): the same refused payment sent twice gets two offers, and one paid opens nothing for the other', { skip: opensslBin ? false : 'openssl not installed', timeout: 60_000 }, async (t) => {
  const { ca, origin, upstream: up, wallet: w } = await startAllSchemes(t, 'redteam-s11a-x402', [['/a/', 10000]]);
  const offerOf = (r: HttpsResult) => (JSON.parse(Buffer.from(String(r.headers['payment-required']), 'base64').toString()) as { accepts: Array<{ scheme: string; network: string; extra: { invoice: string } }> }).accepts[0]!;
  // Two clients behind one address (a NAT, or a CDN in front of l402d) send the same stale or garbage payment
  // (a client library's default, an expired offer): each 402 is an offer of its own.
  for (const stale of ['***', b64({ x402Version: 2, scheme: 'exact', payload: { invoice: 'lnbcrt1stale' } })]) {
    const [victim, other] = await Promise.all([httpsRequest(ca, `${origin}/a/x`, { 'payment-signature': stale }), httpsRequest(ca, `${origin}/a/x`, { 'payment-signature': stale })]);
    assert.equal(victim.status, 402, victim.body);
    assert.equal(other.status, 402, other.body);
    const v = offerOf(victim);
    const o = offerOf(other);
    assert.notEqual(o.extra.invoice, v.extra.invoice, 'one x402 invoice offered to two requests');
    // The victim pays its offer; the other request's offer opens nothing.
    w.pay(v.extra.invoice);
    const stolen = await httpsRequest(ca, `${origin}/a/x`, { 'payment-signature': b64({ x402Version: 2, scheme: o.scheme, network: o.network, payload: { invoice: o.extra.invoice }, accepted: o }) });
    assert.equal(stolen.status, 402, `the other offer opened the route on the victim's payment: ${stolen.body}`);
    const own = await httpsRequest(ca, `${origin}/a/x`, { 'payment-signature': b64({ x402Version: 2, scheme: v.scheme, network: v.network, payload: { invoice: v.extra.invoice }, accepted: v }) });
    assert.equal(own.status, 200, own.body);
  }
  assert.equal(up.hits, 2);
});

// --- Through real nginx (TLS, HTTP/1.1 and HTTP/2) in front of two l402d on one Redis ---

test('through nginx over TLS, two l402d on one Redis: one payment carried as L402, MPP and x402 at once over HTTP/1.1 and HTTP/2 is served once per invoice; replayed on another path, route or method it opens nothing', { skip: !nginxBin || !redisBin || !opensslBin ? 'nginx, redis-server or openssl not installed' : false, timeout: 180_000 }, async (t) => {
  const c = new Cleanup();
  t.after(() => c.run());
  const dir = tempDir(c, 'redteam-s11a-nginx');
  const { cert, key } = makeCert(opensslBin!, dir);
  const ca = readFileSync(cert);
  const redis = c.use(await startRedis());
  const up = c.use(await startCountingUpstream());
  const routes = `lightning: { type: dev }
routes:
  - { match: /a/, amount_msat: 10000, schemes: [l402, mpp, x402] }
  - { match: /b/, amount_msat: 10000, schemes: [l402, mpp, x402] }
`;
  const ports = [await freePort(), await freePort()];
  for (const [i, port] of ports.entries()) {
    const file = join(dir, `gate-${i}.yaml`);
    // Both share the dev wallet dir (the "Lightning node") and Redis (the claim store).
    writeFileSync(file, `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: \${ROOT_KEY}\nstore: { type: redis, url: ${redis.url} }\nlog: { level: error }\n${routes}`);
    c.use(await startGateProcess(file, port, { ROOT_KEY: TEST_ROOT_KEY }));
  }
  const snippets = join(dir, 'snippets');
  writeSnippets(parseConfig(`lightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n`, { env: {} }), snippets);
  const tlsPort = await freePort();
  const locations = ['/a/', '/b/'].map((p) => `location ${p} { include ${snippets}/protect.conf; include ${snippets}/payment-receipts.conf; proxy_pass http://127.0.0.1:${up.port}; }`).join('\n');
  c.use(
    await startNginx({
      workers: 2,
      http: `${withUpstream(snippets, `server 127.0.0.1:${ports[0]}; server 127.0.0.1:${ports[1]}; keepalive 16;`)}
      server { listen 127.0.0.1:${tlsPort} ssl http2; ssl_certificate ${cert}; ssl_certificate_key ${key};
        include ${snippets}/server.conf;
        ${locations} }`,
    }),
  );
  const w = DevWallet.open(dir);
  c.add(() => w.close());
  const origin = `https://127.0.0.1:${tlsPort}`;
  const h2 = connectH2(origin, { ca });
  c.add(() => h2.destroy());
  const viaH2 = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const r = h2.request({ ':path': path, ':method': method, accept: 'application/json', ...headers }, { endStream: true });
      let status = 0;
      let body = '';
      r.on('response', (h) => (status = Number(h[':status'])));
      r.on('data', (b: Buffer) => (body += b.toString()));
      r.on('end', () => resolve({ status, body }));
      r.on('error', reject);
      r.setTimeout(20_000, () => r.close());
    });
  const viaH1 = (path: string, headers: Record<string, string> = {}, method = 'GET') => httpsRequest(ca, origin + path, headers, { method });

  const buyAll = async (path: string): Promise<Offers> => payEveryOffer(await viaH1(path), w);

  for (let round = 0; round < 3; round++) {
    const o = await buyAll('/a/race');
    up.reset();
    const tries: Array<Promise<{ status: number }>> = [];
    for (let i = 0; i < 4; i++) for (const s of ['mpp', 'l402', 'x402'] as const) tries.push(viaH1('/a/race', carry(o, s)), viaH2('/a/race', carry(o, s)));
    const got = (await Promise.all(tries)).map((r) => r.status);
    assert.ok(got.every((s) => s === 200 || s === 401 || s === 402), got.join(','));
    assert.equal(got.filter((s) => s === 200).length, 2, `one for the invoice L402 and MPP share, one for x402's: ${got.join(',')}`);
    assert.equal(up.hits, 2);
  }
  for (const s of ['mpp', 'x402', 'l402'] as const) {
    const o = await buyAll('/a/x');
    up.reset();
    for (const [path, method] of [['/a/y', 'GET'], ['/b/x', 'GET'], ['/a/x', 'POST'], ['/a/x', 'HEAD']] as const) {
      for (const send of [viaH1, viaH2]) {
        const r = await send(path, carry(o, s), method);
        assert.ok(r.status === 401 || r.status === 402 || r.status === 403, `${s} on ${method} ${path}: ${r.status}`);
      }
    }
    assert.equal(up.hits, 0, `${s}: ${JSON.stringify(up.requests.map((q) => `${q.method} ${q.url}`))}`);
    assert.equal((await viaH2('/a/x', carry(o, s))).status, 200, `${s} on its own request`);
    assert.ok([401, 402].includes((await viaH1('/a/x', carry(o, s))).status), `${s} replayed`);
    assert.equal(up.hits, 1);
  }
});

// --- Found: a "\" in a paid path was forwarded (as %5C) to an upstream that may read it as "/" ---

test('standalone: a "\\" in the path, raw or encoded, is refused (400 ambiguous_path) before any decision, as behind nginx: IIS and other Windows servers read it as "/", so /cheap/..%5Cexpensive/x would serve /expensive/x on a cheap credential', async () => {
  const cheap = await buyStandalone(stack, '/cheap/x');
  upstream.reset();
  for (const target of ['/cheap/..\\expensive/x', '/cheap/..%5Cexpensive/x', '/cheap/..%5cexpensive%5cx', '/cheap/%2e%2e%5cexpensive', '/cheap/a\\b', '/expensive\\x']) {
    for (const auth of [cheap, undefined]) {
      const raw = await exchange(`GET ${target} HTTP/1.1\r\nHost: a\r\n${auth ? `Authorization: ${auth}\r\n` : ''}Connection: close\r\n\r\n`);
      assert.equal(statuses(raw)[0], 400, `${target}: ${raw.slice(0, 300)}`);
      assert.match(raw, /"reason":"ambiguous_path"/, target);
    }
  }
  await settle();
  assert.deepEqual(upstream.requests.map((q) => q.url), []);
  const own = await exchange(`GET /cheap/x HTTP/1.1\r\nHost: a\r\nAuthorization: ${cheap}\r\nConnection: close\r\n\r\n`);
  assert.deepEqual(statuses(own), [200], own.slice(0, 300));
});

// --- Prepaid balances, standalone, two l402d on one SQLite store and a restart ---

test('standalone balances: a top-up presented concurrently to two l402d, again after a restart, and the first payment again are each credited once; a balance credential opens no other route', { timeout: 120_000 }, async (t) => {
  const stop = new Cleanup();
  t.after(() => stop.run());
  const dir = tempDir(stop, 'redteam-s11a-balance');
  const up = await startCountingUpstream();
  t.after(() => up.stop());
  const gates: Array<{ close(): Promise<void> }> = [];
  t.after(async () => {
    for (const g of gates) await g.close();
  });
  const start = async (): Promise<number> => {
    const port = await freePort();
    const cfg = standaloneConfig({
      port,
      dir,
      upstreamPort: up.port,
      level: 'silent',
      body: `lightning: { type: dev }
routes:
  - { match: /m/, amount_msat: 1000, access: balance, balance_msat: 3000 }
  - { match: /n/, amount_msat: 1000, access: balance, balance_msat: 3000 }
  - { match: /p/, amount_msat: 1000 }
`,
    });
    const g = await startGate(cfg, { log: createLogger('silent') });
    gates.push(g);
    return port;
  };
  const a = await start();
  const b = await start();
  const w = DevWallet.open(dir);
  t.after(() => w.close());
  const get = (port: number, path: string, auth?: string) => sendTo(port, 'GET', path, auth ? { authorization: auth } : {});
  const offer = JSON.parse((await get(a, '/m/x')).body) as { macaroon: string; invoice: string };
  const first = `L402 ${offer.macaroon}:${w.pay(offer.invoice).toString('hex')}`;
  // The first payment, presented concurrently to both: 3000 msat, three requests, credited once.
  up.reset();
  const burst = await Promise.all([...Array(8)].map((_, i) => get(i % 2 ? a : b, '/m/x', first)));
  assert.equal(burst.filter((r) => r.status === 200).length, 3, burst.map((r) => r.status).join(','));
  const empty = burst.find((r) => r.status === 402)!;
  const topup = JSON.parse(empty.body) as { macaroon: string; invoice: string };
  assert.equal(topup.macaroon, offer.macaroon, 'the top-up keeps the credential');
  // Another balance route, and a single-use route: the balance credential opens neither.
  for (const path of ['/n/x', '/p/x']) assert.equal((await get(a, path, first)).status, 401, path);
  const topped = `L402 ${offer.macaroon}:${w.pay(topup.invoice).toString('hex')}`;
  const again = await Promise.all([...Array(8)].map((_, i) => get(i % 2 ? a : b, '/m/x', topped)));
  assert.equal(again.filter((r) => r.status === 200).length, 3, again.map((r) => r.status).join(','));
  assert.equal(up.hits, 6);
  // A restart of both (the store is the data_dir's SQLite): neither payment is credited again.
  for (const g of gates.splice(0)) await g.close();
  const c = await start();
  for (const auth of [topped, first]) {
    const r = await get(c, '/m/x', auth);
    assert.equal(r.status, 402, `credited again after the restart: ${r.body}`);
  }
  assert.equal(up.hits, 6);
});
