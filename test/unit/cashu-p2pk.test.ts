// The Cashu rail in P2PK mode against the mint peer, paid by real cashu-ts wallets: exact price, rounding,
// underpayment, unit, mint whitelist, forged proofs, DLEQ, locks (other key, extra signers, locktime and
// refund, SIG_ALL), input fees, NUT-07, replays (same token, re-encoded, subset), concurrent double spends
// (same process, two store connections, two OS processes, Redis), restart persistence, offline mint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Amount,
  blindMessage,
  createBlindSignature,
  createDLEQProof,
  createP2PKsecret,
  createRandomSecretKey,
  getEncodedToken,
  getPubKeyFromPrivKey,
  pointFromHex,
  unblindSignature,
  type P2PKOptions,
  type Proof,
} from '@cashu/cashu-ts';
import { CashuMintPeer, type MintPeerOptions } from '../peers/cashu-mint.js';
import { cashuConfigSchema, createCashuRail, type CashuRail } from '../../src/rails/cashu/index.js';
import { hashToCurve } from '../../src/rails/cashu/secp256k1.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { RedisStore } from '../../src/store/redis-store.js';
import type { Store } from '../../src/store/store.js';
import { createLogger } from '../../src/util/log.js';
import { requireTool, startRedis } from '../integration/harness.js';

type T = { after: (fn: () => unknown) => void };
const log = createLogger('silent');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const newKey = () => {
  const priv = hex(createRandomSecretKey());
  return { priv, pub: hex(getPubKeyFromPrivKey(Buffer.from(priv, 'hex'))) };
};
const nowSecs = () => Math.floor(Date.now() / 1000);

interface Env {
  dir: string;
  mint: CashuMintPeer;
  gate: { priv: string; pub: string };
}

async function env(t: T, mintOpts: Partial<MintPeerOptions> = {}): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), 'cashu-p2pk-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint'), ...mintOpts });
  t.after(() => mint.close());
  return { dir, mint, gate: newKey() };
}

async function rail(t: T, e: Env, over: Record<string, unknown> = {}, opts: { store?: Store; dataDir?: string; log?: typeof log } = {}): Promise<CashuRail> {
  const cfg = cashuConfigSchema.parse({ mode: 'p2pk', mints: [e.mint.url], ...over, p2pk: { private_key: e.gate.priv, ...(over.p2pk as object) } });
  const store = opts.store ?? new MemoryStore();
  const r = await createCashuRail(cfg, { store, dataDir: opts.dataDir ?? join(e.dir, 'gate'), log: opts.log ?? log });
  t.after(() => r.close());
  return r;
}

/** A P2PK-locked token from a freshly funded cashu-ts wallet. */
async function locked(mint: CashuMintPeer, amount: number, pubkey: string, p2pk: Partial<P2PKOptions> = {}, o: { fees?: boolean } = {}) {
  const { wallet, proofs } = await mint.fundedWallet(amount + 16);
  const b = wallet.ops.send(amount, proofs).asP2PK({ pubkey, ...p2pk });
  if (o.fees) b.includeFees(true);
  let res; try { res = await b.run(); } catch (err) { throw new Error(`send ${amount} from ${proofs.map((p) => p.amount.toString())}: ${(err as Error).message}`); }
  const { send, keep } = res;
  return { token: getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send }), send, keep, wallet };
}

/** The V3 (cashuA, JSON) encoding of the same proofs: a different string for the same money. */
function cashuA(mint: string, proofs: Proof[]): string {
  const json = { token: [{ mint, proofs: proofs.map((p) => ({ id: p.id, amount: p.amount.toNumber(), secret: p.secret, C: p.C, ...(p.dleq ? { dleq: p.dleq } : {}) })) }], unit: 'sat' };
  return 'cashuA' + Buffer.from(JSON.stringify(json)).toString('base64url');
}

const is400 = (r: Awaited<ReturnType<CashuRail['accept']>>, re: RegExp) => {
  assert.equal(r.ok, false, `expected a rejection matching ${re}, got ${JSON.stringify(r)}`);
  assert.equal((r as { status: number }).status, 400, JSON.stringify(r));
  assert.match((r as { reason: string }).reason, re);
};

