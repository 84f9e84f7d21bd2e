// Minting a challenge: one invoice from the backend, one macaroon committing to its payment hash.
import type { InvoiceMinter } from './ports.js';
import { encodeIdentifier, newTokenId } from '../protocol/identifier.js';
import { encodeMacaroonBase64, mintMacaroon } from '../protocol/macaroon.js';
import { mintCaveats } from '../protocol/caveats.js';
import { tokenRootKey } from '../protocol/root-key.js';
import { soldScope, type RouteConfig } from './route-config.js';
import { withTimeout } from '../util/timeout.js';
import { mintedInvoice } from './minted-invoice.js';

export interface Challenge {
  macaroon: string;
  invoice: string;
  paymentHash: string;
  amountMsat: number;
  /** Unix seconds when the invoice expires. */
  invoiceExpiresAt: number;
  /** Unix seconds when the credential stops being valid, if it ever does. */
  validUntil?: number;
}

export interface ChallengeDeps {
  backend: InvoiceMinter;
  rootKey: Buffer;
  service: string;
  location: string;
  memo: string;
  invoiceExpirySecs: number;
  backendTimeoutMs: number;
  now?: () => number;
}

export class BackendError extends Error {}

export async function createChallenge(
  route: RouteConfig,
  req: { path: string; method: string; amountMsat: number; /** The path has its own price: bind a reusable credential to it. */ pathPriced?: boolean },
  deps: ChallengeDeps,
): Promise<Challenge> {
  const now = (deps.now ?? (() => Math.floor(Date.now() / 1000)))();
  // A balance route sells its balance_msat of credit; requests then draw the price.
  const amountMsat = route.access === 'balance' && route.balanceMsat !== undefined ? route.balanceMsat : req.amountMsat;
  // The invoice lives no longer than the time sold (and at least a minute, which a payer needs)...
  const expirySecs = route.macaroonTimeout > 0 ? Math.max(60, Math.min(deps.invoiceExpirySecs, route.macaroonTimeout)) : deps.invoiceExpirySecs;
  let returned;
  try {
    returned = await withTimeout(
      deps.backend.createInvoice({ amountMsat, memo: deps.memo, expirySecs }, AbortSignal.timeout(deps.backendTimeoutMs)),
      deps.backendTimeoutMs,
      'createInvoice',
    );
  } catch (e) {
    throw new BackendError(`${deps.backend.kind} createInvoice failed: ${(e as Error).message}`);
  }
  // Whatever a backend returns goes into a response header: refuse anything malformed (a 503, not a bad 402).
  // An invoice that a backend made to live longer than asked counts up to the longest invoice life the config allows.
  const invoice = mintedInvoice(returned, now);
  if (!invoice) throw new BackendError(`${deps.backend.kind} returned a malformed invoice`);
  // ...and the credential's expiry is counted from the invoice's: one paid at its last second still buys the
  // whole macaroon_timeout, never a credential that has expired already (money taken for nothing).
  const validUntil = route.macaroonTimeout > 0 ? invoice.expiresAt + route.macaroonTimeout : undefined;
  // A single-use credential pays for this one request; reusable ones cover the route, or only the path
  // when that path is priced on its own.
  // A balance covers its plan (or route): never bound to a path, each request draws that path's price.
  const perRequest = route.access === 'per-request';
  const balance = route.access === 'balance' ? route.balanceMsat : undefined;
  const caveats = mintCaveats({
    service: deps.service,
    routeId: soldScope(route),
    path: balance === undefined && (perRequest || req.pathPriced) ? req.path : undefined,
    methods: perRequest ? [req.method] : route.methods,
    validUntil,
    singleUse: perRequest,
    balanceMsat: balance,
    capabilities: route.capabilities,
  });
  // The token id records how many caveats were minted: what was sold is read from those alone.
  const tokenId = newTokenId(caveats.length);
  const mac = mintMacaroon(tokenRootKey(deps.rootKey, tokenId), encodeIdentifier(invoice.paymentHash, tokenId), deps.location, caveats);
  return {
    macaroon: encodeMacaroonBase64(mac),
    invoice: invoice.bolt11,
    paymentHash: invoice.paymentHash.toString('hex'),
    amountMsat,
    invoiceExpiresAt: invoice.expiresAt,
    validUntil,
  };
}
