// BOLT11 for the Lightning backends: one decoder, and one check that the invoice a node returned is the
// one we asked for. Every backend hands its node's invoice to `checkReturnedInvoice` before the gate signs
// a macaroon over it: a swapped or altered invoice would let a client pay for nothing (or for something
// else). The decoder reads fields only; it does not verify the signature (the node that made the invoice
// is the one we asked, over an authenticated channel).
import lightBolt11 from 'light-bolt11-decoder';
import { BackendCallError } from '../backend.js';

/** BOLT11: expiry when the invoice carries no `x` field. */
export const DEFAULT_EXPIRY_SECS = 3600;

/**
 * The longest invoice taken from a node: a challenge carries at most 7,000 characters of it in a header, and a
 * node's reply may be megabytes (lnd's gRPC takes up to 16 MiB), which would otherwise be decoded whole first.
 */
export const MAX_RETURNED_INVOICE_CHARS = 7089;

/** How much later than asked an invoice may expire (the node's clock ahead of ours). */
export const EXPIRY_SLACK_SECS = 600;

/** The fields of a BOLT11 invoice the gate uses. */
export interface Bolt11Invoice {
  /** 32 bytes (`p`). */
  paymentHash: Buffer;
  /** Undefined for an "any amount" invoice. */
  amountMsat: number | undefined;
  /** Unix seconds when the invoice was made. */
  timestamp: number;
  /** Seconds after `timestamp` the invoice expires (`x`, else 3600). */
  expiry: number;
  /** Unix seconds: timestamp + expiry. */
  expiresAt: number;
  /** `d`, when present. */
  description: string | undefined;
  /** `h`, lowercase hex of 32 bytes, when present. */
  descriptionHash: string | undefined;
  /** `n`, lowercase hex of the 33-byte node key, when present (it is not recovered from the signature). */
  payee: string | undefined;
  /** The bech32 network prefix after `ln`: bc, tb, tbs, bcrt or sb. */
  network: string;
}

/** Thrown by decodeBolt11; `reason` is a short, printable phrase without the invoice itself. */
export class Bolt11DecodeError extends Error {
  constructor(readonly reason: string) {
    super(`not a decodable BOLT11 invoice: ${reason}`);
    this.name = 'Bolt11DecodeError';
  }
}

const HEX = (bytes: number): RegExp => new RegExp(`^[0-9a-f]{${bytes * 2}}$`);
const HASH_HEX = HEX(32);
const NODE_KEY_HEX = HEX(33);

/** The decoder's message, printable and bounded, with the (long) invoice itself cut out. */
function libReason(e: unknown, input: string): string {
  let s = e instanceof Error ? e.message : String(e);
  if (input.length >= 8) s = s.split(input).join('the invoice').split(input.toLowerCase()).join('the invoice');
  // eslint-disable-next-line no-control-regex
  s = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim() || 'malformed';
  return s.length > 120 ? `${s.slice(0, 120)}…` : s;
}

/**
 * Decodes a BOLT11 invoice. Throws Bolt11DecodeError for anything that is not a well-formed invoice with
 * exactly one 32-byte payment hash, a representable amount and expiry, and no repeated `d`, `h`, `n`, `x`.
 */
