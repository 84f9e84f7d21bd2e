// Honest clients after the s10/s11 changes (method and path overrides refused, a credential's expiry counted
// from its invoice's, top-up invoices bounded by what is left of their credential): a client that paid gets
// through. curl (HTTP/1.1 and h2c with prior knowledge) through real nginx built from the generated snippets, a
// plain node client in standalone mode, Alby's fetchWithL402 with a POST, and a timed balance's top-up. The
// headers and query parameters here are ones real clients send that only look like overrides: a method override
// naming the request's own method, `?method=`, `?payment_method=`, `X-Original-URI`, `X-Forwarded-Uri`, a form
// body with `_method` in a field's value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fetchWithL402 } from '@getalby/lightning-tools/402/l402';
import { decode as decodeBolt11 } from 'light-bolt11-decoder';
import { Cleanup, grpcClient, http1, http2, requireTool } from './harness.js';
import { type Stack } from './gate-fixture.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroon } from '../../src/protocol/macaroon.js';
import { bothModes, buyStandalone, payChallenge, sendTo, startStandaloneGate, type Standalone } from './standalone-fixture.js';

const run = promisify(execFile);
const curlBin = requireTool('curl');
let s: Stack;
let st: Standalone;
// The extra locations proxy to the standalone fixture's counting upstream (startStack starts its own inside).
const { skip } = bothModes('interop-s10', (started) => ({ s, st } = started), {
  stack: ({ upstream: { port: s0port } }) => ({
    extraRoutes: [
      '  - { match: /postonly, amount_msat: 3000, methods: [POST] }',
      '  - { match: /tmeter/, amount_msat: 1000, access: balance, balance_msat: 2000, macaroon_timeout: 600 }',
      '  - { match: /dryov, amount_msat: 1000, dry_run: true }',
      '  - { match: /tshort/, amount_msat: 1000, access: timed, macaroon_timeout: 30 }',
      '  - { match: /bshort/, amount_msat: 1000, access: balance, balance_msat: 1000, macaroon_timeout: 30 }',
      '',
    ].join('\n'),
    extra: (d) => `
        location /postonly { include ${d}/protect.conf; proxy_pass http://127.0.0.1:${s0port}; }
        location /tmeter/ { include ${d}/protect.conf; include ${d}/balance.conf; proxy_pass http://127.0.0.1:${s0port}; }
        location /bshort/ { include ${d}/protect.conf; include ${d}/balance.conf; proxy_pass http://127.0.0.1:${s0port}; }
        location /tshort/ { include ${d}/protect.conf; proxy_pass http://127.0.0.1:${s0port}; }
        location /dryov { include ${d}/protect.conf; include ${d}/dry-run.conf; proxy_pass http://127.0.0.1:${s0port}; }`,
    extraH2: (d) => `
        location /postonly { include ${d}/protect.conf; proxy_pass http://127.0.0.1:${s0port}; }`,
  }),
});
const skipCurl = skip || (curlBin ? false : 'curl not installed');

/** Variants an honest client sends: [label, method, path suffix, extra headers]. None names another method or path. */
function benign(method: 'GET' | 'POST'): Array<[string, string, Record<string, string>]> {
  return [
    ['plain', '', {}],
    ['X-HTTP-Method-Override naming its own method', '', { 'X-HTTP-Method-Override': method }],
    ['X-HTTP-Method in lower case naming its own method', '', { 'X-HTTP-Method': method.toLowerCase() }],
    ['X-Method-Override naming its own method', '', { 'X-Method-Override': ` ${method} ` }],
    ['?method=x', '?method=x', {}],
    ['?payment_method=card', '?payment_method=card', {}],
    ['?sort=method&http_method=other', '?sort=method&http_method=other', {}],
    [`?_method=${method}`, `?_method=${method}`, {}],
    ['X-Original-URI', '', { 'X-Original-URI': '/somewhere/else' }],
    ['X-Forwarded-Uri and X-Forwarded-Prefix', '', { 'X-Forwarded-Uri': '/other', 'X-Forwarded-Prefix': '/api' }],
    ['X-Original-Method', '', { 'X-Original-Method': 'DELETE' }],
  ];
}

