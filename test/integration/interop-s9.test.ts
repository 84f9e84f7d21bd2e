// Paid flows over HTTP/2 (h2c) through real nginx after the s9 snippet changes (server.conf empties $l402_uri and
// $l402_route_pin per request; render/release read the values kept with the auth answer): auto-detect, dry-run,
// a location-pinned route, the browser's payment page, the release of a payment on nginx's own 502, and a gRPC
// call paid with the lnd-style `macaroon` metadata. HTTP/1.1 forms of these flows live in their own test files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, freePort, grpcClient, http1, http2, requireTool, startCountingUpstream, type CountingUpstream } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroon } from '../../src/protocol/macaroon.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
let app: CountingUpstream;
let h2: string;
before(async () => {
  if (!nginxBin) return;
  app = cleanup.use(await startCountingUpstream(), 'app');
  const dead = await freePort();
  const up = `http://127.0.0.1:${app.port}`;
  s = await startStack(cleanup, {
    extraYaml: 'dry_run: { invoice_sample_rate: 1 }\n',
    extraRoutes: [
      '  - { match: /h2auto, amount_msat: 4000, auto_detect_payment: true }',
      '  - { match: /h2shadow, amount_msat: 7000, dry_run: true }',
      '  - { match: /h2down, amount_msat: 1500 }',
      '  - { id: h2pin, match: /h2pinned/, amount_msat: 6000, pinned: true }',
      '  - { id: h2pindown, match: /h2pindown/, amount_msat: 2500, pinned: true }',
      '',
    ].join('\n'),
    extraH2: (d) => `
        location /h2auto { include ${d}/protect.conf; proxy_pass ${up}; }
        location /h2shadow { include ${d}/protect.conf; include ${d}/dry-run.conf; proxy_pass ${up}; }
        location /h2down { include ${d}/protect.conf; proxy_pass http://127.0.0.1:${dead}; }
        location /h2pinned/ { set $l402_route_pin h2pin; include ${d}/protect.conf; proxy_pass ${up}; }
        location /h2pindown/ { set $l402_route_pin h2pindown; include ${d}/protect.conf; proxy_pass http://127.0.0.1:${dead}; }`,
  });
  h2 = `http://127.0.0.1:${s.h2Port}`;
});
after(() => cleanup.run());

const json = { accept: 'application/json' };

test('h2c auto-detect: polling with the macaroon alone repeats the invoice, passes once after payment', { skip }, async () => {
  app.reset();
  const first = await http2(h2, '/h2auto/a', { headers: json });
  assert.equal(first.status, 402, first.body);
  const { macaroon, invoice } = JSON.parse(first.body) as { macaroon: string; invoice: string };
  const poll = await http2(h2, '/h2auto/a', { headers: { ...json, authorization: `L402 ${macaroon}` } });
  assert.equal(poll.status, 402, poll.body);
  assert.equal(JSON.parse(poll.body).reason, 'payment_pending');
  s.wallet.pay(invoice);
  const paid = await http2(h2, '/h2auto/a', { headers: { ...json, authorization: `L402 ${macaroon}` } });
  assert.equal(paid.status, 200, paid.body);
  assert.equal(app.hits, 1);
  const again = await http2(h2, '/h2auto/a', { headers: { ...json, authorization: `L402 ${macaroon}` } });
  assert.equal(again.status, 401, again.body);
  assert.equal(app.hits, 1);
});

test('h2c dry-run: unpaid and paid requests pass, flagged; the sampled challenge is payable', { skip }, async () => {
  app.reset();
  const missing = await http2(h2, '/h2shadow');
  assert.equal(missing.status, 200, missing.body);
  assert.equal(missing.headers['x-l402-dry-run'], '1');
  assert.equal(missing.headers['x-l402-dry-run-price-msat'], '7000');
  const m = /macaroon="([^"]+)", invoice="([^"]+)"/.exec(String(missing.headers['x-l402-dry-run-challenge']));
  assert.ok(m, String(missing.headers['x-l402-dry-run-challenge']));
  const auth = `L402 ${m[1]}:${s.wallet.pay(m[2]!).toString('hex')}`;
  const valid = await http2(h2, '/h2shadow', { headers: { authorization: auth } });
  assert.equal(valid.status, 200);
  assert.equal(valid.headers['x-l402-dry-run'], '1');
  assert.equal(valid.headers['x-l402-dry-run-price-msat'], undefined, 'a valid credential would have passed');
  assert.equal(app.hits, 2);
});

