// The store's key scheme is data that outlives a release: spent marks, prices and payees written by one
// version (or by ngx_l402, sharing its Redis) must be found by the next. Renaming a key would forget spent
// credentials (each could pay once more), so the exact names are pinned here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_STORE_PREFIX, ngxL402ClaimsUnseen, ngxL402LegacyKeys, storeKeys } from '../../src/policy/store-keys.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { RedisStore } from '../../src/store/redis-store.js';
import type { Store } from '../../src/store/store.js';

const h = Buffer.alloc(32, 0xab);
const hx = h.toString('hex');

test('every key keeps its name', () => {
  assert.equal(DEFAULT_STORE_PREFIX, 'l402:');
  assert.equal(storeKeys.claim(h), `claim:l402:${hx}`);
  assert.equal(storeKeys.ngxL402Claim(h), `preimage:${hx}`, "ngx_l402's replay key inside its l402: prefix");
  assert.equal(storeKeys.pendingInvoice(h), `invoice:${hx}`);
  assert.equal(storeKeys.pendingInvoice(hx), `invoice:${hx}`);
  assert.equal(storeKeys.settled(h), `settled:${hx}`);
  assert.equal(storeKeys.rateLimit('r1', '192.0.2.1'), 'rl:r1:192.0.2.1');
  assert.equal(storeKeys.rateLimit('r1', undefined), 'rl:r1:unknown');
  assert.equal(storeKeys.priceRoute('/v1'), 'price:route:/v1');
  assert.equal(storeKeys.pricePath('/v1/a'), 'price:path:/v1/a');
  assert.equal(storeKeys.payeeRoute('/v1'), 'lnurl:route:/v1');
  assert.equal(storeKeys.payeePath('/v1/a'), 'lnurl:path:/v1/a');
  assert.equal(storeKeys.cashuProof('02ff'), 'cashu:y:02ff');
  assert.equal(storeKeys.cashuLate('s'), 'cashu:late:s');
  assert.equal(storeKeys.cashuLateUsed('s'), 'cashu:late-used:s');
  assert.equal(storeKeys.cashuUnsettled('s'), 'cashu:unsettled:s');
  assert.equal(storeKeys.cashuTaken('ab'.repeat(16)), `cashu:taken:${'ab'.repeat(16)}`);
  assert.equal(storeKeys.balance(h), `balance:{${hx}}`);
  assert.equal(storeKeys.balanceTopup(h), `topup:${hx}`);
  assert.equal(storeKeys.balanceCashuTaken(h, 'ab'.repeat(16)), `balance:{${hx}}:cashu-taken:${'ab'.repeat(16)}`);
  assert.equal(ngxL402LegacyKeys.price('/v1/a'), '/v1/a');
  assert.equal(ngxL402LegacyKeys.payee('/v1/a'), 'lnurl:/v1/a');
});

test("ngx_l402's spent marks are seen only in its Redis under its prefix", () => {
  assert.equal(ngxL402ClaimsUnseen({ type: 'redis', prefix: 'l402:' }), undefined);
  assert.match(ngxL402ClaimsUnseen({ type: 'redis', prefix: 'x:' })!, /prefix "x:"/);
  assert.match(ngxL402ClaimsUnseen({ type: 'sqlite' })!, /store is sqlite/);
});

test('stores say what they can do (capabilities), so the server needs no store class', async () => {
  const mem: Store = new MemoryStore();
  const sql: Store = new SqliteStore(':memory:', 'normal');
  const redis: Store = new RedisStore('redis://127.0.0.1:1', 'l402:', 200);
  try {
    assert.deepEqual([!!mem.durability, !!mem.sweep, !!mem.getUnprefixed], [false, false, false]);
    assert.deepEqual([!!sql.durability, !!sql.sweep, !!sql.getUnprefixed], [false, true, false]);
    assert.deepEqual([!!redis.durability, !!redis.sweep, !!redis.getUnprefixed], [true, false, true]);
  } finally {
    await Promise.allSettled([mem.close(), sql.close(), redis.close()]);
  }
});
