// Accepting a token (NUT-24): shape and price checks, then the mode's own path. Standard mode swaps the
// proofs at the mint (journalled, see swap-journal.ts); P2PK mode verifies proofs locked to our key locally
// (NUT-11, DLEQ per NUT-12) and stores them. Every proof pays once, across processes (replay.ts).
import { randomBytes } from 'node:crypto';
import { getDecodedToken, getTokenMetadata, MintOperationError, type Proof, type Token } from '@cashu/cashu-ts';
import type { Logger } from '../../util/log.js';
import { normalizeMint, type CashuConfig } from './config.js';
import { mintFetch, MintRejectedError, MintUnavailableError, NUT_CODE, sanitize, type KnownKeyset, type MintDirectory } from './mint-client.js';
import { MSAT_PER_UNIT, priceInUnit, type CashuUnit } from './payment-request.js';
import { proofSetId, type ReplayGuard } from './replay.js';
import { checkTokenProofs, prepareP2pk, Rejection, verifyDleqChunked, type CheckedToken } from './verify.js';
import type { StoredProof, WalletDb } from './wallet-db.js';
import { trackSends, type WalletPool } from './wallets.js';
import { bad, unavailable, type CashuAcceptContext, type CashuAcceptResult } from './accept-result.js';
import { errText, type Counters, type SwapJournal } from './swap-journal.js';

export { bad, unavailable, type CashuAcceptContext, type CashuAcceptResult } from './accept-result.js';

const nowSecs = () => Math.floor(Date.now() / 1000);

