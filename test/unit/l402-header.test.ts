// Where an L402 credential is read from: the Authorization header, or the L402 spec's gRPC metadata keys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCredential } from '../../src/protocol/l402-header.js';

const MAC = Buffer.from('0201046c343032', 'hex');
const PRE = 'ab'.repeat(32);

test('Authorization: L402 / LSAT is read, other schemes alone are no credential', () => {
  const l402 = parseCredential({ authorization: `L402 ${MAC.toString('base64')}:${PRE}` });
  assert.equal(l402.kind, 'l402');
  assert.equal(l402.kind === 'l402' && l402.credential.source, 'authorization');
  assert.equal(parseCredential({ authorization: `lsat ${MAC.toString('base64')}:${PRE}` }).kind, 'l402');
  for (const authorization of ['Bearer abc', 'Basic dXNlcjpwdw==', 'Bearer', 'Cashu cashuBxyz']) {
    assert.deepEqual(parseCredential({ authorization }), { kind: 'none' }, authorization);
  }
  assert.equal(parseCredential({ authorization: 'L402 ' }).kind, 'malformed');
});

test('gRPC: an app token in Authorization does not hide the L402 macaroon in the token/macaroon metadata', () => {
  const hex = MAC.toString('hex');
  for (const authorization of ['Bearer app-session-token', 'bearer x.y.z', 'Basic dXNlcjpwdw==', 'Negotiate', 'Token abc=']) {
    for (const meta of [{ token: hex }, { macaroon: hex }]) {
      const r = parseCredential({ authorization, ...meta });
      assert.equal(r.kind, 'l402', `${authorization} + ${Object.keys(meta)[0]}`);
      assert.ok(r.kind === 'l402' && r.credential.source === 'grpc-metadata' && r.credential.macaroon.equals(MAC));
    }
    // Broken metadata is still reported as such, not silently ignored.
    assert.equal(parseCredential({ authorization, token: 'zz' }).kind, 'malformed');
  }
});

test('Authorization that is ours (L402/LSAT, Cashu) or malformed still wins over metadata', () => {
  const hex = MAC.toString('hex');
  const other = Buffer.from('0201046c3430ff', 'hex');
  const viaAuth = parseCredential({ authorization: `L402 ${other.toString('base64')}:${PRE}`, token: hex });
  assert.ok(viaAuth.kind === 'l402' && viaAuth.credential.source === 'authorization' && viaAuth.credential.macaroon.equals(other));
  assert.equal(parseCredential({ authorization: 'L402 !!!:xyz', token: hex }).kind, 'malformed');
  // A Cashu token is the payment the client chose; the Cashu rail reads it, metadata does not override it.
  for (const authorization of ['Cashu cashuBxyz', ' cashu cashuAabc', 'CASHU']) {
    assert.deepEqual(parseCredential({ authorization, token: hex }), { kind: 'none' }, authorization);
  }
});

test('only SP and HTAB surround a credential: a scheme behind NBSP, VT or FF is not read (nginx would not strip it as a payment credential)', async () => {
  const { parseCashuCredential } = await import('../../src/protocol/cashu-credential.js');
  assert.equal(parseCredential({ authorization: ` \tL402 ${MAC.toString('base64')}:${PRE}\t ` }).kind, 'l402');
  for (const lead of ['\u00a0', '\v', '\f', '\u2003']) {
    assert.notEqual(parseCredential({ authorization: `${lead}L402 ${MAC.toString('base64')}:${PRE}` }).kind, 'l402', JSON.stringify(lead));
    assert.notEqual(parseCashuCredential({ authorization: `${lead}Cashu cashuBo2FteCJodHRwOi8vbG9jYWxob3N0` }).kind, 'token', JSON.stringify(lead));
  }
});

test("Grpc-Metadata-Macaroon (Aperture's REST form): read after Authorization and before the gRPC metadata keys, hex only", () => {
  const a = 'ab'.repeat(40);
  const b = 'cd'.repeat(40);
  const mac = (r: ReturnType<typeof parseCredential>) => (r.kind === 'l402' ? r.credential.macaroon.toString('hex') : r.kind);
  assert.equal(mac(parseCredential({ grpcMetadataMacaroon: a })), a);
  assert.equal(mac(parseCredential({ grpcMetadataMacaroon: ` ${a.toUpperCase()}\t` })), a, 'either case, OWS trimmed');
  assert.equal(mac(parseCredential({ grpcMetadataMacaroon: a, token: b })), a, 'before the gRPC keys, as Aperture reads them');
  assert.equal(mac(parseCredential({ grpcMetadataMacaroon: a, authorization: 'Bearer app' })), a, "an app's own scheme does not hide it");
  assert.equal(mac(parseCredential({ grpcMetadataMacaroon: a, authorization: `L402 ${Buffer.from(b, 'hex').toString('base64')}:${'00'.repeat(32)}` })), b, 'an L402 Authorization wins');
  for (const bad of ['abc', 'zz', `${a} ${a}`, '\u000b' + a, 'ab'.repeat(5000)]) {
    assert.equal(parseCredential({ grpcMetadataMacaroon: bad }).kind, 'malformed', JSON.stringify(bad.slice(0, 20)));
  }
  assert.equal(parseCredential({ grpcMetadataMacaroon: ' ' }).kind, 'none');
});
