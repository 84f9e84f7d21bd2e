// Caches keyed by request data are bounded by bytes, not only entries: unpaid requests on unique, long paths
// (a path can be ~8 KB) must not grow l402d's heap without bound. Checked with the caches' own accounting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig } from '../../src/config/config.js';
import { createCachedReader } from '../../src/policy/pricing.js';
import { Gate } from '../../src/server/gate.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { createLogger } from '../../src/util/log.js';

const MiB = 1024 * 1024;
const longPath = (i: number) => `/premium/${String(i).padStart(6, '0')}/${'x'.repeat(7500)}`;

test('the control-plane read cache is bounded by bytes: 10k unique 7.5 KB keys stay under its budget', async () => {
  const read = createCachedReader(60_000, 1000);
  for (let i = 0; i < 10_000; i++) await read(`price:path:${longPath(i)}`, async () => undefined);
  assert.ok(read.bytes() <= 4 * MiB, `cache holds ${read.bytes()} bytes`);
  assert.ok(read.size() < 10_000 && read.size() > 0);
  // Recent entries are still served from the cache, and the accounting never goes negative.
  let calls = 0;
  await read('price:route:/premium', async () => (calls++, '5000'));
  assert.equal(await read('price:route:/premium', async () => (calls++, '1')), '5000');
  assert.equal(calls, 1);
  assert.ok(read.bytes() > 0);
});

test('a small byte budget is honoured exactly and an entry bigger than the budget is not kept', async () => {
  const read = createCachedReader(60_000, 1000, { maxBytes: 64 * 1024 });
  for (let i = 0; i < 500; i++) await read(`k${i}:${'y'.repeat(1000)}`, async () => 'v');
  assert.ok(read.bytes() <= 64 * 1024);
  await read(`huge:${'z'.repeat(100_000)}`, async () => 'v');
  assert.ok(read.bytes() <= 64 * 1024);
});

test('the gate\'s price and payee caches stay bounded under unique long paths', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-bounds-'));
  const wallet = DevWallet.open(dir);
  try {
    const config = parseConfig(`lightning: { type: dev }\nstore: { type: memory }\npricing: { cache_ms: 60000 }\nroutes:\n  - { match: /premium, amount_msat: 1000 }\n`, { env: {} });
    const gate = new Gate({ config, store: new MemoryStore(), backend: wallet, rootKeys: [randomBytes(32)], log: createLogger('silent') });
    const route = config.routes[0]!;
    for (let i = 0; i < 3000; i++) {
      const path = longPath(i);
      assert.equal((await gate.price(route, path)).amountMsat, 1000);
      await gate.payeeFor(route, path);
    }
    // Two readers (prices, payees), each within its 4 MiB budget; unbounded, this would be ~90 MB.
    assert.ok(gate.cacheBytes() <= 8 * MiB, `caches hold ${gate.cacheBytes()} bytes`);
    assert.ok(gate.cacheBytes() > 0);
    await gate.close();
  } finally {
    wallet.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the memory store sweeps expired windows and markers nobody reads again', async () => {
  const store = new MemoryStore();
  const realNow = Date.now;
  let now = realNow();
  Date.now = () => now;
  try {
    for (let i = 0; i < 5000; i++) await store.incrWindow(`rl:/premium:10.0.${i >> 8}.${i & 255}`, 1);
    await store.claimOnce('spent:forever');
    await store.claimOnce('spent:long', 86_400);
    now += 2000;
    // A sweep runs within max(1,000, entries) writes.
    for (let i = 0; i < 6000; i++) await store.set(`settled:${i % 10}`, '1', 1);
    assert.ok(store.size <= 12, `memory store holds ${store.size} entries`);
    // Live entries, single-use claims above all, are never dropped.
    assert.equal(await store.claimOnce('spent:forever'), false);
    assert.equal(await store.claimOnce('spent:long', 86_400), false);
  } finally {
    Date.now = realNow;
  }
});
