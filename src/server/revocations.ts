// Every l402d process refuses a revoked credential within a second of `l402d token revoke`: the list lives in
// the shared store, and each process keeps a copy that it trusts for at most FRESH_MS after the read that
// produced it began. Past REFRESH_MS a decision first asks the store whether the list changed (one small read
// per process and period, made in the background while the copy is younger than FRESH_MS); when the store cannot say so before the copy
// is FRESH_MS old, the check fails and the decision answers 503 (fail closed), never "not revoked".
import type { Ledger } from '../store/ledger.js';
import { revocationLive, type Revocation } from '../store/ledger.js';
import { withTimeout } from '../util/timeout.js';

/** A copy read this recently is used as is. */
export const REFRESH_MS = 400;
/** A copy older than this (counted from when its read began) is never used. */
export const FRESH_MS = 1000;

export class RevocationCache {
  private byValue = new Map<string, Revocation>();
  private generation: string | undefined;
  /** When the read that confirmed the current copy began (ms). */
  private confirmedAt = -Infinity;
  private inFlight?: Promise<void>;

  constructor(
    private readonly ledger: Ledger,
    private readonly storeTimeoutMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when the credential (by token id or payment hash) is revoked. Rejects when the store cannot tell in time. */
  async isRevoked(tokenId: string, paymentHash: string): Promise<boolean> {
    const age = this.now() - this.confirmedAt;
    if (age >= REFRESH_MS) {
      const read = this.refresh();
      // Still fresh enough: answer now and let the read land for the next decisions.
      if (age < FRESH_MS) read.catch(() => undefined);
      else await read;
    }
    if (this.now() - this.confirmedAt >= FRESH_MS) throw new Error('revocation list not confirmed within a second');
    return this.live(tokenId) || this.live(paymentHash);
  }

  private live(value: string): boolean {
    const r = this.byValue.get(value);
    return r !== undefined && revocationLive(r, this.now());
  }

  /** Reads the generation, and the list when it changed. Concurrent callers share one read. */
  refresh(): Promise<void> {
    this.inFlight ??= (async () => {
      const began = this.now();
      try {
        const budget = Math.max(50, Math.min(this.storeTimeoutMs, FRESH_MS - (began - this.confirmedAt)));
        const generation = await withTimeout(this.ledger.revocationGeneration(), budget, 'revocation list');
        if (generation !== this.generation) {
          const all = await withTimeout(this.ledger.revocations(), this.storeTimeoutMs, 'revocation list');
          this.byValue = new Map(all.list.map((r) => [r.value, r]));
          this.generation = all.generation;
        }
        this.confirmedAt = Math.max(this.confirmedAt, began);
      } finally {
        this.inFlight = undefined;
      }
    })();
    return this.inFlight;
  }

  /**
   * Every revocation made before this time (ms) is in the copy now held (and in any later one). -Infinity
   * until the first read.
   */
  get confirmed(): number {
    return this.confirmedAt;
  }

  /** How many revocations this process holds (for the console). */
  get size(): number {
    return this.byValue.size;
  }
}
