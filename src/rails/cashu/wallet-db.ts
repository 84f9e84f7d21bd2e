// The gate's Cashu wallet on disk (SQLite, WAL): received proofs with their tenant, verified mint keysets,
// NUT-13 counters, swaps whose outcome is not known yet, the melt log and leases so one process at a time
// redeems or recovers. Several l402d processes may
// open the same file; every state change is a single statement or a transaction.
import Database from 'better-sqlite3';
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const SCHEMA = 'l402-nginx-cashu-wallet/1';

/** `invalid`: the mint does not recognise the proof (only possible with require_dleq off); kept for the record. */
export type ProofState = 'unspent' | 'pending' | 'spent' | 'invalid';

export interface StoredProof {
  y: string;
  mint: string;
  unit: string;
  keysetId: string;
  amount: number;
  secret: string;
  C: string;
  dleq?: { e: string; s: string; r?: string };
  tenant?: string;
  routeId?: string;
  /** Locked to our P2PK key: must be signed when melted. */
  p2pk: boolean;
}

interface ProofRow {
  y: string;
  mint: string;
  unit: string;
  keyset_id: string;
  amount: number;
  secret: string;
  c: string;
  dleq: string | null;
  tenant: string | null;
  route_id: string | null;
  p2pk: number;
  state: ProofState;
  melt_id: string | null;
}

export interface StoredKeyset {
  mint: string;
  id: string;
  unit: string;
  inputFeePpk: number;
  finalExpiry?: number;
  active: boolean;
  keys: Record<string, string>;
}

/** A swap sent to a mint whose answer has not been seen yet: enough to restore its outputs (NUT-09). */
export interface SwapRecord {
  id: string;
  mint: string;
  keysetId: string;
  /** NUT-13 counters of the outputs: start .. start + count - 1. */
  start: number;
  count: number;
  /** The payer's proofs (Y values) swapped as inputs. */
  ys: string[];
  tenant?: string;
  routeId?: string;
  /** Seconds. */
  startedAt: number;
}

export interface MeltRecord {
  id: string;
  mint: string;
  unit: string;
  tenant?: string;
  quote?: string;
  invoice?: string;
  amount?: number;
  feeReserve?: number;
  inputFee?: number;
  proofsTotal: number;
  proofCount: number;
  state: 'pending' | 'paid' | 'failed';
  preimage?: string;
  change?: number;
  error?: string;
  startedAt: number;
  finishedAt?: number;
}

export interface BalanceRow {
  mint: string;
  unit: string;
  tenant?: string;
  state: ProofState;
  amount: number;
  count: number;
}

const now = () => Math.floor(Date.now() / 1000);

function toProof(r: ProofRow): StoredProof & { state: ProofState; meltId?: string } {
  return {
    y: r.y,
    mint: r.mint,
    unit: r.unit,
    keysetId: r.keyset_id,
    amount: r.amount,
    secret: r.secret,
    C: r.c,
    dleq: r.dleq ? (JSON.parse(r.dleq) as StoredProof['dleq']) : undefined,
    tenant: r.tenant ?? undefined,
    routeId: r.route_id ?? undefined,
    p2pk: r.p2pk === 1,
    state: r.state,
    meltId: r.melt_id ?? undefined,
  };
}

export class WalletDbError extends Error {}

export class WalletDb {
  readonly path: string;
  private readonly db: Database.Database;
  private readonly st;

