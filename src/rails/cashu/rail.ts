// The Cashu rail: NUT-18 challenge, NUT-24 acceptance in standard (swap at the mint) or P2PK (verify
// locally, store) mode, single use of every proof through the shared Store, and scheduled redemption.
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import {
  CTSError,
  getDecodedToken,
  getPubKeyFromPrivKey,
  getTokenMetadata,
  MintOperationError,
  NetworkError,
  type Proof,
  type Token,
} from '@cashu/cashu-ts';
import type { LightningBackend } from '../lightning/backend.js';
import type { Store } from '../../store/store.js';
import type { Logger } from '../../util/log.js';
import { normalizeMint, resolveDbPath, resolveMnemonicFile, type CashuConfig } from './config.js';
import { MintDirectory, MintNotReachedError, MintRejectedError, MintUnavailableError, NUT_CODE, mintFetch, sanitize, type KnownKeyset } from './mint-client.js';
import { encodePaymentRequest, MSAT_PER_UNIT, priceInUnit, type CashuUnit } from './payment-request.js';
import { Redeemer, type PayoutInvoice } from './redeem.js';
import { proofSetId, ReplayGuard } from './replay.js';
import { hashToCurve, warmGenerator } from './secp256k1.js';
import { loadWalletSeed } from './seed.js';
import { checkTokenProofs, prepareP2pk, Rejection, verifyDleqChunked, type CheckedToken } from './verify.js';
import { WalletDb, type BalanceRow, type MeltRecord, type StoredProof } from './wallet-db.js';
import { trackSends, WalletPool } from './wallets.js';

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

export interface CashuRail {
  readonly mode: 'standard' | 'p2pk';
  readonly unit: CashuUnit;
  /**
   * Value of the X-Cashu challenge header (NUT-18 creqA) for a price, rounded up to the unit. The request
   * is the same for every route at a price (`routeId` is accepted for call-site symmetry and ignored).
   */
  paymentRequest(priceMsat: number, routeId?: string): string;
  /** Verifies and accepts a token (NUT-24) for a price. Never throws. */
  accept(token: string, priceMsat: number, ctx: CashuAcceptContext, signal?: AbortSignal): Promise<CashuAcceptResult>;
  /** Runs one redemption cycle now (also what the timer runs). */
  redeemNow(signal?: AbortSignal): Promise<MeltRecord[]>;
  /**
   * Settles swaps whose answer was lost (also what the timer runs): restores their outputs from the seed
   * (NUT-09) or, when the mint never spent the inputs, releases them for the payer's retry. Only swaps
   * started at least `minAgeSecs` ago (default: past the swap's transport bound, so none is still in
   * flight). Returns how many were settled.
   */
  recoverNow(signal?: AbortSignal, minAgeSecs?: number): Promise<number>;
  balances(): BalanceRow[];
  melts(limit?: number): MeltRecord[];
  /** For `l402d doctor`: every accepted mint answers /v1/info and its keysets verify. */
  check(signal?: AbortSignal): Promise<string>;
  /** One line for operators; no secrets. */
  describe(): string;
  close(): Promise<void>;
}

export interface CashuRailDeps {
  store: Store;
  dataDir: string;
  /** Relative paths in the section resolve against it (default: dataDir). */
  configDir?: string;
  log: Logger;
  /** Redeemed ecash of routes without their own Lightning address is paid to invoices from this backend. */
  lightning?: Pick<LightningBackend, 'createInvoice'>;
  /** BOLT11 invoice for a tenant's Lightning address (LNURL-pay); needed for per-tenant redemption. */
  tenantInvoice?: (address: string, amountMsat: number, memo: string, signal: AbortSignal) => Promise<string>;
  /**
   * Scheduled work: redemption every interval (when enabled) and recovery of lost swaps (default true).
   * One-shot users (`l402d cashu redeem`, doctor) turn it off and call redeemNow/recoverNow themselves.
   */
  background?: boolean;
}

const bad = (reason: string): CashuAcceptResult => ({ ok: false, status: 400, reason });
const unavailable = (reason: string): CashuAcceptResult => ({ ok: false, status: 503, reason });

