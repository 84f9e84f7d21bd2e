// The swap journal alone (rails/cashu/swap-journal.ts): how a failed swap is settled (the payer's proofs
// given back only when the mint certainly signed nothing), the journal entry written before a swap leaves,
// and recovery asking a real mint (test/peers/cashu-mint.ts) about a swap whose answer was lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CTSError, MintOperationError } from '@cashu/cashu-ts';
import { CashuMintPeer } from '../peers/cashu-mint.js';
import { cashuConfigSchema } from '../../src/rails/cashu/index.js';
import { MintDirectory, MintNotReachedError, NUT_CODE } from '../../src/rails/cashu/mint-client.js';
import { proofSetId, ReplayGuard } from '../../src/rails/cashu/replay.js';
import { hashToCurve } from '../../src/rails/cashu/secp256k1.js';
import { loadWalletSeed } from '../../src/rails/cashu/seed.js';
import { COUNTER_SKIP, JournalError, SwapJournal } from '../../src/rails/cashu/swap-journal.js';
import { WalletDb } from '../../src/rails/cashu/wallet-db.js';
import { WalletPool } from '../../src/rails/cashu/wallets.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { createLogger } from '../../src/util/log.js';

type T = { after: (fn: () => unknown) => void };
const log = createLogger('silent');

