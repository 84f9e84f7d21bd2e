// An operator's server-level caching headers (`expires`, `add_header Cache-Control ... always`) never make one of
// the gate's own answers storable, through real nginx: the 402 challenge (JSON and the payment page), the
// render's 200 (a gRPC call's status answer; MPP's topUp and close over HTTPS: mpp-session.test.ts), the payment
// page's status (200) and cookie (303) helpers. nginx's `expires` replaces a proxied Cache-Control on 200, 30x
// answers: the snippets turn it off in every location that passes l402d's answer on (PINNED in nginx-conf.ts).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, http1, http2, requireTool } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;

before(async () => {
  if (skip) return;
  s = await startStack(cleanup, {
    surround: { server: 'expires 1h; add_header Cache-Control "public, max-age=600" always; add_header X-Operator yes always;' },
  });
});

after(() => cleanup.run());

/** The gate's answer keeps its no-store, and the operator's `expires` added nothing of its own. */
function notStorable(what: string, h: Record<string, unknown>): void {
  const cc = String(h['cache-control'] ?? '');
  assert.match(cc, /(^|,\s*)no-store(\s*,|$)/, `${what}: Cache-Control "${cc}"`);
  assert.doesNotMatch(cc, /max-age=3600/, `${what}: the operator's expires replaced l402d's Cache-Control`);
  assert.equal(h.expires, undefined, `${what}: an Expires header`);
}

test('the operator\'s server-level headers apply around the gate: the upstream\'s own answer gets them (the set-up works)', { skip }, async () => {
  const r = await http1(s.origin + '/free');
  assert.equal(r.status, 200);
  assert.match(String(r.headers['cache-control']), /max-age=3600/);
  assert.equal(r.headers['x-operator'], 'yes');
});

test('a 402 challenge (JSON and the payment page) keeps Cache-Control: no-store under server-level expires and add_header', { skip }, async () => {
  for (const accept of ['application/json', 'text/html']) {
    const r = await http1(s.origin + '/premium/cc', { headers: { accept } });
    assert.equal(r.status, 402, r.body);
    notStorable(`402 ${accept}`, r.headers);
  }
});

test('the render\'s 200 (a gRPC call\'s payment-required status) keeps Cache-Control: no-store under server-level expires', { skip }, async () => {
  const r = await http2(`http://127.0.0.1:${s.h2Port}`, '/content.ContentService/Get', { method: 'POST', headers: { 'content-type': 'application/grpc', te: 'trailers' }, body: Buffer.alloc(5) });
  assert.equal(r.headers[':status'], 200);
  assert.ok(r.headers['grpc-status'] !== undefined, JSON.stringify(r.headers));
  assert.notEqual(r.headers['grpc-status'], '0');
  notStorable('gRPC render 200', r.headers);
  // server.conf's own gRPC refusal of an ambiguous path (a 200 too).
  const amb = await http2(`http://127.0.0.1:${s.h2Port}`, '/content.ContentService//Get', { method: 'POST', headers: { 'content-type': 'application/grpc', te: 'trailers' }, body: Buffer.alloc(5) });
  assert.equal(amb.headers[':status'], 200);
  assert.equal(amb.headers['grpc-status'], '3');
  notStorable('gRPC ambiguous-path 200', amb.headers);
});

test('the payment page\'s status (200) and cookie (303) answers keep Cache-Control: no-store under server-level expires', { skip }, async () => {
  // The status helper answers for a route that detects payments (auto_detect_payment: true).
  const { macaroon } = await s.buy('/auto/cc');
  const st = await http1(s.origin + '/_l402/page/status', { headers: { authorization: `L402 ${macaroon}` } });
  assert.equal(st.status, 200, st.body);
  notStorable('page status 200', st.headers);
  const { auth } = await s.buy('/timed/cc');
  const set = await http1(s.origin + '/_l402/page/cookie', { method: 'POST', body: new URLSearchParams({ credential: auth, uri: '/timed/cc' }).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded', origin: s.origin } });
  assert.equal(set.status, 303, set.body);
  assert.ok(set.headers['set-cookie'], 'the credential cookie is set');
  notStorable('page cookie 303', set.headers);
});
