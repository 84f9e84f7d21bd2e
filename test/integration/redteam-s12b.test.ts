// Red team, session 12b: today's fixes attacked (method/path overrides, the auth cache's lifetime, x402's fresh
// offers, the all-or-nothing Redis scripts), through real nginx and in standalone mode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Cleanup, http1, requireTool } from './harness.js';
import { mintLocalCredential, startStack, type Stack } from './gate-fixture.js';
import { bothModes, buyStandalone, sendTo, startStandaloneGate, startStandaloneTls, tempDir, type Standalone } from './standalone-fixture.js';
import { headerLines, httpsRequest, paymentParams } from '../support/https-client.js';
import { CashuMintPeer } from '../peers/cashu-mint.js';

let s: Stack;
let st: Standalone;
const { skip } = bothModes('redteam-s12b', (started) => ({ s, st } = started));

// `_method` as PHP (Laravel, Symfony), qs (Express's method-override with a query getter) read it: percent-encoded
// letters, an invalid escape left as it is before a NUL that ends PHP's name, IIS's %u escapes.
const SPELLED = [
  '?%5f%6dethod=DELETE',
  '?_m%65thod=DELETE',
  '?_%4D%45%54%48%4F%44=DELETE',
  '?x-http-m%65thod-override=DELETE',
  '?a=1&_%6Dethod%00%zz=DELETE',
  '?_%u006dethod=DELETE',
];

test('through nginx: a _method spelled with percent-encoded letters is refused, and the payment kept', { skip }, async () => {
  const { auth } = await s.buy('/premium/s12b', 'POST');
  const before = s.upstream.hits;
  for (const q of SPELLED) {
    const r = await http1(s.origin + '/premium/s12b' + q, { method: 'POST', body: 'x', headers: { authorization: auth, accept: 'application/json' } });
    assert.equal(r.status, 400, `${q}: ${r.body}`);
    assert.equal((JSON.parse(r.body) as { reason: string }).reason, 'method_override', r.body);
    assert.equal(s.upstream.hits, before, `${q}: the upstream was never reached`);
  }
  // Honest queries naming no method pass, and the payment was not spent by the refusals.
  const ok = await http1(s.origin + '/premium/s12b?payment_method=card&q=100%25', { method: 'POST', body: 'x', headers: { authorization: auth } });
  assert.equal(ok.status, 200, ok.body);
});

test('standalone: a _method spelled with percent-encoded letters is refused, free paths too, the payment kept', async () => {
  const auth = await buyStandalone(st, '/expensive/s12b');
  const before = st.upstream.hits;
  for (const q of SPELLED) {
    for (const path of ['/expensive/s12b', '/public/s12b']) {
      const r = await sendTo(st.port, 'GET', path + q, { authorization: auth });
      assert.equal(r.status, 400, `${path}${q}: ${r.body}`);
      assert.equal(st.upstream.hits, before, `${path}${q}: the upstream was never reached`);
    }
  }
  const ok = await sendTo(st.port, 'GET', '/expensive/s12b?payment_method=card', { authorization: auth });
  assert.equal(ok.status, 200, ok.body);
});

test('through nginx with ignore_invalid_headers off (http level): a header spelt with "_" never slips past the drops in protect.conf', { skip }, async () => {
  // With underscores_in_headers off, nginx 1.22 keeps such a header (ignore_invalid_headers off) under a hash
  // without its "_"s, so protect.conf's `proxy_set_header X_HTTP_Method_Override ""` never matches it: the first
  // spelling (naming the request's own method) is what l402d checks, the second reached the upstream, as did a
  // forged X_L402_Token_Id and an X_Cashu secret (CGI-style apps read both spellings as one header).
  const c = new Cleanup();
  try {
    const h = await startStack(c, { surround: { http: 'ignore_invalid_headers off;' } });
    const { auth } = await h.buy('/premium/s12b-u', 'POST');
    const r = await http1(h.origin + '/premium/s12b-u', {
      method: 'POST',
      body: 'x',
      headers: { 'X-HTTP-Method-Override': 'POST', X_HTTP_Method_Override: 'DELETE', 'X-HTTP-Method': 'POST', X_HTTP_Method: 'DELETE', X_L402_Token_Id: 'forged', X_Cashu: 'cashuAsecret', authorization: auth },
    });
    if (r.status === 200) {
      const got = h.upstream.requests.at(-1)!.headers;
      for (const name of ['x_http_method_override', 'x_http_method', 'x_l402_token_id', 'x_cashu']) assert.equal(got[name], undefined, `${name} reached the upstream: ${JSON.stringify(got)}`);
    } else assert.equal(r.status, 400, r.body);
  } finally {
    await c.run();
  }
});

