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
  /** Fixed-window counter: increments and returns the count in the current window. */
  incrWindow(key: string, windowSecs: number): Promise<WindowCount>;
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
