// The Cashu rail in standard mode: every token is swapped at the mint (NUT-03) before the request passes,
// within a timeout. Replays, tokens spent elsewhere, forged or foreign-locked proofs, a slow mint (503,
// then the late swap is honoured once), a lost swap answer (recovered from the seed, or the token freed),
// a failing mint (503 without burning the token), keyset rotation,
// the mint list, concurrent double spends, and the tenant kept through the swap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRandomSecretKey, getEncodedToken, getPubKeyFromPrivKey, type Proof } from '@cashu/cashu-ts';
import { CashuMintPeer, type MintPeerOptions } from '../peers/cashu-mint.js';
import { cashuConfigSchema, createCashuRail, type CashuRail } from '../../src/rails/cashu/index.js';
import { hashToCurve } from '../../src/rails/cashu/secp256k1.js';
import { WalletDb } from '../../src/rails/cashu/wallet-db.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { Store } from '../../src/store/store.js';
import { createLogger } from '../../src/util/log.js';
import { sleep } from '../../src/util/timeout.js';

type T = { after: (fn: () => unknown) => void };
const log = createLogger('silent');

async function env(t: T, mintOpts: Partial<MintPeerOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'cashu-std-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint'), ...mintOpts });
  t.after(() => mint.close());
  return { dir, mint };
}

async function rail(t: T, dir: string, raw: Record<string, unknown>, store: Store = new MemoryStore(), sub = 'gate'): Promise<CashuRail> {
  const r = await createCashuRail(cashuConfigSchema.parse(raw), { store, dataDir: join(dir, sub), log });
  t.after(() => r.close());
  return r;
}

async function plainToken(mint: CashuMintPeer, amount: number): Promise<{ token: string; send: Proof[] }> {
  const { wallet, proofs } = await mint.fundedWallet(amount + 16);
  const { send } = await wallet.ops.send(amount, proofs).run();
  return { token: getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send }), send };
}

const ys = (ps: Proof[]) => ps.map((p) => hashToCurve(p.secret).hex);
const swaps = (m: CashuMintPeer) => m.knobs.requests.get('/v1/swap') ?? 0;
const is = (r: Awaited<ReturnType<CashuRail['accept']>>, status: 400 | 503, re: RegExp) => {
  assert.equal(r.ok, false, `expected ${status} ${re}, got ${JSON.stringify(r)}`);
  assert.equal((r as { status: number }).status, status, JSON.stringify(r));
  assert.match((r as { reason: string }).reason, re);
};

test('a token is swapped at the mint and accepted; the tenant stays with the new proofs; replays never reach the mint', async (t) => {
  const { dir, mint } = await env(t);
  const r = await rail(t, dir, { mints: [mint.url] });
  assert.equal(r.mode, 'standard');
  assert.equal(r.paymentRequest(2500), r.paymentRequest(2500));
  const { token, send } = await plainToken(mint, 13);
  const before = swaps(mint);
  const ok = await r.accept(token, 13_000, { routeId: '/tenant1', tenant: 'hello@tenant.example' });
  assert.deepEqual(ok, { ok: true, amountMsat: 13_000, mint: mint.url, proofs: send.length });
  assert.equal(swaps(mint), before + 1);
  assert.ok(mint.checkState({ Ys: ys(send) }).states.every((s) => s.state === 'SPENT'), 'the payer proofs are spent at the mint');
  const bal = r.balances();
  assert.equal(bal.length, 1);
  assert.deepEqual({ ...bal[0], count: 0 }, { mint: mint.url, unit: 'sat', tenant: 'hello@tenant.example', state: 'unspent', amount: 13, count: 0 });
  is(await r.accept(token, 13_000, { routeId: '/tenant1' }), 400, /already spent/);
  assert.equal(swaps(mint), before + 1, 'the replay was refused locally');
});

