// Red team round 10b: the payment proofs other than L402 attacked end to end through real nginx. Cashu in
// standard mode against a mint that charges an input fee (NUT-02) and has keysets the gate must not take
// (another unit, unknown ids, amounts without a key), tokens re-encoded (V3 vs V4) or carried twice (X-Cashu
// and Authorization: Cashu); P2PK mode with two l402d on one Redis, where nothing but the shared claims stops
// a proof paying twice (the mint is never asked). Each case: never a pass it did not pay for, never a 5xx.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createRandomSecretKey, getEncodedToken, getPubKeyFromPrivKey, type Proof } from '@cashu/cashu-ts';
import { Cleanup, http1, requireTool, startCountingUpstream, startRedis } from './harness.js';
import { ROUTES_YAML, startStack, TEST_ROOT_KEY, type Stack } from './gate-fixture.js';
import { twoGatesBehindNginx } from './gate-process.js';
import { CashuMintPeer } from '../peers/cashu-mint.js';
import { hashToCurve } from '../../src/rails/cashu/secp256k1.js';

const skip = requireTool('nginx') ? false : 'nginx not installed';
const skipRedis = skip || (requireTool('redis-server') ? false : 'redis-server not installed');
const cleanup = new Cleanup();
after(() => cleanup.run());
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** A V3 (cashuA) token: JSON, base64url; the encoding older wallets and ngx_l402's clients still send. */
function v3(mint: string, proofs: Array<Record<string, unknown>>, unit = 'sat'): string {
  return 'cashuA' + Buffer.from(JSON.stringify({ token: [{ mint, proofs }], unit })).toString('base64url');
}
/** A proof as plain JSON (amount a number), as a V3 token carries it. */
const plain = (p: Proof): Record<string, unknown> => ({ id: p.id, amount: Number(String(p.amount)), secret: p.secret, C: p.C, ...(p.dleq ? { dleq: p.dleq } : {}) });
const amountOf = (p: Proof) => Number(String(p.amount));

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'l402-redteam-s10b-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
});

