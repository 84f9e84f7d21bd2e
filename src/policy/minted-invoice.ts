// The invoice a backend minted, as the core takes it: whatever a backend returns goes into response headers,
// a store record, and the expiries of credentials and offers, so its shape is checked here (every backend checks
// the invoice against what was asked as well, in rails/lightning/codecs/bolt11.ts) and its life is bounded.
import type { CreatedInvoice } from './ports.js';

/** The longest invoice expiry the config allows (invoice.expiry_secs): a bound on what a backend's answer adds. */
export const MAX_INVOICE_LIFE_SECS = 7 * 86400;

/**
 * The invoice a backend returned, refused (`undefined`) when it is malformed or already expired. An invoice that
 * lives longer than the longest life the config allows (a node's or payee's odd expiry, one in the year 300,000)
 * counts as expiring then: every expiry the gate derives from it (the credential's, an MPP or x402 offer's, the
 * remembered auto-detect invoice's, the one a 402 shows) stays bounded and representable.
 */
export function mintedInvoice(invoice: CreatedInvoice | undefined, now: number): CreatedInvoice | undefined {
  if (
    typeof invoice?.bolt11 !== 'string' ||
    !/^ln[a-z0-9]{10,7000}$/i.test(invoice.bolt11) ||
    !Buffer.isBuffer(invoice.paymentHash) ||
    invoice.paymentHash.length !== 32 ||
    !Number.isFinite(invoice.expiresAt) ||
    invoice.expiresAt <= now
  ) {
    return undefined;
  }
  return { bolt11: invoice.bolt11, paymentHash: invoice.paymentHash, expiresAt: Math.min(invoice.expiresAt, now + MAX_INVOICE_LIFE_SECS) };
}
