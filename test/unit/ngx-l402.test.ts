// Migrating from ngx_l402: the credentials it sold (libmacaroons V1, payment hash as identifier, ROOT_KEY's
// raw bytes, RequestPath/RequestMethod/ExpiresAt caveats) are honoured when `ngx_l402_root_key` is set,
// more strictly than ngx_l402 did (unknown caveats and malformed expiries refused), and spent once, in
// ngx_l402's own replay key. The test writer is checked against go-macaroon and pymacaroons.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { decide, type DecideDeps, type GateRequest } from '../../src/policy/decide.js';
import { RouteTable } from '../../src/policy/routes.js';
import { checkNgxL402Caveats, decodeMacaroonV1, looksLikeV1 } from '../../src/protocol/ngx-l402.js';
import { ngxL402ClaimsUnseen, storeKeys } from '../../src/policy/store-keys.js';
import { caveatPredicates, MacaroonFormatError, verifySignature } from '../../src/protocol/macaroon.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { goMint, oracleSkip, pyVerify } from '../oracles/oracles.js';
import { ngxL402Credential, ngxL402MacaroonV1 } from '../peers/ngx-l402-credentials.js';

const ngxL402ClaimKey = storeKeys.ngxL402Claim;

const NGX_KEY = 'ngx-l402-root-key-of-the-old-gate-7Hq2';
const cfg = parseConfig(
  `ngx_l402_root_key: ${NGX_KEY}
lightning: { type: dev }
routes:
  - { match: /premium, amount_msat: 10000 }
  - { match: /timed/, amount_msat: 5000, access: timed, macaroon_timeout: 60 }
  - { match: /forever, amount_msat: 5000, access: indefinite }
`,
  { env: {} },
);

function deps(over: Partial<DecideDeps & { store: MemoryStore }> = {}): DecideDeps & { store: MemoryStore } {
  return { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: [randomBytes(32)], store: new MemoryStore(), storeTimeoutMs: 500, ngxL402RootKey: cfg.ngxL402RootKey, ...over };
}
const req = (path: string, authorization?: string, method = 'GET'): GateRequest => ({ path, method, credentials: { authorization } });
const reasonOf = async (r: GateRequest, d: DecideDeps) => {
  const out = await decide(r, d);
  return out.outcome === 'allow' ? 'allow' : out.reason;
};

test('the test writer is ngx_l402\'s V1 layout: byte for byte what go-macaroon writes, verified by pymacaroons with a binary identifier', { skip: oracleSkip('go') || oracleSkip('py') }, () => {
  const key = Buffer.from(NGX_KEY);
  // go-macaroon (like pymacaroons) writes V1 only for UTF-8 identifiers; the layout is the same for binary.
  const utf8Id = Buffer.from('a-utf8-identifier');
  const caveats = ['RequestPath = /premium', 'RequestMethod = GET', 'ExpiresAt = 1900000000'];
  const go = Buffer.from(goMint({ rootKeyHex: key.toString('hex'), idHex: utf8Id.toString('hex'), location: 'L402', caveats, format: 'v1' }), 'base64url');
  assert.ok(go.equals(ngxL402MacaroonV1(key, utf8Id, caveats)));
  const c = ngxL402Credential(NGX_KEY, '/premium');
  const py = pyVerify(key.toString('hex'), c.macaroon.toString('base64'));
  assert.equal(py.ok, true, py.error);
  assert.equal(py.idHex, c.paymentHash.toString('hex'));
  assert.deepEqual(py.caveats, ['RequestPath = /premium', 'RequestMethod = GET']);
  assert.equal(pyVerify(Buffer.from('another-key-another-key-another-key').toString('hex'), c.macaroon.toString('base64')).ok, false);
});

test('V1 decoding: ngx_l402\'s macaroon read back exactly; malformed packets refused with the reason', () => {
  const c = ngxL402Credential(NGX_KEY, '/premium', 'GET', { expiresAt: 1_900_000_000 });
  assert.ok(looksLikeV1(c.macaroon));
  const m = decodeMacaroonV1(c.macaroon);
  assert.equal(m.location, 'L402');
  assert.ok(m.identifier.equals(c.paymentHash));
  assert.deepEqual(caveatPredicates(m), ['RequestPath = /premium', 'RequestMethod = GET', 'ExpiresAt = 1900000000']);
  assert.ok(verifySignature(m, Buffer.from(NGX_KEY)));
  assert.ok(!verifySignature(m, Buffer.from(NGX_KEY + 'x')));
  const SIG_PACKET = 4 + 'signature '.length + 32 + 1;
  const LOCATION_PACKET = 4 + 'location L402\n'.length;
  const bare = ngxL402MacaroonV1(Buffer.from(NGX_KEY), c.paymentHash, []);
  const bad: Array<[Buffer, RegExp]> = [
    [c.macaroon.subarray(0, c.macaroon.length - 5), /packet length/],
    [Buffer.concat([c.macaroon, Buffer.from('zz')]), /packet header/],
    [Buffer.from('0006a\n'), /packet length/],
    [Buffer.from('0008ab\n\n'), /bad V1 packet/],
    [bare.subarray(LOCATION_PACKET), /location, identifier and signature/],
    [Buffer.concat([bare.subarray(0, -SIG_PACKET), Buffer.from('000dvid abcd\n'), bare.subarray(-SIG_PACKET)]), /third-party/],
    [Buffer.alloc(5000, 0x30), /too large/],
  ];
  for (const [buf, re] of bad) assert.throws(() => decodeMacaroonV1(buf), (e: Error) => e instanceof MacaroonFormatError && re.test(e.message), buf.toString('latin1').slice(0, 40));
  // A V2 macaroon (ours) and JSON are not V1.
  assert.ok(!looksLikeV1(Buffer.from([2, 1, 4])));
  assert.ok(!looksLikeV1(Buffer.from('{"v":2}')));
});

