// Pure pieces of the Cashu rail: config schema and ngx_l402 env names, credential parsing (NUT-24 and
// Authorization: Cashu), NUT-18 requests (decoded by cashu-ts), price rounding, the NUT-11 lock policy,
// and BIP-39 against the reference vectors and @scure/bip39.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { decodePaymentRequest, createP2PKsecret } from '@cashu/cashu-ts';
import * as scure from '@scure/bip39';
import { wordlist as scureEnglish } from '@scure/bip39/wordlists/english.js';
import { cashuConfigSchema, cashuFromLegacyEnv, encodePaymentRequest, feeReserve, parseCashuCredential, priceInUnit } from '../../src/rails/cashu/index.js';
import { checkP2pkLock } from '../../src/rails/cashu/p2pk-lock.js';
import { entropyToMnemonic, generateMnemonic, mnemonicProblem, mnemonicToSeed, seedFingerprint } from '../../src/rails/cashu/bip39.js';

const KEY = '1'.repeat(64);
const PUB = '02' + 'ab'.repeat(32);

test('config defaults, camelCase output, and fail-closed rules', () => {
  const c = cashuConfigSchema.parse({ mints: ['https://m.example'] });
  assert.equal(c.mode, 'standard');
  assert.equal(c.unit, 'sat');
  assert.deepEqual(c.mints, ['https://m.example']);
  assert.equal(c.p2pk.requireDleq, true);
  assert.equal(c.p2pk.checkState, false);
  assert.equal(c.p2pk.minLocktimeSecs, 86400);
  assert.equal(c.redeem.enabled, false);
  assert.equal(c.redeem.intervalSecs, 3600);
  assert.equal(c.redeem.minBalanceSat, 10);
  assert.equal(c.redeem.feeReservePercent, 1);
  assert.equal(c.redeem.minFeeReserveSat, 4);
  assert.equal(c.redeem.maxProofsPerMelt, 0);
  assert.equal(c.replayTtlSecs, 86400);
  assert.equal(c.swapTimeoutMs, 4000);
  assert.equal(c.mintTimeoutMs, 4000);
  assert.equal(c.maxProofs, 64);

  const norm = cashuConfigSchema.parse({ mints: ['HTTPS://Mint.Example.COM/', 'http://127.0.0.1:3338/'] });
  assert.deepEqual(norm.mints, ['https://mint.example.com', 'http://127.0.0.1:3338']);

  const issues = (raw: unknown) => {
    const r = cashuConfigSchema.safeParse(raw);
    assert.equal(r.success, false, JSON.stringify(raw));
    return r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n');
  };
  // Any mint would let a payer pay with ecash from a mint of their own: the list is required in both modes.
  assert.match(issues({}), /^mints: list the mints you accept/m);
  assert.match(issues({ mode: 'p2pk', p2pk: { private_key: KEY } }), /^mints: list the mints you accept/m);
  assert.match(issues({ mode: 'p2pk', mints: ['https://m.example'] }), /p2pk\.private_key: P2PK mode needs/);
  assert.match(issues({ mints: ['ftp://m.example'] }), /not a usable mint URL/);
  assert.match(issues({ mints: ['https://u:p@m.example'] }), /not a usable mint URL/);
  assert.match(issues({ mints: ['https://m.example', 'https://M.example/'] }), /listed twice/);
  assert.match(issues({ mints: ['https://m.example'], unit: 'usd' }), /unit/);
  assert.match(issues({ mints: ['https://m.example'], surprise: 1 }), /surprise|Unrecognized/i);
  assert.match(issues({ mints: ['https://m.example'], allow_private_mints: true }), /allow_private_mints|Unrecognized/i);
  const badKey = issues({ mode: 'p2pk', mints: ['https://m.example'], p2pk: { private_key: 'f'.repeat(64) } });
  assert.match(badKey, /secp256k1 private key/);
  assert.ok(!badKey.includes('f'.repeat(64)), 'the key value is never echoed');
  const badMnemonic = issues({ mints: ['https://m.example'], mnemonic: 'abandon '.repeat(11) + 'zoo' });
  assert.match(badMnemonic, /checksum/);
  assert.ok(!badMnemonic.includes('abandon'), 'mnemonic words are never echoed');
});

