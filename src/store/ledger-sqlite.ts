// The SQLite ledger: tables beside the store's kv table, in the same file, so several l402d processes on one
// host and the CLI share it.
import type Database from 'better-sqlite3';
import { bucketOf, LedgerFullError, MAX_REVOCATIONS, MAX_SALES, retentionStart, type EarningsRow, type Ledger, type Revocation, type Sale } from './ledger.js';

/** Rows past the retention period are looked for every this many sales recorded by one process. */
const TRIM_EVERY = 256;

interface SaleRow {
  id: string;
  at: number;
  route: string;
  rail: string;
  amount_msat: number;
  payment_hash: string | null;
  valid_until: number | null;
  access: string | null;
}

function toSale(r: SaleRow): Sale {
  return {
    id: r.id,
    at: r.at,
    route: r.route,
    rail: r.rail === 'cashu' ? 'cashu' : 'lightning',
    amountMsat: r.amount_msat,
    ...(r.payment_hash !== null ? { paymentHash: r.payment_hash } : {}),
    ...(r.valid_until !== null ? { validUntil: r.valid_until } : {}),
    ...(r.access === 'per-request' || r.access === 'timed' || r.access === 'indefinite' || r.access === 'balance' ? { access: r.access } : {}),
  };
}

export class SqliteLedger implements Ledger {
  private readonly stmts;
  private recorded = 0;
  /** The stored row count was recomputed by this process (on its first write; see recount). */
  private counted = false;
  private readonly insertSales: (sales: readonly Sale[]) => boolean[];
  private readonly addRevocation: (r: Revocation) => boolean;

