// HTTP to Cashu mints with a bound on every call, and a per-mint cache of verified keysets (persisted, so
// P2PK verification keeps working while a mint is unreachable). Also the RequestFn that cashu-ts's Wallet
// uses, so swaps and melts get the same timeouts and error mapping.
import { HttpResponseError, JSONInt, Keyset, MintOperationError, NetworkError, type GetInfoResponse, type MintKeys, type RequestFn } from '@cashu/cashu-ts';
import { FixedBase, parsePoint } from './secp256k1.js';
import type { StoredKeyset, WalletDb } from './wallet-db.js';

/**
 * The mint could not be reached or answered nonsense: the payer is not at fault (503). `notProcessed`:
 * the mint certainly did nothing (connection refused, unknown host); otherwise the outcome is unknown
 * (timeout, connection lost, an HTTP error status, an unreadable answer).
 */
export class MintUnavailableError extends Error {
  constructor(message: string, readonly notProcessed = false) {
    super(message);
  }
}
/** cashu-ts-facing form of a MintUnavailableError whose request certainly changed nothing at the mint. */
export class MintNotReachedError extends NetworkError {
  constructor(message: string) {
    super(message);
    // cashu-ts's error constructors pin their own prototype, which would hide this subclass.
    Object.setPrototypeOf(this, new.target.prototype);
    this.name = 'MintNotReachedError';
  }
}
/** The mint refused the operation with a NUT error (code, detail). */
export class MintRejectedError extends Error {
  constructor(readonly code: number, readonly detail: string) {
    super(`mint refused (code ${code}): ${detail}`);
  }
}

/** NUT error codes we act on. */
export const NUT_CODE = { tokenAlreadySpent: 11001, unbalanced: 11002, outputsAlreadySigned: 10002, keysetInactive: 12002 } as const;

const MAX_BODY = 4 * 1024 * 1024;
/** Spacing of keyset reloads triggered by unknown keyset ids (made-up ids cannot make us hammer a mint). */
const KEYSET_REFRESH_MS = 1_000;

function detailOf(text: string): { code?: number; detail?: string } {
  try {
    const j = JSON.parse(text) as { code?: unknown; detail?: unknown; error?: unknown };
    return {
      code: typeof j.code === 'number' ? j.code : undefined,
      detail: typeof j.detail === 'string' ? j.detail : typeof j.error === 'string' ? j.error : undefined,
    };
  } catch {
    return {};
  }
}

/** Whether a keyset's keys (with its unit, fee and final expiry) hash to its id (NUT-02). */
function keysetIdVerifies(k: KnownKeyset): boolean {
  try {
    return Keyset.verifyKeysetId({ id: k.id, unit: k.unit, keys: k.keys, input_fee_ppk: k.inputFeePpk, final_expiry: k.finalExpiry, active: k.active } as MintKeys);
  } catch {
    return false;
  }
}

/** A short printable excerpt of mint-supplied text (it reaches logs and 400 reasons). */
export function sanitize(text: string, max = 160): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > max ? clean.slice(0, max) + '…' : clean;
}

export async function mintFetch<T>(
  url: string,
  opts: { method?: 'GET' | 'POST'; body?: unknown; timeoutMs: number; signal?: AbortSignal },
): Promise<T> {
  const signals = [AbortSignal.timeout(opts.timeoutMs)];
  if (opts.signal) signals.push(opts.signal);
  const signal = AbortSignal.any(signals);
  let res: Response;
  try {
    res = await fetch(url, {
      method: opts.method ?? 'GET',
      headers: opts.body === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' },
      // cashu-ts's JSON writes Amount objects and bigints as plain JSON integers, as mints expect.
      body: opts.body === undefined ? undefined : JSONInt.stringify(opts.body),
      signal,
      redirect: 'error',
    });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    const code = e.cause?.code;
    const notProcessed = code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN';
    const why = e.name === 'TimeoutError' ? `no answer within ${opts.timeoutMs} ms` : e.name === 'AbortError' ? 'request aborted' : 'unreachable';
    throw new MintUnavailableError(`mint ${new URL(url).origin} ${why}`, notProcessed);
  }
  let text: string;
  try {
    const len = Number(res.headers.get('content-length') ?? '0');
    if (len > MAX_BODY) throw new Error('too large');
    text = await res.text();
    if (text.length > MAX_BODY) throw new Error('too large');
  } catch {
    throw new MintUnavailableError(`mint ${new URL(url).origin} sent an unreadable answer`);
  }
  if (res.status === 400) {
    const d = detailOf(text);
    throw new MintRejectedError(d.code ?? 0, sanitize(d.detail ?? 'bad request'));
  }
  // Not "nothing happened": a proxy in front of the mint can answer 502/504 after the mint acted.
  if (!res.ok) throw new MintUnavailableError(`mint ${new URL(url).origin} answered HTTP ${res.status}`);
  try {
    return JSONInt.parse(text) as T;
  } catch {
    throw new MintUnavailableError(`mint ${new URL(url).origin} sent invalid JSON`);
  }
}