function journalEnv(t: T, mintUrl = 'http://127.0.0.1:9') {
  const dir = mkdtempSync(join(tmpdir(), 'cashu-journal-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = cashuConfigSchema.parse({ mints: [mintUrl] });
  const db = new WalletDb(join(dir, 'wallet.db'));
  t.after(() => db.close());
  const seed = loadWalletSeed({ mnemonicFile: join(dir, 'mnemonic'), fingerprintFile: join(dir, 'wallet.fingerprint'), db });
  const directory = new MintDirectory(db, cfg.mintTimeoutMs, 1);
  const wallets = new WalletPool(db, directory, seed.seed, 'sat', 10_000, 1);
  const store = new MemoryStore();
  const replay = new ReplayGuard(store);
  const journal = new SwapJournal({ cfg, unit: 'sat', db, wallets, replay, log, holder: 'me', swapTransportMs: 10_000 });
  t.after(() => journal.close());
  return { cfg, db, store, replay, journal, wallets };
}

const ys = ['02' + 'aa'.repeat(32), '03' + 'bb'.repeat(32)];
const setId = proofSetId(ys);
const ctx = { routeId: '/r', tenant: 'hello@tenant.example' };
const reserved = { keysetId: '00abcdef01234567', start: 40, count: 4 };

/** A swap in flight: the payer's proofs claimed, the journal entry written. */
async function inFlight(e: ReturnType<typeof journalEnv>, id: string) {
  assert.equal(await e.replay.claimAll(ys, 3600), 'claimed');
  e.journal.start({ id, mint: 'http://127.0.0.1:9', reserved, ys, ctx });
  assert.equal(e.db.swapsStartedBefore(Math.floor(Date.now() / 1000) + 1).filter((r) => r.id === id).length, 1, 'journalled');
}

test("a swap the mint refused with a NUT error is settled now: spent stays spent, anything else is given back", async (t) => {
  const e = journalEnv(t);
  await inFlight(e, 's1');
  assert.deepEqual(await e.journal.failed(new MintOperationError(NUT_CODE.tokenAlreadySpent, 'spent'), { id: 's1', sent: true, reserved }, { ys }, 'm'), { ok: false, status: 400, reason: 'token already spent' });
  assert.ok(e.replay.knownSpent(ys), 'remembered as spent');
  assert.equal(await e.replay.claimAll(ys, 3600), 'replay', 'claims kept');
  assert.equal(e.db.swapsStartedBefore(Math.floor(Date.now() / 1000) + 1).length, 0, 'journal entry ended');

  const f = journalEnv(t);
  await inFlight(f, 's2');
  const r = await f.journal.failed(new MintOperationError(12345, 'no'), { id: 's2', sent: true, reserved }, { ys }, 'm');
  assert.equal(r.ok, false);
  assert.equal((r as { status: number }).status, 400);
  assert.equal(await f.replay.claimAll(ys, 3600), 'claimed', 'released for the payer to retry');
});

test('outputs signed before: our fault (503), the counter skips ahead, the proofs go back', async (t) => {
  const e = journalEnv(t);
  await inFlight(e, 's3');
  const r = await e.journal.failed(new MintOperationError(NUT_CODE.outputsAlreadySigned, 'signed'), { id: 's3', sent: true, reserved }, { ys }, 'm');
  assert.equal((r as { status: number }).status, 503);
  assert.equal(await e.replay.claimAll(ys, 3600), 'claimed');
  // The next outputs start past the skipped range, so the retry gets outputs the mint never signed.
  assert.equal(e.db.peekCounter(reserved.keysetId), reserved.start + reserved.count + COUNTER_SKIP);
});

test('never sent, or the mint not reached: released; a journal that cannot be written says so (503)', async (t) => {
  for (const [err, sent, status] of [
    [new JournalError('disk full'), false, 503],
    [new MintNotReachedError('connection refused'), true, 503],
    [new CTSError('bad token'), false, 400],
    [new Error('boom'), false, 503],
  ] as const) {
    const e = journalEnv(t);
    await inFlight(e, 'x');
    const r = await e.journal.failed(err, { id: 'x', sent, reserved }, { ys }, 'm');
    assert.equal((r as { status: number }).status, status, `${err.constructor.name}: ${JSON.stringify(r)}`);
    assert.equal(await e.replay.isUnsettled(setId), false);
    assert.equal(await e.replay.claimAll(ys, 3600), 'claimed', `${err.constructor.name}: released`);
  }
});

test('sent and then lost: the claims and the journal entry stay, and a retry is told to wait', async (t) => {
  const e = journalEnv(t);
  await inFlight(e, 's4');
  const r = await e.journal.failed(new Error('socket hang up'), { id: 's4', sent: true, reserved }, { ys }, 'm');
  assert.deepEqual(r, { ok: false, status: 503, reason: 'swap outcome unknown' });
  assert.equal(await e.replay.isUnsettled(setId), true);
  assert.equal(await e.replay.claimAll(ys, 3600), 'replay', 'still claimed');
  assert.equal(e.db.swapsStartedBefore(Math.floor(Date.now() / 1000) + 1).length, 1, 'left for recovery');
});

test('recovery asks the mint: a lost swap that never happened frees the token; a leased or young one is left alone', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cashu-journal-mint-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  t.after(() => mint.close());
  const e = journalEnv(t, mint.url);
  const { proofs } = await mint.fundedWallet(8);
  const inputs = proofs.map((p) => hashToCurve(p.secret).hex);
  const keysetId = proofs[0]!.id;
  assert.equal(await e.replay.claimAll(inputs, 3600), 'claimed');
  e.journal.start({ id: 'lost', mint: mint.url, reserved: { keysetId, start: 0, count: 2 }, ys: inputs, ctx });
  await e.replay.markUnsettled(proofSetId(inputs), 3600);
  // Too young: it may still be in flight.
  assert.equal(await e.journal.recover(undefined, 3600), 0);
  // Another process holds its lease: not ours to settle.
  assert.ok(e.db.takeLease('swap:lost', 'other', 120));
  assert.equal(await e.journal.recover(undefined, -1), 0);
  e.db.dropLease('swap:lost', 'other');
  // Nothing signed for our outputs, inputs unspent at the mint: the payer's token is free again.
  assert.equal(await e.journal.recover(undefined, -1), 1);
  assert.equal(await e.replay.isUnsettled(proofSetId(inputs)), false);
  assert.equal(await e.replay.claimAll(inputs, 3600), 'claimed', 'released');
  assert.equal(e.db.swapsStartedBefore(Math.floor(Date.now() / 1000) + 10).length, 0, 'journal entry ended');
  await e.journal.close();
  e.journal.start({ id: 'after', mint: mint.url, reserved: { keysetId, start: 2, count: 2 }, ys: inputs, ctx });
  assert.equal(await e.journal.recover(undefined, -1), 0, 'closed: settles nothing');
});

test('a journal entry that cannot be written is a JournalError (the swap is then never sent)', (t) => {
  const e = journalEnv(t);
  e.db.close();
  assert.throws(() => e.journal.start({ id: 'y', mint: 'm', reserved, ys, ctx }), JournalError);
});