test('standard mode, a mint with an input fee and a usd keyset: the fee, duplicates, foreign keysets, keyless amounts, re-encodings and a second carrier never pay', { skip, timeout: 180_000 }, async () => {
  const local = new Cleanup();
  try {
    // 600 ppk per input: two proofs cost 2 sat (rounded up), three cost 2, four cost 3.
    const mint = await CashuMintPeer.start({ dataDir: join(dir, 'fee-mint'), inputFeePpk: 600 });
    local.add(() => mint.close());
    const usd = mint.addKeyset(0, 'usd');
    const s: Stack = await startStack(local, { extraYaml: `cashu: { mode: standard, mints: ["${mint.url}"] }\n` });
    const get = (headers: Record<string, string>) => http1(s.origin + '/premium', { headers: { accept: 'application/json', ...headers } });
    const minted = async (amount: number) => (await mint.fundedWallet(amount)).proofs;
    s.upstream.reset();

    // /premium costs 10 sat. 8 + 2 is worth 10 at face value, 8 after the mint's fee for two inputs.
    const short = await minted(10);
    assert.deepEqual(short.map(amountOf).sort((a, b) => a - b), [2, 8]);
    const fake = (id: string, amount: number) => ({ id, amount, secret: randomBytes(32).toString('hex'), C: hashToCurve(randomBytes(8).toString('hex')).hex });
    const twelve = await minted(12);
    const cases: Array<[string, string, RegExp]> = [
      ['short by the input fee', getEncodedToken({ mint: mint.url, unit: 'sat', proofs: short }), /input fee of 2 sat/],
      ['short by the input fee (V3)', v3(mint.url, short.map(plain)), /input fee of 2 sat/],
      ['one proof twice', v3(mint.url, [plain(twelve[0]!), plain(twelve[0]!), plain(twelve[1]!)]), /same proof twice/],
      ['a proof of the usd keyset in a sat token', v3(mint.url, [...twelve.map(plain), fake(usd.id, 16)]), /unit usd/],
      ['a keyset id the mint does not have', v3(mint.url, [...twelve.map(plain), fake('01' + randomBytes(32).toString('hex'), 16)]), /keyset|decoded/],
      ['an amount without a key (3)', v3(mint.url, [...twelve.map(plain), fake(mint.activeKeyset().id, 3)]), /no key/],
      ['a negative amount', v3(mint.url, [...twelve.map(plain), fake(mint.activeKeyset().id, -4)]), /./],
      ['an amount past 2^53', v3(mint.url, [...twelve.map(plain), fake(mint.activeKeyset().id, 2 ** 60)]), /./],
      ['a fractional amount', v3(mint.url, [...twelve.map(plain), { ...fake(mint.activeKeyset().id, 1), amount: 0.5 }]), /./],
      ['a string amount with an exponent', v3(mint.url, [...twelve.map(plain), { ...fake(mint.activeKeyset().id, 1), amount: '1e3' }]), /./],
      ['a usd token', v3(mint.url, twelve.map(plain), 'usd'), /unit is usd/],
    ];
    for (const [name, t, why] of cases) {
      const r = await get({ 'x-cashu': t });
      assert.equal(r.status, 400, `${name}: ${r.status} ${r.body}`);
      assert.match(JSON.parse(r.body).detail, why, name);
    }
    assert.equal(s.upstream.hits, 0, 'no refused token reached the upstream');

    // 8 + 4 is worth 10 after the fee: it pays, once, however it is re-encoded or reordered.
    const v4 = getEncodedToken({ mint: mint.url, unit: 'sat', proofs: twelve });
    const paid = await get({ 'x-cashu': v4 });
    assert.equal(paid.status, 200, paid.body);
    for (const again of [v4, v3(mint.url, twelve.map(plain)), v3(mint.url, [...twelve].reverse().map(plain)), getEncodedToken({ mint: mint.url, unit: 'sat', proofs: [...twelve].reverse() }, { removeDleq: true })]) {
      const r = await get({ 'x-cashu': again });
      assert.equal(r.status, 400, r.body);
      assert.match(JSON.parse(r.body).detail, /spent/);
      const viaAuth = await get({ authorization: `Cashu ${again}` });
      assert.equal(viaAuth.status, 400, viaAuth.body);
    }
    assert.equal(s.upstream.hits, 1);

    // Ecash in X-Cashu and in Authorization: Cashu at once: X-Cashu pays, the other is not touched and pays later.
    const a = getEncodedToken({ mint: mint.url, unit: 'sat', proofs: await minted(12) });
    const b = getEncodedToken({ mint: mint.url, unit: 'sat', proofs: await minted(12) });
    assert.equal((await get({ 'x-cashu': a, authorization: `Cashu ${b}` })).status, 200);
    assert.equal((await get({ 'x-cashu': a })).status, 400, 'the X-Cashu token was the one spent');
    assert.equal((await get({ authorization: `Cashu ${b}` })).status, 200, 'the Authorization token was left unspent');
    assert.equal((await get({ authorization: `Cashu ${b}` })).status, 400);
    assert.equal(s.upstream.hits, 3);

    // A keyset made inactive by a rotation still pays (its proofs are the mint's), once.
    const old = await minted(12);
    mint.addKeyset(600);
    assert.notEqual(mint.activeKeyset().id, old[0]!.id);
    const oldToken = getEncodedToken({ mint: mint.url, unit: 'sat', proofs: old });
    const oldPaid = await get({ 'x-cashu': oldToken });
    assert.equal(oldPaid.status, 200, oldPaid.body);
    assert.equal((await get({ 'x-cashu': oldToken })).status, 400);
    assert.equal(s.upstream.hits, 4);
  } finally {
    await local.run();
  }
});