test('a token the payer already spent elsewhere, forged proofs, and proofs locked to someone else are refused by the mint', async (t) => {
  const { dir, mint } = await env(t);
  const r = await rail(t, dir, { mints: [mint.url] });
  // Spent first at the mint by the payer (e.g. paid to someone else).
  const { wallet, proofs } = await mint.fundedWallet(32);
  const { send } = await wallet.ops.send(8, proofs).run();
  const token = getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send });
  await wallet.receive(token);
  is(await r.accept(token, 8000, { routeId: 'x' }), 400, /already spent/);
  // A forged signature.
  const { send: s2 } = await plainToken(mint, 8);
  const forged = s2.map((p, i) => (i === 0 ? { ...p, C: hashToCurve('forged' + p.secret).hex } : p));
  is(await r.accept(getEncodedToken({ mint: mint.url, unit: 'sat', proofs: forged }), 8000, { routeId: 'x' }), 400, /mint refused the token: token could not be verified/);
  // Locked to another key: the gate cannot sign for it, so the mint refuses the swap.
  const other = Buffer.from(getPubKeyFromPrivKey(createRandomSecretKey())).toString('hex');
  const { wallet: w3, proofs: p3 } = await mint.fundedWallet(24);
  const { send: s3 } = await w3.ops.send(8, p3).asP2PK({ pubkey: other }).run();
  is(await r.accept(getEncodedToken({ mint: mint.url, unit: 'sat', proofs: s3 }), 8000, { routeId: 'x' }), 400, /spending conditions not met/);
  // The refusal of the forged token released its claims: the genuine proofs in it still pay.
  assert.equal((await r.accept(getEncodedToken({ mint: mint.url, unit: 'sat', proofs: s2 }), 8000, { routeId: 'x' })).ok, true);
  // Underpayment is refused before any swap.
  const before = swaps(mint);
  is(await r.accept((await plainToken(mint, 5)).token, 8000, { routeId: 'x' }), 400, /worth 5 sat; the price is 8 sat/);
  assert.equal(swaps(mint), before);
});

test('a slow mint: 503 within swap_timeout_ms; the late swap is kept and the retry with the same token passes once', async (t) => {
  const { dir, mint } = await env(t);
  const r = await rail(t, dir, { mints: [mint.url], swap_timeout_ms: 300 });
  const { token, send } = await plainToken(mint, 9);
  mint.knobs.swapDelayMs = 1000;
  const started = Date.now();
  is(await r.accept(token, 9000, { routeId: 'x' }), 503, /did not complete the swap within 300 ms/);
  assert.ok(Date.now() - started < 1000, 'answered at the timeout, not when the mint finished');
  mint.knobs.swapDelayMs = 0;
  // Until the swap lands the token stays claimed (its outcome is unknown): the payer is told to wait.
  is(await r.accept(token, 9000, { routeId: 'x' }), 503, /not been settled yet/);
  for (let i = 0; i < 100 && r.balances().length === 0; i++) await sleep(50);
  assert.equal(r.balances()[0]?.amount, 9, 'the late swap stored the value');
  assert.ok(mint.checkState({ Ys: ys(send) }).states.every((s) => s.state === 'SPENT'));
  // The credit is for the route the token was sent to (its price, its payee), not another one.
  is(await r.accept(token, 9000, { routeId: 'other' }), 400, /paid for a request to another route/);
  { const again = await r.accept(token, 9000, { routeId: 'x' }); assert.equal(again.ok, true, 'the retry is honoured: ' + JSON.stringify(again)); }
  is(await r.accept(token, 9000, { routeId: 'x' }), 400, /already spent/);
});

test('a late swap whose credit cannot be written does not crash l402d; recovery credits the payer once the store is back', async (t) => {
  const { dir, mint } = await env(t);
  class FlakyStore extends MemoryStore {
    down = false;
    override async set(key: string, value: string, ttl?: number): Promise<void> {
      if (this.down && key.startsWith('cashu:late:')) throw new Error('store connection lost');
      return super.set(key, value, ttl);
    }
  }
  const store = new FlakyStore();
  const r = await rail(t, dir, { mints: [mint.url], swap_timeout_ms: 200 }, store);
  await r.accept((await plainToken(mint, 1)).token, 1000, { routeId: 'warm' });
  const { token } = await plainToken(mint, 6);
  mint.knobs.swapDelayMs = 600;
  store.down = true;
  is(await r.accept(token, 6000, { routeId: 'x' }), 503, /did not complete the swap/);
  for (let i = 0; i < 100 && r.balances().reduce((a, b) => a + b.amount, 0) < 7; i++) await sleep(50);
  await sleep(100); // the failed credit is handled (logged), not an unhandled rejection that ends the process
  mint.knobs.swapDelayMs = 0;
  store.down = false;
  is(await r.accept(token, 6000, { routeId: 'x' }), 503, /not been settled yet/);
  assert.equal(await r.recoverNow(undefined, 0), 1, 'the journal entry was kept for recovery');
  assert.equal((await r.accept(token, 6000, { routeId: 'x' })).ok, true);
  assert.equal(r.balances().reduce((a, b) => a + b.amount, 0), 7, 'restored outputs were not stored twice');
});

