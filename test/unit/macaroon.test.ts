// Error handling of the macaroon codec: hostile input must end in MacaroonFormatError, never another
// exception type (callers map exactly that to a 401 instead of a 500).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import {
  MAX_MACAROON_BYTES,
  MacaroonFormatError,
  attenuate,
  decodeMacaroon,
  decodeMacaroonBase64,
  encodeMacaroon,
  encodeMacaroonBase64,
  mintMacaroon,
  signatureFor,
  verifySignature,
  caveatPredicates,
  type Macaroon,
} from '../../src/protocol/macaroon.js';
import { checkCaveats, mintCaveats, type CaveatContext } from '../../src/protocol/caveats.js';

const KEY = Buffer.alloc(32, 7);
const SIG = Buffer.alloc(32, 0xab);
const valid = (): Macaroon => mintMacaroon(KEY, Buffer.from('token-id'), 'https://api.example.com', ['a=b', 'c=d']);

/** One V2 field: type, uvarint length (< 128 here), data. */
const fld = (type: number, data: string | Buffer): Buffer => {
  const d = Buffer.isBuffer(data) ? data : Buffer.from(data);
  assert.ok(d.length < 128);
  return Buffer.concat([Buffer.from([type, d.length]), d]);
};
const EOS = Buffer.from([0]);
const raw = (...parts: Buffer[]): Buffer => Buffer.concat([Buffer.from([2]), ...parts]);

const rejects = (input: Buffer | string, message?: RegExp): void => {
  const run = typeof input === 'string' ? () => decodeMacaroonBase64(input) : () => decodeMacaroon(input);
  assert.throws(run, (e: unknown) => {
    assert.ok(e instanceof MacaroonFormatError, `expected MacaroonFormatError, got ${String(e)}`);
    if (message) assert.match(e.message, message);
    return true;
  });
};

describe('macaroon codec round trip', () => {
  it('decodes what it encodes, byte for byte', () => {
    const m = attenuate(valid(), 'client=x');
    const bytes = encodeMacaroon(m);
    assert.deepEqual(decodeMacaroon(bytes), m);
    assert.deepEqual(encodeMacaroon(decodeMacaroon(bytes)), bytes);
    assert.ok(verifySignature(decodeMacaroonBase64(encodeMacaroonBase64(m)), KEY));
    assert.equal(verifySignature(m, Buffer.alloc(32, 8)), false);
  });

  it('accepts exactly MAX_MACAROON_BYTES and rejects one more', () => {
    const base = encodeMacaroon(mintMacaroon(KEY, Buffer.from('id'), 'l', ['x'.repeat(200)])).length;
    const fit = mintMacaroon(KEY, Buffer.from('id'), 'l', ['x'.repeat(200 + MAX_MACAROON_BYTES - base)]);
    const bytes = encodeMacaroon(fit);
    assert.equal(bytes.length, MAX_MACAROON_BYTES);
    assert.ok(verifySignature(decodeMacaroonBase64(bytes.toString('base64')), KEY));
    rejects(encodeMacaroon(attenuate(fit, '')), /too large/);
  });
});

