// A payment proven after its challenge expired. Lightning nodes refuse to be paid on an expired invoice, so a
// proof (a preimage, or our node saying the invoice was paid) shows the payment landed before the expiry; only
// the credential carrying it arrived after. An invoice paid in its last second must not take the money and
// serve nothing (L402 gets this from its credential's expiry, counted from the invoice's: challenge.ts), so MPP
// charges, MPP session deposits and x402 payments are honoured for a while after their challenge's `expires`.
// Each is still spent once: bounded by the spent marks' lifetimes (decide.ts keeps a single-use claim until the
// credential's minted expiry plus CLAIM_GRACE_SECS, 300 s; x402's is counted from its invoice's expiry, MPP's
// and the deposits' never expire), which this grace stays well inside of, clock skew between l402d included.

/** Seconds after a challenge's expiry during which a payment proven for it is still honoured. */
export const LATE_PROOF_GRACE_SECS = 120;

/** Whether a proof for a challenge expiring at `expiresAt` (unix seconds) is still honoured at `now`. */
export function proofStillHonoured(expiresAt: number, now: number): boolean {
  return Number.isFinite(expiresAt) && now < expiresAt + LATE_PROOF_GRACE_SECS;
}