test('a swap whose journal entry cannot be written is never sent: 503, the token stays the payer\'s, and the retry passes', async (t) => {
  const { dir, mint } = await env(t);
  const r = await rail(t, dir, { mints: [mint.url] });
  const { token, send } = await plainToken(mint, 9);
  // The wallet database fails (disk full, I/O error) just as the swap is about to leave.
  const startSwap = WalletDb.prototype.startSwap;
  t.after(() => (WalletDb.prototype.startSwap = startSwap));
  WalletDb.prototype.startSwap = () => {
    throw new Error('disk I/O error');
  };
  const before = swaps(mint);
  is(await r.accept(token, 9000, { routeId: 'x' }), 503, /cannot record the swap/);
  assert.equal(swaps(mint), before, 'a swap that could not be journalled was not sent: a lost answer could not be recovered');
  assert.ok(mint.checkState({ Ys: ys(send) }).states.every((s) => s.state === 'UNSPENT'));
  WalletDb.prototype.startSwap = startSwap;
  const retry = await r.accept(token, 9000, { routeId: 'x' });
  assert.equal(retry.ok, true, 'the claims were released: ' + JSON.stringify(retry));
  assert.equal(r.balances().reduce((a, b) => a + b.amount, 0), 9);
});

test('a swap whose answer is lost after the mint signed: 503, then recovery restores the outputs from the seed (NUT-09), after a restart too, and the retry passes once', async (t) => {
  const { dir, mint } = await env(t);
  const store = new MemoryStore();
  const r1 = await rail(t, dir, { mints: [mint.url] }, store);
  const { token, send } = await plainToken(mint, 11);
  mint.knobs.loseSwapAnswer = 'after';
  is(await r1.accept(token, 11_000, { routeId: '/t', tenant: 'owner@tenant.example' }), 503, /mint/);
  assert.ok(mint.checkState({ Ys: ys(send) }).states.every((s) => s.state === 'SPENT'), 'the mint did the swap');
  assert.deepEqual(r1.balances(), [], 'the answer never arrived');
  is(await r1.accept(token, 11_000, { routeId: '/t' }), 503, /not been settled yet/);
  assert.equal(await r1.recoverNow(), 0, 'nothing is settled while the swap could still be in flight');
  // The process goes away; the journal is in the wallet database and the claims in the shared store.
  await r1.close();
  const r2 = await rail(t, dir, { mints: [mint.url] }, store);
  const restores = mint.knobs.requests.get('/v1/restore') ?? 0;
  assert.equal(await r2.recoverNow(undefined, 0), 1);
  assert.equal(mint.knobs.requests.get('/v1/restore'), restores + 1);
  const bal = r2.balances();
  assert.equal(bal.length, 1, JSON.stringify(bal));
  assert.equal(bal[0]!.amount, 11, 'the signed outputs were restored and stored');
  assert.equal(bal[0]!.tenant, 'owner@tenant.example', 'with the tenant of the route that was paid');
  assert.equal(await r2.recoverNow(undefined, 0), 0, 'settled once');
  const again = await r2.accept(token, 11_000, { routeId: '/t' });
  assert.equal(again.ok, true, 'the payer\'s retry is honoured: ' + JSON.stringify(again));
  is(await r2.accept(token, 11_000, { routeId: '/t' }), 400, /already spent/);
});

test('a swap lost before the mint processed it: recovery (once the mint answers) finds the proofs unspent and frees them for the retry', async (t) => {
  const { dir, mint } = await env(t);
  const r = await rail(t, dir, { mints: [mint.url] });
  const { token, send } = await plainToken(mint, 7);
  mint.knobs.loseSwapAnswer = 'before';
  is(await r.accept(token, 7000, { routeId: 'x' }), 503, /mint/);
  assert.ok(mint.checkState({ Ys: ys(send) }).states.every((s) => s.state === 'UNSPENT'), 'the mint did nothing');
  is(await r.accept(token, 7000, { routeId: 'x' }), 503, /not been settled yet/);
  mint.knobs.broken = true;
  assert.equal(await r.recoverNow(undefined, 0), 0, 'a mint that cannot answer leaves the swap for later');
  mint.knobs.broken = false;
  assert.equal(await r.recoverNow(undefined, 0), 1);
  assert.deepEqual(r.balances(), []);
  const retry = await r.accept(token, 7000, { routeId: 'x' });
  assert.equal(retry.ok, true, JSON.stringify(retry));
  assert.equal(r.balances()[0]?.amount, 7);
  assert.equal(await r.recoverNow(undefined, 0), 0, 'a completed swap leaves nothing to recover');
});