test('P2PK mode, two l402d on one Redis, each its own wallet file, the mint never asked: one token under 30 concurrent requests, and two tokens sharing a proof, pay at most once', { skip: skipRedis, timeout: 180_000 }, async () => {
  const local = new Cleanup();
  try {
    const mint = await CashuMintPeer.start({ dataDir: join(dir, 'p2pk-mint') });
    local.add(() => mint.close());
    const redis = local.use(await startRedis());
    const up = local.use(await startCountingUpstream());
    const gateKey = hex(createRandomSecretKey());
    const gatePub = hex(getPubKeyFromPrivKey(Buffer.from(gateKey, 'hex')));
    mkdirSync(join(dir, 'p2pk'));
    const { origin } = await twoGatesBehindNginx(local, {
      dir: join(dir, 'p2pk'),
      yamlFor: (i, port) =>
        `listen: 127.0.0.1:${port}\ndata_dir: ${join(dir, 'p2pk', `d${i}`)}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: redis, url: ${redis.url} }\nlog: { level: warn }\n` +
        `cashu: { mode: p2pk, mints: ["${mint.url}"], p2pk: { private_key: ${gateKey} } }\n${ROUTES_YAML}`,
      paths: ['/premium'],
      upstreamPort: up.port,
    });
    const locked = async (amount: number) => {
      const { wallet, proofs } = await mint.fundedWallet(amount + 8);
      return (await wallet.ops.send(amount, proofs).asP2PK({ pubkey: gatePub }).run()).send;
    };
    const enc = (proofs: Proof[]) => getEncodedToken({ mint: mint.url, unit: 'sat', proofs });
    const get = (t: string) => http1(`${origin}/premium`, { headers: { 'x-cashu': t } });

    const one = enc(await locked(10));
    const rs = await Promise.all(Array.from({ length: 30 }, () => get(one)));
    const codes = rs.map((r) => r.status);
    assert.equal(codes.filter((c) => c === 200).length, 1, codes.join(','));
    assert.ok(codes.every((c) => c === 200 || c === 400 || c === 503), codes.join(','));
    assert.equal(up.hits, 1);

    // Two tokens worth the price each, sharing their 8 sat proof: whatever order the claims land in, the shared
    // proof pays once, so at most one of them passes (a token that lost a proof to a concurrent claim is refused).
    for (let round = 0; round < 3; round++) {
      up.reset();
      const x = await locked(10);
      const y = await locked(10);
      const eight = x.find((p) => amountOf(p) === 8)!;
      const twoX = x.find((p) => amountOf(p) === 2)!;
      const twoY = y.find((p) => amountOf(p) === 2)!;
      const tokens = [enc([eight, twoX]), enc([eight, twoY]), enc([twoY, eight])];
      const both = await Promise.all(tokens.flatMap((t) => [get(t), get(t)]));
      const passed = both.filter((r) => r.status === 200).length;
      assert.ok(passed <= 1, both.map((r) => r.status).join(','));
      assert.ok(both.every((r) => r.status === 200 || r.status === 400 || r.status === 503), both.map((r) => r.status).join(','));
      assert.equal(up.hits, passed);
      // Once one of them has paid, the shared proof is spent on both processes, whichever asks.
      if (passed === 1) for (const t of tokens) for (let i = 0; i < 2; i++) assert.equal((await get(t)).status, 400);
    }
  } finally {
    await local.run();
  }
});

test("an internal redirect (try_files, same $request_id) from a cheap Cashu route to a dearer one is decided by the rail again: the cheap token's record does not open it", { skip, timeout: 120_000 }, async () => {
  const local = new Cleanup();
  try {
    const mint = await CashuMintPeer.start({ dataDir: join(dir, 'redirect-mint') });
    local.add(() => mint.close());
    const docroot = mkdtempSync(join(tmpdir(), 'l402-s10b-root-'));
    local.add(() => rmSync(docroot, { recursive: true, force: true }));
    const s = await startStack(local, {
      extraYaml: `cashu: { mode: standard, mints: ["${mint.url}"] }\n`,
      extraRoutes: `  - { match: /cheapcash/, amount_msat: 1000 }\n`,
      // No file matches: after /cheapcash/'s auth_request passed, nginx redirects to /premium and runs its auth_request.
      extra: (d) => `location /cheapcash/ { include ${d}/protect.conf; root ${docroot}; try_files $uri /premium; }`,
    });
    const token = async (amount: number) => {
      const { wallet, proofs } = await mint.fundedWallet(amount + 8);
      return getEncodedToken({ mint: mint.url, unit: 'sat', proofs: (await wallet.ops.send(amount, proofs).run()).send });
    };
    s.upstream.reset();
    const cheap = await http1(s.origin + '/cheapcash/x', { headers: { accept: 'application/json', 'x-cashu': await token(1) } });
    assert.equal(cheap.status, 400, cheap.body);
    assert.equal(s.upstream.hits, 0, 'the 1 sat token opened nothing priced at 10 sat');
    const viaAuth = await http1(s.origin + '/cheapcash/y', { headers: { accept: 'application/json', authorization: `Cashu ${await token(1)}` } });
    assert.equal(viaAuth.status, 400, viaAuth.body);
    assert.equal(s.upstream.hits, 0);
    // The dearer route itself, paid directly, still works.
    assert.equal((await http1(s.origin + '/premium', { headers: { 'x-cashu': await token(10) } })).status, 200);
    assert.equal(s.upstream.hits, 1);
  } finally {
    await local.run();
  }
});
