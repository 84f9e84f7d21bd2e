// What the decision core needs from the outside, in its own terms. Adapters implement these (store/ the claim
// store, rails/lightning the invoice minter, rails/cashu the Cashu acceptor); the core never imports them.

/** A fixed window's count (see ClaimStore.incrWindow). */
export interface WindowCount {
  count: number;
  /** Seconds until the window resets (>= 1). */
  resetInSecs: number;
}

/** The shared state the core reads and claims in (single use, rate limits, prices, pending invoices). */
export interface ClaimStore {
  /**
   * Atomically records `key` (with `value`, default "1"). True only for the first caller; `ttlSecs`
   * undefined keeps it forever.
   */
  claimOnce(key: string, ttlSecs?: number, value?: string): Promise<boolean>;
  /** Deletes `key` only while it holds `value` (a claim of ours); true if it did. */
  delIfValue(key: string, value: string): Promise<boolean>;
  /** Sets `key` to `next` only while it holds `expected` (its expiry unchanged); true if it did. Atomic. */
  replaceIfValue(key: string, expected: string, next: string): Promise<boolean>;
  get(key: string): Promise<string | undefined>;
  /** Sets `key` (ttlSecs undefined: for ever). Every adapter has it; optional so a partial test double still fits. */
  set?(key: string, value: string, ttlSecs?: number): Promise<void>;
  /** Fixed-window counter: increments and returns the count in the current window. */
  incrWindow(key: string, windowSecs: number): Promise<WindowCount>;
  // Prepaid balances (policy/balance.ts): every adapter has them; optional so a partial test double still fits.
  creditBalance?: BalanceLedger['creditBalance'];
  drawBalance?: BalanceLedger['drawBalance'];
  refundDraw?: BalanceLedger['refundDraw'];
  getBalance?: BalanceLedger['getBalance'];
}

/**
 * A prepaid balance in msat under one key, changed only by single atomic store operations (a Lua script in
 * Redis, one immediate transaction in SQLite), so concurrent draws from several processes never overdraw it
 * and never lose one. Credits are idempotent by credit id (a payment hash, a Cashu token's hash): the same
 * payment is credited once however often it is presented. Draws are recorded by draw id (the request's id),
 * so nginx's retry of the same request draws once, and an unserved request's draw can be given back once.
 */
export interface BalanceLedger {
  /** Adds `amountMsat` unless `creditId` was credited already. `ttlSecs` (re)sets the balance's lifetime; undefined: for ever. */
  creditBalance(key: string, amountMsat: number, creditId: string, ttlSecs?: number): Promise<{ credited: boolean; balanceMsat: number }>;
  /**
   * Takes `amountMsat` if at least that much is left; recorded under `drawId` for `holdSecs` (owned by `owner`).
   * A draw id already recorded for at least `amountMsat` is not drawn again (nginx's retry of one request): it
   * answers ok, and the record passes to this `owner`. Recorded for less (the same request redirected inside
   * nginx to a dearer route of the plan), only the difference is taken and the record raised to `amountMsat`;
   * when the difference is not left, the earlier draw is given back with its record and the answer is not ok.
   */
  drawBalance(key: string, amountMsat: number, drawId: string, owner: string, holdSecs: number): Promise<{ ok: boolean; balanceMsat: number }>;
  /** Gives back the draw recorded under `drawId` (only while `owner` holds it, when given), once. */
  refundDraw(key: string, drawId: string, owner?: string): Promise<{ refunded: boolean; balanceMsat: number }>;
  /** What is left (0 when there is no balance). */
  getBalance(key: string): Promise<number>;
}

export interface InvoiceRequest {
  amountMsat: number;
  memo: string;
  expirySecs: number;
}

export interface CreatedInvoice {
  bolt11: string;
  /** 32 bytes; the macaroon identifier commits to it. */
  paymentHash: Buffer;
  /** Unix seconds. */
  expiresAt: number;
}

/** Mints the invoice a challenge sells (a Lightning backend). */
export interface InvoiceMinter {
  /** Short name for logs and errors, e.g. "dev", "lnd". */
  readonly kind: string;
  createInvoice(req: InvoiceRequest, signal?: AbortSignal): Promise<CreatedInvoice>;
}

/** The Cashu rail as the core sees it (see rails/cashu). */
export interface CashuAcceptor {
  accept(
    token: string,
    priceMsat: number,
    ctx: { routeId: string; tenant?: string },
    signal?: AbortSignal,
  ): Promise<{ ok: true; amountMsat: number } | { ok: false; status: 400 | 503; reason: string }>;
}
