// Records each sale once in the store's ledger (ledger.ts), off the request path: the decision never waits for
// it. A Lightning credential is one sale however often it is used (the first acceptance records it, in any
// process: the store dedupes by token id); each accepted Cashu payment is a sale. The revenue counters move
// only when this call recorded the sale, so /metrics counts sales, not uses.
import { PartialSalesError, type Ledger, type Sale } from '../store/ledger.js';
import type { Logger } from '../util/log.js';
import { withTimeout } from '../util/timeout.js';
import type { Metrics } from './metrics.js';
import { errorShape } from './process-policy.js';

/**
 * Ids of reusable credentials' sales this process knows are recorded (oldest forgotten first): saves a store
 * write per reuse. Single-use sales are not kept: their credential is never accepted again (the store's
 * insert dedupes an nginx retry), and keeping each id only made it outlive young-generation collections.
 */
const KNOWN_MAX = 20_000;
/** Sales whose write failed, kept for the next attempt (oldest dropped beyond this). */
const RETRY_MAX = 10_000;

/** Sales noted within this long are written together (one store write for a burst of single-use requests). */
const BATCH_MS = 10;
/** At most this many sales per write. */
const BATCH_MAX = 512;
/**
 * Sales whose write failed are tried again this long after (and with the next sale noted, whichever is first),
 * so a sale lost to a store outage is recorded once the store answers even if no other sale follows
 * (`l402d token revoke` finds a sale's payment hash there).
 */
const RETRY_MS = 1000;

export class SalesRecorder {
  private readonly known = new Set<string>();
  private readonly inFlight = new Set<string>();
  private queue: Sale[] = [];
  private retry: Sale[] = [];
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly writing = new Set<Promise<void>>();
  private warnedAt = 0;

  constructor(
    private readonly ledger: Ledger,
    private readonly storeTimeoutMs: number,
    private readonly log: Logger,
    private readonly metrics?: () => Metrics | undefined,
  ) {}

  /** Whether a sale with this id is known to be recorded or being recorded (no store read). */
  has(id: string): boolean {
    return this.known.has(id) || this.inFlight.has(id);
  }

  /** Records `sale` in the background, batched with the sales noted in the next few ms (a failed write is retried with the next sale). */
  note(sale: Sale): void {
    if (this.has(sale.id)) return;
    this.inFlight.add(sale.id);
    this.queue.push(sale);
    this.timer ??= setTimeout(() => this.flush(), BATCH_MS);
  }

  /** Writes what is queued now (the batch timer calls it). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.queue.length > 0) {
      // write() catches the store's failures; anything else it throws is logged, never left unhandled.
      const w = this.write(this.queue.splice(0, BATCH_MAX)).catch((e: unknown) => this.log.error({ event: 'sale_not_recorded', err: errorShape(e) }, 'recording sales failed'));
      this.writing.add(w);
      void w.finally(() => this.writing.delete(w));
    }
  }

  /**
   * Writes what is queued and what waits for a retry, and waits for every write under way (shutdown: before
   * the store closes). A write that succeeds queues the retries again, so this repeats until nothing is left
   * or a round wrote nothing new (the store is failing: what is left stays in `pending`).
   */
  async drain(): Promise<void> {
    for (let round = 0; round < 8; round++) {
      const again = this.retry;
      this.retry = [];
      for (const s of again) this.note(s);
      const before = this.queue.length + this.writing.size;
      this.flush();
      await Promise.allSettled([...this.writing]);
      if (this.queue.length === 0 && this.retry.length === 0) return;
      if (before === 0 || this.retry.length >= before) return;
    }
  }

  /** Counts and remembers the sales of `batch` the store wrote (`recorded[i]` true: now, false: before). */
  private written(batch: readonly Sale[], recorded: ReadonlyArray<boolean | undefined>): void {
    const m = this.metrics?.();
    batch.forEach((sale, i) => {
      if (recorded[i] === undefined) return;
      if (sale.access === 'timed' || sale.access === 'indefinite') this.remember(sale.id);
      if (!recorded[i]) return;
      m?.inc('l402_revenue_msat_total', { route: sale.route, rail: sale.rail }, sale.amountMsat);
      m?.inc('l402_sales_total', { route: sale.route, rail: sale.rail });
      // Debug only: the request's decision line is its log line at info (a second line per single-use request
      // was a twentieth of its cost); the sale is in the ledger and /metrics.
      this.log.debug({ event: 'sale', route: sale.route, rail: sale.rail, amount_msat: sale.amountMsat }, 'sale recorded');
    });
  }

  private async write(batch: Sale[]): Promise<void> {
    try {
      this.written(batch, await withTimeout(this.ledger.recordSales(batch), Math.max(this.storeTimeoutMs, 1000), 'record sales'));
      if (this.retry.length > 0) {
        const again = this.retry;
        this.retry = [];
        for (const s of again) this.note(s);
      }
    } catch (e) {
      // Part of the batch written: those are counted now (a retry would find them recorded and never count them).
      const partial = e instanceof PartialSalesError ? e.recorded : undefined;
      if (partial) this.written(batch, partial);
      this.retry.push(...batch.filter((_, i) => partial?.[i] === undefined));
      if (this.retry.length > RETRY_MAX) this.retry.splice(0, this.retry.length - RETRY_MAX);
      this.retryLater();
      if (Date.now() - this.warnedAt > 60_000) {
        this.warnedAt = Date.now();
        this.log.warn({ event: 'sale_not_recorded', err: (e as Error).message }, 'could not record a sale in the store; retrying with the next sale');
      }
    } finally {
      for (const s of batch) this.inFlight.delete(s.id);
    }
  }

  /** Notes the sales waiting for a retry again in RETRY_MS (one timer; not after stop()). */
  private retryLater(): void {
    if (this.stopped || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      const again = this.retry;
      this.retry = [];
      for (const s of again) this.note(s);
    }, RETRY_MS).unref();
  }

  /** No more retries in the background (the store is closing; drain() first). */
  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private remember(id: string): void {
    this.known.add(id);
    if (this.known.size > KNOWN_MAX) this.known.delete(this.known.values().next().value!);
  }

  /** Sales waiting for a retry (the console shows it). */
  get pending(): number {
    return this.retry.length;
  }
}
