// Token acceptance alone (rails/cashu/accept.ts): what is refused before any mint is asked, a standard-mode
// swap at a real mint (test/peers/cashu-mint.ts) with its replay, and P2PK mode refusing a mint that does not
// enforce locks. The wiring around it (rail.ts) is covered by cashu-standard and cashu-p2pk tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRandomSecretKey, getEncodedToken, type Proof } from '@cashu/cashu-ts';
import { CashuMintPeer } from '../peers/cashu-mint.js';
import { createAcceptor } from '../../src/rails/cashu/accept.js';
import { cashuConfigSchema } from '../../src/rails/cashu/index.js';
import { MintDirectory } from '../../src/rails/cashu/mint-client.js';
import { ReplayGuard } from '../../src/rails/cashu/replay.js';
import { loadWalletSeed } from '../../src/rails/cashu/seed.js';
import { SwapJournal } from '../../src/rails/cashu/swap-journal.js';
import { WalletDb } from '../../src/rails/cashu/wallet-db.js';
import { WalletPool } from '../../src/rails/cashu/wallets.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { createLogger } from '../../src/util/log.js';

type T = { after: (fn: () => unknown) => void };
const log = createLogger('silent');
// Nothing listens on the discard port: a refusal that asked the mint would answer 503, not 400.
const NO_MINT = 'http://127.0.0.1:9';

function acceptor(t: T, raw: Record<string, unknown>, o: { closed?: boolean; nuts?: Record<string, boolean> } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'cashu-accept-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = cashuConfigSchema.parse(raw);
  const db = new WalletDb(join(dir, 'wallet.db'));
  t.after(() => db.close());
  const seed = loadWalletSeed({ mnemonicFile: join(dir, 'mnemonic'), fingerprintFile: join(dir, 'wallet.fingerprint'), db });
  const directory = new MintDirectory(db, cfg.mintTimeoutMs, cfg.mints.length);
  const wallets = new WalletPool(db, directory, seed.seed, 'sat', 10_000, cfg.mints.length);
  const replay = new ReplayGuard(new MemoryStore());
  const journal = new SwapJournal({ cfg, unit: 'sat', db, wallets, replay, log, holder: 'me', swapTransportMs: 10_000 });
  t.after(() => journal.close());
  const background = new Set<Promise<unknown>>();
  t.after(() => Promise.allSettled([...background]));
  return createAcceptor({
    cfg, unit: 'sat', db, directory, replay, wallets, journal, log, background,
    ourPubkey: undefined,
    mintNuts: async () => o.nuts ?? { 7: true, 11: true, 12: true },
    isClosed: () => !!o.closed,
  });
}

const fake = (n: number, amount = 4): Proof[] =>
  Array.from({ length: n }, (_, i) => ({ id: '00ad268c4d1f5826', amount, secret: `secret-${i}`, C: '02' + '11'.repeat(32) }) as unknown as Proof);
const tok = (mint: string, proofs: Proof[], unit = 'sat') => getEncodedToken({ mint, unit, proofs });
const refused = (r: { ok: boolean } & Partial<{ status: number; reason: string }>, status: number, re: RegExp) => {
  assert.equal(r.ok, false, JSON.stringify(r));
  assert.equal(r.status, status, JSON.stringify(r));
  assert.match(r.reason ?? '', re);
};

test('refused before any mint is asked: size, encoding, mint list, unit, proof count, value', async (t) => {
  const accept = acceptor(t, { mints: [NO_MINT], max_proofs: 3, max_token_bytes: 2048 });
  const ctx = { routeId: '/r' };
  refused(await accept('cashuB' + 'A'.repeat(3000), 1000, ctx), 400, /larger than 2048 bytes/);
  refused(await accept('cashuBnot-a-token', 1000, ctx), 400, /cannot be decoded/);
  refused(await accept(tok('https://other.example', fake(1)), 1000, ctx), 400, /is not accepted here/);
  refused(await accept(tok(NO_MINT, fake(1), 'usd'), 1000, ctx), 400, /unit is usd/);
  refused(await accept(tok(NO_MINT, fake(4)), 1000, ctx), 400, /4 proofs; at most 3/);
  refused(await accept(tok(NO_MINT, fake(1, 4)), 5000, ctx), 400, /worth 4 sat; the price is 5 sat/);
  // Shape and value pass: only now is the mint asked (and it cannot be reached).
  refused(await accept(tok(NO_MINT, fake(1, 8)), 5000, ctx), 503, /./);
});

test('a closing rail accepts nothing (503)', async (t) => {
  const accept = acceptor(t, { mints: [NO_MINT] }, { closed: true });
  refused(await accept(tok(NO_MINT, fake(1, 8)), 5000, { routeId: '/r' }), 503, /shutting down/);
});

test('standard mode: swapped at the mint, accepted once; a replay never reaches the mint', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cashu-accept-mint-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  t.after(() => mint.close());
  const accept = acceptor(t, { mints: [mint.url] });
  const { wallet, proofs } = await mint.fundedWallet(16);
  const { send } = await wallet.ops.send(8, proofs).run();
  const token = tok(mint.url, send);
  const ok = await accept(token, 8000, { routeId: '/r' });
  assert.deepEqual(ok, { ok: true, amountMsat: 8000, mint: mint.url, proofs: send.length });
  const swaps = mint.knobs.requests.get('/v1/swap') ?? 0;
  refused(await accept(token, 8000, { routeId: '/r' }), 400, /already spent/);
  assert.equal(mint.knobs.requests.get('/v1/swap') ?? 0, swaps, 'no second swap');
});

test('P2PK mode refuses a mint that does not enforce locks (NUT-11)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cashu-accept-p2pk-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  t.after(() => mint.close());
  const key = Buffer.from(createRandomSecretKey()).toString('hex');
  const accept = acceptor(t, { mints: [mint.url], mode: 'p2pk', p2pk: { private_key: key } }, { nuts: { 7: true, 11: false, 12: true } });
  const { wallet, proofs } = await mint.fundedWallet(16);
  const { send } = await wallet.ops.send(8, proofs).run();
  refused(await accept(tok(mint.url, send), 8000, { routeId: '/r' }), 400, /does not enforce P2PK/);
});