test('exact price accepted once; replays (same string, cashuA re-encoding, subset) refused; proofs stored with tenant', async (t) => {
  const e = await env(t);
  let logs = '';
  const capture = createLogger('debug', new Writable({ write: (c: Buffer, _e, cb) => ((logs += c.toString()), cb()) }));
  const r = await rail(t, e, {}, { log: capture });
  assert.equal(r.mode, 'p2pk');
  const { token, send } = await locked(e.mint, 21, e.gate.pub);
  const ok = await r.accept(token, 21_000, { routeId: 'api', tenant: 'alice@example.com' });
  assert.deepEqual(ok, { ok: true, amountMsat: 21_000, mint: e.mint.url, proofs: send.length });
  is400(await r.accept(token, 21_000, { routeId: 'api' }), /already spent/);
  is400(await r.accept(cashuA(e.mint.url, send), 21_000, { routeId: 'api' }), /already spent/);
  const small = send.find((p) => p.amount.toNumber() === 1)!;
  is400(await r.accept(getEncodedToken({ mint: e.mint.url, unit: 'sat', proofs: [small] }), 1000, { routeId: 'api' }), /already spent/);
  const bal = r.balances();
  assert.deepEqual(bal, [{ mint: e.mint.url, unit: 'sat', tenant: 'alice@example.com', state: 'unspent', amount: 21, count: send.length }]);
  // Proofs stay unswapped: the mint still reports them unspent (they are ours to melt later).
  const st = e.mint.checkState({ Ys: send.map((p) => hashToCurve(p.secret).hex) });
  assert.ok(st.states.every((s) => s.state === 'UNSPENT'));
  // Logs: no startup warning for a reachable mint, and never a token, the P2PK key or the mnemonic.
  assert.doesNotMatch(logs, /not reachable/);
  assert.match(logs, /P2PK token accepted/);
  const mnemonic = readFileSync(join(e.dir, 'gate', 'cashu', 'wallet.mnemonic'), 'utf8').trim();
  for (const secret of [token.slice(0, 40), e.gate.priv, mnemonic, send[0]!.secret]) assert.ok(!logs.includes(secret));
});

test('NUT-18 challenge: amount rounded up, accepted mints, P2PK lock; a wallet paying it exactly is accepted', async (t) => {
  const e = await env(t);
  const r = await rail(t, e);
  const { decodePaymentRequest } = await import('@cashu/cashu-ts');
  const pr = decodePaymentRequest(r.paymentRequest(1500));
  assert.equal(pr.amount?.toNumber(), 2);
  assert.deepEqual(pr.mints, [e.mint.url]);
  assert.equal(pr.nut10?.data, e.gate.pub);
  // Pay what the request says, the way a NUT-18 wallet does.
  const opts = pr.toP2PKOptions()!;
  const { token } = await locked(e.mint, pr.amount!.toNumber(), opts.pubkey as string);
  assert.equal((await r.accept(token, 1500, { routeId: 'x' })).ok, true);
  is400(await r.accept((await locked(e.mint, 1, e.gate.pub)).token, 1500, { routeId: 'x' }), /worth 1 sat; the price is 2 sat/);
});

