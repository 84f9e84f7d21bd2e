// Macaroons one of our master keys signed, by their exact bytes. A reusable credential is presented on every
// request it pays for; its HMAC chain (a per-token key derivation and one HMAC per caveat) proves the same
// thing each time, so it is checked once per process. Only the signature is remembered: expiry, route, path,
// method, preimage and claims are checked on every request, because they depend on the request and the clock.
import type { TokenIdentifier } from '../protocol/identifier.js';
import type { Macaroon } from '../protocol/macaroon.js';

export interface VerifiedMacaroon {
  readonly mac: Macaroon;
  readonly id: TokenIdentifier;
}

/** Rough heap cost of an entry besides its key: the decoded macaroon holds about three copies of its bytes. */
const ENTRY_OVERHEAD_BYTES = 400;

/**
 * Bounded by bytes (credentials are request data): the oldest entries go first. Bound to the master keys it
 * was filled under: the decision consults it only with that very key list.
 */
export class VerifiedMacaroons {
  private readonly entries = new Map<string, { v: VerifiedMacaroon; size: number }>();
  private held = 0;

  constructor(
    readonly rootKeys: readonly Buffer[],
    private readonly maxBytes = 16 * 1024 * 1024,
  ) {}

  get(raw: Buffer): VerifiedMacaroon | undefined {
    return this.entries.get(raw.toString('latin1'))?.v;
  }

  /** Call only after the signature verified. */
  add(raw: Buffer, v: VerifiedMacaroon): void {
    const key = raw.toString('latin1');
    const size = key.length * 4 + ENTRY_OVERHEAD_BYTES;
    if (size > this.maxBytes || this.entries.has(key)) return;
    this.entries.set(key, { v: Object.freeze(v), size });
    this.held += size;
    for (const [k, e] of this.entries) {
      if (this.held <= this.maxBytes) break;
      this.entries.delete(k);
      this.held -= e.size;
    }
  }

  bytes(): number {
    return this.held;
  }

  size(): number {
    return this.entries.size;
  }
}
