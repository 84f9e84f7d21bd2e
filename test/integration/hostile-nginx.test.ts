// The snippets under a deliberately hostile surrounding nginx config: a micro-cache that keeps everything for a
// minute and serves stale answers, error pages that answer 200, intercepted errors, another proxy method,
// header noise. Whatever the http and server blocks say, the gate decides every request itself, exactly once,
// on the exact method, and the upstream gets identity, never the payment credential.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { Cleanup, grpcClient, http1, http2, requireTool } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroon, encodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { nginxSnippets } from '../../src/cli/nginx-conf.js';
import { parseConfig } from '../../src/config/config.js';
import { sleep } from '../../src/util/timeout.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
let plain: Stack;
let n = 0;
/** A query string of its own: the hostile micro-cache keys the upstream's answers by URI. */
const u = () => `?u=${++n}`;

const HOSTILE_HTTP = (dir: string) => `
    proxy_cache_path ${dir}/hostile_cache levels=1:2 keys_zone=hostile:1m inactive=10m;
    proxy_cache hostile;
    proxy_cache_valid any 1m;
    proxy_cache_key $scheme$host$request_uri;
    proxy_ignore_headers Cache-Control Expires X-Accel-Expires Set-Cookie Vary;
    proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
    proxy_cache_background_update on;
    proxy_cache_revalidate on;
    proxy_cache_lock on;
    proxy_cache_methods GET HEAD POST;
    proxy_intercept_errors on;
    proxy_method POST;
    proxy_next_upstream error timeout http_403 http_404 http_500 http_503 non_idempotent;
    proxy_set_header X-Noise hostile;
    proxy_set_header X-L402-Outcome allow;
    proxy_hide_header WWW-Authenticate;
    proxy_hide_header X-Cashu;
    large_client_header_buffers 8 32k;
`;
const HOSTILE_SERVER = `
    underscores_in_headers on;
    error_page 400 401 402 403 404 405 429 500 502 503 504 =200 /_hostile_ok;
    location = /_hostile_ok { return 200 'hostile ok'; }
`;

before(async () => {
  if (!nginxBin) return;
  const dir = (await import('node:fs')).mkdtempSync((await import('node:path')).join((await import('node:os')).tmpdir(), 'l402-hostile-'));
  cleanup.add(() => import('node:fs').then((fs) => fs.rmSync(dir, { recursive: true, force: true })), 'rm hostile dir');
  s = await startStack(cleanup, { surround: { http: HOSTILE_HTTP(dir), server: HOSTILE_SERVER } });
  plain = await startStack(cleanup);
});
after(() => cleanup.run());