async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const { stdout } = await run(curlBin!, ['-sS', '--max-time', '30', '-w', '\n%{http_code}', ...args], { timeout: 40_000 });
  const i = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) };
}

for (const proto of ['http1.1', 'h2c'] as const) {
  test(`curl ${proto} through nginx: a paid GET and a paid \`curl -X POST -d\` form pass with every look-alike header and parameter, each once`, { skip: skipCurl }, async () => {
    const base = proto === 'h2c' ? `http://127.0.0.1:${s.h2Port}` : s.origin;
    const flags = proto === 'h2c' ? ['--http2-prior-knowledge'] : ['--http1.1'];
    for (const [method, path] of [['GET', '/premium/c'], ['POST', '/postonly/c']] as const) {
      for (const [label, suffix, headers] of benign(method)) {
        const hdrs = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
        const what = `${proto} ${method} ${label}`;
        // Unpaid: a 402 with a challenge (no 400), which curl's own client then pays.
        const body = method === 'POST' ? ['-X', 'POST', '-d', 'name=x&note=_method%3DDELETE&payment_method=card'] : [];
        const unpaid = await curl([...flags, ...body, ...hdrs, '-H', 'Accept: application/json', base + path + suffix]);
        assert.equal(unpaid.status, 402, `${what}: ${unpaid.body}`);
        const auth = payChallenge(s.wallet, unpaid.body);
        const hitsBefore = s.upstream.hits + st.upstream.hits;
        const paid = await curl([...flags, ...body, ...hdrs, '-H', `Authorization: ${auth}`, base + path + suffix]);
        assert.equal(paid.status, 200, `${what}: ${paid.body}`);
        assert.equal(s.upstream.hits + st.upstream.hits, hitsBefore + 1, `${what}: served once`);
        const again = await curl([...flags, ...body, ...hdrs, '-H', `Authorization: ${auth}`, '-H', 'Accept: application/json', base + path + suffix]);
        assert.equal(again.status, 401, `${what}: a single-use credential is spent: ${again.body}`);
      }
    }
  });
}

test('gRPC over h2c with a look-alike method header (its own POST) and `token` metadata (hex macaroon with its preimage caveat): paid once', { skip }, async () => {
  s.grpcUp.reset();
  const client = grpcClient(s.h2Port);
  try {
    const e = (await client.getContent({ id: 'g' }, { 'x-http-method-override': 'POST' }).then(() => assert.fail('unpaid call passed'), (err: unknown) => err)) as { code: number; metadata: { get(k: string): unknown[] } };
    assert.equal(e.code, 13, 'unpaid: the payment-required code, not a refusal');
    const m = /macaroon="([^"]+)", invoice="([^"]+)"/.exec(String(e.metadata.get('www-authenticate')[0]))!;
    const pre = s.wallet.pay(m[2]!).toString('hex');
    const token = encodeMacaroon(attenuate(decodeMacaroonBase64(m[1]!), `preimage=${pre}`)).toString('hex');
    const res = await client.getContent({ id: 'g' }, { token, 'x-http-method-override': 'POST' });
    assert.equal(res.id, 'g');
    assert.equal(s.grpcUp.calls, 1);
  } finally {
    client.close();
  }
});

