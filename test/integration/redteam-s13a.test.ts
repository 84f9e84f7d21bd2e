// Red team, session 13a: what l402d's answers carry back to nginx, HTTP/2 specifics and the edges of a paid
// request, through real nginx under a surrounding config that lets long request lines and headers through.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Cleanup, freePort, requireTool, startCountingUpstream, startNginx, type CountingUpstream } from './harness.js';
import { TEST_ROOT_KEY, writeSnippets } from './gate-fixture.js';
import { headerLines, httpsRequest, makeCert } from '../support/https-client.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { connect as connectH2 } from 'node:http2';

const nginxBin = requireTool('nginx');
const opensslBin = requireTool('openssl');
const skip = !nginxBin ? 'nginx not installed' : !opensslBin ? 'openssl not installed' : false;
const cleanup = new Cleanup();
let ca: Buffer;
let origin: string;
let up: CountingUpstream;
let wallet: DevWallet;

before(async () => {
  if (skip) return;
  const dir = mkdtempSync(join(tmpdir(), 'l402-s13a-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }), 'rm dir');
  const { cert, key } = makeCert(opensslBin!, dir);
  ca = readFileSync(cert);
  const cfg = parseConfig(
    `listen: 127.0.0.1:${await freePort()}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nlog: { level: warn }\nlightning: { type: dev }\nroutes:\n  - { match: /s13a, amount_msat: 10000, schemes: [l402, mpp, x402] }\n`,
    { env: {} },
  );
  const gate = await startGate(cfg, { log: createLogger('warn', new PassThrough().resume()) });
  cleanup.add(() => gate.close(), 'l402d');
  wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close(), 'wallet');
  up = cleanup.use(await startCountingUpstream(), 'upstream');
  const snippets = join(dir, 'snippets');
  writeSnippets(cfg, snippets);
  const port = await freePort();
  // The surrounding config lets request lines and header fields of up to 64 KiB through (sites with large cookies
  // or tokens raise it), and sets small proxy buffers for its own upstreams.
  cleanup.use(
    await startNginx({
      http: `include ${snippets}/upstream.conf;
    large_client_header_buffers 4 64k;
    proxy_buffer_size 1k; proxy_buffers 4 1k; proxy_busy_buffers_size 2k; proxy_temp_file_write_size 2k; proxy_max_temp_file_size 2k;
    server { listen 127.0.0.1:${port} ssl http2; ssl_certificate ${cert}; ssl_certificate_key ${key};
      include ${snippets}/server.conf;
      location /s13a { include ${snippets}/protect.conf; include ${snippets}/payment-receipts.conf; proxy_pass http://127.0.0.1:${up.port}; } }`,
    }),
    'nginx',
  );
  origin = `https://127.0.0.1:${port}`;
});
after(() => cleanup.run());

interface X402Offer {
  resource: { url: string };
  accepts: Array<{ scheme: string; network: string; extra: { invoice: string } }>;
}

test('a request target as long as the surrounding config allows (query or path) gets its 402 with every offer, never a 503; the x402 offer pays', { skip }, async () => {
  // Found: x402's resource URL named the whole raw target, so a 40 KB query made the rendered answer's headers
  // larger than nginx reads of l402d's answer (proxy_buffer_size 32k): nginx answered 503 gate_unavailable.
  for (const target of [`/s13a/q?x=${'a'.repeat(40_000)}`, `/s13a/${'p'.repeat(30_000)}`, `/s13a/${'%41'.repeat(9_000)}?y=1`, `/s13a/q?x=${'b'.repeat(10_000)}`]) {
    up.reset();
    const r = await httpsRequest(ca, origin + target);
    assert.equal(r.status, 402, `${target.slice(0, 20)}: ${r.body.slice(0, 300)}`);
    assert.equal(headerLines(r, 'www-authenticate').length, 2, 'L402 and MPP offered');
    const offer = JSON.parse(Buffer.from(String(r.headers['payment-required']), 'base64').toString()) as X402Offer;
    const url = new URL(offer.resource.url);
    assert.equal(url.origin, origin);
    assert.ok(target.startsWith(url.pathname + url.search) || target.startsWith(url.pathname), offer.resource.url.slice(0, 80));
    assert.ok(offer.resource.url.length < 4096, String(offer.resource.url.length));
    assert.equal(up.hits, 0);
    if (!target.includes('?x=b')) continue;
    // An offer whose URL was cut pays for that request, once (the test's upstream reads up to 16 KiB of headers).
    const a = offer.accepts[0]!;
    wallet.pay(a.extra.invoice);
    const sig = Buffer.from(JSON.stringify({ x402Version: 2, scheme: a.scheme, network: a.network, payload: { invoice: a.extra.invoice }, accepted: a })).toString('base64');
    const paid = await httpsRequest(ca, origin + target, { 'payment-signature': sig });
    assert.equal(paid.status, 200, paid.body.slice(0, 300));
    assert.ok(paid.headers['payment-response'], 'PAYMENT-RESPONSE');
    assert.equal(up.hits, 1);
    const again = await httpsRequest(ca, origin + target, { 'payment-signature': sig });
    assert.equal(again.status, 402, again.body.slice(0, 300));
    assert.equal(up.hits, 1);
  }
});

test('the payment page\'s cookie endpoint answers a paid credential for a long URL with its 303, whatever proxy buffers the surrounding config sets', { skip }, async () => {
  // Found: /_l402/page/cookie inherited proxy_buffer_size (one memory page, 4k, by default), and its 303 carries the
  // page's URL (Location, up to 4 KiB) beside the credential cookie: a browser that paid for a page with a 3.5 KB
  // query got 503 gate_unavailable and never its cookie.
  // Found too: the endpoint took a URL of at most 4 KiB while the page offered the cookie for any, so a browser
  // that paid on a page with a 6 KB URL (nginx takes 8 KiB request lines by default) got 400 bad_uri. A URL
  // with characters a form escapes ("/", "=", "&": three bytes each) fits the endpoint's body limit too.
  for (const n of [3_500, 4_000, 6_000, 2_600]) {
    const uri = n === 2_600 ? `/s13a/page?${'a=/&'.repeat(n / 4 * 3)}` : `/s13a/page?q=${'c'.repeat(n)}`;
    const r = await httpsRequest(ca, origin + uri);
    assert.equal(r.status, 402, r.body.slice(0, 200));
    const offer = JSON.parse(r.body) as { macaroon: string; invoice: string };
    const preimage = wallet.pay(offer.invoice).toString('hex');
    const body = new URLSearchParams({ credential: `${offer.macaroon}:${preimage}`, uri }).toString();
    const set = await httpsRequest(ca, origin + '/_l402/page/cookie', { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin' }, { method: 'POST', body });
    assert.equal(set.status, 303, set.body.slice(0, 200));
    assert.equal(set.headers.location, uri);
    const cookie = String(headerLines(set, 'set-cookie')[0]).split(';')[0]!;
    up.reset();
    const paid = await httpsRequest(ca, origin + uri, { cookie });
    assert.equal(paid.status, 200, paid.body.slice(0, 200));
    assert.equal(up.hits, 1);
    assert.equal(up.requests[0]!.headers.cookie, undefined, 'the credential cookie never reaches the upstream');
  }
  // A URL longer than the endpoint takes: the page does not offer the cookie (it could not be set).
  const page = await httpsRequest(ca, origin + `/s13a/page?q=${'d'.repeat(9_000)}`, { accept: 'text/html' });
  assert.equal(page.status, 402);
  assert.equal(/"cookie":(true|false)/.exec(page.body)?.[1], 'false');
  const short = await httpsRequest(ca, origin + `/s13a/page?q=${'d'.repeat(7_000)}`, { accept: 'text/html' });
  assert.equal(/"cookie":(true|false)/.exec(short.body)?.[1], 'true');
});

/** One HTTP/2 request over TLS on a connection of its own; `trailers` are sent after the body. */
function h2(path: string, headers: Record<string, string>, o: { body?: string; trailers?: Record<string, string> } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const session = connectH2(origin, { ca });
    const finish = (v: { status: number; body: string }) => {
      clearTimeout(timer);
      session.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => finish({ status: -1, body: 'timeout' }), 15_000);
    session.on('error', (e: Error) => finish({ status: 0, body: e.message }));
    const req = session.request({ ':path': path, accept: 'application/json', ...headers }, { endStream: o.body === undefined, waitForTrailers: o.trailers !== undefined });
    if (o.trailers) req.on('wantTrailers', () => req.sendTrailers(o.trailers!));
    if (o.body !== undefined) req.end(o.body);
    let status = 0;
    let body = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (b: Buffer) => (body += b.toString()));
    req.on('end', () => finish({ status, body }));
    req.on('error', (e: Error) => finish({ status: 0, body: e.message }));
  });
}

