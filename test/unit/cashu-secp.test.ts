// The fast verification arithmetic (src/rails/cashu/secp256k1.ts) against @noble/curves (through
// cashu-ts's points) and cashu-ts's own NUT-00/NUT-12 functions: same points, same hash_to_curve, same
// DLEQ verdicts on valid and tampered proofs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  Amount,
  blindMessage,
  createBlindSignature,
  createDLEQProof,
  createNewMintKeys,
  createP2PKsecret,
  hasValidDleq,
  hashToCurve as refHashToCurve,
  pointFromHex,
  unblindSignature,
  type Proof,
} from '@cashu/cashu-ts';
import {
  FixedBase,
  G,
  N,
  hashToCurve,
  P,
  mulAddVar,
  mulG,
  parsePoint,
  scalarFromHex,
  toCompressedHex,
  toUncompressedHex,
  verifyDleqBatch,
  type Point,
} from '../../src/rails/cashu/secp256k1.js';
import { verifyDleqChunked } from '../../src/rails/cashu/verify.js';

type NoblePoint = ReturnType<typeof pointFromHex>;
const GHEX = '0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798';
const NG = pointFromHex(GHEX);
const isNoblePoint = (h: string) => {
  try {
    pointFromHex(h);
    return true;
  } catch {
    return false;
  }
};
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const randScalar = () => (BigInt('0x' + randomBytes(32).toString('hex')) % (N - 1n)) + 1n;
const affineOf = (p: NoblePoint): Point => Buffer.from(p.toHex(false).slice(2), 'hex');
const same = (ours: Point | undefined, theirs: NoblePoint, msg?: string) => {
  assert.ok(ours, msg);
  assert.equal(toUncompressedHex(ours), theirs.toHex(false), msg);
  assert.equal(toCompressedHex(ours), theirs.toHex(true), msg);
};

// Scalars that exercise window carries, GLV signs and the ends of the range.
const EDGE = [1n, 2n, 3n, N - 1n, N - 2n, (N - 1n) / 2n, 1n << 128n, (1n << 128n) - 1n, (1n << 255n) + 12345n, (1n << 256n) - 1n - (1n << 256n) + N - 7n];

test('k·G through the 12-bit table equals noble for random and edge scalars', () => {
  for (const k of [...EDGE, ...Array.from({ length: 40 }, randScalar)]) same(mulG(k), NG.multiply(k), `k=${k.toString(16)}`);
  assert.equal(mulG(0n), undefined, '0·G is the point at infinity');
});

test('fixed-base tables (windows 7, 8, 10) equal noble', () => {
  const A = NG.multiply(randScalar());
  for (const w of [7, 8, 10]) {
    const t = new FixedBase(affineOf(A), w);
    for (const k of [...EDGE, ...Array.from({ length: 15 }, randScalar)]) same(t.mul(k), A.multiply(k), `w=${w} k=${k.toString(16)}`);
    t.dispose();
    assert.throws(() => t.mul(1n), /after dispose/);
  }
});

test('tables whose memory was given back and reused stay independent', () => {
  // The mint-key cache drops and rebuilds tables; a reused block must hold only the new table.
  const bases = Array.from({ length: 6 }, () => NG.multiply(randScalar()));
  const live = bases.slice(0, 3).map((b) => new FixedBase(affineOf(b), 8));
  live[1]!.dispose();
  const reused = new FixedBase(affineOf(bases[3]!), 8);
  const k = randScalar();
  same(reused.mul(k), bases[3]!.multiply(k));
  same(live[0]!.mul(k), bases[0]!.multiply(k));
  same(live[2]!.mul(k), bases[2]!.multiply(k));
});

test('Strauss–Shamir with GLV equals noble, including doubling and cancelling inputs', () => {
  for (let i = 0; i < 30; i++) {
    const P = NG.multiply(randScalar());
    const Q = NG.multiply(randScalar());
    const a = i < EDGE.length ? EDGE[i]! : randScalar();
    const b = randScalar();
    same(mulAddVar([{ p: affineOf(P), k: a }, { p: affineOf(Q), k: b }]), P.multiply(a).add(Q.multiply(b)));
    same(mulAddVar([{ p: affineOf(P), k: a }]), P.multiply(a));
  }
  const P = NG.multiply(randScalar());
  const k = randScalar();
  // P + P goes through the doubling branch of the mixed addition.
  same(mulAddVar([{ p: affineOf(P), k }, { p: affineOf(P), k }]), P.multiply(k).double());
  // k·P + k·(−P) is infinity, which must come back as such, not a bogus point.
  assert.equal(mulAddVar([{ p: affineOf(P), k }, { p: affineOf(P.negate()), k }]), undefined);
  same(mulAddVar([{ p: affineOf(P), k: 0n }, { p: affineOf(NG), k: 5n }]), NG.multiply(5n));
});

