// The idle-session sweeper reads from the store only the sessions that may be idle: one this process used
// is not looked up again before its idle timeout can have passed since that use, while one found among the
// recent sales (a restart) is looked up by the first pass. An idle one is closed once, with its refund.
import { test, mock, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { openSession, type SessionLedgerDeps } from '../../src/policy/mpp-session-ledger.js';
import { storeKeys } from '../../src/policy/store-keys.js';
import { SessionSweeper } from '../../src/server/mpp-session-sweeper.js';

const dir = mkdtempSync(join(tmpdir(), 'l402-sweeper-'));
const wallet = DevWallet.open(join(dir, 'wallet'));
after(() => {
  wallet.close();
  rmSync(dir, { recursive: true, force: true });
});

const IDLE = 60;
const route = parseConfig(
  `lightning: { type: dev }
routes:
  - { match: /s, amount_msat: 1000, access: balance, balance_msat: 10000, schemes: [l402, mpp], session_idle_secs: ${IDLE} }
`,
  { env: {} },
).routes[0]!;

test('a pass looks up only the sessions that may be idle, and closes an idle one once', async () => {
  mock.timers.enable({ apis: ['Date'], now: Date.now() });
  try {
    const store = new MemoryStore();
    const reads: string[] = [];
    const get = store.get.bind(store);
    store.get = async (key: string) => {
      reads.push(key);
      return get(key);
    };
    const ledger: SessionLedgerDeps = { store, masters: [randomBytes(32)], storeTimeoutMs: 2000, idleSecs: IDLE, payInvoice: (r) => wallet.payInvoice(r) };
    const id = () => createHash('sha256').update(randomBytes(32)).digest('hex');
    const used = id();
    const restored = id();
    for (const s of [used, restored]) {
      const ret = wallet.createAmountlessInvoice({ memo: 'refund', expirySecs: 86_400 }).bolt11;
      assert.equal((await openSession(ledger, { sessionId: s, scopeId: route.id, returnInvoice: ret, depositMsat: 5000 })).ok, true);
    }
    const closed: string[] = [];
    const sweeper = new SessionSweeper(() => ledger, (s, _r, r) => closed.push(`${s}:${r.refundSats}`), (e) => assert.fail(e));
    sweeper.watch(used, route);
    sweeper.watchSales([{ id: restored, route: route.id, access: 'balance' }], [route]);

    reads.length = 0;
    await sweeper.sweep();
    assert.deepEqual(reads.filter((k) => k.includes(used)), [], 'a session used here is not looked up before its idle timeout');
    assert.ok(reads.includes(storeKeys.mppSession(restored)), 'a session found among the sales is looked up by the first pass');
    assert.deepEqual(closed, []);

    // Half the idle timeout: still nothing to read for the session used here.
    mock.timers.tick((IDLE / 2) * 1000);
    reads.length = 0;
    await sweeper.sweep();
    assert.deepEqual(reads.filter((k) => k.includes(used)), []);

    // The idle timeout has passed since the last use: both are idle, closed once with their refunds.
    mock.timers.tick((IDLE / 2) * 1000 + 1000);
    await sweeper.sweep();
    assert.deepEqual(closed.sort(), [`${used}:5`, `${restored}:5`].sort());
    reads.length = 0;
    await sweeper.sweep();
    assert.deepEqual(reads, [], 'closed sessions are no longer watched');
  } finally {
    mock.timers.reset();
  }
});
