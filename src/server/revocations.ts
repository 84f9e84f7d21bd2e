// Every l402d process refuses a revoked credential within a second of `l402d token revoke`: the list lives in
// the shared store, and each process keeps a copy. A copy younger than REFRESH_MS (counted from when the read
// that confirmed it began) is used as is; past that a read of the list's generation starts in the background
// (one small read per process and period), and past FRESH_MS a decision waits for it (bounded by
// timeouts.store_ms). So while the store answers, no decision uses a copy older than FRESH_MS.
//
// When the store does not answer (an outage, a partition), the process keeps refusing what its last copy
// holds and goes on serving reusable credentials, as it did before revocation existed (single-use ones need
// the store and answer 503 anyway); it learns newer revocations when the store answers again, and nginx
// caches no "paid" answer meanwhile (the copy's age comes off X-Accel-Expires, gate.ts). A process that has
// never read the list refuses to decide (503).
import type { Ledger } from '../store/ledger.js';
import { revocationLive, type Revocation } from '../store/ledger.js';
import { withTimeout } from '../util/timeout.js';

/** A copy read this recently is used as is. */
export const REFRESH_MS = 400;
/** While the store answers, a copy older than this (counted from when its read began) is never used. */
export const FRESH_MS = 1000;

export class RevocationCache {
  private byValue = new Map<string, Revocation>();
  private generation: string | undefined;
  /** When the read that confirmed the current copy began (ms). */
  private confirmedAt = -Infinity;
  private loaded = false;
  /** The last read failed: answer from the copy without waiting until one succeeds. */
  private failing = false;
  private inFlight?: Promise<void>;

  constructor(
    private readonly ledger: Ledger,
    private readonly storeTimeoutMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when the credential (by token id or payment hash) is revoked. Rejects when no copy was ever read. */
  async isRevoked(tokenId: string, paymentHash: string): Promise<boolean> {
    return (await this.check(tokenId, paymentHash)).revoked;
  }

  /**
   * isRevoked, and `confirmedAt` of the copy that answered (no revocation made before it was missed), read
   * together so a read landing meanwhile cannot make the answer look fresher than it was.
   */
  async check(tokenId: string, paymentHash: string): Promise<{ revoked: boolean; confirmedAt: number }> {
    const age = this.now() - this.confirmedAt;
    if (age >= REFRESH_MS) {
      const read = this.refresh();
      if (age < FRESH_MS || (this.failing && this.loaded)) read.catch(() => undefined);
      else await read.catch(() => undefined);
    }
    if (!this.loaded) throw new Error('the revocation list could not be read');
    return { revoked: this.live(tokenId) || this.live(paymentHash), confirmedAt: this.confirmedAt };
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
        const generation = await withTimeout(this.ledger.revocationGeneration(), this.storeTimeoutMs, 'revocation list');
        if (generation !== this.generation) {
          const all = await withTimeout(this.ledger.revocations(), this.storeTimeoutMs, 'revocation list');
          this.byValue = new Map(all.list.map((r) => [r.value, r]));
          this.generation = all.generation;
        }
        this.confirmedAt = Math.max(this.confirmedAt, began);
        this.loaded = true;
        this.failing = false;
      } catch (e) {
        this.failing = true;
        throw e;
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
