// The one interface every Lightning backend implements. The decision core only sees this.
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

export type InvoiceState =
  | { state: 'settled'; preimage: Buffer }
  | { state: 'open' | 'expired' | 'canceled' | 'unknown' };

export interface LightningBackend {
  /** Short name for logs and metrics, e.g. "dev", "lnd". */
  readonly kind: string;
  createInvoice(req: InvoiceRequest, signal?: AbortSignal): Promise<CreatedInvoice>;
  /** Optional: settlement lookup by payment hash (auto-detect). */
  lookupInvoice?(paymentHash: Buffer, signal?: AbortSignal): Promise<InvoiceState>;
  /** One line an operator can read, without secrets. */
  describe(): string;
  close(): Promise<void>;
}
