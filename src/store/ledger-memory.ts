// The memory store's ledger: one process only, gone at restart (like its claims).
import { bucketOf, LedgerFullError, MAX_REVOCATIONS, MAX_SALES, retentionStart, revocationLive, type EarningsRow, type Ledger, type Revocation, type Sale } from './ledger.js';

export class MemoryLedger implements Ledger {
  /** Insertion order is time order (sales are recorded as they happen). */
  private readonly sales = new Map<string, Sale>();
  private readonly earningsByKey = new Map<string, EarningsRow>();
  private readonly revoked = new Map<string, Revocation>();
  private generation = 0;

  async recordSales(sales: readonly Sale[]): Promise<boolean[]> {
    return sales.map((s) => this.recordOne(s));
  }

  private recordOne(s: Sale): boolean {
    if (this.sales.has(s.id)) return false;
    this.sales.set(s.id, { ...s });
    const b = bucketOf(s.at);
    const k = JSON.stringify([b, s.route, s.rail]);
    const row = this.earningsByKey.get(k) ?? { bucket: b, route: s.route, rail: s.rail, msat: 0, sales: 0 };
    row.msat += s.amountMsat;
    row.sales += 1;
    this.earningsByKey.set(k, row);
    this.trim();
    return true;
  }

  private trim(): void {
    const start = retentionStart();
    for (const [id, s] of this.sales) {
      if (this.sales.size <= MAX_SALES && s.at >= start) break;
      this.sales.delete(id);
    }
    for (const [k, r] of this.earningsByKey) if (r.bucket < bucketOf(start)) this.earningsByKey.delete(k);
  }

  async recentSales(limit: number): Promise<Sale[]> {
    return [...this.sales.values()].reverse().slice(0, limit).map((s) => ({ ...s }));
  }

  async findSale(idOrHash: string): Promise<Sale | undefined> {
    const s = this.sales.get(idOrHash) ?? [...this.sales.values()].find((x) => x.paymentHash === idOrHash);
    return s && { ...s };
  }

  async earnings(sinceMs: number): Promise<EarningsRow[]> {
    return [...this.earningsByKey.values()].filter((r) => r.bucket >= sinceMs).map((r) => ({ ...r }));
  }

  async revoke(r: Revocation): Promise<boolean> {
    for (const [v, x] of this.revoked) if (!revocationLive(x)) this.revoked.delete(v);
    if (this.revoked.has(r.value)) return false;
    if (this.revoked.size >= MAX_REVOCATIONS) throw new LedgerFullError(`${MAX_REVOCATIONS} revocations are in force already`);
    this.revoked.set(r.value, { ...r });
    this.generation++;
    return true;
  }

  async revocationGeneration(): Promise<string> {
    return String(this.generation);
  }

  async revocations(): Promise<{ generation: string; list: Revocation[] }> {
    return { generation: String(this.generation), list: [...this.revoked.values()].filter((r) => revocationLive(r)).reverse() };
  }
}