test('a failing mint is a 503 that does not burn the token (recovery frees it); an unreachable mint too', async (t) => {
  const { dir, mint } = await env(t);
  const r = await rail(t, dir, { mints: [mint.url] });
  const { token } = await plainToken(mint, 6);
  const warm = await plainToken(mint, 1);
  assert.equal((await r.accept(warm.token, 1000, { routeId: 'x' })).ok, true);
  mint.knobs.broken = true;
  is(await r.accept(token, 6000, { routeId: 'x' }), 503, /HTTP 500/);
  mint.knobs.broken = false;
  // An HTTP error may come from a proxy after the mint acted: the token waits for recovery to ask the mint.
  is(await r.accept(token, 6000, { routeId: 'x' }), 503, /not been settled yet/);
  assert.equal(await r.recoverNow(undefined, 0), 1);
  const again = await r.accept(token, 6000, { routeId: 'x' });
  assert.equal(again.ok, true, JSON.stringify(again));
  const { token: t2 } = await plainToken(mint, 6);
  await mint.close();
  is(await r.accept(t2, 6000, { routeId: 'x' }), 503, /unavailable|unreachable/);
});

test('the mint swapped but its answer was a 502 or unusable: nothing is released; recovery credits the payer once', async (t) => {
  const { dir, mint } = await env(t);
  const r = await rail(t, dir, { mints: [mint.url] });
  await r.accept((await plainToken(mint, 1)).token, 1000, { routeId: 'warm' });
  for (const answer of [{ status: 502, body: { detail: 'bad gateway' } }, { status: 200, body: { signatures: [] } }]) {
    const { token, send } = await plainToken(mint, 5);
    mint.knobs.replaceSwapAnswer = answer;
    const first = await r.accept(token, 5000, { routeId: 'x' });
    assert.deepEqual([first.ok, (first as { status: number }).status], [false, 503], JSON.stringify(first));
    assert.ok(mint.checkState({ Ys: ys(send) }).states.every((s) => s.state === 'SPENT'), 'the mint did the swap');
    is(await r.accept(token, 5000, { routeId: 'x' }), 503, /not been settled yet/);
    assert.equal(await r.recoverNow(undefined, 0), 1, JSON.stringify(answer));
    const retry = await r.accept(token, 5000, { routeId: 'x' });
    assert.equal(retry.ok, true, `${JSON.stringify(answer)}: ${JSON.stringify(retry)}`);
    is(await r.accept(token, 5000, { routeId: 'x' }), 400, /already spent/);
  }
  assert.equal(r.balances().reduce((a, b) => a + b.amount, 0), 11, 'both swaps were restored from the seed');
});

test('keyset rotation at the mint is picked up; a mint that is not listed is never contacted', async (t) => {
  const { dir, mint } = await env(t);
  const other = await CashuMintPeer.start({ dataDir: join(dir, 'other') });
  t.after(() => other.close());
  const listed = await rail(t, dir, { mints: [mint.url] }, new MemoryStore(), 'listed');
  assert.equal((await listed.accept((await plainToken(mint, 3)).token, 3000, { routeId: 'x' })).ok, true);
  mint.addKeyset(0); // new active keyset; proofs minted from now on carry an id the gate has not seen
  await sleep(1100); // unknown ids trigger at most one keyset reload per second
  const fresh = await plainToken(mint, 3);
  assert.notEqual(fresh.send[0]!.id, [...mint.keysets.keys()][0]);
  assert.equal((await listed.accept(fresh.token, 3000, { routeId: 'x' })).ok, true);

  const foreign = await plainToken(other, 4);
  const seen = other.knobs.requests.get('/v1/keysets') ?? 0;
  is(await listed.accept(foreign.token, 4000, { routeId: 'x' }), 400, /is not accepted here/);
  assert.equal(other.knobs.requests.get('/v1/keysets') ?? 0, seen, 'an unlisted mint is never contacted');
  // The foreign mint would have signed its own worthless ecash: a rail without a list cannot be built.
  assert.throws(() => cashuConfigSchema.parse({}), /list the mints you accept/);
});

