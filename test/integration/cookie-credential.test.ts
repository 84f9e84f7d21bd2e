// The browser credential cookie at the HTTP level, through real nginx and in standalone mode: it opens what
// the Authorization header it stands for opens, and nothing more; every forged, tampered, expired, foreign,
// replayed, duplicated, oversized or oddly encoded cookie gets a 4xx (never a 5xx); the upstream never sees
// it, while the site's own cookies reach it; and the endpoint that sets it answers same-origin posts only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, type AddressInfo } from 'node:net';
import { createServer } from 'node:http';
import { execFileSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, grpcClient, http1, http2, requireTool, startCountingUpstream, startNginx, type CountingUpstream } from './harness.js';
import { startStack, writeSnippets, type Stack } from './gate-fixture.js';
import { buyStandalone, sendTo, startStandalone, type Standalone } from './standalone-fixture.js';
import { cookieScope, cookieValue } from '../../src/policy/credential-cookie.js';
import type { RouteConfig } from '../../src/config/config.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroonBase64 } from '../../src/protocol/macaroon.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
let alone: Standalone;
let wide: { port: number; cookies: Array<string | undefined> };
/** Behind free locations under a credential cookie's path. */
let free: CountingUpstream;

before(async () => {
  if (skip) return;
  // Operators may allow big headers; the gate must still answer a 4xx for a Cookie header it will not echo.
  free = cleanup.use(await startCountingUpstream());
  // An upstream that reads headers as big as nginx lets through (Node's default stops at 16 KiB).
  const server = createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
    req.resume();
    wide.cookies.push(req.headers.cookie);
    res.end('{"ok":true}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.add(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  wide = { port: (server.address() as AddressInfo).port, cookies: [] };
  // Nothing listens here: the protected upstream of /deadend/ is down.
  const dead = await freePort();
  s = await startStack(cleanup, {
    surround: { server: 'large_client_header_buffers 4 64k;' },
    // A free location under the /timed/ cookie's path, as upstream.conf documents it, and one without the line.
    extra: (dir) => `location /timed/free/ { proxy_set_header Cookie $l402_free_cookie; proxy_pass http://127.0.0.1:${free.port}; }
        location /timed/naive/ { proxy_pass http://127.0.0.1:${free.port}; }
        location /deadend/ { include ${dir}/protect.conf; proxy_pass http://127.0.0.1:${dead}; }
        location /wide/ { include ${dir}/protect.conf; proxy_pass http://127.0.0.1:${wide.port}; }`,
    extraRoutes: '  - { match: /deadend/, amount_msat: 1000 }\n  - { match: /wide/, amount_msat: 1000 }\n',
  });
  alone = await startStandalone(cleanup, 'cookie');
});
after(() => cleanup.run());

function routeOf(match: string, cfgRoutes: RouteConfig[] = s.cfg.routes): RouteConfig {
  return cfgRoutes.find((r) => r.match === match)!;
}
/** The cookie the payment page would have had set for `match`'s route, holding this credential. */
function cookieFor(match: string, auth: string, routes?: RouteConfig[]): string {
  const [mac, pre] = auth.replace(/^L402 /, '').split(':') as [string, string];
  return `${cookieScope(routeOf(match, routes)).name}=${cookieValue(Buffer.from(mac, 'base64'), Buffer.from(pre, 'hex'))}`;
}
const get = (path: string, cookie?: string, extra: Record<string, string> = {}) => http1(s.origin + path, { headers: { accept: 'application/json', ...(cookie !== undefined ? { cookie } : {}), ...extra } });
const reason = (r: { body: string }) => (JSON.parse(r.body) as { reason?: string }).reason;
/** The response head of a request written byte for byte (latin1) on a fresh connection. */
function raw(request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const { port, hostname } = new URL(s.origin);
    const sock = connect(Number(port), hostname, () => sock.write(Buffer.from(request, 'latin1')));
    let got = '';
    sock.setTimeout(10_000, () => sock.destroy(new Error('raw request timed out')));
    sock.on('data', (b: Buffer) => (got += b.toString('latin1')));
    sock.on('end', () => resolve(got.split('\r\n\r\n')[0]!));
    sock.on('error', reject);
  });
}
function invoiceCount(): number {
  const db = new Database(join(s.dataDir, 'dev-wallet.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT COUNT(*) AS n FROM invoices').get() as { n: number }).n;
  } finally {
    db.close();
  }
}
function assertNoGateCookie(where: string): void {
  for (const r of s.upstream.requests) assert.ok(!/l402_/i.test(String(r.headers.cookie ?? '')), `${where}: the upstream got ${String(r.headers.cookie)}`);
}

