// MPP and x402 codecs and the per-route scheme config: JCS as RFC 8785 writes it, base64url as the specs spell
// it, the challenge binding's positional slots, and config errors that name the key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { buildChallenge, decodeBase64url, formatChallenge, jcs, verifyCredential } from '../../src/protocol/mpp.js';
import { buildRequirements, verifyPaymentSignature } from '../../src/protocol/x402.js';
import { LATE_PROOF_GRACE_SECS } from '../../src/protocol/late-proof.js';

const KEY = 'b5d1a0c3e8f7a6d9c2b4e1f0a3d6c9b8e7f2a1d4c5b6e9f8a7d0c3b2e5f4a1d6';

function err(text: string): string {
  try {
    parseConfig(text, { source: 'test.yaml', env: {} });
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.message;
  }
  assert.fail('expected a config error');
}

test('schemes: default is what a route offered before (L402, Cashu with its rail); errors name the key', () => {
  const c = parseConfig(`lightning: { type: dev }\nroot_key: ${KEY}\nroutes:\n  - { match: /a, amount_msat: 1000 }\n  - { match: /b, amount_msat: 1000, rails: [cashu] }\n  - { match: /c, amount_msat: 1000, schemes: [mpp, x402] }\n`, { env: {} });
  assert.deepEqual(c.routes[0]!.schemes, ['l402', 'cashu']);
  assert.deepEqual(c.routes[1]!.schemes, ['cashu']);
  assert.deepEqual(c.routes[2]!.schemes, ['mpp', 'x402']);
  assert.deepEqual(c.routes[2]!.rails, ['lightning']);
  assert.match(err(`routes:\n  - match: /p\n    amount_msat: 1000\n    access: timed\n    macaroon_timeout: 60\n    schemes: [l402, mpp]\n`), /test\.yaml:6: routes\[0\]\.schemes: mpp pays for one request only .*access: per-request/);
  assert.match(err(`routes:\n  - { match: /p, amount_msat: 1000, access: indefinite, schemes: [x402] }\n`), /routes\[0\]\.schemes: x402 pays for one request only/);
  assert.match(err(`routes:\n  - { match: /p, amount_msat: 1500, schemes: [mpp] }\n`), /routes\[0\]\.amount_msat: mpp charges whole satoshis/);
  assert.match(err(`routes:\n  - { match: /p, amount_msat: 1000, schemes: [x402], lnurl_addr: a@b.c }\n`), /routes\[0\]\.schemes: x402 cannot be combined with lnurl_addr/);
  assert.match(err(`routes:\n  - { match: /p, amount_msat: 1000, schemes: [l402], rails: [lightning] }\n`), /routes\[0\]\.rails: give either rails or schemes/);
  assert.match(err(`routes:\n  - { match: /p, amount_msat: 1000, schemes: [bitcoin] }\n`), /routes\[0\]\.schemes\[0\]/);
  assert.match(err(`tls: { cert_file: /c.pem, key_file: /k.pem }\nroutes:\n  - { match: /p, amount_msat: 1000 }\n`), /test\.yaml:1: tls: only in standalone mode/);
});

test('jcs sorts keys by UTF-16 code units and writes no whitespace (RFC 8785 for strings and integers)', () => {
  assert.equal(jcs({ b: '2', a: { d: [1, 'x'], c: null }, '\u00e9': true, Z: '"\n' }), '{"Z":"\\"\\n","a":{"c":null,"d":[1,"x"]},"b":"2","\u00e9":true}');
  assert.throws(() => jcs(1.5));
});

test('base64url: padding optional, anything else (or a second spelling of the same bytes) refused', () => {
  assert.deepEqual(decodeBase64url('aGk', 10), Buffer.from('hi'));
  assert.deepEqual(decodeBase64url('aGk=', 10), Buffer.from('hi'));
  assert.equal(decodeBase64url('aGl', 10), undefined, 'non-zero trailing bits');
  assert.equal(decodeBase64url('aG+k', 10), undefined);
  assert.equal(decodeBase64url('', 10), undefined);
  assert.equal(decodeBase64url('a', 10), undefined);
});

