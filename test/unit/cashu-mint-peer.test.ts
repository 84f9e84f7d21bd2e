// The mint peer itself must behave like a mint, or the rail tests prove nothing: keyset ids that verify,
// DLEQ on every signature, balanced swaps with NUT-02 fees, double-spend and forgery refusals, NUT-11
// enforcement (including the refund path), NUT-07, NUT-09, NUT-04 quotes that need payment, NUT-05 melts
// that settle a DevWallet invoice with NUT-08 change. Driven by cashu-ts's Wallet where possible.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Keyset,
  MintOperationError,
  Wallet,
  createRandomSecretKey,
  getEncodedToken,
  getPubKeyFromPrivKey,
  hasValidDleq,
  signP2PKProofs,
  type MintKeys,
  type Proof,
} from '@cashu/cashu-ts';
import { CashuMintPeer, type MintPeerOptions } from '../peers/cashu-mint.js';
import { cashuConfigSchema, createCashuRail } from '../../src/rails/cashu/index.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { hashToCurve } from '../../src/rails/cashu/secp256k1.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { createLogger } from '../../src/util/log.js';

type T = { after: (fn: () => unknown) => void };
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

async function start(t: T, opts: Partial<MintPeerOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'cashu-peer-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const payee = DevWallet.open(join(dir, 'payee'));
  t.after(() => payee.close());
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint'), payees: [payee], ...opts });
  t.after(() => mint.close());
  return { dir, mint, payee };
}

async function get(url: string) {
  const r = await fetch(url);
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

const refuses = async (p: Promise<unknown>, code: number) =>
  assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof MintOperationError, String(err));
    assert.equal(err.code, code, err.message);
    return true;
  });

test('NUT-06 info, NUT-01/02 keys whose ids re-derive (v2 and legacy v0 ids), signatures with DLEQ', async (t) => {
  for (const version of [1, 0] as const) {
    const { mint } = await start(t, { keysetVersion: version, inputFeePpk: 100 });
    const info = (await get(`${mint.url}/v1/info`)).body as { nuts: Record<string, { supported?: boolean }> };
    for (const n of ['7', '10', '11', '12']) assert.equal(info.nuts[n]?.supported, true, `NUT-${n}`);
    const sets = (await get(`${mint.url}/v1/keysets`)).body.keysets as Array<{ id: string; input_fee_ppk: number }>;
    assert.equal(sets[0]!.input_fee_ppk, 100);
    assert.ok(sets[0]!.id.startsWith(version === 1 ? '01' : '00'));
    const keys = ((await get(`${mint.url}/v1/keys/${sets[0]!.id}`)).body.keysets as MintKeys[])[0]!;
    assert.equal(Keyset.verifyKeysetId(keys), true);
    assert.equal((await get(`${mint.url}/v1/keys/00ffffffffffffff`)).status, 400);
    const { proofs } = await mint.fundedWallet(13);
    assert.equal(proofs.reduce((s, p) => s + p.amount.toNumber(), 0), 13);
    for (const p of proofs) assert.ok(hasValidDleq(p, { id: keys.id, keys: keys.keys }));
  }
});

test('NUT-03 swap: balanced with fees, double spend, forgery, duplicate inputs, reused outputs', async (t) => {
  const { mint } = await start(t, { inputFeePpk: 1000 });
  const { wallet, proofs } = await mint.fundedWallet(20);
  const token = getEncodedToken({ mint: mint.url, unit: 'sat', proofs });
  const fresh = await wallet.receive(token); // pays 1 sat per input in fees
  assert.equal(fresh.reduce((s, p) => s + p.amount.toNumber(), 0), 20 - proofs.length);
  await refuses(wallet.receive(token), 11001);
  const forged: Proof[] = [{ ...fresh[0]!, C: hashToCurve('nope').hex, dleq: undefined }];
  await refuses(wallet.receive(forged), 10003);
  const swap = (body: unknown) => fetch(`${mint.url}/v1/swap`, { method: 'POST', body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, body: (await r.json()) as { code?: number } }));
  const p0 = { ...fresh[0]!, amount: fresh[0]!.amount.toNumber() };
  assert.equal((await swap({ inputs: [p0, p0], outputs: [] })).body.code, 11007);
  assert.equal((await swap({ inputs: [p0], outputs: [] })).body.code, 11002, 'unbalanced');
  // A blinded message that was already signed may not be signed again.
  const { mint: free } = await start(t);
  const { proofs: mine } = await free.fundedWallet(8);
  const reused = [...free.signed.keys()][0]!;
  const freeSwap = await fetch(`${free.url}/v1/swap`, {
    method: 'POST',
    body: JSON.stringify({ inputs: [{ ...mine[0]!, amount: 8 }], outputs: [{ id: free.activeKeyset().id, amount: 8, B_: reused }] }),
  });
  assert.equal(((await freeSwap.json()) as { code: number }).code, 10002);
});