test("ngx_l402's CASHU_* environment names map onto the section", () => {
  assert.equal(cashuFromLegacyEnv({}), undefined);
  assert.equal(cashuFromLegacyEnv({ CASHU_ECASH_SUPPORT: 'false' }), undefined);
  const env = {
    CASHU_ECASH_SUPPORT: 'TRUE',
    CASHU_DB_PATH: '/var/lib/nginx/cashu_tokens.db',
    CASHU_WALLET_MNEMONIC: 'abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about',
    CASHU_WALLET_MNEMONIC_FILE: '/secrets/wallet.mnemonic',
    CASHU_WHITELISTED_MINTS: ' https://Mint.One/ ,https://mint.two,, ',
    CASHU_REDEEM_ON_LIGHTNING: 'true',
    CASHU_REDEMPTION_INTERVAL_SECS: '600',
    CASHU_MELT_MIN_BALANCE_SATS: '50',
    CASHU_MELT_FEE_RESERVE_PERCENT: '2.5',
    CASHU_MELT_MIN_FEE_RESERVE_SATS: '3',
    CASHU_MAX_PROOFS_PER_MELT: '1000',
    CASHU_P2PK_MODE: 'true',
    CASHU_P2PK_PRIVATE_KEY: KEY,
    CASHU_REQUIRE_DLEQ: 'false',
    L402_CASHU_TOKEN_TTL_SECONDS: '3600',
  };
  const c = cashuConfigSchema.parse(cashuFromLegacyEnv(env));
  assert.equal(c.mode, 'p2pk');
  assert.equal(c.dbPath, '/var/lib/nginx/cashu_tokens.db');
  assert.equal(c.mnemonicFile, '/secrets/wallet.mnemonic');
  assert.ok(c.mnemonic);
  assert.deepEqual(c.mints, ['https://mint.one', 'https://mint.two']);
  assert.deepEqual(c.redeem, {
    enabled: true,
    intervalSecs: 600,
    minBalanceSat: 50,
    feeReservePercent: 2.5,
    minFeeReserveSat: 3,
    maxProofsPerMelt: 1000,
    meltTimeoutMs: 60_000,
    invoiceExpirySecs: 600,
  });
  assert.equal(c.p2pk.privateKey, KEY);
  assert.equal(c.p2pk.requireDleq, false);
  assert.equal(c.replayTtlSecs, 3600);
  // Only the literal "false" disables DLEQ (ngx_l402).
  assert.equal(cashuConfigSchema.parse(cashuFromLegacyEnv({ ...env, CASHU_REQUIRE_DLEQ: 'no' })).p2pk.requireDleq, true);
  // ngx_l402 silently fell back to standard mode on a broken P2PK setup; here it is a config error.
  const broken = cashuConfigSchema.safeParse(cashuFromLegacyEnv({ CASHU_ECASH_SUPPORT: 'true', CASHU_P2PK_MODE: 'true', CASHU_WHITELISTED_MINTS: 'https://m.example' }));
  assert.equal(broken.success, false);
});

test('credentials: X-Cashu (NUT-24) first, then Authorization: Cashu; malformed ones are 400 material', () => {
  const tok = 'cashuBo2FteBtodHRwczovL21pbnQuZXhhbXBsZS5jb20';
  assert.deepEqual(parseCashuCredential({}), { kind: 'none' });
  assert.deepEqual(parseCashuCredential({ 'x-cashu': tok }), { kind: 'token', token: tok, via: 'x-cashu' });
  assert.deepEqual(parseCashuCredential({ 'x-cashu': `  ${tok}  ` }), { kind: 'token', token: tok, via: 'x-cashu' });
  assert.deepEqual(parseCashuCredential({ 'x-cashu': `cashu:${tok}` }), { kind: 'token', token: tok, via: 'x-cashu' });
  assert.deepEqual(parseCashuCredential({ authorization: `Cashu ${tok}` }), { kind: 'token', token: tok, via: 'authorization' });
  assert.deepEqual(parseCashuCredential({ authorization: `cashu ${tok}` }), { kind: 'token', token: tok, via: 'authorization' });
  const legacyA = 'cashuAeyJ0b2tlbiI6W3sibWludCI6Imh0dHBzOi8vbSJ9XX0=';
  assert.deepEqual(parseCashuCredential({ authorization: `Cashu ${legacyA}` }), { kind: 'token', token: legacyA, via: 'authorization' });
  assert.deepEqual(parseCashuCredential({ 'x-cashu': tok, authorization: 'Cashu cashuBother' }), { kind: 'token', token: tok, via: 'x-cashu' });
  assert.deepEqual(parseCashuCredential({ authorization: 'L402 mac:preimage' }), { kind: 'none' });
  assert.deepEqual(parseCashuCredential({ authorization: 'Bearer xyz' }), { kind: 'none' });
  assert.deepEqual(parseCashuCredential({ 'x-cashu': '' }), { kind: 'none' });
  const mal = (h: Parameters<typeof parseCashuCredential>[0], re: RegExp) => {
    const r = parseCashuCredential(h);
    assert.equal(r.kind, 'malformed', JSON.stringify(h));
    assert.match((r as { reason: string }).reason, re);
  };
  mal({ 'x-cashu': 'creqApWF0gGFh' }, /payment request/);
  mal({ 'x-cashu': 'hello' }, /not a Cashu token/);
  mal({ 'x-cashu': 'cashuB abc' }, /not a Cashu token/);
  mal({ 'x-cashu': [tok, tok] }, /more than one/);
  mal({ authorization: 'Cashu' }, /exactly one token/);
  mal({ authorization: `Cashu ${tok} ${tok}` }, /exactly one token/);
  mal({ 'x-cashu': 'cashuB' + 'a'.repeat(40_000) }, /larger than/);
  assert.equal(parseCashuCredential({ 'x-cashu': 'cashuB' + 'a'.repeat(500) }, 100).kind, 'malformed');
});

