// Red team, session 7, in the decision core: ecash sent with a refused balance credential (revoked, another
// plan's, pinned elsewhere) is never accepted, and a pin decides with its route only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig, type RouteConfig } from '../../src/config/config.js';
import { decide, type DecideDeps, type GateRequest } from '../../src/policy/decide.js';
import { createChallenge } from '../../src/policy/challenge.js';
import { RouteTable } from '../../src/policy/routes.js';
import { storeKeys } from '../../src/policy/store-keys.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { decodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';

const cfg = parseConfig(
  `lightning: { type: dev }
routes:
  - { id: a, match: /api/, amount_msat: 3000, access: balance, balance_msat: 20000, plan: one, rails: [lightning, cashu] }
  - { id: b, match: = /api/x, amount_msat: 1000, access: balance, balance_msat: 20000, plan: two, rails: [lightning, cashu], pinned: true }
`,
  { env: {} },
);
const MASTER = randomBytes(32);
let dir: string;
let wallet: DevWallet;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'l402-rt7-'));
  wallet = DevWallet.open(dir);
});
after(() => {
  wallet.close();
  rmSync(dir, { recursive: true, force: true });
});

const route = (id: string): RouteConfig => cfg.routes.find((r) => r.id === id)!;
async function buy(id: string, path: string): Promise<{ tokenId: string; auth: string }> {
  const r = route(id);
  const c = await createChallenge(r, { path, method: 'GET', amountMsat: r.amountMsat }, { backend: wallet, rootKey: MASTER, service: 'l402', location: 'l402', memo: 't', invoiceExpirySecs: 600, backendTimeoutMs: 2000 });
  const tokenId = decodeIdentifier(decodeMacaroonBase64(c.macaroon).identifier)!.tokenId.toString('hex');
  return { tokenId, auth: `L402 ${c.macaroon}:${wallet.pay(c.invoice).toString('hex')}` };
}

test('ecash sent with a refused balance credential is never accepted: revoked, another plan\'s, or a route the pin does not name', async () => {
  const accepted: string[] = [];
  const cashu = {
    accept: async (token: string) => {
      accepted.push(token);
      return { ok: true as const, amountMsat: 50_000 };
    },
  };
  const store = new MemoryStore();
  const a = await buy('a', '/api/q');
  const b = await buy('b', '/api/x');
  const revoked = new Set([a.tokenId]);
  const deps: DecideDeps = { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: [MASTER], store, storeTimeoutMs: 1000, cashu, isRevoked: async (t) => revoked.has(t) };
  const req = (path: string, auth: string, routePin?: string): GateRequest => ({ path, method: 'GET', credentials: { authorization: auth, xCashu: `cashuB${randomBytes(8).toString('hex')}` }, routePin });
  for (const [r, why] of [
    [req('/api/q', a.auth), 'revoked'],
    [req('/api/q', b.auth), 'wrong_route'],
    [req('/api/x', b.auth, 'a'), 'wrong_route'],
    [req('/api/x', b.auth), 'wrong_route'],
  ] as const) {
    const d = await decide(r, deps);
    assert.deepEqual([d.outcome, d.reason], ['invalid', why], JSON.stringify(r.routePin));
  }
  assert.deepEqual(accepted, [], 'no ecash was taken');
  assert.equal(await store.getBalance!(storeKeys.balance(Buffer.from(a.tokenId, 'hex'))), 0);
  // Where the pin names its route, b's credential and its ecash top it up (20000 bought + 50000 - 1000).
  const ok = await decide(req('/api/x', b.auth, 'b'), deps);
  assert.deepEqual([ok.outcome, 'balanceMsat' in ok ? ok.balanceMsat : undefined], ['allow', 69_000]);
  assert.equal(accepted.length, 1);
});
