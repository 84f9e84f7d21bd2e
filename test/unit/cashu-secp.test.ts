// The verification arithmetic (src/rails/cashu/secp256k1.ts, libsecp256k1 through the `secp256k1` N-API
// package) against @noble/curves (through cashu-ts's points) and cashu-ts's own NUT-00/NUT-12 functions:
// same points, same hash_to_curve, same DLEQ verdicts on valid and tampered proofs. And libsecp256k1 is the
// native addon, never the package's pure-JS `elliptic` fallback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
import { KeyTables, type KnownKeyset } from '../../src/rails/cashu/mint-client.js';
import { libsecp256k1 } from '../../src/util/libsecp256k1.js';
import { MAX_TOKEN_KEYS, prepareP2pk, Rejection, verifyDleqChunked, verifyP2pkProofs, type CheckedProof, type CheckedToken } from '../../src/rails/cashu/verify.js';

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

test('libsecp256k1 is the secp256k1 package\'s native addon, never its elliptic fallback', () => {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve('secp256k1/package.json').replace(/package\.json$/, '');
  const loaded = Object.keys(require.cache);
  assert.ok(loaded.some((k) => k.startsWith(pkg) && k.endsWith('.node')), 'the compiled addon is loaded');
  assert.ok(!loaded.some((k) => k.startsWith(pkg) && /elliptic/.test(k.slice(pkg.length))), 'the elliptic fallback is not loaded');
  assert.ok(!loaded.some((k) => /[\\/]node_modules[\\/]elliptic[\\/]/.test(k)), 'the elliptic package is not loaded');
  assert.equal(hex(libsecp256k1.publicKeyCreate(Buffer.from('00'.repeat(31) + '02', 'hex'), true)), NG.multiply(2n).toHex(true));
  // Without the addon, loading fails with a clear error rather than falling back: node-gyp-build (the
  // addon loader) is made to fail in a child process.
  const preload = 'const M=require("node:module");const l=M._load;M._load=function(r,...a){if(r==="node-gyp-build")throw new Error("no native build");return l.call(this,r,...a)};';
  const dir = mkdtempSync(join(tmpdir(), 'l402-secp-'));
  const preloadFile = join(dir, 'no-addon.cjs');
  writeFileSync(preloadFile, preload);
  const child = spawnSync(
    process.execPath,
    ['--require', preloadFile, '--import', 'tsx', '--input-type=module', '-e', "await import('./src/rails/cashu/secp256k1.ts'); console.log('loaded')"],
    { cwd: fileURLToPath(new URL('../../', import.meta.url)), encoding: 'utf8', timeout: 60_000 },
  );
  rmSync(dir, { recursive: true, force: true });
  assert.notEqual(child.status, 0, 'the module refuses to load without the native addon');
  assert.doesNotMatch(child.stdout, /loaded/);
  assert.match(child.stderr, /native libsecp256k1 addon .*did not load: no native build/);
});

