// Per-route Lightning addresses (ngx_l402's l402_lnurl_addr) and payee overrides from the store.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, http1, requireTool } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';
import { startLnurlPeer, type LnurlPeer } from '../peers/lnurl-peer.js';
import { parseConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/config/config.js';

const skip = requireTool('nginx') ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
let alice: LnurlPeer;
before(async () => {
  if (skip) return;
  alice = cleanup.use(await startLnurlPeer());
  s = await startStack(cleanup, {
    extraYaml: `lnurl_options: { ca_cert_path: ${alice.caCertPath}, allow_private: true }\npricing: { cache_ms: 0 }\n`,
    extraRoutes: `  - { match: /tenant/alice, amount_msat: 21000, lnurl_addr: "${alice.address('alice')}" }\n  - { match: /tenant/other, amount_msat: 1000 }\n`,
  });
});
after(() => cleanup.run());

const challenge = async (path: string) => JSON.parse((await http1(s.origin + path, { headers: { accept: 'application/json' } })).body) as { invoice: string; macaroon: string; amount_msat: number };

test("a route's Lightning address issues its invoices; paying it opens the route", { skip }, async () => {
  s.upstream.reset();
  const c = await challenge('/tenant/alice');
  assert.equal(c.amount_msat, 21000);
  assert.equal(alice.counts.callback, 1);
  assert.throws(() => s.wallet.pay(c.invoice), /unknown|not/i, 'not a dev-wallet invoice');
  const preimage = alice.settle(c.invoice).toString('hex');
  const ok = await http1(s.origin + '/tenant/alice', { headers: { authorization: `L402 ${c.macaroon}:${preimage}` } });
  assert.equal(ok.status, 200);
  assert.equal(s.upstream.hits, 1);
});

test('a payee override in the store redirects a route to another address, and back', { skip }, async () => {
  const before = alice.counts.callback;
  await s.gate.gate.parts.store.set('lnurl:route:/tenant/other', alice.address('bob'));
  const c = await challenge('/tenant/other');
  assert.equal(alice.counts.callback, before + 1);
  assert.ok(alice.settle(c.invoice).length === 32);
  await s.gate.gate.parts.store.del('lnurl:route:/tenant/other');
  const d = await challenge('/tenant/other');
  assert.equal(s.wallet.pay(d.invoice).length, 32, 'back to the configured backend');
});

test('lnurl_addr with auto_detect_payment is refused at start', () => {
  assert.throws(
    () => parseConfig(`lightning: { type: dev }\nroutes: [{ match: /t, amount_msat: 1, lnurl_addr: a@b.c, auto_detect_payment: true }]\n`, { env: {} }),
    (e: Error) => e instanceof ConfigError && /auto_detect_payment: cannot be combined with lnurl_addr/.test(e.message),
  );
});
