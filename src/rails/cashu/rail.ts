// The Cashu rail, wired: NUT-18 challenge, NUT-24 acceptance in standard (swap at the mint) or P2PK (verify
// locally, store) mode (accept.ts), the swap journal and its recovery (swap-journal.ts), single use of every
// proof through the shared Store (replay.ts), and scheduled redemption (redemption-scheduler.ts).
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { getPubKeyFromPrivKey } from '@cashu/cashu-ts';
import type { LightningBackend } from '../lightning/backend.js';
import type { Store } from '../../store/store.js';
import type { Logger } from '../../util/log.js';
import { resolveDbPath, resolveMnemonicFile, type CashuConfig } from './config.js';
import { MintDirectory, sanitize } from './mint-client.js';
import { encodePaymentRequest, priceInUnit, type CashuUnit } from './payment-request.js';
import { Redeemer } from './redeem.js';
import { ReplayGuard } from './replay.js';
import { warmGenerator } from './secp256k1.js';
import { loadWalletSeed } from './seed.js';
import { WalletDb, type BalanceRow, type MeltRecord } from './wallet-db.js';
import { WalletPool } from './wallets.js';
import { createAcceptor, type CashuAcceptContext, type CashuAcceptResult } from './accept.js';
import { errText, SwapJournal } from './swap-journal.js';
import { createPayout, scheduleRedemption } from './redemption-scheduler.js';
import { sleep } from '../../util/timeout.js';

export type { CashuAcceptContext, CashuAcceptResult } from './accept.js';

export interface CashuRail {
  readonly mode: 'standard' | 'p2pk';
  readonly unit: CashuUnit;
  /**
   * Value of the X-Cashu challenge header (NUT-18 creqA) for a price, rounded up to the unit. The request
   * is the same for every route at a price (`routeId` is accepted for call-site symmetry and ignored).
   */
  paymentRequest(priceMsat: number, routeId?: string): string;
  /** Verifies and accepts a token (NUT-24) for a price. Never throws. */
  accept(token: string, priceMsat: number, ctx: CashuAcceptContext, signal?: AbortSignal): Promise<CashuAcceptResult>;
  /** Runs one redemption cycle now (also what the timer runs). */
  redeemNow(signal?: AbortSignal): Promise<MeltRecord[]>;
  /**
   * Settles swaps whose answer was lost (also what the timer runs): restores their outputs from the seed
   * (NUT-09) or, when the mint never spent the inputs, releases them for the payer's retry. Only swaps
   * started at least `minAgeSecs` ago (default: past the swap's transport bound, so none is still in
   * flight). Returns how many were settled.
   */
  recoverNow(signal?: AbortSignal, minAgeSecs?: number): Promise<number>;
  balances(): BalanceRow[];
  melts(limit?: number): MeltRecord[];
  /** For `l402d doctor`: every accepted mint answers /v1/info and its keysets verify. */
  check(signal?: AbortSignal): Promise<string>;
  /** One line for operators; no secrets. */
  describe(): string;
  close(): Promise<void>;
}

export interface CashuRailDeps {
  store: Store;
  dataDir: string;
  /** Relative paths in the section resolve against it (default: dataDir). */
  configDir?: string;
  log: Logger;
  /** Redeemed ecash of routes without their own Lightning address is paid to invoices from this backend. */
  lightning?: Pick<LightningBackend, 'createInvoice'>;
  /** BOLT11 invoice for a tenant's Lightning address (LNURL-pay); needed for per-tenant redemption. */
  tenantInvoice?: (address: string, amountMsat: number, memo: string, signal: AbortSignal) => Promise<string>;
  /**
   * Scheduled work: redemption every interval (when enabled) and recovery of lost swaps (default true).
   * One-shot users (`l402d cashu redeem`, doctor) turn it off and call redeemNow/recoverNow themselves.
   */
  background?: boolean;
}

export async function createCashuRail(cfg: CashuConfig, deps: CashuRailDeps): Promise<CashuRail> {
  const log = deps.log.child({ rail: 'cashu' });
  const configDir = deps.configDir ?? deps.dataDir;
  const dbPath = resolveDbPath(cfg, deps.dataDir, configDir);
  const db = new WalletDb(dbPath);
  try {
    return await build(cfg, deps, log, db, dbPath, configDir);
  } catch (err) {
    db.close();
    throw err;
  }
}

