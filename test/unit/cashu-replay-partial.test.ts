// A token refused because one of its proofs was paid elsewhere leaves its other proofs payable: a refusal says
// nothing about them, so no process may take them for spent (P2PK mode, two gates on one store, as two l402d
// on one Redis; the claim of the shared proof is what refuses the second token).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRandomSecretKey, getEncodedToken, getPubKeyFromPrivKey, type Proof } from '@cashu/cashu-ts';
import { CashuMintPeer } from '../peers/cashu-mint.js';
import { cashuConfigSchema, createCashuRail } from '../../src/rails/cashu/index.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { createLogger } from '../../src/util/log.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('P2PK: a token refused for a proof another gate was paid with leaves its own proofs payable on that gate', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cashu-partial-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  t.after(() => mint.close());
  const priv = hex(createRandomSecretKey());
  const pub = hex(getPubKeyFromPrivKey(Buffer.from(priv, 'hex')));
  const store = new MemoryStore();
  const cfg = cashuConfigSchema.parse({ mode: 'p2pk', mints: [mint.url], p2pk: { private_key: priv } });
  const log = createLogger('silent');
  const [g1, g2] = [await createCashuRail(cfg, { store, dataDir: join(dir, 'g1'), log }), await createCashuRail(cfg, { store, dataDir: join(dir, 'g2'), log })];
  t.after(() => g1.close());
  t.after(() => g2.close());
  const locked = async () => {
    const { wallet, proofs } = await mint.fundedWallet(18);
    const { send } = await wallet.ops.send(10, proofs).asP2PK({ pubkey: pub }).run();
    const of = (n: number) => send.find((p) => p.amount.toNumber() === n)!;
    return { eight: of(8), two: of(2) };
  };
  const enc = (proofs: Proof[]) => getEncodedToken({ mint: mint.url, unit: 'sat', proofs });
  const [x, y, z] = [await locked(), await locked(), await locked()];

  assert.equal((await g1.accept(enc([x.eight, x.two]), 10_000, { routeId: 'r' })).ok, true);
  // Shares x's 8 sat proof, paid on the other gate: refused, and its 2 sat proof is not spent by that.
  const shared = await g2.accept(enc([x.eight, y.two]), 10_000, { routeId: 'r' });
  assert.deepEqual([shared.ok, (shared as { reason?: string }).reason], [false, 'token already spent']);
  const later = await g2.accept(enc([y.two, z.eight]), 10_000, { routeId: 'r' });
  assert.equal(later.ok, true, JSON.stringify(later));
  // Both gates know the paid proofs for what they are.
  for (const g of [g1, g2]) for (const proofs of [[x.eight, z.two], [y.two, x.two, z.eight]]) assert.equal((await g.accept(enc(proofs), 10_000, { routeId: 'r' })).ok, false);
  assert.equal((await g1.accept(enc([z.two, z.eight].slice(0, 2)), 10_000, { routeId: 'r' })).ok, false, 'z.eight was paid with y.two');
});
