// The store's key scheme, in one place: every key l402d reads or writes in the shared store (memory, SQLite,
// Redis), inside the store's own prefix (`l402:` on Redis by default, DEFAULT_STORE_PREFIX). The core owns it
// (its claims, limits and prices live there); adapters, the server and the CLI build their keys here too.
// docs/operations.md documents the operator-facing ones (prices, payees). Values are not keys: claim values
// (claim:req:…) are in claims.ts.

const hex = (h: Buffer | string) => (typeof h === 'string' ? h : h.toString('hex'));

/** The Redis prefix when the config sets none; ngx_l402's own (its replay keys are seen only under it). */
export const DEFAULT_STORE_PREFIX = 'l402:';

export const storeKeys = {
  /** A single-use L402 credential's spent mark (its payment hash). */
  claim: (paymentHash: Buffer) => `claim:l402:${hex(paymentHash)}`,
  /**
   * ngx_l402's replay key for a preimage, `l402:preimage:<hex sha256(preimage)>`, written as `preimage:<hash>`
   * inside the store's prefix: in ngx_l402's Redis, what it spent within its key TTL
   * (`L402_PREIMAGE_TTL_SECONDS`) is seen as spent, and what l402d spends (no TTL) ngx_l402 sees too.
   */
  ngxL402Claim: (paymentHash: Buffer) => `preimage:${hex(paymentHash)}`,
  /** Auto-detect: the invoice a macaroon was issued with, kept while it can be paid (written by the gate). */
  pendingInvoice: (paymentHash: Buffer | string) => `invoice:${hex(paymentHash)}`,
  /** Auto-detect: the backend said this invoice is paid (a marker, never the preimage). */
  settled: (paymentHash: Buffer) => `settled:${hex(paymentHash)}`,
  /** The invoice rate limit's window for one route and client address. */
  rateLimit: (routeId: string, clientAddr: string | undefined) => `rl:${routeId}:${clientAddr ?? 'unknown'}`,
  /** Dynamic prices (msat, decimal text), set with `l402d price`. */
  priceRoute: (routeId: string) => `price:route:${routeId}`,
  pricePath: (path: string) => `price:path:${path}`,
  /** Per-route or per-path Lightning addresses (the payee), set in the store. */
  payeeRoute: (routeId: string) => `lnurl:route:${routeId}`,
  payeePath: (path: string) => `lnurl:path:${path}`,
  /**
   * A prepaid balance (msat), by the credential's token id; its credit and draw marks share the prefix (and,
   * through the {hash tag}, the Redis Cluster slot): `<key>:credit:<id>`, `<key>:draw:<request id>`.
   */
  balance: (tokenId: Buffer | string) => `balance:{${hex(tokenId)}}`,
  /**
   * Ecash one request (nginx's request id) took to top a balance up: the token's hash and the msat credited,
   * so nginx's retry of that request credits it rather than refuse it as spent (policy/balance.ts).
   */
  balanceCashuTaken: (tokenId: Buffer | string, requestId: string) => `balance:{${hex(tokenId)}}:cashu-taken:${requestId}`,
  /** A top-up invoice minted for a balance (by its payment hash): which token it credits, and how much. */
  balanceTopup: (paymentHash: Buffer | string) => `topup:${hex(paymentHash)}`,
  /**
   * An MPP Lightning session (mpp-session-ledger.ts), by its id (the open deposit's payment hash): its record
   * (status, scope, return invoice, tag) and its balance, which shares the balance key scheme (`mpp:` keeps it
   * apart from every L402 token id, which is hex).
   */
  mppSession: (sessionId: string) => `mpp:session:${sessionId}`,
  mppSessionBalance: (sessionId: string) => `balance:{mpp:${sessionId}}`,
  /** An MPP session's last activity (open, bearer, topUp): present while it is not idle (its TTL is the idle timeout). */
  mppActive: (sessionId: string) => `mpp:active:${sessionId}`,
  /** Which session a deposit invoice (open or top-up, by payment hash) was credited to: each pays one session. */
  mppDeposit: (paymentHash: string) => `mpp:deposit:${paymentHash}`,
  /** Cashu: one proof's spent mark (its Y point, hex). */
  cashuProof: (y: string) => `cashu:y:${y}`,
  /** Cashu: a swap that finished after its request was answered 503, credited to the payer's retry. */
  cashuLate: (setId: string) => `cashu:late:${setId}`,
  cashuLateUsed: (setId: string) => `cashu:late-used:${setId}`,
  /** Cashu: the ecash one request (nginx's request id) paid with, for nginx's retry of it (policy/cashu-taken.ts). */
  cashuTaken: (requestId: string) => `cashu:taken:${requestId}`,
  /** Cashu: a swap whose outcome is unknown until recovery settles it. */
  cashuUnsettled: (setId: string) => `cashu:unsettled:${setId}`,
} as const;

/** ngx_l402's own keys, outside any prefix (pricing.legacy_keys, read-only): its bare-URI price and payee keys. */
export const ngxL402LegacyKeys = {
  price: (path: string) => path,
  payee: (path: string) => `lnurl:${path}`,
} as const;

/** Why ngx_l402's replay keys are out of sight for this store, if they are (its Redis, prefix `l402:`). */
export function ngxL402ClaimsUnseen(store: { type: string; prefix?: string }): string | undefined {
  if (store.type === 'redis' && store.prefix === DEFAULT_STORE_PREFIX) return undefined;
  return `store is ${store.type === 'redis' ? `redis with prefix "${store.prefix}"` : store.type}, not ngx_l402's Redis with prefix "${DEFAULT_STORE_PREFIX}": credentials ngx_l402 already accepted are not seen as spent, so each single-use one can pass once more`;
}
