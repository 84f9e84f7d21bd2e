// The LNC protocol pieces against Lightning Labs' Go implementation: test/unit/lnc-go-vectors.json was
// produced by running lightning-node-connect's own mailbox code (noise.go, noise_patterns.go, crypto.go,
// conndata.go at the commit named in the file) with fixed static and ephemeral keys. Our initiator and our
// responder must each reproduce Go's bytes, act by act, and the transport frames across a key rotation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { decodeMsgData, encodeMsgData, knownKeysSid } from '../../src/rails/lightning/lnc/conn.js';
import { decodePacket, encodePacket, GbnConn } from '../../src/rails/lightning/lnc/gbn.js';
import { streamIds } from '../../src/rails/lightning/lnc/mailbox.js';
import { sleep } from '../../src/util/timeout.js';
import { ekeMask, ekeUnmask, Handshake, NoiseError, publicKeyOf, SPAKE2_N_HEX, type Pattern } from '../../src/rails/lightning/lnc/noise.js';
import { pairingSid, phraseToEntropy, stretchEntropy, unknownWordPositions } from '../../src/rails/lightning/lnc/phrase.js';

interface Run { acts: string[]; version: number; received_auth: string; initiator_messages: string[]; responder_reply: string }
const V = JSON.parse(readFileSync(new URL('./lnc-go-vectors.json', import.meta.url), 'utf8')) as {
  phrase: string; entropy: string; stretched: string; sid_pairing: string; sid_known_keys: string;
  initiator_static: string; responder_static: string; initiator_ephemeral: string; responder_ephemeral: string;
  auth_data: string; masked_initiator_ephemeral: string; xx: Run; kk: Run;
  /** The same pairing against Go responders that speak at most handshake version 0 / 1. */
  xx_responder_v0: Run; xx_responder_v1: Run;
};
const hex = (h: string): Buffer => Buffer.from(h, 'hex');
const iPriv = hex(V.initiator_static);
const rPriv = hex(V.responder_static);

test('SPAKE2 point N is the first x = SHA-256(u64be(i) || "Lightning Node Connect") on the curve', () => {
  for (let i = 0; i < 256; i++) {
    const ctr = Buffer.alloc(8);
    ctr.writeBigUInt64BE(BigInt(i));
    const x = createHash('sha256').update(ctr).update('Lightning Node Connect').digest('hex');
    let ok = true;
    try {
      secp256k1.ProjectivePoint.fromHex('02' + x).assertValidity();
    } catch {
      ok = false;
    }
    if (ok) {
      assert.equal('02' + x, SPAKE2_N_HEX);
      return;
    }
  }
  assert.fail('no candidate point found');
});

test('pairing phrase → entropy → scrypt stretch and session ids match Go', async () => {
  const entropy = phraseToEntropy(V.phrase);
  assert.equal(entropy.toString('hex'), V.entropy);
  assert.equal((await stretchEntropy(entropy)).toString('hex'), V.stretched);
  assert.equal(pairingSid(entropy).toString('hex'), V.sid_pairing);
  assert.equal(knownKeysSid(iPriv, publicKeyOf(rPriv)).toString('hex'), V.sid_known_keys);
  assert.equal(knownKeysSid(rPriv, publicKeyOf(iPriv)).toString('hex'), V.sid_known_keys, 'both ends derive the same id');
  const ids = streamIds(hex(V.sid_pairing));
  assert.equal(ids.recv.toString('hex'), V.sid_pairing);
  assert.equal(ids.send.subarray(0, 63).toString('hex'), V.sid_pairing.slice(0, 126));
  assert.equal(ids.send[63], hex(V.sid_pairing)[63]! ^ 1);
  assert.deepEqual(unknownWordPositions(V.phrase), []);
  assert.deepEqual(unknownWordPositions(V.phrase.replace('kiwi', 'kiwis')), [1]);
});

test('SPAKE2 mask matches Go and unmasks back; a wrong secret unmasks to another point', () => {
  const e = publicKeyOf(hex(V.initiator_ephemeral));
  const masked = ekeMask(e, hex(V.stretched));
  assert.equal(masked.toString('hex'), V.masked_initiator_ephemeral);
  assert.ok(ekeUnmask(masked, hex(V.stretched)).equals(e));
  const other = Buffer.from(hex(V.stretched));
  other[0] = other[0]! ^ 1;
  assert.ok(!ekeUnmask(masked, other).equals(e));
  assert.throws(() => ekeUnmask(Buffer.alloc(33, 7), hex(V.stretched)), NoiseError);
});