test('an MPP challenge id is the spec\'s seven-slot HMAC, narrowed to route, method and path', () => {
  const master = randomBytes(32);
  const preimage = randomBytes(32);
  const hash = createHash('sha256').update(preimage).digest('hex');
  const scope = { routeId: '/r', method: 'GET', path: '/r/x' };
  const c = buildChallenge(master, 'svc', scope, { invoice: 'lnbcrt10n1xyz', paymentHash: hash, amountMsat: 1000, expiresAt: 2_000_000_000 });
  const key = createHmac('sha256', master).update('l402-nginx/mpp-challenge/v1\0').update(JSON.stringify(['/r', 'GET', '/r/x'])).digest();
  assert.equal(c.id, createHmac('sha256', key).update(['svc', 'lightning', 'charge', c.request, '2033-05-18T03:33:20Z', '', ''].join('|')).digest('base64url'));
  assert.match(formatChallenge(c), /^Payment id="[A-Za-z0-9_-]{43}", realm="svc", method="lightning", intent="charge", request="[A-Za-z0-9_-]+", expires="2033-05-18T03:33:20Z"$/);
  const cred = (ch: object, pre = preimage.toString('hex')) => `Payment ${Buffer.from(JSON.stringify({ challenge: ch, payload: { preimage: pre } })).toString('base64url')}`;
  const o = { masters: [randomBytes(32), master], realm: 'svc', scope, now: 1_900_000_000 };
  const ok = verifyCredential(cred(c), o);
  assert.ok(ok.ok);
  assert.equal(ok.ok && ok.v.paymentHash.toString('hex'), hash);
  assert.equal(ok.ok && ok.v.amountMsat, 1000);
  // The scheme name is case-insensitive.
  assert.ok(verifyCredential(cred(c).replace('Payment', 'payment'), o).ok);
  const fail = (auth: string, oo = o) => {
    const r = verifyCredential(auth, oo);
    return r.ok ? 'ok' : r.failure;
  };
  assert.equal(fail(cred(c), { ...o, scope: { ...scope, path: '/r/y' } }), 'unknown_challenge');
  assert.equal(fail(cred(c), { ...o, scope: { ...scope, method: 'POST' } }), 'unknown_challenge');
  assert.equal(fail(cred(c), { ...o, masters: [randomBytes(32)] }), 'unknown_challenge');
  assert.equal(fail(cred({ ...c, opaque: 'e30' })), 'unknown_challenge');
  assert.equal(fail(cred({ ...c, extra: 'x' })), 'unknown_challenge');
  // A preimage proven after the challenge expired was paid before: honoured for the grace period only (late-proof.ts).
  assert.equal(fail(cred(c), { ...o, now: 2_000_000_000 }), 'ok');
  assert.equal(fail(cred(c), { ...o, now: 2_000_000_000 + LATE_PROOF_GRACE_SECS - 1 }), 'ok');
  assert.equal(fail(cred(c), { ...o, now: 2_000_000_000 + LATE_PROOF_GRACE_SECS }), 'expired');
  assert.equal(fail(cred(c, randomBytes(32).toString('hex'))), 'invalid_preimage');
  assert.equal(fail(cred(c, 'ab')), 'malformed');
  assert.equal(fail('Payment ' + 'A'.repeat(9000)), 'malformed');
  assert.equal(fail('Bearer abc'), 'malformed');
});

