// /.well-known/l402-services: ngx_l402's schema, stable key order, CORS, never behind the paywall.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, http1, requireTool } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';

const skip = requireTool('nginx') ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
before(async () => {
  if (!skip) s = await startStack(cleanup, { extraYaml: 'manifest: { name: "Test API", contact: "ops@example.com" }\n' });
});
after(() => cleanup.run());

function keysSorted(v: unknown): boolean {
  if (Array.isArray(v)) return v.every(keysSorted);
  if (v && typeof v === 'object') {
    const k = Object.keys(v);
    return k.join() === [...k].sort().join() && Object.values(v).every(keysSorted);
  }
  return true;
}

test('manifest lists priced routes with caveats, hides what it should', { skip }, async () => {
  s.upstream.reset();
  const r = await http1(s.origin + '/.well-known/l402-services');
  assert.equal(r.status, 200);
  assert.equal(r.headers['access-control-allow-origin'], '*');
  assert.match(String(r.headers['content-type']), /application\/json/);
  const m = JSON.parse(r.body);
  assert.ok(keysSorted(m), 'keys sorted at every level');
  assert.equal(m.version, '1');
  assert.deepEqual(m.service, { contact: 'ops@example.com', name: 'Test API' });
  assert.equal(m.payment_methods[0].type, 'lightning');
  assert.equal(m.payment_methods[0].backend, 'DEV');
  const paths = m.routes.map((x: { path: string }) => x.path);
  assert.ok(paths.includes('/premium'));
  assert.ok(!paths.includes('/hidden'), 'manifest_hide');
  assert.ok(!paths.includes('/shadow'), 'dry-run routes are not sold');
  const premium = m.routes.find((x: { path: string }) => x.path === '/premium');
  assert.deepEqual(premium.price, { amount_msat: 10000, type: 'static' });
  assert.ok(premium.caveats_required.includes('method=<request method>'));
  const timed = m.routes.find((x: { path: string }) => x.path === '/timed/');
  assert.equal(timed.macaroon_timeout_secs, 120);
  assert.deepEqual(m.routes.find((x: { path: string }) => x.path === '/limited').rate_limit, { max_requests: 2, window_secs: 60 });
  assert.equal(m.routes.find((x: { path: string }) => x.path === '/auto').auto_detect_payment, true);
  assert.equal(s.upstream.hits, 0);
  assert.equal((await http1(s.origin + '/.well-known/l402-services', { method: 'POST', body: 'x' })).status, 405);
  // Byte-stable across requests.
  assert.equal((await http1(s.origin + '/.well-known/l402-services')).body, r.body);
});
