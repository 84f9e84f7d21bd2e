// Auto-detect settlement (and x402, and the payment page's status) asks the Lightning backend whether an
// invoice was paid. A storm of requests carrying the same unpaid macaroon or x402 invoice must not become a
// storm of backend lookups: concurrent questions about one invoice share one lookup.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createSettlementCheck } from '../../src/rails/lightning/settlement.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { LightningBackend } from '../../src/rails/lightning/backend.js';

function backend(state: () => { state: string; preimage?: Buffer }) {
  const seen = { lookups: 0 };
  const b = {
    kind: 'test',
    async lookupInvoice() {
      seen.lookups++;
      await new Promise((r) => setImmediate(r));
      return state();
    },
  } as unknown as LightningBackend;
  return { b, seen };
}

test('concurrent settlement questions about one invoice share one backend lookup; later ones ask again', async () => {
  const preimage = randomBytes(32);
  const hash = createHash('sha256').update(preimage).digest();
  let paid = false;
  const { b, seen } = backend(() => (paid ? { state: 'settled', preimage } : { state: 'open' }));
  const isSettled = createSettlementCheck(b, new MemoryStore(), { timeoutMs: 1000, storeTimeoutMs: 1000, cacheSecs: 60 })!;
  const storm = await Promise.all(Array.from({ length: 50 }, () => isSettled(Buffer.from(hash))));
  assert.ok(storm.every((s) => s === false));
  assert.equal(seen.lookups, 1, 'one lookup for 50 concurrent questions');
  // Nothing unpaid is remembered: paid meanwhile, the next question sees it.
  paid = true;
  assert.equal(await isSettled(hash), true);
  assert.equal(seen.lookups, 2);
  // Then the store's settled marker answers, without the backend.
  assert.equal(await isSettled(hash), true);
  assert.equal(seen.lookups, 2);
  // Another invoice is another question.
  const other = randomBytes(32);
  await Promise.all([isSettled(other), isSettled(other), isSettled(hash)]);
  assert.equal(seen.lookups, 3);
});

test('a lookup that fails fails every question sharing it, and the next question asks again', async () => {
  let fail = true;
  const seen = { lookups: 0 };
  const b = {
    kind: 'test',
    async lookupInvoice() {
      seen.lookups++;
      await new Promise((r) => setImmediate(r));
      if (fail) throw new Error('node down');
      return { state: 'open' };
    },
  } as unknown as LightningBackend;
  const isSettled = createSettlementCheck(b, new MemoryStore(), { timeoutMs: 1000, storeTimeoutMs: 1000, cacheSecs: 60 })!;
  const h = randomBytes(32);
  const all = await Promise.allSettled([isSettled(h), isSettled(h), isSettled(h)]);
  assert.ok(all.every((r) => r.status === 'rejected'));
  assert.equal(seen.lookups, 1);
  fail = false;
  assert.equal(await isSettled(h), false);
  assert.equal(seen.lookups, 2);
});
