// What accepting a Cashu token answers (NUT-24): shared by acceptance (accept.ts) and the swap journal.

export interface CashuAcceptContext {
  /** Route id, stored with the proofs. */
  routeId: string;
  /** The route's own Lightning address: its ecash is redeemed to it, never mixed with others'. */
  tenant?: string;
}

export type CashuAcceptResult =
  | { ok: true; amountMsat: number; mint: string; proofs: number }
  /** The payer's fault (NUT-24): answer 400 with `reason` and a fresh X-Cashu challenge. */
  | { ok: false; status: 400; reason: string }
  /** Ours or the mint's: answer 503 with Retry-After. */
  | { ok: false; status: 503; reason: string };

export const bad = (reason: string): CashuAcceptResult => ({ ok: false, status: 400, reason });
export const unavailable = (reason: string): CashuAcceptResult => ({ ok: false, status: 503, reason });