test('NUT-18 creqA: price rounded up to the unit, decodable by cashu-ts, base64url without padding', () => {
  assert.equal(priceInUnit(1500, 'sat'), 2, 'ngx_l402 asked for floor(1500/1000) = 1 sat and then refused it');
  assert.equal(priceInUnit(1000, 'sat'), 1);
  assert.equal(priceInUnit(1, 'sat'), 1);
  assert.equal(priceInUnit(21_000, 'sat'), 21);
  assert.equal(priceInUnit(1500, 'msat'), 1500);
  assert.throws(() => priceInUnit(0, 'sat'));
  assert.throws(() => priceInUnit(1.5, 'sat'));

  const enc = encodePaymentRequest({ amount: priceInUnit(1500, 'sat'), unit: 'sat', mints: ['https://mint.one', 'http://127.0.0.1:3338'], p2pkPubkey: PUB });
  assert.match(enc, /^creqA[A-Za-z0-9_-]+$/);
  const pr = decodePaymentRequest(enc);
  assert.equal(pr.amount?.toNumber(), 2);
  assert.equal(pr.unit, 'sat');
  assert.deepEqual(pr.mints, ['https://mint.one', 'http://127.0.0.1:3338']);
  assert.equal(pr.nut10?.kind, 'P2PK');
  assert.equal(pr.nut10?.data, PUB);
  assert.deepEqual(pr.transport ?? [], []);
  assert.deepEqual(pr.toP2PKOptions()?.pubkey, PUB);

  const open = decodePaymentRequest(encodePaymentRequest({ amount: 5, unit: 'sat', mints: [] }));
  assert.equal(open.amount?.toNumber(), 5);
  assert.equal(open.mints, undefined);
  assert.equal(open.nut10, undefined);
  // Large amounts use multi-byte CBOR heads.
  for (const a of [23, 24, 255, 256, 65535, 65536, 2 ** 32, 2 ** 40]) {
    assert.equal(decodePaymentRequest(encodePaymentRequest({ amount: a, unit: 'msat', mints: [] })).amount?.toNumber(), a);
  }
});

test('fee reserve: max(floor(total × percent / 100), floor) as in ngx_l402 docs', () => {
  assert.equal(feeReserve(500, 1, 4), 5);
  assert.equal(feeReserve(50, 1, 4), 4);
  assert.equal(feeReserve(1000, 2.5, 0), 25);
  assert.equal(feeReserve(10, 0, 0), 0);
});