function parties(pattern: Pattern, stretched = hex(V.stretched), responderMax = 2): { ini: Handshake; res: Handshake } {
  const common = pattern === 'XX' ? { stretched } : {};
  const ini = new Handshake({ initiator: true, pattern, localPriv: iPriv, remotePub: pattern === 'KK' ? publicKeyOf(rPriv) : undefined, ephemeral: () => hex(V.initiator_ephemeral), ...common });
  const res = new Handshake({ initiator: false, pattern, localPriv: rPriv, remotePub: pattern === 'KK' ? publicKeyOf(iPriv) : undefined, authData: hex(V.auth_data), ephemeral: () => hex(V.responder_ephemeral), maxVersion: responderMax, ...common });
  return { ini, res };
}

const RUNS = [
  { name: 'XX', pattern: 'XX', run: V.xx, responderMax: 2 },
  { name: 'KK', pattern: 'KK', run: V.kk, responderMax: 2 },
  { name: 'XX with a version-0 responder', pattern: 'XX', run: V.xx_responder_v0, responderMax: 0 },
  { name: 'XX with a version-1 responder', pattern: 'XX', run: V.xx_responder_v1, responderMax: 1 },
] as const;

for (const { name, pattern, run, responderMax } of RUNS) {
  test(`${name}: our initiator writes Go's acts byte for byte and reads Go's responder`, () => {
    const { ini } = parties(pattern);
    for (const [i, act] of run.acts.entries()) {
      if (ini.ourTurn) assert.equal(ini.writeAct().toString('hex'), act, `act ${i + 1}`);
      else ini.readAct(hex(act));
    }
    assert.ok(ini.done);
    assert.equal(ini.version, run.version);
    assert.equal(ini.receivedPayload!.toString('hex'), run.received_auth);
    assert.ok(ini.remoteStatic!.equals(publicKeyOf(rPriv)));
    const t = ini.split();
    const want = new Map(run.initiator_messages.map((m) => [Number(m.split(':')[0]), m.split(':')[1]!]));
    for (let i = 0; i < 1002; i++) {
      const [h, b] = t.seal(Buffer.from(`message ${i}`));
      if (want.has(i)) assert.equal(Buffer.concat([h, b]).toString('hex'), want.get(i), `transport message ${i} (keys rotate every 1000 encryptions)`);
    }
    assert.deepEqual(t.open(hex(run.responder_reply)).map(String), ['reply']);
  });

  test(`${name}: our responder writes Go's acts byte for byte and reads Go's initiator`, () => {
    const { res } = parties(pattern, hex(V.stretched), responderMax);
    for (const [i, act] of run.acts.entries()) {
      if (res.ourTurn) assert.equal(res.writeAct().toString('hex'), act, `act ${i + 1}`);
      else res.readAct(hex(act));
    }
    assert.ok(res.done);
    assert.ok(res.remoteStatic!.equals(publicKeyOf(iPriv)));
    const t = res.split();
    const [h, b] = t.seal(Buffer.from('reply'));
    assert.equal(Buffer.concat([h, b]).toString('hex'), run.responder_reply);
    // Go's first initiator message, split across reads at an awkward place.
    const first = hex(run.initiator_messages[0]!.split(':')[1]!);
    assert.deepEqual(t.open(first.subarray(0, 7)), []);
    assert.deepEqual(t.open(first.subarray(7)).map(String), ['message 0']);
  });
}

test('XX: the two sides need the same phrase; whichever end has another one fails at its first read', () => {
  const wrong = Buffer.from(hex(V.stretched));
  wrong[5] = wrong[5]! ^ 0x40;
  // The transcript hash holds the unmasked ephemeral key, so act one's tag already fails.
  assert.throws(() => parties('XX', wrong).res.readAct(parties('XX').ini.writeAct()), NoiseError);
  // A node with the right phrase answering a client with a wrong one: the client fails on act two.
  const { ini } = parties('XX', wrong);
  assert.throws(() => ini.readAct(hex(V.xx.acts[1]!)), NoiseError);
});

