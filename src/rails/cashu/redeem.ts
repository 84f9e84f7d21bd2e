// Redemption to Lightning (NUT-05 melt) on a schedule. Proofs are grouped by (mint, tenant) and each group
// melts exactly its own proofs, so one tenant's ecash never pays another tenant's invoice. Melts are
// recorded before they start; one whose outcome was lost (timeout, crash) is settled from the mint's
// melt quote state and NUT-07 proof states on the next cycle.
import { randomBytes } from 'node:crypto';
import { Amount, MintOperationError, type MeltQuoteBolt11Response, type Proof } from '@cashu/cashu-ts';
import type { Logger } from '../../util/log.js';
import { withTimeout } from '../../util/timeout.js';
import type { CashuConfig } from './config.js';
import { inputFee, sanitize, type MintDirectory } from './mint-client.js';
import { MSAT_PER_UNIT, type CashuUnit } from './payment-request.js';
import { hashToCurve } from './secp256k1.js';
import type { MeltRecord, StoredProof, WalletDb } from './wallet-db.js';
import type { WalletPool } from './wallets.js';

/** Where redeemed value goes: a BOLT11 invoice for `amountMsat`, for a tenant's Lightning address or, without one, the operator. */
export type PayoutInvoice = (tenant: string | undefined, amountMsat: number, memo: string, signal: AbortSignal) => Promise<string>;

const LEASE = 'redeem';
/** NUT error: a proof's signature does not verify at the mint. */
const TOKEN_NOT_VERIFIED = 10003;
const MEMO = 'l402-nginx: Cashu redemption';

/** max(floor(total × percent / 100), minimum): ngx_l402's reserve rule. */
export function feeReserve(total: number, percent: number, minimum: number): number {
  return Math.max(Math.floor((total * percent) / 100), minimum);
}

function toProof(p: StoredProof): Proof {
  return { id: p.keysetId, amount: Amount.from(p.amount), secret: p.secret, C: p.C, ...(p.dleq ? { dleq: p.dleq } : {}) };
}

function errText(err: unknown): string {
  return sanitize(err instanceof Error ? err.message : String(err), 200);
}