test('P2PK lock policy: only proofs that nobody but this gate can spend, for long enough', () => {
  const now = 1_800_000_000;
  const opts = { nowSecs: now, minLocktimeSecs: 3600 };
  const sec = (tags?: string[][], data = PUB, extra: Record<string, unknown> = {}) =>
    JSON.stringify(['P2PK', { nonce: 'n1', data, ...(tags ? { tags } : {}), ...extra }]);
  const ok = (s: string) => assert.deepEqual(checkP2pkLock(s, PUB, opts).ok, true, s);
  const no = (s: string, re: RegExp) => {
    const r = checkP2pkLock(s, PUB, opts);
    assert.equal(r.ok, false, s);
    assert.match((r as { reason: string }).reason, re);
  };
  ok(sec());
  ok(sec([]));
  ok(sec([['sigflag', 'SIG_INPUTS']]));
  ok(sec([['n_sigs', '1']]));
  ok(createP2PKsecret(PUB));
  ok(sec(undefined, PUB.toUpperCase()));
  assert.deepEqual(checkP2pkLock(sec([['locktime', String(now + 7200)]]), PUB, opts), { ok: true, locktime: now + 7200 });
  assert.deepEqual(checkP2pkLock(sec([['locktime', String(now + 7200)], ['refund', '03' + 'ce'.repeat(32)]]), PUB, opts), { ok: true, locktime: now + 7200 });

  no('deadbeef', /not locked/);
  no(JSON.stringify(['HTLC', { nonce: 'n', data: 'aa' }]), /HTLC, not P2PK/);
  no(sec(undefined, '02' + 'cd'.repeat(32)), /another key/);
  no(sec(undefined, '03' + PUB.slice(2)), /another key/);
  no(sec([['pubkeys', '03' + 'ce'.repeat(32)]]), /additional signers/);
  no(sec([['pubkeys', PUB]]), /additional signers/);
  no(sec([['n_sigs', '2']]), /more than one signature/);
  no(sec([['sigflag', 'SIG_ALL']]), /SIG_INPUTS/);
  no(sec([['locktime', String(now - 1)], ['refund', '03' + 'ce'.repeat(32)]]), /refund keys can spend/);
  no(sec([['locktime', String(now - 1)]]), /anyone can spend/);
  no(sec([['locktime', String(now)]]), /anyone can spend/);
  no(sec([['locktime', String(now + 60)]]), /too soon/);
  no(sec([['locktime', 'soon']]), /malformed/);
  no(sec([['refund', '03' + 'ce'.repeat(32)]]), /refund keys without a locktime/);
  no(sec([['n_sigs_refund', '1']]), /n_sigs_refund without refund/);
  no(sec([['locktime', String(now + 7200)], ['locktime', String(now + 9000)]]), /twice/);
  no(sec([['future_tag', 'x']]), /not understood/);
  no(sec(undefined, PUB, { extra: 1 }), /unknown field/);
  no(JSON.stringify(['P2PK', { data: PUB }]), /nonce/);
  no('[not json', /NUT-10 JSON/);
  no('x'.repeat(3000), /too long/);
});

test('BIP-39: wordlist, reference vectors, agreement with @scure/bip39, fingerprint', () => {
  // The wordlist is @scure/bip39's: pinned to the published BIP-39 English list.
  assert.equal(scureEnglish.length, 2048);
  assert.equal(createHash('sha256').update(scureEnglish.join('\n') + '\n').digest('hex'), '2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda');
  // BIP-39 reference vectors (passphrase "TREZOR").
  const vectors: Array<[string, string, string]> = [
    ['00000000000000000000000000000000', 'abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about', 'c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04'],
    ['7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f', 'legal winner thank year wave sausage worth useful legal winner thank yellow', '2e8905819b8723fe2c1d161860e5ee1830318dbf49a83bd451cfb8440c28bd6fa457fe1296106559a3c80937a1c1069be3a3a5bd381ee6260e8d9739fce1f607'],
    ['ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff', 'zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo vote', 'dd48c104698c30cfe2b6142103248622fb7bb0ff692eebb00089b32d22484e1613912f0a5b694407be899ffd31ed3992c456cdf60f5d4564b8ba3f05a69890ad'],
  ];
  for (const [entropy, mnemonic, seed] of vectors) {
    assert.equal(entropyToMnemonic(Buffer.from(entropy, 'hex')), mnemonic);
    assert.equal(mnemonicProblem(mnemonic), undefined);
    assert.equal(mnemonicToSeed(mnemonic, 'TREZOR').toString('hex'), seed);
  }
  for (let i = 0; i < 5; i++) {
    const m = generateMnemonic();
    assert.equal(m.split(' ').length, 12);
    assert.ok(scure.validateMnemonic(m, scureEnglish));
    assert.equal(mnemonicToSeed(m).toString('hex'), Buffer.from(scure.mnemonicToSeedSync(m)).toString('hex'));
  }
  assert.equal(generateMnemonic(256).split(' ').length, 24);
  assert.match(mnemonicProblem('abandon abandon')!, /12, 15, 18, 21 or 24/);
  assert.match(mnemonicProblem('abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon xyzzy')!, /word 12 is not/);
  assert.match(mnemonicProblem('abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon')!, /checksum/);
  assert.equal(mnemonicProblem('  Abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon ABOUT \n'), undefined);
  const seed = mnemonicToSeed(vectors[0]![1]);
  assert.equal(seedFingerprint(seed), createHash('sha256').update(seed).digest('hex').slice(0, 16));
});
