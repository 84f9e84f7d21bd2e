// A claim belongs to the request that made it (nginx's $request_id): nginx's retry of that request passes,
// a replay does not, and only that request can give the claim back after an upstream failure.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig } from '../../src/config/config.js';
import { decide, type DecideDeps, type GateRequest } from '../../src/policy/decide.js';
import { releaseClaim, type ReleaseDeps } from '../../src/policy/release.js';
import { createChallenge } from '../../src/policy/challenge.js';
import { RouteTable } from '../../src/policy/routes.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { abandonClaim, claimOwnedBy, requestClaimToken } from '../../src/policy/claims.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import type { Store } from '../../src/store/store.js';

const cfg = parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /premium, amount_msat: 10000 }\n  - { match: /forever, amount_msat: 5000, access: indefinite }\n`, { env: {} });
const MASTER = randomBytes(32);
let dir: string;
let wallet: DevWallet;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'l402-release-'));
  wallet = DevWallet.open(dir);
});
after(() => {
  wallet.close();
  rmSync(dir, { recursive: true, force: true });
});

const id = () => randomBytes(16).toString('hex');
type Both = Omit<DecideDeps, 'cashu'> & ReleaseDeps & { store: Store };
function both(store: Store): Both {
  return { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: [MASTER], store, storeTimeoutMs: 500, cashu: false };
}
async function buy(match: string): Promise<string> {
  const route = cfg.routes.find((r) => r.match === match)!;
  const c = await createChallenge(route, { path: match, method: 'GET', amountMsat: route.amountMsat }, { backend: wallet, rootKey: MASTER, service: 'l402', location: 'l402', memo: 't', invoiceExpirySecs: 600, backendTimeoutMs: 2000 });
  return `L402 ${c.macaroon}:${wallet.pay(c.invoice).toString('hex')}`;
}
const req = (path: string, authorization: string, requestId?: string): GateRequest => ({ path, method: 'GET', requestId, credentials: { authorization } });

test('only strict nginx request ids name an owner; anything else is a random one', () => {
  const a = 'ab'.repeat(16);
  assert.match(requestClaimToken(a), new RegExp(`^claim:req:${a}:[A-Za-z0-9_-]+$`));
  assert.notEqual(requestClaimToken(a), requestClaimToken(a), 'unique per attempt');
  assert.ok(claimOwnedBy(requestClaimToken(a), a));
  assert.ok(!claimOwnedBy(requestClaimToken(a), 'cd'.repeat(16)));
  assert.ok(!claimOwnedBy(requestClaimToken(undefined), a));
  assert.ok(!claimOwnedBy(`claim:req:${a}`, a));
  assert.ok(!claimOwnedBy(requestClaimToken(a), undefined));
  for (const bad of [undefined, '', a.toUpperCase(), `${a}0`, a.slice(1), `${a.slice(0, 31)}g`, ` ${a.slice(1)}`, `${a},${a}`]) {
    const t = requestClaimToken(bad);
    assert.ok(!t.startsWith('claim:req:'), String(bad));
    assert.notEqual(t, requestClaimToken(bad));
  }
});

for (const [name, open] of [['memory', () => new MemoryStore()], ['sqlite', () => new SqliteStore(join(dir, `r-${randomBytes(4).toString('hex')}.db`), 'normal')]] as const) {
  test(`${name}: the same request id passes again (nginx's retry); another id is a replay; only the owner releases`, async () => {
    const d = both(open());
    const auth = await buy('/premium');
    const mine = id();
    assert.equal((await decide(req('/premium', auth, mine), { ...d, cashu: undefined })).outcome, 'allow');
    assert.equal((await decide(req('/premium', auth, mine), { ...d, cashu: undefined })).outcome, 'allow', "nginx's retry of the same request");
    const replay = await decide(req('/premium', auth, id()), { ...d, cashu: undefined });
    assert.deepEqual([replay.outcome, replay.reason], ['invalid', 'already_used']);
    assert.equal((await decide(req('/premium', auth), { ...d, cashu: undefined })).outcome, 'invalid', 'no id: a random owner, a replay');

    // Others cannot release it: another id, no id, a forged or re-signed credential, another path.
    assert.equal(await releaseClaim(req('/premium', auth, id()), d), 'not_owned');
    assert.equal(await releaseClaim(req('/premium', auth), d), 'none');
    assert.equal(await releaseClaim(req('/premium', auth, mine.toUpperCase()), d), 'none');
    const [mac, pre] = auth.slice(5).split(':');
    const forged = decodeMacaroonBase64(mac!);
    forged.signature = randomBytes(32);
    assert.equal(await releaseClaim(req('/premium', `L402 ${encodeMacaroonBase64(forged)}:${pre}`, mine), d), 'none');
    assert.equal(await releaseClaim(req('/nowhere', auth, mine), d), 'none');
    assert.equal((await decide(req('/premium', auth, id()), { ...d, cashu: undefined })).outcome, 'invalid');

    // A holder's attenuation is the same payment: released only by its owner.
    const narrowed = `L402 ${encodeMacaroonBase64(attenuate(decodeMacaroonBase64(mac!), 'method=GET'))}:${pre}`;
    assert.equal(await releaseClaim(req('/premium', narrowed, id()), d), 'not_owned');

    assert.equal(await releaseClaim(req('/premium', auth, mine), d), 'released');
    assert.equal(await releaseClaim(req('/premium', auth, mine), d), 'not_claimed', 'once');
    const retry = id();
    assert.equal((await decide(req('/premium', auth, retry), { ...d, cashu: undefined })).outcome, 'allow', "the payer's retry passes");
    assert.equal((await decide(req('/premium', auth, id()), { ...d, cashu: undefined })).outcome, 'invalid', 'then it is spent');
    assert.equal(await releaseClaim(req('/premium', auth, mine), d), 'not_owned', 'the first request cannot release the retry');
    await d.store.close();
  });
}

test("an earlier attempt that gave up cannot undo a claim nginx's retry of the same request let through", async () => {
  const store = new MemoryStore();
  const d = both(store);
  const auth = await buy('/premium');
  const mine = id();
  assert.equal((await decide(req('/premium', auth, mine), { ...d, cashu: undefined })).outcome, 'allow');
  const key = [...(store as unknown as { map: Map<string, unknown> }).map.keys()].find((k) => k.startsWith('claim:l402:'))!;
  const firstAttempt = (await store.get(key))!;
  // The retry on another l402d (same request id) takes the claim over...
  assert.equal((await decide(req('/premium', auth, mine), { ...d, cashu: undefined })).outcome, 'allow');
  // ...so the first attempt, giving up late (its store answer had timed out), deletes nothing.
  assert.equal(await abandonClaim(store, key, firstAttempt, { forMs: 0 }), false);
  const replay = await decide(req('/premium', auth, id()), { ...d, cashu: undefined });
  assert.deepEqual([replay.outcome, replay.reason], ['invalid', 'already_used']);
  // The request that owns it can still give it back after an upstream failure.
  assert.equal(await releaseClaim(req('/premium', auth, mine), d), 'released');
});

test('a reusable credential holds no claim: nothing to release, and it keeps working', async () => {
  const d = both(new MemoryStore());
  const auth = await buy('/forever');
  const mine = id();
  assert.equal((await decide(req('/forever', auth, mine), { ...d, cashu: undefined })).outcome, 'allow');
  assert.equal(await releaseClaim(req('/forever', auth, mine), d), 'not_claimed');
  assert.equal((await decide(req('/forever', auth, id()), { ...d, cashu: undefined })).outcome, 'allow');
});
