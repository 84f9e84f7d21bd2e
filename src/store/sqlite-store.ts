import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Store, WindowCount } from './store.js';
import { creditSync, drawSync, refundSync, type SyncKv } from './balance-ledger.js';
import { SqliteLedger } from './ledger-sqlite.js';
import { BackgroundCheckpointer } from './sqlite-checkpointer.js';

/**
 * The embedded default. better-sqlite3 is synchronous, but every statement here is a single indexed write
 * on a WAL database (tens of microseconds), and several l402d processes may share the file safely.
 */
interface PendingClaim {
  key: string;
  value: string;
  expiresAt: number | null;
  now: number;
  resolve: (won: boolean) => void;
  reject: (e: unknown) => void;
}

/** A commit slower than this held the event loop (it waited for a lock): its answers wait for due timers. */
const HELD_LOOP_MS = 20;

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly stmts;

  /** Set when the WAL is checkpointed by a worker thread (`backgroundCheckpoints`; see sqlite-checkpointer.ts). */
  readonly checkpointer?: BackgroundCheckpointer;

  /**
   * `durability: 'normal'` (default) survives process crashes; a power failure may lose the last commits
   * (and so let those single-use credentials pass once more). `'full'` syncs every claim to disk.
   */
  constructor(path: string, durability: 'normal' | 'full' = 'normal', o: { backgroundCheckpoints?: boolean } = {}) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(durability === 'full' ? 'synchronous = FULL' : 'synchronous = NORMAL');
    this.db.pragma('busy_timeout = 2000');
    this.db.exec('CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at INTEGER) WITHOUT ROWID');
    this.db.exec('CREATE TABLE IF NOT EXISTS counters (series TEXT PRIMARY KEY, value REAL NOT NULL) WITHOUT ROWID');
    this.stmts = {
      // An expired row is replaced; a live one makes the claim fail. One statement, so it is atomic.
      claim: this.db.prepare(
        'INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?',
      ),
      get: this.db.prepare('SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)'),
      set: this.db.prepare('INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at'),
      del: this.db.prepare('DELETE FROM kv WHERE key = ?'),
      delIfValue: this.db.prepare('DELETE FROM kv WHERE key = ? AND value = ?'),
      replaceIfValue: this.db.prepare('UPDATE kv SET value = ? WHERE key = ? AND value = ? AND (expires_at IS NULL OR expires_at > ?)'),
      incr: this.db.prepare(
        "INSERT INTO kv (key, value, expires_at) VALUES (?, '1', ?) ON CONFLICT(key) DO UPDATE SET value = CASE WHEN kv.expires_at <= ? THEN '1' ELSE CAST(kv.value AS INTEGER) + 1 END, expires_at = CASE WHEN kv.expires_at <= ? THEN excluded.expires_at ELSE kv.expires_at END RETURNING value, expires_at",
      ),
      addCounter: this.db.prepare('INSERT INTO counters (series, value) VALUES (?, ?) ON CONFLICT(series) DO UPDATE SET value = value + excluded.value'),
      readCounters: this.db.prepare('SELECT series, value FROM counters'),
      update: this.db.prepare('UPDATE kv SET value = ? WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)'),
      sweep: this.db.prepare('DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?'),
    };
    this.claimBatch = this.db.transaction((batch: PendingClaim[]) => batch.map((c) => this.claimRow(c)));
    if (o.backgroundCheckpoints) this.checkpointer = new BackgroundCheckpointer(this.db, path);
  }

  /**
   * Claims made during one turn of the event loop are committed together, in one transaction at its end
   * (group commit): a commit appends the changed pages to the WAL, so a burst of single-use requests pays for
   * one append instead of one each. Each claim is still its own conditional insert with its own answer. Every
   * other operation first commits what is pending, so nothing issued after a claim (its check, its give-back)
   * can overtake it.
   */
  private pendingClaims: PendingClaim[] = [];
  private readonly claimBatch;

  async claimOnce(key: string, ttlSecs?: number, value = '1'): Promise<boolean> {
    const now = Date.now();
    return new Promise<boolean>((resolve, reject) => {
      if (this.pendingClaims.push({ key, value, expiresAt: ttlSecs === undefined ? null : now + ttlSecs * 1000, now, resolve, reject }) === 1) setImmediate(this.commitClaims);
    });
  }

  private readonly commitClaims = (): void => {
    const batch = this.pendingClaims;
    if (batch.length === 0) return;
    this.pendingClaims = [];
    const started = performance.now();
    let settle: () => void;
    try {
      const won = batch.length === 1 ? [this.claimRow(batch[0]!)] : this.claimBatch(batch);
      settle = () => batch.forEach((c, i) => c.resolve(won[i]!));
    } catch (e) {
      settle = () => batch.forEach((c) => c.reject(e));
    }
    // A commit that waited for another process's write lock (busy_timeout) held the whole event loop, timers
    // included: its answers go out after the timers that came due meanwhile (a decision's deadline, which
    // aborts the request's signal), so whoever waited on a claim sees it landed late and gives it back.
    if (performance.now() - started >= HELD_LOOP_MS) setTimeout(settle, 0);
    else settle();
  };

  private claimRow(c: PendingClaim): boolean {
    return this.stmts.claim.run(c.key, c.value, c.expiresAt, c.now).changes === 1;
  }

  async delIfValue(key: string, value: string): Promise<boolean> {
    this.commitClaims();
    return this.stmts.delIfValue.run(key, value).changes === 1;
  }
  async replaceIfValue(key: string, expected: string, next: string): Promise<boolean> {
    this.commitClaims();
    return this.stmts.replaceIfValue.run(next, key, expected, Date.now()).changes === 1;
  }
  async get(key: string): Promise<string | undefined> {
    this.commitClaims();
    const row = this.stmts.get.get(key, Date.now()) as { value: string } | undefined;
    return row?.value;
  }
  async set(key: string, value: string, ttlSecs?: number): Promise<void> {
    this.commitClaims();
    this.stmts.set.run(key, value, ttlSecs === undefined ? null : Date.now() + ttlSecs * 1000);
  }
  async del(key: string): Promise<void> {
    this.commitClaims();
    this.stmts.del.run(key);
  }
  async incrWindow(key: string, windowSecs: number): Promise<WindowCount> {
    this.commitClaims();
    const now = Date.now();
    const row = this.stmts.incr.get(key, now + windowSecs * 1000, now, now) as { value: string; expires_at: number };
    return { count: Number(row.value), resetInSecs: Math.max(1, Math.ceil((row.expires_at - now) / 1000)) };
  }
  // Balances: each operation is one IMMEDIATE transaction (the write lock taken before the read), so draws
  // from several processes on the same file are serialised and never overdraw or lose one.
  // (Used inside the balance transactions below, which commit pending claims first.)
  private readonly kv: SyncKv = {
    get: (key) => (this.stmts.get.get(key, Date.now()) as { value: string } | undefined)?.value,
    set: (key, value, ttlSecs) => void this.stmts.set.run(key, value, ttlSecs === undefined ? null : Date.now() + ttlSecs * 1000),
    update: (key, value) => {
      if (this.stmts.update.run(value, key, Date.now()).changes === 0) this.stmts.set.run(key, value, null);
    },
    del: (key) => void this.stmts.del.run(key),
  };
  async creditBalance(key: string, amountMsat: number, creditId: string, ttlSecs?: number) {
    this.commitClaims();
    return this.db.transaction(() => creditSync(this.kv, key, amountMsat, creditId, ttlSecs)).immediate();
  }
  async drawBalance(key: string, amountMsat: number, drawId: string, owner: string, holdSecs: number) {
    this.commitClaims();
    return this.db.transaction(() => drawSync(this.kv, key, amountMsat, drawId, owner, holdSecs)).immediate();
  }
  async refundDraw(key: string, drawId: string, owner?: string) {
    this.commitClaims();
    return this.db.transaction(() => refundSync(this.kv, key, drawId, owner)).immediate();
  }
  async getBalance(key: string): Promise<number> {
    this.commitClaims();
    return Number(this.kv.get(key) ?? 0) || 0;
  }
  async addCounters(deltas: ReadonlyArray<readonly [string, number]>): Promise<void> {
    this.db.transaction(() => {
      for (const [k, n] of deltas) this.stmts.addCounter.run(k, n);
    })();
  }
  async readCounters(): Promise<Array<[string, number]>> {
    return (this.stmts.readCounters.all() as Array<{ series: string; value: number }>).map((r) => [r.series, r.value]);
  }
  private ledgerInstance?: SqliteLedger;
  ledger(): SqliteLedger {
    return (this.ledgerInstance ??= new SqliteLedger(this.db));
  }
  /** Drops expired rows; called on a timer by the server. */
  sweep(): number {
    this.commitClaims();
    return this.stmts.sweep.run(Date.now()).changes;
  }
  async ping(): Promise<void> {
    this.db.prepare('SELECT 1').get();
  }
  async close(): Promise<void> {
    this.commitClaims();
    await this.checkpointer?.stop();
    this.db.close();
  }
}
