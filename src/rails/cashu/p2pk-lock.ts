// NUT-10/NUT-11: is a received proof spendable by us and by nobody else, for long enough to redeem it?
// Proofs stored as received (P2PK mode without a swap) must have no other spending path: extra signers, a
// refund path, an expired or soon-expiring locktime, SIG_ALL (which we cannot satisfy alone at melt time)
// or tags we do not understand would let someone else take the money after we served the request. (Tokens
// with a locktime are swapped on arrival all the same; the checks here still refuse what is unsafe.)
// The secret is read with a strict parser: the mint (cdk, serde_json) refuses duplicate keys and lone
// surrogates and would then treat the proof as an unlocked secret, so JSON.parse's reading is not the mint's.
// Refund conditions cdk cannot parse make the proof unspendable for us too, so they are refused as well.

import { parsePoint } from './secp256k1.js';
import { parseStrictJson } from './strict-json.js';

export type LockCheck = { ok: true; locktime?: number } | { ok: false; reason: string };

const MAX_SECRET_CHARS = 2048;
const KNOWN_TAGS = new Set(['sigflag', 'pubkeys', 'n_sigs', 'locktime', 'refund', 'n_sigs_refund']);

const fail = (reason: string): LockCheck => ({ ok: false, reason });
const isCompressedPubkey = (k: string) => /^0[23][0-9a-fA-F]{64}$/.test(k) && parsePoint(k) !== undefined;

/**
 * Checks that `secret` is a NUT-10 P2PK secret locked to exactly `ourPubkey` (compressed hex) with
 * SIG_INPUTS, no other signer, no refund path, and either no locktime or one at least `minLocktimeSecs`
 * in the future.
 */
export function checkP2pkLock(secret: string, ourPubkey: string, opts: { nowSecs: number; minLocktimeSecs: number }): LockCheck {
  if (typeof secret !== 'string' || secret.length === 0 || secret.length > MAX_SECRET_CHARS) return fail('proof secret is missing or too long');
  if (secret[0] !== '[') return fail('proof is not locked to this gate (P2PK required)');
  let parsed: unknown;
  try {
    parsed = parseStrictJson(secret);
  } catch {
    return fail('proof secret is not strict NUT-10 JSON (malformed, duplicate key or lone surrogate)');
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || typeof parsed[0] !== 'string') return fail('proof secret is not a NUT-10 secret');
  if (parsed[0] !== 'P2PK') return fail(`proof is locked with ${String(parsed[0]).slice(0, 16)}, not P2PK to this gate`);
  const body = parsed[1] as Record<string, unknown>;
  if (!body || typeof body !== 'object' || Array.isArray(body)) return fail('P2PK secret body is malformed');
  for (const k of Object.keys(body)) if (k !== 'nonce' && k !== 'data' && k !== 'tags') return fail(`P2PK secret has unknown field "${k.slice(0, 24)}"`);
  if (typeof body.nonce !== 'string' || body.nonce.length === 0) return fail('P2PK secret has no nonce');
  if (typeof body.data !== 'string' || body.data.toLowerCase() !== ourPubkey) return fail("proof is locked to another key, not this gate's");

  const tags = body.tags ?? [];
  if (!Array.isArray(tags)) return fail('P2PK tags are malformed');
  const seen = new Map<string, string[]>();
  for (const t of tags) {
    if (!Array.isArray(t) || t.length < 1 || !t.every((x) => typeof x === 'string')) return fail('P2PK tag is malformed');
    const [key, ...values] = t as string[];
    if (!KNOWN_TAGS.has(key!)) return fail(`P2PK tag "${key!.slice(0, 24)}" is not understood by this gate`);
    if (seen.has(key!)) return fail(`P2PK tag "${key}" appears twice`);
    seen.set(key!, values);
  }

  const sigflag = seen.get('sigflag');
  if (sigflag && (sigflag.length !== 1 || sigflag[0] !== 'SIG_INPUTS')) return fail('only SIG_INPUTS P2PK proofs are accepted');
  if (seen.has('pubkeys')) return fail('proof lists additional signers (pubkeys tag); it must be locked to this gate alone');
  const nSigs = seen.get('n_sigs');
  if (nSigs && (nSigs.length !== 1 || nSigs[0] !== '1')) return fail('proof requires more than one signature');
  if (seen.has('refund') && !seen.has('locktime')) return fail('proof has refund keys without a locktime');
  if (seen.has('n_sigs_refund') && !seen.has('refund')) return fail('proof has n_sigs_refund without refund keys');
  const refund = seen.get('refund');
  if (refund && (refund.length === 0 || !refund.every(isCompressedPubkey))) return fail('proof has malformed refund keys');
  const nSigsRefund = seen.get('n_sigs_refund');
  if (nSigsRefund && (nSigsRefund.length !== 1 || !/^[1-9]\d{0,2}$/.test(nSigsRefund[0]!) || Number(nSigsRefund[0]) > refund!.length)) {
    return fail('proof has malformed refund keys (n_sigs_refund must be 1..number of refund keys)');
  }

  const lt = seen.get('locktime');
  if (!lt) return { ok: true };
  if (lt.length !== 1 || !/^\d{1,12}$/.test(lt[0]!)) return fail('P2PK locktime is malformed');
  const locktime = Number(lt[0]);
  if (locktime <= opts.nowSecs) {
    return fail(seen.has('refund') ? 'locktime has passed: the refund keys can spend this proof' : 'locktime has passed: anyone can spend this proof');
  }
  if (locktime < opts.nowSecs + opts.minLocktimeSecs) {
    return fail(`locktime is too soon: this gate needs at least ${opts.minLocktimeSecs} s before the sender can reclaim`);
  }
  return { ok: true, locktime };
}
