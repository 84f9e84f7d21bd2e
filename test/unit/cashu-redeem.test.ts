// Redemption to Lightning (NUT-05 melt): the mint pays real DevWallet invoices by settling them. P2PK
// proofs melted with our signature, per-tenant payout with no mixing, fee reserve / minimum balance /
// proof cap, a refused melt returning proofs, a lost melt outcome settled on the next cycle, locktime
// ordering, one redeemer at a time across processes sharing the wallet (the lease renewed for every step,
// the cycle stopping once another process took it over), and proofs the mint reports PENDING kept pending.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import lightBolt11 from 'light-bolt11-decoder';
import { createP2PKsecret, createRandomSecretKey, getEncodedToken, getPubKeyFromPrivKey, type P2PKOptions } from '@cashu/cashu-ts';
import { CashuMintPeer } from '../peers/cashu-mint.js';
import { cashuConfigSchema, createCashuRail, type CashuRail, type CashuRailDeps } from '../../src/rails/cashu/index.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { hashToCurve } from '../../src/rails/cashu/secp256k1.js';
import { WalletDb, type MeltRecord } from '../../src/rails/cashu/wallet-db.js';
import { MintDirectory } from '../../src/rails/cashu/mint-client.js';
import { WalletPool } from '../../src/rails/cashu/wallets.js';
import { Redeemer } from '../../src/rails/cashu/redeem.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { createLogger } from '../../src/util/log.js';
import { sleep } from '../../src/util/timeout.js';

type T = { after: (fn: () => unknown) => void };
const log = createLogger('silent');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