export class Redeemer {
  private timer?: NodeJS.Timeout;
  private running?: Promise<MeltRecord[]>;
  private readonly holder = `${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly unitSat: number;
  /** Seconds the redemption lease runs from each renewal: enough for one step (a melt or a pending melt's resolution). */
  private readonly leaseSecs: number;
  /** Set once this cycle's lease renewal failed (another process holds it): the cycle stops. */
  private leaseLost = false;

  constructor(
    private readonly cfg: CashuConfig,
    private readonly db: WalletDb,
    private readonly directory: MintDirectory,
    private readonly wallets: WalletPool,
    private readonly payout: PayoutInvoice | undefined,
    private readonly p2pkKey: string | undefined,
    private readonly log: Logger,
    opts: { leaseSecs?: number } = {},
  ) {
    this.unitSat = 1000 / MSAT_PER_UNIT[cfg.unit as CashuUnit];
    this.leaseSecs = opts.leaseSecs ?? Math.ceil((cfg.redeem.meltTimeoutMs * 4) / 1000) + 60;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.runOnce().catch((err) => this.log.error({ err: errText(err) }, 'cashu redemption cycle failed'));
    }, this.cfg.redeem.intervalSecs * 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.running) await this.running.catch(() => undefined);
  }

  /** One cycle; concurrent callers share it. Resolves to the melts started or settled in it. */
  runOnce(signal?: AbortSignal): Promise<MeltRecord[]> {
    this.running ??= this.cycle(signal).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /**
   * Extends the redemption lease by leaseSecs from now. Called before every step of a cycle, so a long cycle
   * (many groups, a slow mint) never outlives it; false once another process has taken it over (ours ran
   * out), and the cycle then stops: that process now resolves pending melts, ours must not touch them.
   */
  private renewLease(): boolean {
    if (this.leaseLost) return false;
    if (this.db.takeLease(LEASE, this.holder, this.leaseSecs)) return true;
    this.leaseLost = true;
    this.log.warn('cashu redemption: another process took over the lease; this cycle stops');
    return false;
  }

  private async cycle(signal?: AbortSignal): Promise<MeltRecord[]> {
    if (!this.db.takeLease(LEASE, this.holder, this.leaseSecs)) {
      this.log.debug('cashu redemption: another process holds the lease');
      return [];
    }
    this.leaseLost = false;
    const touched: string[] = [];
    try {
      for (const id of this.db.pendingMeltIds()) {
        signal?.throwIfAborted();
        if (!this.renewLease()) break;
        await this.resolvePending(id, signal).catch((err) => this.log.warn({ melt: id, err: errText(err) }, 'cashu redemption: pending melt still unresolved'));
        touched.push(id);
      }
      for (const mint of this.cfg.mints) {
        if (this.leaseLost) break;
        signal?.throwIfAborted();
        const proofs = this.db.unspent(mint, this.cfg.unit);
        const groups = new Map<string | undefined, StoredProof[]>();
        for (const p of proofs) {
          const g = groups.get(p.tenant);
          if (g) g.push(p);
          else groups.set(p.tenant, [p]);
        }
        for (const [tenant, group] of groups) {
          if (!this.renewLease()) break;
          const id = await this.meltGroup(mint, tenant, group, signal).catch((err) => {
            this.log.error({ mint, tenant, err: errText(err) }, 'cashu redemption: melt failed');
            return undefined;
          });
          if (id) touched.push(id);
        }
      }
    } finally {
      this.db.dropLease(LEASE, this.holder);
    }
    return touched.map((id) => this.db.melt(id)).filter((m): m is MeltRecord => m !== undefined);
  }

  private minMeltAmount(mint: string): number {
    const methods = (this.directory.info(mint)?.nuts?.['5']?.methods ?? []) as Array<{ method?: string; unit?: string; min_amount?: number }>;
    const m = methods.find((x) => x.method === 'bolt11' && x.unit === this.cfg.unit);
    return typeof m?.min_amount === 'number' && m.min_amount > 0 ? m.min_amount : 1;
  }

  private async invoiceFor(tenant: string | undefined, amount: number, signal: AbortSignal): Promise<string> {
    if (!this.payout) throw new Error('no payout destination configured (a Lightning backend or tenant resolver)');
    return this.payout(tenant, amount * MSAT_PER_UNIT[this.cfg.unit as CashuUnit], MEMO, signal);
  }

  /**
   * The mint's quote must be for the invoice we asked it to pay, for exactly its amount, in our unit: a melt pays
   * whatever invoice its quote names and keeps what the quote's amount says, so a quote for another invoice (found:
   * it was melted) or for more than ours would hand the operator's ecash to someone else. Throws (the cycle logs
   * the melt as failed; the proofs stay unspent).
   */
  private checkedQuote(quote: MeltQuoteBolt11Response, invoice: string, amount: number): MeltQuoteBolt11Response {
    const request = (quote as { request?: unknown }).request;
    if (typeof request === 'string' && request.trim().toLowerCase() !== invoice.toLowerCase()) {
      throw new Error('the mint quoted another invoice than the one it was asked to pay; not melting');
    }
    if (quote.amount.toNumber() !== amount) throw new Error(`the mint quoted ${quote.amount.toNumber()} for an invoice of ${amount}; not melting`);
    const unit = (quote as { unit?: unknown }).unit;
    if (typeof unit === 'string' && unit !== this.cfg.unit) throw new Error('the mint quoted in another unit; not melting');
    return quote;
  }

  private async meltGroup(mint: string, tenant: string | undefined, all: StoredProof[], outer?: AbortSignal): Promise<string | undefined> {
    const r = this.cfg.redeem;
    const cap = r.maxProofsPerMelt > 0 ? r.maxProofsPerMelt : all.length;
    const group = all.slice(0, cap); // largest first (wallet-db order): fewest inputs, so the smallest input fee
    const total = group.reduce((s, p) => s + p.amount, 0);
    if (total < r.minBalanceSat * this.unitSat) {
      this.log.debug({ mint, tenant, total }, 'cashu redemption: balance below minimum');
      return undefined;
    }
    const signal = AbortSignal.any([AbortSignal.timeout(r.meltTimeoutMs), ...(outer ? [outer] : [])]);
    const keysets = await this.directory.ensure(mint, { signal, force: true }); // current active flags: change outputs go to a keyset the mint still signs with
    const fee = inputFee(group.map((p) => ({ id: p.keysetId })), keysets);
    const reserve = feeReserve(total, r.feeReservePercent, r.minFeeReserveSat * this.unitSat);
    let amount = total - reserve - fee;
    const minAmount = this.minMeltAmount(mint);
    if (amount < minAmount) {
      this.log.info({ mint, tenant, total, reserve, fee }, 'cashu redemption: too little left after the fee reserve');
      return undefined;
    }
    const wallet = await this.wallets.get(mint, signal);
    let invoice = await this.invoiceFor(tenant, amount, signal);
    let quote: MeltQuoteBolt11Response = this.checkedQuote(await wallet.createMeltQuoteBolt11(invoice), invoice, amount);
    let need = quote.amount.toNumber() + quote.fee_reserve.toNumber() + fee;
    if (need > total) {
      // The mint wants a larger reserve than ours: ask for less, once.
      amount = total - quote.fee_reserve.toNumber() - fee;
      if (amount < minAmount) {
        this.log.info({ mint, tenant, total, mintReserve: quote.fee_reserve.toNumber() }, "cashu redemption: the mint's fee reserve leaves too little");
        return undefined;
      }
      invoice = await this.invoiceFor(tenant, amount, signal);
      quote = this.checkedQuote(await wallet.createMeltQuoteBolt11(invoice), invoice, amount);
      need = quote.amount.toNumber() + quote.fee_reserve.toNumber() + fee;
      if (need > total) return undefined;
    }
    const id = `melt-${Date.now()}-${randomBytes(6).toString('hex')}`;
    // Invoices and quotes may have taken a while: the melt itself must run under a live lease.
    if (!this.renewLease()) return undefined;
    if (!this.db.reserveForMelt(id, group.map((p) => p.y))) return undefined; // another process took some of them
    this.db.startMelt({
      id,
      mint,
      unit: this.cfg.unit,
      tenant,
      quote: quote.quote,
      invoice,
      amount: quote.amount.toNumber(),
      feeReserve: quote.fee_reserve.toNumber(),
      inputFee: fee,
      proofsTotal: total,
      proofCount: group.length,
      state: 'pending',
      startedAt: Math.floor(Date.now() / 1000),
    });
    const proofs = group.map(toProof);
    const needsKey = group.some((p) => p.p2pk);
    try {
      // The change outputs are recorded before the request leaves, so resolvePending can restore the change
      // if the answer is lost. Prepared and sent in two steps because cashu-ts swallows errors thrown by
      // onCountersReserved: if the record fails, nothing is sent and a later cycle finds the quote unpaid.
      let reserved: { keysetId: string; start: number; count: number } | undefined;
      const preview = await wallet.prepareMelt('bolt11', quote, proofs, { onCountersReserved: (c) => (reserved = c) });
      try {
        if (reserved) this.db.setMeltOutputs(id, reserved);
      } catch (err) {
        this.log.error({ melt: id, mint, tenant, err: errText(err) }, 'cashu redemption: could not record the melt\'s change outputs; not sent, settled on a later cycle');
        return id;
      }
      const res = await withTimeout(wallet.completeMelt(preview, needsKey ? this.p2pkKey : undefined), r.meltTimeoutMs, 'melt');
      const state = res.quote.state;
      if (state === 'PAID') {
        // Outcome first, proofs last: if a write fails in between, the proofs stay pending and the next
        // cycle settles the melt again from the mint (change restored from the seed is stored only once).
        const change = this.storeChange(mint, tenant, res.change);
        this.db.finishMelt(id, 'paid', { preimage: res.quote.payment_preimage ?? undefined, change });
        this.db.settleMelt(id);
        this.log.info({ melt: id, mint, tenant, amount: quote.amount.toNumber(), proofs: group.length, change }, 'cashu redemption: melted to Lightning');
      } else if (state === 'UNPAID') {
        this.db.finishMelt(id, 'failed', { error: 'the mint did not pay the invoice' });
        this.db.releaseMelt(id);
        this.log.warn({ melt: id, mint, tenant }, 'cashu redemption: the mint did not pay the invoice');
      } else {
        this.log.info({ melt: id, mint, tenant }, 'cashu redemption: payment in flight; settled on a later cycle');
      }
    } catch (err) {
      if (err instanceof MintOperationError && err.code === TOKEN_NOT_VERIFIED) {
        await this.setAsideInvalid(id, mint, group, signal);
      } else if (err instanceof MintOperationError) {
        await this.settleFromStates(id, mint, group, `mint refused the melt: ${errText(err)}`, signal);
      } else {
        this.log.warn({ melt: id, mint, tenant, err: errText(err) }, 'cashu redemption: melt outcome unknown; settled on a later cycle');
      }
    }
    return id;
  }

  /** Change from a melt (NUT-08) stays with the tenant whose proofs paid for it. */
  private storeChange(mint: string, tenant: string | undefined, change: Proof[]): number {
    if (!change.length) return 0;
    const rows: StoredProof[] = change.map((p) => ({
      y: hashToCurve(p.secret).hex,
      mint,
      unit: this.cfg.unit,
      keysetId: p.id,
      amount: p.amount.toNumber(),
      secret: p.secret,
      C: p.C,
      dleq: p.dleq,
      tenant,
      p2pk: false,
    }));
    this.db.insertProofs(rows);
    return rows.reduce((s, p) => s + p.amount, 0);
  }

  /**
   * The mint says some proof of the group is not genuine (possible only with require_dleq off, when a
   * proof without DLEQ could not be checked on arrival). Swap each proof alone: genuine ones become fresh
   * proofs of the same tenant, the others are set aside as invalid, so they stop blocking the group.
   */
  private async setAsideInvalid(id: string, mint: string, group: StoredProof[], signal?: AbortSignal): Promise<void> {
    const wallet = await this.wallets.get(mint, signal);
    let invalid = 0;
    for (const p of group) {
      try {
        const fresh = await wallet.receive([toProof(p)], p.p2pk && this.p2pkKey ? { privkey: this.p2pkKey } : undefined);
        this.db.setProofState(p.y, 'spent');
        this.storeChange(mint, p.tenant, fresh);
      } catch (err) {
        if (err instanceof MintOperationError && err.code === TOKEN_NOT_VERIFIED) {
          this.db.setProofState(p.y, 'invalid');
          invalid++;
        } else if (err instanceof MintOperationError && err.code === 11001) {
          this.db.setProofState(p.y, 'spent');
        } else {
          this.log.warn({ melt: id, mint, err: errText(err) }, 'cashu redemption: could not sort out a refused melt; retrying later');
          break;
        }
      }
    }
    this.db.finishMelt(id, 'failed', { error: `the mint refused ${invalid} proof(s) as not genuine; they were set aside` });
    this.db.releaseMelt(id);
    this.log.error({ melt: id, mint, invalid }, 'cashu redemption: proofs the mint does not recognise were set aside');
  }

  /**
   * After a refused melt, or a pending one whose quote the mint reports UNPAID: proofs the mint reports
   * SPENT become spent, UNSPENT ones go back to the wallet. PENDING ones (locked in a melt in flight at the
   * mint, maybe another one) stay pending under this melt, which stays pending and is looked at again on
   * the next cycle: released now, they would be melted again while the mint may still spend them.
   */
  private async settleFromStates(id: string, mint: string, group: StoredProof[], why: string, signal?: AbortSignal): Promise<void> {
    const wallet = await this.wallets.get(mint, signal);
    const states = await wallet.checkProofsStates(group.map((p) => ({ secret: p.secret, id: p.keysetId })));
    const spent = group.filter((_, i) => states[i]?.state === 'SPENT');
    const unspent = group.filter((_, i) => states[i]?.state === 'UNSPENT');
    const held = group.length - spent.length - unspent.length; // PENDING (or a state we do not know)
    if (spent.length === group.length) {
      // This melt did not pay (refused, or its quote is unpaid), yet every proof is spent: something else
      // spent them. The value is gone; say so rather than record a payout that never happened.
      this.db.finishMelt(id, 'failed', { error: `${why}; its proofs were already spent elsewhere` });
      this.db.settleMelt(id);
      this.log.error({ melt: id, mint, proofs: group.length }, 'cashu redemption: proofs were spent elsewhere; their value is lost');
      return;
    }
    for (const p of spent) this.db.setProofState(p.y, 'spent');
    if (held > 0) {
      this.db.releaseProofs(id, unspent.map((p) => p.y));
      this.log.warn({ melt: id, mint, pending: held, err: why }, 'cashu redemption: proofs are pending at the mint; the melt is looked at again next cycle');
      return;
    }
    this.db.finishMelt(id, 'failed', { error: why });
    this.db.releaseMelt(id);
    this.log.warn({ melt: id, mint, err: why }, 'cashu redemption: melt refused');
  }

  private async resolvePending(id: string, outer?: AbortSignal): Promise<void> {
    const melt = this.db.melt(id);
    const proofs = this.db.proofsOfMelt(id).filter((p) => p.state === 'pending');
    if (!proofs.length) return;
    const mint = proofs[0]!.mint;
    if (!melt?.quote) {
      // Proofs are reserved just before the melt record (with its quote) is written, and the request
      // leaves only after both: no record means a crash or write failure in between, nothing was sent.
      this.db.releaseMelt(id);
      return;
    }
    const signal = AbortSignal.any([AbortSignal.timeout(this.cfg.redeem.meltTimeoutMs), ...(outer ? [outer] : [])]);
    const wallet = await this.wallets.get(mint, signal);
    const q = await wallet.checkMeltQuoteBolt11(melt.quote);
    if (q.state === 'PAID') {
      // The answer with the change was lost: the mint signed our blank outputs, so restore them (NUT-09).
      const outs = this.db.meltOutputs(id);
      const restored = outs ? (await wallet.restore(outs.start, outs.count, { keysetId: outs.keysetId })).proofs : [];
      const change = this.storeChange(mint, melt.tenant, restored); // stored once: an earlier try's copy is not added again
      this.db.finishMelt(id, 'paid', { preimage: q.payment_preimage ?? undefined, change });
      this.db.settleMelt(id);
      this.log.info({ melt: id, mint, change }, 'cashu redemption: earlier melt was paid; its change was restored from the seed');
    } else if (q.state === 'UNPAID') {
      await this.settleFromStates(id, mint, proofs, 'the mint did not pay the invoice', signal);
    }
  }
}
