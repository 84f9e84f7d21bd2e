// MPP Lightning sessions in the config: `mpp` in `schemes:` of an `access: balance` route is its session intent
// (accepted), every combination that could not fully work is refused with the key named, and the gate refuses
// a backend that cannot pay the refund on close.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig } from '../../src/config/config.js';
import { Gate } from '../../src/server/gate.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import type { LightningBackend } from '../../src/rails/lightning/backend.js';

const cfgOf = (routes: string) => parseConfig(`lightning: { type: dev }\nroutes:\n  - ${routes}\n`, { env: {} });

test('config: mpp on access: balance is accepted (the session intent); x402 is not', () => {
  const c = cfgOf('{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp] }');
  assert.deepEqual(c.routes[0]!.schemes, ['l402', 'mpp']);
  assert.equal(c.routes[0]!.access, 'balance');
  assert.throws(() => cfgOf('{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp, x402] }'), /schemes.*not x402/s);
});

test('config: session_idle_secs defaults to the spec\'s 5 minutes, 0 turns it off, and needs an MPP session route', () => {
  assert.equal(cfgOf('{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp] }').routes[0]!.sessionIdleSecs, 300);
  assert.equal(cfgOf('{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp], session_idle_secs: 0 }').routes[0]!.sessionIdleSecs, 0);
  assert.equal(cfgOf('{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp], session_idle_secs: 3600 }').routes[0]!.sessionIdleSecs, 3600);
  assert.equal(cfgOf('{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000 }').routes[0]!.sessionIdleSecs, undefined);
  for (const [route, re] of [
    ['{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, session_idle_secs: 60 }', /session_idle_secs.*needs mpp/s],
    ['{ match: /a, amount_msat: 2000, session_idle_secs: 60 }', /session_idle_secs.*needs access: balance/s],
    ['{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp], session_idle_secs: -1 }', /session_idle_secs/],
    ['{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, plan: p, schemes: [l402, mpp] }\n  - { match: /b, amount_msat: 2000, access: balance, balance_msat: 10000, plan: p, schemes: [l402, mpp], session_idle_secs: 60 }', /plan "p".*session_idle_secs/s],
  ] as Array<[string, RegExp]>) assert.throws(() => cfgOf(route), re, route);
});

test('config: every session combination that cannot fully work is refused, naming the key', () => {
  const bad: Array<[string, RegExp]> = [
    // The deposit and the unit are whole satoshis.
    ['{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10500, schemes: [l402, mpp] }', /balance_msat.*multiple of 1000/s],
    ['{ match: /a, amount_msat: 2500, access: balance, balance_msat: 10000, schemes: [l402, mpp] }', /amount_msat.*multiple of 1000/s],
    // A payee's Lightning address would take the deposit; the refund comes from our own node.
    ['{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp], lnurl_addr: pay@example.com }', /schemes.*lnurl_addr/s],
    // L402 stays (the balance route's own credential), MPP beside it.
    ['{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [mpp] }', /schemes.*needs L402/s],
    // mpp stays refused on timed and indefinite routes (its charge intent pays one request).
    ['{ match: /a, amount_msat: 2000, access: indefinite, schemes: [l402, mpp] }', /schemes.*per-request/s],
    // A plan's routes all take its sessions, or none does.
    ['{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, plan: p, schemes: [l402, mpp] }\n  - { match: /b, amount_msat: 2000, access: balance, balance_msat: 10000, plan: p, schemes: [l402] }', /routes\[1\]\.schemes.*plan "p".*mpp/s],
  ];
  for (const [route, re] of bad) assert.throws(() => cfgOf(route), re, route);
});

test('the gate refuses MPP sessions on a backend that cannot pay the refund, and takes them on the dev wallet', () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-sess-cfg-'));
  const wallet = DevWallet.open(dir);
  try {
    const cfg = cfgOf('{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp] }');
    const parts = { config: cfg, store: new MemoryStore(), rootKeys: [randomBytes(32)], log: createLogger('silent') };
    assert.ok(new Gate({ ...parts, backend: wallet }));
    // A backend without payInvoice (as CLN, NWC, LNC, the HTTP backends, and lnd without pay_refunds).
    const noPay: LightningBackend = { kind: 'nopay', createInvoice: wallet.createInvoice.bind(wallet), describe: () => 'nopay', close: async () => undefined };
    assert.throws(() => new Gate({ ...parts, backend: noPay }), /routes \/a: schemes mpp on access: balance.*cannot/);
    // Without mpp the same backend serves the balance route.
    const plain = cfgOf('{ match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402] }');
    assert.ok(new Gate({ ...parts, config: plain, backend: noPay }));
  } finally {
    wallet.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
