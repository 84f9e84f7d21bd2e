// Shared state behind one small interface: memory (tests, single process), SQLite (default), Redis (shared).
import type { BalanceLedger, ClaimStore, WindowCount } from '../policy/ports.js';
import type { DurabilityReport } from './redis-durability.js';
import type { Ledger } from './ledger.js';

export type { WindowCount };

/** Every adapter implements the core's ClaimStore port, plus what the edge needs (counters, health, close). */
export interface Store extends ClaimStore {
  readonly kind: 'memory' | 'sqlite' | 'redis';
  /**
   * Atomically records `key` (with `value`, default "1"). True only for the first caller; `ttlSecs`
   * undefined keeps it forever.
   */
  claimOnce(key: string, ttlSecs?: number, value?: string): Promise<boolean>;
  /** Deletes `key` only while it holds `value` (a claim of ours); true if it did. */
  delIfValue(key: string, value: string): Promise<boolean>;
  /** Sets `key` to `next` only while it holds `expected` (its expiry unchanged); true if it did. Atomic. */
  replaceIfValue(key: string, expected: string, next: string): Promise<boolean>;
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, ttlSecs?: number): Promise<void>;
  del(key: string): Promise<void>;
  /** Fixed-window counter: increments and returns the count in the current window. */
  incrWindow(key: string, windowSecs: number): Promise<WindowCount>;
  /** Adds to shared counters (metrics from every process using this store). */
  addCounters(deltas: ReadonlyArray<readonly [string, number]>): Promise<void>;
  readCounters(): Promise<Array<[string, number]>>;
  // Prepaid balances: every adapter runs them atomically (see BalanceLedger).
  creditBalance: BalanceLedger['creditBalance'];
  drawBalance: BalanceLedger['drawBalance'];
  refundDraw: BalanceLedger['refundDraw'];
  getBalance: BalanceLedger['getBalance'];
  /** Sales and revocations in this store (ledger.ts). */
  ledger(): Ledger;
  ping(): Promise<void>;
  close(): Promise<void>;
  // Optional capabilities: the server asks for what a store can do, never which class it is.
  /** Whether spent marks survive a restart and memory pressure (Redis: persistence on, maxmemory-policy noeviction). */
  durability?(): Promise<DurabilityReport>;
  /** Drops expired entries, for a store that keeps them until asked (SQLite); the server calls it every minute. */
  sweep?(): unknown;
  /** Reads a key outside this store's prefix: ngx_l402's bare keys in its Redis (pricing.legacy_keys). */
  getUnprefixed?(key: string): Promise<string | undefined>;
}

export class StoreUnavailableError extends Error {}