test('standalone: a paid GET and POST pass with every look-alike header and parameter, each once', async () => {
  for (const method of ['GET', 'POST'] as const) {
    for (const [label, suffix, headers] of benign(method)) {
      const path = `/expensive/s${suffix}`;
      const unpaid = await sendTo(st.port, method, path, headers);
      assert.equal(unpaid.status, 402, `${method} ${label}: ${unpaid.body}`);
      const auth = payChallenge(st.wallet, unpaid.body);
      const before = st.upstream.hits;
      const paid = await sendTo(st.port, method, path, { ...headers, authorization: auth });
      assert.equal(paid.status, 200, `${method} ${label}: ${paid.body}`);
      assert.equal(st.upstream.hits, before + 1, `${method} ${label}: served once`);
    }
  }
  // A standalone X-Original-URL naming the request's own target is no override (behind nginx any one is refused).
  const auth = await buyStandalone(st, '/expensive/own');
  const own = await sendTo(st.port, 'GET', '/expensive/own', { authorization: auth, 'X-Original-URL': '/expensive/own' });
  assert.equal(own.status, 200, own.body);
});

test('@getalby/lightning-tools fetchWithL402: a POST with a JSON body and its own method in X-HTTP-Method-Override pays and passes', { skip }, async () => {
  let paid = 0;
  const wallet = {
    async payInvoice({ invoice }: { invoice: string }) {
      paid++;
      return { preimage: s.wallet.pay(invoice).toString('hex') };
    },
  };
  const before = st.upstream.hits;
  const res = await fetchWithL402(s.origin + '/postonly/alby?method=card', { method: 'POST', body: JSON.stringify({ _method: 'DELETE' }), headers: { 'content-type': 'application/json', 'X-HTTP-Method-Override': 'POST' } }, { wallet });
  assert.equal(res.status, 200, await res.clone().text());
  assert.equal(paid, 1);
  assert.equal(st.upstream.hits, before + 1);
});

test('a timed balance (macaroon_timeout 600): drawn empty, its top-up invoice expires within half what is left, is paid and credited once', { skip }, async () => {
  const get = (auth?: string) => http1(s.origin + '/tmeter/x', { headers: { accept: 'application/json', ...(auth ? { authorization: auth } : {}) } });
  const first = await get();
  assert.equal(first.status, 402, first.body);
  const offer = JSON.parse(first.body) as { macaroon: string; invoice: string };
  const auth = `L402 ${offer.macaroon}:${s.wallet.pay(offer.invoice).toString('hex')}`;
  const left: string[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await get(auth);
    assert.equal(r.status, 200, r.body);
    left.push(String(r.headers['x-l402-balance-msat']));
  }
  assert.deepEqual(left, ['1000', '0']);
  const empty = await get(auth);
  assert.equal(empty.status, 402, empty.body);
  const t = JSON.parse(empty.body) as { reason: string; topup: boolean; macaroon: string; invoice: string };
  assert.deepEqual([t.reason, t.topup, t.macaroon], ['balance_empty', true, offer.macaroon]);
  // Read by an independent decoder: payable for at least a minute, and gone before the credential (at most
  // half of its 600 s plus the first invoice's life; the credential counts from that invoice's expiry).
  const expiry = decodeBolt11(t.invoice).sections.find((x: { name: string }) => x.name === 'expiry') as { value: number } | undefined;
  assert.ok(expiry, 'the top-up invoice states its expiry');
  assert.ok(expiry.value >= 60 && expiry.value <= 600, `top-up invoice expiry ${expiry.value}`);
  const topped = `L402 ${offer.macaroon}:${s.wallet.pay(t.invoice).toString('hex')}`;
  const after1 = await get(topped);
  assert.equal(after1.status, 200, after1.body);
  assert.equal(after1.headers['x-l402-balance-msat'], '1000');
  const after2 = await get(topped);
  assert.equal(after2.status, 200, after2.body);
  assert.equal(after2.headers['x-l402-balance-msat'], '0', 'the top-up was credited once');
});

test('h2c: the same look-alike headers on a paid GET (node client) pass', { skip }, async () => {
  const h2 = `http://127.0.0.1:${s.h2Port}`;
  const { auth } = await s.buy('/premium/n');
  const r = await http2(h2, '/premium/n?payment_method=card&method=x', { headers: { authorization: auth, 'x-http-method-override': 'get', 'x-original-uri': '/x' } });
  assert.equal(r.status, 200, r.body);
});