  constructor(path: string) {
    this.path = path;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.db = new Database(path);
    try {
      chmodSync(path, 0o600);
      this.db.pragma('busy_timeout = 5000');
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.migrate();
    } catch (err) {
      this.db.close();
      throw err;
    }
    const d = this.db;
    this.st = {
      getMeta: d.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?'),
      // First writer wins; a later process reads what the first one wrote.
      initMeta: d.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING'),
      setMeta: d.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value'),
      insertProof: d.prepare(
        `INSERT INTO proofs (y, mint, unit, keyset_id, amount, secret, c, dleq, tenant, route_id, p2pk, state, melt_id, created_at, updated_at)
         VALUES (@y, @mint, @unit, @keyset_id, @amount, @secret, @c, @dleq, @tenant, @route_id, @p2pk, 'unspent', NULL, @now, @now)`,
      ),
      hasY: d.prepare<[string], { y: string }>('SELECT y FROM proofs WHERE y = ?'),
      unspentFor: d.prepare<[string, string], ProofRow>(
        "SELECT * FROM proofs WHERE state = 'unspent' AND mint = ? AND unit = ? ORDER BY amount DESC, created_at",
      ),
      pendingMelts: d.prepare<[], { melt_id: string }>("SELECT DISTINCT melt_id FROM proofs WHERE state = 'pending' AND melt_id IS NOT NULL"),
      proofsOfMelt: d.prepare<[string], ProofRow>('SELECT * FROM proofs WHERE melt_id = ?'),
      markPending: d.prepare("UPDATE proofs SET state = 'pending', melt_id = ?, updated_at = ? WHERE y = ? AND state = 'unspent'"),
      setStateOfMelt: d.prepare('UPDATE proofs SET state = ?, updated_at = ? WHERE melt_id = ? AND state = \'pending\''),
      releaseMelt: d.prepare("UPDATE proofs SET state = 'unspent', melt_id = NULL, updated_at = ? WHERE melt_id = ? AND state = 'pending'"),
      releaseProof: d.prepare("UPDATE proofs SET state = 'unspent', melt_id = NULL, updated_at = ? WHERE melt_id = ? AND y = ? AND state = 'pending'"),
      setStateByY: d.prepare('UPDATE proofs SET state = ?, updated_at = ? WHERE y = ?'),
      balances: d.prepare<[], { mint: string; unit: string; tenant: string | null; state: ProofState; amount: number; count: number }>(
        'SELECT mint, unit, tenant, state, SUM(amount) AS amount, COUNT(*) AS count FROM proofs GROUP BY mint, unit, tenant, state ORDER BY mint, unit, tenant, state',
      ),
      putKeyset: d.prepare(
        `INSERT INTO keysets (mint, id, unit, input_fee_ppk, final_expiry, active, keys) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(mint, id) DO UPDATE SET active = excluded.active, input_fee_ppk = excluded.input_fee_ppk`,
      ),
      keysetsOf: d.prepare<[string], { mint: string; id: string; unit: string; input_fee_ppk: number; final_expiry: number | null; active: number; keys: string }>(
        'SELECT * FROM keysets WHERE mint = ?',
      ),
      reserveCounter: d.prepare<[string, number, number], { next: number }>(
        'INSERT INTO counters (keyset_id, next) VALUES (?, ?) ON CONFLICT(keyset_id) DO UPDATE SET next = next + ? RETURNING next',
      ),
      peekCounter: d.prepare<[string], { next: number }>('SELECT next FROM counters WHERE keyset_id = ?'),
      atLeastCounter: d.prepare(
        'INSERT INTO counters (keyset_id, next) VALUES (?, ?) ON CONFLICT(keyset_id) DO UPDATE SET next = MAX(next, excluded.next)',
      ),
      insertMelt: d.prepare(
        `INSERT INTO melts (id, mint, unit, tenant, quote, invoice, amount, fee_reserve, input_fee, proofs_total, proof_count, state, started_at)
         VALUES (@id, @mint, @unit, @tenant, @quote, @invoice, @amount, @fee_reserve, @input_fee, @proofs_total, @proof_count, 'pending', @started_at)`,
      ),
      finishMelt: d.prepare('UPDATE melts SET state = ?, preimage = ?, change = ?, error = ?, finished_at = ? WHERE id = ?'),
      getMelt: d.prepare<[string], Record<string, unknown>>('SELECT * FROM melts WHERE id = ?'),
      listMelts: d.prepare<[number], Record<string, unknown>>('SELECT * FROM melts ORDER BY started_at DESC, rowid DESC LIMIT ?'),
      insertSwap: d.prepare(
        `INSERT INTO swaps (id, mint, keyset_id, start, count, ys, tenant, route_id, started_at)
         VALUES (@id, @mint, @keyset_id, @start, @count, @ys, @tenant, @route_id, @started_at)`,
      ),
      deleteSwap: d.prepare('DELETE FROM swaps WHERE id = ?'),
      putMeltOutputs: d.prepare('INSERT OR REPLACE INTO melt_outputs (melt_id, keyset_id, start, count) VALUES (?, ?, ?, ?)'),
      getMeltOutputs: d.prepare<[string], { keyset_id: string; start: number; count: number }>('SELECT * FROM melt_outputs WHERE melt_id = ?'),
      swapsBefore: d.prepare<[number], { id: string; mint: string; keyset_id: string; start: number; count: number; ys: string; tenant: string | null; route_id: string | null; started_at: number }>(
        'SELECT * FROM swaps WHERE started_at <= ? ORDER BY started_at LIMIT 100',
      ),
      takeLease: d.prepare(
        `INSERT INTO leases (name, holder, until) VALUES (?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, until = excluded.until WHERE leases.until < ? OR leases.holder = excluded.holder`,
      ),
      dropLease: d.prepare('DELETE FROM leases WHERE name = ? AND holder = ?'),
      countSwaps: d.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM swaps'),
    };
  }

