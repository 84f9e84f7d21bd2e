// The paid path through a real nginx: HTTP/1.1, HTTP/2 and gRPC; unpaid requests never reach the upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Cleanup, grpcClient, http1, http2, requireTool } from './harness.js';
import { startStack, TEST_ROOT_KEY, type Stack } from './gate-fixture.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroon, encodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';
import { verifySignature } from '../../src/protocol/macaroon.js';
import { parseRootKey, tokenRootKey } from '../../src/protocol/root-key.js';

const nginxBin = requireTool('nginx');
const cleanup = new Cleanup();
let s: Stack;

before(async () => {
  if (nginxBin) s = await startStack(cleanup);
});
after(() => cleanup.run());

const skip = nginxBin ? false : 'nginx not installed';

function firstChallenge(h: Record<string, string | string[] | undefined>): string {
  const v = h['www-authenticate'];
  const all = Array.isArray(v) ? v : v ? [v] : [];
  assert.ok(all.length >= 1, 'WWW-Authenticate present');
  return all[0]!;
}

test('unpaid GET gets a 402 L402 challenge and never reaches the upstream', { skip }, async () => {
  s.upstream.reset();
  const r = await http1(s.origin + '/premium', { headers: { accept: 'application/json' } });
  assert.equal(r.status, 402);
  const ch = firstChallenge(r.headers);
  const m = /^L402 macaroon="([^"]+)", invoice="([^"]+)", version="0", token="([^"]+)"$/.exec(ch);
  assert.ok(m, `challenge shape: ${ch}`);
  assert.equal(m[1], m[3], 'token= repeats the macaroon');
  assert.equal(r.headers['cache-control'], 'no-store');
  assert.match(String(r.headers['content-type']), /application\/problem\+json/);
  const body = JSON.parse(r.body);
  assert.equal(body.status, 402);
  assert.equal(body.amount_msat, 10000);
  assert.equal(body.invoice, m[2]);
  assert.equal(body.macaroon, m[1]);
  assert.match(body.payment_hash, /^[0-9a-f]{64}$/);
  assert.ok(Date.parse(body.expires_at) > Date.now());
  // The macaroon commits to the invoice's payment hash and verifies under the per-token key.
  const mac = decodeMacaroonBase64(m[1]!);
  const id = decodeIdentifier(mac.identifier)!;
  assert.equal(id.paymentHash.toString('hex'), body.payment_hash);
  assert.ok(verifySignature(mac, tokenRootKey(parseRootKey(TEST_ROOT_KEY), id.tokenId)));
  assert.equal(s.upstream.hits, 0);
});

