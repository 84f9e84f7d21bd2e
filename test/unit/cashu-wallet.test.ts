// The gate's Cashu wallet on disk: BIP-39 seed generated once (0600) or given by config, the fingerprint
// that refuses a mismatched database, refusal of foreign databases and loose permissions, NUT-13
// deterministic outputs that a fresh cashu-ts wallet restores from the mnemonic (NUT-09), and counters
// that survive a restart (a reused counter would make the mint refuse the outputs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Wallet, getEncodedToken } from '@cashu/cashu-ts';
import { CashuMintPeer } from '../peers/cashu-mint.js';
import { cashuConfigSchema, createCashuRail } from '../../src/rails/cashu/index.js';
import { generateMnemonic, mnemonicProblem, mnemonicToSeed, seedFingerprint } from '../../src/rails/cashu/bip39.js';
import { WalletDb } from '../../src/rails/cashu/wallet-db.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { createLogger } from '../../src/util/log.js';

type T = { after: (fn: () => unknown) => void };
const log = createLogger('silent');

function tmp(t: T): string {
  const dir = mkdtempSync(join(tmpdir(), 'cashu-wallet-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// No mint runs here: a closed loopback port refuses at once (the rail warns and carries on).
const open = (dataDir: string, raw: Record<string, unknown> = {}) =>
  createCashuRail(cashuConfigSchema.parse({ mints: ['http://127.0.0.1:9'], ...raw }), { store: new MemoryStore(), dataDir, log });

test('first start generates a 12-word mnemonic (0600) and a fingerprint; later starts reuse them', async (t) => {
  const dir = tmp(t);
  const r1 = await open(dir);
  const file = join(dir, 'cashu', 'wallet.mnemonic');
  const mnemonic = readFileSync(file, 'utf8').trim();
  assert.equal(mnemonic.split(' ').length, 12);
  assert.equal(mnemonicProblem(mnemonic), undefined);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'cashu')).mode & 0o777, 0o700);
  // The database and its WAL hold proof secrets (bearer money).
  for (const f of ['wallet.db', 'wallet.db-wal', 'wallet.db-shm']) assert.equal(statSync(join(dir, 'cashu', f)).mode & 0o777, 0o600, f);
  const fp = readFileSync(join(dir, 'cashu', 'wallet.fingerprint'), 'utf8').trim();
  assert.equal(fp, seedFingerprint(mnemonicToSeed(mnemonic)));
  assert.ok(r1.describe().includes(fp));
  assert.ok(!r1.describe().includes(mnemonic), 'describe() never shows the mnemonic');
  await r1.close();
  const r2 = await open(dir);
  assert.ok(r2.describe().includes(fp));
  assert.equal(readFileSync(file, 'utf8').trim(), mnemonic);
  await r2.close();
});

test('a configured mnemonic (env) is used and not written to disk; a different one is refused for the same wallet', async (t) => {
  const dir = tmp(t);
  const m1 = generateMnemonic();
  const r1 = await open(dir, { mnemonic: m1 });
  assert.ok(!existsSync(join(dir, 'cashu', 'wallet.mnemonic')));
  assert.ok(r1.describe().includes(seedFingerprint(mnemonicToSeed(m1))));
  await r1.close();
  const m2 = generateMnemonic();
  await assert.rejects(open(dir, { mnemonic: m2 }), (err: Error) => {
    assert.match(err.message, /does not match .* refusing to start/);
    assert.ok(!err.message.includes(m2.split(' ').slice(0, 3).join(' ')), 'no mnemonic words in the error');
    return true;
  });
  // Even without the fingerprint file, the database itself knows its seed.
  rmSync(join(dir, 'cashu', 'wallet.fingerprint'));
  await assert.rejects(open(dir, { mnemonic: m2 }), /belongs to seed .* refusing to start/);
  const again = await open(dir, { mnemonic: m1 });
  await again.close();
});

test('loose permissions, invalid mnemonic files and foreign databases are refused', async (t) => {
  const dir = tmp(t);
  const loose = join(dir, 'loose');
  mkdirSync(join(loose, 'cashu'), { recursive: true });
  writeFileSync(join(loose, 'cashu', 'wallet.mnemonic'), generateMnemonic() + '\n', { mode: 0o644 });
  chmodSync(join(loose, 'cashu', 'wallet.mnemonic'), 0o644);
  await assert.rejects(open(loose), /readable by other users; run: chmod 600/);

  const bad = join(dir, 'bad');
  mkdirSync(join(bad, 'cashu'), { recursive: true });
  writeFileSync(join(bad, 'cashu', 'wallet.mnemonic'), 'correct horse battery staple\n', { mode: 0o600 });
  await assert.rejects(open(bad), (err: Error) => /is invalid: a BIP-39 mnemonic has 12/.test(err.message) && !err.message.includes('horse'));

  const foreign = join(dir, 'foreign.db');
  const db = new Database(foreign);
  db.exec('CREATE TABLE proof (y BLOB PRIMARY KEY, mint_url TEXT)');
  db.close();
  await assert.rejects(open(join(dir, 'x'), { db_path: foreign }), /not an l402-nginx Cashu wallet database/);
});

test('NUT-13: swapped proofs are deterministic from the seed; a cashu-ts wallet restores them (NUT-09); counters survive restart', async (t) => {
  const dir = tmp(t);
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  t.after(() => mint.close());
  const dataDir = join(dir, 'gate');
  const pay = async (amount: number) => {
    const { wallet, proofs } = await mint.fundedWallet(amount + 8);
    const { send } = await wallet.ops.send(amount, proofs).run();
    return getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send });
  };
  const r1 = await open(dataDir, { mints: [mint.url] });
  assert.equal((await r1.accept(await pay(11), 11_000, { routeId: 'x' })).ok, true);
  await r1.close();
  // A restart: if counters restarted at 0, the mint would refuse the outputs as already signed.
  const r2 = await open(dataDir, { mints: [mint.url] });
  assert.equal((await r2.accept(await pay(6), 6000, { routeId: 'x' })).ok, true);
  await r2.close();

  const db = new WalletDb(join(dataDir, 'cashu', 'wallet.db'));
  const stored = db.unspent(mint.url, 'sat');
  db.close();
  assert.equal(stored.reduce((s, p) => s + p.amount, 0), 17);
  const mnemonic = readFileSync(join(dataDir, 'cashu', 'wallet.mnemonic'), 'utf8').trim();
  const restorer = new Wallet(mint.url, { unit: 'sat', bip39seed: mnemonicToSeed(mnemonic) });
  await restorer.loadMint();
  const { proofs } = await restorer.batchRestore();
  const restored = new Set(proofs.map((p) => p.secret));
  for (const p of stored) assert.ok(restored.has(p.secret), 'every stored proof is recoverable from the mnemonic');
});
