// Sales and revocations: what the operator console, `l402d token` and `l402d stats` read, kept in the same
// store as the claims (so every l402d process and the CLI see one record). Nothing secret is kept: no
// macaroon, no preimage, no Cashu proof; a sale names its credential by token id and payment hash only.

/** One sale: a credential accepted for the first time (Lightning), or one Cashu payment accepted. */
export interface Sale {
  /** Lightning: the token id (64 hex; ngx_l402's credentials: `ngx_l402:<payment hash>`). Cashu: `cashu:<SHA-256 of the token, hex>` (one payment, however often nginx retried its request; random when unknown). */
  id: string;
  rail: 'lightning' | 'cashu';
  route: string;
  /** What the route charged for the path when the credential was first accepted (msat). */
  amountMsat: number;
  /** Unix ms of the first acceptance. */
  at: number;
  /** Lightning only: the invoice's payment hash (64 hex). */
  paymentHash?: string;
  /** Unix seconds: the expiry l402d minted, if any. */
  validUntil?: number;
  access?: 'per-request' | 'timed' | 'indefinite' | 'balance';
}

/** A revoked credential: `value` is a token id or a payment hash (either names one credential). */
export interface Revocation {
  value: string;
  /** Unix ms. */
  at: number;
  /** Unix seconds after which the credential could not verify anyway (the entry is then dropped); none: kept. */
  until?: number;
}

/** Earnings in one time bucket for one route and rail. */
export interface EarningsRow {
  /** Unix ms at the bucket's start. */
  bucket: number;
  route: string;
  rail: string;
  msat: number;
  sales: number;
}

/** Retention: sales older than this are dropped, and at most MAX_SALES are kept (oldest dropped first). */
export const SALES_RETENTION_DAYS = 90;
export const MAX_SALES = 100_000;
/** Earnings are kept per hour (for the same retention), so totals outlive the individual sales. */
export const EARNINGS_BUCKET_MS = 3_600_000;
/** At most this many revocations are kept; revoking more refuses (the operator should rotate root_key instead). */
export const MAX_REVOCATIONS = 100_000;

export class LedgerFullError extends Error {}

/**
 * recordSales wrote some of a batch and failed on others (Redis runs each sale's script on its own): `recorded`
 * says, per sale, true (recorded now), false (recorded before) or undefined (not written: try again).
 */
export class PartialSalesError extends Error {
  constructor(
    message: string,
    readonly recorded: ReadonlyArray<boolean | undefined>,
  ) {
    super(message);
  }
}

export interface Ledger {
  /**
   * Records each sale once per id, in order, in one write where the store allows; for each, true when this
   * call recorded it (false: recorded already, by an earlier call or earlier in the same batch).
   */
  recordSales(sales: readonly Sale[]): Promise<boolean[]>;
  /** Newest first. */
  recentSales(limit: number): Promise<Sale[]>;
  /** The sale with this id or payment hash, if still retained. */
  findSale(idOrHash: string): Promise<Sale | undefined>;
  /** Hourly earnings with bucket >= sinceMs (bucket starts at multiples of EARNINGS_BUCKET_MS). */
  earnings(sinceMs: number): Promise<EarningsRow[]>;
  /** False when the value was revoked already. */
  revoke(r: Revocation): Promise<boolean>;
  /** Changes whenever a revocation is added: a cheap read that says whether to reload the list. */
  revocationGeneration(): Promise<string>;
  /** Every revocation still in force, newest first, and the generation they belong to. */
  revocations(): Promise<{ generation: string; list: Revocation[] }>;
}

export function bucketOf(atMs: number): number {
  return atMs - (atMs % EARNINGS_BUCKET_MS);
}

export function retentionStart(now = Date.now()): number {
  return now - SALES_RETENTION_DAYS * 86_400_000;
}

/** Checks a record read back from the store (the store is shared: never trust its shape). */
export function parseSale(text: string | null | undefined): Sale | undefined {
  if (!text) return undefined;
  try {
    const v = JSON.parse(text) as Partial<Sale>;
    if (typeof v.id !== 'string' || (v.rail !== 'lightning' && v.rail !== 'cashu') || typeof v.route !== 'string' || !Number.isFinite(v.amountMsat) || !Number.isFinite(v.at)) return undefined;
    return {
      id: v.id,
      rail: v.rail,
      route: v.route,
      amountMsat: Number(v.amountMsat),
      at: Number(v.at),
      ...(typeof v.paymentHash === 'string' ? { paymentHash: v.paymentHash } : {}),
      ...(Number.isFinite(v.validUntil) ? { validUntil: Number(v.validUntil) } : {}),
      ...(v.access === 'per-request' || v.access === 'timed' || v.access === 'indefinite' || v.access === 'balance' ? { access: v.access } : {}),
    };
  } catch {
    return undefined;
  }
}

export function parseRevocation(text: string | null | undefined): Revocation | undefined {
  if (!text) return undefined;
  try {
    const v = JSON.parse(text) as Partial<Revocation>;
    if (typeof v.value !== 'string' || !Number.isFinite(v.at)) return undefined;
    return { value: v.value, at: Number(v.at), until: Number.isFinite(v.until) ? Number(v.until) : undefined };
  } catch {
    return undefined;
  }
}

/**
 * The credential a sale belongs to, as revocation names it: a prepaid balance's credits (`access: balance`,
 * recorded as `<token id>`, `<token id>:topup:<hash>`, `<token id>:cashu:<hash>`) all belong to its token id;
 * any other sale is its own id.
 */
export function saleCredential(s: Sale): string {
  if (s.access === 'balance') {
    const m = /^([0-9a-f]{64})(?::|$)/.exec(s.id);
    if (m) return m[1]!;
  }
  return s.id;
}

export function revocationLive(r: Revocation, nowMs = Date.now()): boolean {
  return r.until === undefined || r.until * 1000 > nowMs;
}
