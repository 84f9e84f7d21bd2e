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
import type { Ledger, Revocation, Sale } from '../../src/store/ledger.js';
import { SqliteLedger } from '../../src/store/ledger-sqlite.js';
import Database from 'better-sqlite3';
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

test('SQLite ledger: at most its cap of sales, the oldest dropped first, counted across processes and after an older version wrote uncounted rows', async () => {
  const d = mkdtempSync(join(tmpdir(), 'l402-ledger-cap-'));
  dirs.push(d);
  const file = join(d, 'l402.db');
  const one = new SqliteStore(file);
  const two = new SqliteStore(file);
  const raw = new Database(file);
  try {
    const cap = 50;
    const base = Date.now() - 10_000_000;
    const a = new SqliteLedger((one as unknown as { db: Database.Database }).db, cap);
    const b = new SqliteLedger((two as unknown as { db: Database.Database }).db, cap);
    const sale = (i: number): Sale => ({ id: `s${String(i).padStart(4, '0')}`, rail: 'lightning', route: '/r', amountMsat: 1, at: base + i, access: 'per-request' });
    const ids = () => (raw.prepare('SELECT id FROM sales ORDER BY at').all() as Array<{ id: string }>).map((r) => r.id);
    let i = 0;
    while (i < 40) await a.recordSales(Array.from({ length: 7 }, () => sale(i++)));
    assert.equal(ids().length, 42, 'under the cap nothing is dropped');
    // Another process adds to the same count; a repeat adds nothing.
    while (i < 120) await (i % 2 ? a : b).recordSales([sale(i++), sale(i++), sale(i++), sale(0)]);
    assert.deepEqual(ids(), Array.from({ length: cap }, (_, k) => sale(i - cap + k).id), 'the newest 50 kept');
    // A process of an older version wrote rows without counting them: the next process counts them on its first write.
    const insert = raw.prepare("INSERT INTO sales (id, at, route, rail, amount_msat) VALUES (?, ?, '/r', 'lightning', 1)");
    for (let k = 0; k < 30; k++) insert.run(`old${k}`, base + i + k);
    i += 30;
    await a.recordSales([sale(i++)]);
    assert.equal(ids().length, cap + 30, 'a process that counted already does not see them (it never trims more than it knows)');
    const c = new SqliteLedger(raw, cap);
    await c.recordSales([sale(i++)]);
    assert.equal(ids().length, cap, 'recounted, and trimmed to the cap');
    assert.equal((raw.prepare("SELECT value FROM ledger_meta WHERE name = 'sales'").get() as { value: number }).value, cap);
    assert.equal(ids().at(-1), sale(i - 1).id);
  } finally {
    raw.close();
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
    gate.cacheSecondsFor({ outcome: 'allow', route: cfg.routes[0]!, reason: 'paid', rail: 'lightning', tokenId: hex('a'), paymentHash: hex('1'), singleUse: false, revocationsAt, validUntil }, now);
  const now = Date.now();
  assert.equal(allow(now - 100), 3);
  assert.equal(allow(now - 1500), 2);
  assert.equal(allow(now - 4500), 0);
  assert.equal(allow(-Infinity), 0, 'no list read: nothing cached');
  assert.equal(allow(undefined), 4, 'decided outside the gate (library use): the clock second only');
  // Less than two seconds left: nginx may read the answer in the next second and keep it a second more, so
  // one second is kept only when l402d answers on a second boundary (test/unit/auth-cache-lifetime.test.ts).
  assert.equal(allow(now - 100, Math.floor(now / 1000) + 2), now % 1000 === 0 ? 1 : 0, 'never past the credential\'s expiry');
  const c = new RevocationCache(new MemoryStore().ledger(), 500);
  const r = await c.check(hex('a'), hex('1'));
  assert.deepEqual([r.revoked, r.confirmedAt], [false, c.confirmed]);
});