test('underpayment, wrong unit, wrong mint and proofs from another mint are 400s', async (t) => {
  const e = await env(t);
  const other = await CashuMintPeer.start({ dataDir: join(e.dir, 'other-mint') });
  t.after(() => other.close());
  const r = await rail(t, e);
  is400(await r.accept((await locked(e.mint, 20, e.gate.pub)).token, 21_000, { routeId: 'x' }), /worth 20 sat; the price is 21 sat/);
  const { send } = await locked(e.mint, 8, e.gate.pub);
  is400(await r.accept(getEncodedToken({ mint: e.mint.url, unit: 'usd', proofs: send }), 8000, { routeId: 'x' }), /unit is usd; this gate takes sat/);
  const foreign = await locked(other, 8, e.gate.pub);
  is400(await r.accept(foreign.token, 8000, { routeId: 'x' }), /is not accepted here/);
  // The other mint's proofs relabelled as ours: its keyset id is not one of our mint's keysets.
  is400(await r.accept(cashuA(e.mint.url, foreign.send), 8000, { routeId: 'x' }), /not a keyset of this mint|cannot be decoded/);
  is400(await r.accept('cashuBgarbage', 1000, { routeId: 'x' }), /cannot be decoded/);
  // A cashuA token's JSON can carry any type as its unit: still the payer's mistake, a 400.
  for (const u of [5, { x: 1 }, ['sat']]) {
    const odd = 'cashuA' + Buffer.from(JSON.stringify({ token: [{ mint: e.mint.url, proofs: [{ id: '00ad268c4d1f5826', amount: 8, secret: 's', C: '02' + 'ab'.repeat(32) }] }], unit: u })).toString('base64url');
    is400(await r.accept(odd, 8000, { routeId: 'x' }), /token unit is malformed/);
  }
  // None of these consumed anything: the genuine proofs still pay.
  assert.equal((await r.accept(getEncodedToken({ mint: e.mint.url, unit: 'sat', proofs: send }), 8000, { routeId: 'x' })).ok, true);
});

test('forged proofs fail the DLEQ check: tampered C, and signatures by a key that is not the mint', async (t) => {
  const e = await env(t);
  const r = await rail(t, e);
  const { send } = await locked(e.mint, 8, e.gate.pub);
  const tampered = send.map((p, i) => (i === 0 ? { ...p, C: hashToCurve('x' + p.secret).hex } : p));
  is400(await r.accept(getEncodedToken({ mint: e.mint.url, unit: 'sat', proofs: tampered }), 8000, { routeId: 'x' }), /DLEQ proof does not verify/);

  // A forger with their own keys signs P2PK proofs, labels them with the mint's keyset, adds a DLEQ.
  const { createNewMintKeys } = await import('@cashu/cashu-ts');
  const fake = createNewMintKeys(8);
  const ks = e.mint.activeKeyset();
  const forged: Proof[] = [8].map((amount) => {
    const secret = createP2PKsecret(e.gate.pub);
    const bm = blindMessage(new TextEncoder().encode(secret));
    const priv = fake.privKeys[amount]!;
    const C = unblindSignature(createBlindSignature(bm.B_, priv, ks.id).C_, bm.r, pointFromHex(hex(fake.pubKeys[amount]!)));
    const d = createDLEQProof(bm.B_, priv);
    return { id: ks.id, amount: Amount.from(amount), secret, C: C.toHex(true), dleq: { e: hex(d.e), s: hex(d.s), r: bm.r.toString(16).padStart(64, '0') } };
  });
  is400(await r.accept(getEncodedToken({ mint: e.mint.url, unit: 'sat', proofs: forged }), 8000, { routeId: 'x' }), /DLEQ proof does not verify/);
  // The mint agrees they are worthless.
  assert.throws(() => e.mint.swap({ inputs: forged.map((p) => ({ ...p, amount: p.amount.toNumber() })), outputs: [] }), /could not be verified/);
  // The genuine token was not burnt by the forgery attempt that reused its other proofs.
  assert.equal((await r.accept(getEncodedToken({ mint: e.mint.url, unit: 'sat', proofs: send }), 8000, { routeId: 'x' })).ok, true);
});