test('NUT-11: locked proofs need the key holder’s signature; after locktime the refund key can spend', async (t) => {
  const { mint } = await start(t);
  const owner = hex(createRandomSecretKey());
  const ownerPub = hex(getPubKeyFromPrivKey(Buffer.from(owner, 'hex')));
  const refund = hex(createRandomSecretKey());
  const refundPub = hex(getPubKeyFromPrivKey(Buffer.from(refund, 'hex')));
  const { wallet, proofs } = await mint.fundedWallet(40);
  const { send } = await wallet.ops.send(8, proofs).asP2PK({ pubkey: ownerPub }).run();
  const unsigned = getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send });
  await refuses(wallet.receive(unsigned), 10003);
  await refuses(wallet.ops.receive(unsigned).privkey(refund).run(), 10003);
  const got = await wallet.ops.receive(unsigned).privkey(owner).run();
  assert.equal(got.reduce((s, p) => s + p.amount.toNumber(), 0), 8);
  // Expired locktime: the refund key works, as NUT-11 says.
  const { keep } = await wallet.ops.send(8, got).run();
  const { send: timed } = await wallet.ops.send(4, keep.length ? keep : got).asP2PK({ pubkey: ownerPub, locktime: Math.floor(Date.now() / 1000) - 5, refundKeys: [refundPub] }).run();
  const signed = signP2PKProofs(timed, refund);
  const reclaimed = await wallet.receive(getEncodedToken({ mint: mint.url, unit: 'sat', proofs: signed }));
  assert.equal(reclaimed.reduce((s, p) => s + p.amount.toNumber(), 0), 4);
});

test('NUT-07 states, NUT-09 restore, NUT-04 quotes need payment and issue once', async (t) => {
  const { mint } = await start(t);
  const wallet = new Wallet(mint.url, { unit: 'sat' });
  await wallet.loadMint();
  const q = await wallet.createMintQuoteBolt11(8);
  assert.equal((await wallet.checkMintQuoteBolt11(q.quote)).state, 'UNPAID');
  await refuses(wallet.mintProofsBolt11(8, q.quote), 20001);
  mint.payMintQuote(q.quote);
  assert.equal((await wallet.checkMintQuoteBolt11(q.quote)).state, 'PAID');
  const proofs = await wallet.mintProofsBolt11(8, q.quote);
  await refuses(wallet.mintProofsBolt11(8, q.quote), 20002);
  const states = await wallet.checkProofsStates(proofs);
  assert.ok(states.every((s) => s.state === 'UNSPENT'));
  await wallet.receive(getEncodedToken({ mint: mint.url, unit: 'sat', proofs }));
  assert.ok((await wallet.checkProofsStates(proofs)).every((s) => s.state === 'SPENT'));
  const B = [...mint.signed.keys()].slice(0, 2);
  const res = (await fetch(`${mint.url}/v1/restore`, { method: 'POST', body: JSON.stringify({ outputs: [...B.map((b) => ({ B_: b, amount: 1, id: 'x' })), { B_: '02' + '11'.repeat(32), amount: 1, id: 'x' }] }) }).then((r) => r.json())) as { signatures: unknown[] };
  assert.equal(res.signatures.length, 2);
});

test('NUT-05 melt pays by settling the payee’s invoice (preimage matches) and returns NUT-08 change', async (t) => {
  const { mint, payee, dir } = await start(t, { feeReserve: () => 3, feePaid: 1 });
  const { wallet, proofs } = await mint.fundedWallet(40);
  const inv = await payee.createInvoice({ amountMsat: 30_000, memo: 'melt', expirySecs: 600 });
  const quote = await wallet.createMeltQuoteBolt11(inv.bolt11);
  assert.deepEqual([quote.amount.toNumber(), quote.fee_reserve.toNumber(), quote.state], [30, 3, 'UNPAID']);
  const res = await wallet.meltProofsBolt11(quote, proofs);
  assert.equal(res.quote.state, 'PAID');
  assert.equal(createHash('sha256').update(Buffer.from(res.quote.payment_preimage!, 'hex')).digest('hex'), inv.paymentHash.toString('hex'));
  assert.equal((await payee.lookupInvoice(inv.paymentHash)).state, 'settled');
  assert.equal(res.change.reduce((s, p) => s + p.amount.toNumber(), 0), 40 - 30 - 1);
  // An invoice no payee knows cannot be paid; inputs stay unspent.
  const stranger = DevWallet.open(join(dir, 'stranger'));
  t.after(() => stranger.close());
  const other = await stranger.createInvoice({ amountMsat: 5_000, memo: 'x', expirySecs: 600 });
  const q2 = await wallet.createMeltQuoteBolt11(other.bolt11);
  await refuses(wallet.meltProofsBolt11(q2, res.change), 20004);
  assert.ok((await wallet.checkProofsStates(res.change)).every((s) => s.state === 'UNSPENT'));
});

test('the rail accepts tokens from a legacy (v0 keyset id) mint in both modes', async (t) => {
  const { mint, dir } = await start(t, { keysetVersion: 0 });
  const log = createLogger('silent');
  const priv = hex(createRandomSecretKey());
  const pub = hex(getPubKeyFromPrivKey(Buffer.from(priv, 'hex')));
  const std = await createCashuRail(cashuConfigSchema.parse({ mints: [mint.url] }), { store: new MemoryStore(), dataDir: join(dir, 's'), log });
  t.after(() => std.close());
  const p2pk = await createCashuRail(cashuConfigSchema.parse({ mode: 'p2pk', mints: [mint.url], p2pk: { private_key: priv } }), { store: new MemoryStore(), dataDir: join(dir, 'p'), log });
  t.after(() => p2pk.close());
  const { wallet, proofs } = await mint.fundedWallet(40);
  const a = await wallet.ops.send(5, proofs).run();
  assert.equal((await std.accept(getEncodedToken({ mint: mint.url, unit: 'sat', proofs: a.send }), 5000, { routeId: 'x' })).ok, true);
  const b = await wallet.ops.send(5, a.keep).asP2PK({ pubkey: pub }).run();
  assert.equal((await p2pk.accept(getEncodedToken({ mint: mint.url, unit: 'sat', proofs: b.send }), 5000, { routeId: 'x' })).ok, true);
});
