// The recent-challenges memo (gate.ts, RecentChallenges): a refused credential presented again by the same client
// gets the same fresh challenge for a few seconds. Shared only while everything the challenge says is still
// true: a price changed in the store (route or path) is offered at once, never at the old amount for the memo's
// lifetime; what differs per request around it (x402's resource URL with the request's host, the schemes a plain
// HTTP request is offered) is built for each request, never taken from the one that minted it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig } from '../../src/config/config.js';
import type { GateRequest } from '../../src/policy/decide.js';
import { storeKeys } from '../../src/policy/store-keys.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { Gate } from '../../src/server/gate.js';
import { createLogger } from '../../src/util/log.js';
import lightBolt11 from 'light-bolt11-decoder';

const cfg = parseConfig(
  `lightning: { type: dev }\npricing: { dynamic: true, cache_ms: 0 }\nroutes:
  - { match: /premium, amount_msat: 10000, schemes: [l402, mpp, x402] }
  - { match: /pp/, amount_msat: 20000 }
`,
  { env: {} },
);
const SPENT = 'L402 AgEEbDQwMg:00';
let dir: string;
let wallet: DevWallet;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'l402-recent-'));
  wallet = DevWallet.open(dir);
});
after(() => {
  wallet.close();
  rmSync(dir, { recursive: true, force: true });
});

function gate(store = new MemoryStore()): Gate {
  return new Gate({ config: cfg, store, backend: wallet, rootKeys: [randomBytes(32)], log: createLogger('silent') });
}
function req(path: string, o: Partial<GateRequest> = {}): GateRequest {
  return { path, method: 'GET', clientAddr: '192.0.2.1', credentials: { authorization: SPENT }, ...o };
}
async function refused(g: Gate, r: GateRequest) {
  const out = await g.render('invalid', 'already_used', r, { accept: 'application/json' });
  assert.equal(out.status, 401, out.body);
  const body = JSON.parse(out.body) as { invoice: string; macaroon: string };
  const header = (name: string) => out.headers.find(([k]) => k.toLowerCase() === name)?.[1];
  const x402 = header('payment-required');
  const mpp = out.headers.filter(([k]) => k.toLowerCase() === 'www-authenticate').some(([, v]) => /^Payment /.test(v));
  return { invoice: body.invoice, amountMsat: Number((lightBolt11.decode(body.invoice).sections.find((x) => x.name === 'amount') as { value: string }).value), mpp, x402: x402 ? (JSON.parse(Buffer.from(x402, 'base64').toString()) as { resource: { url: string }; accepts: Array<{ amount: string; extra: { invoice?: string } }> }) : undefined };
}

test('a route price changed in the store is offered at once, not at the old price the memo kept', async () => {
  const store = new MemoryStore();
  const g = gate(store);
  const first = await refused(g, req('/premium'));
  assert.equal(first.amountMsat, 10000);
  assert.equal((await refused(g, req('/premium'))).invoice, first.invoice, 'shared while the price stands');
  await store.set(storeKeys.priceRoute('/premium'), '15000');
  const after = await refused(g, req('/premium'));
  assert.equal(after.amountMsat, 15000);
  assert.notEqual(after.invoice, first.invoice);
  // And back: the kept one at the old price is not handed out as the price of now either way.
  await store.set(storeKeys.priceRoute('/premium'), '10000');
  assert.equal((await refused(g, req('/premium'))).amountMsat, 10000);
});

test('a path price (price:path:) set in the store is offered at once, with its path binding', async () => {
  const store = new MemoryStore();
  const g = gate(store);
  const first = await refused(g, req('/pp/a'));
  assert.equal(first.amountMsat, 20000);
  await store.set(storeKeys.pricePath('/pp/a'), '30000');
  const priced = await refused(g, req('/pp/a'));
  assert.equal(priced.amountMsat, 30000);
  assert.notEqual(priced.invoice, first.invoice);
});

test("x402's resource URL names the requesting host and target, whichever request minted the kept invoice", async () => {
  const g = gate();
  const a = await refused(g, req('/premium', { secure: true, host: 'a.example', uri: '/premium?x=1' }));
  const b = await refused(g, req('/premium', { secure: true, host: 'b.example', uri: '/premium?y=2' }));
  assert.ok(a.x402 && b.x402, 'x402 offered over HTTPS');
  assert.equal(a.x402.resource.url, 'https://a.example/premium?x=1');
  assert.equal(b.x402.resource.url, 'https://b.example/premium?y=2');
  // Sharing the invoice is harmless: its binding names route, method, path, invoice and amount, no host.
  assert.equal(b.invoice, a.invoice);
  // A plain-HTTP copy is offered L402 alone, from the same kept challenge; the HTTPS one MPP and x402 too.
  const plain = await refused(g, req('/premium', { secure: false }));
  assert.equal(plain.invoice, a.invoice);
  assert.equal(plain.x402, undefined);
  assert.equal(plain.mpp, false);
  assert.equal(a.mpp, true);
});
