// Per-route (tenant) Lightning addresses: ngx_l402's l402_lnurl_addr, and overrides in the store. One LNURL
// backend per address, kept in a bounded map (the least recently used one is closed when it overflows).
import type { BackendContext, LightningBackend } from '../../rails/lightning/backend.js';
import { createLnurlBackendForAddress, type LnurlOptionsInput } from '../../rails/lightning/http/lnurl.js';
import type { GateConfig } from '../../config/config.js';
import type { Logger } from '../../util/log.js';

const MAX_ADDRESSES = 256;

export class TenantBackends {
  private readonly byAddress = new Map<string, LightningBackend>();

  constructor(private readonly ctx: BackendContext, private readonly options: LnurlOptionsInput) {}

  /** As l402d runs them: the config's directories, backend timeout and lnurl_options. */
  static forConfig(cfg: Pick<GateConfig, 'configDir' | 'dataDir' | 'timeouts' | 'lnurlOptions'>, log: Logger): TenantBackends {
    return new TenantBackends({ configDir: cfg.configDir, dataDir: cfg.dataDir, log, timeoutMs: cfg.timeouts.backendMs }, cfg.lnurlOptions as LnurlOptionsInput);
  }

  /** Throws for an unusable address (the caller answers 503 and logs it). */
  forAddress(address: string): LightningBackend {
    const key = address.trim().toLowerCase();
    let b = this.byAddress.get(key);
    if (b) {
      this.byAddress.delete(key);
      this.byAddress.set(key, b);
      return b;
    }
    b = createLnurlBackendForAddress(address.trim(), this.ctx, this.options);
    this.byAddress.set(key, b);
    if (this.byAddress.size > MAX_ADDRESSES) {
      const [oldest, backend] = this.byAddress.entries().next().value as [string, LightningBackend];
      this.byAddress.delete(oldest);
      void backend.close();
    }
    return b;
  }

  /** A BOLT11 invoice from the tenant's Lightning address (per-tenant Cashu payouts). */
  async invoice(address: string, amountMsat: number, memo: string, signal?: AbortSignal): Promise<string> {
    return (await this.forAddress(address).createInvoice({ amountMsat, memo, expirySecs: 600 }, signal)).bolt11;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.byAddress.values()].map((b) => b.close()));
    this.byAddress.clear();
  }
}