/** cashu-ts transport: our timeouts, cashu-ts's error classes (its wallet logic branches on them). */
export function cashuRequestFn(timeoutMs: number): RequestFn {
  return (async <T>(args: { endpoint: string; requestBody?: Record<string, unknown>; method?: string; signal?: AbortSignal | null }): Promise<T> => {
    try {
      return await mintFetch<T>(args.endpoint, {
        method: (args.method?.toUpperCase() as 'GET' | 'POST' | undefined) ?? (args.requestBody ? 'POST' : 'GET'),
        body: args.requestBody,
        timeoutMs,
        signal: args.signal ?? undefined,
      });
    } catch (err) {
      if (err instanceof MintRejectedError) throw new MintOperationError(err.code, err.detail);
      if (err instanceof MintUnavailableError) throw err.notProcessed ? new MintNotReachedError(err.message) : new NetworkError(err.message);
      throw new HttpResponseError((err as Error).message, 500);
    }
  }) as RequestFn;
}

export interface KnownKeyset {
  id: string;
  unit: string;
  active: boolean;
  inputFeePpk: number;
  finalExpiry?: number;
  /** amount → compressed pubkey hex. */
  keys: Record<string, string>;
}

/**
 * Parsed mint keys ("tables": FixedBase, a key in the form libsecp256k1 takes), least recently used dropped
 * first. A table a verification holds (`acquire` … `release`) is never dropped: while tables are held the
 * cache may exceed `cap`, and it shrinks back to `cap` as they are released.
 */
export class KeyTables {
  private readonly map = new Map<string, FixedBase>();
  constructor(readonly cap: number) {}

  /** Tables in the cache, held or not. */
  get size(): number {
    return this.map.size;
  }

  /**
   * The table for a mint key (compressed hex), pinned until the caller passes it to `release`; undefined if
   * the key is not a curve point.
   */
  acquire(hex: string): FixedBase | undefined {
    const t = this.lookup(hex);
    t?.pin();
    return t;
  }

  /** Gives back tables from `acquire` (each once per acquire), then drops what exceeds the cap. */
  release(tables: Iterable<FixedBase>): void {
    for (const t of tables) t.unpin();
    this.trim(this.cap);
  }

  /**
   * Builds (warms) a key's table without holding it: the result is only safe to use until the next table is
   * built, so verifications use `acquire`.
   */
  get(hex: string): FixedBase | undefined {
    return this.lookup(hex);
  }

  private lookup(hex: string): FixedBase | undefined {
    let t = this.map.get(hex);
    if (t) {
      this.map.delete(hex);
      this.map.set(hex, t);
      return t;
    }
    const p = parsePoint(hex);
    if (!p) return undefined;
    this.trim(this.cap - 1); // room first, so the freed memory is reused by this table
    t = new FixedBase(p, 8);
    this.map.set(hex, t);
    return t;
  }

  /** Drops unheld tables, least recently used first, until at most `max` remain (or only held ones). */
  private trim(max: number): void {
    for (const [hex, t] of this.map) {
      if (this.map.size <= max) return;
      if (t.pinned) continue;
      this.map.delete(hex);
      t.dispose();
    }
  }
}

interface MintState {
  url: string;
  keysets: Map<string, KnownKeyset>;
  info?: GetInfoResponse;
  loadedAt: number;
  loading?: Promise<void>;
}

/**
 * Keysets per mint. Keys are only trusted after their id re-derives from them (NUT-02), which for v2 ids
 * also pins the unit, the input fee and the expiry.
 */
export class MintDirectory {
  private readonly mints = new Map<string, MintState>();
  readonly tables = new KeyTables(48);

  constructor(
    private readonly db: WalletDb,
    private readonly timeoutMs: number,
    /** Bound on distinct mints remembered (the accepted list). */
    private readonly maxMints = 32,
  ) {}

  private state(mint: string): MintState {
    let s = this.mints.get(mint);
    if (!s) {
      s = { url: mint, keysets: new Map(), loadedAt: 0 };
      for (const k of this.db.keysetsOf(mint)) s.keysets.set(k.id, { id: k.id, unit: k.unit, active: k.active, inputFeePpk: k.inputFeePpk, finalExpiry: k.finalExpiry, keys: k.keys });
      if (this.mints.size >= this.maxMints) this.mints.delete(this.mints.keys().next().value!);
      this.mints.set(mint, s);
    }
    return s;
  }