test('DLEQ is required by default; with require_dleq: false a token without one is swapped at the mint, so forgeries still fail', async (t) => {
  const e = await env(t);
  const strict = await rail(t, e);
  const { send } = await locked(e.mint, 5, e.gate.pub);
  const bare = getEncodedToken({ mint: e.mint.url, unit: 'sat', proofs: send }, { removeDleq: true });
  is400(await strict.accept(bare, 5000, { routeId: 'x' }), /no DLEQ proof/);
  const lax = await rail(t, e, { p2pk: { require_dleq: false } }, { dataDir: join(e.dir, 'lax') });
  assert.equal((await lax.accept(bare, 5000, { routeId: 'x' })).ok, true);
  // Swapped (signed with our key for the mint), not stored as received: the payer's proofs are spent.
  assert.ok(e.mint.checkState({ Ys: send.map((p) => hashToCurve(p.secret).hex) }).states.every((st) => st.state === 'SPENT'));
  assert.equal(lax.balances().reduce((a, b) => a + b.amount, 0), 5);
  // Made-up signatures without a DLEQ look as good as real ones locally: the mint refuses them.
  const fake = send.map((p) => ({ ...p, secret: createP2PKsecret(e.gate.pub), C: hashToCurve('fake' + p.secret).hex, dleq: undefined }));
  is400(await lax.accept(getEncodedToken({ mint: e.mint.url, unit: 'sat', proofs: fake }), 5000, { routeId: 'x' }), /mint refused/);
  assert.equal(lax.balances().reduce((a, b) => a + b.amount, 0), 5);
  // A present DLEQ is still verified (NUT-12), even when not required.
  const { send: s2 } = await locked(e.mint, 5, e.gate.pub);
  const broken = s2.map((p) => ({ ...p, dleq: { ...p.dleq!, s: p.dleq!.e } }));
  is400(await lax.accept(getEncodedToken({ mint: e.mint.url, unit: 'sat', proofs: broken }), 5000, { routeId: 'x' }), /DLEQ proof does not verify/);
});

test('locks: another key, plain proofs, extra signers, SIG_ALL, locktime and refund paths', async (t) => {
  const e = await env(t);
  const r = await rail(t, e);
  const someone = newKey();
  const sender = newKey();
  is400(await r.accept((await locked(e.mint, 4, someone.pub)).token, 4000, { routeId: 'x' }), /locked to another key/);
  const { wallet, proofs } = await e.mint.fundedWallet(8);
  is400(await r.accept(getEncodedToken({ mint: e.mint.url, unit: 'sat', proofs }), 4000, { routeId: 'x' }), /not locked to this gate/);
  void wallet;
  is400(await r.accept((await locked(e.mint, 4, e.gate.pub, { pubkey: [e.gate.pub, someone.pub], requiredSignatures: 1 })).token, 4000, { routeId: 'x' }), /additional signers/);
  is400(await r.accept((await locked(e.mint, 4, e.gate.pub, { sigFlag: 'SIG_ALL' })).token, 4000, { routeId: 'x' }), /SIG_INPUTS/);
  // Locktime soon (< min_locktime_secs = 1 day) with a refund key: the sender could take it back.
  is400(await r.accept((await locked(e.mint, 4, e.gate.pub, { locktime: nowSecs() + 600, refundKeys: [sender.pub] })).token, 4000, { routeId: 'x' }), /too soon/);
  // Far enough: accepted, and swapped at the mint at once, so the sender's refund path is gone for good.
  const far = await locked(e.mint, 4, e.gate.pub, { locktime: nowSecs() + 3 * 86400, refundKeys: [sender.pub] });
  const swapsBefore = e.mint.knobs.requests.get('/v1/swap') ?? 0;
  assert.equal((await r.accept(far.token, 4000, { routeId: 'x' })).ok, true);
  assert.equal(e.mint.knobs.requests.get('/v1/swap'), swapsBefore + 1);
  assert.ok(e.mint.checkState({ Ys: far.send.map((p) => hashToCurve(p.secret).hex) }).states.every((st) => st.state === 'SPENT'));
  await assert.rejects(far.wallet.ops.receive(far.token).privkey(sender.priv).run(), /spent/i, 'the sender cannot take it back');
  // Plain locks (no locktime) are still stored as received: no mint call.
  const plain = await locked(e.mint, 4, e.gate.pub);
  const swapsNow = e.mint.knobs.requests.get('/v1/swap');
  assert.equal((await r.accept(plain.token, 4000, { routeId: 'x' })).ok, true);
  assert.equal(e.mint.knobs.requests.get('/v1/swap'), swapsNow);

  // Expired locktime with a refund key: refused, and rightly so, since the sender can spend it at the mint.
  const expired = await locked(e.mint, 4, e.gate.pub, { locktime: nowSecs() - 10, refundKeys: [sender.pub] });
  is400(await r.accept(expired.token, 4000, { routeId: 'x' }), /refund keys can spend/);
  const reclaimed = await expired.wallet.ops.receive(expired.token).privkey(sender.priv).run();
  assert.equal(reclaimed.reduce((s, p) => s + p.amount.toNumber(), 0), 4, 'the sender reclaimed it via the refund path');
  // Expired locktime without refund keys: anyone can spend it.
  const open = await locked(e.mint, 4, e.gate.pub, { locktime: nowSecs() - 10 });
  is400(await r.accept(open.token, 4000, { routeId: 'x' }), /anyone can spend/);
});

