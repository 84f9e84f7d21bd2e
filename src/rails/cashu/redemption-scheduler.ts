// Redemption on a schedule: accepted ecash is melted to Lightning every interval (redeem.ts does one cycle).
// Ecash of a route with its own Lightning address is paid to that address (LNURL-pay), never mixed with
// others'; the rest to invoices from the gate's Lightning backend.
import type { LightningBackend } from '../lightning/backend.js';
import type { Logger } from '../../util/log.js';
import type { CashuConfig } from './config.js';
import { Redeemer, type PayoutInvoice } from './redeem.js';

export interface PayoutDeps {
  /** Redeemed ecash of routes without their own Lightning address is paid to invoices from this backend. */
  lightning?: Pick<LightningBackend, 'createInvoice'>;
  /** BOLT11 invoice for a tenant's Lightning address (LNURL-pay); needed for per-tenant redemption. */
  tenantInvoice?: (address: string, amountMsat: number, memo: string, signal: AbortSignal) => Promise<string>;
}

/** Where a melt's invoice comes from; undefined when nothing can be paid out. */
export function createPayout(cfg: Pick<CashuConfig, 'redeem'>, deps: PayoutDeps): PayoutInvoice | undefined {
  if (!deps.lightning && !deps.tenantInvoice) return undefined;
  return async (tenant, amountMsat, memo, signal) => {
    if (tenant) {
      if (!deps.tenantInvoice) throw new Error(`no Lightning address resolver for tenant ${tenant}`);
      return deps.tenantInvoice(tenant, amountMsat, memo, signal);
    }
    if (!deps.lightning) throw new Error('no Lightning backend to create the payout invoice');
    const inv = await deps.lightning.createInvoice({ amountMsat, memo, expirySecs: cfg.redeem.invoiceExpirySecs }, signal);
    return inv.bolt11;
  };
}

/**
 * Starts the redemption timer when redemption is on and this rail runs scheduled work (`scheduled`; one-shot
 * users such as `l402d cashu redeem` call runOnce themselves). Returns whether it started.
 */
export function scheduleRedemption(redeemer: Pick<Redeemer, 'start'>, o: { enabled: boolean; scheduled: boolean; payout: PayoutInvoice | undefined; log: Logger }): boolean {
  if (!o.enabled || !o.scheduled) return false;
  if (!o.payout) o.log.warn('cashu: redemption is on but no Lightning backend was given; melts will fail');
  redeemer.start();
  return true;
}