test('standalone: two different credentials in one request mint no invoice past the route\'s invoice_rate_limit', async () => {
  // The refusal of an ambiguous credential (two different Authorization or X-Cashu values) was rendered
  // straight away, never through the decision's rate limit: each such request minted a fresh invoice (and an x402
  // offer), without bound, on a route limited to one a minute.
  const c = new Cleanup();
  try {
    const { port } = await startStandaloneGate(c, {
      name: 's12b-rate',
      level: 'error',
      config: `lightning: { type: dev }
routes:
  - { match: /limited/, amount_msat: 1000, invoice_rate_limit: 1r/m }
`,
    });
    const first = await sendTo(port, 'GET', '/limited/x');
    assert.equal(first.status, 402, first.body);
    const plain = await sendTo(port, 'GET', '/limited/x');
    assert.equal(plain.status, 429, plain.body);
    const invoices = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const two = { authorization: [`L402 ${randomBytes(40).toString('base64')}:${randomBytes(32).toString('hex')}`, `L402 ${randomBytes(40).toString('base64')}:${randomBytes(32).toString('hex')}`] };
      const r = await sendTo(port, 'GET', '/limited/x', two);
      assert.equal(r.status, 429, `ambiguous credential #${i}: ${r.status} ${r.body.slice(0, 200)}`);
      const inv = /invoice="([^"]+)"/.exec(String(r.headers['www-authenticate'] ?? ''))?.[1];
      if (inv) invoices.add(inv);
    }
    assert.equal(invoices.size, 0, 'no invoice minted past the limit');
    const cashu = await sendTo(port, 'GET', '/limited/x', { 'x-cashu': ['cashuAone', 'cashuAtwo'] });
    assert.equal(cashu.status, 429, cashu.body);
  } finally {
    await c.run();
  }
});

const opensslBin = requireTool('openssl');

test('standalone with tls: a refused Cashu token mints no x402 offer past the route\'s invoice_rate_limit', { skip: opensslBin ? false : 'openssl not installed', timeout: 120_000 }, async () => {
  // cashu_rejected was never rate limited (it minted nothing), but its 402 now carries a fresh x402 offer, a
  // backend invoice each: garbage in X-Cashu minted one per request, without bound, on a limited route.
  const c = new Cleanup();
  try {
    const dir = tempDir(c, 's12b-cashu');
    const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
    c.add(() => mint.close());
    const { ca, origin } = await startStandaloneTls(c, opensslBin!, {
      name: 's12b-cashu',
      dir,
      level: 'error',
      config: `lightning: { type: dev }
cashu: { mode: standard, mints: ["${mint.url}"] }
routes:
  - { match: /limited/, amount_msat: 10000, schemes: [l402, x402, cashu], invoice_rate_limit: 1r/m }
`,
    });
    const first = await httpsRequest(ca, origin + '/limited/x', { accept: 'application/json' });
    assert.equal(first.status, 402, first.body);
    assert.ok(first.headers['payment-required'], 'an x402 offer');
    const offers = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const r = await httpsRequest(ca, origin + '/limited/x', { accept: 'application/json', 'x-cashu': `cashuB${randomBytes(30).toString('base64url')}` });
      assert.notEqual(r.status, 200, r.body);
      const pr = r.headers['payment-required'];
      if (pr) offers.add(String(pr));
    }
    assert.equal(offers.size, 0, 'no x402 offer (no invoice) minted past the limit');
  } finally {
    await c.run();
  }
});

