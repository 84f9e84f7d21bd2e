// Standalone reverse-proxy mode (`upstream:` set, no nginx): the upstream is sent exactly the path the
// payment decision was made on, so an encoded "/../" cannot make l402d price one route and serve another.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, startCountingUpstream, type CountingUpstream } from './harness.js';
import { buyStandalone, sendTo, startStandalone, type Standalone } from './standalone-fixture.js';
import { TEST_ROOT_KEY } from './gate-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { normalizePath } from '../../src/policy/routes.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';

const cleanup = new Cleanup();
let port: number;
let upstream: CountingUpstream;
let stack: Standalone;

before(async () => {
  stack = await startStandalone(cleanup, 'standalone');
  ({ port, upstream } = stack);
});
after(() => cleanup.run());

/** One request with the request-target sent exactly as given (no client-side URL normalisation). */
const raw = (path: string, headers: Record<string, string> = {}) => sendTo(port, 'GET', path, headers);
const buy = (path: string) => buyStandalone(stack, path);

test('a cheap credential cannot reach an expensive route through an encoded "/../"', async () => {
  const cheap = await buy('/cheap/x');
  upstream.reset();
  for (const attack of ['/expensive/a%2F..%2F..%2Fcheap/x', '/expensive/a%2f%2e%2e%2f%2e%2e%2fcheap/x', '/expensive/%2E%2E/cheap/x', '/expensive/..%2Fcheap/x?q=1']) {
    upstream.reset();
    const r = await raw(attack, { authorization: cheap });
    // Priced as /cheap/x (nginx's reading of the path), so it is served as /cheap/x, never as /expensive/….
    assert.equal(r.status, 200, `${attack}: ${r.body}`);
    assert.equal(upstream.hits, 1);
    const got = upstream.requests[0]!.url;
    assert.equal(got.split('?')[0], '/cheap/x', `${attack} was paid as /cheap/x but forwarded as ${got}`);
  }
  for (const r of upstream.requests) assert.ok(!r.url.startsWith('/expensive'), `upstream served ${r.url} on a /cheap/ credential`);
  // The expensive route itself still needs its own payment.
  assert.equal((await raw('/expensive/a', { authorization: cheap })).status, 401);
});

