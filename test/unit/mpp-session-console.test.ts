// The console's open balances (and `l402d stats`) list MPP sessions with credit left, beside L402 balance
// credentials, from the sales the gate records for them (the open under the session id, each topUp as
// `<session id>:topup:<hash>`); a closed session is drained and no longer listed.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../../src/store/memory-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { closeSession, openSession, topUpSession } from '../../src/policy/mpp-session-ledger.js';
import { storeKeys } from '../../src/policy/store-keys.js';
import { balanceLeft, consoleData } from '../../src/server/console-data.js';

const dir = mkdtempSync(join(tmpdir(), 'l402-mpps-console-'));
const wallet = DevWallet.open(dir);
after(() => {
  wallet.close();
  rmSync(dir, { recursive: true, force: true });
});

const hash = () => createHash('sha256').update(randomBytes(32)).digest('hex');

test('open MPP sessions are listed with what is left and what was credited; closed ones are not', async () => {
  const store = new MemoryStore();
  const ledger = store.ledger();
  const d = { store, masters: [randomBytes(32)], storeTimeoutMs: 1000, payInvoice: (r: { bolt11: string; amountMsat: number }) => wallet.payInvoice(r) };
  const id = hash();
  const ret = wallet.createAmountlessInvoice({ memo: 'r', expirySecs: 3600 });
  await openSession(d, { sessionId: id, scopeId: 'plan:api', returnInvoice: ret.bolt11, depositMsat: 10_000 });
  const up = hash();
  await topUpSession(d, { sessionId: id, scopeId: 'plan:api', depositHash: up, depositMsat: 10_000 });
  assert.equal((await store.drawBalance(storeKeys.mppSessionBalance(id), 3000, 'r1', 'o', 60)).ok, true);
  await ledger.recordSales([{ id, rail: 'lightning', route: '/api/a', amountMsat: 10_000, at: Date.now(), access: 'balance', paymentHash: id }]);
  await ledger.recordSales([{ id: `${id}:topup:${up}`, rail: 'lightning', route: '/api/a', amountMsat: 10_000, at: Date.now(), access: 'balance', paymentHash: up }]);
  // An L402 balance credential beside it.
  const token = randomBytes(32).toString('hex');
  await store.creditBalance(storeKeys.balance(token), 5000, 'sale:x');
  await ledger.recordSales([{ id: token, rail: 'lightning', route: '/solo', amountMsat: 5000, at: Date.now(), access: 'balance' }]);
  const data = await consoleData(ledger, { balanceOf: balanceLeft(store) });
  assert.deepEqual(
    data.balances.open.map((o) => [o.credential, o.route, o.balance_msat, o.credited_msat]),
    [[`${id.slice(0, 12)}…`, '/api/a', 17_000, 20_000], [`${token.slice(0, 12)}…`, '/solo', 5000, 5000]],
  );
  assert.ok(!JSON.stringify(data).includes(id), 'sessions by prefix only');
  assert.deepEqual(await closeSession(d, { sessionId: id, scopeId: 'plan:api' }), { ok: true, refundSats: 17, refundStatus: 'succeeded' });
  const after = await consoleData(ledger, { balanceOf: balanceLeft(store) });
  assert.deepEqual(after.balances.open.map((o) => o.credential), [`${token.slice(0, 12)}…`]);
});
