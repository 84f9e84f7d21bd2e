// How long nginx's auth cache may keep a "paid" answer (the X-Accel-Expires l402d sends with it).
//
// nginx stamps a kept answer with its own whole-second clock when it reads the header (ngx_time() + the value)
// and reuses it while its clock has not passed that second: up to a second longer than the value says. Its
// second may also be the next one after the second l402d answered in (an answer written in the last
// milliseconds of a second, read in the first of the next). So the value is counted from l402d's clock in
// milliseconds, and a whole second comes off for nginx's rounding: an answer nginx reads up to a second after
// l402d wrote it is still dropped by the credential's expiry (found: counted from l402d's whole second, such an
// answer was reused through the second in which the credential expired).

export interface AuthCacheInput {
  /** l402d's clock, ms since the epoch. */
  nowMs: number;
  /** `nginx_cache.max_secs`. */
  maxSecs: number;
  /** Unix seconds: the credential's earliest expiry (minted or appended), if it expires. */
  validUntil?: number;
  /** When the revocation list this decision read was current (ms); undefined: no list (library use). */
  revocationsAt?: number;
}

/** Whole seconds for X-Accel-Expires (0: do not keep). */
export function authCacheSeconds(o: AuthCacheInput): number {
  // A revocation made after the list this decision read could not be seen by it: that age comes off too, so
  // nginx reuses no answer longer than max_secs after a revocation.
  const seen = o.revocationsAt === undefined ? 0 : Math.max(0, o.nowMs - o.revocationsAt);
  const max = Math.floor((o.maxSecs * 1000 - 1000 - seen) / 1000);
  if (o.validUntil === undefined) return Math.max(0, max);
  const left = Math.floor((o.validUntil * 1000 - o.nowMs) / 1000) - 1;
  return Math.max(0, Math.min(max, left));
}