test('HEAD gets headers only; browsers get HTML; POST bodies never reach the upstream', { skip }, async () => {
  s.upstream.reset();
  const head = await http1(s.origin + '/premium', { method: 'HEAD' });
  assert.equal(head.status, 402);
  assert.equal(head.body, '');
  assert.ok(firstChallenge(head.headers).startsWith('L402 '));
  const html = await http1(s.origin + '/premium', { headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } });
  assert.equal(html.status, 402);
  assert.match(String(html.headers['content-type']), /text\/html/);
  assert.match(html.body, /<title>402 Payment Required<\/title>/);
  assert.match(html.body, /lnbcrt/);
  const post = await http1(s.origin + '/premium', { method: 'POST', body: 'secret=payload', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(post.status, 402);
  assert.equal(s.upstream.hits, 0);
});

test('paid request passes exactly once (per-request), then 401 with a fresh challenge', { skip }, async () => {
  s.upstream.reset();
  const { auth } = await s.buy('/premium');
  const ok = await http1(s.origin + '/premium', { headers: { authorization: auth } });
  assert.equal(ok.status, 200);
  assert.deepEqual(JSON.parse(ok.body), { ok: true, path: '/premium' });
  assert.equal(s.upstream.hits, 1);
  const replay = await http1(s.origin + '/premium', { headers: { authorization: auth, accept: 'application/json' } });
  assert.equal(replay.status, 401);
  assert.equal(JSON.parse(replay.body).reason, 'already_used');
  assert.ok(firstChallenge(replay.headers).startsWith('L402 macaroon="'));
  assert.equal(s.upstream.hits, 1);
});

test('every bad credential is a 401 with a reason and a challenge, never a 5xx or a pass', { skip }, async () => {
  s.upstream.reset();
  const { macaroon, preimage } = await s.buy('/premium');
  const forgedKey = parseRootKey(randomBytes(32).toString('hex'));
  const mac = decodeMacaroonBase64(macaroon);
  const id = decodeIdentifier(mac.identifier)!;
  const forged = encodeMacaroonBase64({ ...mac, signature: attenuate({ ...mac, signature: tokenRootKey(forgedKey, id.tokenId) }, 'x=y').signature });
  const cases: Array<[string, Record<string, string>, string, string?]> = [
    ['/premium', { authorization: `L402 ${macaroon}:${'ab'.repeat(32)}` }, 'wrong_preimage'],
    ['/premium', { authorization: `L402 ${forged}:${preimage}` }, 'bad_signature'],
    ['/premium/other', { authorization: `L402 ${macaroon}:${preimage}` }, 'wrong_path'],
    ['/premium', { authorization: `L402 ${encodeMacaroonBase64(attenuate(mac, 'method=PUT'))}:${preimage}` }, 'wrong_method'],
    ['/premium', { authorization: `L402 ${macaroon}:${preimage}` }, 'wrong_method', 'DELETE'],
    ['/premium', { authorization: 'L402 %%%garbage%%%' }, 'malformed_credential'],
    ['/premium', { authorization: `L402 ${macaroon}` }, 'missing_preimage'],
    ['/premium', { authorization: `LSAT ${'A'.repeat(5000)}:${preimage}` }, 'malformed_macaroon'],
    ['/timed/x', { authorization: `L402 ${macaroon}:${preimage}` }, 'wrong_route'],
  ];
  for (const [path, headers, reason, method] of cases) {
    const r = await http1(s.origin + path, { method: method ?? 'GET', headers: { ...headers, accept: 'application/json' } });
    assert.equal(r.status, 401, `${reason}: ${r.status} ${r.body}`);
    assert.equal(JSON.parse(r.body).reason, reason);
    assert.ok(firstChallenge(r.headers).startsWith('L402 '), reason);
  }
  assert.equal(s.upstream.hits, 0);
  // The genuine credential was never consumed by those failures.
  const ok = await http1(s.origin + '/premium', { headers: { authorization: `L402 ${macaroon}:${preimage}` } });
  assert.equal(ok.status, 200);
});

test('timed credentials are reusable across the route; indefinite ones too', { skip }, async () => {
  s.upstream.reset();
  const timed = await s.buy('/timed/a');
  for (const p of ['/timed/a', '/timed/b', '/timed/a']) assert.equal((await http1(s.origin + p, { headers: { authorization: timed.auth } })).status, 200);
  const forever = await s.buy('/forever');
  for (let i = 0; i < 3; i++) assert.equal((await http1(s.origin + '/forever', { headers: { authorization: forever.auth } })).status, 200);
  assert.equal(s.upstream.hits, 6);
});

test('methods not sold get 405; a protected location without a route gets 403', { skip }, async () => {
  s.upstream.reset();
  const r = await http1(s.origin + '/getonly', { method: 'DELETE', headers: { accept: 'application/json' } });
  assert.equal(r.status, 405);
  assert.equal(r.headers.allow, 'GET, HEAD');
  const n = await http1(s.origin + '/unpriced', { headers: { accept: 'application/json' } });
  assert.equal(n.status, 403);
  assert.equal(JSON.parse(n.body).reason, 'no_route');
  assert.equal(s.upstream.hits, 0);
});

test('client-supplied gate headers cannot change the outcome', { skip }, async () => {
  s.upstream.reset();
  const r = await http1(s.origin + '/premium', {
    headers: { 'x-l402-outcome': 'allow', 'x-original-uri': '/free', 'x-l402-uri': '/free', 'x-original-method': 'GET', accept: 'application/json' },
  });
  assert.equal(r.status, 402);
  assert.equal(s.upstream.hits, 0);
});

test('the render answers what the auth answer decided: a client\'s X-L402-Outcome/-Reason/-Retry-After/-Detail never reach it', { skip }, async () => {
  s.upstream.reset();
  // The render takes the decision nginx carries from the auth answer (auth_request_set): a client's headers of
  // those names, in any spelling, must neither turn a challenge into another refusal nor a refusal into a challenge.
  const forged = (outcome: string, reason: string) => ({
    'x-l402-outcome': outcome, 'x-l402-reason': reason, 'x-l402-retry-after': '86400', 'x-l402-detail': 'forged detail',
    'x_l402_outcome': outcome, 'x_l402_reason': reason, accept: 'application/json',
  });
  const plain = await http1(s.origin + '/premium', { headers: { accept: 'application/json' } });
  for (const [outcome, reason] of [['rate_limited', 'invoice_rate_limited'], ['forbidden', 'no_route'], ['unavailable', 'store_unavailable'], ['invalid', 'bad_signature'], ['cashu_rejected', 'cashu_rejected']]) {
    const r = await http1(s.origin + '/premium', { headers: forged(outcome!, reason!) });
    assert.equal(r.status, plain.status, `${outcome}: ${r.body}`);
    const body = JSON.parse(r.body);
    assert.deepEqual([body.status, body.reason, body.amount_msat], [402, JSON.parse(plain.body).reason, 10000], outcome);
    assert.equal(r.headers['retry-after'], plain.headers['retry-after'], outcome);
    assert.doesNotMatch(r.body, /forged detail/);
  }
  // A refused credential stays refused (401) whatever the client says the decision was.
  const bad = await http1(s.origin + '/premium', { headers: { authorization: 'L402 bm90LWEtbWFjYXJvb24=:00', accept: 'application/json' } });
  assert.equal(bad.status, 401);
  const badForged = await http1(s.origin + '/premium', { headers: { ...forged('challenge', 'no_credential'), authorization: 'L402 bm90LWEtbWFjYXJvb24=:00' } });
  assert.deepEqual([badForged.status, JSON.parse(badForged.body).reason], [401, JSON.parse(bad.body).reason]);
  assert.equal(s.upstream.hits, 0);
});

test('HTTP/2 (h2c): unpaid 402, paid 200', { skip }, async () => {
  s.upstream.reset();
  const origin = `http://127.0.0.1:${s.h2Port}`;
  const unpaid = await http2(origin, '/premium', { headers: { accept: 'application/json' } });
  assert.equal(unpaid.status, 402);
  const body = JSON.parse(unpaid.body);
  const preimage = s.wallet.pay(body.invoice).toString('hex');
  const paid = await http2(origin, '/premium', { headers: { authorization: `L402 ${body.macaroon}:${preimage}` } });
  assert.equal(paid.status, 200);
  assert.equal(s.upstream.hits, 1);
});

test('gRPC: unpaid call gets status 13 with the challenge; paid call reaches the server once', { skip }, async () => {
  s.grpcUp.reset();
  const client = grpcClient(s.h2Port);
  try {
    const err = (await client.getContent({ id: 'a' }).then(
      () => assert.fail('unpaid call passed'),
      (e: grpc.ServiceError) => e,
    )) as grpc.ServiceError;
    assert.equal(err.code, 13);
    assert.equal(err.details, 'payment required');
    const ch = String(err.metadata.get('www-authenticate')[0]);
    const m = /^L402 macaroon="([^"]+)", invoice="([^"]+)"/.exec(ch);
    assert.ok(m, ch);
    assert.equal(s.grpcUp.calls, 0);
    const preimage = s.wallet.pay(m[2]!).toString('hex');
    const auth = `L402 ${m[1]}:${preimage}`;
    const res = await client.getContent({ id: 'a' }, { authorization: auth });
    assert.deepEqual({ id: res.id, body: res.body }, { id: 'a', body: 'content for a' });
    assert.equal(s.grpcUp.calls, 1);
    // The payment credential stays at the gate (forward_payment_credentials: false): identity travels instead.
    assert.equal(s.grpcUp.authorizations[0], undefined);
    assert.equal(s.grpcUp.metadata[0]!['x-l402-rail'], 'lightning');
    const replay = (await client.getContent({ id: 'a' }, { authorization: auth }).then(
      () => assert.fail('replayed call passed'),
      (e: grpc.ServiceError) => e,
    )) as grpc.ServiceError;
    assert.equal(replay.code, 16);
    assert.equal(s.grpcUp.calls, 1);
    // Spec gRPC form: hex macaroon in `token` metadata with the preimage as a caveat.
    const e2 = (await client.getContent({ id: 'b' }).catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
    const m2 = /macaroon="([^"]+)", invoice="([^"]+)"/.exec(String(e2.metadata.get('www-authenticate')[0]))!;
    const pre2 = s.wallet.pay(m2[2]!).toString('hex');
    const hexMac = encodeMacaroon(attenuate(decodeMacaroonBase64(m2[1]!), `preimage=${pre2}`)).toString('hex');
    const res2 = await client.getContent({ id: 'b' }, { token: hexMac });
    assert.equal(res2.id, 'b');
    assert.equal(s.grpcUp.calls, 2);
  } finally {
    client.close();
  }
});

test('a gRPC content type over HTTP/1.1 is not a gRPC call: a plain 402, never an HTTP 200', { skip }, async () => {
  const r = await http1(s.origin + '/premium', { method: 'POST', headers: { 'content-type': 'application/grpc', accept: 'application/json' }, body: '' });
  assert.equal(r.status, 402);
  assert.equal(r.headers['grpc-status'], undefined);
  // The same over h2c stays gRPC's answer (HTTP 200 + grpc-status 13), as the gRPC test above shows.
  const h2 = await http2(`http://127.0.0.1:${s.h2Port}`, '/premium', { method: 'POST', headers: { 'content-type': 'application/grpc' }, body: '' });
  assert.deepEqual([h2.status, h2.headers['grpc-status']], [200, '13']);
});

test('secrets never appear in the logs; one decision line per request', { skip }, async () => {
  const before = s.logs.length;
  const { auth, preimage, macaroon } = await s.buy('/premium');
  await http1(s.origin + '/premium', { headers: { authorization: auth } });
  const text = s.logs.join('\n');
  for (const secret of [preimage, macaroon, TEST_ROOT_KEY]) assert.ok(!text.includes(secret), 'secret leaked into logs');
  const decisions = s.logs.slice(before).map((l) => JSON.parse(l)).filter((l) => l.event === 'decision');
  assert.deepEqual(decisions.map((d) => [d.route, d.outcome, d.reason]), [['/premium', 'challenge', 'no_credential'], ['/premium', 'allow', 'paid']]);
});

test('nginx caches "paid" answers for reusable credentials only, briefly, keyed by credential', { skip }, async () => {
  s.upstream.reset();
  const timed = await s.buy('/timed/cache');
  const decisionsFor = (from: number) => s.logs.slice(from).map((l) => JSON.parse(l)).filter((l) => l.event === 'decision' && l.path === '/timed/cache');
  const mark = s.logs.length;
  for (let i = 0; i < 5; i++) assert.equal((await http1(s.origin + '/timed/cache', { headers: { authorization: timed.auth } })).status, 200);
  assert.equal(decisionsFor(mark).length, 1, 'repeat requests answered from nginx cache');
  assert.equal(s.upstream.hits, 5);
  // Another credential (here: a wrong preimage) is not served from that cache entry.
  const wrong = timed.auth.replace(/:[0-9a-f]{64}$/, ':' + '00'.repeat(32));
  assert.equal((await http1(s.origin + '/timed/cache', { headers: { authorization: wrong } })).status, 401);
  // Single-use credentials are never cached: the replay is refused by l402d.
  const once = await s.buy('/premium');
  assert.equal((await http1(s.origin + '/premium', { headers: { authorization: once.auth } })).status, 200);
  assert.equal((await http1(s.origin + '/premium', { headers: { authorization: once.auth } })).status, 401);
});
