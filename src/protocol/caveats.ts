// Caveats we mint and the fail-closed verifier for them. Every caveat present must be satisfied, so a
// repeated caveat can only narrow (a client may attenuate, never widen). Unknown caveats fail. What was sold
// (route, path binding, methods, uses, expiry) is read from the caveats l402d minted only, never from ones a
// holder appended: their number is recorded in the token id (identifier.ts).
import { createHash, timingSafeEqual } from 'node:crypto';
import { hasRawBytes, pathBytes } from './path-bytes.js';

export interface CaveatContext {
  service: string;
  routeId: string;
  path: string;
  method: string;
  /** Unix seconds. */
  now: number;
  paymentHash: Buffer;
}

export interface MintOptions {
  service: string;
  routeId: string;
  /** Bind to this exact path (single-use credentials are bought for one request). */
  path?: string;
  methods?: readonly string[];
  /** Unix seconds. */
  validUntil?: number;
  /** Sold for one request (`uses=1`): spent once even if its route is later made reusable. */
  singleUse?: boolean;
  /** Sold as a prepaid balance of this many msat (`balance_msat=N`), drawn per request. */
  balanceMsat?: number;
}

/** Longer paths are bound by their hash, so a credential for a long URL still fits in a request header. */
const MAX_LITERAL_PATH = 256;

/** Over the path's bytes (its UTF-8 for a UTF-8 path), so two different byte paths never share a binding. */
function sha256Hex(path: string): string {
  return createHash('sha256').update(pathBytes(path)).digest('hex');
}

export function mintCaveats(o: MintOptions): string[] {
  const out = [`services=${o.service}:0`, `route=${o.routeId}`];
  // A path with bytes that are not UTF-8 cannot be a caveat's text (it would turn into U+FFFD and name
  // another path): it is bound by the hash of its bytes.
  if (o.path !== undefined) out.push(o.path.length <= MAX_LITERAL_PATH && !hasRawBytes(o.path) ? `path=${o.path}` : `path_sha256=${sha256Hex(o.path)}`);
  if (o.methods && o.methods.length > 0) out.push(`method=${o.methods.join(',')}`);
  if (o.singleUse) out.push('uses=1');
  if (o.validUntil !== undefined) out.push(`${o.service}_valid_until=${o.validUntil}`);
  if (o.balanceMsat !== undefined) out.push(`balance_msat=${o.balanceMsat}`);
  return out;
}

/**
 * What was sold, read from the caveats l402d minted (the first `minted` ones) and nothing else: a holder can
 * append caveats (the HMAC chain allows it) but never remove or change these.
 */
export interface SoldFacts {
  routeId: string;
  /** Bound to one path (a path or path_sha256 caveat was minted). */
  pathBound: boolean;
  /** Methods minted, if any. */
  methods?: string[];
  /** Sold for one request (`uses=1` minted). */
  singleUse: boolean;
  /** Unix seconds: the expiry minted, if any. */
  validUntil?: number;
  /** Sold as a prepaid balance: the msat its payment bought (`balance_msat` minted). */
  balanceMsat?: number;
}

export type CaveatVerdict =
  | {
      ok: true;
      preimage?: Buffer;
      /** What was sold (minted caveats only): the only source for anything that could widen access. */
      sold: SoldFacts;
      /** Unix seconds: the earliest expiry of all caveats, minted or appended (they only narrow). */
      validUntil?: number;
      /** Some caveat, minted or appended, says `uses=1`: spend it once. */
      singleUse: boolean;
    }
  | { ok: false; reason: 'expired' | 'wrong_route' | 'wrong_path' | 'wrong_method' | 'wrong_service' | 'wrong_preimage' | 'unknown_caveat' | 'malformed_caveat' };

/**
 * Every caveat, minted or appended, must be satisfied (so appended ones only narrow). `minted` is how many of
 * the leading caveats l402d minted (from the token id); the sold facts come from those alone, and a credential
 * whose minted prefix lacks its service or route caveat, or claims more caveats than it has, is refused.
 */