test('hash_to_curve matches cashu-ts (NUT-00) for ASCII, JSON and Unicode secrets', () => {
  const secrets = ['', 'test', '0000000000000000000000000000000000000000000000000000000000000000', '☕ über ecash', createP2PKsecret('02' + 'ab'.repeat(32))];
  for (let i = 0; i < 60; i++) secrets.push(randomBytes(32).toString('hex'));
  for (const s of secrets) {
    const ref = refHashToCurve(new TextEncoder().encode(s));
    const ours = hashToCurve(s);
    assert.equal(ours.hex, ref.toHex(true), s);
    same(ours.point, ref);
  }
  // NUT-00 test vector (hash_to_curve of 32 zero bytes).
  assert.equal(
    hashToCurve(Buffer.alloc(32)).hex,
    '024cce997d3b518f739663b757deaec95bcd9473c30a14ac2fd04023a739d1a725',
  );
});

test('point and scalar parsing reject what is not on the curve or not in [1, n-1]', () => {
  assert.ok(parsePoint(GHEX));
  same(parsePoint(GHEX)!, NG);
  assert.ok(parsePoint(NG.toHex(false)));
  assert.equal(parsePoint('02' + '00'.repeat(32)), undefined); // x = 0 is not on secp256k1
  assert.equal(parsePoint('05' + GHEX.slice(2)), undefined);
  assert.equal(parsePoint(GHEX.slice(0, 64)), undefined);
  assert.equal(parsePoint('zz' + GHEX.slice(2)), undefined);
  const badY = '04' + GHEX.slice(2) + '00'.repeat(32);
  assert.equal(parsePoint(badY), undefined);
  // Coordinates at or above p are not canonical encodings even when they reduce to a curve point.
  const enc = (v: bigint) => v.toString(16).padStart(64, '0');
  let small = 1n; // the smallest x of a curve point: x + p still fits in 32 bytes
  while (!isNoblePoint('02' + enc(small))) small++;
  const S = pointFromHex('02' + enc(small));
  assert.ok(parsePoint('02' + enc(small)));
  assert.equal(parsePoint('02' + enc(small + P)), undefined);
  assert.equal(parsePoint('04' + enc(small + P) + enc(S.toAffine().y)), undefined);
  assert.equal(parsePoint('02' + enc(P)), undefined);
  assert.equal(parsePoint('02' + enc(P + 1n)), undefined);
  // Both parities of a valid x, and an x with no point (x³ + 7 not a square).
  const Q = NG.multiply(randScalar());
  same(parsePoint(Q.toHex(true)), Q);
  same(parsePoint((Q.toHex(true).startsWith('02') ? '03' : '02') + Q.toHex(true).slice(2)), Q.negate());
  assert.equal(isNoblePoint('02' + enc(5n)), false);
  assert.equal(parsePoint('02' + enc(5n)), undefined);
  assert.equal(scalarFromHex('00'), undefined);
  assert.equal(scalarFromHex(N.toString(16)), undefined);
  assert.equal(scalarFromHex((N + 1n).toString(16)), undefined);
  assert.equal(scalarFromHex('xyz'), undefined);
  assert.equal(scalarFromHex('01'.repeat(33)), undefined);
  assert.equal(scalarFromHex((N - 1n).toString(16)), N - 1n);
  assert.deepEqual(Buffer.from(G), affineOf(NG));
});

function makeProofs(n: number) {
  const ks = createNewMintKeys(8);
  const keys = Object.fromEntries(Object.entries(ks.pubKeys).map(([a, k]) => [a, hex(k)]));
  const proofs: Proof[] = [];
  for (let i = 0; i < n; i++) {
    const amount = 2 ** (i % 8);
    const secret = i % 2 ? createP2PKsecret('02' + 'cd'.repeat(32)) : randomBytes(32).toString('hex');
    const bm = blindMessage(new TextEncoder().encode(secret));
    const priv = ks.privKeys[amount]!;
    const sig = createBlindSignature(bm.B_, priv, ks.keysetId);
    const dleq = createDLEQProof(bm.B_, priv);
    const C = unblindSignature(sig.C_, bm.r, pointFromHex(keys[String(amount)]!));
    proofs.push({ id: ks.keysetId, amount: Amount.from(amount), secret, C: C.toHex(true), dleq: { e: hex(dleq.e), s: hex(dleq.s), r: bm.r.toString(16).padStart(64, '0') } });
  }
  return { keyset: { id: ks.keysetId, keys }, proofs };
}