// A dry-run route always passes and reports what enforcement would have answered. Clients that tunnel a method
// (Backbone's emulateHTTP and other older JS clients: POST with X-HTTP-Method-Override: PUT; Rails-style
// `?_method=`) were answered 400 there, breaking the app of an operator only observing. Nothing is opened by
// passing them: the route passes any method unpaid, and the override headers never reach the upstream.
const overrides: Array<[string, Record<string, string>]> = [
  ['', { 'X-HTTP-Method-Override': 'PUT' }],
  ['', { 'X-HTTP-Method': 'DELETE' }],
  ['?_method=PATCH', {}],
];

test('through nginx: a dry-run route passes a request naming another method, flagged as the 400 it would get, the header never forwarded', { skip }, async () => {
  for (const [suffix, headers] of overrides) {
    const before = st.upstream.hits;
    const r = await http1(s.origin + '/dryov/x' + suffix, { method: 'POST', body: 'a', headers: { ...headers, accept: 'application/json' } });
    assert.equal(r.status, 200, `${suffix} ${JSON.stringify(headers)}: ${r.body}`);
    assert.equal(r.headers['x-l402-dry-run'], '1');
    assert.equal(st.upstream.hits, before + 1);
    const sent = st.upstream.requests.at(-1)!.headers;
    for (const k of ['x-http-method-override', 'x-http-method', 'x-method-override']) assert.equal(sent[k], undefined, k);
  }
  // A path named in X-Original-URL stays refused server-wide (it could name another location).
  const path = await http1(s.origin + '/dryov/x', { headers: { 'X-Original-URL': '/premium/x', accept: 'application/json' } });
  assert.equal(path.status, 400, path.body);
  // An enforced route still refuses the same requests.
  const enforced = await http1(s.origin + '/premium/x', { method: 'POST', body: 'a', headers: { 'X-HTTP-Method-Override': 'PUT', accept: 'application/json' } });
  assert.equal(enforced.status, 400, enforced.body);
});

test('standalone: a dry-run route passes a request naming another method (header or _method), the header never forwarded; a path header stays refused', async () => {
  const c = new Cleanup();
  try {
    const { port, upstream: up } = await startStandaloneGate(c, {
      name: 'interop-s10-dry',
      config: 'lightning: { type: dev }\nroutes:\n  - { match: /shadow/, amount_msat: 1000, dry_run: true }\n  - { match: /paid/, amount_msat: 1000 }\n',
    });
    for (const [suffix, headers] of overrides) {
      const before = up.hits;
      const r = await sendTo(port, 'POST', '/shadow/x' + suffix, headers);
      assert.equal(r.status, 200, `${suffix} ${JSON.stringify(headers)}: ${r.body}`);
      assert.equal(r.headers['x-l402-dry-run'], '1');
      assert.equal(up.hits, before + 1);
      const sent = up.requests.at(-1)!.headers;
      for (const k of ['x-http-method-override', 'x-http-method', 'x-method-override']) assert.equal(sent[k], undefined, k);
    }
    const path = await sendTo(port, 'GET', '/shadow/x', { 'X-HTTP-Method-Override': 'PUT', 'X-Original-URL': '/paid/x' });
    assert.equal(path.status, 400, path.body);
    const enforced = await sendTo(port, 'POST', '/paid/x', { 'X-HTTP-Method-Override': 'PUT' });
    assert.equal(enforced.status, 400, enforced.body);
  } finally {
    await c.run();
  }
});