test('ngx_l402 caveats are checked strictly: exact path and method, numeric expiry, nothing unknown, path and method caveats required', () => {
  const at = { path: '/premium', method: 'GET', now: 1000 };
  const ok = (p: string[]) => checkNgxL402Caveats(p, at);
  assert.deepEqual(ok(['RequestPath = /premium', 'RequestMethod = GET']), { ok: true, validUntil: undefined });
  assert.deepEqual(ok(['RequestPath = /premium', 'RequestMethod = GET', 'ExpiresAt = 1000', 'ExpiresAt = 5000']), { ok: true, validUntil: 1000 });
  const no = (p: string[]) => (checkNgxL402Caveats(p, at) as { reason: string }).reason;
  assert.equal(no(['RequestPath = /premium/']), 'wrong_path');
  assert.equal(no(['RequestPath = /Premium']), 'wrong_path');
  assert.equal(no(['RequestPath = /premium', 'RequestMethod = POST']), 'wrong_method');
  assert.equal(no(['RequestPath = /premium', 'ExpiresAt = 999']), 'expired');
  // ngx_l402 let these pass.
  assert.equal(no(['RequestPath = /premium', 'ExpiresAt = soon']), 'malformed_caveat');
  assert.equal(no(['RequestPath = /premium', 'Tier = gold']), 'unknown_caveat');
  assert.equal(no(['RequestPath=/premium']), 'unknown_caveat');
  assert.equal(no(['RequestMethod = GET']), 'malformed_caveat');
  assert.equal(no(['RequestPath = /premium']), 'malformed_caveat', 'without a method caveat it would open every method');
  assert.equal(no([]), 'malformed_caveat');
});

test('a per-request ngx_l402 credential passes once, spent in ngx_l402\'s own replay key; one ngx_l402 already spent stays spent', async () => {
  const d = deps();
  const c = ngxL402Credential(NGX_KEY, '/premium');
  const first = await decide(req('/premium', c.authorization), d);
  assert.equal(first.outcome, 'allow', JSON.stringify(first));
  assert.equal((first as { tokenId: string }).tokenId, `ngx_l402:${c.paymentHash.toString('hex')}`);
  assert.notEqual(await d.store.get(ngxL402ClaimKey(c.paymentHash)), undefined, 'claimed as preimage:<sha256(preimage)>');
  assert.equal(await reasonOf(req('/premium', c.authorization), d), 'already_used');
  // Spent under ngx_l402 (it wrote "used" in the shared Redis): refused here too.
  const spent = ngxL402Credential(NGX_KEY, '/premium');
  await d.store.set(ngxL402ClaimKey(spent.paymentHash), 'used');
  assert.equal(await reasonOf(req('/premium', spent.authorization), d), 'already_used');
  // Its other encodings (standard base64, LSAT) are the same payment.
  const again = ngxL402Credential(NGX_KEY, '/premium');
  assert.equal(await reasonOf(req('/premium', `LSAT ${again.macaroon.toString('base64')}:${again.preimage.toString('hex')}`), d), 'allow');
  assert.equal(await reasonOf(req('/premium', again.authorization), d), 'already_used');
});