test('timed and indefinite routes: the cookie opens every page of its route, the upstream gets only the site cookies', { skip }, async () => {
  const { auth } = await s.buy('/timed/a');
  const cookie = cookieFor('/timed/', auth);
  s.upstream.reset();
  for (const path of ['/timed/a', '/timed/b/c.css', '/timed/img.png?x=1']) {
    const r = await get(path, `session=s1; ${cookie}; theme=dark`);
    assert.equal(r.status, 200, `${path}: ${r.body}`);
  }
  assert.equal(s.upstream.hits, 3);
  for (const r of s.upstream.requests) {
    assert.equal(r.headers.cookie, 'session=s1; theme=dark');
    assert.equal(r.headers['x-l402-route'], routeOf('/timed/').id);
    assert.match(String(r.headers['x-l402-token-id']), /^[0-9a-f]{64}$/);
  }
  // The cookie alone: the upstream gets no Cookie header at all.
  s.upstream.reset();
  assert.equal((await get('/timed/d', cookie)).status, 200);
  assert.equal(s.upstream.requests[0]!.headers.cookie, undefined);

  const forever = await s.buy('/forever');
  s.upstream.reset();
  for (let i = 0; i < 3; i++) assert.equal((await get('/forever/x', `a=1; ${cookieFor('/forever', forever.auth)}`)).status, 200);
  assert.equal(s.upstream.hits, 3);
  assertNoGateCookie('indefinite');

  // A dry-run route lets every request through: the credential cookies still stay at the gate.
  s.upstream.reset();
  const shadow = await get('/shadow/x', `session=1; ${cookieScope(routeOf('/shadow')).name}=AAAA; ${cookie}`);
  assert.equal(shadow.status, 200);
  assert.equal(s.upstream.requests[0]!.headers.cookie, 'session=1');
});

test('free locations under a cookie path: $l402_free_cookie passes the site cookies without the gate cookie', { skip }, async () => {
  const { auth } = await s.buy('/timed/f');
  const cookie = cookieFor('/timed/', auth);
  const cases: Array<[string, string | undefined]> = [
    [`session=1; ${cookie}; theme=dark`, 'session=1; theme=dark'],
    [`${cookie}; session=1`, '; session=1'],
    [`session=1;${cookie}`, 'session=1'],
    [cookie, undefined],
    ['session=1; theme=dark', 'session=1; theme=dark'],
    // More than one gate cookie, or the mark elsewhere: no cookie at all (fail closed).
    [`${cookie}; a=1; ${cookie}`, undefined],
    [`a=x${cookie}; b=2`, undefined],
    [`a=1; L402_X=2`, 'a=1'],
  ];
  for (const [sent, forwarded] of cases) {
    free.reset();
    assert.equal((await get('/timed/free/page', sent)).status, 200);
    assert.equal(free.requests[0]!.headers.cookie, forwarded, sent);
  }
  // Without the line, a free location passes the client's cookies as they are (documented).
  free.reset();
  await get('/timed/naive/page', `session=1; ${cookie}`);
  assert.equal(free.requests[0]!.headers.cookie, `session=1; ${cookie}`);
});

test('a request with cookies is never answered from the auth cache: another Cookie header without the credential pays', { skip }, async () => {
  const { auth } = await s.buy('/timed/cache');
  const cookie = cookieFor('/timed/', auth);
  assert.equal((await get('/timed/cache', `${cookie}`)).status, 200);
  assert.equal((await get('/timed/cache', `${cookie}`)).status, 200);
  // Same URL and no Authorization, like the request above: only the Cookie header differs.
  const without = await get('/timed/cache', 'session=other');
  assert.equal(without.status, 402, without.body);
  assert.equal((await get('/timed/cache')).status, 402);
  // The Authorization credential with site cookies: the site cookies pass, never cached with them.
  s.upstream.reset();
  assert.equal((await get('/timed/cache', 'session=x', { authorization: auth })).status, 200);
  assert.equal((await get('/timed/cache', 'session=y', { authorization: auth })).status, 200);
  assert.deepEqual(s.upstream.requests.map((r) => r.headers.cookie), ['session=x', 'session=y'], 'each request its own cookies');
  assert.equal(s.upstream.requests[0]!.headers.authorization, undefined);
});

