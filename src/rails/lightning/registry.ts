// Every Lightning backend by its `lightning.type`: config schema, ngx_l402 environment names, factory.
import { z } from 'zod';
import type { BackendContext, LightningBackend } from './backend.js';
import { DevWallet } from './dev/dev-wallet.js';
import { boolLike } from '../../util/zod-coerce.js';
import { createEclairBackend, eclairConfigSchema, eclairFromLegacyEnv } from './http/eclair.js';
import { createLnurlBackend, lnurlConfigSchema, lnurlFromLegacyEnv } from './http/lnurl.js';
import { createLndBackend, lndConfigSchema, lndFromLegacyEnv } from './lnd/lnd.js';
import { createLncBackend, lncConfigSchema, lncFromLegacyEnv, wantsLncFromLegacyEnv } from './lnc.js';
import { createNwcBackend, nwcConfigSchema, nwcFromLegacyEnv } from './nwc/nwc.js';
import { clnConfigSchema, clnFromLegacyEnv, createClnBackend } from './cln/cln.js';
import { bolt12ConfigSchema, bolt12FromLegacyEnv, createBolt12Backend } from './cln/bolt12.js';

// The development wallet is never a default: a config names it. `pay_endpoint` turns on the payment page's
// "pay with the dev wallet" helper (POST /_l402/page/dev-pay), for a local demo only (the quick start).
const devConfigSchema = z
  .object({ type: z.literal('dev'), pay_endpoint: boolLike.default(false) })
  .strict();

export const lightningConfigSchema = z.discriminatedUnion('type', [devConfigSchema, eclairConfigSchema, lnurlConfigSchema, lndConfigSchema, lncConfigSchema, nwcConfigSchema, clnConfigSchema, bolt12ConfigSchema]);
export type LightningConfig = z.output<typeof lightningConfigSchema>;

type Env = Record<string, string | undefined>;
const LEGACY: Record<string, (env: Env) => Record<string, unknown>> = {
  dev: () => ({ type: 'dev' }),
  eclair: eclairFromLegacyEnv,
  lnurl: lnurlFromLegacyEnv,
  // ngx_l402 selects LNC as LND plus a pairing phrase.
  lnd: (env) => (wantsLncFromLegacyEnv(env) ? lncFromLegacyEnv(env) : lndFromLegacyEnv(env as NodeJS.ProcessEnv)),
  lnc: lncFromLegacyEnv,
  nwc: nwcFromLegacyEnv,
  cln: clnFromLegacyEnv,
  bolt12: bolt12FromLegacyEnv,
};

/** ngx_l402's LN_CLIENT_TYPE and its variables, as a raw `lightning:` section (validated like the file). */
export function lightningFromLegacyEnv(env: Env): Record<string, unknown> | undefined {
  const type = env.LN_CLIENT_TYPE?.trim().toLowerCase();
  if (!type) return undefined;
  return LEGACY[type]?.(env) ?? { type };
}

/** Async because some backends learn what they support from the peer first (NWC reads its info event). */
export async function createBackend(cfg: LightningConfig, ctx: BackendContext): Promise<LightningBackend> {
  switch (cfg.type) {
    case 'dev':
      return DevWallet.open(ctx.dataDir);
    case 'eclair':
      return createEclairBackend(cfg, ctx);
    case 'lnurl':
      return createLnurlBackend(cfg, ctx);
    case 'lnd':
      return createLndBackend(cfg, ctx);
    case 'lnc':
      return createLncBackend(cfg, ctx);
    case 'cln':
      return createClnBackend(cfg, ctx);
    case 'bolt12':
      return createBolt12Backend(cfg, ctx);
    case 'nwc':
      return createNwcBackend(cfg, ctx, AbortSignal.timeout(ctx.timeoutMs * 2));
  }
}