test('two concurrent verifications of one token: exactly one passes and the mint sees one swap', async (t) => {
  const { dir, mint } = await env(t);
  const r = await rail(t, dir, { mints: [mint.url] });
  await r.accept((await plainToken(mint, 1)).token, 1000, { routeId: 'warm' });
  for (let i = 0; i < 3; i++) {
    const { token } = await plainToken(mint, 4);
    const before = swaps(mint);
    const res = await Promise.all([r.accept(token, 4000, { routeId: 'x' }), r.accept(token, 4000, { routeId: 'x' })]);
    assert.equal(res.filter((x) => x.ok).length, 1, JSON.stringify(res));
    assert.equal(swaps(mint), before + 1);
  }
});

test('standard mode with a key configured also swaps proofs locked to that key', async (t) => {
  const { dir, mint } = await env(t);
  const priv = Buffer.from(createRandomSecretKey()).toString('hex');
  const pub = Buffer.from(getPubKeyFromPrivKey(Buffer.from(priv, 'hex'))).toString('hex');
  const r = await rail(t, dir, { mints: [mint.url], p2pk: { private_key: priv } });
  const { wallet, proofs } = await mint.fundedWallet(24);
  const { send } = await wallet.ops.send(8, proofs).asP2PK({ pubkey: pub }).run();
  const res = await r.accept(getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send }), 8000, { routeId: 'x' });
  assert.equal(res.ok, true, JSON.stringify(res));
  assert.ok(mint.checkState({ Ys: ys(send) }).states.every((s) => s.state === 'SPENT'));
});

test('a wallet database older than the seed’s use (the mint already signed our outputs) is a 503, and the retry passes', async (t) => {
  const { dir, mint } = await env(t);
  const r1 = await rail(t, dir, { mints: [mint.url] });
  assert.equal((await r1.accept((await plainToken(mint, 5)).token, 5000, { routeId: 'x' })).ok, true);
  await r1.close();
  // As if the wallet database were restored from a backup taken before that swap: counters back to 0.
  const { default: Database } = await import('better-sqlite3');
  const raw = new Database(join(dir, 'gate', 'cashu', 'wallet.db'));
  raw.prepare('UPDATE counters SET next = 0').run();
  raw.close();
  const r2 = await rail(t, dir, { mints: [mint.url] });
  const { token } = await plainToken(mint, 5);
  is(await r2.accept(token, 5000, { routeId: 'x' }), 503, /reused a wallet output/);
  const retry = await r2.accept(token, 5000, { routeId: 'x' });
  assert.equal(retry.ok, true, JSON.stringify(retry));
});

test('a late credit used after the retry\'s own deadline goes back: the retry answered 503 does not consume it', async (t) => {
  const { dir, mint } = await env(t);
  const ctl = new AbortController();
  // The credit's claim lands just as the retry's deadline passes.
  class LateCreditUse extends MemoryStore {
    override async claimOnce(k: string, ttl?: number, v?: string) {
      const r = await super.claimOnce(k, ttl, v);
      if (k.startsWith('cashu:late-used:')) ctl.abort();
      return r;
    }
  }
  const r = await rail(t, dir, { mints: [mint.url], swap_timeout_ms: 300 }, new LateCreditUse());
  const { token } = await plainToken(mint, 9);
  mint.knobs.swapDelayMs = 1000;
  is(await r.accept(token, 9000, { routeId: 'x' }), 503, /did not complete the swap/);
  mint.knobs.swapDelayMs = 0;
  for (let i = 0; i < 100 && r.balances().length === 0; i++) await sleep(50);
  for (let i = 0; i < 40; i++) {
    const retry = await r.accept(token, 9000, { routeId: 'x' }, ctl.signal);
    if (ctl.signal.aborted) {
      is(retry, 503, /aborted/);
      break;
    }
    await sleep(50);
  }
  assert.ok(ctl.signal.aborted, 'the late credit was reached');
  // The payer's next retry (in time) is honoured, once.
  { const again = await r.accept(token, 9000, { routeId: 'x' }); assert.equal(again.ok, true, 'the credit is still there: ' + JSON.stringify(again)); }
  is(await r.accept(token, 9000, { routeId: 'x' }), 400, /already spent/);
});
