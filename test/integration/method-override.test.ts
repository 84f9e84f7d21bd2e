// A request that names another method for the upstream to run (X-HTTP-Method-Override and its kin, a `_method`
// parameter), or another path (X-Original-URL, X-Rewrite-URL), is refused before any decision, through real nginx and in standalone mode: an upstream framework
// that honours the name would run a method the route does not sell, or that a holder's caveat ruled out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { http1 } from './harness.js';
import { type Stack } from './gate-fixture.js';
import { bothModes, buyStandalone, sendTo, type Standalone } from './standalone-fixture.js';

let s: Stack;
let st: Standalone;
const { skip } = bothModes('method-override', (started) => ({ s, st } = started));

test('through nginx: a paid POST never runs as another method, and is not spent by the refusal', { skip }, async () => {
  const { auth } = await s.buy('/premium/ov', 'POST');
  const before = s.upstream.hits;
  const tries: Array<[string, Record<string, string>]> = [
    ['/premium/ov', { 'x-http-method-override': 'DELETE' }],
    ['/premium/ov', { 'X-HTTP-Method': 'PUT' }],
    ['/premium/ov', { 'x-method-override': 'patch' }],
    ['/premium/ov?_method=DELETE', {}],
    ['/premium/ov?a=1&%5Fmethod=delete', {}],
    ['/premium/ov', { 'X-Original-URL': '/admin' }],
    ['/premium/ov', { 'X-Rewrite-URL': '/admin' }],
  ];
  for (const [path, headers] of tries) {
    const r = await http1(s.origin + path, { method: 'POST', body: 'x', headers: { ...headers, authorization: auth, accept: 'application/json' } });
    assert.equal(r.status, 400, `${path} ${JSON.stringify(headers)}: ${r.body}`);
    assert.equal((JSON.parse(r.body) as { reason: string }).reason, 'method_override', r.body);
    assert.equal(s.upstream.hits, before, 'the upstream was never reached');
  }
  // Unpaid, the same refusal: no invoice is minted for a request that cannot be decided.
  const unpaid = await http1(s.origin + '/premium/ov', { method: 'POST', headers: { 'x-http-method-override': 'DELETE', accept: 'application/json' } });
  assert.equal(unpaid.status, 400, unpaid.body);
  assert.equal(unpaid.headers['www-authenticate'], undefined, 'no challenge offered');
  assert.doesNotMatch(unpaid.body, /lnbc|macaroon|invoice/i, 'no invoice in the refusal');
  // Naming its own method is no override; the single-use credential was not spent by the refusals above.
  const ok = await http1(s.origin + '/premium/ov?_method=POST', { method: 'POST', body: 'x', headers: { 'x-http-method-override': 'post', authorization: auth } });
  assert.equal(ok.status, 200, ok.body);
  assert.equal(s.upstream.hits, before + 1);
  // Even naming its own method, the header never reaches the upstream (a repeat of it could name another).
  assert.equal(s.upstream.requests.at(-1)!.headers['x-http-method-override'], undefined);
});

test('through nginx: a path named in X-Original-URL or X-Rewrite-URL is refused in any location, free ones too (an app that serves it instead would open a paid path unpaid)', { skip }, async () => {
  const before = s.upstream.hits;
  for (const name of ['X-Original-URL', 'X-Rewrite-URL']) {
    const r = await http1(s.origin + '/public/x', { headers: { [name]: '/premium/x', accept: 'application/json' } });
    assert.equal(r.status, 400, `${name}: ${r.body}`);
    assert.equal((JSON.parse(r.body) as { reason: string }).reason, 'method_override', r.body);
  }
  assert.equal(s.upstream.hits, before, 'the upstream was never reached');
  const plain = await http1(s.origin + '/public/x');
  assert.equal(plain.status, 200, plain.body);
});

test('through nginx: a method-restricted route refuses the override on its own method too (a GET route, a DELETE named)', { skip }, async () => {
  const r = await http1(s.origin + '/getonly/x', { headers: { 'x-http-method-override': 'DELETE', accept: 'application/json' } });
  assert.equal(r.status, 400, r.body);
  const plain = await http1(s.origin + '/getonly/x', { headers: { accept: 'application/json' } });
  assert.equal(plain.status, 402, plain.body);
});

test('standalone: an override header or parameter is refused before any decision, the payment kept', async () => {
  const auth = await buyStandalone(st, '/expensive/ov');
  const before = st.upstream.hits;
  for (const [path, headers] of [['/expensive/ov', { 'X-HTTP-Method-Override': 'DELETE' }], ['/expensive/ov?_method=PUT', {}], ['/expensive/ov', { 'X-Original-URL': '/cheap/x' }]] as const) {
    const r = await sendTo(st.port, 'GET', path, { ...headers, authorization: auth });
    assert.equal(r.status, 400, r.body);
    // The answer says what was refused: a method, or (X-Original-URL) a path.
    assert.match((JSON.parse(r.body) as { detail: string }).detail, 'X-Original-URL' in headers ? /x-original-url names a path other than the request's own/ : /names a method other than GET/);
    assert.equal(st.upstream.hits, before);
  }
  const ok = await sendTo(st.port, 'GET', '/expensive/ov', { authorization: auth });
  assert.equal(ok.status, 200, ok.body);
  assert.equal(st.upstream.hits, before + 1);
});