describe('malformed macaroons raise MacaroonFormatError', () => {
  it('every truncation of a valid macaroon', () => {
    const bytes = encodeMacaroon(valid());
    for (let n = 0; n < bytes.length; n++) rejects(bytes.subarray(0, n));
  });

  it('wrong version byte', () => {
    const bytes = encodeMacaroon(valid());
    // 0x30 is '0': what a V1 (hex-length packet) macaroon starts with.
    for (const v of [0, 1, 3, 0x30, 0xff]) rejects(Buffer.concat([Buffer.from([v]), bytes.subarray(1)]), /V2/);
  });

  it('fields out of order or repeated', () => {
    const tail = Buffer.concat([EOS, fld(6, SIG)]);
    rejects(raw(fld(2, 'id'), fld(1, 'loc'), EOS, tail), /out of order/);
    rejects(raw(fld(2, 'id'), fld(2, 'id'), EOS, tail), /out of order/);
    rejects(raw(fld(2, 'id'), EOS, fld(4, 'vid'), fld(2, 'cid'), EOS, tail), /out of order/);
  });

  it('missing or unknown fields', () => {
    const tail = Buffer.concat([EOS, fld(6, SIG)]);
    rejects(raw(fld(1, 'loc'), EOS, tail), /no identifier/);
    rejects(raw(fld(2, 'id'), EOS, fld(1, 'cav-loc'), EOS, tail), /caveat has no identifier/);
    rejects(raw(fld(2, 'id'), fld(3, 'x'), EOS, tail), /unexpected field/);
    rejects(raw(fld(2, 'id'), EOS, fld(2, 'cid'), fld(5, 'x'), EOS, tail), /unexpected field/);
    rejects(raw(fld(2, 'id'), EOS, EOS), /truncated/);
    rejects(raw(fld(2, 'id'), EOS, EOS, fld(2, SIG)), /no signature/);
    rejects(raw(fld(2, 'id'), EOS, EOS, fld(6, SIG.subarray(1))), /32 bytes/);
    rejects(raw(fld(2, 'id'), EOS, EOS, fld(6, Buffer.concat([SIG, SIG.subarray(0, 1)]))), /32 bytes/);
    rejects(raw(fld(1, Buffer.from([0xff, 0xfe])), fld(2, 'id'), EOS, tail), /UTF-8/);
  });

  it('oversized input and absurd field lengths', () => {
    rejects(Buffer.alloc(MAX_MACAROON_BYTES + 1, 2), /too large/);
    rejects(Buffer.alloc(MAX_MACAROON_BYTES + 1, 2).toString('base64'));
    rejects(raw(Buffer.from([2, 0xff, 0xff, 0xff, 0xff, 0x0f])), /too large/);
    rejects(raw(Buffer.from([2, 0xff, 0xff, 0xff, 0x7f])), /truncated/);
  });

  it('too many caveats', () => {
    const caveats = Array.from({ length: 65 }, (_, i) => fld(2, `c${i}`).toString('hex') + '00').join('');
    rejects(raw(fld(2, 'id'), EOS, Buffer.from(caveats, 'hex'), EOS, fld(6, SIG)), /too many caveats/);
  });

  it('trailing bytes', () => {
    const bytes = encodeMacaroon(valid());
    rejects(Buffer.concat([bytes, EOS]), /trailing/);
    rejects(Buffer.concat([bytes, bytes]), /trailing/);
  });

  it('empty string and non-base64 text', () => {
    const good = encodeMacaroonBase64(valid());
    for (const s of ['', ' ', '====', 'A', '!!!!', 'AgE$', 'Ag E', 'Agé=', `${good}\n`, ` ${good}`, 'AgE=AgE=', 'AgE===', 'AAAA']) {
      rejects(s);
    }
  });

  it('random corruption of a valid macaroon never escapes as another error type', () => {
    // Deterministic LCG so any failure reproduces.
    let seed = 42;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
    const bytes = encodeMacaroon(valid());
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(bytes);
      const at = rnd(b.length);
      const mutated = [
        () => ((b[at] = rnd(256)), b),
        () => b.subarray(0, at),
        () => Buffer.concat([b.subarray(0, at), Buffer.from([rnd(256)]), b.subarray(at)]),
        () => Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]),
      ][rnd(4)]!();
      try {
        decodeMacaroon(mutated);
      } catch (e) {
        assert.ok(e instanceof MacaroonFormatError, `${mutated.toString('hex')}: ${String(e)}`);
      }
      const text = mutated.toString('base64url').slice(0, rnd(200));
      try {
        decodeMacaroonBase64(text);
      } catch (e) {
        assert.ok(e instanceof MacaroonFormatError, `${text}: ${String(e)}`);
      }
    }
  });
});

describe('third-party caveats', () => {
  // A genuinely valid third-party caveat per libmacaroons: sig' = HMAC(sig, HMAC(sig, vid) || HMAC(sig, cid)).
  const h = (k: Buffer, d: Buffer): Buffer => createHmac('sha256', k).update(d).digest();
  const base = valid();
  const cid = Buffer.from('third-party-caveat-id');
  const vid = Buffer.alloc(72, 0x5a);
  const sig = h(base.signature, Buffer.concat([h(base.signature, vid), h(base.signature, cid)]));
  const m: Macaroon = { ...base, caveats: [...base.caveats, { location: 'https://auth.example', id: cid, verificationId: vid }], signature: sig };

  it('decode and re-encode unchanged', () => {
    const bytes = encodeMacaroon(m);
    const back = decodeMacaroon(bytes);
    assert.deepEqual(back.caveats[2], { location: 'https://auth.example', id: cid, verificationId: vid });
    assert.deepEqual(encodeMacaroon(back), bytes);
  });

  it('fail verification even with the right root key and a correct chain', () => {
    assert.equal(verifySignature(decodeMacaroon(encodeMacaroon(m)), KEY), false);
    assert.throws(() => signatureFor(KEY, m.identifier, m.caveats), MacaroonFormatError);
  });
});

