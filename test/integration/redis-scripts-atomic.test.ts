// The Redis store's other write scripts are all or nothing too, against a real redis-server (Redis keeps a
// script's writes when a later command in it fails): a revocation is never stored without its generation
// moving on (other processes would go on accepting the credential), a balance is never credited or drawn
// without its mark (a retried credit would count twice; a draw could not be given back), and a refund never
// drops its mark without crediting. Each case leaves the keys as they were.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, requireTool } from './harness.js';
import { startRedisStore } from '../support/redis-store.js';
import { creditMark, drawMark } from '../../src/store/balance-ledger.js';

const redisBin = requireTool('redis-server');
const skip = !redisBin ? 'redis-server not installed' : false;
const cleanup = new Cleanup();
after(() => cleanup.run());

const fails = async (p: Promise<unknown>, what: string) => assert.equal(await p.then(() => 'resolved', () => 'rejected'), 'rejected', what);

test('a revocation whose generation cannot move on is not stored', { skip }, async () => {
  const { store, raw } = await startRedisStore(cleanup);
  const ledger = store.ledger();
  const value = 'a'.repeat(64);
  await raw.set('l402:{ledger}:revoked:generation', 'not a number');
  await fails(ledger.revoke({ value, at: Date.now() }), 'the revocation fails');
  assert.equal(await raw.hexists('l402:{ledger}:revoked', value), 0, 'not stored without its generation');
  // Repaired: stored, and the generation moves on.
  await raw.set('l402:{ledger}:revoked:generation', '5');
  assert.equal(await ledger.revoke({ value, at: Date.now() }), true);
  assert.equal(await ledger.revocationGeneration(), '6');
  assert.deepEqual((await ledger.revocations()).list.map((r) => r.value), [value]);
});

test('a credit or a draw whose mark cannot be written changes no balance; a refund whose mark is unreadable keeps it', { skip }, async () => {
  const { store, raw } = await startRedisStore(cleanup);
  const key = '{bal:k}';
  assert.deepEqual(await store.creditBalance(key, 5000, 'c1'), { credited: true, balanceMsat: 5000 });
  // A lifetime that is not a whole number of ms (NaN, Infinity): nothing credited, so a retry cannot credit twice.
  for (const ttl of [Number.NaN, Number.POSITIVE_INFINITY]) {
    await fails(store.creditBalance(key, 1000, `c-${ttl}`, ttl), `credit with a ${ttl} lifetime`);
    assert.equal(await store.getBalance(key), 5000);
    assert.equal(await raw.exists(`l402:${creditMark(key, `c-${ttl}`)}`), 0);
  }
  // A hold that is not a whole number of ms: nothing drawn.
  await fails(store.drawBalance(key, 1000, 'd1', 'owner', Number.NaN), 'draw with a NaN hold');
  assert.equal(await store.getBalance(key), 5000);
  assert.equal(await raw.exists(`l402:${drawMark(key, 'd1')}`), 0);
  // A draw mark another writer left unreadable: the refund fails and drops nothing.
  for (const [id, mark] of [['d2', '700'], ['d3', 'abc|owner']] as const) {
    await raw.set(`l402:${drawMark(key, id)}`, mark, 'PX', 60_000);
    await fails(store.refundDraw(key, id), `refund of mark ${mark}`);
    assert.equal(await raw.get(`l402:${drawMark(key, id)}`), mark, 'the mark is kept');
    assert.equal(await store.getBalance(key), 5000);
  }
  // The ordinary steps still work: draw, refund once.
  assert.deepEqual(await store.drawBalance(key, 2000, 'd4', 'owner', 60), { ok: true, balanceMsat: 3000 });
  assert.deepEqual(await store.refundDraw(key, 'd4', 'owner'), { refunded: true, balanceMsat: 5000 });
  assert.deepEqual(await store.refundDraw(key, 'd4', 'owner'), { refunded: false, balanceMsat: 5000 });
});
