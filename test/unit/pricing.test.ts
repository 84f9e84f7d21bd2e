// Dynamic price reads: cached, stale values kept on store trouble (else the static price), the cache bounded
// without being emptied by a flood of paths, and a path's own price reported so reusable credentials for the
// route cannot open a path sold separately.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCachedReader, createPriceResolver } from '../../src/policy/pricing.js';
import { parseConfig } from '../../src/config/config.js';
import { MemoryStore } from '../../src/store/memory-store.js';

const route = parseConfig(`lightning: { type: dev }\nroutes: [{ match: /timed/, amount_msat: 5000, access: timed, macaroon_timeout: 60 }]\n`, { env: {} }).routes[0]!;

test('a failed read returns the last known value, or nothing when there is none', async () => {
  const read = createCachedReader(0, 50);
  let up = true;
  const get = async (k: string) => {
    if (!up) throw new Error('store down');
    return k === 'a' ? '1' : undefined;
  };
  assert.equal(await read('a', get), '1');
  assert.equal(await read('b', get), undefined);
  up = false;
  assert.equal(await read('a', get), '1', 'stale value kept');
  assert.equal(await read('b', get), undefined, 'a known absence stays known');
  assert.equal(await read('c', get), undefined);
});

test('the cache drops its oldest keys, not everything, when clients flood it with paths', async () => {
  const read = createCachedReader(60_000, 50);
  let calls = 0;
  const get = async () => (calls++, '7');
  await read('keep', get);
  for (let i = 0; i < 10_000; i++) await read(`p${i}`, get);
  const before = calls;
  await read('p9999', get);
  assert.equal(calls, before, 'recent keys are still cached');
  await read('keep', get);
  assert.equal(calls, before + 1, 'the oldest one was dropped');
});

test('the resolver says whether a path has its own price; a store that does not answer leaves the static price', async () => {
  const store = new MemoryStore();
  await store.set('price:path:/timed/gold', '90000');
  const resolve = createPriceResolver({ store, storeTimeoutMs: 50, cacheMs: 0, onBadValue: () => {} });
  assert.deepEqual(await resolve(route, '/timed/gold'), { amountMsat: 90000, source: 'dynamic', pathPriced: true });
  assert.deepEqual(await resolve(route, '/timed/x'), { amountMsat: 5000, source: 'static', pathPriced: false });
  store.get = () => new Promise(() => {}); // a store that never answers
  assert.deepEqual(await resolve(route, '/timed/never-seen'), { amountMsat: 5000, source: 'static', pathPriced: false });
});