describe('caveats round trip through a macaroon', () => {
  const hash = Buffer.alloc(32, 1);
  /** Mint for (routeId, path), carry the macaroon through its wire format, verify against the same request. */
  const roundTrip = (routeId: string, path: string, ctx: Partial<CaveatContext> = {}) => {
    const m = mintMacaroon(KEY, Buffer.from('id'), 'l402', mintCaveats({ service: 'l402', routeId, path, methods: ['GET'] }));
    const back = decodeMacaroonBase64(encodeMacaroonBase64(m));
    assert.ok(verifySignature(back, KEY));
    const preds = caveatPredicates(back);
    return checkCaveats(preds, { service: 'l402', routeId, path, method: 'GET', now: 1, paymentHash: hash, ...ctx }, preds.length);
  };

  it('a single-use credential says so (uses=1), and no other count is accepted', () => {
    const pred = mintCaveats({ service: 'l402', routeId: '/premium', path: '/premium', methods: ['GET'], singleUse: true });
    assert.deepEqual(pred, ['services=l402:0', 'route=/premium', 'path=/premium', 'method=GET', 'uses=1']);
    const ctx = { service: 'l402', routeId: '/premium', path: '/premium', method: 'GET', now: 1, paymentHash: hash };
    assert.equal((checkCaveats(pred, ctx, pred.length) as { sold: { singleUse: boolean } }).sold.singleUse, true);
    assert.deepEqual(checkCaveats([...pred.slice(0, 4), 'uses=2'], ctx, 4), { ok: false, reason: 'malformed_caveat' });
    assert.deepEqual(checkCaveats([...pred.slice(0, 4), 'uses=unlimited'], ctx, 4), { ok: false, reason: 'malformed_caveat' });
  });

  it('a path with leading or trailing whitespace verifies for exactly the path it was bought for', () => {
    // Decoded paths nginx accepts: "/premium%20", "%09", "%0B", "%0C", "%C2%A0", "%E3%80%80", "%EF%BB%BF", "%E2%80%A8" ...
    for (const ws of [' ', '  ', '\t', '\v', '\f', '\u00a0', '\u3000', '\ufeff', '\u2028', '\u1680']) {
      const path = `/premium${ws}`;
      assert.deepEqual(roundTrip('/premium', path), { ok: true, preimage: undefined, sold: { routeId: '/premium', pathBound: true, singleUse: false, methods: ['GET'] }, validUntil: undefined, singleUse: false }, JSON.stringify(path));
      assert.deepEqual(roundTrip('/premium', `/${ws}x${ws}/`), { ok: true, preimage: undefined, sold: { routeId: '/premium', pathBound: true, singleUse: false, methods: ['GET'] }, validUntil: undefined, singleUse: false }, JSON.stringify(path));
      // ... and for no other path: not the trimmed one, not one with other whitespace.
      assert.deepEqual(roundTrip('/premium', path, { path: '/premium' }), { ok: false, reason: 'wrong_path' });
      assert.deepEqual(roundTrip('/premium', '/premium', { path }), { ok: false, reason: 'wrong_path' });
      assert.deepEqual(roundTrip('/premium', path, { path: `/premium${ws}${ws}` }), { ok: false, reason: 'wrong_path' });
    }
    // Long paths are bound by hash; the hash is of the untrimmed path too.
    const long = `/premium/${'x'.repeat(300)} `;
    assert.equal(roundTrip('/premium', long).ok, true);
    assert.deepEqual(roundTrip('/premium', long, { path: long.trimEnd() }), { ok: false, reason: 'wrong_path' });
  });

  it('route ids compare exactly as minted too', () => {
    // A route's id defaults to its match text, which YAML can quote with surrounding spaces.
    assert.equal(roundTrip(' /premium ', '/premium').ok, true);
    assert.equal(roundTrip('~ \\.mp4$ ', '/a.mp4').ok, true);
    assert.deepEqual(roundTrip(' /premium ', '/premium', { routeId: '/premium' }), { ok: false, reason: 'wrong_route' });
  });

  it('a client attenuation padded with spaces only narrows', () => {
    const ctx: CaveatContext = { service: 'l402', routeId: '/premium', path: '/premium', method: 'GET', now: 1, paymentHash: hash };
    const minted = ['services=l402:0', 'route=/premium'];
    assert.equal(checkCaveats([...minted, 'path=/premium', 'method= GET ', 'services= l402:0 ', 'l402_valid_until= 99 '], ctx, 2).ok, true);
    assert.deepEqual(checkCaveats([...minted, 'path= /premium'], ctx, 2), { ok: false, reason: 'wrong_path' });
    assert.deepEqual(checkCaveats([...minted, 'route=/premium '], ctx, 2), { ok: false, reason: 'wrong_route' });
  });
});