test('handshake: tampered, truncated and padded acts are refused', () => {
  const act2 = hex(V.xx.acts[1]!);
  for (const bad of [act2.subarray(0, act2.length - 1), Buffer.concat([act2, Buffer.from([0])]), Buffer.from(act2).fill(0xff, 40, 41), Buffer.concat([Buffer.from([3]), act2.subarray(1)])]) {
    const { ini } = parties('XX');
    ini.writeAct();
    assert.throws(() => ini.readAct(bad), NoiseError);
  }
  const { res } = parties('KK');
  const act1 = hex(V.kk.acts[0]!);
  assert.throws(() => res.readAct(Buffer.concat([Buffer.from([1]), act1.subarray(1)])), NoiseError, 'KK needs version 2');
});

test('transport: a flipped bit in a frame fails authentication', () => {
  const { ini, res } = parties('KK');
  res.readAct(ini.writeAct());
  ini.readAct(res.writeAct());
  const [h, b] = ini.split().seal(Buffer.from('payload'));
  b[0] = b[0]! ^ 1;
  assert.throws(() => res.split().open(Buffer.concat([h, b])), NoiseError);
});

test('framing: go-back-N packets and LNC data messages', () => {
  assert.deepEqual([...encodePacket({ type: 'syn', n: 20 })], [1, 20]);
  assert.deepEqual([...encodePacket({ type: 'data', seq: 10, final: true, ping: false, payload: Buffer.from([1, 2]) })], [2, 10, 1, 0, 1, 2]);
  assert.deepEqual([...encodePacket({ type: 'ack', seq: 128 })], [3, 128]);
  assert.deepEqual([...encodePacket({ type: 'nack', seq: 128 })], [4, 128]);
  assert.deepEqual([...encodePacket({ type: 'fin' })], [5]);
  assert.deepEqual([...encodePacket({ type: 'synack' })], [6]);
  assert.deepEqual(decodePacket(Buffer.from([2, 0, 1, 1])), { type: 'data', seq: 0, final: true, ping: true, payload: Buffer.alloc(0) });
  for (const bad of [[], [2, 1], [3], [9, 9]]) assert.equal(decodePacket(Buffer.from(bad)), undefined, JSON.stringify(bad));
  assert.deepEqual([...encodeMsgData(Buffer.from('hi'))], [0, 0, 0, 0, 2, 0x68, 0x69]);
  assert.equal(String(decodeMsgData(Buffer.from([0, 0, 0, 0, 2, 0x68, 0x69]))), 'hi');
  assert.throws(() => decodeMsgData(Buffer.from([0, 0, 0, 0, 9, 1])));
});

test('go-back-N: every message arrives once and in order over a link that drops and repeats packets', async () => {
  const got: string[] = [];
  let n = 0;
  const lossy = (deliver: (b: Buffer) => void) => (b: Buffer): void => {
    n++;
    if (n % 5 === 0) return; // dropped
    setImmediate(() => deliver(b));
    if (n % 7 === 0 && (b[0] === 2 || b[0] === 3)) setImmediate(() => deliver(b)); // a DATA or ACK repeated
  };
  let client!: GbnConn;
  let server!: GbnConn;
  client = new GbnConn({ role: 'client', n: 4, resendMs: 20, handshakeMs: 20, send: lossy((b) => server.receive(b)), onMessage: () => {}, onClose: () => {} });
  server = new GbnConn({ role: 'server', resendMs: 20, send: lossy((b) => client.receive(b)), onMessage: (m) => got.push(String(m)), onClose: () => {} });
  void server.handshake();
  await client.handshake();
  const want = Array.from({ length: 40 }, (_, i) => `m${i}`);
  for (const m of want) client.send(Buffer.from(m));
  for (let i = 0; i < 500 && got.length < want.length; i++) await sleep(10);
  client.close();
  server.close();
  assert.deepEqual(got, want);
});

test('go-back-N: a peer that never ends a chunked message is cut off, not buffered without bound', async () => {
  let reason = '';
  const server = new GbnConn({ role: 'server', send: () => {}, onMessage: () => assert.fail('no message'), onClose: (r) => (reason = r) });
  void server.handshake().catch(() => {});
  server.receive(encodePacket({ type: 'syn', n: 20 }));
  server.receive(encodePacket({ type: 'synack' }));
  const chunk = Buffer.alloc(60_000);
  for (let seq = 0; seq < 40 && !server.closed; seq++) server.receive(encodePacket({ type: 'data', seq: seq % 21, final: false, ping: false, payload: chunk }));
  assert.ok(server.closed);
  assert.match(reason, /larger than allowed/);
});