test('single-use route: the cookie serves exactly one request; the refusal deletes it and offers a fresh invoice', { skip }, async () => {
  const { auth } = await s.buy('/premium');
  const cookie = cookieFor('/premium', auth);
  s.upstream.reset();
  assert.equal((await get('/premium', cookie)).status, 200);
  const again = await get('/premium', cookie);
  assert.equal(again.status, 401);
  assert.equal(reason(again), 'already_used');
  assert.match(String(again.headers['www-authenticate']), /^L402 macaroon="/);
  const cleared = [again.headers['set-cookie'] ?? []].flat();
  assert.deepEqual(cleared, [`${cookieScope(routeOf('/premium')).name}=; Path=/premium; Max-Age=0; HttpOnly; SameSite=Lax`]);
  // The same credential in the Authorization header is spent too: one credential, one use, either way.
  assert.equal(reason(await get('/premium', undefined, { authorization: auth })), 'already_used');
  assert.equal(s.upstream.hits, 1);
  // A spent cookie replayed (a storm, a retrying browser) costs the node one invoice, not one per copy.
  const minted = invoiceCount();
  const storm = await Promise.all(Array.from({ length: 8 }, () => get('/premium', cookie)));
  assert.deepEqual([...new Set(storm.map((r) => r.status))], [401]);
  assert.equal(new Set(storm.map((r) => String(r.headers['www-authenticate']))).size, 1, 'one fresh challenge shared');
  assert.ok(invoiceCount() - minted <= 1, `${invoiceCount() - minted} invoices for 8 copies`);
  // An Authorization refusal never deletes the cookie (the cookie was not the credential).
  const fresh = await s.buy('/premium');
  const r = await get('/premium', cookieFor('/premium', fresh.auth), { authorization: auth });
  assert.equal(r.status, 401);
  assert.equal(r.headers['set-cookie'], undefined);
  assert.equal((await get('/premium', cookieFor('/premium', fresh.auth))).status, 200, 'and the cookie still pays');
});

test('forged, tampered, expired, foreign and duplicated cookies: the normal 401/402 answers, never a 5xx, never the upstream', { skip }, async () => {
  const { auth } = await s.buy('/timed/x');
  const [mac, pre] = auth.replace(/^L402 /, '').split(':') as [string, string];
  const name = cookieScope(routeOf('/timed/')).name;
  const flip = Buffer.from(mac, 'base64');
  flip[flip.length - 3]! ^= 0x40;
  const expired = encodeMacaroonBase64(attenuate(decodeMacaroonBase64(mac), `l402_valid_until=${Math.floor(Date.now() / 1000) - 5}`));
  const forever = await s.buy('/forever');
  const cases: Array<[string, string, number, string | undefined]> = [
    ['random bytes', `${name}=${randomBytes(200).toString('base64url')}:${pre}`, 401, undefined],
    ['tampered', `${name}=${flip.toString('base64url')}:${pre}`, 401, 'bad_signature'],
    ['wrong preimage', `${name}=${cookieValue(Buffer.from(mac, 'base64'), randomBytes(32))}`, 401, 'wrong_preimage'],
    ['expired', `${name}=${cookieValue(Buffer.from(expired, 'base64'), Buffer.from(pre, 'hex'))}`, 401, 'expired'],
    ["another route's credential under this route's name", `${name}=${cookieFor('/forever', forever.auth).split('=')[1]}`, 401, 'wrong_route'],
    ["another route's cookie", cookieFor('/forever', forever.auth), 402, undefined],
    ['two different copies', `${name}=${cookieValue(Buffer.from(mac, 'base64'), Buffer.from(pre, 'hex'))}; ${name}=${cookieValue(Buffer.from(mac, 'base64'), randomBytes(32))}`, 401, 'malformed_credential'],
    ['quoted', `${name}="${cookieValue(Buffer.from(mac, 'base64'), Buffer.from(pre, 'hex'))}"`, 401, 'malformed_credential'],
    ['percent-encoded', `${name}=${encodeURIComponent(cookieValue(Buffer.from(mac, 'base64'), Buffer.from(pre, 'hex')))}`, 401, 'malformed_credential'],
    ['empty', `${name}=`, 401, 'malformed_credential'],
    ['latin-1 bytes', `${name}=\xff\xfe; x=\xe9`, 401, 'malformed_credential'],
    ['no value separator', `${name}`, 402, undefined],
    ['many pairs', `${'a=1; '.repeat(400)}${name}=${cookieValue(Buffer.from(mac, 'base64'), Buffer.from(pre, 'hex'))}`, 402, undefined],
  ];
  s.upstream.reset();
  for (const [what, cookie, status, why] of cases) {
    const r = await get('/timed/x', cookie);
    assert.equal(r.status, status, `${what}: ${r.body}`);
    if (why) assert.equal(reason(r), why, what);
    if (status === 401) assert.match(String(r.headers['set-cookie']), new RegExp(`^${name}=; Path=/timed/; Max-Age=0;`), `${what}: deleted`);
  }
  // Bytes no HTTP client library sends (nginx passes them): written on a raw socket.
  for (const [cookie, status] of [[`a=\x01\x7f; ${name}=zz`, 401], [`\x00x=1; ${name}`, 400], [`a=b; ${name}=\t;;;`, 401]] as const) {
    const head = await raw(`GET /timed/x HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`);
    assert.equal(Number(head.split(' ')[1]), status, `${JSON.stringify(cookie)}: ${head}`);
  }
  assert.equal(s.upstream.hits, 0, 'nothing reached the upstream');
  // Identical copies are one credential.
  const good = cookieFor('/timed/', auth);
  assert.equal((await get('/timed/x', `${good}; other=1; ${good}`)).status, 200);
});

test('HTTP/2: cookie crumbs are one Cookie header to the gate and to the upstream, without the credential', { skip }, async () => {
  const { auth } = await s.buy('/premium');
  s.upstream.reset();
  const r = await http2(`http://127.0.0.1:${s.h2Port}`, '/premium', { headers: { accept: 'application/json', cookie: ['session=1', cookieFor('/premium', auth), 'theme=dark'] } });
  assert.equal(r.status, 200, r.body);
  assert.equal(s.upstream.requests[0]!.headers.cookie, 'session=1; theme=dark');
});

test('gRPC (grpc_pass): a cookie in the metadata is a credential like any other, and the upstream never gets it', { skip }, async () => {
  const client = grpcClient(s.h2Port);
  cleanup.add(() => client.close());
  const err = await client.getContent({ id: 'c1' }).then(() => undefined, (e: { metadata: { get(k: string): unknown[] } }) => e);
  assert.ok(err, 'unpaid call refused');
  const m = /macaroon="([^"]+)", invoice="([^"]+)"/.exec(String(err.metadata.get('www-authenticate')[0]))!;
  const auth = `L402 ${m[1]}:${s.wallet.pay(m[2]!).toString('hex')}`;
  const before = s.grpcUp.calls;
  const res = await client.getContent({ id: 'c1' }, { cookie: `session=1; ${cookieFor('/content.ContentService/', auth)}` });
  assert.equal(res.body, 'content for c1');
  assert.equal(s.grpcUp.calls, before + 1);
  assert.equal(s.grpcUp.metadata.at(-1)!.cookie, 'session=1');
});

test('the page offers the cookie only where the snippets serve its endpoint (X-L402-Scheme), never to an older server.conf', { skip }, async () => {
  const render = (extra: Record<string, string>) => http1(`http://${s.gate.address}/_l402/render`, {
    headers: { 'x-original-uri': '/timed/p', 'x-l402-uri': '/timed/p', 'x-original-method': 'GET', 'x-l402-outcome': 'challenge', 'x-l402-reason': 'no_credential', accept: 'text/html', ...extra },
  });
  const data = (body: string) => JSON.parse(/<script type="application\/json" id="l402-data">(.*?)<\/script>/s.exec(body)![1]!) as { cookie: boolean };
  assert.equal(data((await render({})).body).cookie, false);
  assert.equal(data((await render({ 'x-l402-scheme': 'http' })).body).cookie, true);
  // Through nginx (current snippets): offered, where the route's cookie path covers the page.
  const page = async (path: string) => data((await http1(s.origin + path, { headers: { accept: 'text/html' } })).body).cookie;
  assert.equal(await page('/timed/p'), true);
  assert.equal(await page('/premium'), true);
  assert.equal(await page('/premium/a?x=1'), true);
  // The location /premium also matches /premiumX, where a cookie of Path=/premium is never sent: the page
  // keeps the credential itself, and the endpoint refuses to set such a cookie.
  assert.equal(await page('/premiumX'), false);
  const { auth } = await s.buy('/premiumX');
  const r = await http1(s.origin + '/_l402/page/cookie', { method: 'POST', body: new URLSearchParams({ credential: auth, uri: '/premiumX' }).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin' } });
  assert.equal(r.status, 400);
  assert.equal(JSON.parse(r.body).error, 'not_covered');
  assert.equal(r.headers['set-cookie'], undefined);
});

test('an upstream that fails before answering gives a single-use cookie back, as it does the header', { skip }, async () => {
  const { auth } = await s.buy('/deadend/x');
  const cookie = cookieFor('/deadend/', auth);
  for (let i = 0; i < 2; i++) {
    const r = await get('/deadend/x', cookie);
    assert.equal(r.status, 502, r.body);
    assert.equal((JSON.parse(r.body) as { payment: string }).payment, 'not_consumed', `try ${i + 1}: the claim made with the cookie was released`);
  }
});

test('over HTTPS (nginx $scheme): the cookie and its deletion are Secure; a client header cannot make them so on HTTP', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-tls-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  writeSnippets(s.cfg, join(dir, 'snippets'));
  const port = await freePort();
  cleanup.use(await startNginx({ http: `include ${dir}/snippets/upstream.conf;
    server { listen 127.0.0.1:${port} ssl; ssl_certificate ${dir}/cert.pem; ssl_certificate_key ${dir}/key.pem;
      include ${dir}/snippets/server.conf;
      location /timed/ { include ${dir}/snippets/protect.conf; proxy_pass http://127.0.0.1:${s.upstream.port}; } }` }));
  const origin = `https://127.0.0.1:${port}`;
  const tls = (path: string, o: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
    new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
      const req = httpsRequest(origin + path, { method: o.method ?? 'GET', headers: { accept: 'application/json', ...o.headers }, rejectUnauthorized: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end(o.body);
    });
  const challenge = await tls('/timed/s');
  assert.equal(challenge.status, 402);
  const b = JSON.parse(challenge.body) as { macaroon: string; invoice: string };
  const credential = `L402 ${b.macaroon}:${s.wallet.pay(b.invoice).toString('hex')}`;
  const set = await tls('/_l402/page/cookie', { method: 'POST', body: new URLSearchParams({ credential, uri: '/timed/s' }).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded', origin } });
  assert.equal(set.status, 303, set.body);
  assert.match(String(set.headers['set-cookie']), /; Path=\/timed\/; Max-Age=\d+; HttpOnly; Secure; SameSite=Lax$/);
  const cookie = String(set.headers['set-cookie']).split(';')[0]!;
  assert.equal((await tls('/timed/s', { headers: { cookie } })).status, 200);
  const refused = await tls('/timed/s', { headers: { cookie: `${cookie.split('=')[0]}=AAAA:${'00'.repeat(32)}` } });
  assert.equal(refused.status, 401);
  assert.match(String(refused.headers['set-cookie']), /Max-Age=0; HttpOnly; Secure; SameSite=Lax$/);
  // Plain HTTP, whatever the client claims about its scheme.
  const spoof = await get('/timed/s', `${cookie.split('=')[0]}=AAAA:${'00'.repeat(32)}`, { 'x-l402-scheme': 'https', 'x-forwarded-proto': 'https' });
  assert.equal(spoof.status, 401);
  assert.ok(!/Secure/.test(String(spoof.headers['set-cookie'])), String(spoof.headers['set-cookie']));
});

test('huge Cookie headers: the site cookies pass at any size nginx allows; with a gate cookie past 16 KiB, 431 before any decision; never a 5xx', { skip }, async () => {
  const { auth } = await s.buy('/premium');
  const big = Array.from({ length: 15 }, (_, i) => `c${i}=${'v'.repeat(1000)}`).join('; ');
  s.upstream.reset();
  const ok = await get('/premium', `${big}; ${cookieFor('/premium', auth)}`);
  assert.equal(ok.status, 200, ok.body);
  assert.equal(s.upstream.requests[0]!.headers.cookie, big);
  // No gate cookie in it: any size nginx lets through gets its real answer, and reaches the upstream whole.
  const huge = Array.from({ length: 40 }, (_, i) => `c${i}=${'v'.repeat(1000)}`).join('; ');
  assert.equal((await get('/premium', huge)).status, 402);
  const paid = await s.buy('/wide/a');
  const withAuth = await get('/wide/a', huge, { authorization: paid.auth });
  assert.equal(withAuth.status, 200, withAuth.body);
  assert.deepEqual(wide.cookies, [huge]);
  // A gate cookie in a header past 16 KiB: refused before the decision, so not spent.
  const { auth: auth2 } = await s.buy('/premium');
  const r = await get('/premium', `${cookieFor('/premium', auth2)}; ${huge}`);
  assert.equal(r.status, 431, r.body);
  assert.equal(reason(r), 'cookie_too_large');
  assert.equal(s.upstream.hits, 1);
  const after = await get('/premium', cookieFor('/premium', auth2));
  assert.equal(after.status, 200, `not spent: it still pays once: ${after.body}`);
});

test('the cookie endpoint: same-origin form posts only, checks the credential, 303 to the page with the cookie', { skip }, async () => {
  const { auth, macaroon } = await s.buy('/timed/page');
  const form = (credential: string, uri: string) => new URLSearchParams({ credential, uri }).toString();
  const post = (body: string, headers: Record<string, string>) => http1(s.origin + '/_l402/page/cookie', { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } });
  const host = new URL(s.origin).host;
  const postedAt = Math.floor(Date.now() / 1000);
  const ok = await post(form(auth, '/timed/page?x=1'), { 'sec-fetch-site': 'same-origin' });
  assert.equal(ok.status, 303, ok.body);
  assert.equal(ok.headers.location, '/timed/page?x=1');
  assert.equal(ok.headers['cache-control'], 'no-store');
  const set = String(ok.headers['set-cookie']);
  assert.match(set, new RegExp(`^${cookieScope(routeOf('/timed/')).name}=[A-Za-z0-9_-]+:[0-9a-f]{64}; Path=/timed/; Max-Age=(\\d+); HttpOnly; SameSite=Lax$`));
  // The credential's minted expiry: its invoice's plus macaroon_timeout (120).
  const mintedUntil = Number(/l402_valid_until=(\d+)/.exec(decodeMacaroonBase64(macaroon).caveats.map((c) => c.id.toString()).join('\n'))![1]);
  assert.ok(Number(/Max-Age=(\d+)/.exec(set)![1]) <= mintedUntil - postedAt, 'no longer than the credential');
  assert.ok(!/Secure/.test(set), 'plain HTTP: not Secure');
  // The cookie it set opens the page.
  assert.equal((await get('/timed/page', set.split(';')[0])).status, 200);
  // Without the preimage's 'L402 ' prefix too; a single-use route's cookie is SameSite=Strict.
  const once = await s.buy('/premium');
  const strict = await post(form(once.auth.slice(5), '/premium'), { origin: s.origin });
  assert.equal(strict.status, 303, strict.body);
  assert.match(String(strict.headers['set-cookie']), /; Path=\/premium; Max-Age=\d+; HttpOnly; SameSite=Strict$/);

  const refused: Array<[string, string, Record<string, string>, number]> = [
    ['cross-site', form(auth, '/timed/page'), { 'sec-fetch-site': 'cross-site', origin: s.origin }, 403],
    ['same-site, other origin', form(auth, '/timed/page'), { 'sec-fetch-site': 'same-site' }, 403],
    ['foreign Origin', form(auth, '/timed/page'), { origin: 'http://evil.example' }, 403],
    ['null Origin', form(auth, '/timed/page'), { origin: 'null' }, 403],
    ['no Origin at all', form(auth, '/timed/page'), {}, 403],
    ['Origin of another port', form(auth, '/timed/page'), { origin: `http://${host.split(':')[0]}:1` }, 403],
    ['protocol-relative uri', form(auth, '//evil.example/timed/'), { origin: s.origin }, 400],
    ['backslash uri', form(auth, '/\\evil.example'), { origin: s.origin }, 400],
    ['absolute uri', form(auth, 'http://evil.example/timed/'), { origin: s.origin }, 400],
    ['uri with a newline', form(auth, '/timed/a\r\nSet-Cookie: x=1'), { origin: s.origin }, 400],
    ['uri of no route', form(auth, '/free'), { origin: s.origin }, 400],
    ['uri of another route', form(auth, '/forever'), { origin: s.origin }, 400],
    ['garbage credential', form('L402 !!!', '/timed/page'), { origin: s.origin }, 400],
    ['wrong preimage', form(auth.replace(/:.*/, `:${'00'.repeat(32)}`), '/timed/page'), { origin: s.origin }, 400],
  ];
  for (const [what, body, headers, status] of refused) {
    const r = await post(body, headers);
    assert.equal(r.status, status, `${what}: ${r.body}`);
    assert.equal(r.headers['set-cookie'], undefined, what);
  }
  assert.equal((await http1(s.origin + '/_l402/page/cookie', { method: 'POST', body: form(auth, '/timed/page'), headers: { 'content-type': 'application/json', origin: s.origin } })).status, 415);
  assert.equal((await http1(s.origin + '/_l402/page/cookie', { headers: { origin: s.origin } })).status, 405);
});

test('standalone: the same cookie rules, and the upstream never sees the credential cookie', { skip }, async () => {
  const routes = [{ id: '/cheap/', match: '/cheap/' }, { id: '/expensive/', match: '/expensive/' }] as RouteConfig[];
  const cheap = await buyStandalone(alone, '/cheap/a');
  alone.upstream.reset();
  for (const path of ['/cheap/a', '/cheap/b']) {
    const r = await sendTo(alone.port, 'GET', path, { cookie: ['session=1', cookieFor('/cheap/', cheap, routes)] });
    assert.equal(r.status, 200, r.body);
  }
  assert.deepEqual(alone.upstream.requests.map((r) => r.headers.cookie), ['session=1', 'session=1']);
  const exp = await buyStandalone(alone, '/expensive/x');
  const cookie = cookieFor('/expensive/', exp, routes);
  assert.equal((await sendTo(alone.port, 'GET', '/expensive/x', { cookie })).status, 200);
  const again = await sendTo(alone.port, 'GET', '/expensive/x', { cookie });
  assert.equal(again.status, 401);
  assert.match(String(again.headers['set-cookie']), /Max-Age=0/);
  assert.equal(alone.upstream.hits, 3);
  for (const r of alone.upstream.requests) assert.ok(!/l402_/i.test(String(r.headers.cookie ?? '')));
  // The endpoint: Origin must be this server's; never Secure (plain HTTP), whatever a client claims.
  const origin = `http://127.0.0.1:${alone.port}`;
  const body = new URLSearchParams({ credential: cheap, uri: '/cheap/z' }).toString();
  const post = (headers: Record<string, string>) => new Promise<{ status: number; headers: Record<string, unknown> }>((resolve, reject) => {
    http1(`${origin}/_l402/page/cookie`, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } }).then(resolve, reject);
  });
  const ok = await post({ origin, 'x-l402-scheme': 'https', 'x-l402-host': 'evil.example' });
  assert.equal(ok.status, 303);
  assert.ok(!/Secure/.test(String(ok.headers['set-cookie'])));
  assert.equal((await post({ origin: 'http://evil.example', 'x-l402-host': 'evil.example' })).status, 403);
});