test("input fees (NUT-02): the token must cover price plus the mint's input fee", async (t) => {
  const e = await env(t, { inputFeePpk: 600 });
  const r = await rail(t, e);
  const withFees = await locked(e.mint, 8, e.gate.pub, {}, { fees: true });
  // The same send without the proofs that carry the fee: face value 8, worth 7 after the input fee.
  const faceOnly = withFees.send.filter((p) => p.amount.toNumber() === 8);
  assert.equal(faceOnly.length, 1);
  is400(await r.accept(getEncodedToken({ mint: e.mint.url, unit: 'sat', proofs: faceOnly }), 8000, { routeId: 'x' }), /worth 8 sat minus the mint's input fee of 1 sat \(NUT-02\); the price is 8 sat/);
  const got = await r.accept(withFees.token, 8000, { routeId: 'x' });
  assert.equal(got.ok, true, JSON.stringify(got));
  assert.ok(got.ok && got.amountMsat >= 8000);
});

test('NUT-07 check_state: proofs spent at the mint are refused; an unreachable mint is a 503', async (t) => {
  const e = await env(t);
  const r = await rail(t, e, { p2pk: { check_state: true } });
  const a = await locked(e.mint, 4, e.gate.pub);
  for (const p of a.send) e.mint.spent.add(hashToCurve(p.secret).hex);
  is400(await r.accept(a.token, 4000, { routeId: 'x' }), /mint reports it spent/);
  const b = await locked(e.mint, 4, e.gate.pub);
  e.mint.knobs.broken = true;
  const res = await r.accept(b.token, 4000, { routeId: 'x' });
  assert.equal(res.ok, false);
  assert.equal((res as { status: number }).status, 503);
  e.mint.knobs.broken = false;
  assert.equal((await r.accept(b.token, 4000, { routeId: 'x' })).ok, true, 'a 503 does not consume the token');
});

test('a mint that does not enforce NUT-11 is refused in P2PK mode', async (t) => {
  const e = await env(t, { p2pk: false });
  const r = await rail(t, e);
  is400(await r.accept((await locked(e.mint, 4, e.gate.pub)).token, 4000, { routeId: 'x' }), /does not enforce P2PK/);
});

test('two concurrent verifications of one token: exactly one passes (same rail; two store connections)', async (t) => {
  const e = await env(t);
  const r = await rail(t, e);
  for (let i = 0; i < 3; i++) {
    const { token } = await locked(e.mint, 3, e.gate.pub);
    const res = await Promise.all([r.accept(token, 3000, { routeId: 'x' }), r.accept(token, 3000, { routeId: 'x' })]);
    assert.equal(res.filter((x) => x.ok).length, 1, JSON.stringify(res));
  }
  // Two gate instances (as two processes on one host) sharing the SQLite store file.
  const path = join(e.dir, 'shared.db');
  const s1 = new SqliteStore(path);
  const s2 = new SqliteStore(path);
  t.after(() => s1.close());
  t.after(() => s2.close());
  const r1 = await rail(t, e, {}, { store: s1, dataDir: join(e.dir, 'g1') });
  const r2 = await rail(t, e, {}, { store: s2, dataDir: join(e.dir, 'g2') });
  for (let i = 0; i < 3; i++) {
    const { token } = await locked(e.mint, 3, e.gate.pub);
    const res = await Promise.all([r1.accept(token, 3000, { routeId: 'x' }), r2.accept(token, 3000, { routeId: 'x' })]);
    assert.equal(res.filter((x) => x.ok).length, 1, JSON.stringify(res));
  }
});

test('two OS processes racing one token over the SQLite store: exactly one passes', async (t) => {
  const e = await env(t);
  const storePath = join(e.dir, 'store.db');
  const store = new SqliteStore(storePath);
  t.after(() => store.close());
  const r = await rail(t, e, {}, { store, dataDir: join(e.dir, 'parent') });
  const { token } = await locked(e.mint, 6, e.gate.pub);
  const mod = (p: string) => new URL(p, import.meta.url).href;
  const code = `
    const c = JSON.parse(process.env.CASHU_CHILD);
    const { createCashuRail, cashuConfigSchema } = await import(c.rail);
    const { SqliteStore } = await import(c.storeMod);
    const { createLogger } = await import(c.logMod);
    const store = new SqliteStore(c.storePath);
    const rail = await createCashuRail(cashuConfigSchema.parse(c.cfg), { store, dataDir: c.dataDir, log: createLogger('silent') });
    process.stdout.write('ready\\n');
    process.stdin.once('data', async () => {
      const r = await rail.accept(c.token, 6000, { routeId: 'child' });
      process.stdout.write(JSON.stringify(r) + '\\n');
      await rail.close(); await store.close(); process.exit(0);
    });`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    env: {
      ...process.env,
      CASHU_CHILD: JSON.stringify({
        rail: mod('../../src/rails/cashu/index.ts'),
        storeMod: mod('../../src/store/sqlite-store.ts'),
        logMod: mod('../../src/util/log.ts'),
        storePath,
        dataDir: join(e.dir, 'child'),
        token,
        cfg: { mode: 'p2pk', mints: [e.mint.url], p2pk: { private_key: e.gate.priv } },
      }),
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const waitFor = (re: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`child: no ${re} within 15 s; stderr: ${err.slice(-2000)}`)), 15_000);
      const check = () => {
        if (re.test(out)) {
          clearTimeout(timer);
          resolve();
        } else if (child.exitCode !== null) {
          clearTimeout(timer);
          reject(new Error(`child exited ${child.exitCode}: ${err.slice(-2000)}`));
        } else setTimeout(check, 10);
      };
      check();
    });
  await waitFor(/ready/);
  child.stdin.write('go\n');
  const mine = await r.accept(token, 6000, { routeId: 'parent' });
  await waitFor(/\{.*\}\n/);
  const theirs = JSON.parse(out.split('\n').find((l) => l.startsWith('{'))!) as { ok: boolean };
  assert.equal([mine.ok, theirs.ok].filter(Boolean).length, 1, `parent ${JSON.stringify(mine)} child ${JSON.stringify(theirs)}`);
});

