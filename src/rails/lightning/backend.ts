// The one interface every Lightning backend implements. The decision core only sees this.
import type { Logger } from '../../util/log.js';

// The invoice a challenge sells is the core's port (policy/ports.ts): every backend mints it.
export type { CreatedInvoice, InvoiceRequest } from '../../policy/ports.js';
import type { CreatedInvoice, InvoiceMinter, InvoiceRequest } from '../../policy/ports.js';

export type InvoiceState =
  | { state: 'settled'; preimage: Buffer }
  | { state: 'open' | 'expired' | 'canceled' | 'unknown' };

export interface LightningBackend extends InvoiceMinter {
  /** Short name for logs and metrics, e.g. "dev", "lnd". */
  readonly kind: string;
  createInvoice(req: InvoiceRequest, signal?: AbortSignal): Promise<CreatedInvoice>;
  /** Optional: settlement lookup by payment hash (auto-detect). Absent = auto-detect unsupported. */
  lookupInvoice?(paymentHash: Buffer, signal?: AbortSignal): Promise<InvoiceState>;
  /**
   * Optional: pays a BOLT11 invoice (an MPP session's refund to its return invoice). `amountMsat` is what to
   * send: an invoice with no amount gets exactly it, one that encodes an amount must encode exactly it. Resolves
   * once the payment completed; rejects when it did not (never retried here). Absent: this backend cannot pay,
   * and nothing that needs a payment out is offered with it. The dev wallet implements it, and lnd with pay_refunds.
   */
  payInvoice?(req: { bolt11: string; amountMsat: number }, signal?: AbortSignal): Promise<{ preimage: Buffer }>;
  /**
   * For `l402d doctor`: checks reachability and credentials with one cheap call. Resolves to a short
   * description (e.g. node alias and network); rejects with a message an operator can act on.
   */
  check?(signal?: AbortSignal): Promise<string>;
  /** One line an operator can read, without secrets. */
  describe(): string;
  close(): Promise<void>;
}

/** What a backend factory gets besides its own config section. */
export interface BackendContext {
  /** Directory of the config file: relative paths in backend config resolve against it. */
  configDir: string;
  dataDir: string;
  log: Logger;
  /** Bound for one backend call, in ms. */
  timeoutMs: number;
}

/** Thrown for a failed backend call; the message never contains credentials. */
export class BackendCallError extends Error {
  constructor(message: string, readonly retryable = true) {
    super(message);
  }
}