/** Resolves `p` unless `ms` pass or `signal` aborts first; the losing promise keeps running. */
export function race<T>(p: Promise<T>, ms: number, signal?: AbortSignal): Promise<{ done: true; value: T } | { done: false }> {
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

export interface AcceptorDeps {
  cfg: CashuConfig;
  unit: CashuUnit;
  db: WalletDb;
  directory: MintDirectory;
  replay: ReplayGuard;
  wallets: Pick<WalletPool, 'get'>;
  journal: SwapJournal;
  log: Logger;
  /** Our P2PK public key (hex), in P2PK mode. */
  ourPubkey?: string;
  /** NUT-06 support flags of a mint (cached). */
  mintNuts(mint: string, signal?: AbortSignal): Promise<Record<string, boolean>>;
  /** Late swaps still running: awaited (bounded) when the rail closes. */
  background: Set<Promise<unknown>>;
  isClosed(): boolean;
}

/** The rail's accept(): verifies and accepts a token for a price. Never throws. */
export function createAcceptor(d: AcceptorDeps) {
  const { cfg, unit, db, directory, replay, wallets, journal, log } = d;
  const whitelist = new Set(cfg.mints);

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
    const nuts = await d.mintNuts(mint, signal);
    // NUT-11: a mint that does not enforce P2PK treats locked proofs as anyone-can-spend.
    if (!nuts['11']) return bad(`mint ${mint} does not enforce P2PK (NUT-11); its proofs cannot be locked to this gate`);
    const dleq = prepareP2pk(t, directory, { ourPubkey: d.ourPubkey!, requireDleq: cfg.p2pk.requireDleq, nowSecs: nowSecs(), minLocktimeSecs: cfg.p2pk.minLocktimeSecs });
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
    // Not remembered as spent: one proof paid before (or claimed by a concurrent request) refuses the token,
    // but says nothing of its other proofs, which stay the payer's to pay with.
    if ((await replay.claimAll(t.ys, undefined, signal)) === 'replay') return bad('token already spent');
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

  async function acceptStandard(t: CheckedToken, mint: string, priceMsat: number, ctx: CashuAcceptContext, signal?: AbortSignal): Promise<CashuAcceptResult> {
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
    // Journalled before the request leaves: if the answer is lost, recovery restores the outputs from the
    // seed or releases the payer's proofs. Prepared and sent in two steps because cashu-ts swallows errors
    // thrown by onCountersReserved: a swap whose journal entry could not be written is never sent.
    const send = (w: typeof wallet) => {
      const swapId = `${setId.slice(0, 32)}-${randomBytes(4).toString('hex')}`;
      const attempt: { swapId: string; reserved?: Counters; op: ReturnType<typeof trackSends<Proof[]>> } = { swapId, op: undefined! };
      attempt.op = trackSends(async () => {
        const preview = await w.prepareSwapToReceive({ mint, unit, proofs }, { onCountersReserved: (c: Counters) => (attempt.reserved = c) });
        if (!attempt.reserved) throw new Error('cashu-ts reported no output counters for the swap');
        journal.start({ id: swapId, mint, reserved: attempt.reserved, ys: t.ys, ctx });
        // Proofs locked to our key (if one is configured) are signed for the swap.
        return (await w.completeSwap(preview, cfg.p2pk.privateKey)).keep;
      });
      return attempt;
    };
    let attempt = send(wallet);
    let outcome;
    try {
      try {
        outcome = await race(attempt.op.result, cfg.swapTimeoutMs, signal);
      } catch (err) {
        // The mint rotated its keysets since we last read them: our outputs went to a keyset it no longer
        // signs with, and it refused the whole swap (nothing spent). Our fault, not the payer's: the keysets
        // are read again (one /v1/keysets call: known keysets are not fetched again) and the swap is sent once more, to the active one.
        if (!(err instanceof MintOperationError && err.code === NUT_CODE.keysetInactive) || signal?.aborted) throw err;
        log.warn({ mint }, 'cashu: the mint refused our swap outputs for an inactive keyset; reading its keysets again');
        let fresh;
        try {
          await directory.ensure(mint, { signal, force: true });
          fresh = await wallets.get(mint, signal);
        } catch {
          // Settled as the refusal it was: nothing spent, the payer's proofs released.
          throw err;
        }
        journal.end(attempt.swapId);
        attempt = send(fresh);
        outcome = await race(attempt.op.result, cfg.swapTimeoutMs, signal);
      }
    } catch (err) {
      const failed = await journal.failed(err, { id: attempt.swapId, sent: attempt.op.sent(), reserved: attempt.reserved }, t, mint);
      // The mint found our swap unbalanced: the input fee we counted is not the one it charges (a mint may change
      // a legacy keyset's fee, which its id does not commit to). Our fault, not the payer's, and nothing was spent
      // (the proofs are released): the keysets are read again, and the payer's retry pays with the fee listed now.
      if (err instanceof MintOperationError && err.code === NUT_CODE.unbalanced) {
        log.warn({ mint }, 'cashu: the mint found our swap unbalanced (its input fees changed?); reading its keysets again');
        // At most one reload a second per mint (as for an unknown keyset id), whoever sends such swaps.
        await directory.ensure(mint, { signal, unknownId: '\u0000unbalanced' }).catch(() => undefined);
        return unavailable("the mint's input fees changed; retry");
      }
      return failed;
    }
    const final = attempt;
    const { swapId, op } = final;
    const swap = op.result;
    if (outcome.done) {
      journal.storeSwapped(outcome.value, mint, ctx);
      journal.end(swapId);
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
          journal.storeSwapped(received, mint, ctx);
          // Not remembered as spent in-process: the payer's retry must reach the late credit below. The
          // journal entry goes last: if the credit cannot be written, recovery restores and credits later.
          await replay.creditLate(setId, cfg.replayTtlSecs, ctx.routeId);
          await replay.settled(setId);
          journal.end(swapId);
          log.info({ mint, route: ctx.routeId, amountMsat }, 'cashu: late swap completed; a retry with the same token will be accepted');
        } catch (err) {
          log.error({ mint, err: errText(err) }, 'cashu: could not record a late swap; recovery will restore its outputs from the seed');
        }
      },
      async (err) => {
        await journal.failed(err, { id: swapId, sent: op.sent(), reserved: final.reserved }, t, mint).catch((e: unknown) => log.error({ mint, err: errText(e) }, 'cashu: could not settle a failed late swap'));
      },
    );
    d.background.add(late);
    void late.finally(() => d.background.delete(late));
    return unavailable(signal?.aborted ? 'request aborted during the swap' : `mint did not complete the swap within ${cfg.swapTimeoutMs} ms`);
  }

  return async function accept(token: string, priceMsat: number, ctx: CashuAcceptContext, signal?: AbortSignal): Promise<CashuAcceptResult> {
    if (d.isClosed()) return unavailable('cashu rail is shutting down');
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
  };
}
