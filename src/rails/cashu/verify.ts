// Local checks on a decoded token, shared by both modes, and the P2PK proof verification (lock + DLEQ).
// Pure functions over data already fetched: no I/O, so they are benchable and testable alone.
import type { Proof } from '@cashu/cashu-ts';
import { inputFee, type KnownKeyset, type MintDirectory } from './mint-client.js';
import { checkP2pkLock } from './p2pk-lock.js';
import { hashToCurve, parsePoint, scalarFromHex, verifyDleqBatch, type DleqInput, type FixedBase, type Point } from './secp256k1.js';

/** A payer-side problem: answered with HTTP 400 and this reason (NUT-24). */
export class Rejection extends Error {}

export interface CheckedProof {
  proof: Proof;
  amount: number;
  keyset: KnownKeyset;
  /** hash_to_curve(secret), compressed hex: the replay and NUT-07 key. */
  y: string;
  Y: Point;
  locktime?: number;
}

export interface CheckedToken {
  proofs: CheckedProof[];
  /** Face value in the unit. */
  total: number;
  /** NUT-02 input fee in the unit. */
  fee: number;
  ys: string[];
}

/**
 * Keysets, amounts, duplicates, value after the mint's input fee versus the price. Throws Rejection.
 * `keysets` are this mint's verified keysets.
 */
export function checkTokenProofs(
  proofs: Proof[],
  keysets: Map<string, KnownKeyset>,
  opts: {
    unit: string;
    priceUnits: number;
    maxProofs: number;
    nowSecs: number;
    /** A keyset must stay valid at least this long (P2PK mode keeps proofs to melt later). */
    keysetMarginSecs?: number;
  },
): CheckedToken {
  if (proofs.length === 0) throw new Rejection('token has no proofs');
  if (proofs.length > opts.maxProofs) throw new Rejection(`token has ${proofs.length} proofs; at most ${opts.maxProofs} are accepted (swap to larger denominations)`);
  const out: CheckedProof[] = [];
  const seen = new Set<string>();
  let total = 0;
  for (const p of proofs) {
    const ks = keysets.get(p.id);
    if (!ks) throw new Rejection(`proof keyset ${String(p.id).slice(0, 20)} is not a keyset of this mint`);
    if (ks.unit !== opts.unit) throw new Rejection(`proof keyset is in unit ${ks.unit}, not ${opts.unit}`);
    if (ks.finalExpiry !== undefined && ks.finalExpiry <= opts.nowSecs) throw new Rejection('proof keyset has expired');
    if (ks.finalExpiry !== undefined && ks.finalExpiry < opts.nowSecs + (opts.keysetMarginSecs ?? 0)) {
      throw new Rejection('proof keyset expires too soon for this gate to redeem it; swap to the active keyset');
    }
    const big = p.amount.toBigInt();
    if (big <= 0n || big > BigInt(Number.MAX_SAFE_INTEGER)) throw new Rejection('proof amount is out of range');
    const amount = Number(big);
    if (!(String(amount) in ks.keys)) throw new Rejection(`proof amount ${amount} has no key in its keyset`);
    if (typeof p.secret !== 'string' || p.secret.length === 0 || p.secret.length > 2048) throw new Rejection('proof secret is missing or too long');
    if (typeof p.C !== 'string' || !/^0[23][0-9a-fA-F]{64}$/.test(p.C)) throw new Rejection('proof signature C is malformed');
    const { point, hex } = hashToCurve(p.secret);
    if (seen.has(hex)) throw new Rejection('token contains the same proof twice');
    seen.add(hex);
    total += amount;
    out.push({ proof: p, amount, keyset: ks, y: hex, Y: point });
  }
  const fee = inputFee(proofs, keysets);
  if (total - fee < opts.priceUnits) {
    const unit = opts.unit;
    throw new Rejection(
      fee > 0
        ? `token is worth ${total} ${unit} minus the mint's input fee of ${fee} ${unit} (NUT-02); the price is ${opts.priceUnits} ${unit}`
        : `token is worth ${total} ${unit}; the price is ${opts.priceUnits} ${unit}`,
    );
  }
  return { proofs: out, total, fee, ys: out.map((c) => c.y) };
}

/**
 * Most distinct mint keys (keyset × amount) one P2PK token may use: each is parsed and cached as a
 * FixedBase, so this bounds the key work a token can cause, and keeps a
 * token well inside the table cache (48), so verifying it never pushes out keys it is itself using.
 */
export const MAX_TOKEN_KEYS = 32;

/**
 * A token's DLEQ checks. Their mint-key tables are held (pinned in the cache) until `release()`, so
 * nothing can free them while they are verified; verifyDleqChunked and verifyP2pkProofs release them.
 * `release` may be called more than once. `swap`: the token must be swapped at the mint rather than stored
 * (a proof without a DLEQ, allowed only with require_dleq off, or with a locktime); no table is held then.
 */