test('curl through nginx: paid paths with percent-encoded UTF-8, a space and a "+" (and such a query) pass once each (the control-character map refuses controls only)', { skip: skipCurl }, async () => {
  for (const path of ['/premium/caf%C3%A9', '/premium/a%20b', '/premium/a+b', '/premium/q?name=%E2%9C%93&x=a%2Bb']) {
    const { auth } = await s.buy(path);
    const before = s.upstream.hits;
    const r = await curl(['--http1.1', '-H', `Authorization: ${auth}`, s.origin + path]);
    assert.equal(r.status, 200, `${path}: ${r.body}`);
    assert.equal(s.upstream.hits, before + 1, path);
  }
});

test('curl with a large form body (Expect: 100-continue over HTTP/1.1; h2c; standalone): a paid POST is served once with its whole body', { skip: skipCurl }, async () => {
  const big = 'field=' + 'x'.repeat(64 * 1024);
  for (const [name, base, flags] of [
    ['http1.1', s.origin, ['--http1.1']],
    ['h2c', `http://127.0.0.1:${s.h2Port}`, ['--http2-prior-knowledge']],
  ] as const) {
    const unpaid = await curl([...flags, '-X', 'POST', '--data-binary', big, '-H', 'Accept: application/json', base + '/postonly/big']);
    assert.equal(unpaid.status, 402, `${name}: ${unpaid.body}`);
    const auth = payChallenge(s.wallet, unpaid.body);
    const before = st.upstream.hits;
    const paid = await curl([...flags, '--data-binary', big, '-H', `Authorization: ${auth}`, base + '/postonly/big']);
    assert.equal(paid.status, 200, `${name}: ${paid.body}`);
    assert.equal(st.upstream.hits, before + 1, name);
    assert.equal(st.upstream.requests.at(-1)!.body.length, big.length, `${name}: the whole body reached the upstream`);
  }
  const auth = await buyStandalone(st, '/expensive/big', 'POST');
  const before = st.upstream.hits;
  const paid = await curl(['--http1.1', '--data-binary', big, '-H', `Authorization: ${auth}`, `http://127.0.0.1:${st.port}/expensive/big`]);
  assert.equal(paid.status, 200, paid.body);
  assert.equal(st.upstream.hits, before + 1);
  assert.equal(st.upstream.requests.at(-1)!.body.length, big.length);
});

test('a timed credential with a short macaroon_timeout (30 s, under the 60 s invoice floor): paid right away, it opens its route again and again', { skip }, async () => {
  const { auth, invoice } = await s.buy('/tshort/a');
  const x = decodeBolt11(invoice).sections.find((v: { name: string }) => v.name === 'expiry') as { value: number } | undefined;
  assert.ok(x && x.value >= 60, 'the invoice stays payable at least a minute');
  for (const p of ['/tshort/a', '/tshort/b', '/tshort/a']) {
    const r = await http1(s.origin + p, { headers: { authorization: auth } });
    assert.equal(r.status, 200, `${p}: ${r.body}`);
  }
});

test('a short-lived balance (macaroon_timeout 30: too little time left for a top-up): drawn empty, the 402 sells a new credential, which pays and opens the route', { skip }, async () => {
  const get = (auth?: string) => http1(s.origin + '/bshort/x', { headers: { accept: 'application/json', ...(auth ? { authorization: auth } : {}) } });
  const first = JSON.parse((await get()).body) as { macaroon: string; invoice: string };
  const auth = `L402 ${first.macaroon}:${s.wallet.pay(first.invoice).toString('hex')}`;
  const used = await get(auth);
  assert.equal(used.status, 200, used.body);
  const empty = await get(auth);
  assert.equal(empty.status, 402, empty.body);
  const next = JSON.parse(empty.body) as { macaroon: string; invoice: string; topup?: boolean };
  assert.notEqual(next.topup, true, 'no top-up for a credential about to expire');
  assert.notEqual(next.macaroon, first.macaroon);
  const again = await get(`L402 ${next.macaroon}:${s.wallet.pay(next.invoice).toString('hex')}`);
  assert.equal(again.status, 200, again.body);
});