  private migrate(): void {
    const tables = this.db.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").all().map((r) => r.name);
    if (tables.length > 0 && !tables.includes('meta')) {
      throw new WalletDbError(
        `${this.path} is not an l402-nginx Cashu wallet database (an ngx_l402/cdk database?); point cashu.db_path at a new file`,
      );
    }
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS proofs (
        y TEXT PRIMARY KEY, mint TEXT NOT NULL, unit TEXT NOT NULL, keyset_id TEXT NOT NULL, amount INTEGER NOT NULL,
        secret TEXT NOT NULL, c TEXT NOT NULL, dleq TEXT, tenant TEXT, route_id TEXT, p2pk INTEGER NOT NULL,
        locktime INTEGER /* unused: proofs with a locktime are swapped on arrival */, state TEXT NOT NULL, melt_id TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS proofs_state ON proofs (state, mint, unit);
      CREATE INDEX IF NOT EXISTS proofs_melt ON proofs (melt_id);
      CREATE TABLE IF NOT EXISTS keysets (
        mint TEXT NOT NULL, id TEXT NOT NULL, unit TEXT NOT NULL, input_fee_ppk INTEGER NOT NULL, final_expiry INTEGER,
        active INTEGER NOT NULL, keys TEXT NOT NULL, PRIMARY KEY (mint, id));
      CREATE TABLE IF NOT EXISTS counters (keyset_id TEXT PRIMARY KEY, next INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS melts (
        id TEXT PRIMARY KEY, mint TEXT NOT NULL, unit TEXT NOT NULL, tenant TEXT, quote TEXT, invoice TEXT, amount INTEGER,
        fee_reserve INTEGER, input_fee INTEGER, proofs_total INTEGER NOT NULL, proof_count INTEGER NOT NULL, state TEXT NOT NULL,
        preimage TEXT, change INTEGER, error TEXT, started_at INTEGER NOT NULL, finished_at INTEGER);
      CREATE TABLE IF NOT EXISTS swaps (
        id TEXT PRIMARY KEY, mint TEXT NOT NULL, keyset_id TEXT NOT NULL, start INTEGER NOT NULL, count INTEGER NOT NULL,
        ys TEXT NOT NULL, tenant TEXT, route_id TEXT, started_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS melt_outputs (melt_id TEXT PRIMARY KEY, keyset_id TEXT NOT NULL, start INTEGER NOT NULL, count INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until INTEGER NOT NULL);
    `);
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING').run('schema', SCHEMA);
    const schema = this.db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?').get('schema')?.value;
    if (schema !== SCHEMA) throw new WalletDbError(`${this.path} has wallet schema ${schema}, this build understands ${SCHEMA}`);
  }

  /** Reads `key`, writing `value` first if nobody has (atomic across processes). */
  metaInit(key: string, value: string): string {
    this.st.initMeta.run(key, value);
    return this.st.getMeta.get(key)!.value;
  }
  metaSet(key: string, value: string): void {
    this.st.setMeta.run(key, value);
  }
  meta(key: string): string | undefined {
    return this.st.getMeta.get(key)?.value;
  }

  /**
   * Stores proofs as unspent, all or none. False when any of them (by Y) is already stored: a replay
   * that got past the store claim (e.g. a claim that expired).
   */
  insertProofs(proofs: StoredProof[]): boolean {
    const t = now();
    const tx = this.db.transaction((ps: StoredProof[]) => {
      for (const p of ps) {
        this.st.insertProof.run({
          y: p.y,
          mint: p.mint,
          unit: p.unit,
          keyset_id: p.keysetId,
          amount: p.amount,
          secret: p.secret,
          c: p.C,
          dleq: p.dleq ? JSON.stringify(p.dleq) : null,
          tenant: p.tenant ?? null,
          route_id: p.routeId ?? null,
          p2pk: p.p2pk ? 1 : 0,
          now: t,
        });
      }
    });
    try {
      tx(proofs);
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return false;
      throw err;
    }
  }

  hasY(y: string): boolean {
    return this.st.hasY.get(y) !== undefined;
  }

  unspent(mint: string, unit: string): Array<StoredProof & { state: ProofState }> {
    return this.st.unspentFor.all(mint, unit).map(toProof);
  }

  /** Moves exactly these proofs from unspent to pending under `meltId`; false (and no change) if any moved away. */
  reserveForMelt(meltId: string, ys: string[]): boolean {
    const t = now();
    const tx = this.db.transaction(() => {
      for (const y of ys) {
        if (this.st.markPending.run(meltId, t, y).changes !== 1) throw new WalletDbError('proof no longer unspent');
      }
    });
    try {
      tx();
      return true;
    } catch (err) {
      if (err instanceof WalletDbError) return false;
      throw err;
    }
  }

  pendingMeltIds(): string[] {
    return this.st.pendingMelts.all().map((r) => r.melt_id);
  }
  proofsOfMelt(meltId: string): Array<StoredProof & { state: ProofState }> {
    return this.st.proofsOfMelt.all(meltId).map(toProof);
  }
  settleMelt(meltId: string): void {
    this.st.setStateOfMelt.run('spent', now(), meltId);
  }
  releaseMelt(meltId: string): void {
    this.st.releaseMelt.run(now(), meltId);
  }
  /** Moves these pending proofs of `meltId` back to unspent (the melt's other proofs stay as they are). */
  releaseProofs(meltId: string, ys: string[]): void {
    const t = now();
    this.db.transaction(() => {
      for (const y of ys) this.st.releaseProof.run(t, meltId, y);
    })();
  }
  setProofState(y: string, state: ProofState): void {
    this.st.setStateByY.run(state, now(), y);
  }

  balances(): BalanceRow[] {
    return this.st.balances.all().map((r) => ({ mint: r.mint, unit: r.unit, tenant: r.tenant ?? undefined, state: r.state, amount: r.amount, count: r.count }));
  }

  putKeyset(k: StoredKeyset): void {
    this.st.putKeyset.run(k.mint, k.id, k.unit, k.inputFeePpk, k.finalExpiry ?? null, k.active ? 1 : 0, JSON.stringify(k.keys));
  }
  keysetsOf(mint: string): StoredKeyset[] {
    return this.st.keysetsOf.all(mint).map((r) => ({
      mint: r.mint,
      id: r.id,
      unit: r.unit,
      inputFeePpk: r.input_fee_ppk,
      finalExpiry: r.final_expiry ?? undefined,
      active: r.active === 1,
      keys: JSON.parse(r.keys) as Record<string, string>,
    }));
  }

  /** Reserves `n` NUT-13 counters for a keyset; returns the first. Atomic across processes. */
  reserveCounters(keysetId: string, n: number): number {
    const next = this.st.reserveCounter.get(keysetId, n, n)!.next;
    return next - n;
  }
  peekCounter(keysetId: string): number {
    return this.st.peekCounter.get(keysetId)?.next ?? 0;
  }
  counterAtLeast(keysetId: string, next: number): void {
    this.st.atLeastCounter.run(keysetId, next);
  }

  startMelt(m: MeltRecord): void {
    this.st.insertMelt.run({
      id: m.id,
      mint: m.mint,
      unit: m.unit,
      tenant: m.tenant ?? null,
      quote: m.quote ?? null,
      invoice: m.invoice ?? null,
      amount: m.amount ?? null,
      fee_reserve: m.feeReserve ?? null,
      input_fee: m.inputFee ?? null,
      proofs_total: m.proofsTotal,
      proof_count: m.proofCount,
      started_at: m.startedAt,
    });
  }
  finishMelt(id: string, state: 'paid' | 'failed', info: { preimage?: string; change?: number; error?: string }): void {
    this.st.finishMelt.run(state, info.preimage ?? null, info.change ?? null, info.error ?? null, now(), id);
  }
  /** NUT-13 counters of a melt's blank change outputs (NUT-08), so change of a lost answer can be restored. */
  setMeltOutputs(id: string, c: { keysetId: string; start: number; count: number }): void {
    this.st.putMeltOutputs.run(id, c.keysetId, c.start, c.count);
  }
  meltOutputs(id: string): { keysetId: string; start: number; count: number } | undefined {
    const r = this.st.getMeltOutputs.get(id);
    return r ? { keysetId: r.keyset_id, start: r.start, count: r.count } : undefined;
  }
  melt(id: string): MeltRecord | undefined {
    const r = this.st.getMelt.get(id);
    return r ? rowToMelt(r) : undefined;
  }
  melts(limit = 100): MeltRecord[] {
    return this.st.listMelts.all(limit).map(rowToMelt);
  }

  /** Written before a swap's request leaves (its output counters are reserved by then). */
  startSwap(r: SwapRecord): void {
    this.st.insertSwap.run({
      id: r.id,
      mint: r.mint,
      keyset_id: r.keysetId,
      start: r.start,
      count: r.count,
      ys: JSON.stringify(r.ys),
      tenant: r.tenant ?? null,
      route_id: r.routeId ?? null,
      started_at: r.startedAt,
    });
  }
  /** The swap's outcome is known (its proofs are stored, or nothing was signed). */
  endSwap(id: string): void {
    this.st.deleteSwap.run(id);
  }
  /** Swaps journalled and not yet ended (answered, or settled by recovery). */
  swapCount(): number {
    return this.st.countSwaps.get()!.n;
  }
  /** Swaps with an unknown outcome started at or before `secs`, oldest first. */
  swapsStartedBefore(secs: number): SwapRecord[] {
    return this.st.swapsBefore.all(secs).map((r) => ({
      id: r.id,
      mint: r.mint,
      keysetId: r.keyset_id,
      start: r.start,
      count: r.count,
      ys: JSON.parse(r.ys) as string[],
      tenant: r.tenant ?? undefined,
      routeId: r.route_id ?? undefined,
      startedAt: r.started_at,
    }));
  }

  /** Takes (or renews) a named lease for `secs`; false while another holder's lease is live. */
  takeLease(name: string, holder: string, secs: number): boolean {
    const t = now();
    return this.st.takeLease.run(name, holder, t + secs, t).changes === 1;
  }
  dropLease(name: string, holder: string): void {
    this.st.dropLease.run(name, holder);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function rowToMelt(r: Record<string, unknown>): MeltRecord {
  const opt = <T>(v: unknown) => (v === null || v === undefined ? undefined : (v as T));
  return {
    id: r.id as string,
    mint: r.mint as string,
    unit: r.unit as string,
    tenant: opt<string>(r.tenant),
    quote: opt<string>(r.quote),
    invoice: opt<string>(r.invoice),
    amount: opt<number>(r.amount),
    feeReserve: opt<number>(r.fee_reserve),
    inputFee: opt<number>(r.input_fee),
    proofsTotal: r.proofs_total as number,
    proofCount: r.proof_count as number,
    state: r.state as MeltRecord['state'],
    preimage: opt<string>(r.preimage),
    change: opt<number>(r.change),
    error: opt<string>(r.error),
    startedAt: r.started_at as number,
    finishedAt: opt<number>(r.finished_at),
  };
}
