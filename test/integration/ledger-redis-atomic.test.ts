// The Redis ledger's sale recording is all or nothing, against a real redis-server: Redis does not undo a
// script's writes when a later command in it fails, so a sale whose earnings cannot be counted (an amount that is
// not an integer, an earnings field or key another writer left in a shape HINCRBY refuses, a count past what it
// can hold) must leave no record, no time entry and no payment-hash entry behind. Otherwise the record says
// "recorded", every retry is answered "already recorded", and the earnings never count it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { Cleanup, requireTool } from './harness.js';
import { startRedisStore } from '../support/redis-store.js';
import { bucketOf, PartialSalesError, type Sale } from '../../src/store/ledger.js';
import { hex } from '../unit/ledger-contract.js';

const redisBin = requireTool('redis-server');
const skip = !redisBin ? 'redis-server not installed' : false;
const cleanup = new Cleanup();
after(() => cleanup.run());

const P = 'l402:{ledger}:';
const field = (s: Sale) => JSON.stringify([s.route, s.rail]);

/** Nothing of `s` is stored: no record, no time entry, no payment-hash entry. */
async function nothingOf(raw: Redis, s: Sale): Promise<void> {
  assert.equal(await raw.hexists(`${P}sales`, s.id), 0, 'no sale record');
  assert.equal(await raw.zscore(`${P}sales:time`, s.id), null, 'no time entry');
  if (s.paymentHash) assert.equal(await raw.hexists(`${P}sales:hash`, s.paymentHash), 0, 'no payment-hash entry');
}

async function refused(p: Promise<unknown>): Promise<PartialSalesError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  assert.ok(e instanceof PartialSalesError, `a PartialSalesError, got ${String(e)}`);
  return e;
}

test('a sale whose earnings cannot be counted is not recorded at all, and is recorded in full once they can', { skip }, async () => {
  const { store, raw } = await startRedisStore(cleanup);
  const ledger = store.ledger();
  const at = Date.now();
  const sale: Sale = { id: hex('1'), rail: 'lightning', route: '/premium', amountMsat: 1000, at, paymentHash: hex('2') };
  const earn = `${P}earnings:${bucketOf(at)}`;
  // Another writer left this route's earnings field as text: HINCRBY refuses it.
  await raw.hset(earn, `m${field(sale)}`, 'not a number');
  const e = await refused(ledger.recordSales([sale]));
  assert.deepEqual(e.recorded, [undefined]);
  await nothingOf(raw, sale);
  // Repaired: the same sale is recorded now (not "already recorded"), and counted.
  await raw.hset(earn, `m${field(sale)}`, '0');
  assert.deepEqual(await ledger.recordSales([sale]), [true]);
  assert.equal(await raw.hget(earn, `m${field(sale)}`), '1000');
  assert.equal(await raw.hget(earn, `n${field(sale)}`), '1');
  assert.equal((await ledger.findSale(sale.paymentHash!))?.id, sale.id);
});

test('each way a recording can fail after its first write leaves nothing behind; the sales beside it in the batch are recorded', { skip }, async () => {
  const { store, raw } = await startRedisStore(cleanup);
  const ledger = store.ledger();
  const at = Date.now();
  const earn = `${P}earnings:${bucketOf(at)}`;
  let n = 0;
  const sale = (over: Partial<Sale> = {}): Sale => {
    n++;
    return { id: n.toString(16).padStart(64, '0'), rail: 'cashu', route: `/r${n}`, amountMsat: 500, at, paymentHash: (n + 1000).toString(16).padStart(64, '0'), ...over };
  };
  const cases: Array<[string, Sale, () => Promise<unknown>]> = [];
  // An amount that is not an integer.
  cases.push(['a fractional amount', sale({ amountMsat: 1.5 }), async () => {}]);
  // A sales count too long for the script to read exactly (past 2^53, where Lua's numbers stop being exact).
  const full = sale();
  cases.push(['a count past 2^53', full, () => raw.hset(earn, `n${field(full)}`, '9223372036854775807')]);
  // An amount sum past 2^53 (a 19-digit value, refused as unreadable).
  const big = sale();
  cases.push(['an amount sum past 2^53', big, () => raw.hset(earn, `m${field(big)}`, '9223372036854775000')]);
  // An amount sum just under 2^53 that this sale would carry past it: readable, but the sum would no longer be exact.
  const edge = sale();
  cases.push(['an amount sum the sale would carry past 2^53', edge, () => raw.hset(earn, `m${field(edge)}`, String(2 ** 53 - 100))]);
  for (const [what, s, prepare] of cases) {
    await prepare();
    const ok = sale();
    const e = await refused(ledger.recordSales([ok, s, sale()]));
    assert.deepEqual(e.recorded, [true, undefined, true], what);
    await nothingOf(raw, s);
  }
  // The earnings key of the hour held by another type: every sale of that hour is refused whole.
  const other = sale({ at: at - 3_600_000 });
  await raw.set(`${P}earnings:${bucketOf(other.at)}`, 'a string');
  await refused(ledger.recordSales([other]));
  await nothingOf(raw, other);
});