test('h2c location-pinned route: priced by its pin, paid once, the upstream told the pinned route', { skip }, async () => {
  app.reset();
  const unpaid = await http2(h2, '/h2pinned/x', { headers: json });
  assert.equal(unpaid.status, 402, unpaid.body);
  const { macaroon, invoice } = JSON.parse(unpaid.body) as { macaroon: string; invoice: string };
  assert.match(invoice, /^lnbcrt60n1/, 'priced at the pinned route (6000 msat)');
  const auth = `L402 ${macaroon}:${s.wallet.pay(invoice).toString('hex')}`;
  const paid = await http2(h2, '/h2pinned/x', { headers: { ...json, authorization: auth } });
  assert.equal(paid.status, 200, paid.body);
  assert.equal(app.hits, 1);
  assert.equal(app.requests[0]!.headers['x-l402-route'], 'h2pin');
});

test('h2c payment page: a browser gets the HTML page with the challenge; paying it lets the request through', { skip }, async () => {
  s.upstream.reset();
  const page = await http2(h2, '/premium/page', { headers: { accept: 'text/html,application/xhtml+xml' } });
  assert.equal(page.status, 402);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  const m = /macaroon="([^"]+)", invoice="([^"]+)"/.exec(String(page.headers['www-authenticate']));
  assert.ok(m, String(page.headers['www-authenticate']));
  assert.ok(page.body.includes(m[2]!), 'the page shows the invoice of the challenge');
  const auth = `L402 ${m[1]}:${s.wallet.pay(m[2]!).toString('hex')}`;
  const paid = await http2(h2, '/premium/page', { headers: { accept: 'text/html', authorization: auth } });
  assert.equal(paid.status, 200, paid.body);
  assert.equal(s.upstream.hits, 1);
});

test('h2c release: nginx\'s own 502 gives the payment back, every time (the credential is never consumed)', { skip }, async () => {
  const unpaid = await http2(h2, '/h2down', { headers: json });
  assert.equal(unpaid.status, 402, unpaid.body);
  const { macaroon, invoice } = JSON.parse(unpaid.body) as { macaroon: string; invoice: string };
  const auth = `L402 ${macaroon}:${s.wallet.pay(invoice).toString('hex')}`;
  for (let i = 0; i < 2; i++) {
    const down = await http2(h2, '/h2down', { headers: { ...json, authorization: auth } });
    assert.equal(down.status, 502, down.body);
    assert.equal(JSON.parse(down.body).payment, 'not_consumed', `try ${i + 1}: ${down.body}`);
  }
});

test('gRPC over h2c: paid with lnd-style `macaroon` metadata (hex, preimage caveat), once', { skip }, async () => {
  s.grpcUp.reset();
  const client = grpcClient(s.h2Port);
  try {
    const e = (await client.getContent({ id: 'm' }).then(() => assert.fail('unpaid call passed'), (err: unknown) => err)) as { code: number; metadata: { get(k: string): unknown[] } };
    assert.equal(e.code, 13);
    const m = /macaroon="([^"]+)", invoice="([^"]+)"/.exec(String(e.metadata.get('www-authenticate')[0]))!;
    const pre = s.wallet.pay(m[2]!).toString('hex');
    const hexMac = encodeMacaroon(attenuate(decodeMacaroonBase64(m[1]!), `preimage=${pre}`)).toString('hex');
    const res = await client.getContent({ id: 'm' }, { macaroon: hexMac });
    assert.equal(res.id, 'm');
    assert.equal(s.grpcUp.calls, 1);
    assert.equal(s.grpcUp.metadata[0]!['macaroon'], undefined, 'the credential stays at the gate');
    const replay = (await client.getContent({ id: 'm' }, { macaroon: hexMac }).then(() => assert.fail('replayed call passed'), (err: unknown) => err)) as { code: number };
    assert.equal(replay.code, 16);
    assert.equal(s.grpcUp.calls, 1);
  } finally {
    client.close();
  }
});