test('standalone with tls: an MPP session topUp with an unpaid deposit mints nothing past the route\'s invoice_rate_limit (held)', { skip: opensslBin ? false : 'openssl not installed', timeout: 120_000 }, async () => {
  // A session's topUp is decided as `management` (never rate limited: it mints nothing when it works) and
  // performed by the render, whose failure falls back to a refusal carrying fresh offers. Held: a topUp whose
  // deposit was not paid is refused by the decision (invalid, so limited), never reaching that fallback.
  const c = new Cleanup();
  try {
    const { ca, origin, wallet } = await startStandaloneTls(c, opensslBin!, {
      name: 's12b-sess',
      level: 'error',
      config: `lightning: { type: dev }
routes:
  - { match: /sess, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp], invoice_rate_limit: 1r/m }
`,
    });
    const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const offer = await httpsRequest(ca, origin + '/sess');
    assert.equal(offer.status, 402, offer.body);
    const p = paymentParams(headerLines(offer, 'www-authenticate').find((l) => l.startsWith('Payment '))!);
    const req = JSON.parse(Buffer.from(p.request!, 'base64url').toString()) as { depositInvoice: string; paymentHash: string };
    const preimage = wallet.pay(req.depositInvoice).toString('hex');
    const ret = wallet.createAmountlessInvoice({ memo: 'refund', expirySecs: 86_400 });
    const cred = (payload: Record<string, string>) => `Payment ${b64url({ challenge: { id: p.id, realm: p.realm, method: p.method, intent: p.intent, request: p.request, ...(p.expires ? { expires: p.expires } : {}) }, payload })}`;
    const opened = await httpsRequest(ca, origin + '/sess', { authorization: cred({ action: 'open', preimage, returnInvoice: ret.bolt11 }) });
    assert.equal(opened.status, 200, opened.body);
    const invoices = new Set<string>();
    for (let i = 0; i < 4; i++) {
      // The open deposit's challenge, a topUp preimage nobody paid: refused (invalid-preimage) in the render.
      const r = await httpsRequest(ca, origin + '/sess', { authorization: cred({ action: 'topUp', sessionId: req.paymentHash, topUpPreimage: randomBytes(32).toString('hex') }) });
      assert.notEqual(r.status, 200, r.body);
      assert.ok(r.status < 500, `${r.status} ${r.body}`);
      for (const l of headerLines(r, 'www-authenticate')) invoices.add(l);
    }
    assert.equal(invoices.size, 0, `no challenge minted past the limit: ${[...invoices].length}`);
  } finally {
    await c.run();
  }
});

test('an auto-detect poll whose invoice is gone by its render mints a new one only within invoice_rate_limit', { skip }, async () => {
  // The decision said payment_pending (its invoice still remembered); by the time nginx asked for the answer
  // the invoice had expired, and the render minted a fresh challenge outside the decision's rate limit, one per
  // poll. Here the render is asked as nginx asks it, for a macaroon whose invoice is not remembered (the state the
  // render sees after that expiry).
  const c = new Cleanup();
  try {
    const h = await startStack(c, { extraRoutes: '  - { match: /pollim/, amount_msat: 1000, auto_detect_payment: true, invoice_rate_limit: 1r/m }\n' });
    const route = h.cfg.routes.find((r) => r.match === '/pollim/')!;
    const { macaroon } = await mintLocalCredential(route, '/pollim/x');
    const render = () =>
      http1(`http://${h.gate.address}/_l402/render`, {
        headers: { 'x-original-uri': '/pollim/x', 'x-l402-uri': '/pollim/x', 'x-original-method': 'GET', 'x-l402-outcome': 'challenge', 'x-l402-reason': 'payment_pending', authorization: `L402 ${macaroon}`, accept: 'application/json' },
      });
    const first = await render();
    assert.equal(first.status, 401, first.body);
    assert.equal((JSON.parse(first.body) as { reason: string }).reason, 'expired', first.body);
    for (let i = 0; i < 3; i++) {
      const r = await render();
      assert.equal(r.status, 429, `poll #${i}: ${r.status} ${r.body.slice(0, 200)}`);
      assert.equal(r.headers['www-authenticate'], undefined);
    }
  } finally {
    await c.run();
  }
});
