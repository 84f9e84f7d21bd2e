// lnd's answers to AddInvoice and LookupInvoice, read the same way whether they came over lnd's own gRPC or
// REST or through LNC's encrypted stream: the fields the gate needs, and what they prove. A node's reply is
// untrusted input.
import { createHash, timingSafeEqual } from 'node:crypto';
import { BackendCallError, type CreatedInvoice, type InvoiceState } from '../backend.js';
import { checkReturnedInvoice } from '../codecs/bolt11.js';
import { asBuffer, asInt, asString } from '../codecs/proto-fields.js';
import type { LndAddedInvoice, LndInvoice } from './lnd-rest.js';

/** The invoice AddInvoice returned, checked against what was asked (`source` names the node in errors). */
export function createdInvoiceOf(added: LndAddedInvoice, req: { amountMsat: number; expirySecs: number }, source: string): CreatedInvoice {
  const { amountMsat } = req;
  const backend = `${source} AddInvoice returned an unusable invoice`;
  if (added.rHash.length !== 32) throw new BackendCallError(`${backend}: r_hash is ${added.rHash.length} bytes, expected 32; refusing it`, false);
  const pr = added.paymentRequest.trim();
  const inv = checkReturnedInvoice(pr, {
    backend,
    amountMsat,
    paymentHash: added.rHash,
    paymentHashField: 'r_hash',
    expirySecs: req.expirySecs,
    retryable: false,
    wording: (p) => {
      if (p.kind === 'undecodable') return `payment_request is not a decodable BOLT11 invoice; refusing it (${p.reason})`;
      if (p.kind === 'amount') return `payment_request is for ${p.invoiceMsat ?? 'any amount'} msat, but ${p.requestedMsat} msat was requested; refusing it`;
      return undefined;
    },
  });
  return { bolt11: pr, paymentHash: Buffer.from(added.rHash), expiresAt: inv.expiresAt };
}

/** The LndInvoice fields of a decoded lnrpc.Invoice (proto-loader object). */
export function lndInvoiceOf(res: Record<string, unknown>): LndInvoice {
  return {
    rHash: asBuffer(res.r_hash),
    rPreimage: asBuffer(res.r_preimage),
    state: asString(res.state),
    creationDate: asInt(res.creation_date),
    expiry: asInt(res.expiry),
    valueMsat: asInt(res.value_msat),
    amtPaidMsat: asInt(res.amt_paid_msat),
  };
}

function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** What the invoice says of `paymentHash`; `source` names the node for the error of an inconsistent answer. */
export function invoiceStateOf(inv: LndInvoice, paymentHash: Buffer, source: string): InvoiceState {
  const bad = (why: string): BackendCallError => new BackendCallError(`${source} LookupInvoice returned an inconsistent invoice: ${why}`, false);
  if (inv.rHash.length > 0 && !safeEqual(inv.rHash, paymentHash)) throw bad('r_hash differs from the hash asked for');
  switch (inv.state) {
    case 'SETTLED': {
      // Only a preimage that hashes to the payment hash proves payment; never trust the state alone.
      if (inv.rPreimage.length !== 32 || !safeEqual(createHash('sha256').update(inv.rPreimage).digest(), paymentHash)) {
        throw bad('state SETTLED without a preimage that hashes to the payment hash');
      }
      // lnd settles an invoice only once the HTLCs pay at least its value (checked against the price when it
      // was added): SETTLED with less paid is a node that lies, never a settlement.
      if (inv.valueMsat > 0 && inv.amtPaidMsat < inv.valueMsat) {
        throw bad(`state SETTLED with ${inv.amtPaidMsat} msat paid of the ${inv.valueMsat} msat asked`);
      }
      return { state: 'settled', preimage: Buffer.from(inv.rPreimage) };
    }
    case 'OPEN':
      // lnd cancels expired invoices itself, but only when its expiry watcher gets to them.
      if (inv.creationDate > 0 && inv.expiry > 0 && Date.now() / 1000 >= inv.creationDate + inv.expiry) return { state: 'expired' };
      return { state: 'open' };
    case 'ACCEPTED':
      // HTLCs held but not settled (hold invoices): not paid yet.
      return { state: 'open' };
    case 'CANCELED':
      return { state: 'canceled' };
    default:
      throw bad(`unknown invoice state ${JSON.stringify(inv.state.slice(0, 40))}`);
  }
}