test('an x402 offer is bound to route, method, path, invoice, amount and expiry', () => {
  const master = randomBytes(32);
  const scope = { routeId: '/r', method: 'GET', path: '/r' };
  const hash = randomBytes(32).toString('hex');
  const reqs = buildRequirements(master, scope, { invoice: 'lnbcrt10n1abc', paymentHash: hash, amountMsat: 1000, expiresAt: 2_000_000_000 }, 1_999_999_000);
  assert.equal(reqs.maxTimeoutSeconds, 1000);
  assert.equal(reqs.network, 'bip122:0f9188f13cb7b2c71f2a335e3a4fc328');
  const sig = (accepted: object, invoice = 'lnbcrt10n1abc', extra: object = {}) => Buffer.from(JSON.stringify({ x402Version: 2, payload: { invoice }, accepted, ...extra })).toString('base64');
  const o = { masters: [master], scope, now: 1_999_999_500 };
  const v = verifyPaymentSignature(sig(reqs), o);
  assert.ok(v.ok);
  const fail = (value: string, oo = o) => {
    const r = verifyPaymentSignature(value, oo);
    return r.ok ? 'ok' : r.failure;
  };
  assert.equal(fail(sig(reqs, 'lnbcrt10n1other')), 'unknown_offer');
  assert.equal(fail(sig(reqs, undefined, { network: 'bip122:000000000019d6689c085ae165831e93' })), 'unknown_offer');
  assert.equal(fail(sig({ ...reqs, amount: '999' })), 'unknown_offer');
  assert.equal(fail(sig({ ...reqs, network: 'bip122:000000000019d6689c085ae165831e93' })), 'unknown_offer');
  assert.equal(fail(sig(reqs), { ...o, scope: { ...scope, path: '/r/2' } }), 'unknown_offer');
  assert.equal(fail(sig(reqs), { ...o, now: 2_000_000_000 + LATE_PROOF_GRACE_SECS - 1 }), 'ok');
  assert.equal(fail(sig(reqs), { ...o, now: 2_000_000_000 + LATE_PROOF_GRACE_SECS }), 'expired');
  assert.equal(fail('not base64!'), 'malformed');
  assert.equal(fail(Buffer.from('{"x402Version":1}').toString('base64')), 'malformed');
});

test('fuzz: MPP and x402 verifiers never throw, and accept nothing they did not issue', () => {
  const master = randomBytes(32);
  const scope = { routeId: '/r', method: 'GET', path: '/r' };
  const preimage = randomBytes(32);
  const hash = createHash('sha256').update(preimage).digest('hex');
  const c = buildChallenge(master, 'svc', scope, { invoice: 'lnbcrt10n1xyz', paymentHash: hash, amountMsat: 1000, expiresAt: 2_000_000_000 });
  const good = JSON.stringify({ challenge: c, payload: { preimage: preimage.toString('hex') } });
  const reqs = buildRequirements(master, scope, { invoice: 'lnbcrt10n1abc', paymentHash: hash, amountMsat: 1000, expiresAt: 2_000_000_000 }, 1_999_999_000);
  const goodX = JSON.stringify({ x402Version: 2, payload: { invoice: 'lnbcrt10n1abc' }, accepted: reqs });
  const mutate = (t: string): string => {
    const b = Buffer.from(t);
    const n = 1 + Math.floor(Math.random() * 3);
    for (let i = 0; i < n; i++) b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
    return b.toString('latin1');
  };
  for (let i = 0; i < 3000; i++) {
    const m = mutate(good);
    const r = verifyCredential(`Payment ${Buffer.from(m, 'latin1').toString('base64url')}`, { masters: [master], realm: 'svc', scope, now: 1_900_000_000 });
    // A mutation that changes nothing JSON.parse sees (or only `source`) may pass; anything accepted carries our hash.
    if (r.ok) assert.equal(r.v.paymentHash.toString('hex'), hash);
    const x = verifyPaymentSignature(Buffer.from(mutate(goodX), 'latin1').toString('base64'), { masters: [master], scope, now: 1_999_999_500 });
    if (x.ok) assert.equal(x.v.paymentHash.toString('hex'), hash);
    verifyCredential(mutate(`Payment ${Buffer.from(good).toString('base64url')}`), { masters: [master], realm: 'svc', scope, now: 1_900_000_000 });
    verifyPaymentSignature(mutate(Buffer.from(goodX).toString('base64')), { masters: [master], scope, now: 1_999_999_500 });
  }
});