// Found, not fixed: nginx 1.22 takes a HEADERS frame after a request's DATA (request trailers, which HTTP/2 allows)
// for a new stream with a stale id and closes the whole connection (PROTOCOL_ERROR). By then the auth subrequest
// has run: a single-use payment is spent and the request never reaches the upstream. The same end as a client that
// cancels its stream after the decision (paid-always-s11b.test.ts), but from an honest request.
test('an HTTP/2 paid POST whose body ends with request trailers is served, or its payment still pays', { skip, todo: 'nginx 1.22 closes the connection on request trailers after the gate spent the payment' }, async () => {
  const r = await httpsRequest(ca, origin + '/s13a/trailers', {}, { method: 'POST', body: 'x' });
  assert.equal(r.status, 402, r.body.slice(0, 200));
  const offer = JSON.parse(r.body) as { macaroon: string; invoice: string };
  const auth = `L402 ${offer.macaroon}:${wallet.pay(offer.invoice).toString('hex')}`;
  up.reset();
  const first = await h2('/s13a/trailers', { ':method': 'POST', authorization: auth }, { body: 'x', trailers: { 'x-checksum': 'sha256=0' } });
  if (up.hits === 1) return;
  const again = await h2('/s13a/trailers', { ':method': 'POST', authorization: auth }, { body: 'x' });
  assert.equal(again.status, 200, `first: ${first.status} ${first.body.slice(0, 80)}; again: ${again.body.slice(0, 200)}`);
  assert.equal(up.hits, 1);
});

test('held: HTTP/2 :authority and Host disagreeing is refused by nginx before any decision; a HEAD with a GET credential of a single-use route is refused, and the GET it paid for is then served', { skip }, async () => {
  const r = await httpsRequest(ca, origin + '/s13a/head');
  const offer = JSON.parse(r.body) as { macaroon: string; invoice: string };
  const auth = `L402 ${offer.macaroon}:${wallet.pay(offer.invoice).toString('hex')}`;
  up.reset();
  // nginx 1.22 reads :authority as a Host header: a second one is a 400 (l402d names the resource by Host).
  const two = await h2('/s13a/head', { ':authority': new URL(origin).host, host: 'other.example', authorization: auth });
  assert.equal(two.status, 400, two.body.slice(0, 200));
  const head = await h2('/s13a/head', { ':method': 'HEAD', authorization: auth });
  assert.equal(head.status, 401);
  assert.equal(up.hits, 0);
  const get = await h2('/s13a/head', { authorization: auth });
  assert.equal(get.status, 200, get.body.slice(0, 200));
  assert.equal(up.hits, 1);
});
