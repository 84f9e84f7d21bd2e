// Standalone mode (l402d with `upstream:` faces clients): nginx's internal endpoints do not exist for clients,
// the health answer says nothing about the process, CORS preflights are answered by the gate, and the dev
// wallet's pay button answers only when the config enables it, and only to loopback clients.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, startCountingUpstream, type CountingUpstream } from './harness.js';
import { TEST_ROOT_KEY } from './gate-fixture.js';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { startGate, type RunningGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';

const cleanup = new Cleanup();
let upstream: CountingUpstream;
let plain: { port: number; gate: RunningGate };
let demo: { port: number; gate: RunningGate };

const ROUTES = `routes:
  - { match: /premium, amount_msat: 900000 }
  - { match: /limited, amount_msat: 1000, invoice_rate_limit: 1r/m }
  - { match: /cheap/, amount_msat: 1000, access: indefinite }
`;

async function start(lightning: string): Promise<{ port: number; gate: RunningGate }> {
  const dir = mkdtempSync(join(tmpdir(), 'l402-internal-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${upstream.port}\nlog: { level: warn }\nlightning: ${lightning}\n${ROUTES}`,
    { env: {} },
  );
  const gate = await startGate(cfg, { log: createLogger('warn') });
  cleanup.add(() => gate.close());
  return { port, gate };
}

before(async () => {
  upstream = cleanup.use(await startCountingUpstream());
  plain = await start('{ type: dev }');
  demo = await start('{ type: dev, pay_endpoint: true }');
});
after(() => cleanup.run());

function req(port: number, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: { connection: 'close', accept: 'application/json', ...opts.headers } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    r.on('error', reject);
    r.end(opts.body);
  });
}

test('a config without a lightning: section is refused, naming the key', () => {
  assert.throws(
    () => parseConfig(`root_key: ${TEST_ROOT_KEY}\nstore: { type: memory }\n${ROUTES}`, { env: {}, source: 'l402.yaml' }),
    (e: unknown) => e instanceof ConfigError && /^l402\.yaml: lightning: required/m.test(e.message) && /not real money/.test(e.message),
  );
});

test('/_l402/render is an ordinary path in standalone mode: a client cannot mint invoices for a chosen URI or outcome', async () => {
  upstream.reset();
  for (const path of ['/_l402/render', '/_l402/auth']) {
    const r = await req(plain.port, path, { headers: { 'x-original-uri': '/limited', 'x-l402-uri': '/limited', 'x-original-method': 'GET', 'x-l402-outcome': 'challenge', 'x-l402-client-addr': '10.9.9.9' } });
    // No route for /_l402/…: refused as any unpriced path, never a decision about /limited.
    assert.equal(r.headers['www-authenticate'], undefined, `${path}: ${r.body}`);
    assert.equal(r.headers['x-l402-outcome'], undefined, path);
    assert.ok(!r.body.includes('invoice'), r.body);
    assert.notEqual(r.status, 200, path);
  }
  assert.equal(upstream.hits, 0);
  // /limited's invoice rate limit (1 a minute) was not burnt by those: the first real request still gets its invoice.
  const first = await req(plain.port, '/limited');
  assert.equal(first.status, 402, first.body);
  const limited = await req(plain.port, '/limited', { headers: { origin: 'https://app.example' } });
  assert.equal(limited.status, 429);
  // A browser client can read the refusal and when to retry.
  assert.equal(limited.headers['access-control-allow-origin'], '*');
  assert.match(String(limited.headers['access-control-expose-headers']), /Retry-After/);
});

test('/_l402/health answers without process details', async () => {
  const r = await req(plain.port, '/_l402/health');
  assert.equal(r.status, 200);
  const b = JSON.parse(r.body) as Record<string, unknown>;
  assert.equal(b.status, 'ok');
  assert.deepEqual(Object.keys(b).sort(), ['instance', 'status']);
  assert.match(String(b.instance), /^[0-9a-f]{12}$/);
  assert.ok(!r.body.includes(String(process.pid)));
});

