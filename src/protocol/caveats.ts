// Caveats we mint and the fail-closed verifier for them. Every caveat present must be satisfied, so a
// repeated caveat can only narrow (a client may attenuate, never widen). Unknown caveats fail.
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
  return out;
}

export type CaveatVerdict =
  | { ok: true; preimage?: Buffer; validUntil?: number; /** A path caveat matched: bound to this path. */ pathBound: boolean; /** Sold for one request. */ singleUse: boolean }
  | { ok: false; reason: 'expired' | 'wrong_route' | 'wrong_path' | 'wrong_method' | 'wrong_service' | 'wrong_preimage' | 'unknown_caveat' | 'malformed_caveat' };

export function checkCaveats(predicates: readonly string[], ctx: CaveatContext): CaveatVerdict {
  let preimage: Buffer | undefined;
  let validUntil: number | undefined;
  let pathBound = false;
  let singleUse = false;
  for (const p of predicates) {
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
        break;
      }
      case `${ctx.service}_valid_until`: {
        if (!/^\d{1,12}$/.test(value)) return { ok: false, reason: 'malformed_caveat' };
        const t = Number(value);
        if (!(ctx.now < t)) return { ok: false, reason: 'expired' };
        validUntil = validUntil === undefined ? t : Math.min(validUntil, t);
        break;
      }
      case 'route':
        if (exact !== ctx.routeId) return { ok: false, reason: 'wrong_route' };
        break;
      case 'path':
        if (exact !== ctx.path) return { ok: false, reason: 'wrong_path' };
        pathBound = true;
        break;
      case 'path_sha256':
        if (value !== sha256Hex(ctx.path)) return { ok: false, reason: 'wrong_path' };
        pathBound = true;
        break;
      case 'uses':
        if (value !== '1') return { ok: false, reason: 'malformed_caveat' };
        singleUse = true;
        break;
      case 'method':
        if (!value.split(',').map((m) => m.trim().toUpperCase()).includes(ctx.method)) return { ok: false, reason: 'wrong_method' };
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
  return { ok: true, preimage, validUntil, pathBound, singleUse };
}

export function preimageMatches(preimage: Buffer, paymentHash: Buffer): boolean {
  if (preimage.length !== 32 || paymentHash.length !== 32) return false;
  return timingSafeEqual(createHash('sha256').update(preimage).digest(), paymentHash);
}