async function build(cfg: CashuConfig, deps: CashuRailDeps, log: Logger, db: WalletDb, dbPath: string, configDir: string): Promise<CashuRail> {
  const unit = cfg.unit as CashuUnit;
  const mnemonicFile = resolveMnemonicFile(cfg, dbPath, configDir);
  const seed = loadWalletSeed({ mnemonic: cfg.mnemonic, mnemonicFile, fingerprintFile: resolve(dirname(dbPath), 'wallet.fingerprint'), db });
  if (seed.source === 'generated') log.warn({ file: mnemonicFile }, 'cashu: generated a new wallet mnemonic; back it up (it restores the wallet)');

  const ourPubkey = cfg.p2pk.privateKey ? Buffer.from(getPubKeyFromPrivKey(Buffer.from(cfg.p2pk.privateKey, 'hex'))).toString('hex') : undefined;
  // Only listed mints are ever looked up (accept() checks the list first): one entry each.
  const directory = new MintDirectory(db, cfg.mintTimeoutMs, cfg.mints.length);
  const replay = new ReplayGuard(deps.store);
  // The swap's own transport bound is longer than swap_timeout_ms: the request answers 503 at the shorter
  // bound while the swap may still finish (and be credited) in the background.
  const swapTransportMs = Math.min(Math.max(cfg.swapTimeoutMs * 4, 10_000), 60_000);
  const wallets = new WalletPool(db, directory, seed.seed, unit, swapTransportMs, cfg.mints.length);
  const holder = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const background = new Set<Promise<unknown>>();
  const requestCache = new Map<number, string>();
  const nutsCache = new Map<string, Record<string, boolean>>();
  let closed = false;

  // Warm keysets and mint info; a mint that is down now is retried on first use.
  await Promise.allSettled(
    cfg.mints.map(async (m) => {
      try {
        await directory.ensure(m);
        const info = await directory.loadInfo(m);
        persistInfo(m, info);
      } catch (err) {
        log.warn({ mint: m, err: errText(err) }, 'cashu: mint not reachable at startup; will retry on first use');
      }
    }),
  );
  if (cfg.mode === 'p2pk' && cfg.p2pk.requireDleq) warmGenerator(); // builds the generator table now, not on the first payment

  function persistInfo(mint: string, info: unknown) {
    const nuts = (info as { nuts?: Record<string, { supported?: boolean }> })?.nuts ?? {};
    db.metaSet(`mint_nuts:${mint}`, JSON.stringify({ 7: !!nuts['7']?.supported, 11: !!nuts['11']?.supported, 12: !!nuts['12']?.supported }));
    nutsCache.delete(mint);
  }

  /** NUT-06 support flags, from memory, disk (so a restart works while the mint is down), or the mint. */
  async function mintNuts(mint: string, signal?: AbortSignal): Promise<Record<string, boolean>> {
    let nuts = nutsCache.get(mint);
    if (nuts) return nuts;
    let stored = db.meta(`mint_nuts:${mint}`);
    if (!stored) {
      persistInfo(mint, await directory.loadInfo(mint, signal));
      stored = db.meta(`mint_nuts:${mint}`)!;
    }
    nuts = JSON.parse(stored) as Record<string, boolean>;
    nutsCache.set(mint, nuts);
    return nuts;
  }

  const journal = new SwapJournal({ cfg, unit, db, wallets, replay, log, holder, swapTransportMs });
  const accept = createAcceptor({ cfg, unit, db, directory, replay, wallets, journal, log, ourPubkey, mintNuts, background, isClosed: () => closed });
  const scheduled = deps.background ?? true;
  // Swaps whose answer was lost are settled in the background (both modes swap: P2PK mode for tokens
  // with a locktime or without a DLEQ).
  if (scheduled) journal.schedule();
  const payout = createPayout(cfg, deps);
  const redeemer = new Redeemer(cfg, db, directory, wallets, payout, cfg.p2pk.privateKey, log);
  scheduleRedemption(redeemer, { enabled: cfg.redeem.enabled, scheduled, payout, log });

  return {
    mode: cfg.mode,
    unit,
    paymentRequest(priceMsat: number): string {
      let v = requestCache.get(priceMsat);
      if (!v) {
        v = encodePaymentRequest({ amount: priceInUnit(priceMsat, unit), unit, mints: cfg.mints, p2pkPubkey: cfg.mode === 'p2pk' ? ourPubkey : undefined });
        if (requestCache.size >= 1024) requestCache.delete(requestCache.keys().next().value!);
        requestCache.set(priceMsat, v);
      }
      return v;
    },
    accept,
    redeemNow: async (signal) => (closed ? [] : redeemer.runOnce(signal)),
    recoverNow: async (signal, minAgeSecs) => (closed ? 0 : journal.recover(signal, minAgeSecs)),
    balances: () => db.balances(),
    melts: (limit) => db.melts(limit),
    async check(signal) {
      const lines: string[] = [];
      for (const m of cfg.mints) {
        const info = await directory.loadInfo(m, signal);
        const ks = await directory.ensure(m, { signal, force: true });
        const ours = [...ks.values()].filter((k) => k.unit === unit);
        if (ours.length === 0) throw new Error(`mint ${m} has no verified keyset in unit ${unit}`);
        if (cfg.mode === 'p2pk' && !info.nuts?.['11']?.supported) throw new Error(`mint ${m} does not advertise NUT-11 (P2PK)`);
        persistInfo(m, info);
        lines.push(`${m} (${sanitize(String(info.name ?? 'unnamed'), 40)}, ${ours.length} ${unit} keysets)`);
      }
      return `cashu ${cfg.mode}: ${lines.join('; ')}`;
    },
    describe() {
      return `cashu ${cfg.mode} mode, unit ${unit}, mints: ${cfg.mints.join(', ')}, wallet ${dbPath} (seed ${seed.fingerprint})${cfg.redeem.enabled ? `, redeem every ${cfg.redeem.intervalSecs} s` : ''}`;
    },
    async close() {
      if (closed) return;
      closed = true;
      const journalClosed = journal.close();
      await redeemer.stop();
      await journalClosed;
      const pending = [...background];
      if (pending.length) {
        await Promise.race([Promise.allSettled(pending), sleep(Math.min(cfg.swapTimeoutMs * 4, 60_000), { ref: false })]);
      }
      db.close();
    },
  };
}