/** The wallet database refused the journal entry of a swap about to be sent (so it was not sent). */
class JournalError extends Error {}
const nowSecs = () => Math.floor(Date.now() / 1000);
const RECOVER_EVERY_MS = 30_000;
/** How far the output counter jumps when the mint says our outputs were signed before. */
const COUNTER_SKIP = 1000;
type Counters = { keysetId: string; start: number; count: number };
const errText = (err: unknown) => sanitize(err instanceof Error ? err.message : String(err), 200);

/** Resolves `p` unless `ms` pass or `signal` aborts first; the losing promise keeps running. */
function race<T>(p: Promise<T>, ms: number, signal?: AbortSignal): Promise<{ done: true; value: T } | { done: false }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish({ done: false }), ms);
    const onAbort = () => finish({ done: false });
    signal?.addEventListener('abort', onAbort, { once: true });
    function finish(v: { done: true; value: T } | { done: false }) {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(v);
    }
    if (signal?.aborted) return finish({ done: false });
    p.then(
      (value) => finish({ done: true, value }),
      (err) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

export async function createCashuRail(cfg: CashuConfig, deps: CashuRailDeps): Promise<CashuRail> {
  const log = deps.log.child({ rail: 'cashu' });
  const configDir = deps.configDir ?? deps.dataDir;
  const dbPath = resolveDbPath(cfg, deps.dataDir, configDir);
  const db = new WalletDb(dbPath);
  try {
    return await build(cfg, deps, log, db, dbPath, configDir);
  } catch (err) {
    db.close();
    throw err;
  }
}

async function build(cfg: CashuConfig, deps: CashuRailDeps, log: Logger, db: WalletDb, dbPath: string, configDir: string): Promise<CashuRail> {
  const unit = cfg.unit as CashuUnit;
  const mnemonicFile = resolveMnemonicFile(cfg, dbPath, configDir);
  const seed = loadWalletSeed({ mnemonic: cfg.mnemonic, mnemonicFile, fingerprintFile: resolve(dirname(dbPath), 'wallet.fingerprint'), db });
  if (seed.source === 'generated') log.warn({ file: mnemonicFile }, 'cashu: generated a new wallet mnemonic; back it up (it restores the wallet)');

  const ourPubkey = cfg.p2pk.privateKey ? Buffer.from(getPubKeyFromPrivKey(Buffer.from(cfg.p2pk.privateKey, 'hex'))).toString('hex') : undefined;
  const whitelist = new Set(cfg.mints);
  // Only listed mints are ever looked up (accept() checks the list first): one entry each.
  const directory = new MintDirectory(db, cfg.mintTimeoutMs, cfg.mints.length);
  const replay = new ReplayGuard(deps.store);
  // The swap's own transport bound is longer than swap_timeout_ms: the request answers 503 at the shorter
  // bound while the swap may still finish (and be credited) in the background.
  const swapTransportMs = Math.min(Math.max(cfg.swapTimeoutMs * 4, 10_000), 60_000);
  const wallets = new WalletPool(db, directory, seed.seed, unit, swapTransportMs, cfg.mints.length);
  const holder = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const background = new Set<Promise<unknown>>();
  const requestCache = new Map<number, string>();
  const nutsCache = new Map<string, Record<string, boolean>>();
  let closed = false;

  // Warm keysets and mint info; a mint that is down now is retried on first use.
  await Promise.allSettled(
    cfg.mints.map(async (m) => {
      try {
        await directory.ensure(m);
        const info = await directory.loadInfo(m);
        persistInfo(m, info);
      } catch (err) {
        log.warn({ mint: m, err: errText(err) }, 'cashu: mint not reachable at startup; will retry on first use');
      }
    }),
  );
  if (cfg.mode === 'p2pk' && cfg.p2pk.requireDleq) warmGenerator(); // builds the generator table now, not on the first payment

  function persistInfo(mint: string, info: unknown) {
    const nuts = (info as { nuts?: Record<string, { supported?: boolean }> })?.nuts ?? {};
    db.metaSet(`mint_nuts:${mint}`, JSON.stringify({ 7: !!nuts['7']?.supported, 11: !!nuts['11']?.supported, 12: !!nuts['12']?.supported }));
    nutsCache.delete(mint);
  }

  /** NUT-06 support flags, from memory, disk (so a restart works while the mint is down), or the mint. */
  async function mintNuts(mint: string, signal?: AbortSignal): Promise<Record<string, boolean>> {
    let nuts = nutsCache.get(mint);
    if (nuts) return nuts;
    let stored = db.meta(`mint_nuts:${mint}`);
    if (!stored) {
      persistInfo(mint, await directory.loadInfo(mint, signal));
      stored = db.meta(`mint_nuts:${mint}`)!;
    }
    nuts = JSON.parse(stored) as Record<string, boolean>;
    nutsCache.set(mint, nuts);
    return nuts;
  }

  async function keysetsFor(mint: string, signal?: AbortSignal, unknownId?: string): Promise<Map<string, KnownKeyset>> {
    try {
      return await directory.ensure(mint, { signal, unknownId });
    } catch (err) {
      // P2PK verification is local: keys persisted earlier keep it working while the mint is down.
      if (err instanceof MintUnavailableError && directory.known(mint).size > 0) return directory.known(mint);
      throw err;
    }
  }

  function decode(token: string, keysets: Map<string, KnownKeyset>): Token {
    return getDecodedToken(token, [...keysets.keys()]);
  }

  function toStored(t: CheckedToken, mint: string, ctx: CashuAcceptContext, p2pk: boolean): StoredProof[] {
    return t.proofs.map((c) => ({
      y: c.y,
      mint,
      unit,
      keysetId: c.proof.id,
      amount: c.amount,
      secret: c.proof.secret,
      C: c.proof.C,
      dleq: c.proof.dleq,
      tenant: ctx.tenant,
      routeId: ctx.routeId,
      p2pk,
    }));
  }

  async function acceptP2pk(t: CheckedToken, mint: string, priceMsat: number, ctx: CashuAcceptContext, signal?: AbortSignal): Promise<CashuAcceptResult> {
    const nuts = await mintNuts(mint, signal);
    // NUT-11: a mint that does not enforce P2PK treats locked proofs as anyone-can-spend.
    if (!nuts['11']) return bad(`mint ${mint} does not enforce P2PK (NUT-11); its proofs cannot be locked to this gate`);
    const dleq = prepareP2pk(t, directory, { ourPubkey: ourPubkey!, requireDleq: cfg.p2pk.requireDleq, nowSecs: nowSecs(), minLocktimeSecs: cfg.p2pk.minLocktimeSecs });
    if (dleq.swap) {
      // Swapped at the mint now, as in standard mode, rather than stored as received:
      // - a proof without a DLEQ (only with require_dleq off): nothing local proves the mint signed it (a
      //   made-up C on the curve looks the same), so the mint must;
      // - a proof with a locktime: once it passes, the sender (refund keys) or anyone (none) could spend it,
      //   and nothing guarantees a melt before then (redemption off, a balance below its minimum).
      return acceptStandard(t, mint, priceMsat, ctx, signal);
    }
    await verifyDleqChunked(dleq);
    signal?.throwIfAborted();
    if (cfg.p2pk.checkState) {
      const res = await mintFetch<{ states?: Array<{ Y?: string; state?: string }> }>(`${mint}/v1/checkstate`, {
        method: 'POST',
        body: { Ys: t.ys },
        timeoutMs: cfg.mintTimeoutMs,
        signal,
      });
      const byY = new Map((res.states ?? []).map((s) => [String(s.Y).toLowerCase(), s.state]));
      for (const y of t.ys) {
        const st = byY.get(y);
        if (st === 'SPENT') return bad('token already spent (mint reports it spent)');
        if (st === 'PENDING') return bad('token is pending at the mint');
        if (st !== 'UNSPENT') throw new MintUnavailableError(`mint ${mint} sent no state for a proof`);
      }
    }
    // Past the deadline nginx has answered already: claiming now would spend a token whose payer saw a 503.
    signal?.throwIfAborted();
    if ((await replay.claimAll(t.ys, undefined, signal)) === 'replay') {
      replay.remember(t.ys);
      return bad('token already spent');
    }
    // The claims landed after the deadline: the payer has had a 503, so they go back.
    if (signal?.aborted) {
      await replay.release(t.ys);
      return unavailable('request aborted');
    }
    let stored: boolean;
    try {
      stored = db.insertProofs(toStored(t, mint, ctx, true));
    } catch (err) {
      await replay.release(t.ys);
      throw err;
    }
    replay.remember(t.ys);
    if (!stored) return bad('token already spent');
    const amountMsat = (t.total - t.fee) * MSAT_PER_UNIT[unit];
    log.info({ mint, route: ctx.routeId, amountMsat, proofs: t.proofs.length, priceMsat }, 'cashu: P2PK token accepted');
    return { ok: true, amountMsat, mint, proofs: t.proofs.length };
  }

  function storeSwapped(received: Proof[], mint: string, ctx: CashuAcceptContext): void {
    db.insertProofs(
      received.map((p) => ({
        y: hashToCurve(p.secret).hex,
        mint,
        unit,
        keysetId: p.id,
        amount: p.amount.toNumber(),
        secret: p.secret,
        C: p.C,
        dleq: p.dleq,
        tenant: ctx.tenant,
        routeId: ctx.routeId,
        p2pk: false,
      })),
    );
  }

  async function acceptStandard(
    t: CheckedToken,
    mint: string,
    priceMsat: number,
    ctx: CashuAcceptContext,
    signal?: AbortSignal,
  ): Promise<CashuAcceptResult> {
    const amountMsat = (t.total - t.fee) * MSAT_PER_UNIT[unit];
    const setId = proofSetId(t.ys);
    if ((await replay.claimAll(t.ys, cfg.replayTtlSecs, signal)) === 'replay') {
      const credit = await replay.useLateCredit(setId, cfg.replayTtlSecs, ctx.routeId);
      if (credit === 'other_route') return bad('this token paid for a request to another route; retry that request');
      if (credit === 'used' && signal?.aborted) {
        // Used after the deadline: the payer has had a 503, so the credit goes back for the next retry.
        await replay.unuseLateCredit(setId);
        return unavailable('request aborted');
      }
      if (credit === 'used') {
        replay.remember(t.ys);
        log.info({ mint, route: ctx.routeId, amountMsat }, 'cashu: token accepted (its swap finished after an earlier timeout)');
        return { ok: true, amountMsat, mint, proofs: t.proofs.length };
      }
      if (await replay.isUnsettled(setId)) return unavailable('an earlier swap of this token has not been settled yet; retry in a minute');
      return bad('token already spent');
    }
    // The claims landed after the deadline: the payer has had a 503 and nothing was sent, so they go back.
    if (signal?.aborted) {
      await replay.release(t.ys);
      return unavailable('request aborted');
    }
    let wallet;
    try {
      wallet = await wallets.get(mint, signal);
    } catch (err) {
      await replay.release(t.ys);
      throw err;
    }
    // The swap itself proves the signatures; cashu-ts would otherwise re-verify DLEQs slowly.
    const proofs = t.proofs.map((c) => ({ id: c.proof.id, amount: c.proof.amount, secret: c.proof.secret, C: c.proof.C, ...(c.proof.witness ? { witness: c.proof.witness } : {}) }));
    // Journalled before the request leaves: if the answer is lost, recoverNow() restores the outputs from the
    // seed or releases the payer's proofs. Prepared and sent in two steps because cashu-ts swallows errors
    // thrown by onCountersReserved: a swap whose journal entry could not be written is never sent.
    const swapId = `${setId.slice(0, 32)}-${randomBytes(4).toString('hex')}`;
    let reserved: Counters | undefined;
    const op = trackSends(async () => {
      const preview = await wallet.prepareSwapToReceive({ mint, unit, proofs }, { onCountersReserved: (c: Counters) => (reserved = c) });
      if (!reserved) throw new Error('cashu-ts reported no output counters for the swap');
      try {
        db.startSwap({ id: swapId, mint, keysetId: reserved.keysetId, start: reserved.start, count: reserved.count, ys: t.ys, tenant: ctx.tenant, routeId: ctx.routeId, startedAt: nowSecs() });
      } catch (err) {
        throw new JournalError(errText(err));
      }
      // Proofs locked to our key (if one is configured) are signed for the swap.
      return (await wallet.completeSwap(preview, cfg.p2pk.privateKey)).keep;
    });
    const swap = op.result;
    let outcome;
    try {
      outcome = await race(swap, cfg.swapTimeoutMs, signal);
    } catch (err) {
      return swapFailed(err, { id: swapId, sent: op.sent(), reserved }, t, mint);
    }
    if (outcome.done) {
      storeSwapped(outcome.value, mint, ctx);
      db.endSwap(swapId);
      replay.remember(t.ys);
      log.info({ mint, route: ctx.routeId, amountMsat, proofs: t.proofs.length, priceMsat }, 'cashu: token swapped and accepted');
      return { ok: true, amountMsat, mint, proofs: t.proofs.length };
    }
    // Too slow (or the request went away): keep the claims; if the swap completes, the value is kept and
    // the payer's retry with the same token is accepted once. Until then a retry is told to wait.
    await replay.markUnsettled(setId, cfg.replayTtlSecs).catch(() => undefined);
    // Never rejects: a store or disk failure here is logged, and the journal entry left for recovery.
    const late = swap.then(
      async (received) => {
        try {
          storeSwapped(received, mint, ctx);
          // Not remembered as spent in-process: the payer's retry must reach the late credit below. The
          // journal entry goes last: if the credit cannot be written, recovery restores and credits later.
          await replay.creditLate(setId, cfg.replayTtlSecs, ctx.routeId);
          await replay.settled(setId);
          db.endSwap(swapId);
          log.info({ mint, route: ctx.routeId, amountMsat }, 'cashu: late swap completed; a retry with the same token will be accepted');
        } catch (err) {
          log.error({ mint, err: errText(err) }, 'cashu: could not record a late swap; recovery will restore its outputs from the seed');
        }
      },
      async (err) => {
        await swapFailed(err, { id: swapId, sent: op.sent(), reserved }, t, mint).catch((e: unknown) => log.error({ mint, err: errText(e) }, 'cashu: could not settle a failed late swap'));
      },
    );
    background.add(late);
    void late.finally(() => background.delete(late));
    return unavailable(signal?.aborted ? 'request aborted during the swap' : `mint did not complete the swap within ${cfg.swapTimeoutMs} ms`);
  }

  /**
   * A swap that threw. Settled now only when the mint certainly signed nothing: it refused with a NUT
   * error, the request never left, or the connection was refused. Any other failure after the request left
   * (timeout, a cut connection, an HTTP error from the mint or a proxy in front of it, an answer cashu-ts
   * rejects) may follow a swap the mint did: the claims and the journal entry stay until recoverNow() asks
   * the mint (NUT-09 restore, NUT-07 state), and the payer's retry is told to wait.
   */
  async function swapFailed(err: unknown, swap: { id: string; sent: boolean; reserved?: Counters }, t: CheckedToken, mint: string): Promise<CashuAcceptResult> {
    const setId = proofSetId(t.ys);
    const swapId = swap.id;
    const sent = swap.sent;
    if (err instanceof MintOperationError) {
      db.endSwap(swapId);
      await replay.settled(setId);
      if (err.code === NUT_CODE.tokenAlreadySpent) {
        replay.remember(t.ys);
        return bad('token already spent');
      }
      if (err.code === NUT_CODE.outputsAlreadySigned) {
        // Our NUT-13 counters were used before (a wallet database restored from an older copy): our fault,
        // not the payer's. Skip well past them so the retry gets fresh outputs.
        if (swap.reserved) db.counterAtLeast(swap.reserved.keysetId, swap.reserved.start + swap.reserved.count + COUNTER_SKIP);
        await replay.release(t.ys);
        log.error({ mint }, 'cashu: the mint has already signed our swap outputs (wallet database older than the seed\'s use?); skipped ahead');
        return unavailable('the gate reused a wallet output; retry');
      }
      // The mint refused without spending anything: let the payer retry.
      await replay.release(t.ys);
      return bad(`mint refused the token: ${sanitize(err.message)}`);
    }
    if (!sent || err instanceof MintNotReachedError) {
      // Nothing was swapped: the payer's proofs are released even if the wallet database is failing.
      try {
        db.endSwap(swapId);
      } catch (e) {
        log.error({ mint, err: errText(e) }, 'cashu: could not end a swap journal entry; recovery will release it');
      }
      await replay.settled(setId);
      await replay.release(t.ys);
      if (err instanceof JournalError) {
        log.error({ mint, err: err.message }, 'cashu: could not journal a swap; not sent');
        return unavailable('the gate cannot record the swap right now');
      }
      if (err instanceof MintNotReachedError) return unavailable(sanitize(err.message));
      // Refused by cashu-ts before anything was sent: the token itself is unusable.
      if (err instanceof CTSError && !(err instanceof NetworkError)) return bad(`token cannot be swapped: ${sanitize(err.message)}`);
      log.error({ mint, err: errText(err) }, 'cashu: swap failed before reaching the mint');
      return unavailable('swap failed');
    }
    await replay.markUnsettled(setId, cfg.replayTtlSecs);
    log.warn({ mint, err: errText(err) }, 'cashu: swap outcome unknown; proofs stay claimed until recovery asks the mint');
    return unavailable(err instanceof CTSError ? sanitize(err.message) : 'swap outcome unknown');
  }

  /** See CashuRail.recoverNow. */
  async function recoverSwaps(signal?: AbortSignal, minAgeSecs = Math.ceil(swapTransportMs / 1000) + 10): Promise<number> {
    let settled = 0;
    for (const rec of db.swapsStartedBefore(nowSecs() - minAgeSecs)) {
      if (closed || signal?.aborted) break;
      // Several processes share the wallet: one of them settles each swap.
      if (!db.takeLease(`swap:${rec.id}`, holder, 120)) continue;
      try {
        const wallet = await wallets.get(rec.mint, signal);
        const { proofs } = await wallet.restore(rec.start, rec.count, { keysetId: rec.keysetId });
        if (proofs.length > 0) {
          // Already stored (a late answer got that far) is fine: insertProofs then changes nothing.
          storeSwapped(proofs, rec.mint, { routeId: rec.routeId ?? '', tenant: rec.tenant });
          await replay.creditLate(proofSetId(rec.ys), cfg.replayTtlSecs, rec.routeId ?? '');
          await replay.settled(proofSetId(rec.ys));
          db.endSwap(rec.id);
          const amount = proofs.reduce((a, p) => a + p.amount.toNumber(), 0);
          log.info({ mint: rec.mint, route: rec.routeId, amount, unit }, 'cashu: restored the outputs of a swap whose answer was lost (NUT-09); a retry with the same token will be accepted');
          settled++;
          continue;
        }
        // Nothing was signed for our outputs: did the mint spend the inputs?
        const res = await mintFetch<{ states?: Array<{ Y?: string; state?: string }> }>(`${rec.mint}/v1/checkstate`, {
          method: 'POST',
          body: { Ys: rec.ys },
          timeoutMs: cfg.mintTimeoutMs,
          signal,
        });
        const states = new Map((res.states ?? []).map((x) => [String(x.Y).toLowerCase(), x.state]));
        const all = rec.ys.map((y) => states.get(y));
        if (all.every((st) => st === 'UNSPENT')) {
          await replay.release(rec.ys);
          await replay.settled(proofSetId(rec.ys));
          db.endSwap(rec.id);
          log.info({ mint: rec.mint, route: rec.routeId }, 'cashu: a swap whose answer was lost never happened; the token is free for the payer to retry');
          settled++;
        } else if (all.every((st) => st === 'SPENT' || st === 'UNSPENT')) {
          // Spent without signing our outputs: the payer spent them elsewhere at the same time.
          await replay.settled(proofSetId(rec.ys));
          db.endSwap(rec.id);
          log.warn({ mint: rec.mint, route: rec.routeId }, 'cashu: a swap whose answer was lost did not happen and its proofs were spent elsewhere');
          settled++;
        }
        // PENDING (or no answer for some): ask again next time.
      } catch (err) {
        log.warn({ mint: rec.mint, err: errText(err) }, 'cashu: could not settle a swap whose answer was lost; will retry');
      } finally {
        db.dropLease(`swap:${rec.id}`, holder);
      }
    }
    return settled;
  }

  async function accept(token: string, priceMsat: number, ctx: CashuAcceptContext, signal?: AbortSignal): Promise<CashuAcceptResult> {
    if (closed) return unavailable('cashu rail is shutting down');
    if (typeof token !== 'string' || token.length > cfg.maxTokenBytes) return bad(`token is larger than ${cfg.maxTokenBytes} bytes`);
    let priceUnits: number;
    try {
      priceUnits = priceInUnit(priceMsat, unit);
    } catch (err) {
      log.error({ err: errText(err) }, 'cashu: invalid price');
      return unavailable('invalid price');
    }
    try {
      let meta;
      try {
        meta = getTokenMetadata(token);
      } catch {
        return bad('token cannot be decoded');
      }
      let mint: string;
      try {
        mint = normalizeMint(meta.mint);
      } catch {
        return bad('token names an invalid mint URL');
      }
      if (!whitelist.has(mint)) return bad(`mint ${sanitize(mint, 100)} is not accepted here`);
      // A cashuA token's JSON can put anything in "unit".
      const tokenUnit: unknown = meta.unit ?? 'sat';
      if (typeof tokenUnit !== 'string') return bad('token unit is malformed');
      if (tokenUnit !== unit) return bad(`token unit is ${sanitize(tokenUnit, 16)}; this gate takes ${unit}`);
      const n = meta.incompleteProofs.length;
      if (n === 0) return bad('token has no proofs');
      if (n > cfg.maxProofs) return bad(`token has ${n} proofs; at most ${cfg.maxProofs} are accepted`);
      if (meta.amount.toBigInt() < BigInt(priceUnits)) return bad(`token is worth ${meta.amount.toString()} ${unit}; the price is ${priceUnits} ${unit}`);

      let keysets = await keysetsFor(mint, signal);
      let decoded: Token;
      try {
        decoded = decode(token, keysets);
      } catch {
        // Perhaps a keyset we have not seen yet (its short id cannot be mapped): refresh once, rate-limited.
        keysets = await keysetsFor(mint, signal, '\u0000unknown');
        try {
          decoded = decode(token, keysets);
        } catch {
          return bad('token cannot be decoded (unknown keyset or malformed)');
        }
      }
      const unknown = decoded.proofs.find((p) => !keysets.has(p.id));
      if (unknown) keysets = await keysetsFor(mint, signal, unknown.id);

      const checked = checkTokenProofs(decoded.proofs, keysets, {
        unit,
        priceUnits,
        maxProofs: cfg.maxProofs,
        nowSecs: nowSecs(),
        keysetMarginSecs: cfg.mode === 'p2pk' ? cfg.p2pk.minLocktimeSecs : 0,
      });
      if (replay.knownSpent(checked.ys)) return bad('token already spent');
      return cfg.mode === 'p2pk' ? await acceptP2pk(checked, mint, priceMsat, ctx, signal) : await acceptStandard(checked, mint, priceMsat, ctx, signal);
    } catch (err) {
      if (err instanceof Rejection) return bad(err.message);
      if (err instanceof MintRejectedError) return bad(`mint refused: ${err.detail}`);
      if (err instanceof MintUnavailableError) return unavailable(err.message);
      if (signal?.aborted) return unavailable('request aborted');
      log.error({ err: errText(err) }, 'cashu: accept failed');
      return unavailable('cashu verification failed');
    }
  }

  const payout: PayoutInvoice | undefined =
    deps.lightning || deps.tenantInvoice
      ? async (tenant, amountMsat, memo, signal) => {
          if (tenant) {
            if (!deps.tenantInvoice) throw new Error(`no Lightning address resolver for tenant ${tenant}`);
            return deps.tenantInvoice(tenant, amountMsat, memo, signal);
          }
          if (!deps.lightning) throw new Error('no Lightning backend to create the payout invoice');
          const inv = await deps.lightning.createInvoice({ amountMsat, memo, expirySecs: cfg.redeem.invoiceExpirySecs }, signal);
          return inv.bolt11;
        }
      : undefined;
  // Swaps whose answer was lost (this process's, or a crashed one's from the journal) are settled in the
  // background; one run at a time.
  let recovering: Promise<unknown> | undefined;
  const scheduled = deps.background ?? true;
  // Both modes swap (P2PK mode: tokens with a locktime or without a DLEQ).
  const recoverTimer =
    scheduled
      ? setInterval(() => {
          recovering ??= recoverSwaps()
            .catch((err: unknown) => log.warn({ err: errText(err) }, 'cashu: swap recovery failed'))
            .finally(() => (recovering = undefined));
        }, RECOVER_EVERY_MS).unref()
      : undefined;
  const redeemer = new Redeemer(cfg, db, directory, wallets, payout, cfg.p2pk.privateKey, log);
  if (cfg.redeem.enabled && scheduled) {
    if (!payout) log.warn('cashu: redemption is on but no Lightning backend was given; melts will fail');
    redeemer.start();
  }

  return {
    mode: cfg.mode,
    unit,
    paymentRequest(priceMsat: number): string {
      let v = requestCache.get(priceMsat);
      if (!v) {
        v = encodePaymentRequest({ amount: priceInUnit(priceMsat, unit), unit, mints: cfg.mints, p2pkPubkey: cfg.mode === 'p2pk' ? ourPubkey : undefined });
        if (requestCache.size >= 1024) requestCache.delete(requestCache.keys().next().value!);
        requestCache.set(priceMsat, v);
      }
      return v;
    },
    accept,
    redeemNow: async (signal) => (closed ? [] : redeemer.runOnce(signal)),
    recoverNow: async (signal, minAgeSecs) => (closed ? 0 : recoverSwaps(signal, minAgeSecs)),
    balances: () => db.balances(),
    melts: (limit) => db.melts(limit),
    async check(signal) {
      const lines: string[] = [];
      for (const m of cfg.mints) {
        const info = await directory.loadInfo(m, signal);
        const ks = await directory.ensure(m, { signal, force: true });
        const ours = [...ks.values()].filter((k) => k.unit === unit);
        if (ours.length === 0) throw new Error(`mint ${m} has no verified keyset in unit ${unit}`);
        if (cfg.mode === 'p2pk' && !info.nuts?.['11']?.supported) throw new Error(`mint ${m} does not advertise NUT-11 (P2PK)`);
        persistInfo(m, info);
        lines.push(`${m} (${sanitize(String(info.name ?? 'unnamed'), 40)}, ${ours.length} ${unit} keysets)`);
      }
      return `cashu ${cfg.mode}: ${lines.join('; ')}`;
    },
    describe() {
      return `cashu ${cfg.mode} mode, unit ${unit}, mints: ${cfg.mints.join(', ')}, wallet ${dbPath} (seed ${seed.fingerprint})${cfg.redeem.enabled ? `, redeem every ${cfg.redeem.intervalSecs} s` : ''}`;
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(recoverTimer);
      await redeemer.stop();
      await recovering;
      const pending = [...background];
      if (pending.length) {
        await Promise.race([Promise.allSettled(pending), new Promise((r) => setTimeout(r, Math.min(cfg.swapTimeoutMs * 4, 60_000)).unref())]);
      }
      db.close();
    },
  };
}
