// A top-up for a prepaid balance (access: balance): a new invoice bound to the presented credential's token id.
// The 402 that answers an empty balance carries the client's own macaroon with this invoice; the store
// records which token the invoice credits (storeKeys.balanceTopup, by its payment hash). Paying it and
// presenting `L402 <same macaroon>:<top-up preimage>` credits the balance once (policy/balance.ts): the
// credential stays the same and carries no balance, the store keeps it.
import { decodeIdentifier, mintedCaveatCount } from '../protocol/identifier.js';
import { caveatPredicates, decodeMacaroon, encodeMacaroonBase64 } from '../protocol/macaroon.js';
import { checkCaveats } from '../protocol/caveats.js';
import { signedByTokenKey } from '../protocol/root-key.js';
import { storeKeys } from './store-keys.js';
import { requestCredential } from './credential-cookie.js';
import { soldScope, type RouteConfig } from './route-config.js';
import { balanceTtlSecs, topupRecord } from './balance.js';
import type { ClaimStore, InvoiceMinter } from './ports.js';
import { BackendError, type Challenge } from './challenge.js';
import type { CredentialHeaders } from '../protocol/l402-header.js';
import { withTimeout } from '../util/timeout.js';
import { mintedInvoice } from './minted-invoice.js';

/** A top-up record lives this long when its credential never expires (a payer may present the preimage late). */
export const TOPUP_RECORD_SECS = 30 * 86_400;

export interface TopupDeps {
  rootKeys: readonly Buffer[];
  service: string;
  store: ClaimStore;
  storeTimeoutMs: number;
  backend: InvoiceMinter;
  backendTimeoutMs: number;
  memo: string;
  invoiceExpirySecs: number;
  now?: () => number;
  unknownCaveats?: 'skip' | 'reject';
}

/** The balance credential a request carries for this route, verified (signature and every caveat but its preimage). */
export function balanceCredentialOf(credentials: CredentialHeaders, route: RouteConfig, path: string, method: string, deps: Pick<TopupDeps, 'rootKeys' | 'service' | 'now' | 'unknownCaveats'>) {
  if (route.access !== 'balance') return undefined;
  const parsed = requestCredential(credentials, route);
  if (parsed.kind !== 'l402') return undefined;
  try {
    const mac = decodeMacaroon(parsed.credential.macaroon);
    const id = decodeIdentifier(mac.identifier);
    if (!id || !signedByTokenKey(mac, id.tokenId, deps.rootKeys)) return undefined;
    const now = (deps.now ?? (() => Math.floor(Date.now() / 1000)))();
    const verdict = checkCaveats(caveatPredicates(mac), { service: deps.service, routeId: soldScope(route), path, method, now, paymentHash: id.paymentHash, unknownCaveats: deps.unknownCaveats }, mintedCaveatCount(id.tokenId));
    if (!verdict.ok || verdict.sold.balanceMsat === undefined) return undefined;
    return { mac, tokenId: id.tokenId, mintedValidUntil: verdict.sold.validUntil, validUntil: verdict.validUntil, now };
  } catch {
    return undefined;
  }
}

/** The shortest top-up invoice offered (a payer needs about a minute), and the least time left after it. */
const MIN_TOPUP_INVOICE_SECS = 60;

/**
 * Mints a top-up for the balance credential this request carries: an invoice for the route's balance_msat,
 * recorded as crediting that token. Undefined when the request carries no valid balance credential for this
 * route (the caller then sells a new one). Also answers what is left on the balance.
 */
export async function createTopup(credentials: CredentialHeaders, route: RouteConfig, path: string, method: string, deps: TopupDeps): Promise<{ challenge: Challenge; balanceMsat: number } | undefined> {
  const c = balanceCredentialOf(credentials, route, path, method, deps);
  if (!c || route.balanceMsat === undefined) return undefined;
  const amountMsat = route.balanceMsat;
  // Never an invoice that outlives the credential it credits, nor one that, paid at its last second, leaves
  // the balance no time to be drawn: it expires halfway through what is left of the credential at the latest,
  // and a credential with less than two minutes left (a one-minute invoice, a minute after it) gets none
  // (the client is sold a new credential instead).
  const lifetime = c.validUntil === undefined ? undefined : c.validUntil - c.now;
  if (lifetime !== undefined && lifetime < 2 * MIN_TOPUP_INVOICE_SECS) return undefined;
  const expirySecs = lifetime === undefined ? deps.invoiceExpirySecs : Math.min(deps.invoiceExpirySecs, Math.floor(lifetime / 2));
  let returned;
  try {
    returned = await withTimeout(deps.backend.createInvoice({ amountMsat, memo: deps.memo, expirySecs }, AbortSignal.timeout(deps.backendTimeoutMs)), deps.backendTimeoutMs, 'createInvoice');
  } catch (e) {
    throw new BackendError(`${deps.backend.kind}: createInvoice failed: ${(e as Error).message}`);
  }
  // Checked as a challenge's invoice is (policy/minted-invoice.ts): it goes into the same headers and records.
  const invoice = mintedInvoice(returned, Math.floor(Date.now() / 1000));
  if (!invoice) throw new BackendError(`${deps.backend.kind}: returned a malformed invoice`);
  const ttl = balanceTtlSecs(c.mintedValidUntil, c.now) ?? TOPUP_RECORD_SECS;
  // Recorded before the invoice is shown: a top-up that was paid is always one the store can credit.
  const recorded = await withTimeout(deps.store.claimOnce(storeKeys.balanceTopup(invoice.paymentHash), ttl, topupRecord(c.tokenId, amountMsat)), deps.storeTimeoutMs, 'store set');
  // (A payment hash the store knows already is not this fresh invoice's: never shown.)
  if (!recorded) throw new Error('top-up invoice payment hash already recorded');
  const balanceMsat = deps.store.getBalance ? await withTimeout(deps.store.getBalance(storeKeys.balance(c.tokenId)), deps.storeTimeoutMs, 'store get') : 0;
  return {
    challenge: { macaroon: encodeMacaroonBase64(c.mac), invoice: invoice.bolt11, paymentHash: invoice.paymentHash.toString('hex'), amountMsat, invoiceExpiresAt: invoice.expiresAt, validUntil: c.validUntil },
    balanceMsat,
  };
}
