// A sale whose write failed (the store down for a moment) is written once the store answers again, even when no
// other sale follows to carry it: `l402d token revoke <token id>` looks the payment hash up in the sales, so a
// sale left waiting for traffic kept the MPP form of a just-sold payment out of reach of a revocation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { SalesRecorder } from '../../src/server/sales.js';
import { createLogger } from '../../src/util/log.js';
import type { Sale } from '../../src/store/ledger.js';
import { waitFor } from '../support/waits.js';

const quiet = createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));
const sale = (n: number): Sale => ({ id: `${n}`.padStart(64, '0'), rail: 'lightning', route: 'r', amountMsat: 1000, at: Date.now(), paymentHash: 'ab'.repeat(32) });

test('a sale whose write failed is retried on its own, with no later sale to carry it', async () => {
  const store = new SqliteStore(':memory:');
  const ledger = store.ledger();
  const real = ledger.recordSales.bind(ledger);
  let failures = 2;
  let writes = 0;
  ledger.recordSales = async (s) => {
    writes++;
    if (failures-- > 0) throw new Error('store busy');
    return real(s);
  };
  const rec = new SalesRecorder(ledger, 1000, quiet);
  try {
    rec.note(sale(1));
    rec.flush();
    // Two failed writes, then the store answers: recorded, and nothing is left waiting.
    await waitFor('the sale recorded', async () => ((await ledger.findSale(sale(1).id)) ? true : undefined), { timeoutMs: 10_000 });
    assert.equal((await ledger.findSale('ab'.repeat(32)))?.id, sale(1).id, 'found by its payment hash');
    assert.equal(rec.pending, 0);
    assert.equal(writes, 3);
    // After stop() (the store is closing) no timer is left; drain() still writes what waits.
    failures = 1;
    rec.stop();
    rec.note(sale(2));
    rec.flush();
    await waitFor('the failed write', async () => (rec.pending === 1 ? true : undefined));
    const before = writes;
    await rec.drain();
    assert.equal(writes, before + 1, 'drain() still writes what waits');
    assert.equal(rec.pending, 0);
  } finally {
    rec.stop();
    await store.close();
  }
});