test('double spend across two gates sharing Redis: exactly one passes', async (t) => {
  const bin = requireTool('redis-server');
  if (!bin) return t.skip('redis-server not installed');
  const e = await env(t);
  const redis = await startRedis({ bin });
  t.after(() => redis.stop());
  const s1 = new RedisStore(redis.url, 'l402:', 1000);
  const s2 = new RedisStore(redis.url, 'l402:', 1000);
  t.after(() => s1.close());
  t.after(() => s2.close());
  await s1.ping();
  const r1 = await rail(t, e, {}, { store: s1, dataDir: join(e.dir, 'h1') });
  const r2 = await rail(t, e, {}, { store: s2, dataDir: join(e.dir, 'h2') });
  for (let i = 0; i < 3; i++) {
    const { token } = await locked(e.mint, 3, e.gate.pub);
    const res = await Promise.all([r1.accept(token, 3000, { routeId: 'x' }), r2.accept(token, 3000, { routeId: 'x' })]);
    assert.equal(res.filter((x) => x.ok).length, 1, JSON.stringify(res));
  }
  // Redis down: fail closed with 503, not an acceptance.
  const { token } = await locked(e.mint, 3, e.gate.pub);
  await redis.kill();
  const down = await r1.accept(token, 3000, { routeId: 'x' });
  assert.deepEqual([down.ok, (down as { status: number }).status], [false, 503]);
});