export function checkCaveats(predicates: readonly string[], ctx: CaveatContext, minted: number): CaveatVerdict {
  if (!Number.isInteger(minted) || minted < 2 || minted > predicates.length) return { ok: false, reason: 'malformed_caveat' };
  let preimage: Buffer | undefined;
  let validUntil: number | undefined;
  let singleUse = false;
  const sold: Omit<SoldFacts, 'routeId'> = { pathBound: false, singleUse: false };
  let soldRoute: string | undefined;
  let soldService = false;
  for (const [i, p] of predicates.entries()) {
    const isMinted = i < minted;
    const eq = p.indexOf('=');
    if (eq <= 0) return { ok: false, reason: 'malformed_caveat' };
    const name = p.slice(0, eq).trim();
    // Values we compare for identity (path, route) are taken byte for byte: a path may legitimately start
    // or end with whitespace ("/premium%20"), and trimming it would refuse the credential bought for it.
    // Only values with a closed syntax (numbers, hex, method and service lists) tolerate surrounding space.
    const exact = p.slice(eq + 1);
    const value = exact.trim();
    switch (name) {
      case 'services': {
        const names = value.split(',').map((s) => s.split(':')[0]?.trim());
        if (!names.includes(ctx.service)) return { ok: false, reason: 'wrong_service' };
        if (isMinted) soldService = true;
        break;
      }
      case `${ctx.service}_valid_until`: {
        if (!/^\d{1,12}$/.test(value)) return { ok: false, reason: 'malformed_caveat' };
        const t = Number(value);
        if (!(ctx.now < t)) return { ok: false, reason: 'expired' };
        validUntil = validUntil === undefined ? t : Math.min(validUntil, t);
        if (isMinted) sold.validUntil = sold.validUntil === undefined ? t : Math.min(sold.validUntil, t);
        break;
      }
      case 'route':
        if (exact !== ctx.routeId) return { ok: false, reason: 'wrong_route' };
        if (isMinted) soldRoute = exact;
        break;
      case 'path':
        if (exact !== ctx.path) return { ok: false, reason: 'wrong_path' };
        if (isMinted) sold.pathBound = true;
        break;
      case 'path_sha256':
        if (value !== sha256Hex(ctx.path)) return { ok: false, reason: 'wrong_path' };
        if (isMinted) sold.pathBound = true;
        break;
      case 'uses':
        if (value !== '1') return { ok: false, reason: 'malformed_caveat' };
        singleUse = true;
        if (isMinted) sold.singleUse = true;
        break;
      case 'method': {
        const methods = value.split(',').map((m) => m.trim().toUpperCase());
        if (!methods.includes(ctx.method)) return { ok: false, reason: 'wrong_method' };
        if (isMinted) sold.methods = sold.methods ? sold.methods.filter((m) => methods.includes(m)) : methods;
        break;
      }
      case 'balance_msat':
        // What a payment bought is l402d's to say: a holder's own balance_msat widens nothing, so it is refused.
        if (!isMinted) return { ok: false, reason: 'unknown_caveat' };
        if (!/^[1-9]\d{0,15}$/.test(value) || sold.balanceMsat !== undefined) return { ok: false, reason: 'malformed_caveat' };
        sold.balanceMsat = Number(value);
        break;
      case 'preimage': {
        // Spec'd client attenuation (gRPC metadata carries the preimage this way).
        if (!/^[0-9a-fA-F]{64}$/.test(value)) return { ok: false, reason: 'malformed_caveat' };
        const pre = Buffer.from(value, 'hex');
        if (!preimageMatches(pre, ctx.paymentHash)) return { ok: false, reason: 'wrong_preimage' };
        preimage = pre;
        break;
      }
      default:
        return { ok: false, reason: 'unknown_caveat' };
    }
  }
  // l402d always mints its service and route: a minted prefix without them is not one it minted.
  if (!soldService) return { ok: false, reason: 'wrong_service' };
  if (soldRoute === undefined) return { ok: false, reason: 'wrong_route' };
  return { ok: true, preimage, sold: { ...sold, routeId: soldRoute }, validUntil, singleUse };
}

export function preimageMatches(preimage: Buffer, paymentHash: Buffer): boolean {
  if (preimage.length !== 32 || paymentHash.length !== 32) return false;
  return timingSafeEqual(createHash('sha256').update(preimage).digest(), paymentHash);
}
