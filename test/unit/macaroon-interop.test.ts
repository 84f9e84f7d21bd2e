// Byte-level interop of our macaroon codec with three independent implementations, both directions.
// If these drift, Aperture/lnget-style clients (Go) and Python/JS tooling stop accepting our tokens.
import { describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import {
  attenuate,
  caveatPredicates,
  decodeMacaroon,
  decodeMacaroonBase64,
  encodeMacaroon,
  encodeMacaroonBase64,
  mintMacaroon,
  verifySignature,
  type Macaroon,
} from '../../src/protocol/macaroon.js';
import { encodeIdentifier } from '../../src/protocol/identifier.js';
import {
  goAttenuate,
  goMint,
  goVerify,
  oracleSkip,
  pyAttenuate,
  pyMint,
  pyVerify,
  type MintRequest,
  type OracleName,
  type VerifyResult,
} from '../oracles/oracles.js';

// js-macaroon is CJS without types; only the surface we use is typed here.
interface JsMacaroon {
  readonly identifier: Uint8Array;
  readonly location: string;
  readonly caveats: Array<{ identifier: Uint8Array }>;
  addFirstPartyCaveat(c: string | Uint8Array): void;
  exportBinary(): Uint8Array;
  verify(rootKey: Uint8Array, check: (cond: string) => string | null): void;
}
const jsMacaroon = createRequire(import.meta.url)('macaroon') as {
  newMacaroon(p: { identifier: Uint8Array; location: string; rootKey: Uint8Array; version: number }): JsMacaroon;
  importMacaroon(b64: string): JsMacaroon;
};

interface Oracle {
  mint(req: MintRequest): string;
  verify(rootKeyHex: string, b64: string): VerifyResult;
  /** Client-side attenuation by the oracle (no root key). */
  attenuate(b64: string, caveats: string[]): string;
}

/**
 * js-macaroon 3.0.4's ByteBuffer._grow compares against `this._capacity`, which is never set, so every
 * append doubles the buffer and exportBinary throws RangeError past ~24 fields (go-macaroon/js-macaroon#41,
 * fixed upstream after the last npm release). Supplying the missing field only for the duration of the call
 * still runs js-macaroon's own encoder, with the upstream fix's behaviour.
 */
function jsB64(m: JsMacaroon): string {
  Object.defineProperty(Object.prototype, '_capacity', {
    configurable: true,
    get(this: { _buf?: Uint8Array }) {
      return this._buf?.length;
    },
  });
  try {
    return Buffer.from(m.exportBinary()).toString('base64');
  } finally {
    delete (Object.prototype as { _capacity?: unknown })._capacity;
  }
}
const jsOracle: Oracle = {
  mint(req) {
    const m = jsMacaroon.newMacaroon({
      identifier: new Uint8Array(Buffer.from(req.idHex, 'hex')),
      location: req.location,
      rootKey: new Uint8Array(Buffer.from(req.rootKeyHex, 'hex')),
      version: 2,
    });
    for (const c of req.caveats) m.addFirstPartyCaveat(c);
    return jsB64(m);
  },
  verify(rootKeyHex, b64) {
    const m = jsMacaroon.importMacaroon(b64);
    const res: VerifyResult = {
      ok: false,
      idHex: Buffer.from(m.identifier).toString('hex'),
      location: m.location,
      caveats: m.caveats.map((c) => Buffer.from(c.identifier).toString('utf8')),
      reencoded: jsB64(m),
    };
    try {
      m.verify(new Uint8Array(Buffer.from(rootKeyHex, 'hex')), () => null);
      res.ok = true;
    } catch (e) {
      res.error = String(e);
    }
    return res;
  },
  attenuate(b64, caveats) {
    const m = jsMacaroon.importMacaroon(b64);
    for (const c of caveats) m.addFirstPartyCaveat(c);
    return jsB64(m);
  },
};

const oracles: Array<{ label: string; needs?: OracleName; impl: Oracle }> = [
  { label: 'go gopkg.in/macaroon.v2', needs: 'go', impl: { mint: goMint, verify: goVerify, attenuate: goAttenuate } },
  { label: 'python pymacaroons', needs: 'py', impl: { mint: pyMint, verify: pyVerify, attenuate: pyAttenuate } },
  { label: 'js macaroon', impl: jsOracle },
];

/** Deterministic bytes, so a failure reproduces exactly. */
const bytes = (label: string, n: number): Buffer => createHash('sha512').update(label).digest().subarray(0, n);

interface Case {
  name: string;
  rootKey: Buffer;
  identifier: Buffer;
  location: string;
  caveats: string[];
}

const cases: Case[] = [
  { name: 'no caveats', rootKey: bytes('k1', 32), identifier: Buffer.from('plain-identifier'), location: 'https://api.example.com', caveats: [] },
  {
    name: 'L402 caveats, 66-byte identifier',
    rootKey: bytes('k2', 32),
    identifier: encodeIdentifier(bytes('payment-hash', 32), bytes('token-id', 32)),
    location: 'l402-nginx',
    caveats: ['services=l402:0', 'l402_valid_until=1893456000', 'path=/premium', 'method=GET'],
  },
  {
    name: 'unicode caveat, 64-byte root key',
    rootKey: bytes('k3', 64),
    identifier: Buffer.from('unicode-id'),
    location: 'https://例え.jp/ü',
    caveats: ['note=héllo wörld ☃ 🎉', 'path=/€'],
  },
  {
    // >127 bytes forces a multi-byte length varint.
    name: 'long caveat',
    rootKey: bytes('k4', 32),
    identifier: encodeIdentifier(bytes('ph4', 32), bytes('tid4', 32)),
    location: 'l402-nginx',
    caveats: ['path=/' + 'x'.repeat(300), 'method=POST'],
  },
];

const mintOurs = (c: Case): Macaroon => mintMacaroon(c.rootKey, c.identifier, c.location, c.caveats);
const request = (c: Case): MintRequest => ({ rootKeyHex: c.rootKey.toString('hex'), idHex: c.identifier.toString('hex'), location: c.location, caveats: c.caveats });
const wrongKey = (k: Buffer): Buffer => Buffer.concat([k.subarray(0, -1), Buffer.from([k[k.length - 1]! ^ 1])]);

function assertMatches(r: VerifyResult, c: Case, b64: string): void {
  assert.equal(r.reencoded, b64, 'oracle re-encoding differs from our bytes');
  assert.equal(r.idHex, c.identifier.toString('hex'));
  assert.equal(r.location, c.location);
}

function assertOursAccepts(b64: string, c: Case, predicates = c.caveats): void {
  const m = decodeMacaroonBase64(b64);
  assert.ok(verifySignature(m, c.rootKey), 'our verifier rejected it');
  assert.equal(encodeMacaroonBase64(m), b64, 'our re-encoding differs');
  assert.deepEqual(caveatPredicates(m), predicates);
  assert.deepEqual(m.identifier, c.identifier);
  assert.equal(m.location, c.location);
}

/** Registers an oracle's suite; in CI an unavailable oracle becomes a failing test, not a skip. */
function oracleSuite(label: string, needs: OracleName | undefined, body: () => void): void {
  let skip: string | false = false;
  try {
    if (needs) skip = oracleSkip(needs);
  } catch (e) {
    test(`${label} oracle is available`, () => {
      throw e;
    });
    return;
  }
  describe(`interop with ${label}`, { skip }, body);
}

for (const { label, needs, impl } of oracles) {
  oracleSuite(label, needs, () => {
    for (const c of cases) {
      describe(c.name, () => {
        it('verifies our macaroon and re-encodes it byte for byte', () => {
          const b64 = encodeMacaroonBase64(mintOurs(c));
          const r = impl.verify(c.rootKey.toString('hex'), b64);
          assert.ok(r.ok, r.error);
          assertMatches(r, c, b64);
          assert.deepEqual(r.caveats, c.caveats);
        });

        it('rejects our macaroon under a wrong root key or with a tampered caveat', () => {
          const m = mintOurs(c);
          assert.equal(impl.verify(wrongKey(c.rootKey).toString('hex'), encodeMacaroonBase64(m)).ok, false);
          if (c.caveats.length > 0) {
            const tampered = { ...m, caveats: [{ id: Buffer.from(c.caveats[0] + '!') }, ...m.caveats.slice(1)] };
            assert.equal(impl.verify(c.rootKey.toString('hex'), encodeMacaroonBase64(tampered)).ok, false);
          }
        });

        it('mints the same bytes we do, and we verify and re-encode them', () => {
          const b64 = impl.mint(request(c));
          assert.equal(b64, encodeMacaroonBase64(mintOurs(c)));
          assertOursAccepts(b64, c);
        });

        it('accepts our client-style attenuation, and we accept its attenuation', () => {
          const extra = ['client_note=added by holder', 'ip=203.0.113.7'];
          const ours = encodeMacaroonBase64(extra.reduce(attenuate, mintOurs(c)));
          const r = impl.verify(c.rootKey.toString('hex'), ours);
          assert.ok(r.ok, r.error);
          assert.deepEqual(r.caveats, [...c.caveats, ...extra]);
          assert.equal(r.reencoded, ours);
          // The oracle mints and attenuates; attenuation never needs the root key, so bytes must agree.
          const theirs = impl.attenuate(impl.mint(request(c)), extra);
          assert.equal(theirs, ours);
          assertOursAccepts(theirs, c, [...c.caveats, ...extra]);
        });
      });
    }
  });
}

oracleSuite('python pymacaroons (empty location)', 'py', () => {
  // pymacaroons always writes the location field, even when empty; Go/js/ours omit it.
  // We must still accept that form, and re-encode canonically (as Go does).
  const c: Case = { name: 'empty location', rootKey: bytes('k5', 32), identifier: Buffer.from('id'), location: '', caveats: ['a=b'] };
  it('decodes and verifies a pymacaroons macaroon with an empty location field', () => {
    const raw = Buffer.from(pyMint(request(c)), 'base64');
    const canonical = encodeMacaroon(mintOurs(c));
    assert.deepEqual(raw, Buffer.concat([Buffer.from([2, 1, 0]), canonical.subarray(1)]));
    const m = decodeMacaroon(raw);
    assert.ok(verifySignature(m, c.rootKey));
    assert.deepEqual(encodeMacaroon(m), canonical);
  });
  it('verifies our macaroon without a location field', () => {
    const r = pyVerify(c.rootKey.toString('hex'), encodeMacaroonBase64(mintOurs(c)));
    assert.ok(r.ok, r.error);
  });
});

describe('our codec on tampered macaroons', () => {
  for (const c of cases.filter((x) => x.caveats.length > 0)) {
    describe(c.name, () => {
      it('rejects a flipped byte inside a caveat', () => {
        const raw = encodeMacaroon(mintOurs(c));
        const at = raw.indexOf(Buffer.from(c.caveats[0]!, 'utf8'));
        assert.ok(at > 0);
        raw[at + 3]! ^= 0x01;
        assert.equal(verifySignature(decodeMacaroon(raw), c.rootKey), false);
      });
      it('rejects a flipped signature byte', () => {
        const raw = encodeMacaroon(mintOurs(c));
        raw[raw.length - 1]! ^= 0x80;
        assert.equal(verifySignature(decodeMacaroon(raw), c.rootKey), false);
      });
      it('rejects a dropped caveat (first or last)', () => {
        const m = mintOurs(c);
        for (const caveats of [m.caveats.slice(1), m.caveats.slice(0, -1)]) {
          const dropped = decodeMacaroon(encodeMacaroon({ ...m, caveats }));
          assert.equal(verifySignature(dropped, c.rootKey), false);
        }
      });
    });
  }
});

describe('base64 variants', () => {
  const encodings = cases.map((c) => encodeMacaroonBase64(mintOurs(c)));
  it('URL-safe and unpadded forms decode to the same macaroon', () => {
    for (const std of encodings) {
      const want = decodeMacaroonBase64(std);
      const url = std.replace(/\+/g, '-').replace(/\//g, '_');
      for (const v of [url, std.replace(/=+$/, ''), url.replace(/=+$/, '')]) assert.deepEqual(decodeMacaroonBase64(v), want, v);
    }
  });
  it('covers the alphabet and padding differences (test is not vacuous)', () => {
    assert.ok(encodings.some((s) => /[+/]/.test(s)));
    assert.ok(encodings.some((s) => s.endsWith('=')));
  });
  it('js-macaroon decodes our URL-safe unpadded form too', () => {
    const c = cases[1]!;
    const url = encodeMacaroonBase64(mintOurs(c)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    assert.ok(jsOracle.verify(c.rootKey.toString('hex'), url).ok);
  });
});
