// `l402d cashu status|redeem`: what the Cashu wallet holds and what it has melted, and a redemption cycle
// on demand. Never prints the mnemonic, proof secrets, the P2PK key, payout invoices or preimages.
import { existsSync } from 'node:fs';
import type { GateConfig } from '../config/config.js';
import { ConfigError } from '../config/config.js';
import { openCashuRail } from '../server/app.js';
import { resolveDbPath } from '../rails/cashu/config.js';
import { WalletDb, type BalanceRow, type MeltRecord } from '../rails/cashu/wallet-db.js';
import { openBackend } from '../server/wiring/open-backend.js';
import { TenantBackends } from '../server/wiring/tenant-backends.js';
import { openStore } from '../server/wiring/open-store.js';
import type { Logger } from '../util/log.js';

/** A melt as operators see it: no invoice, quote or preimage. */
export type MeltSummary = Omit<MeltRecord, 'invoice' | 'quote' | 'preimage'>;

export interface CashuStatus {
  wallet: string;
  fingerprint?: string;
  mode: 'standard' | 'p2pk';
  unit: string;
  balances: BalanceRow[];
  /** Swaps in flight, or whose answer was lost and that background recovery has not settled yet. */
  swapsAwaitingRecovery: number;
  melts: MeltSummary[];
}

function cashuSection(cfg: GateConfig): NonNullable<GateConfig['cashu']> {
  if (!cfg.cashu) throw new ConfigError('cashu: this config has no cashu: section (and CASHU_ECASH_SUPPORT is not true)');
  return cfg.cashu;
}

export function summarizeMelt(m: MeltRecord): MeltSummary {
  const { invoice: _i, quote: _q, preimage: _p, ...rest } = m;
  return rest;
}

/** Reads the wallet database; undefined when it does not exist yet (nothing is created). */
export function cashuStatus(cfg: GateConfig, meltLimit = 10): CashuStatus | undefined {
  const c = cashuSection(cfg);
  const path = resolveDbPath(c, cfg.dataDir, cfg.configDir);
  if (!existsSync(path)) return undefined;
  const db = new WalletDb(path);
  try {
    return {
      wallet: path,
      fingerprint: db.meta('seed_fingerprint'),
      mode: c.mode,
      unit: c.unit,
      balances: db.balances(),
      swapsAwaitingRecovery: db.swapCount(),
      melts: db.melts(meltLimit).map(summarizeMelt),
    };
  } finally {
    db.close();
  }
}

const iso = (secs: number) => new Date(secs * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

export function formatMelt(m: MeltSummary): string {
  const who = m.tenant ?? 'operator';
  const parts = [`${iso(m.startedAt)}  ${m.state.padEnd(7)} ${m.mint}  ${who}`];
  if (m.amount !== undefined) parts.push(`paid out ${m.amount} ${m.unit}`);
  parts.push(`from ${m.proofCount} proofs worth ${m.proofsTotal} ${m.unit}`);
  if (m.feeReserve !== undefined) parts.push(`fee reserve ${m.feeReserve}`);
  if (m.change) parts.push(`change ${m.change}`);
  if (m.error) parts.push(`(${m.error})`);
  return `${parts.join(', ')}  [${m.id}]`;
}

export function formatCashuStatus(s: CashuStatus): string {
  const lines = [`wallet ${s.wallet} (seed fingerprint ${s.fingerprint ?? 'unknown'}), ${s.mode} mode, unit ${s.unit}`];
  if (s.balances.length === 0) lines.push('balance: nothing received yet');
  else {
    lines.push('balance (mint, paid out to, state, amount):');
    for (const b of s.balances) lines.push(`  ${b.mint}  ${b.tenant ?? 'operator'}  ${b.state}  ${b.amount} ${b.unit} in ${b.count} proof${b.count === 1 ? '' : 's'}`);
  }
  lines.push(`swaps in flight or awaiting recovery: ${s.swapsAwaitingRecovery}`);
  if (s.melts.length === 0) lines.push('melts: none yet');
  else {
    lines.push('melts (newest first):');
    for (const m of s.melts) lines.push(`  ${formatMelt(m)}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * One redemption cycle now, as the timer runs it (pending melts settled first, then each mint and tenant
 * melted), whether or not `redeem.enabled` is set. Safe while l402d runs: the wallet's lease lets one
 * process redeem at a time.
 */
export async function cashuRedeem(cfg: GateConfig, log: Logger): Promise<MeltSummary[]> {
  cashuSection(cfg);
  const store = openStore(cfg);
  const backend = await openBackend(cfg, log);
  const tenants = TenantBackends.forConfig(cfg, log);
  try {
    const rail = await openCashuRail(cfg, { store, log, backend, tenantInvoice: (a, msat, memo, signal) => tenants.invoice(a, msat, memo, signal), background: false });
    try {
      return (await rail.redeemNow()).map(summarizeMelt);
    } finally {
      await rail.close();
    }
  } finally {
    await Promise.allSettled([tenants.close(), backend.close(), store.close()]);
  }
}