  /** `maxSales`: the cap (MAX_SALES; smaller in tests). */
  constructor(
    private readonly db: Database.Database,
    private readonly maxSales = MAX_SALES,
  ) {
    db.exec(`CREATE TABLE IF NOT EXISTS sales (id TEXT PRIMARY KEY, at INTEGER NOT NULL, route TEXT NOT NULL, rail TEXT NOT NULL, amount_msat INTEGER NOT NULL, payment_hash TEXT, valid_until INTEGER, access TEXT) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS sales_at ON sales (at);
      DROP INDEX IF EXISTS sales_payment_hash;
      CREATE TABLE IF NOT EXISTS earnings (bucket INTEGER NOT NULL, route TEXT NOT NULL, rail TEXT NOT NULL, msat INTEGER NOT NULL, sales INTEGER NOT NULL, PRIMARY KEY (bucket, route, rail)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS revocations (value TEXT PRIMARY KEY, at INTEGER NOT NULL, until INTEGER) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS ledger_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;`);
    this.stmts = {
      insertSale: db.prepare('INSERT INTO sales (id, at, route, rail, amount_msat, payment_hash, valid_until, access) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING'),
      addEarnings: db.prepare('INSERT INTO earnings (bucket, route, rail, msat, sales) VALUES (?, ?, ?, ?, ?) ON CONFLICT(bucket, route, rail) DO UPDATE SET msat = msat + excluded.msat, sales = sales + excluded.sales'),
      trimOld: db.prepare('DELETE FROM sales WHERE at < ?'),
      // The row count, kept beside the rows in every write transaction: finding the rows past MAX_SALES by
      // walking the time index from the newest (what this did before) took milliseconds at 100,000 rows,
      // blocking every request behind it.
      salesCount: db.prepare("SELECT value FROM ledger_meta WHERE name = 'sales'"),
      addCount: db.prepare("INSERT INTO ledger_meta (name, value) VALUES ('sales', ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value"),
      recount: db.prepare("INSERT INTO ledger_meta (name, value) SELECT 'sales', count(*) FROM sales WHERE true ON CONFLICT(name) DO UPDATE SET value = excluded.value"),
      trimOldest: db.prepare('DELETE FROM sales WHERE id IN (SELECT id FROM sales ORDER BY at LIMIT ?)'),
      trimEarnings: db.prepare('DELETE FROM earnings WHERE bucket < ?'),
      recent: db.prepare('SELECT * FROM sales ORDER BY at DESC LIMIT ?'),
      byId: db.prepare('SELECT * FROM sales WHERE id = ?'),
      // No index on payment_hash: a random key per sale cost a third of recording it, for an operator's
      // occasional lookup (`l402d token`), which scans at most MAX_SALES rows.
      byHash: db.prepare('SELECT * FROM sales WHERE payment_hash = ? ORDER BY at LIMIT 1'),
      earnings: db.prepare('SELECT bucket, route, rail, msat, sales FROM earnings WHERE bucket >= ?'),
      pruneRevocations: db.prepare('DELETE FROM revocations WHERE until IS NOT NULL AND until * 1000 <= ?'),
      countRevocations: db.prepare('SELECT count(*) AS n FROM revocations'),
      insertRevocation: db.prepare('INSERT INTO revocations (value, at, until) VALUES (?, ?, ?) ON CONFLICT(value) DO NOTHING'),
      bump: db.prepare("INSERT INTO ledger_meta (name, value) VALUES ('revocations', 1) ON CONFLICT(name) DO UPDATE SET value = value + 1"),
      generation: db.prepare("SELECT value FROM ledger_meta WHERE name = 'revocations'"),
      revocations: db.prepare('SELECT value, at, until FROM revocations WHERE until IS NULL OR until * 1000 > ? ORDER BY at DESC'),
    };
    // One transaction per batch (one WAL append however many sales), with one earnings row update per
    // (hour, route, rail) of the batch; old rows trimmed every TRIM_EVERY sales.
    this.insertSales = db.transaction((sales: readonly Sale[]) => {
      const earned = new Map<string, { bucket: number; route: string; rail: string; msat: number; sales: number }>();
      let trim = false;
      const fresh = sales.map((s) => {
        const inserted = this.stmts.insertSale.run(s.id, s.at, s.route, s.rail, s.amountMsat, s.paymentHash ?? null, s.validUntil ?? null, s.access ?? null).changes === 1;
        if (!inserted) return false;
        const bucket = bucketOf(s.at);
        const key = JSON.stringify([bucket, s.route, s.rail]);
        const e = earned.get(key);
        if (e) {
          e.msat += s.amountMsat;
          e.sales += 1;
        } else earned.set(key, { bucket, route: s.route, rail: s.rail, msat: s.amountMsat, sales: 1 });
        if (++this.recorded % TRIM_EVERY === 1) trim = true;
        return true;
      });
      for (const e of earned.values()) this.stmts.addEarnings.run(e.bucket, e.route, e.rail, e.msat, e.sales);
      // Once per process, the count is taken from the rows themselves: a process of an older version sharing
      // the file added rows without counting them (the count then only ever falls short: fewer rows trimmed).
      if (!this.counted) this.stmts.recount.run();
      else if (earned.size > 0) this.stmts.addCount.run(fresh.filter(Boolean).length);
      if (trim) {
        const start = retentionStart();
        const old = this.stmts.trimOld.run(start).changes;
        if (old > 0) this.stmts.addCount.run(-old);
        this.stmts.trimEarnings.run(bucketOf(start));
      }
      // At most maxSales rows: each batch at the cap drops as many of the oldest as it added.
      const count = (this.stmts.salesCount.get() as { value: number } | undefined)?.value ?? 0;
      if (count > this.maxSales) this.stmts.addCount.run(-this.stmts.trimOldest.run(count - this.maxSales).changes);
      return fresh;
    });
    this.addRevocation = db.transaction((r: Revocation) => {
      this.stmts.pruneRevocations.run(Date.now());
      if ((this.stmts.countRevocations.get() as { n: number }).n >= MAX_REVOCATIONS) throw new LedgerFullError(`${MAX_REVOCATIONS} revocations are in force already`);
      const fresh = this.stmts.insertRevocation.run(r.value, r.at, r.until ?? null).changes === 1;
      if (fresh) this.stmts.bump.run();
      return fresh;
    });
  }

  async recordSales(sales: readonly Sale[]): Promise<boolean[]> {
    const fresh = this.insertSales(sales);
    // Only once the transaction that recounted has committed (a rolled-back one recounts again next time).
    this.counted = true;
    return fresh;
  }

  async recentSales(limit: number): Promise<Sale[]> {
    return (this.stmts.recent.all(limit) as SaleRow[]).map(toSale);
  }

  async findSale(idOrHash: string): Promise<Sale | undefined> {
    const r = (this.stmts.byId.get(idOrHash) ?? this.stmts.byHash.get(idOrHash)) as SaleRow | undefined;
    return r && toSale(r);
  }

  async earnings(sinceMs: number): Promise<EarningsRow[]> {
    return this.stmts.earnings.all(sinceMs) as EarningsRow[];
  }

  async revoke(r: Revocation): Promise<boolean> {
    return this.addRevocation(r);
  }

  async revocationGeneration(): Promise<string> {
    return String((this.stmts.generation.get() as { value: number } | undefined)?.value ?? 0);
  }

  async revocations(): Promise<{ generation: string; list: Revocation[] }> {
    // One read transaction, so the list and its generation agree.
    return this.db.transaction(() => ({
      generation: String((this.stmts.generation.get() as { value: number } | undefined)?.value ?? 0),
      list: (this.stmts.revocations.all(Date.now()) as Array<{ value: string; at: number; until: number | null }>).map((x) => ({ value: x.value, at: x.at, until: x.until ?? undefined })),
    }))();
  }
}
