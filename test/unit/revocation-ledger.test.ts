// The sales ledger (memory and SQLite: the same contract; Redis runs it in test/integration) and the
// per-process revocation copy: how old a copy may be before a decision waits for the store, and what a store
// failure does.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../../src/store/memory-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import type { Ledger, Revocation } from '../../src/store/ledger.js';
import { hex, ledgerContract } from './ledger-contract.js';
import { FRESH_MS, REFRESH_MS, RevocationCache } from '../../src/server/revocations.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));


test('memory ledger: one sale per credential, newest first, hourly earnings, revocations with a generation', async () => {
  await ledgerContract(new MemoryStore().ledger());
});

test('SQLite ledger: the same, and shared by two connections to one file (two l402d processes)', async () => {
  const d = mkdtempSync(join(tmpdir(), 'l402-ledger-'));
  dirs.push(d);
  const one = new SqliteStore(join(d, 'l402.db'));
  const two = new SqliteStore(join(d, 'l402.db'));
  try {
    await ledgerContract(one.ledger());
    assert.equal((await two.ledger().recentSales(10)).length, 9);
    assert.equal(await two.ledger().revocationGeneration(), await one.ledger().revocationGeneration());
    assert.equal((await two.ledger().recordSales([{ id: hex('a'), rail: 'lightning', route: '/premium', amountMsat: 1, at: Date.now() }]))[0], false, 'the other process sees it recorded');
  } finally {
    await one.close();
    await two.close();
  }
});

/** A ledger whose reads can be counted, failed or held. */
function fakeLedger() {
  const list: Revocation[] = [];
  let generation = 0;
  const f = {
    reads: 0,
    fail: false,
    async revocationGeneration() {
      f.reads++;
      if (f.fail) throw new Error('store down');
      return String(generation);
    },
    async revocations() {
      if (f.fail) throw new Error('store down');
      return { generation: String(generation), list: [...list] };
    },
    add(value: string, until?: number) {
      list.push({ value, at: 0, until });
      generation++;
    },
  };
  return f;
}

test('revocation copy: used as is for REFRESH_MS, read in the background until FRESH_MS, waited for after that', async () => {
  const l = fakeLedger();
  let now = 1_000_000;
  const c = new RevocationCache(l as unknown as Ledger, 500, () => now);
  assert.equal(await c.isRevoked(hex('a'), hex('1')), false);
  assert.equal(l.reads, 1, 'the first decision reads the list');
  l.add(hex('a'));
  now += REFRESH_MS - 1;
  assert.equal(await c.isRevoked(hex('a'), hex('1')), false, 'a copy younger than REFRESH_MS is used');
  assert.equal(l.reads, 1);
  now += 1;
  // Still fresh: answered from the copy while the read runs.
  assert.equal(await c.isRevoked(hex('a'), hex('1')), false);
  await c.refresh();
  assert.equal(await c.isRevoked(hex('a'), hex('1')), true, 'the background read brought the revocation');
  assert.equal(await c.isRevoked(hex('f'), hex('1')), false);
  // By payment hash too.
  l.add(hex('2'));
  now += FRESH_MS;
  assert.equal(await c.isRevoked(hex('b'), hex('2')), true, 'past FRESH_MS the decision waits for the read');
  // An entry whose credential expired no longer matters.
  l.add(hex('3'), Math.floor(now / 1000) + 5);
  now += FRESH_MS;
  assert.equal(await c.isRevoked(hex('3'), hex('3')), true);
  now += 5000;
  assert.equal(await c.isRevoked(hex('3'), hex('3')), false);
});

test('revocation copy: a process that never read the list refuses to decide; one that did keeps its copy through a store failure', async () => {
  const l = fakeLedger();
  let now = 5_000_000;
  const c = new RevocationCache(l as unknown as Ledger, 500, () => now);
  l.fail = true;
  await assert.rejects(c.isRevoked(hex('a'), hex('1')), /could not be read/);
  l.fail = false;
  l.add(hex('a'));
  assert.equal(await c.isRevoked(hex('a'), hex('1')), true);
  const confirmed = c.confirmed;
  l.fail = true;
  now += 10 * FRESH_MS;
  assert.equal(await c.isRevoked(hex('a'), hex('1')), true, 'still refused from the copy');
  assert.equal(await c.isRevoked(hex('b'), hex('2')), false);
  assert.equal(c.confirmed, confirmed, 'the copy is not taken for newer than it is (nginx caches nothing meanwhile)');
  // (The background read those answers started fails too.)
  await assert.rejects(c.refresh(), /store down/);
  l.fail = false;
  l.add(hex('b'));
  now += 1;
  assert.equal(await c.isRevoked(hex('b'), hex('2')), false, 'answered at once after a failure');
  await c.refresh();
  assert.equal(await c.isRevoked(hex('b'), hex('2')), true, 'learnt when the store answers again');
});

test('nginx may keep a "paid" answer max_secs minus a second (its whole-second clock) minus the age of the revocation list read', async () => {
  const { parseConfig } = await import('../../src/config/config.js');
  const { Gate } = await import('../../src/server/gate.js');
  const { createLogger } = await import('../../src/util/log.js');
  const cfg = parseConfig('lightning: { type: dev }\nnginx_cache: { max_secs: 5 }\nroutes: [{ match: /forever, amount_msat: 1, access: indefinite }]\n', { env: {} });
  const backend = { kind: 'none', createInvoice: async () => { throw new Error('unused'); }, describe: () => 'none', close: async () => {} };
  const gate = new Gate({ config: cfg, store: new MemoryStore(), backend, rootKeys: [Buffer.alloc(32, 7)], log: createLogger('silent') });
  const allow = (revocationsAt: number | undefined, validUntil?: number) =>
    gate.cacheSecondsFor({ outcome: 'allow', route: cfg.routes[0]!, reason: 'paid', rail: 'lightning', tokenId: hex('a'), paymentHash: hex('1'), singleUse: false, revocationsAt, validUntil });
  const now = Date.now();
  assert.equal(allow(now - 100), 3);
  assert.equal(allow(now - 1500), 2);
  assert.equal(allow(now - 4500), 0);
  assert.equal(allow(-Infinity), 0, 'no list read: nothing cached');
  assert.equal(allow(undefined), 4, 'decided outside the gate (library use): the clock second only');
  assert.equal(allow(now - 100, Math.floor(now / 1000) + 2), 1, 'never past the credential\'s expiry');
  const c = new RevocationCache(new MemoryStore().ledger(), 500);
  const r = await c.check(hex('a'), hex('1'));
  assert.deepEqual([r.revoked, r.confirmedAt], [false, c.confirmed]);
});
