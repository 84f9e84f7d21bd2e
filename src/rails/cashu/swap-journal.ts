// The swap journal and its recovery. A standard-mode swap is journalled (wallet DB) before its request leaves;
// when its answer is lost, recovery asks the mint (NUT-09 restore of our outputs, NUT-07 state of the inputs)
// and either keeps the value (a retry with the same token is credited once) or gives the payer's proofs back.
// Several processes share the wallet: a lease makes one of them settle each swap.
import { CTSError, MintOperationError, NetworkError, type Proof } from '@cashu/cashu-ts';
import type { Logger } from '../../util/log.js';
import type { CashuConfig } from './config.js';
import { MintNotReachedError, NUT_CODE, mintFetch, sanitize } from './mint-client.js';
import type { CashuUnit } from './payment-request.js';
import { proofSetId, type ReplayGuard } from './replay.js';
import { hashToCurve } from './secp256k1.js';
import type { CheckedToken } from './verify.js';
import type { WalletDb } from './wallet-db.js';
import type { WalletPool } from './wallets.js';
import { bad, unavailable, type CashuAcceptContext, type CashuAcceptResult } from './accept-result.js';

/** The wallet database refused the journal entry of a swap about to be sent (so it was not sent). */
export class JournalError extends Error {}

/** The NUT-13 output counters a swap reserved (cashu-ts onCountersReserved). */
export type Counters = { keysetId: string; start: number; count: number };

/** How far the output counter jumps when the mint says our outputs were signed before. */
export const COUNTER_SKIP = 1000;
const RECOVER_EVERY_MS = 30_000;
const nowSecs = () => Math.floor(Date.now() / 1000);
export const errText = (err: unknown) => sanitize(err instanceof Error ? err.message : String(err), 200);

export interface SwapJournalDeps {
  cfg: Pick<CashuConfig, 'replayTtlSecs' | 'mintTimeoutMs'>;
  unit: CashuUnit;
  db: WalletDb;
  wallets: Pick<WalletPool, 'get'>;
  replay: ReplayGuard;
  log: Logger;
  /** This process's lease holder id. */
  holder: string;
  /** A swap's transport bound: recovery leaves younger swaps alone (they may still be in flight). */
  swapTransportMs: number;
}

export class SwapJournal {
  private recovering: Promise<unknown> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly d: SwapJournalDeps) {}

  /** Journals a swap about to be sent; a failure to write means it is not sent (JournalError). */
  start(entry: { id: string; mint: string; reserved: Counters; ys: string[]; ctx: CashuAcceptContext }): void {
    const { id, mint, reserved, ys, ctx } = entry;
    try {
      this.d.db.startSwap({ id, mint, keysetId: reserved.keysetId, start: reserved.start, count: reserved.count, ys, tenant: ctx.tenant, routeId: ctx.routeId, startedAt: nowSecs() });
    } catch (err) {
      throw new JournalError(errText(err));
    }
  }

  end(id: string): void {
    this.d.db.endSwap(id);
  }

  /** Stores the proofs a swap (or a restore) gave us, under the route and tenant the payment was for. */
  storeSwapped(received: Proof[], mint: string, ctx: CashuAcceptContext): void {
    this.d.db.insertProofs(
      received.map((p) => ({
        y: hashToCurve(p.secret).hex,
        mint,
        unit: this.d.unit,
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

  /**
   * A swap that threw. Settled now only when the mint certainly signed nothing: it refused with a NUT
   * error, the request never left, or the connection was refused. Any other failure after the request left
   * (timeout, a cut connection, an HTTP error from the mint or a proxy in front of it, an answer cashu-ts
   * rejects) may follow a swap the mint did: the claims and the journal entry stay until recover() asks
   * the mint (NUT-09 restore, NUT-07 state), and the payer's retry is told to wait.
   */
  async failed(err: unknown, swap: { id: string; sent: boolean; reserved?: Counters }, t: Pick<CheckedToken, 'ys'>, mint: string): Promise<CashuAcceptResult> {
    const { db, replay, log } = this.d;
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
    await replay.markUnsettled(setId, this.d.cfg.replayTtlSecs);
    log.warn({ mint, err: errText(err) }, 'cashu: swap outcome unknown; proofs stay claimed until recovery asks the mint');
    return unavailable(err instanceof CTSError ? sanitize(err.message) : 'swap outcome unknown');
  }

  /** See CashuRail.recoverNow. */
  async recover(signal?: AbortSignal, minAgeSecs = Math.ceil(this.d.swapTransportMs / 1000) + 10): Promise<number> {
    const { db, replay, log, cfg, holder, unit } = this.d;
    let settled = 0;
    for (const rec of db.swapsStartedBefore(nowSecs() - minAgeSecs)) {
      if (this.closed || signal?.aborted) break;
      // Several processes share the wallet: one of them settles each swap.
      if (!db.takeLease(`swap:${rec.id}`, holder, 120)) continue;
      try {
        const wallet = await this.d.wallets.get(rec.mint, signal);
        const { proofs } = await wallet.restore(rec.start, rec.count, { keysetId: rec.keysetId });
        if (proofs.length > 0) {
          // Already stored (a late answer got that far) is fine: insertProofs then changes nothing.
          this.storeSwapped(proofs, rec.mint, { routeId: rec.routeId ?? '', tenant: rec.tenant });
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

  /** Recovers in the background every 30 s (this process's lost swaps, or a crashed one's), one run at a time. */
  schedule(): void {
    this.timer ??= setInterval(() => {
      this.recovering ??= this.recover()
        .catch((err: unknown) => this.d.log.warn({ err: errText(err) }, 'cashu: swap recovery failed'))
        .finally(() => (this.recovering = undefined));
    }, RECOVER_EVERY_MS).unref();
  }

  /** Stops the timer and waits for a recovery run in progress; later recover() calls settle nothing. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.recovering;
  }
}