export function decodeBolt11(bolt11: string): Bolt11Invoice {
  if (typeof bolt11 !== 'string') throw new Bolt11DecodeError('not a string');
  let sections: Array<{ name: string; letters?: string; value?: unknown }>;
  try {
    sections = lightBolt11.decode(bolt11).sections;
  } catch (e) {
    throw new Bolt11DecodeError(libReason(e, bolt11));
  }
  const field = (name: string, what: string): unknown => {
    const found = sections.filter((s) => s.name === name);
    if (found.length > 1) throw new Bolt11DecodeError(`more than one ${what}`);
    return found[0]?.value;
  };

  const hash = field('payment_hash', 'payment hash (p field)');
  if (hash === undefined) throw new Bolt11DecodeError('no payment hash (p field)');
  if (typeof hash !== 'string' || !HASH_HEX.test(hash)) throw new Bolt11DecodeError('payment hash (p field) is not 32 bytes');

  const amount = field('amount', 'amount');
  const amountMsat = amount === undefined ? undefined : Number(amount);
  if (amountMsat !== undefined && !Number.isSafeInteger(amountMsat)) throw new Bolt11DecodeError('amount is out of range');

  const timestamp = Number(field('timestamp', 'timestamp'));
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw new Bolt11DecodeError('no valid timestamp');

  const x = field('expiry', 'expiry (x field)');
  const expiry = x === undefined ? DEFAULT_EXPIRY_SECS : Number(x);
  if (!Number.isSafeInteger(expiry) || expiry < 0) throw new Bolt11DecodeError('expiry (x field) is out of range');

  const d = field('description', 'description (d field)');
  const h = field('description_hash', 'description hash (h field)');
  if (h !== undefined && (typeof h !== 'string' || !HASH_HEX.test(h))) throw new Bolt11DecodeError('description hash (h field) is not 32 bytes');
  const n = field('payee', 'payee (n field)');
  if (n !== undefined && (typeof n !== 'string' || !NODE_KEY_HEX.test(n))) throw new Bolt11DecodeError('payee (n field) is not 33 bytes');

  return {
    paymentHash: Buffer.from(hash, 'hex'),
    amountMsat,
    timestamp,
    expiry,
    expiresAt: timestamp + expiry,
    description: d === undefined ? undefined : String(d),
    descriptionHash: h as string | undefined,
    payee: n as string | undefined,
    network: String(sections.find((s) => s.name === 'coin_network')?.letters ?? ''),
  };
}

/** Why a returned invoice is refused; a backend's `wording` may phrase any of these its own way. */
export type InvoiceProblem =
  | { kind: 'undecodable'; reason: string }
  | { kind: 'payment_hash' }
  | { kind: 'amount'; invoiceMsat: number | undefined; requestedMsat: number }
  | { kind: 'description_hash' }
  | { kind: 'description' }
  | { kind: 'expired'; expiresAt: number }
  | { kind: 'expiry'; expiresAt: number; latest: number };

export type InvoiceProblemKind = InvoiceProblem['kind'];

/** What the invoice a node returned must be. */
export interface InvoiceExpectation {
  /** Leads every message: who answered and to what, e.g. "CLN invoice" or "lnurl: alice@example.com". */
  backend: string;
  /** Exact amount asked for; an "any amount" invoice never matches. */
  amountMsat: number;
  /**
   * The payment hash the node's reply names beside the invoice. `undefined`: the reply names none (nothing to
   * compare). Anything else must be the invoice's hash, as a Buffer or as hex in any case: so pass `null` for a
   * hash the reply must carry but does not.
   */
  paymentHash?: unknown;
  /** How messages call `paymentHash`, e.g. "r_hash". */
  paymentHashField?: string;
  /** The invoice's `h` must be `hex`, which is sha256(`of`) (`of` names it in messages, e.g. "metadata"). */
  descriptionHash?: { hex: string; of: string };
  /** When the invoice carries a `d`, it must be this. */
  description?: string;
  /**
   * Expiry the node reports (Unix seconds), checked and used when it comes before the invoice's own timestamp +
   * expiry: never after it (what a payer's wallet enforces is the invoice's; a node cannot lengthen it by saying so).
   */
  expiresAt?: number;
  /**
   * The expiry asked of a node that honours it (lnd, CLN, eclair), in seconds: an invoice living longer (beyond
   * EXPIRY_SLACK_SECS for clocks) is refused, since a credential's expiry counts from its invoice's. Unset for a
   * backend that cannot be asked (LNURL) or may ignore it (NWC): its invoice's life is bounded by the core instead.
   */
  expirySecs?: number;
  /** Unix seconds; defaults to the clock. */
  now?: number;
  /** BackendCallError.retryable for a refusal: one value, or per problem (unlisted: true). Default true. */
  retryable?: boolean | Partial<Record<InvoiceProblemKind, boolean>>;
  /** A backend's own phrasing for a problem (the part after "<backend>: "); undefined keeps the default. */
  wording?: (p: InvoiceProblem) => string | undefined;
}

function unixText(secs: number): string {
  const d = new Date(secs * 1000);
  return Number.isNaN(d.getTime()) ? `${secs} (Unix time)` : d.toISOString();
}