  /** Keysets known for `mint` (from disk or the network) without any I/O. */
  known(mint: string): Map<string, KnownKeyset> {
    return this.state(mint).keysets;
  }

  info(mint: string): GetInfoResponse | undefined {
    return this.state(mint).info;
  }

  /**
   * Loads keysets from the mint: on first use, or when `unknownId` is not known and the last load is older
   * than a second (a rotated keyset is picked up on its first token). Concurrent callers share one load.
   */
  async ensure(mint: string, opts: { unknownId?: string; signal?: AbortSignal; force?: boolean } = {}): Promise<Map<string, KnownKeyset>> {
    const s = this.state(mint);
    const stale = Date.now() - s.loadedAt > KEYSET_REFRESH_MS;
    const need = opts.force || s.loadedAt === 0 || (opts.unknownId !== undefined && !s.keysets.has(opts.unknownId) && stale);
    if (need) {
      s.loading ??= this.load(s, opts.signal).finally(() => {
        s.loading = undefined;
      });
      await s.loading;
    }
    return s.keysets;
  }

  private async load(s: MintState, signal?: AbortSignal): Promise<void> {
    const base = s.url;
    const list = await mintFetch<{ keysets?: unknown }>(`${base}/v1/keysets`, { timeoutMs: this.timeoutMs, signal });
    if (!Array.isArray(list.keysets)) throw new MintUnavailableError(`mint ${base} sent a malformed keyset list`);
    for (const raw of list.keysets as Array<Record<string, unknown>>) {
      if (!raw || typeof raw.id !== 'string' || typeof raw.unit !== 'string') continue;
      const id = raw.id;
      const active = raw.active !== false;
      const known = s.keysets.get(id);
      if (known) {
        known.active = active;
        // A keyset with a legacy ("00") id does not commit to its input fee, and a mint may change it: the fee
        // it lists now is the one its swaps charge (a stale one made every swap unbalanced, refused). A v2 id
        // commits to the fee, so a different one there never verifies and is ignored.
        const fee = typeof raw.input_fee_ppk === 'number' ? raw.input_fee_ppk : 0;
        if (fee !== known.inputFeePpk && Number.isSafeInteger(fee) && fee >= 0 && keysetIdVerifies({ ...known, active, inputFeePpk: fee })) {
          known.inputFeePpk = fee;
          this.db.putKeyset({ mint: base, ...known });
        }
        continue;
      }
      const resp = await mintFetch<{ keysets?: MintKeys[] }>(`${base}/v1/keys/${encodeURIComponent(id)}`, { timeoutMs: this.timeoutMs, signal });
      const mk = resp.keysets?.find((k) => k && k.id === id);
      if (!mk || typeof mk.keys !== 'object' || mk.keys === null) continue;
      const fee = typeof raw.input_fee_ppk === 'number' ? raw.input_fee_ppk : 0;
      const finalExpiry = typeof raw.final_expiry === 'number' ? raw.final_expiry : undefined;
      const keys: Record<string, string> = {};
      for (const [amt, hex] of Object.entries(mk.keys)) {
        if (/^\d{1,19}$/.test(amt) && typeof hex === 'string' && parsePoint(hex)) keys[amt] = hex.toLowerCase();
      }
      const verified = keysetIdVerifies({ id, unit: raw.unit, keys, inputFeePpk: fee, finalExpiry, active });
      if (!verified || !Number.isSafeInteger(fee) || fee < 0) continue; // keys that do not hash to their id are never used
      const ks: KnownKeyset = { id, unit: raw.unit, active, inputFeePpk: fee, finalExpiry, keys };
      s.keysets.set(id, ks);
      const stored: StoredKeyset = { mint: base, ...ks };
      this.db.putKeyset(stored);
    }
    s.loadedAt = Date.now();
  }

  async loadInfo(mint: string, signal?: AbortSignal): Promise<GetInfoResponse> {
    const s = this.state(mint);
    s.info = await mintFetch<GetInfoResponse>(`${mint}/v1/info`, { timeoutMs: this.timeoutMs, signal });
    return s.info;
  }
}

/** NUT-02 input fee for a set of proofs: ceil(Σ input_fee_ppk / 1000). */
export function inputFee(proofs: Array<{ id: string }>, keysets: Map<string, KnownKeyset>): number {
  let ppk = 0;
  for (const p of proofs) ppk += keysets.get(p.id)?.inputFeePpk ?? 0;
  return Math.ceil(ppk / 1000);
}