async function env(t: T) {
  const dir = mkdtempSync(join(tmpdir(), 'cashu-redeem-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const operator = DevWallet.open(join(dir, 'ln-operator'));
  const alice = DevWallet.open(join(dir, 'ln-alice'));
  const bob = DevWallet.open(join(dir, 'ln-bob'));
  t.after(() => Promise.all([operator.close(), alice.close(), bob.close()]));
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint'), payees: [operator, alice, bob], feeReserve: () => 2, feePaid: 1 });
  t.after(() => mint.close());
  const priv = hex(createRandomSecretKey());
  const pub = hex(getPubKeyFromPrivKey(Buffer.from(priv, 'hex')));
  // A tenant's Lightning address resolves to an invoice from that tenant's node (as LNURL-pay would).
  const tenants: Record<string, DevWallet> = { 'alice@example.com': alice, 'bob@example.com': bob };
  const tenantInvoice: CashuRailDeps['tenantInvoice'] = async (address, amountMsat, memo) => {
    const w = tenants[address];
    if (!w) throw new Error(`unknown tenant ${address}`);
    return (await w.createInvoice({ amountMsat, memo, expirySecs: 600 })).bolt11;
  };
  return { dir, mint, operator, alice, bob, priv, pub, tenantInvoice };
}
type Env = Awaited<ReturnType<typeof env>>;

async function rail(t: T, e: Env, raw: Record<string, unknown>, sub = 'gate'): Promise<CashuRail> {
  const cfg = cashuConfigSchema.parse({ mints: [e.mint.url], ...raw, redeem: { min_balance_sat: 1, min_fee_reserve_sat: 0, fee_reserve_percent: 0, melt_timeout_ms: 1000, ...(raw.redeem as object) } });
  const r = await createCashuRail(cfg, { store: new MemoryStore(), dataDir: join(e.dir, sub), log, lightning: e.operator, tenantInvoice: e.tenantInvoice });
  t.after(() => r.close());
  return r;
}

async function token(e: Env, amount: number, p2pk?: Partial<P2PKOptions> & { pubkey: string }) {
  const { wallet, proofs } = await e.mint.fundedWallet(amount + 16);
  const b = wallet.ops.send(amount, proofs);
  if (p2pk) b.asP2PK(p2pk);
  const { send } = await b.run();
  return { token: getEncodedToken({ mint: e.mint.url, unit: 'sat', proofs: send }), send };
}

/** msat of every settled invoice of a DevWallet, read from its database. */
async function received(w: DevWallet, bolt11s: string[]): Promise<number> {
  let sum = 0;
  for (const b of bolt11s) {
    const d = lightBolt11.decode(b);
    const hash = d.sections.find((s) => s.name === 'payment_hash');
    const st = await w.lookupInvoice(Buffer.from(String(hash && 'value' in hash ? hash.value : ''), 'hex'));
    if (st.state === 'settled') sum += Number(d.sections.find((s) => s.name === 'amount')!.value);
  }
  return sum;
}

test('P2PK proofs melt to the operator: signed for the mint, invoice paid, change kept, log written', async (t) => {
  const e = await env(t);
  const r = await rail(t, e, { mode: 'p2pk', p2pk: { private_key: e.priv } });
  const a = await token(e, 20, { pubkey: e.pub });
  const b = await token(e, 12, { pubkey: e.pub });
  assert.equal((await r.accept(a.token, 20_000, { routeId: 'x' })).ok, true);
  assert.equal((await r.accept(b.token, 12_000, { routeId: 'x' })).ok, true);
  const melts = await r.redeemNow();
  assert.equal(melts.length, 1);
  const m = melts[0]!;
  assert.equal(m.state, 'paid', JSON.stringify(m));
  assert.equal(m.proofsTotal, 32);
  assert.equal(m.feeReserve, 2);
  assert.equal(m.amount, 30, 'mint reserve 2 is taken from the 32 sat (our reserve rule gives 0 here)');
  assert.equal(m.change, 1, 'reserve 2 - fee paid 1');
  assert.match(m.preimage ?? '', /^[0-9a-f]{64}$/);
  assert.equal(await received(e.operator, [m.invoice!]), 30_000);
  assert.ok(e.mint.checkState({ Ys: [...a.send, ...b.send].map((p) => hashToCurve(p.secret).hex) }).states.every((s) => s.state === 'SPENT'));
  const bal = r.balances();
  assert.deepEqual(bal.map((x) => [x.state, x.amount]).sort(), [['spent', 32], ['unspent', 1]]);
  assert.deepEqual(r.melts().map((x) => x.id), [m.id]);
  assert.deepEqual(await r.redeemNow(), [], "the 1 sat of change cannot cover the mint's 2 sat fee reserve");
});

test('per-tenant payout: each Lightning address receives exactly its own routes’ ecash, standard mode included', async (t) => {
  const e = await env(t);
  const r = await rail(t, e, { mode: 'standard', redeem: { fee_reserve_percent: 10, min_fee_reserve_sat: 3 } });
  const pay = async (amount: number, tenant?: string) =>
    assert.equal((await r.accept((await token(e, amount)).token, amount * 1000, { routeId: tenant ?? 'op', tenant })).ok, true);
  await pay(40, 'alice@example.com');
  await pay(20, 'alice@example.com');
  await pay(50, 'bob@example.com');
  await pay(30);
  const melts = await r.redeemNow();
  assert.equal(melts.length, 3);
  const by = (tenant?: string) => melts.find((m) => m.tenant === tenant)!;
  // reserve = max(floor(total × 10%), 3); the invoice is total − reserve (no input fees at this mint).
  assert.deepEqual([by('alice@example.com').proofsTotal, by('alice@example.com').amount], [60, 54]);
  assert.deepEqual([by('bob@example.com').proofsTotal, by('bob@example.com').amount], [50, 45]);
  assert.deepEqual([by(undefined).proofsTotal, by(undefined).amount], [30, 27]);
  for (const m of melts) assert.equal(m.state, 'paid', JSON.stringify(m));
  assert.equal(await received(e.alice, [by('alice@example.com').invoice!]), 54_000);
  assert.equal(await received(e.bob, [by('bob@example.com').invoice!]), 45_000);
  assert.equal(await received(e.operator, [by(undefined).invoice!]), 27_000);
  // Change (inputs − invoice − the 1 sat fee actually paid) goes back to the tenant whose proofs paid.
  const unspent = r.balances().filter((b) => b.state === 'unspent');
  assert.deepEqual(unspent.map((b) => [b.tenant ?? 'operator', b.amount]).sort(), [['alice@example.com', 5], ['bob@example.com', 4], ['operator', 2]]);
  for (const m of melts) assert.equal(m.change, m.proofsTotal - m.amount! - 1);
});

test('minimum balance, proof cap (largest proofs first), and a refused melt that returns the proofs', async (t) => {
  const e = await env(t);
  const r = await rail(t, e, { mode: 'p2pk', p2pk: { private_key: e.priv }, redeem: { min_balance_sat: 50 } });
  const plain = await token(e, 16, { pubkey: e.pub });
  const large = await token(e, 24, { pubkey: e.pub });
  assert.equal((await r.accept(plain.token, 16_000, { routeId: 'x' })).ok, true);
  assert.equal((await r.accept(large.token, 24_000, { routeId: 'x' })).ok, true);
  assert.deepEqual(await r.redeemNow(), [], '40 sat is below the 50 sat minimum');
  await r.close();

  // 16 + 8 (of 24) and 16 (of 16): a cap of two proofs takes the two 16s... cashu-ts splits 24 as 16 + 8.
  const capped = await rail(t, e, { mode: 'p2pk', p2pk: { private_key: e.priv }, redeem: { max_proofs_per_melt: 2 } });
  const [m] = await capped.redeemNow();
  assert.equal(m?.state, 'paid', JSON.stringify(m));
  assert.equal(m!.proofCount, 2);
  assert.equal(m!.proofsTotal, 32, 'the largest proofs go first (fewest inputs for the value)');
  const left = [...plain.send, ...large.send].filter((p) => p.amount.toNumber() !== 16);
  const st = e.mint.checkState({ Ys: left.map((p) => hashToCurve(p.secret).hex) });
  assert.ok(st.states.every((s) => s.state === 'UNSPENT'), 'the uncapped rest stays for the next cycle');

  // A melt the mint refuses (it cannot route to this payee) leaves the proofs unspent for later.
  const stranger = DevWallet.open(join(e.dir, 'ln-stranger'));
  t.after(() => stranger.close());
  const refused = await createCashuRail(
    cashuConfigSchema.parse({ mode: 'p2pk', mints: [e.mint.url], p2pk: { private_key: e.priv }, redeem: { min_balance_sat: 1, melt_timeout_ms: 1000 } }),
    { store: new MemoryStore(), dataDir: join(e.dir, 'gate'), log, lightning: stranger },
  );
  t.after(() => refused.close());
  const [f] = await refused.redeemNow();
  assert.equal(f?.state, 'failed');
  assert.match(f!.error ?? '', /lightning payment failed/);
  assert.equal(f!.proofsTotal, 9, 'the 8 sat left plus the 1 sat change of the capped melt');
  assert.equal(refused.balances().find((b) => b.state === 'unspent')?.amount, 9);
  assert.equal(refused.balances().find((b) => b.state === 'pending'), undefined);
});

test('a melt whose answer is lost stays pending, is settled from the mint’s quote state on the next cycle, and its change is restored', async (t) => {
  const e = await env(t);
  const r = await rail(t, e, { mode: 'p2pk', p2pk: { private_key: e.priv } });
  assert.equal((await r.accept((await token(e, 20, { pubkey: e.pub })).token, 20_000, { routeId: 'x' })).ok, true);
  e.mint.knobs.meltDelayMs = 1600; // longer than melt_timeout_ms (1000)
  const [m] = await r.redeemNow();
  assert.equal(m?.state, 'pending');
  assert.equal(r.balances().find((b) => b.state === 'pending')?.amount, 20);
  e.mint.knobs.meltDelayMs = 0;
  await sleep(900); // the mint finishes the payment meanwhile
  const [settled] = await r.redeemNow();
  assert.equal(settled?.id, m!.id);
  assert.equal(settled?.state, 'paid');
  assert.equal(await received(e.operator, [m!.invoice!]), m!.amount! * 1000);
  assert.equal(r.balances().find((b) => b.state === 'pending'), undefined);
  // The lost answer carried the change (NUT-08); it is restored from the seed (NUT-09), not forfeited.
  const expected = m!.proofsTotal - m!.amount! - (m!.inputFee ?? 0) - 1; // the peer charges a fee of 1
  assert.ok(expected > 0, 'this melt has change');
  assert.equal(settled?.change, expected);
  assert.equal(r.balances().find((b) => b.state === 'unspent')?.amount, expected);
});

test('two gate processes sharing one wallet: only one redeems at a time and nothing is melted twice', async (t) => {
  const e = await env(t);
  const r1 = await rail(t, e, { mode: 'p2pk', p2pk: { private_key: e.priv } }, 'shared');
  const r2 = await rail(t, e, { mode: 'p2pk', p2pk: { private_key: e.priv } }, 'shared');
  for (let i = 0; i < 3; i++) assert.equal((await r1.accept((await token(e, 10, { pubkey: e.pub })).token, 10_000, { routeId: 'x' })).ok, true);
  const [a, b] = await Promise.all([r1.redeemNow(), r2.redeemNow()]);
  const all = [...a, ...b];
  assert.equal(all.length, 1, JSON.stringify(all));
  assert.equal(all[0]!.state, 'paid');
  assert.equal(all[0]!.proofsTotal, 30);
  const db = new WalletDb(join(e.dir, 'shared', 'cashu', 'wallet.db'));
  t.after(() => db.close());
  assert.equal(db.melts().length, 1);
});

test('proofs the mint refuses as not genuine at melt time are set aside and stop blocking the genuine ones', async (t) => {
  const e = await env(t);
  const r = await rail(t, e, { mode: 'p2pk', p2pk: { private_key: e.priv } });
  const genuine = await token(e, 16, { pubkey: e.pub });
  assert.equal((await r.accept(genuine.token, 16_000, { routeId: 'x' })).ok, true);
  // Every accepted proof was proven (DLEQ, or a swap), so only a mint that disowns proofs later refuses
  // them: put made-up ones straight into the wallet, as such a mint would leave them.
  const db = new WalletDb(join(e.dir, 'gate', 'cashu', 'wallet.db'));
  db.insertProofs(
    genuine.send.map((p) => {
      const secret = createP2PKsecret(e.pub);
      return { y: hashToCurve(secret).hex, mint: e.mint.url, unit: 'sat', keysetId: p.id, amount: p.amount.toNumber(), secret, C: hashToCurve('fake' + p.secret).hex, routeId: 'x', p2pk: true };
    }),
  );
  db.close();
  const [first] = await r.redeemNow();
  assert.equal(first?.state, 'failed');
  assert.match(first!.error ?? '', /refused \d+ proof\(s\) as not genuine/);
  assert.equal(r.balances().find((b) => b.state === 'invalid')?.amount, 16);
  const [second] = await r.redeemNow();
  assert.equal(second?.state, 'paid', JSON.stringify(second));
  assert.equal(second!.proofsTotal, 16);
});

test('proofs the mint reports PENDING (held by a melt in flight there) stay pending under the refused melt until the mint lets go', async (t) => {
  const e = await env(t);
  const r = await rail(t, e, { mode: 'p2pk', p2pk: { private_key: e.priv } });
  const a = await token(e, 20, { pubkey: e.pub });
  const b = await token(e, 12, { pubkey: e.pub });
  assert.equal((await r.accept(a.token, 20_000, { routeId: 'x' })).ok, true);
  assert.equal((await r.accept(b.token, 12_000, { routeId: 'x' })).ok, true);
  const held = [...a.send, ...b.send].find((p) => p.amount.toNumber() === 16)!;
  const heldY = hashToCurve(held.secret).hex;
  e.mint.pending.add(heldY); // as if another melt at the mint had it locked: the mint refuses ours
  const [m1] = await r.redeemNow();
  assert.equal(m1?.state, 'pending', JSON.stringify(m1));
  const bal = (state: string) => r.balances().find((x) => x.state === state)?.amount;
  assert.equal(bal('pending'), 16, 'the PENDING proof is not given back to the wallet');
  assert.equal(bal('unspent'), 16, 'the UNSPENT ones are');

  // Still held at the mint: the melt stays pending, the rest is melted on its own.
  const second = await r.redeemNow();
  assert.equal(second.find((m) => m.id === m1!.id)?.state, 'pending');
  const m2 = second.find((m) => m.id !== m1!.id);
  assert.equal(m2?.state, 'paid', JSON.stringify(second));
  assert.equal(m2!.proofsTotal, 16, 'without the held proof');
  assert.equal(bal('pending'), 16);

  // The mint lets go (its melt failed): the proof comes back and is melted.
  e.mint.pending.delete(heldY);
  const third = await r.redeemNow();
  assert.equal(third.find((m) => m.id === m1!.id)?.state, 'failed');
  const m3 = third.find((m) => m.id !== m1!.id);
  assert.equal(m3?.state, 'paid', JSON.stringify(third));
  assert.equal(m3!.proofsTotal, 16 + m2!.change!, 'the released proof and the change of the second melt');
  assert.equal(bal('pending'), undefined);
  assert.equal(e.mint.checkState({ Ys: [heldY] }).states[0]!.state, 'SPENT');
});

/** A Redeemer of its own on the gate's wallet file (another process, as far as the lease goes). */
function standalone(t: T, e: Env, dbPath: string, leaseSecs: number, meltTimeoutMs: number, db = new WalletDb(dbPath)): Redeemer {
  const cfg = cashuConfigSchema.parse({
    mode: 'p2pk',
    mints: [e.mint.url],
    p2pk: { private_key: e.priv },
    redeem: { min_balance_sat: 1, min_fee_reserve_sat: 0, fee_reserve_percent: 0, melt_timeout_ms: meltTimeoutMs },
  });
  t.after(() => db.close());
  const directory = new MintDirectory(db, 4000);
  const wallets = new WalletPool(db, directory, randomBytes(64), 'sat', 10_000, 1);
  const payout = async (_tenant: string | undefined, amountMsat: number, memo: string) => (await e.operator.createInvoice({ amountMsat, memo, expirySecs: 600 })).bolt11;
  return new Redeemer(cfg, db, directory, wallets, payout, e.priv, log, { leaseSecs });
}

async function threeGroups(t: T, e: Env): Promise<string> {
  const r = await rail(t, e, { mode: 'p2pk', p2pk: { private_key: e.priv } }, 'shared');
  for (const tenant of ['t1', 't2', 't3']) {
    assert.equal((await r.accept((await token(e, 10, { pubkey: e.pub })).token, 10_000, { routeId: tenant, tenant })).ok, true);
  }
  return join(e.dir, 'shared', 'cashu', 'wallet.db');
}

test('a cycle longer than the lease renews it before every melt: another process never resolves a melt still in flight', async (t) => {
  const e = await env(t);
  const dbPath = await threeGroups(t, e);
  const r1 = standalone(t, e, dbPath, 2, 4000);
  const r2 = standalone(t, e, dbPath, 2, 4000);
  const watch = new WalletDb(dbPath);
  t.after(() => watch.close());
  e.mint.knobs.meltDelayMs = 1500; // three melts, one after the other: about 4.5 s, over twice the lease
  const t0 = Date.now();
  let done = false;
  const first = r1.runOnce().finally(() => (done = true));
  let second: MeltRecord[] | undefined;
  while (!done) {
    await sleep(20);
    // A lease taken once at t0 for 2 s has surely run out by t0 + 3 s; try while a melt of r1 is in flight.
    if (Date.now() - t0 >= 3100 && watch.pendingMeltIds().length > 0) {
      second = await r2.runOnce();
      break;
    }
  }
  const melts = await first;
  assert.ok(second, 'r2 tried while r1 had a melt in flight, past its first lease');
  assert.deepEqual(second, [], 'r2 found the lease held and touched nothing');
  assert.equal(melts.length, 3);
  for (const m of melts) assert.equal(m.state, 'paid', JSON.stringify(m));
  assert.equal(watch.melts().length, 3);
  assert.equal(watch.pendingMeltIds().length, 0);
});

test('a cycle whose lease another process took over stops before its next melt', async (t) => {
  const e = await env(t);
  const dbPath = await threeGroups(t, e);
  const r1 = standalone(t, e, dbPath, 1, 4000);
  const other = new WalletDb(dbPath);
  t.after(() => other.close());
  e.mint.knobs.meltDelayMs = 2500; // one melt outlives the 1 s lease (misconfigured): another process takes over
  let done = false;
  const first = r1.runOnce().finally(() => (done = true));
  let tookOver = false;
  while (!done && !tookOver) {
    await sleep(50);
    tookOver = other.takeLease('redeem', 'other-process', 60);
  }
  const melts = await first;
  assert.ok(tookOver, 'the lease ran out during the first melt');
  assert.equal(melts.length, 1, 'the first melt finished; no other was started');
  assert.equal(melts[0]!.state, 'paid');
  assert.equal(other.melts().length, 1);
  assert.equal(other.balances().filter((b) => b.state === 'unspent' && b.tenant !== melts[0]!.tenant).reduce((s, b) => s + b.amount, 0), 20);
  assert.equal(other.takeLease('redeem', 'a-third-process', 60), false, "the other process's lease was left alone");
});

test('a paid melt whose record cannot be written keeps its proofs pending and is recorded on the next cycle, change once', async (t) => {
  const e = await env(t);
  const r = await rail(t, e, { mode: 'p2pk', p2pk: { private_key: e.priv } }, 'shared');
  assert.equal((await r.accept((await token(e, 20, { pubkey: e.pub })).token, 20_000, { routeId: 'x' })).ok, true);
  const db = new WalletDb(join(e.dir, 'shared', 'cashu', 'wallet.db'));
  const finish = db.finishMelt.bind(db);
  let fail = true;
  db.finishMelt = (...args) => {
    if (fail) {
      fail = false;
      throw new Error('disk I/O error');
    }
    finish(...args);
  };
  const redeemer = standalone(t, e, db.path, 60, 2000, db);
  const [first] = await redeemer.runOnce();
  assert.equal(first?.state, 'pending', 'the record write failed');
  assert.equal(db.balances().find((b) => b.state === 'pending')?.amount, 20, 'so the proofs stay pending: the next cycle looks again');
  const [again] = await redeemer.runOnce();
  assert.equal(again?.id, first!.id);
  assert.equal(again?.state, 'paid', JSON.stringify(again));
  assert.equal(again?.change, 1);
  assert.equal(db.balances().find((b) => b.state === 'pending'), undefined);
  assert.equal(db.balances().find((b) => b.state === 'unspent')?.amount, 1, 'the change restored from the seed is not stored twice');
});

test('a melt whose change outputs cannot be recorded is never sent; the next cycle finds its quote unpaid, frees the proofs and melts them', async (t) => {
  const e = await env(t);
  const r = await rail(t, e, { mode: 'p2pk', p2pk: { private_key: e.priv } }, 'shared');
  assert.equal((await r.accept((await token(e, 20, { pubkey: e.pub })).token, 20_000, { routeId: 'x' })).ok, true);
  const db = new WalletDb(join(e.dir, 'shared', 'cashu', 'wallet.db'));
  const setOutputs = db.setMeltOutputs.bind(db);
  db.setMeltOutputs = () => {
    throw new Error('disk I/O error');
  };
  const melts = () => e.mint.knobs.requests.get('/v1/melt/bolt11') ?? 0;
  const redeemer = standalone(t, e, db.path, 60, 2000, db);
  const [first] = await redeemer.runOnce();
  assert.equal(first?.state, 'pending', JSON.stringify(first));
  assert.equal(melts(), 0, 'without a record of its change outputs the melt was not sent');
  db.setMeltOutputs = setOutputs;
  const [settled, next] = await redeemer.runOnce();
  assert.equal(settled?.id, first!.id);
  assert.equal(settled?.state, 'failed', 'its quote was never paid');
  assert.equal(next?.state, 'paid', JSON.stringify(next));
  assert.equal(melts(), 1);
  assert.equal(next?.change, 1, 'the change of the melt that was sent is kept');
});

test('a melt refused because its proofs were spent elsewhere is recorded as failed, not paid, and the proofs leave the balance', async (t) => {
  const e = await env(t);
  const r = await rail(t, e, { mode: 'p2pk', p2pk: { private_key: e.priv } });
  const a = await token(e, 20, { pubkey: e.pub });
  assert.equal((await r.accept(a.token, 20_000, { routeId: 'x' })).ok, true);
  for (const p of a.send) e.mint.spent.add(hashToCurve(p.secret).hex); // spent by someone else at the mint
  const [m] = await r.redeemNow();
  assert.equal(m?.state, 'failed', JSON.stringify(m));
  assert.match(m!.error ?? '', /already spent elsewhere/);
  assert.equal(r.balances().find((b) => b.state === 'unspent'), undefined);
  assert.equal(r.balances().find((b) => b.state === 'spent')?.amount, 20);
  assert.deepEqual(await r.redeemNow(), [], 'nothing left to melt');
});
