import type { Store, WindowCount } from './store.js';
import { creditSync, drawSync, refundSync, type SyncKv } from './balance-ledger.js';
import { MemoryLedger } from './ledger-memory.js';

interface Entry {
  value: string;
  expiresAt?: number;
}

/** One process only: single-use claims do not survive a restart. Meant for tests and throwaway setups. */
export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private readonly map = new Map<string, Entry>();
  private writes = 0;

  /**
   * Expired entries (rate-limit windows, pending invoices, settled markers) are dropped as they are read, and
   * in a sweep every max(1,000, entries) writes, so keys nobody reads again (one per client address, path or token) do not
   * pile up. Live entries are never dropped: a single-use claim forgotten early would be a replay.
   */
  private wrote(now: number): void {
    // Every max(1000, size) writes: amortised O(1) per write however many entries are held.
    if (++this.writes < Math.max(1000, this.map.size)) return;
    this.writes = 0;
    for (const [k, e] of this.map) if (e.expiresAt !== undefined && e.expiresAt <= now) this.map.delete(k);
  }

  /** Entries held (expired ones not yet swept included). */
  get size(): number {
    return this.map.size;
  }

  private live(key: string, now = Date.now()): Entry | undefined {
    const e = this.map.get(key);
    if (e && e.expiresAt !== undefined && e.expiresAt <= now) {
      this.map.delete(key);
      return undefined;
    }
    return e;
  }

  async claimOnce(key: string, ttlSecs?: number, value = '1'): Promise<boolean> {
    if (this.live(key)) return false;
    this.map.set(key, { value, expiresAt: ttlSecs === undefined ? undefined : Date.now() + ttlSecs * 1000 });
    this.wrote(Date.now());
    return true;
  }
  async delIfValue(key: string, value: string): Promise<boolean> {
    if (this.live(key)?.value !== value) return false;
    this.map.delete(key);
    return true;
  }
  async replaceIfValue(key: string, expected: string, next: string): Promise<boolean> {
    const e = this.live(key);
    if (e?.value !== expected) return false;
    e.value = next;
    return true;
  }
  async get(key: string): Promise<string | undefined> {
    return this.live(key)?.value;
  }
  async set(key: string, value: string, ttlSecs?: number): Promise<void> {
    this.map.set(key, { value, expiresAt: ttlSecs === undefined ? undefined : Date.now() + ttlSecs * 1000 });
    this.wrote(Date.now());
  }
  async del(key: string): Promise<void> {
    this.map.delete(key);
  }
  async incrWindow(key: string, windowSecs: number): Promise<WindowCount> {
    const now = Date.now();
    const e = this.live(key, now);
    if (!e) {
      const expiresAt = now + windowSecs * 1000;
      this.map.set(key, { value: '1', expiresAt });
      this.wrote(now);
      return { count: 1, resetInSecs: windowSecs };
    }
    e.value = String(Number(e.value) + 1);
    return { count: Number(e.value), resetInSecs: Math.max(1, Math.ceil(((e.expiresAt ?? now) - now) / 1000)) };
  }
  // Balances: each operation runs to completion synchronously, so it is atomic in this process.
  private readonly kv: SyncKv = {
    get: (key) => this.live(key)?.value,
    set: (key, value, ttlSecs) => {
      this.map.set(key, { value, expiresAt: ttlSecs === undefined ? undefined : Date.now() + ttlSecs * 1000 });
      this.wrote(Date.now());
    },
    update: (key, value) => {
      const e = this.live(key);
      if (e) e.value = value;
      else this.map.set(key, { value });
    },
    del: (key) => void this.map.delete(key),
  };
  async creditBalance(key: string, amountMsat: number, creditId: string, ttlSecs?: number) {
    return creditSync(this.kv, key, amountMsat, creditId, ttlSecs);
  }
  async drawBalance(key: string, amountMsat: number, drawId: string, owner: string, holdSecs: number) {
    return drawSync(this.kv, key, amountMsat, drawId, owner, holdSecs);
  }
  async refundDraw(key: string, drawId: string, owner?: string) {
    return refundSync(this.kv, key, drawId, owner);
  }
  async getBalance(key: string): Promise<number> {
    return Number(this.live(key)?.value ?? 0) || 0;
  }
  private readonly counters = new Map<string, number>();
  async addCounters(deltas: ReadonlyArray<readonly [string, number]>): Promise<void> {
    for (const [k, n] of deltas) this.counters.set(k, (this.counters.get(k) ?? 0) + n);
  }
  async readCounters(): Promise<Array<[string, number]>> {
    return [...this.counters];
  }
  private readonly ledgerInstance = new MemoryLedger();
  ledger(): MemoryLedger {
    return this.ledgerInstance;
  }
  async ping(): Promise<void> {}
  async close(): Promise<void> {
    this.map.clear();
  }
}
