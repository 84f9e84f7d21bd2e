// The redemption scheduler alone (rails/cashu/redemption-scheduler.ts): where a melt's invoice comes from
// (a tenant's Lightning address, else the gate's backend) and when the timer runs. The melts themselves are
// covered by cashu-redeem.test.ts against a real mint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cashuConfigSchema } from '../../src/rails/cashu/index.js';
import { decodeBolt11 } from '../../src/rails/lightning/codecs/bolt11.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { createPayout, scheduleRedemption } from '../../src/rails/cashu/redemption-scheduler.js';
import { createLogger } from '../../src/util/log.js';

const cfg = cashuConfigSchema.parse({ mints: ['https://mint.example'], redeem: { enabled: true, invoice_expiry_secs: 900 } });

test("a tenant's ecash is paid to its own address; the rest to the gate's backend", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cashu-sched-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const backend = await DevWallet.open(dir);
  t.after(() => backend.close());
  const asked: Array<[string, number]> = [];
  const payout = createPayout(cfg, { lightning: backend, tenantInvoice: async (a, msat) => (asked.push([a, msat]), `lnbc-for-${a}`) })!;
  assert.equal(await payout('alice@tenant.example', 5000, 'm', AbortSignal.timeout(1000)), 'lnbc-for-alice@tenant.example');
  assert.deepEqual(asked, [['alice@tenant.example', 5000]]);
  const own = await payout(undefined, 7000, 'melt', AbortSignal.timeout(1000));
  const inv = decodeBolt11(own);
  assert.equal(inv.amountMsat, 7000);
  assert.equal(inv.expiry, 900, 'redeem.invoice_expiry_secs');
  assert.deepEqual(asked.length, 1, 'no tenant: the backend, not the address resolver');
});

test('no way to pay out: none, or an error naming what is missing', async () => {
  assert.equal(createPayout(cfg, {}), undefined);
  const tenantsOnly = createPayout(cfg, { tenantInvoice: async () => 'lnbc' })!;
  await assert.rejects(tenantsOnly(undefined, 1000, 'm', AbortSignal.timeout(1000)), /no Lightning backend/);
});

test('the timer runs only when redemption is on and the rail runs scheduled work', () => {
  const log = createLogger('silent');
  let started = 0;
  const redeemer = { start: () => void started++ };
  const payout = async () => 'lnbc';
  assert.equal(scheduleRedemption(redeemer, { enabled: false, scheduled: true, payout, log }), false);
  assert.equal(scheduleRedemption(redeemer, { enabled: true, scheduled: false, payout, log }), false);
  assert.equal(started, 0);
  assert.equal(scheduleRedemption(redeemer, { enabled: true, scheduled: true, payout, log }), true);
  assert.equal(started, 1);
});
