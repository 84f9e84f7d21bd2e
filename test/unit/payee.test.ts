// Payee resolution (which Lightning address a request pays), beside pricing in the core.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/config.js';
import { createPayeeResolver } from '../../src/policy/payee.js';
import { storeKeys } from '../../src/policy/store-keys.js';
import { MemoryStore } from '../../src/store/memory-store.js';

const cfg = parseConfig(
  'store: { type: memory }\nlightning: { type: dev }\nroutes:\n  - { match: /a, amount_msat: 1000, lnurl_addr: alice@route.example }\n  - { match: /b, amount_msat: 1000 }\n',
  { env: {} },
);
const [a, b] = cfg.routes as [(typeof cfg.routes)[0], (typeof cfg.routes)[0]];

test('a path override wins over a route override, which wins over the route lnurl_addr', async () => {
  const store = new MemoryStore();
  const payee = createPayeeResolver({ store, storeTimeoutMs: 500, cacheMs: 0, dynamic: true });
  assert.equal(await payee(a, '/a'), 'alice@route.example');
  assert.equal(await payee(b, '/b'), undefined, 'no payee: the configured backend');
  await store.set(storeKeys.payeeRoute(a.id), 'carol@store.example');
  assert.equal(await payee(a, '/a'), 'carol@store.example');
  await store.set(storeKeys.payeePath('/a'), 'dave@path.example');
  assert.equal(await payee(a, '/a'), 'dave@path.example');
  // A path that is not UTF-8 has no path key (it would share one with the U+FFFD path): the route's applies.
  assert.equal(await payee(a, '/a%FF'), 'carol@store.example');
});

test('static pricing reads no overrides; legacy keys come last', async () => {
  const store = new MemoryStore();
  await store.set(storeKeys.payeeRoute(a.id), 'carol@store.example');
  assert.equal(await createPayeeResolver({ store, storeTimeoutMs: 500, cacheMs: 0, dynamic: false })(a, '/a'), 'alice@route.example');
  const asked: string[] = [];
  const legacyGet = async (k: string) => (asked.push(k), k === 'lnurl:/b' ? 'erin@ngx.example' : undefined);
  const payee = createPayeeResolver({ store, storeTimeoutMs: 500, cacheMs: 0, dynamic: true, legacyGet });
  assert.equal(await payee(b, '/b'), 'erin@ngx.example');
  assert.equal(await payee(a, '/a'), 'carol@store.example');
  assert.deepEqual(asked, ['lnurl:/b'], 'only when no override of ours is set');
});

test('cached for cacheMs, and the last known payee stands while the store is down', async () => {
  const store = new MemoryStore();
  let down = false;
  const flaky = { get: (k: string) => (down ? Promise.reject(new Error('down')) : store.get(k)) };
  const payee = createPayeeResolver({ store: flaky, storeTimeoutMs: 500, cacheMs: 60_000, dynamic: true });
  await store.set(storeKeys.payeeRoute(b.id), 'carol@store.example');
  assert.equal(await payee(b, '/b'), 'carol@store.example');
  await store.set(storeKeys.payeeRoute(b.id), 'dave@store.example');
  assert.equal(await payee(b, '/b'), 'carol@store.example', 'cached');
  assert.ok(payee.cacheBytes() > 0);
  down = true;
  const fresh = createPayeeResolver({ store: flaky, storeTimeoutMs: 500, cacheMs: 0, dynamic: true });
  assert.equal(await fresh(b, '/b'), undefined, 'nothing known: the configured backend');
});
