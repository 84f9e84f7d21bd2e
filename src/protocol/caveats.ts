// Caveats we mint and the verifier for them. Every caveat we know must be satisfied, so a repeated caveat can
// only narrow (a client may attenuate, never widen). A condition we do not know is skipped, as the L402
// macaroon spec requires (or refused, in strict mode), never believed: it can only fail to narrow. What was
// sold (route, path binding, methods, uses, expiry, capabilities) is read from the caveats l402d minted only,
// never from ones a holder appended: their number is recorded in the token id (identifier.ts).
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
  /**
   * Capabilities this request needs (the route's capability rules): each must be in the set that was sold
   * (`<service>_capabilities`, minted) and in every set a holder appended.
   */
  requiredCapabilities?: readonly string[];
  /**
   * A condition this verifier does not know, appended by a holder: `skip` (the L402 spec: a holder's own
   * attenuation for its delegates) or `reject` (strict). Default `skip`. In the minted prefix it always fails.
   */
  unknownCaveats?: 'skip' | 'reject';
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
  /** The capability set sold (`<service>_capabilities=a,b`), if the route sells one. */
  capabilities?: readonly string[];
}

/** A capability name, as routes may configure it and caveats may list it. */
export const CAPABILITY_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

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
  if (o.capabilities) out.push(`${o.service}_capabilities=${o.capabilities.join(',')}`);
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
  /** The capability set minted (intersection of minted `<service>_capabilities`), if any was. */
  capabilities?: string[];
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
      /**
       * Capabilities granted: the minted set narrowed by every set a holder appended. Undefined when none was
       * minted (the route sold no capability set): then no capability is granted.
       */
      capabilities?: string[];
    }
  | { ok: false; reason: 'expired' | 'wrong_route' | 'wrong_path' | 'wrong_method' | 'wrong_service' | 'wrong_preimage' | 'unknown_caveat' | 'malformed_caveat' | 'missing_capability' };

/**
 * A condition name folded so that spellings of one name meet: compatibility forms (fullwidth letters), case,
 * whitespace, control and zero-width characters, `_` and `-` ignored, and a plural or singular ending
 * (`service` for `services`, `l402_capability` for `l402_capabilities`).
 */
function fold(name: string): string {
  return name
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[\s\x00-\x1f\x7f\u00ad\u200b-\u200d\u2060_-]/g, '')
    .replace(/ies$/, 'y')
    .replace(/s$/, '');
}

/**
 * The conditions this verifier knows. A name that is none of them exactly but folds to one of them (`Route`,
 * ` route`, `path-sha256`, `L402_Valid_Until`, `service`) looks like ours and is refused as malformed, never
 * skipped: a holder who meant it as a restriction must not see it silently ignored.
 */
const conditionsOf = new Map<string, { exact: ReadonlySet<string>; folded: ReadonlySet<string> }>();
function knownConditions(service: string): { exact: ReadonlySet<string>; folded: ReadonlySet<string> } {
  let c = conditionsOf.get(service);
  if (!c) {
    const exact = ['services', 'route', 'path', 'path_sha256', 'uses', 'method', 'preimage', `${service}_valid_until`, `${service}_capabilities`, 'balance_msat'];
    c = { exact: new Set(exact), folded: new Set(exact.map(fold)) };
    // Folding (Unicode normalisation and three regular expressions per name) costs more than the rest of a
    // credential's caveat check: done once per service name. Service names come from the config, a handful.
    if (conditionsOf.size >= 64) conditionsOf.clear();
    conditionsOf.set(service, c);
  }
  return c;
}

/** `<service>_capabilities` value: a comma-separated list (may be empty: nothing). Undefined when malformed. */
function parseCapabilities(value: string): string[] | undefined {
  if (value === '') return [];
  const out = value.split(',').map((c) => c.trim());
  return out.every((c) => CAPABILITY_NAME.test(c)) ? out : undefined;
}

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
  /** Every capability set appended by a holder (each narrows the minted one). */
  const appendedCapabilities: string[][] = [];
  const { exact: known, folded } = knownConditions(ctx.service);
  for (const [i, p] of predicates.entries()) {
    const isMinted = i < minted;
    const eq = p.indexOf('=');
    // The condition's name exactly as written: only the exact names below are ours.
    const name = eq < 0 ? p : p.slice(0, eq);
    if (eq <= 0 || !known.has(name)) {
      // No name at all, or a spelling of one of ours (other case, whitespace, "-" for "_", or "route x" with
      // no "="): malformed, refused. Anything else is a condition we do not know.
      const head = eq < 0 ? (/^\s*([^\s:=]*)/.exec(p)?.[1] ?? '') : name;
      if (eq === 0 || folded.has(fold(head)) || folded.has(fold(name))) return { ok: false, reason: 'malformed_caveat' };
      // l402d minted it, so it means something this version cannot check: fail closed. Appended by a holder:
      // the L402 spec says skip it (its own restriction for its own delegates); strict mode refuses it.
      if (isMinted || ctx.unknownCaveats === 'reject') return { ok: false, reason: 'unknown_caveat' };
      continue;
    }
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
      case `${ctx.service}_capabilities`: {
        const caps = parseCapabilities(value);
        if (!caps) return { ok: false, reason: 'malformed_caveat' };
        if (isMinted) sold.capabilities = sold.capabilities ? sold.capabilities.filter((c) => caps.includes(c)) : caps;
        else appendedCapabilities.push(caps);
        break;
      }
      default:
        // Unreachable: every name in knownConditions has its case above.
        return { ok: false, reason: 'unknown_caveat' };
    }
  }
  // l402d always mints its service and route: a minted prefix without them is not one it minted.
  if (!soldService) return { ok: false, reason: 'wrong_service' };
  if (soldRoute === undefined) return { ok: false, reason: 'wrong_route' };
  // What was sold, narrowed by what holders appended; nothing appended adds a capability. None minted: none
  // granted (a credential sold before its route sold capabilities opens nothing that needs one).
  const capabilities = sold.capabilities?.filter((c) => appendedCapabilities.every((set) => set.includes(c)));
  for (const need of ctx.requiredCapabilities ?? []) {
    if (!capabilities?.includes(need)) return { ok: false, reason: 'missing_capability' };
  }
  return { ok: true, preimage, sold: { ...sold, routeId: soldRoute }, validUntil, singleUse, ...(capabilities ? { capabilities } : {}) };
}

export function preimageMatches(preimage: Buffer, paymentHash: Buffer): boolean {
  if (preimage.length !== 32 || paymentHash.length !== 32) return false;
  return timingSafeEqual(createHash('sha256').update(preimage).digest(), paymentHash);
}
