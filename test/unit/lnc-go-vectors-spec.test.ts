// test/unit/lnc-go-vectors.json against Lightning Labs' Go source, recomputed here WITHOUT src/ (node:crypto,
// noble, scure only): lightning-node-connect at the commit the file names publishes no fixed-byte vectors of
// its own (its noise tests use random keys), so the file's derived values are checked against the
// constants and formulas of that commit, read from mailbox/crypto.go, mailbox/conndata.go and
// mailbox/noise.go:
// - 10 words of lnd's aezeed list (BIP-39 English), 11 bits each, big-endian into 14 bytes;
// - scrypt(entropy, salt = entropy, N = 1<<16, r = 8, p = 1, 32 bytes) (crypto.go stretchPassphrase);
// - pairing SID = SHA-512(entropy); known-keys SID = SHA-512(HMAC-SHA256(key = ECDH, "mailbox")), ECDH =
//   SHA-256 of the compressed shared point (conndata.go SID, lnd keychain);
// - masked ephemeral me = e + N * (stretched mod n) (noise.go ekeMask), N = 0254a58c…a32c.
// A vector file produced by code sharing a mistake with src/ would fail here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, scryptSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { secp256k1 } from '@noble/curves/secp256k1';
import { wordlist } from '@scure/bip39/wordlists/english.js';

const V = JSON.parse(readFileSync(new URL('./lnc-go-vectors.json', import.meta.url), 'utf8')) as {
  source: string; phrase: string; entropy: string; stretched: string; sid_pairing: string; sid_known_keys: string;
  initiator_static: string; responder_static: string; initiator_ephemeral: string; masked_initiator_ephemeral: string;
  xx: { acts: string[] };
};
const hex = (h: string): Buffer => Buffer.from(h, 'hex');
const N_HEX = '0254a58cd0f31c008fd0bc9b2dd5ba586144933829f6da33ac4130b555fb5ea32c';

function entropyOf(phrase: string): Buffer {
  const bits = phrase.split(' ').map((w) => {
    const i = wordlist.indexOf(w);
    assert.ok(i >= 0, 'a word of the list');
    return i.toString(2).padStart(11, '0');
  }).join('');
  return Buffer.from(bits.padEnd(14 * 8, '0').match(/.{8}/g)!.map((b) => parseInt(b, 2)));
}

test('the vector file names the Go commit it came from', () => {
  assert.match(V.source, /^lightninglabs\/lightning-node-connect .* at [0-9a-f]{40}/);
});

test("entropy, scrypt stretch and both stream ids in the vector file follow Go's formulas", () => {
  const entropy = entropyOf(V.phrase);
  assert.equal(entropy.toString('hex'), V.entropy);
  assert.equal(scryptSync(entropy, entropy, 32, { N: 1 << 16, r: 8, p: 1, maxmem: 256 * 1024 * 1024 }).toString('hex'), V.stretched);
  assert.equal(createHash('sha512').update(entropy).digest('hex'), V.sid_pairing);
  const shared = secp256k1.getSharedSecret(hex(V.initiator_static), secp256k1.getPublicKey(hex(V.responder_static), true), true);
  const ecdh = createHash('sha256').update(shared).digest();
  assert.equal(createHash('sha512').update(createHmac('sha256', ecdh).update('mailbox').digest()).digest('hex'), V.sid_known_keys);
});

test("the masked first ephemeral key in the vector file is Go's e + N*pw", () => {
  const n = secp256k1.ProjectivePoint.fromHex(N_HEX);
  const pw = BigInt('0x' + V.stretched) % secp256k1.CURVE.n;
  const e = secp256k1.ProjectivePoint.fromPrivateKey(hex(V.initiator_ephemeral));
  assert.equal(e.add(n.multiply(pw)).toHex(true), V.masked_initiator_ephemeral);
  // And act one of the pairing handshake carries exactly that key after the version byte.
  assert.equal(V.xx.acts[0]!.slice(2, 68), V.masked_initiator_ephemeral);
});