test('restart: claims, proofs and the wallet seed persist; keys cached on disk keep P2PK working with the mint down', async (t) => {
  const e = await env(t);
  const storePath = join(e.dir, 'store.db');
  const dataDir = join(e.dir, 'gate');
  const { token, send } = await locked(e.mint, 7, e.gate.pub);
  const later = await locked(e.mint, 7, e.gate.pub);
  {
    const store = new SqliteStore(storePath);
    const r = await rail(t, e, {}, { store, dataDir });
    assert.equal((await r.accept(token, 7000, { routeId: 'x' })).ok, true);
    await r.close();
    await store.close();
  }
  const mnemonic = join(dataDir, 'cashu', 'wallet.mnemonic');
  assert.equal(statSync(mnemonic).mode & 0o777, 0o600);
  assert.equal(statSync(join(dataDir, 'cashu', 'wallet.db')).mode & 0o777, 0o600);
  await e.mint.close(); // the mint is gone for the rest of the test
  const store = new SqliteStore(storePath);
  t.after(() => store.close());
  const r = await rail(t, e, {}, { store, dataDir });
  is400(await r.accept(token, 7000, { routeId: 'x' }), /already spent/);
  assert.equal(r.balances()[0]?.amount, send.reduce((s, p) => s + p.amount.toNumber(), 0));
  const res = await r.accept(later.token, 7000, { routeId: 'x' });
  assert.equal(res.ok, true, `offline P2PK acceptance: ${JSON.stringify(res)}`);
});

test('P2PK mode keeps proofs to melt later: a keyset expiring within min_locktime_secs is refused', async () => {
  const { checkTokenProofs } = await import('../../src/rails/cashu/verify.js');
  const key = hex(getPubKeyFromPrivKey(createRandomSecretKey()));
  const now = nowSecs();
  const keysets = (finalExpiry?: number) => new Map([['00aa', { id: '00aa', unit: 'sat', active: true, inputFeePpk: 0, finalExpiry, keys: { '8': key } }]]);
  const proofs = [{ id: '00aa', amount: Amount.from(8), secret: 'one', C: key }] as Proof[];
  const opts = { unit: 'sat', priceUnits: 8, maxProofs: 8, nowSecs: now, keysetMarginSecs: 3600 };
  assert.equal(checkTokenProofs(proofs, keysets(undefined), opts).total, 8);
  assert.equal(checkTokenProofs(proofs, keysets(now + 7200), opts).total, 8);
  assert.throws(() => checkTokenProofs(proofs, keysets(now + 600), opts), /expires too soon/);
  assert.throws(() => checkTokenProofs(proofs, keysets(now - 1), opts), /has expired/);
  // Standard mode swaps at once: no margin.
  assert.equal(checkTokenProofs(proofs, keysets(now + 600), { ...opts, keysetMarginSecs: 0 }).total, 8);
});

test('a claim that lands after the decision deadline is released: the payer had a 503, the token stays usable', async (t) => {
  const e = await env(t);
  // A store whose last claim of the token lands only after the request's deadline has passed.
  const ctl = new AbortController();
  let claimsLeft = Infinity;
  class LateClaims extends MemoryStore {
    override async claimOnce(k: string, ttl?: number, v?: string) {
      const r = await super.claimOnce(k, ttl, v);
      if (--claimsLeft === 0) ctl.abort();
      return r;
    }
  }
  const store = new LateClaims();
  const r = await rail(t, e, {}, { store });
  const { token, send } = await locked(e.mint, 21, e.gate.pub);
  claimsLeft = send.length;
  const late = await r.accept(token, 21_000, { routeId: 'api' }, ctl.signal);
  assert.equal(late.ok, false, JSON.stringify(late));
  assert.equal((late as { status: number }).status, 503);
  assert.deepEqual(r.balances(), [], 'nothing kept');
  // The released claims let the payer's retry through, once.
  const retry = await r.accept(token, 21_000, { routeId: 'api' });
  assert.equal(retry.ok, true, JSON.stringify(retry));
  is400(await r.accept(token, 21_000, { routeId: 'api' }), /already spent/);
});