function inputOf(p: Proof, keys: Record<string, string>, tables: Map<string, FixedBase>) {
  const keyHex = keys[p.amount.toString()]!;
  let t = tables.get(keyHex);
  if (!t) tables.set(keyHex, (t = new FixedBase(parsePoint(keyHex)!, 8)));
  const C = parsePoint(p.C);
  const e = scalarFromHex(p.dleq!.e);
  const s = scalarFromHex(p.dleq!.s);
  const r = scalarFromHex(p.dleq!.r);
  if (!C || e === undefined || s === undefined || r === undefined) return undefined;
  return { Y: hashToCurve(p.secret).point, C, key: t, e, s, r };
}

test('DLEQ verdicts equal cashu-ts hasValidDleq on valid and tampered proofs, alone and batched', () => {
  const { keyset, proofs } = makeProofs(24);
  const tables = new Map<string, FixedBase>();
  const bump = (h: string) => (BigInt('0x' + h) + 1n).toString(16).padStart(64, '0');
  const variants: Array<{ name: string; proof: Proof }> = [];
  for (const [i, p] of proofs.entries()) {
    variants.push({ name: `valid ${i}`, proof: p });
    if (i % 4 === 0) {
      variants.push({ name: `e+1 ${i}`, proof: { ...p, dleq: { ...p.dleq!, e: bump(p.dleq!.e) } } });
      variants.push({ name: `s+1 ${i}`, proof: { ...p, dleq: { ...p.dleq!, s: bump(p.dleq!.s) } } });
      variants.push({ name: `r+1 ${i}`, proof: { ...p, dleq: { ...p.dleq!, r: bump(p.dleq!.r!) } } });
      variants.push({ name: `other secret ${i}`, proof: { ...p, secret: p.secret + 'x' } });
      variants.push({ name: `other C ${i}`, proof: { ...p, C: proofs[(i + 1) % proofs.length]!.C } });
      variants.push({ name: `other amount ${i}`, proof: { ...p, amount: Amount.from(p.amount.toNumber() === 1 ? 2 : 1) } });
    }
  }
  const expected = variants.map((v) => hasValidDleq(v.proof, keyset));
  assert.equal(expected.filter(Boolean).length, proofs.length, 'the reference accepts exactly the untampered proofs');
  const inputs = variants.map((v) => inputOf(v.proof, keyset.keys, tables));
  // One by one.
  variants.forEach((v, i) => {
    const got = inputs[i] ? verifyDleqBatch([inputs[i]!])[0] : false;
    assert.equal(got, expected[i], v.name);
  });
  // All at once (one batch with good and bad mixed) must give the same per-proof verdicts.
  const idx = inputs.map((x, i) => (x ? i : -1)).filter((i) => i >= 0);
  const batch = verifyDleqBatch(idx.map((i) => inputs[i]!));
  idx.forEach((i, n) => assert.equal(batch[n], expected[i], `batched ${variants[i]!.name}`));
});

test('a DLEQ made with another key (a forged mint signature) fails against the real key', () => {
  const real = makeProofs(1).keyset;
  const forged = makeProofs(4);
  const tables = new Map<string, FixedBase>();
  for (const p of forged.proofs) {
    const inp = inputOf(p, real.keys, tables)!;
    assert.equal(verifyDleqBatch([inp])[0], false);
    assert.equal(hasValidDleq(p, { id: forged.keyset.id, keys: real.keys }), false);
  }
});

test('a chunked verification keeps its mint-key tables while the cache drops and replaces them', async () => {
  const { keyset, proofs } = makeProofs(24);
  const tables = new Map<string, FixedBase>();
  const items = proofs.map((p) => inputOf(p, keyset.keys, tables)!);
  const pending = verifyDleqChunked(items, 4); // the first chunk runs now, the rest after turns of the loop
  for (const t of tables.values()) t.dispose();
  const others = Array.from({ length: 8 }, () => new FixedBase(affineOf(NG.multiply(randScalar())), 8));
  await pending; // throws if a table was freed under it, or if a reused block corrupted it
  const k = randScalar();
  same(others[0]!.mul(k), pointFromHex(toCompressedHex(others[0]!.base)).multiply(k));
  for (const t of tables.values()) assert.throws(() => t.mul(1n), /after dispose/, 'freed once the verification ended');
});