test('the upstream decodes the forwarded path to exactly the path that was paid for; the query is kept as sent', async () => {
  const cheap = await buy('/cheap/x');
  const cases = [
    '/cheap/x',
    '/cheap/a%20b',
    '/cheap/%3F%23x',
    '/cheap/100%25',
    '/cheap//x/./y/../z/',
    '/cheap/caf%C3%A9',
    "/cheap/%7e;a=b,c@d:e$f&g+h!i*j'k(l)",
    '/cheap/x?y=%2F..&z=%zz&w',
    '/cheap/%2e%2e%2fcheap/q?',
    '/cheap/x#frag',
  ];
  for (const target of cases) {
    upstream.reset();
    const r = await raw(target, { authorization: cheap });
    assert.equal(r.status, 200, `${target}: ${r.body}`);
    const got = upstream.requests[0]!.url;
    assert.equal(normalizePath(got), normalizePath(target), `${target} forwarded as ${got}`);
    // Already normalised: nothing left for the upstream to resolve differently.
    const gotPath = got.split('?')[0]!;
    assert.ok(!/%2f|%2e|\/\.\.?(\/|$)|\/\//i.test(gotPath), `${target} forwarded as ${got}`);
    const q = target.split('#')[0]!.indexOf('?');
    assert.equal(got.slice(gotPath.length), q >= 0 ? target.split('#')[0]!.slice(q) : '', `${target}: query string`);
  }
  // A "\\" (raw or %5C) is refused before any decision, as behind nginx: Windows servers read it as "/"
  // (redteam-s11a.test.ts).
  upstream.reset();
  for (const target of ['/cheap/a%5Cb', '/cheap/a\\b']) {
    const r = await raw(target, { authorization: cheap });
    assert.equal(r.status, 400, `${target}: ${r.body}`);
  }
  assert.equal(upstream.hits, 0);
});

test('a per-request credential bought for an encoded path is forwarded to that path', async () => {
  const target = '/expensive/a%20b%3Fc%25d?page=2';
  const auth = await buy(target);
  upstream.reset();
  const r = await raw(target, { authorization: auth });
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(upstream.requests.map((x) => x.url), ['/expensive/a%20b%3Fc%25d?page=2']);
  assert.equal((await raw(target, { authorization: auth })).status, 401, 'single use');
});

test('";" is forwarded encoded, so a servlet container cannot strip "..;params" into a traversal', async () => {
  const { forwardTarget } = await import('../../src/server/http-server.js');
  // What l402d decided on for "/cheap/%2e%2e%3bjsessionid=1/expensive": the segment "..;jsessionid=1".
  const target = forwardTarget('/cheap/..;jsessionid=1/expensive', '/cheap/%2e%2e%3bjsessionid=1/expensive?a=1');
  assert.equal(target, '/cheap/..%3Bjsessionid=1/expensive?a=1');
  assert.equal(decodeURIComponent(target.split('?')[0]!), '/cheap/..;jsessionid=1/expensive', 'the same path once decoded');
});

/** One request with any method and repeated headers (arrays), to a given l402d port. */
const send = (method: string, path: string, headers: Record<string, string | string[]>, to = port) => sendTo(to, method, path, headers);

const FORGED = { 'x-l402-token-id': 'forged', 'x-l402-rail': 'forged', 'x-l402-route': 'forged', 'x-l402-amount-msat': '1' };

test('standalone: the upstream gets identity headers, never the payment credential; forged identity is dropped', async () => {
  upstream.reset();
  assert.equal((await send('GET', '/expensive/id', FORGED)).status, 402);
  assert.equal(upstream.hits, 0);
  const auth = await buy('/expensive/id');
  const r = await send('GET', '/expensive/id', { ...FORGED, authorization: auth, 'x-cashu': 'cashuBforged' });
  assert.equal(r.status, 200, r.body);
  const h = upstream.requests.at(-1)!.headers;
  assert.equal(h.authorization, undefined);
  assert.equal(h['x-cashu'], undefined);
  assert.equal(h['x-l402-rail'], 'lightning');
  assert.equal(h['x-l402-route'], '/expensive/');
  assert.match(String(h['x-l402-token-id']), /^[0-9a-f]{64}$/);
  assert.equal(h['x-l402-amount-msat'], undefined);
});

test('standalone: two different credentials are refused, not one of them picked; 220 headers lose nothing', async () => {
  const a = await buy('/expensive/dup');
  const b = await buy('/expensive/dup');
  upstream.reset();
  const pairs: Array<Record<string, string[] | string>> = [{ Authorization: [a, b] }, { authorization: [b, a] }, { authorization: a, 'X-Cashu': ['cashuBx', 'cashuBy'] }];
  for (const both of pairs) {
    const r = await send('GET', '/expensive/dup', both);
    assert.equal(r.status, 401, r.body);
    assert.equal(JSON.parse(r.body).reason, 'malformed_credential');
  }
  assert.equal(upstream.hits, 0);
  // Neither was spent; the same credential twice is one credential.
  assert.equal((await send('GET', '/expensive/dup', { authorization: [a, a] })).status, 200);
  const many: Record<string, string> = {};
  for (let i = 0; i < 220; i++) many[`x-h${i}`] = String(i);
  assert.equal((await send('GET', '/expensive/dup', { ...many, authorization: b })).status, 200);
  assert.equal(upstream.hits, 2);
});

test('standalone: a method Node cannot parse gets a problem document; one it can is decided as itself', async () => {
  upstream.reset();
  const reply = await new Promise<string>((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write('FOO_BAR /expensive/m HTTP/1.1\r\nHost: x\r\n\r\n'));
    let out = '';
    sock.on('data', (c: Buffer) => (out += c.toString()));
    sock.on('end', () => resolve(out));
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
  });
  assert.match(reply, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(reply, /Content-Type: application\/problem\+json/);
  assert.equal(JSON.parse(reply.split('\r\n\r\n')[1]!).reason, 'bad_method');
  const get = await buy('/expensive/m');
  const ms = await send('M-SEARCH', '/expensive/m', { authorization: get });
  assert.equal(ms.status, 401);
  assert.equal(JSON.parse(ms.body).reason, 'wrong_method');
  assert.equal((await send('M-SEARCH', '/expensive/m', {})).status, 402);
  assert.equal(upstream.hits, 0);
  assert.equal((await send('GET', '/expensive/m', { authorization: get })).status, 200);
});

test('standalone: forward_payment_credentials: true passes the credential on, identity still replaces forged headers', async (t) => {
  const local = new Cleanup();
  t.after(() => local.run());
  const dir = mkdtempSync(join(tmpdir(), 'l402-standalone-fwd-'));
  local.add(() => rmSync(dir, { recursive: true, force: true }));
  const up = local.use(await startCountingUpstream());
  const p = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${p}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${up.port}\nlog: { level: warn }\nlightning: { type: dev }\nforward_payment_credentials: true
routes:
  - { match: /expensive/, amount_msat: 900000 }
`,
    { env: {} },
  );
  const gate = await startGate(cfg, { log: createLogger('warn') });
  local.add(() => gate.close());
  const w = DevWallet.open(dir);
  local.add(() => w.close());
  const c = JSON.parse((await send('GET', '/expensive/f', {}, p)).body) as { macaroon: string; invoice: string };
  const auth = `L402 ${c.macaroon}:${w.pay(c.invoice).toString('hex')}`;
  assert.equal((await send('GET', '/expensive/f', { ...FORGED, authorization: auth, 'x-cashu': 'cashuBx' }, p)).status, 200);
  const h = up.requests.at(-1)!.headers;
  assert.equal(h.authorization, auth);
  assert.equal(h['x-cashu'], 'cashuBx');
  assert.equal(h['x-l402-rail'], 'lightning');
  assert.notEqual(h['x-l402-token-id'], 'forged');
});