test('k·G equals noble for random and edge scalars', () => {
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

test('Σ k·P (mulAddVar) equals noble, including doubling and cancelling inputs', () => {
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
  // P + P: the sum of equal points (a doubling).
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
  // SEC1 "hybrid" encodings (06/07 ‖ x ‖ y), which libsecp256k1's parser would take, are not points here.
  assert.equal(parsePoint('06' + NG.toHex(false).slice(2)), undefined);
  assert.equal(parsePoint('07' + NG.toHex(false).slice(2)), undefined);
  // A 04 prefix with only an x is not a point either.
  assert.equal(parsePoint('04' + GHEX.slice(2)), undefined);
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
  // Held as prepareP2pk holds them (KeyTables.acquire pins), given back by the verification's release.
  for (const t of tables.values()) t.pin();
  const checks = { items, swap: false, release: () => tables.forEach((t) => t.unpin()) };
  const pending = verifyDleqChunked(checks, 4); // the first chunk runs now, the rest after turns of the loop
  for (const t of tables.values()) t.dispose();
  const others = Array.from({ length: 8 }, () => new FixedBase(affineOf(NG.multiply(randScalar())), 8));
  await pending; // throws if a table was freed under it, or if a reused block corrupted it
  const k = randScalar();
  same(others[0]!.mul(k), pointFromHex(toCompressedHex(others[0]!.base)).multiply(k));
  for (const t of tables.values()) assert.throws(() => t.mul(1n), /after dispose/, 'freed once the verification ended');
});

// ---- mint-key tables held by P2PK verifications ----------------------------------------------------------

const OURS = NG.multiply(randScalar()).toHex(true);
const P2PK_OPTS = { ourPubkey: OURS, requireDleq: true, nowSecs: 0, minLocktimeSecs: 0 };

/** A keyset whose amounts 1, 2, 4, … 2^(h-1) each have their own key, with the private keys to sign. */
function mintKeyset(h: number) {
  const ks = createNewMintKeys(h as Parameters<typeof createNewMintKeys>[0]);
  const keys = Object.fromEntries(Object.entries(ks.pubKeys).map(([a, k]) => [a, hex(k)]));
  const keyset: KnownKeyset = { id: ks.keysetId, unit: 'sat', active: true, inputFeePpk: 0, keys };
  return { keyset, priv: ks.privKeys };
}

/** A token of proofs locked to OURS with valid DLEQs, one per [keyset, amount]; `forge` signs one with a wrong key. */
function p2pkToken(parts: Array<[ReturnType<typeof mintKeyset>, number]>, forge?: number): CheckedToken {
  const proofs: CheckedProof[] = parts.map(([{ keyset, priv }, amount], i) => {
    const secret = createP2PKsecret(OURS);
    const bm = blindMessage(new TextEncoder().encode(secret));
    const k = priv[i === forge ? (amount === 1 ? 2 : 1) : amount]!;
    const sig = createBlindSignature(bm.B_, k, keyset.id);
    const dleq = createDLEQProof(bm.B_, k);
    const C = unblindSignature(sig.C_, bm.r, pointFromHex(keyset.keys[String(amount)]!));
    const proof: Proof = { id: keyset.id, amount: Amount.from(amount), secret, C: C.toHex(true), dleq: { e: hex(dleq.e), s: hex(dleq.s), r: bm.r.toString(16).padStart(64, '0') } };
    const { point, hex: y } = hashToCurve(secret);
    return { proof, amount, keyset, y, Y: point };
  });
  return { proofs, total: proofs.reduce((n, p) => n + p.amount, 0), fee: 0, ys: proofs.map((p) => p.y) };
}

test('a P2PK token using more mint keys than the table cache holds verifies; the cache shrinks back after', async () => {
  const ks = mintKeyset(8);
  const tables = new KeyTables(4);
  // 8 distinct keys (twice the cache) and repeats: building the later tables must not free the earlier ones.
  const token = p2pkToken([1, 2, 4, 8, 16, 32, 64, 128, 1, 128].map((a) => [ks, a]));
  const checks = prepareP2pk(token, { tables }, P2PK_OPTS);
  assert.equal(tables.size, 8, 'held tables are never dropped, even past the cap');
  const held = [...new Set(checks.items.map((it) => it.key))];
  assert.equal(held.length, 8);
  assert.ok(held.every((t) => t.pinned));
  const pending = verifyDleqChunked(checks, 3);
  // Another request warms other keys meanwhile: it may only drop tables nobody holds.
  for (const key of Object.values(mintKeyset(4).keyset.keys)) tables.get(key);
  assert.ok(tables.size >= 8);
  await pending;
  assert.equal(tables.size, 4, 'back to the cap once released');
  assert.ok(held.every((t) => !t.pinned));
  const k = randScalar();
  const dropped = held.filter((t) => {
    try {
      same(t.mul(k), pointFromHex(toCompressedHex(t.base)).multiply(k));
      return false;
    } catch (err) {
      assert.match((err as Error).message, /after dispose/);
      return true;
    }
  });
  assert.ok(dropped.length >= 4, 'the dropped tables were freed');
  // The same token passes again through the all-at-once path, which releases too.
  verifyP2pkProofs(token, { tables }, P2PK_OPTS);
  assert.equal(tables.size, 4);
});

test('interleaved chunked verifications of tokens sharing and not sharing keys keep their tables', async () => {
  const one = mintKeyset(6);
  const two = mintKeyset(6);
  const tables = new KeyTables(3);
  const a = p2pkToken([1, 2, 4, 8, 16, 1, 2].map((x) => [one, x]));
  const b = p2pkToken([[one, 8], [one, 16], [two, 1], [two, 2], [two, 4], [one, 8]]);
  const forged = p2pkToken([[two, 4], [two, 8], [two, 16], [one, 32], [two, 32]], 4); // fails in its second chunk
  const ca = prepareP2pk(a, { tables }, P2PK_OPTS);
  const va = verifyDleqChunked(ca, 2); // first chunk now, the rest between the others
  const cb = prepareP2pk(b, { tables }, P2PK_OPTS);
  const vb = verifyDleqChunked(cb, 2);
  const cf = prepareP2pk(forged, { tables }, P2PK_OPTS);
  const vf = verifyDleqChunked(cf, 3);
  const shared = ca.items.find((it) => cb.items.some((jt) => jt.key === it.key));
  assert.ok(shared, 'a key both tokens use has one table');
  assert.equal(tables.size, 5 + 3 + 4, 'every held key is cached once');
  await assert.rejects(vf, (err) => err instanceof Rejection && /DLEQ proof does not verify/.test(err.message));
  await Promise.all([va, vb]);
  for (const c of [ca, cb, cf]) assert.ok(c.items.every((it) => !it.key.pinned), 'all released, the rejected one too');
  assert.equal(tables.size, 3);
  ca.release(); // releasing twice changes nothing
  assert.equal(tables.size, 3);
});

test('a Rejection halfway through prepareP2pk holds no table', () => {
  const ks = mintKeyset(4);
  const tables = new KeyTables(2);
  const token = p2pkToken([1, 2, 4, 8].map((a) => [ks, a]));
  // The last proof's key is not a curve point: found only after the other four tables were built and held.
  const bad: KnownKeyset = { ...ks.keyset, keys: { ...ks.keyset.keys, '8': '02' + '00'.repeat(32) } };
  token.proofs[3] = { ...token.proofs[3]!, keyset: bad };
  assert.throws(() => prepareP2pk(token, { tables }, P2PK_OPTS), (err) => err instanceof Rejection && /not a curve point/.test(err.message));
  assert.equal(tables.size, 2, 'nothing stays held: the cache is back at its cap');
  const t = tables.acquire(ks.keyset.keys['1']!)!;
  const k = randScalar();
  same(t.mul(k), pointFromHex(ks.keyset.keys['1']!).multiply(k));
  tables.release([t]);
});

test(`a token whose proofs use more than ${MAX_TOKEN_KEYS} distinct mint keys is refused before any table is built`, () => {
  const ks = mintKeyset(MAX_TOKEN_KEYS + 1);
  const tables = new KeyTables(8);
  const amounts = Array.from({ length: MAX_TOKEN_KEYS + 1 }, (_, i) => 2 ** i);
  const over = p2pkToken(amounts.map((a) => [ks, a]));
  assert.throws(
    () => prepareP2pk(over, { tables }, P2PK_OPTS),
    (err) => err instanceof Rejection && err.message.includes(`${MAX_TOKEN_KEYS + 1} distinct mint keys`) && err.message.includes(`at most ${MAX_TOKEN_KEYS}`),
  );
  assert.equal(tables.size, 0, 'no table was built');
  // At the limit (plus a repeat, which is no new key) the token verifies, and its tables are released.
  verifyP2pkProofs(p2pkToken([...amounts.slice(0, MAX_TOKEN_KEYS), 1].map((a) => [ks, a])), { tables }, P2PK_OPTS);
  assert.equal(tables.size, 8);
});

test('the key-table cache never drops a held table, counts holders, and shrinks to its cap when released', () => {
  const keys = Array.from({ length: 5 }, () => NG.multiply(randScalar()).toHex(true));
  const tables = new KeyTables(2);
  const [a, b, c] = keys.slice(0, 3).map((h) => tables.acquire(h)!);
  assert.equal(tables.size, 3);
  const a2 = tables.acquire(keys[0]!)!;
  assert.equal(a2, a, 'one table per key, held twice');
  const d = tables.get(keys[3]!)!; // unheld: the only table that may make room for the next one
  tables.get(keys[4]!);
  assert.equal(tables.size, 4);
  assert.throws(() => d.mul(1n), /after dispose/);
  tables.release([a!]);
  assert.ok(a!.pinned, 'still held by its second holder');
  const k = randScalar();
  for (const [t, h] of [[a, keys[0]], [b, keys[1]], [c, keys[2]]] as const) same(t!.mul(k), pointFromHex(h!).multiply(k));
  assert.equal(tables.size, 3);
  tables.release([a2, b!, c!]);
  assert.equal(tables.size, 2);
  assert.throws(() => b!.mul(k), /after dispose/, 'the least recently used was dropped and freed');
  same(a!.mul(k), pointFromHex(keys[0]!).multiply(k));
  assert.equal(tables.acquire('02' + '00'.repeat(32)), undefined);
});

test('a P2PK token that will be swapped (no DLEQ with require_dleq off, or a locktime) builds and holds no table', () => {
  const ks = mintKeyset(4);
  const tables = new KeyTables(8);
  const bare = p2pkToken([[ks, 1], [ks, 2]]);
  for (const c of bare.proofs) delete c.proof.dleq;
  const noDleq = prepareP2pk(bare, { tables }, { ...P2PK_OPTS, requireDleq: false });
  assert.deepEqual([noDleq.swap, noDleq.items.length, tables.size], [true, 0, 0]);
  assert.throws(() => prepareP2pk(bare, { tables }, P2PK_OPTS), /no DLEQ proof/);
  const plain = prepareP2pk(p2pkToken([[ks, 4]]), { tables }, P2PK_OPTS);
  assert.deepEqual([plain.swap, plain.items.length, tables.size], [false, 1, 1], 'a stored token is verified here');
  plain.release();
});