test('h2c release on a location-pinned route: nginx\'s 502 gives the payment back (the release names the pin decided on)', { skip }, async () => {
  const unpaid = await http2(h2, '/h2pindown/a', { headers: json });
  assert.equal(unpaid.status, 402, unpaid.body);
  const { macaroon, invoice } = JSON.parse(unpaid.body) as { macaroon: string; invoice: string };
  assert.match(invoice, /^lnbcrt25n1/, 'priced at the pinned route (2500 msat)');
  const auth = `L402 ${macaroon}:${s.wallet.pay(invoice).toString('hex')}`;
  for (let i = 0; i < 2; i++) {
    const down = await http2(h2, '/h2pindown/a', { headers: { ...json, authorization: auth } });
    assert.equal(down.status, 502, down.body);
    assert.equal(JSON.parse(down.body).payment, 'not_consumed', `try ${i + 1}: ${down.body}`);
  }
});

test('a domain-name Host (HTTP/1.1 Host, h2 :authority) on a paid request: challenged, then served (only l402d\'s own Host is checked)', { skip }, async () => {
  s.upstream.reset();
  for (const [name, ask] of [
    ['h1', (auth?: string) => http1(s.origin + '/premium/host', { headers: { ...json, host: 'api.example.com', ...(auth ? { authorization: auth } : {}) } })],
    ['h2', (auth?: string) => http2(h2, '/premium/host', { headers: { ...json, ':authority': 'api.example.com', ...(auth ? { authorization: auth } : {}) } })],
  ] as const) {
    const unpaid = await ask();
    assert.equal(unpaid.status, 402, `${name}: ${unpaid.body}`);
    const { macaroon, invoice } = JSON.parse(unpaid.body) as { macaroon: string; invoice: string };
    const paid = await ask(`L402 ${macaroon}:${s.wallet.pay(invoice).toString('hex')}`);
    assert.equal(paid.status, 200, `${name}: ${paid.body}`);
  }
  assert.equal(s.upstream.hits, 2);
});

test('h2c server-level pin (set before the include): priced by the pin, paid once; its release on a 502 gives the payment back', { skip }, async () => {
  const c2 = new Cleanup();
  try {
    const dead = await freePort();
    const t = await startStack(c2, {
      extraRoutes: '  - { id: srvpin, match: /, amount_msat: 8000, pinned: true }\n',
      surround: { server: 'set $l402_route_pin srvpin;' },
      extraH2: (d) => `location /gone { include ${d}/protect.conf; proxy_pass http://127.0.0.1:${dead}; }`,
    });
    const o = `http://127.0.0.1:${t.h2Port}`;
    const unpaid = await http2(o, '/premium/s', { headers: json });
    assert.equal(unpaid.status, 402, unpaid.body);
    const ch = JSON.parse(unpaid.body) as { macaroon: string; invoice: string };
    assert.match(ch.invoice, /^lnbcrt80n1/, 'priced at the server-level pin (8000 msat)');
    const paid = await http2(o, '/premium/s', { headers: { ...json, authorization: `L402 ${ch.macaroon}:${t.wallet.pay(ch.invoice).toString('hex')}` } });
    assert.equal(paid.status, 200, paid.body);
    assert.equal(t.upstream.hits, 1);
    assert.equal(t.upstream.requests[0]!.headers['x-l402-route'], 'srvpin');
    const g = await http2(o, '/gone', { headers: json });
    assert.equal(g.status, 402, g.body);
    const gc = JSON.parse(g.body) as { macaroon: string; invoice: string };
    const auth = `L402 ${gc.macaroon}:${t.wallet.pay(gc.invoice).toString('hex')}`;
    for (let i = 0; i < 2; i++) {
      const down = await http2(o, '/gone', { headers: { ...json, authorization: auth } });
      assert.equal(down.status, 502, down.body);
      assert.equal(JSON.parse(down.body).payment, 'not_consumed', `try ${i + 1}: ${down.body}`);
    }
  } finally {
    await c2.run();
  }
});