test('a CORS preflight on a paid route gets 204 from the gate in standalone mode: no upstream, no invoice', async () => {
  upstream.reset();
  const r = await req(plain.port, '/premium/x', { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'Authorization' } });
  assert.equal(r.status, 204, r.body);
  assert.equal(r.headers['access-control-allow-origin'], '*');
  assert.match(String(r.headers['access-control-allow-headers']), /authorization/i);
  assert.match(String(r.headers['access-control-allow-headers']), /x-cashu/i);
  assert.ok(r.headers['access-control-allow-methods']);
  assert.ok(Number(r.headers['access-control-max-age']) > 0);
  assert.equal(r.headers['www-authenticate'], undefined);
  assert.equal(upstream.hits, 0);
});

test('the dev wallet pay button: 404 unless lightning.pay_endpoint is on; then it pays for a loopback client', async () => {
  for (const s of [plain, demo]) {
    const c = await req(s.port, '/premium/a');
    assert.equal(c.status, 402, c.body);
    const { invoice } = JSON.parse(c.body) as { invoice: string };
    const pay = await req(s.port, '/_l402/page/dev-pay', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ invoice }) });
    if (s === plain) {
      assert.equal(pay.status, 404, pay.body);
      assert.ok(!pay.body.includes('preimage'));
    } else {
      assert.equal(pay.status, 200, pay.body);
      assert.match(pay.body, /"preimage":"[0-9a-f]{64}"/);
    }
  }
  // Even when enabled, a request nginx says came from elsewhere is refused.
  const c = await req(demo.port, '/premium/b');
  const { invoice } = JSON.parse(c.body) as { invoice: string };
  const far = await req(demo.port, '/_l402/page/dev-pay', { method: 'POST', headers: { 'content-type': 'application/json', 'x-l402-client-addr': '203.0.113.7' }, body: JSON.stringify({ invoice }) });
  assert.equal(far.status, 404, far.body);
});

test('standalone: a path that is not UTF-8 is priced, bought and forwarded as the same bytes', async () => {
  const c = await req(plain.port, '/premium/caf%E9');
  assert.equal(c.status, 402, c.body);
  const { macaroon, invoice } = JSON.parse(c.body) as { macaroon: string; invoice: string };
  const pay = await req(demo.port, '/_l402/page/dev-pay', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ invoice }) });
  // Another gate's wallet cannot pay it; use the CLI-equivalent wallet of this gate instead.
  assert.equal(pay.status, 400);
  const { DevWallet } = await import('../../src/rails/lightning/dev/dev-wallet.js');
  const wallet = DevWallet.open(plain.gate.gate.parts.config.dataDir);
  try {
    const auth = `L402 ${macaroon}:${wallet.pay(invoice).toString('hex')}`;
    upstream.reset();
    assert.notEqual((await req(plain.port, '/premium/caf%EF%BF%BD', { headers: { authorization: auth } })).status, 200);
    const ok = await req(plain.port, '/premium/caf%E9', { headers: { authorization: auth } });
    assert.equal(ok.status, 200, ok.body);
    assert.deepEqual(upstream.requests.map((x) => x.url), ['/premium/caf%E9']);
  } finally {
    wallet.close();
  }
});

test('behind nginx, a request naming a domain as Host (a page rebinding its DNS name to the loopback listener) is answered nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-internal-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const cfg = parseConfig(`listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nlog: { level: warn }\nlightning: { type: dev }\n${ROUTES}`, { env: {} });
  const gate = await startGate(cfg, { log: createLogger('warn') });
  cleanup.add(() => gate.close());
  const original = { 'x-original-uri': '/premium', 'x-l402-uri': '/premium', 'x-original-method': 'GET' };
  for (const path of ['/_l402/auth', '/_l402/render', '/.well-known/l402-services', '/_l402/page/status']) {
    const r = await req(port, path, { headers: { ...original, host: `rebound.example:${port}` } });
    assert.equal(r.status, 403, path);
    assert.equal(r.headers['www-authenticate'], undefined, path);
    assert.equal(r.headers['x-l402-outcome'], undefined, path);
    assert.equal(r.body, '', path);
  }
  // nginx names its upstream block (or an address): decided as usual.
  for (const host of ['l402d', `127.0.0.1:${port}`, 'localhost']) {
    const r = await req(port, '/_l402/auth', { headers: { ...original, host } });
    assert.equal(r.status, 401, host);
    assert.equal(r.headers['x-l402-outcome'], 'challenge', host);
  }
  assert.equal((await req(port, '/_l402/health', { headers: { host: 'rebound.example' } })).status, 200, 'health says nothing anyway');
});