export interface DleqChecks {
  readonly items: DleqInput[];
  readonly swap: boolean;
  release(): void;
}

/**
 * P2PK mode, first half: every proof locked to `ourPubkey` alone (see p2pk-lock.ts); sets `locktime`.
 * Returns the DLEQ checks to run (present ones always, NUT-12; a missing one only passes when not
 * required), holding their tables: pass them to verifyDleqChunked (or call `release`). A token to be
 * swapped (see DleqChecks.swap) gets no checks and builds no tables: the swap proves it. Throws Rejection,
 * holding nothing then.
 */
export function prepareP2pk(
  token: CheckedToken,
  directory: Pick<MintDirectory, 'tables'>,
  opts: { ourPubkey: string; requireDleq: boolean; nowSecs: number; minLocktimeSecs: number },
): DleqChecks {
  for (const c of token.proofs) {
    if (c.proof.p2pk_e !== undefined) throw new Rejection('P2BK (blinded key) proofs are not accepted');
    const lock = checkP2pkLock(c.proof.secret, opts.ourPubkey, { nowSecs: opts.nowSecs, minLocktimeSecs: opts.minLocktimeSecs });
    if (!lock.ok) throw new Rejection(lock.reason);
    c.locktime = lock.locktime;
  }
  const keyOf = (c: CheckedProof) => c.keyset.keys[String(c.amount)]!;
  const distinct = new Set(token.proofs.map(keyOf)).size;
  if (distinct > MAX_TOKEN_KEYS) {
    throw new Rejection(`token uses ${distinct} distinct mint keys (keysets × amounts); at most ${MAX_TOKEN_KEYS} are accepted (swap to fewer denominations or one keyset)`);
  }
  // Everything that can be refused without a table, before any table is built or held.
  const checks: Array<Omit<DleqInput, 'key'> & { keyHex: string }> = [];
  let swap = false;
  for (const c of token.proofs) {
    if (c.locktime !== undefined) swap = true;
    const d = c.proof.dleq;
    if (!d) {
      if (opts.requireDleq) throw new Rejection('proof has no DLEQ proof (NUT-12); this gate requires one');
      swap = true;
      continue;
    }
    if (d.r === undefined) throw new Rejection('DLEQ proof lacks the blinding factor r');
    const e = scalarFromHex(d.e);
    const s = scalarFromHex(d.s);
    const r = scalarFromHex(d.r);
    if (e === undefined || s === undefined || r === undefined || !/^[0-9a-fA-F]{64}$/.test(d.e)) throw new Rejection('DLEQ proof is malformed');
    const C = parsePoint(c.proof.C);
    if (!C) throw new Rejection('proof signature C is not a curve point');
    checks.push({ Y: c.Y, C, e, s, r, keyHex: keyOf(c) });
  }
  if (swap) {
    for (const k of new Set(token.proofs.map(keyOf))) if (!parsePoint(k)) throw new Rejection('mint key for this amount is not a curve point');
    return { items: [], swap, release: () => undefined };
  }
  const held = new Map<string, FixedBase>();
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    directory.tables.release(held.values());
  };
  try {
    const items = checks.map(({ keyHex, ...rest }): DleqInput => {
      let key = held.get(keyHex);
      if (!key) {
        key = directory.tables.acquire(keyHex);
        if (!key) throw new Rejection('mint key for this amount is not a curve point');
        held.set(keyHex, key);
      }
      return { ...rest, key };
    });
    return { items, swap, release };
  } catch (err) {
    release();
    throw err;
  }
}

const DLEQ_REJECTION = 'DLEQ proof does not verify: a proof was not signed by the mint';

/** Second half, all at once (benchmarks, small tokens). */
export function verifyP2pkProofs(token: CheckedToken, directory: Pick<MintDirectory, 'tables'>, opts: Parameters<typeof prepareP2pk>[2]): void {
  const checks = prepareP2pk(token, directory, opts);
  try {
    if (checks.items.length && !verifyDleqBatch(checks.items).every(Boolean)) throw new Rejection(DLEQ_REJECTION);
  } finally {
    checks.release();
  }
}

/**
 * Second half for the request path: batches of `chunk` proofs with a turn of the event loop between
 * them, so a large token (about a millisecond of curve arithmetic per proof) does not stall other requests.
 * Other requests run between batches; the tables stay held (prepareP2pk acquired them) until the release
 * here, however it ends.
 */
export async function verifyDleqChunked(checks: DleqChecks, chunk = 8): Promise<void> {
  const items = checks.items;
  try {
    for (let i = 0; i < items.length; i += chunk) {
      if (i > 0) await new Promise<void>((r) => setImmediate(r));
      if (!verifyDleqBatch(items.slice(i, i + chunk)).every(Boolean)) throw new Rejection(DLEQ_REJECTION);
    }
  } finally {
    checks.release();
  }
}
