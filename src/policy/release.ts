// A paid request is either served or still paid for. When the protected upstream fails before answering
// (nginx's own 502/504: refused, reset, timed out; or the standalone proxy's connection error), the
// single-use claim THIS request made is given back, so the payer's retry of the same request passes once.
// Only a claim whose stored owner is this request's identity is deleted (compare-and-delete in the store):
// a replay, another request, or anyone who merely holds the credential can never release it.
import { decodeIdentifier } from '../protocol/identifier.js';
import { decodeMacaroon, MacaroonFormatError, verifySignature } from '../protocol/macaroon.js';
import { decodeMacaroonV1, looksLikeV1 } from '../protocol/ngx-l402.js';
import { storeKeys } from './store-keys.js';
import { signedByTokenKey } from '../protocol/root-key.js';
import { parseCashuCredential } from '../protocol/cashu-credential.js';
import { claimOwnedBy, REQUEST_ID } from './claims.js';
import type { ClaimStore } from './ports.js';
import { withTimeout } from '../util/timeout.js';
import type { RouteConfig } from './route-config.js';
import type { GateRequest } from './decide.js';
import type { RouteTable } from './routes.js';
import { requestCredential } from './credential-cookie.js';
import { otherSchemeClaimKey, otherSchemeOf } from './pay-schemes.js';
import { sessionDrawKey } from './mpp-session-decide.js';
import { refundRequestDraw } from './balance.js';

export interface ReleaseDeps {
  routes: RouteTable<RouteConfig>;
  rootKeys: readonly Buffer[];
  store: ClaimStore;
  storeTimeoutMs: number;
  /** The Cashu rail is configured. */
  cashu: boolean;
  ngxL402RootKey?: Buffer;
  /** MPP's realm (the service name). */
  realm?: string;
}

/**
 * released: this request's single-use claim was deleted (the credential pays again, once).
 * not_claimed: nothing of this request's was held (a reusable credential, or no single-use claim at all).
 * not_owned: a claim exists but is not this request's (kept: a replay, or a request that was served).
 * cashu: paid with ecash, which was swapped (or claimed for redemption) already; not given back.
 * none: no verifiable credential or no identity to release with.
 * store_unavailable: the store did not answer; the claim stays (fail closed).
 */
export type ReleaseResult = 'released' | 'not_claimed' | 'not_owned' | 'cashu' | 'none' | 'store_unavailable';

/** Gives back the claim decide() wrote for this request (any attempt at it: claimOwnedBy), if any. */
export async function releaseClaim(req: GateRequest, deps: ReleaseDeps): Promise<ReleaseResult> {
  if (req.requestId === undefined || !REQUEST_ID.test(req.requestId) || req.path === undefined) return 'none';
  const route = deps.routes.lookup(req.path, req.routePin);
  if (!route) return 'none';
  // A prepaid balance: the draw this request made (recorded under nginx's request id) goes back to it. Ecash
  // sent with the credential topped the balance up, and stays there.
  if (route.access === 'balance') {
    // An MPP session (open or bearer): the draw this request made on the session's balance.
    if (deps.realm !== undefined && otherSchemeOf(req, route) === 'mpp') {
      const key = sessionDrawKey({ ...req, path: req.path }, route, deps.rootKeys, deps.realm);
      if (key === undefined || !deps.store.refundDraw) return 'none';
      try {
        const r = await withTimeout(deps.store.refundDraw(key, req.requestId), deps.storeTimeoutMs, 'refund draw');
        return r.refunded ? 'released' : 'not_claimed';
      } catch {
        return 'store_unavailable';
      }
    }
    const cred = requestCredential(req.credentials, route);
    const tokenId = cred.kind === 'l402' ? tokenIdOf(cred.credential.macaroon, deps) : undefined;
    if (tokenId === undefined) return 'none';
    try {
      return await refundRequestDraw(deps.store, tokenId, req.requestId, deps.storeTimeoutMs);
    } catch {
      return 'store_unavailable';
    }
  }
  if (deps.cashu && route.rails.includes('cashu')) {
    const cashu = parseCashuCredential({ 'x-cashu': req.credentials.xCashu, authorization: req.credentials.authorization });
    if (cashu.kind === 'token') return 'cashu';
    if (cashu.kind === 'malformed') return 'none';
  }
  const parsed = requestCredential(req.credentials, route);
  const other = deps.realm === undefined ? undefined : otherSchemeClaimKey({ ...req, path: req.path }, route, deps.rootKeys, deps.realm);
  if (parsed.kind !== 'l402' && other === undefined) return 'none';
  const key = other ?? (parsed.kind === 'l402' ? claimKeyOf(parsed.credential.macaroon, deps) : undefined);
  if (key === undefined) return 'none';
  try {
    // Compare-and-delete on the exact value read: if another attempt at this same request took the claim
    // over in between, read again (bounded); a claim that is not this request's is never touched.
    for (let attempt = 0; attempt < 2; attempt++) {
      const held = await withTimeout(deps.store.get(key), deps.storeTimeoutMs, 'store get');
      if (held === undefined) return 'not_claimed';
      if (!claimOwnedBy(held, req.requestId)) return 'not_owned';
      if (await withTimeout(deps.store.delIfValue(key, held), deps.storeTimeoutMs, 'release claim')) return 'released';
    }
    return 'not_owned';
  } catch {
    return 'store_unavailable';
  }
}

/** The token id of one of our credentials whose signature verifies. */
function tokenIdOf(macaroon: Buffer, deps: ReleaseDeps): Buffer | undefined {
  try {
    const mac = decodeMacaroon(macaroon);
    const id = decodeIdentifier(mac.identifier);
    return id && signedByTokenKey(mac, id.tokenId, deps.rootKeys) ? id.tokenId : undefined;
  } catch (e) {
    if (e instanceof MacaroonFormatError) return undefined;
    throw e;
  }
}

/** The claim key of a credential whose signature verifies (ours, or ngx_l402's during a migration). */
function claimKeyOf(macaroon: Buffer, deps: ReleaseDeps): string | undefined {
  try {
    if (deps.ngxL402RootKey && looksLikeV1(macaroon)) {
      const mac = decodeMacaroonV1(macaroon);
      if (mac.identifier.length !== 32 || !verifySignature(mac, deps.ngxL402RootKey)) return undefined;
      return storeKeys.ngxL402Claim(mac.identifier);
    }
    const mac = decodeMacaroon(macaroon);
    const id = decodeIdentifier(mac.identifier);
    if (!id || !signedByTokenKey(mac, id.tokenId, deps.rootKeys)) return undefined;
    return storeKeys.claim(id.paymentHash);
  } catch (e) {
    if (e instanceof MacaroonFormatError) return undefined;
    throw e;
  }
}