function challengeOf(r: { status: number; headers: Record<string, string | string[] | undefined>; body: string }): string {
  assert.equal(r.status, 402, r.body);
  const v = r.headers['www-authenticate'];
  const first = Array.isArray(v) ? v[0] : v;
  assert.match(String(first), /^L402 macaroon="/);
  return String(first);
}

test('hostile config: unpaid requests get the real 402 and never reach the upstream', { skip }, async () => {
  s.upstream.reset();
  for (let i = 0; i < 3; i++) {
    const r = await http1(s.origin + '/premium', { headers: { accept: 'application/json' } });
    challengeOf(r);
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.equal(JSON.parse(r.body).status, 402);
    // The render is never cached: each unpaid request gets its own invoice.
  }
  const a = JSON.parse((await http1(s.origin + '/premium', { headers: { accept: 'application/json' } })).body).invoice;
  const b = JSON.parse((await http1(s.origin + '/premium', { headers: { accept: 'application/json' } })).body).invoice;
  assert.notEqual(a, b);
  const head = await http1(s.origin + '/premium', { method: 'HEAD' });
  assert.equal(head.status, 402);
  const post = await http1(s.origin + '/premium', { method: 'POST', body: 'x=1', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' } });
  assert.equal(post.status, 402);
  assert.equal(s.upstream.hits, 0);
});

test('hostile config: a single-use credential passes exactly once; a refusal is not turned into 200', { skip }, async () => {
  s.upstream.reset();
  const { auth } = await s.buy('/premium');
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push((await http1(s.origin + '/premium', { headers: { authorization: auth, accept: 'application/json' } })).status);
  assert.deepEqual(statuses, [200, 401, 401, 401]);
  assert.equal(s.upstream.hits, 1);
});

test('hostile config: a reusable credential still passes; a wrong one is refused', { skip }, async () => {
  s.upstream.reset();
  const t = await s.buy('/timed/ok');
  for (let i = 0; i < 3; i++) assert.equal((await http1(s.origin + `/timed/ok?i=${i}`, { headers: { authorization: t.auth } })).status, 200);
  const wrong = t.auth.replace(/:[0-9a-f]{64}$/, ':' + '00'.repeat(32));
  assert.equal((await http1(s.origin + '/timed/ok?w', { headers: { authorization: wrong, accept: 'application/json' } })).status, 401);
  assert.equal(s.upstream.hits, 3);
});

test('methods nginx accepts but no route names: decided as themselves, never as GET', { skip }, async () => {
  for (const st of [plain, s]) {
    st.upstream.reset();
    for (const method of ['FOO_BAR', 'M-SEARCH', 'ABCDEFGHIJKLMNOPQRST']) {
      const r = await http1(st.origin + '/premium', { method, headers: { accept: 'application/json' } });
      assert.equal(r.status, 402, `${method}: ${r.body}`);
      challengeOf(r);
      assert.equal(JSON.parse(r.body).status, 402);
      // A GET/HEAD-only route refuses them with its 405, not a challenge for GET.
      const g = await http1(st.origin + '/getonly', { method, headers: { accept: 'application/json' } });
      assert.equal(g.status, 405, `${method} /getonly: ${g.body}`);
      assert.equal(g.headers.allow, 'GET, HEAD');
    }
    // A GET-bound single-use credential opens none of them, and is not spent by them.
    const { auth } = await st.buy('/premium');
    for (const method of ['FOO_BAR', 'M-SEARCH', 'ABCDEFGHIJKLMNOPQRST', 'GET_']) {
      const r = await http1(st.origin + '/premium', { method, headers: { authorization: auth, accept: 'application/json' } });
      assert.equal(r.status, 401, `${method} with a GET credential: ${r.body}`);
      assert.equal(JSON.parse(r.body).reason, 'wrong_method');
    }
    assert.equal(st.upstream.hits, 0);
    assert.equal((await http1(st.origin + '/premium', { headers: { authorization: auth } })).status, 200);
    // A credential bought for M-SEARCH opens M-SEARCH (once), not GET or FOO_BAR. (The test upstream is Node,
    // which cannot parse FOO_BAR itself; the hostile config proxies every method as POST.)
    const bought = await st.buy('/premium', 'M-SEARCH');
    for (const method of ['GET', 'FOO_BAR', 'M-SEARCH_']) {
      assert.equal((await http1(st.origin + '/premium', { method, headers: { authorization: bought.auth } })).status, 401, method);
    }
    assert.equal((await http1(st.origin + '/premium' + u(), { method: 'M-SEARCH', headers: { authorization: bought.auth } })).status, 200);
    assert.equal(st.upstream.requests.at(-1)?.method, st === plain ? 'M-SEARCH' : 'POST');
    assert.equal((await http1(st.origin + '/premium' + u(), { method: 'M-SEARCH', headers: { authorization: bought.auth } })).status, 401);
    // A lower-case method: nginx 1.22 refuses it itself (400); never decided nor forwarded.
    st.upstream.reset();
    const port = Number(new URL(st.origin).port);
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1', () => sock.write(`get /premium HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nConnection: close\r\n\r\n`));
      let out = '';
      sock.on('data', (c: Buffer) => (out += c.toString()));
      sock.on('end', () => resolve(out));
      sock.on('error', reject);
      sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
    });
    // (The hostile server's error_page turns nginx's 400 into its own "hostile ok" page.)
    assert.match(reply, st === plain ? /^HTTP\/1\.1 400 / : /^HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nhostile ok$/);
    assert.equal(st.upstream.hits, 0);
  }
});

test('a method l402d cannot represent, or none at all, is refused (405 bad_method), never decided as GET', { skip }, async () => {
  plain.upstream.reset();
  const { auth } = await plain.buy('/premium');
  const long = 'A'.repeat(70);
  for (const path of ['/premium', '/getonly']) {
    const r = await http1(plain.origin + path, { method: long, headers: { authorization: auth, accept: 'application/json' } });
    assert.equal(r.status, 405, r.body);
    assert.equal(JSON.parse(r.body).reason, 'bad_method');
  }
  // Straight to l402d (as a misconfigured nginx would call it): no X-Original-Method, or one nginx never sends.
  const gate = `http://${plain.cfg.listen}`;
  for (const method of [undefined, 'get', 'G ET', 'GET, GET', long]) {
    const headers: Record<string, string> = { 'x-original-uri': '/premium', 'x-l402-uri': '/premium', authorization: auth };
    if (method !== undefined) headers['x-original-method'] = method;
    const a = await http1(gate + '/_l402/auth', { headers });
    assert.equal(a.status, 401, `${method}`);
    assert.deepEqual([a.headers['x-l402-outcome'], a.headers['x-l402-reason'], a.headers['x-accel-expires']], ['method_not_allowed', 'bad_method', '0']);
    const r = await http1(gate + '/_l402/render', { headers: { ...headers, 'x-l402-outcome': 'challenge', 'x-l402-reason': 'no_credential', accept: 'application/json' } });
    assert.equal(r.status, 405, `${method}`);
    assert.equal(r.headers['x-accel-expires'], '0');
  }
  // The credential was not spent by any of it.
  assert.equal(plain.upstream.hits, 0);
  assert.equal((await http1(plain.origin + '/premium', { headers: { authorization: auth } })).status, 200);
});

test('220 small headers before Authorization: the paid request passes', { skip }, async () => {
  for (const st of [plain, s]) {
    st.upstream.reset();
    const { auth } = await st.buy('/premium');
    const headers: Record<string, string> = {};
    for (let i = 0; i < 220; i++) headers[`x-h${i}`] = String(i);
    headers.authorization = auth;
    const r = await http1(st.origin + '/premium' + u(), { headers });
    assert.equal(r.status, 200, r.body);
    assert.equal(st.upstream.hits, 1);
  }
});

test('the upstream gets identity, never the payment credential (HTTP/1.1, HTTP/2); forged identity is dropped', { skip }, async () => {
  for (const st of [plain, s]) {
    st.upstream.reset();
    const forged = { 'x-l402-token-id': 'forged', 'x-l402-rail': 'forged', 'x-l402-route': 'forged', 'x-l402-amount-msat': '1' };
    // Unpaid with forged identity: refused, and the forged headers never travel anywhere.
    assert.equal((await http1(st.origin + '/premium', { headers: { ...forged, accept: 'application/json' } })).status, 402);
    const { auth, macaroon } = await st.buy('/premium');
    const ok = await http1(st.origin + '/premium' + u(), { headers: { ...forged, authorization: auth, 'x-cashu': 'cashuBforged', x_cashu: 'cashuBforged2' } });
    assert.equal(ok.status, 200);
    const h = st.upstream.requests.at(-1)!.headers;
    assert.equal(h.authorization, undefined);
    assert.equal(h['x-cashu'], undefined);
    assert.equal(h.x_cashu, undefined);
    assert.equal(h['x-l402-rail'], 'lightning');
    assert.equal(h['x-l402-route'], '/premium');
    assert.match(String(h['x-l402-token-id']), /^[0-9a-f]{64}$/);
    assert.equal(h['x-l402-amount-msat'], undefined);
    assert.ok(!JSON.stringify(h).includes(macaroon.slice(0, 40)));
    // Two different Authorization headers: nginx refuses the request itself (400), nothing is decided.
    const two = await st.buy('/premium');
    const hits = st.upstream.hits;
    const dup = await http1(st.origin + '/premium' + u(), { headers: { authorization: [two.auth, auth] } });
    // (The hostile server's error_page turns nginx's 400 into its own "hostile ok" page.)
    assert.equal(dup.status, st === plain ? 400 : 200);
    assert.ok(!dup.body.includes('"ok":true'));
    assert.equal(st.upstream.hits, hits);
    assert.equal((await http1(st.origin + '/premium' + u(), { headers: { authorization: two.auth } })).status, 200);
    // HTTP/2.
    const h2origin = `http://127.0.0.1:${st.h2Port}`;
    const c = JSON.parse((await http2(h2origin, '/premium', { headers: { accept: 'application/json' } })).body) as { macaroon: string; invoice: string };
    const a2 = `L402 ${c.macaroon}:${st.wallet.pay(c.invoice).toString('hex')}`;
    assert.equal((await http2(h2origin, '/premium' + u(), { headers: { ...forged, authorization: a2 } })).status, 200);
    const h2 = st.upstream.requests.at(-1)!.headers;
    assert.equal(h2.authorization, undefined);
    assert.equal(h2['x-l402-rail'], 'lightning');
    assert.notEqual(h2['x-l402-token-id'], 'forged');
    assert.equal(st.upstream.hits, 3);
    // The app's own Authorization scheme is not the gate's: it passes (here on a dry-run route, where the
    // request passes unpaid, so nothing claims to have paid).
    assert.equal((await http1(st.origin + '/shadow' + u(), { headers: { ...forged, authorization: 'Bearer app-token' } })).status, 200);
    const h3 = st.upstream.requests.at(-1)!.headers;
    assert.equal(h3.authorization, 'Bearer app-token');
    assert.equal(h3['x-l402-token-id'], undefined);
    assert.equal(h3['x-l402-rail'], undefined);
  }
});

test('gRPC: the upstream never sees the authorization or token metadata, and gets the identity', { skip }, async () => {
  for (const st of [plain, s]) {
    st.grpcUp.reset();
    const client = grpcClient(st.h2Port);
    try {
      const e = (await client.getContent({ id: 'a' }, { 'x-l402-token-id': 'forged' }).catch((err: grpc.ServiceError) => err)) as grpc.ServiceError;
      assert.equal(e.code, 13);
      assert.equal(st.grpcUp.calls, 0);
      const m = /macaroon="([^"]+)", invoice="([^"]+)"/.exec(String(e.metadata.get('www-authenticate')[0]))!;
      const auth = `L402 ${m[1]}:${st.wallet.pay(m[2]!).toString('hex')}`;
      await client.getContent({ id: 'a' }, { authorization: auth, 'x-l402-token-id': 'forged' });
      const md = st.grpcUp.metadata.at(-1)!;
      assert.equal(md.authorization, undefined);
      assert.match(String(md['x-l402-token-id']), /^[0-9a-f]{64}$/);
      assert.equal(md['x-l402-rail'], 'lightning');
      // Spec form: hex macaroon in `token` metadata, next to the app's own Bearer token.
      const e2 = (await client.getContent({ id: 'b' }).catch((err: grpc.ServiceError) => err)) as grpc.ServiceError;
      const m2 = /macaroon="([^"]+)", invoice="([^"]+)"/.exec(String(e2.metadata.get('www-authenticate')[0]))!;
      const pre = st.wallet.pay(m2[2]!).toString('hex');
      const hexMac = encodeMacaroon(attenuate(decodeMacaroonBase64(m2[1]!), `preimage=${pre}`)).toString('hex');
      await client.getContent({ id: 'b' }, { token: hexMac, macaroon: hexMac, authorization: 'Bearer app' });
      const md2 = st.grpcUp.metadata.at(-1)!;
      assert.equal(md2.token, undefined);
      assert.equal(md2.macaroon, undefined);
      assert.equal(md2.authorization, 'Bearer app');
      assert.match(String(md2['x-l402-token-id']), /^[0-9a-f]{64}$/);
      assert.equal(st.grpcUp.calls, 2);
    } finally {
      client.close();
    }
  }
});

test('forward_payment_credentials: the snippets stop stripping, identity still replaces client headers', () => {
  const off = nginxSnippets({ ...parseConfig('lightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n', { env: {} }), listen: '127.0.0.1:8402', retryAfterSecs: 5 })['protect.conf'];
  const on = nginxSnippets({ ...parseConfig('lightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n', { env: {} }), listen: '127.0.0.1:8402', retryAfterSecs: 5, forwardPaymentCredentials: true })['protect.conf'];
  assert.match(off, /proxy_set_header Authorization \$l402_upstream_authorization;/);
  assert.match(off, /grpc_set_header Token "";/);
  assert.doesNotMatch(on, /Authorization|X-Cashu ""|Token ""/);
  assert.match(on, /proxy_set_header X-L402-Token-Id \$l402_token_id;/);
});

test('hostile config: the browser credential cookie is set (never cached), spent once on a single-use route, and never reaches the upstream', { skip }, async () => {
  const host = new URL(s.origin).host;
  const setCookie = async (auth: string, uri: string) => {
    const form = new URLSearchParams({ credential: auth.slice(5), uri }).toString();
    const r = await http1(s.origin + '/_l402/page/cookie', { method: 'POST', headers: { origin: `http://${host}`, 'content-type': 'application/x-www-form-urlencoded' }, body: form });
    assert.equal(r.status, 303, r.body);
    assert.equal(r.headers['cache-control'], 'no-store');
    return String([r.headers['set-cookie']].flat()[0]).split(';')[0]!;
  };
  // Cross-origin posts are refused under the hostile error pages too (no "hostile ok").
  const cross = await http1(s.origin + '/_l402/page/cookie', { method: 'POST', headers: { origin: 'http://evil.example', 'content-type': 'application/x-www-form-urlencoded' }, body: 'credential=x&uri=/premium' });
  assert.equal(cross.status, 403, cross.body);
  const once = await s.buy('/premium');
  const c1 = await setCookie(once.auth, '/premium');
  // The same post again is answered by l402d, not from the micro-cache (which ignores Set-Cookie and caches POST).
  const c1again = await setCookie(once.auth, '/premium');
  assert.equal(c1again, c1);
  s.upstream.reset();
  assert.equal((await http1(s.origin + '/premium' + u(), { headers: { cookie: `site=1; ${c1}` } })).status, 200);
  const spent = await http1(s.origin + '/premium' + u(), { headers: { cookie: `site=1; ${c1}`, accept: 'application/json' } });
  assert.equal(spent.status, 401, spent.body);
  assert.equal(JSON.parse(spent.body).reason, 'already_used');
  const timed = await s.buy('/timed/cookie');
  const c2 = await setCookie(timed.auth, '/timed/cookie');
  for (const p of ['/timed/cookie', '/timed/other.css']) assert.equal((await http1(s.origin + p + u(), { headers: { cookie: `${c2}; site=2` } })).status, 200);
  assert.equal(s.upstream.hits, 3);
  assert.deepEqual(s.upstream.requests.map((r) => r.headers.cookie), ['site=1', 'site=2', 'site=2']);
});

// Last: stops l402d of the hostile stack.
test('hostile config: l402d down: an expired timed credential is refused (503), never served from a stale cache entry', { skip }, async () => {
  s.upstream.reset();
  const t = await s.buy('/timed/stale');
  const mac = decodeMacaroonBase64(t.macaroon);
  const until = Math.floor(Date.now() / 1000) + 3;
  const short = `L402 ${encodeMacaroonBase64(attenuate(mac, `${s.cfg.service}_valid_until=${until}`))}:${t.preimage}`;
  for (let i = 0; i < 3; i++) assert.equal((await http1(s.origin + '/timed/stale' + u(), { headers: { authorization: short } })).status, 200);
  // Wait (bounded) until the credential has expired.
  while (Math.floor(Date.now() / 1000) <= until + 1) await sleep(250);
  assert.equal((await http1(s.origin + '/timed/stale', { headers: { authorization: short, accept: 'application/json' } })).status, 401);
  await s.gate.close();
  const started = Date.now();
  for (const headers of [{ authorization: short }, { authorization: t.auth }, {}] as Array<Record<string, string>>) {
    const r = await http1(s.origin + '/timed/stale', { headers: { ...headers, accept: 'application/json' } });
    assert.equal(r.status, 503, r.body);
    assert.equal(JSON.parse(r.body).reason, 'gate_unavailable');
  }
  // An unpaid request to a per-request route, and the public manifest, are not "hostile ok" either.
  assert.equal((await http1(s.origin + '/premium', { headers: { accept: 'application/json' } })).status, 503);
  assert.equal((await http1(s.origin + '/.well-known/l402-services')).status, 503);
  assert.ok(Date.now() - started < 30_000);
  assert.equal(s.upstream.hits, 3);
});
