// Macaroons one of our master keys signed, by their exact bytes. A reusable credential is presented on every
// request it pays for; its HMAC chain (a per-token key derivation and one HMAC per caveat) proves the same
// thing each time, so it is checked once per process. So are the caveat verdicts it earned and the preimage
// that matched its payment hash: a verdict is kept per exact check input (service, route, method, path,
// capabilities needed, unknown-caveat policy) and used only while the clock is before the earliest expiry
// among its caveats, the only input that changes by itself. Revocation, the route's access mode, path
// pricing and claims are still decided on every request by the caller.
import { timingSafeEqual } from 'node:crypto';
import type { TokenIdentifier } from '../protocol/identifier.js';
import type { Macaroon } from '../protocol/macaroon.js';
import type { CaveatVerdict } from '../protocol/caveats.js';

export type AcceptedVerdict = Extract<CaveatVerdict, { ok: true }>;

export interface VerifiedMacaroon {
  readonly mac: Macaroon;
  readonly id: TokenIdentifier;
}

/** Rough heap cost of an entry besides its key: the decoded macaroon holds about three copies of its bytes. */
const ENTRY_OVERHEAD_BYTES = 400;
/** Rough heap cost of one kept verdict besides its key (the verdict object, its arrays, the map slot). */
const VERDICT_OVERHEAD_BYTES = 300;
/** Verdicts kept per credential (one per path and method it is used on): the oldest goes first. */
const VERDICTS_PER_CREDENTIAL = 16;

/** One verified credential: its decoded macaroon and what this process already checked about it. */
export class VerifiedEntry implements VerifiedMacaroon {
  /** @internal */ verdicts?: Map<string, AcceptedVerdict>;
  /** @internal A preimage found to hash to this credential's payment hash. */
  preimage?: Buffer;
  constructor(
    readonly mac: Macaroon,
    readonly id: TokenIdentifier,
    /** @internal */ readonly key: string,
    /** @internal */ public size: number,
  ) {}
}

/**
 * Bounded by bytes (credentials are request data): the oldest entries go first. Bound to the master keys it
 * was filled under: the decision consults it only with that very key list.
 */
export class VerifiedMacaroons {
  private readonly entries = new Map<string, VerifiedEntry>();
  private held = 0;

  constructor(
    readonly rootKeys: readonly Buffer[],
    private readonly maxBytes = 16 * 1024 * 1024,
  ) {}

  get(raw: Buffer): VerifiedEntry | undefined {
    return this.entries.get(raw.toString('latin1'));
  }

  /** Call only after the signature verified. */
  add(raw: Buffer, v: VerifiedMacaroon): VerifiedEntry | undefined {
    const key = raw.toString('latin1');
    const size = key.length * 4 + ENTRY_OVERHEAD_BYTES;
    if (size > this.maxBytes) return undefined;
    const had = this.entries.get(key);
    if (had) return had;
    const e = new VerifiedEntry(v.mac, v.id, key, size);
    this.entries.set(key, e);
    this.grow(size);
    return e;
  }

  /**
   * The verdict kept for exactly this check input (`input`: see checkInput), while `now` (unix seconds) is
   * before the earliest expiry it saw; else undefined (check again).
   */
  verdict(e: VerifiedEntry, input: string, now: number): AcceptedVerdict | undefined {
    const v = e.verdicts?.get(input);
    if (!v) return undefined;
    if (v.validUntil !== undefined && !(now < v.validUntil)) {
      e.verdicts!.delete(input);
      return undefined;
    }
    return v;
  }

  /** Keeps an accepted verdict for `input` (only call with checkCaveats' own answer for that input). */
  keepVerdict(e: VerifiedEntry, input: string, v: AcceptedVerdict): void {
    if (this.entries.get(e.key) !== e) return;
    e.verdicts ??= new Map();
    if (e.verdicts.has(input)) return;
    if (e.verdicts.size >= VERDICTS_PER_CREDENTIAL) {
      const oldest = e.verdicts.keys().next().value!;
      e.verdicts.delete(oldest);
      this.shrink(e, oldest.length * 2 + VERDICT_OVERHEAD_BYTES);
    }
    e.verdicts.set(input, Object.freeze(v));
    const add = input.length * 2 + VERDICT_OVERHEAD_BYTES;
    e.size += add;
    this.grow(add);
  }

  /** Whether `preimage` is the one already found to hash to this credential's payment hash (constant time). */
  knownPreimage(e: VerifiedEntry, preimage: Buffer): boolean {
    return e.preimage !== undefined && preimage.length === e.preimage.length && timingSafeEqual(preimage, e.preimage);
  }

  /** Call only after `preimage` hashed to the credential's payment hash. */
  notePreimage(e: VerifiedEntry, preimage: Buffer): void {
    if (this.entries.get(e.key) === e) e.preimage = Buffer.from(preimage);
  }

  bytes(): number {
    return this.held;
  }

  size(): number {
    return this.entries.size;
  }

  private shrink(e: VerifiedEntry, by: number): void {
    e.size -= by;
    this.held -= by;
  }

  private grow(by: number): void {
    this.held += by;
    for (const [k, old] of this.entries) {
      if (this.held <= this.maxBytes) break;
      this.entries.delete(k);
      this.held -= old.size;
    }
  }
}

/**
 * The key of one caveat check's input. Every field but the path has a closed syntax without NUL (service,
 * route scope, method, capability names), and the path comes last: two different inputs never share a key.
 */
export function checkInput(service: string, unknownCaveats: string, routeScope: string, method: string, required: readonly string[], path: string): string {
  return `${service}\0${unknownCaveats}\0${routeScope}\0${method}\0${required.join(',')}\0${path}`;
}
