// The dev wallet's payments out (LightningBackend.payInvoice, for an MPP session's refund): amountless
// invoices (what a session client gives as its return invoice), paid once with the amount the payer names,
// never by the plain `pay` (which would settle them for nothing); an invoice with an amount only for exactly it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode as atomiqDecode } from '@atomiqlabs/bolt11';
import { DevWallet, DevWalletError } from '../../src/rails/lightning/dev/dev-wallet.js';
import { decodeBolt11 } from '../../src/rails/lightning/codecs/bolt11.js';

const REGTEST = { bech32: 'bcrt', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1], wif: 0xef };

async function withWallet(fn: (dir: string, w: DevWallet) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'dev-pay-out-'));
  const w = DevWallet.open(dir);
  try {
    await fn(dir, w);
  } finally {
    await w.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const code = (f: () => unknown) => async () => {
  try {
    await f();
  } catch (e) {
    assert.ok(e instanceof DevWalletError, String(e));
    return e.code;
  }
  assert.fail('expected a DevWalletError');
};

test('an amountless dev invoice: signed, no amount (independent decoder), refused by pay(), paid once by payInvoice with the named amount', async () => {
  await withWallet(async (dir, w) => {
    const inv = w.createAmountlessInvoice({ memo: 'refund', expirySecs: 3600 });
    const d = atomiqDecode(inv.bolt11, REGTEST);
    assert.equal(d.millisatoshis ?? null, null);
    assert.equal(d.complete, true);
    assert.equal(decodeBolt11(inv.bolt11).amountMsat, undefined);
    assert.equal(await code(() => w.pay(inv.bolt11))(), 'malformed');
    assert.deepEqual(await w.lookupInvoice(inv.paymentHash), { state: 'open' }, 'the refused pay() settled nothing');
    assert.equal(await code(() => w.payInvoice({ bolt11: inv.bolt11, amountMsat: 0 }))(), 'malformed');
    // A second process on the same wallet races the first: exactly one payment lands.
    const other = DevWallet.open(dir);
    try {
      const results = await Promise.allSettled([w.payInvoice({ bolt11: inv.bolt11, amountMsat: 140_000 }), other.payInvoice({ bolt11: `lightning:${inv.bolt11.toUpperCase()}`, amountMsat: 999_000 })]);
      const paid = results.filter((r) => r.status === 'fulfilled');
      assert.equal(paid.length, 1);
      const { preimage } = (paid[0] as PromiseFulfilledResult<{ preimage: Buffer }>).value;
      assert.deepEqual(createHash('sha256').update(preimage).digest(), inv.paymentHash);
      assert.equal(((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as DevWalletError).code, 'already_paid');
      assert.equal(w.paidMsat(inv.paymentHash), 140_000);
      assert.equal((await other.lookupInvoice(inv.paymentHash)).state, 'settled');
      assert.equal(await code(() => other.payInvoice({ bolt11: inv.bolt11, amountMsat: 140_000 }))(), 'already_paid');
    } finally {
      await other.close();
    }
  });
});

test('payInvoice on an invoice with an amount: only that amount; a foreign invoice is unknown; the plain pay() is unchanged', async () => {
  await withWallet(async (_dir, w) => {
    const inv = await w.createInvoice({ amountMsat: 5000, memo: 'x', expirySecs: 600 });
    assert.equal(await code(() => w.payInvoice({ bolt11: inv.bolt11, amountMsat: 6000 }))(), 'malformed');
    assert.equal(w.paidMsat(inv.paymentHash), undefined);
    assert.ok((await w.payInvoice({ bolt11: inv.bolt11, amountMsat: 5000 })).preimage.length === 32);
    assert.equal(w.paidMsat(inv.paymentHash), 5000);
    const fixed = await w.createInvoice({ amountMsat: 7000, memo: 'y', expirySecs: 600 });
    assert.equal(w.pay(fixed.bolt11).length, 32);
    assert.equal(w.paidMsat(fixed.paymentHash), 7000);
    await withWallet(async (_d2, stranger) => {
      const theirs = stranger.createAmountlessInvoice({ memo: 'elsewhere', expirySecs: 600 });
      assert.equal(await code(() => w.payInvoice({ bolt11: theirs.bolt11, amountMsat: 1000 }))(), 'unknown');
    });
    assert.equal(await code(() => w.payInvoice({ bolt11: 'lnbcrt1notaninvoice', amountMsat: 1000 }))(), 'malformed');
  });
});