test('every way an ngx_l402 credential can be wrong is a 401 with its reason, and none is spent by it', async () => {
  const d = deps({ now: () => 2_000_000_000 });
  const c = ngxL402Credential(NGX_KEY, '/premium');
  const mac = c.macaroon.toString('base64');
  const hex = c.preimage.toString('hex');
  const other = ngxL402Credential('not-the-ngx-l402-root-key-at-all-9xq', '/premium');
  const cases: Array<[GateRequest, string]> = [
    [req('/premium', `L402 ${mac}:${'00'.repeat(32)}`), 'wrong_preimage'],
    [req('/premium', `L402 ${mac}`), 'missing_preimage'],
    [req('/premium', c.authorization, 'POST'), 'wrong_method'],
    [req('/premium/x', c.authorization), 'wrong_path'],
    [req('/premium', other.authorization), 'bad_signature'],
    [req('/premium', ngxL402Credential(NGX_KEY, '/premium', 'GET', { expiresAt: 1_999_999_999 }).authorization), 'expired'],
    [req('/premium', ngxL402Credential(NGX_KEY, '/premium', 'GET', { extraCaveats: ['Tier = gold'] }).authorization), 'unknown_caveat'],
    [req('/premium', `L402 ${ngxL402MacaroonV1(Buffer.from(NGX_KEY), Buffer.alloc(31), ['RequestPath = /premium']).toString('base64')}:${hex}`), 'unknown_identifier'],
    [req('/premium', `L402 ${Buffer.from('0006a\n').toString('base64')}:${hex}`), 'malformed_macaroon'],
    [req('/premium', `L402 ${ngxL402MacaroonV1(Buffer.from(NGX_KEY), c.paymentHash, ['RequestPath = /premium']).toString('base64')}:${hex}`), 'malformed_caveat'],
  ];
  for (const [r, reason] of cases) assert.equal(await reasonOf(r, d), reason, `${r.method} ${r.path} ${r.credentials.authorization?.slice(0, 30)}`);
  // Without ngx_l402_root_key, its credentials are not ours at all.
  assert.equal(await reasonOf(req('/premium', c.authorization), deps({ ngxL402RootKey: undefined })), 'malformed_macaroon');
  assert.equal(await reasonOf(req('/premium', c.authorization), d), 'allow', 'still unspent after all that');
});

test('ngx_l402 credentials on reusable routes: indefinite ones reusable; on timed routes spent once (an ExpiresAt may be appended, so it only narrows)', async () => {
  let now = 1_800_000_000;
  const ttls = new Map<string, number | undefined>();
  const store = new (class extends MemoryStore {
    override claimOnce(k: string, ttl?: number, v?: string) {
      ttls.set(k, ttl);
      return super.claimOnce(k, ttl, v);
    }
  })();
  const d = deps({ now: () => now, store });
  const f = ngxL402Credential(NGX_KEY, '/forever');
  for (let i = 0; i < 3; i++) assert.equal(await reasonOf(req('/forever', f.authorization), d), 'allow');
  // A timed route needs a minted expiry, and a V1 macaroon cannot show which ExpiresAt ngx_l402 minted: with
  // or without one, a credential ngx_l402 sold passes once (as ngx_l402 itself sold them without
  // l402_indefinite_access), and its spent mark never expires.
  const plain = ngxL402Credential(NGX_KEY, '/timed/a');
  assert.equal(await reasonOf(req('/timed/a', plain.authorization), d), 'allow');
  assert.equal(await reasonOf(req('/timed/a', plain.authorization), d), 'already_used');
  const t = ngxL402Credential(NGX_KEY, '/timed/a', 'GET', { expiresAt: now + 30 });
  assert.equal(await reasonOf(req('/timed/b', t.authorization), d), 'wrong_path', 'bound to its path, as ngx_l402 sold it');
  const ok = await decide(req('/timed/a', t.authorization), d);
  assert.deepEqual([ok.outcome, (ok as { validUntil?: number }).validUntil, (ok as { singleUse?: boolean }).singleUse], ['allow', now + 30, true]);
  assert.equal(await reasonOf(req('/timed/a', t.authorization), d), 'already_used');
  assert.equal(ttls.size, 2);
  assert.deepEqual([...ttls.values()], [undefined, undefined], 'no TTL taken from a caveat');
  const late = ngxL402Credential(NGX_KEY, '/timed/a', 'GET', { expiresAt: now + 30 });
  now += 31;
  assert.equal(await reasonOf(req('/timed/a', late.authorization), d), 'expired', 'an ExpiresAt still narrows');
});

test('ngx_l402_root_key: raw bytes as ngx_l402 used them; shorter than 32 characters is a config error naming the key', () => {
  const hexKey = 'ab'.repeat(32);
  assert.deepEqual(parseConfig(`ngx_l402_root_key: "${hexKey}"\nlightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n`, { env: {} }).ngxL402RootKey, Buffer.from(hexKey, 'utf8'));
  assert.throws(
    () => parseConfig('ngx_l402_root_key: short-key-123\nlightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n', { env: {} }),
    (e: Error) => e instanceof ConfigError && /ngx_l402_root_key/.test(e.message) && !e.message.includes('short-key-123'),
  );
});

test("ngx_l402's spent credentials are only visible in its Redis under its prefix: anything else is named at start and by doctor", () => {
  assert.equal(ngxL402ClaimsUnseen({ type: 'redis', prefix: 'l402:' }), undefined);
  assert.match(ngxL402ClaimsUnseen({ type: 'redis', prefix: 'gate:' })!, /prefix "gate:".*can pass once more/);
  assert.match(ngxL402ClaimsUnseen({ type: 'sqlite' })!, /store is sqlite/);
  assert.match(ngxL402ClaimsUnseen({ type: 'memory' })!, /store is memory/);
});
