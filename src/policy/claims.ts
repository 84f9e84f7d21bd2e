// A claim whose answer we stopped waiting for may still land in a slow store. The request was answered 503
// (not served), so the credential must stay usable: once the store answers, delete the claim if it is ours.
// Ours is told by the unique value it was written with. Redis runs one connection's commands in order and
// SQLite is synchronous, so the delete never overtakes the claim it undoes.
import { randomBytes } from 'node:crypto';
import { sleep, withTimeout } from '../util/timeout.js';
import type { ClaimStore } from './ports.js';

/**
 * Unique per attempt in every process: a random prefix drawn once per process, then a counter. Claim values
 * are seen by the store only, so they need to be unique, not unguessable (random bytes per claim were a
 * measurable share of a single-use decision).
 */
const PROCESS_NONCE = randomBytes(12).toString('base64url');
let attempts = 0;
function attemptId(): string {
  return `${PROCESS_NONCE}_${(attempts++).toString(36)}`;
}

/** A claim value no other request writes: what tells our claim from a rival's. */
export function claimToken(): string {
  return `claim:${attemptId()}`;
}

/** nginx's $request_id: 32 lowercase hex digits (16 random bytes), the same for a request, its auth subrequest and nginx's retries of it. */
export const REQUEST_ID = /^[0-9a-f]{32}$/;

/** nginx's request id, when the request has a valid one (only then can a retry be told from a replay). */
export function ownRequestId(requestId: string | undefined): string | undefined {
  return requestId !== undefined && REQUEST_ID.test(requestId) ? requestId : undefined;
}

/**
 * The claim value of one attempt at deciding one client request: `claim:req:<request id>:<random>`. nginx's
 * retry of the same auth subrequest on another l402d finds a claim of its own request (claimOwnedBy: not a
 * replay), and only this request can give the claim back after an upstream failure. Unique per attempt, so an
 * attempt that gave up can undo its own write (abandonClaim) but never one a later attempt took over.
 * Without a valid id (standalone mode, a missing or malformed header) a random value, as claimToken().
 */
export function requestClaimToken(requestId: string | undefined): string {
  return ownRequestId(requestId) !== undefined ? `claim:req:${requestId}:${attemptId()}` : claimToken();
}

/** A claim value written for this client request (by any attempt at it); false without a valid id. */
export function claimOwnedBy(value: string | undefined, requestId: string | undefined): boolean {
  return value !== undefined && ownRequestId(requestId) !== undefined && value.startsWith(`claim:req:${requestId}:`);
}

/** Never rejects: gives up (false) after `forMs` without an answer. */
export async function abandonClaim(store: Pick<ClaimStore, 'delIfValue'>, key: string, value: string, o: { everyMs?: number; forMs?: number } = {}): Promise<boolean> {
  const everyMs = o.everyMs ?? 500;
  const until = Date.now() + (o.forMs ?? 30_000);
  for (;;) {
    try {
      return await withTimeout(store.delIfValue(key, value), everyMs * 2, 'release claim');
    } catch {
      if (Date.now() > until) return false;
      await sleep(everyMs, { ref: false });
    }
  }
}
