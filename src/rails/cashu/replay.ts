// A proof pays once. Each proof's Y (hash_to_curve(secret), the mint's own spent-set key) is claimed
// atomically in the shared Store, so the rule holds across processes, hosts (Redis) and restarts (SQLite).
// Per-proof keys, not one key per token: re-encoding a token, or splitting/merging its proofs into a new
// token, must not make the same proof pay twice.
import { createHash } from 'node:crypto';
import { abandonClaim, claimToken } from '../../policy/claims.js';
import { storeKeys } from '../../policy/store-keys.js';
import type { Store } from '../../store/store.js';

export const yKey = storeKeys.cashuProof;

/** A stable id for a set of proofs (order-independent). */
export function proofSetId(ys: string[]): string {
  return createHash('sha256').update([...ys].sort().join(',')).digest('hex');
}

export type ClaimResult = 'claimed' | 'replay';

export class ReplayGuard {
  /** Ys this process has seen paid: replays are refused before any curve arithmetic or store round trip. */
  private readonly spent = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly cacheSize = 200_000,
  ) {}

  knownSpent(ys: string[]): boolean {
    for (const y of ys) if (this.spent.has(y)) return true;
    return false;
  }

  remember(ys: string[]): void {
    for (const y of ys) {
      this.spent.delete(y);
      this.spent.add(y);
    }
    while (this.spent.size > this.cacheSize) this.spent.delete(this.spent.values().next().value!);
  }

  /**
   * Claims every Y or none. Claims go in sorted order, so two requests carrying the same proofs contend
   * on the same first key and exactly one wins. Store failures propagate (the caller answers 503).
   */
  async claimAll(ys: string[], ttlSecs?: number, signal?: AbortSignal): Promise<ClaimResult> {
    const sorted = [...new Set(ys)].sort();
    const got: string[] = [];
    // Unique, so a claim whose answer is lost can be undone if it landed (abandonClaim), never a rival's.
    const mine = claimToken();
    for (const y of sorted) {
      let ok: boolean;
      try {
        // Past the request's deadline the payer has had a 503: stop, and give back what this call took.
        signal?.throwIfAborted();
        ok = await this.store.claimOnce(yKey(y), ttlSecs, mine);
        // A claim resent after a reconnect finds its own earlier write: still ours, not a replay.
        if (!ok) ok = (await this.store.get(yKey(y))) === mine;
      } catch (err) {
        void abandonClaim(this.store, yKey(y), mine);
        await this.release(got);
        throw err;
      }
      if (!ok) {
        await this.release(got);
        return 'replay';
      }
      got.push(y);
    }
    return 'claimed';
  }

  /** Best effort: a claim that cannot be released only costs the payer a retry with other proofs. */
  async release(ys: string[]): Promise<void> {
    for (const y of ys) {
      try {
        await this.store.del(yKey(y));
      } catch {
        // The store is failing; the claim stays and the proofs stay refused, which is the safe side.
      }
    }
  }

  // A swap that outlived the request (timeout) but succeeded later: the payer's retry with the same token
  // must not be refused as a replay, once.
  // The credit pays for the route the token was sent to (its price and payee), not another one.
  async creditLate(setId: string, ttlSecs: number, routeId: string): Promise<void> {
    await this.store.set(storeKeys.cashuLate(setId), `route:${routeId}`, ttlSecs);
  }
  /** 'used': the retry passes; 'other_route': credited to another route; 'none': no credit. */
  async useLateCredit(setId: string, ttlSecs: number, routeId: string): Promise<'used' | 'other_route' | 'none'> {
    const v = await this.store.get(storeKeys.cashuLate(setId));
    if (v === undefined) return 'none';
    if (v !== `route:${routeId}`) return 'other_route';
    return (await this.store.claimOnce(storeKeys.cashuLateUsed(setId), ttlSecs)) ? 'used' : 'none';
  }

  /** Gives back a late credit used by a request that was answered 503 after all (its deadline passed). */
  async unuseLateCredit(setId: string): Promise<void> {
    await this.store.del(storeKeys.cashuLateUsed(setId));
  }

  // A swap whose outcome is unknown (its answer was lost) keeps the proofs claimed until recovery settles it;
  // meanwhile the payer's retry is told to wait (503), not that the token is spent.
  async markUnsettled(setId: string, ttlSecs: number): Promise<void> {
    await this.store.set(storeKeys.cashuUnsettled(setId), '1', ttlSecs);
  }
  async isUnsettled(setId: string): Promise<boolean> {
    return (await this.store.get(storeKeys.cashuUnsettled(setId))) !== undefined;
  }
  async settled(setId: string): Promise<void> {
    await this.store.del(storeKeys.cashuUnsettled(setId));
  }
}