function defaultWording(p: InvoiceProblem, e: InvoiceExpectation): string {
  switch (p.kind) {
    case 'undecodable':
      return `the invoice does not decode as BOLT11 (${p.reason}); refusing it`;
    case 'payment_hash':
      return `the invoice's payment hash does not match ${e.paymentHashField ?? 'the one the reply names'}; refusing it`;
    case 'amount':
      return `the invoice is for ${p.invoiceMsat === undefined ? 'no fixed amount' : `${p.invoiceMsat} msat`}, not the ${p.requestedMsat} msat asked for; refusing it`;
    case 'description_hash':
      return `the invoice's description_hash is not sha256(${e.descriptionHash?.of ?? 'the description'}); refusing it`;
    case 'description':
      return 'the invoice description differs from the one requested; refusing it';
    case 'expired':
      return `the invoice already expired at ${unixText(p.expiresAt)} (check the issuing node's clock); refusing it`;
    case 'expiry':
      return `the invoice expires at ${unixText(p.expiresAt)}, later than the expiry asked for allows (${unixText(p.latest)}; check the issuing node's clock); refusing it`;
  }
}

function refuse(p: InvoiceProblem, e: InvoiceExpectation): BackendCallError {
  const r = e.retryable;
  const retryable = typeof r === 'boolean' ? r : (r?.[p.kind] ?? true);
  return new BackendCallError(`${e.backend}: ${e.wording?.(p) ?? defaultWording(p, e)}`, retryable);
}

function sameHash(named: unknown, hash: Buffer): boolean {
  if (Buffer.isBuffer(named)) return named.equals(hash);
  return typeof named === 'string' && named.toLowerCase() === hash.toString('hex');
}

/**
 * Decodes the invoice a node returned and checks it is the one asked for: it decodes, it commits to the
 * payment hash the reply names (if any), it is for exactly the amount asked, it carries the expected
 * description hash / description (if given), and it has not expired. Throws BackendCallError naming the
 * backend and what did not match (never a credential: only amounts, field names and the decoder's reason).
 */
export function checkReturnedInvoice(bolt11: string, expect: InvoiceExpectation): Bolt11Invoice {
  if (typeof bolt11 === 'string' && bolt11.length > MAX_RETURNED_INVOICE_CHARS) {
    throw refuse({ kind: 'undecodable', reason: `${bolt11.length} characters, longer than ${MAX_RETURNED_INVOICE_CHARS}` }, expect);
  }
  let inv: Bolt11Invoice;
  try {
    inv = decodeBolt11(bolt11);
  } catch (e) {
    if (!(e instanceof Bolt11DecodeError)) throw e;
    throw refuse({ kind: 'undecodable', reason: e.reason }, expect);
  }
  if (expect.paymentHash !== undefined && !sameHash(expect.paymentHash, inv.paymentHash)) throw refuse({ kind: 'payment_hash' }, expect);
  if (inv.amountMsat !== expect.amountMsat) {
    throw refuse({ kind: 'amount', invoiceMsat: inv.amountMsat, requestedMsat: expect.amountMsat }, expect);
  }
  if (expect.descriptionHash && inv.descriptionHash !== expect.descriptionHash.hex.toLowerCase()) throw refuse({ kind: 'description_hash' }, expect);
  if (expect.description !== undefined && inv.description !== undefined && inv.description !== expect.description) {
    throw refuse({ kind: 'description' }, expect);
  }
  // The invoice's own expiry bounds what a node reports (found: a CLN node's later expires_at made a credential
  // sold for 120 s valid for days, as that is counted from its invoice's expiry).
  const expiresAt = expect.expiresAt === undefined ? inv.expiresAt : Math.min(expect.expiresAt, inv.expiresAt);
  const now = expect.now ?? Math.floor(Date.now() / 1000);
  if (expiresAt <= now) throw refuse({ kind: 'expired', expiresAt }, expect);
  if (expect.expirySecs !== undefined && expiresAt > now + expect.expirySecs + EXPIRY_SLACK_SECS) {
    throw refuse({ kind: 'expiry', expiresAt, latest: now + expect.expirySecs + EXPIRY_SLACK_SECS }, expect);
  }
  return { ...inv, expiresAt };
}
