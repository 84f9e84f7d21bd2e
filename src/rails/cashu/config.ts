// The `cashu:` config section, and the same settings from ngx_l402's CASHU_* environment names.
import { dirname, isAbsolute, resolve } from 'node:path';
import { normalizeMintUrl } from '@cashu/cashu-ts';
import { z } from 'zod';
import { boolLike, intLike, numLike } from '../../util/zod-coerce.js';
import { mnemonicProblem } from './bip39.js';
import { N } from './secp256k1.js';


/** A mint URL in the form tokens carry it (scheme and host lower case, no trailing slash). */
export function normalizeMint(url: string): string {
  return normalizeMintUrl(url.trim());
}

const mintUrl = z.string().transform((v, ctx) => {
  try {
    return normalizeMint(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: `not a usable mint URL: ${(e as Error).message}` });
    return z.NEVER;
  }
});

const privateKeyHex = z
  .string()
  .transform((v) => v.trim().toLowerCase())
  .refine((v) => /^[0-9a-f]{64}$/.test(v) && BigInt('0x' + v) > 0n && BigInt('0x' + v) < N, {
    message: 'must be a secp256k1 private key: 64 hex characters (the value is not shown)',
  });

const mnemonic = z.string().superRefine((v, ctx) => {
  const problem = mnemonicProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: `invalid mnemonic: ${problem}` });
});

const p2pkSchema = z
  .object({
    private_key: privateKeyHex.optional(),
    require_dleq: boolLike.default(true),
    check_state: boolLike.default(false),
    min_locktime_secs: intLike(z.number().int().min(0).max(10 * 365 * 86400)).default(86400),
  })
  .strict();

const redeemSchema = z
  .object({
    enabled: boolLike.default(false),
    interval_secs: intLike(z.number().int().min(10).max(30 * 86400)).default(3600),
    min_balance_sat: intLike(z.number().int().min(1)).default(10),
    fee_reserve_percent: numLike(z.number().min(0).max(50)).default(1),
    min_fee_reserve_sat: intLike(z.number().int().min(0)).default(4),
    max_proofs_per_melt: intLike(z.number().int().min(0).max(100_000)).default(0),
    melt_timeout_ms: intLike(z.number().int().min(1000).max(300_000)).default(60_000),
    invoice_expiry_secs: intLike(z.number().int().min(60).max(86400)).default(600),
  })
  .strict();

export const cashuConfigSchema = z
  .object({
    mode: z.enum(['standard', 'p2pk']).default('standard'),
    unit: z.enum(['sat', 'msat']).default('sat'),
    /**
     * Accepted mints, required: with "any mint", anyone running a mint of their own could pay with ecash
     * they minted for nothing (the gate would swap it there, and that mint happily signs).
     */
    mints: z.array(mintUrl).default([]),
    db_path: z.string().min(1).optional(),
    mnemonic: mnemonic.optional(),
    mnemonic_file: z.string().min(1).optional(),
    p2pk: p2pkSchema.default({ require_dleq: true, check_state: false, min_locktime_secs: 86400 }),
    redeem: redeemSchema.default({
      enabled: false,
      interval_secs: 3600,
      min_balance_sat: 10,
      fee_reserve_percent: 1,
      min_fee_reserve_sat: 4,
      max_proofs_per_melt: 0,
      melt_timeout_ms: 60_000,
      invoice_expiry_secs: 600,
    }),
    /** Standard mode only: how long a swapped token's proofs stay claimed in the store (the mint is authoritative after). */
    replay_ttl_secs: intLike(z.number().int().min(60)).default(86400),
    mint_timeout_ms: intLike(z.number().int().min(100).max(30_000)).default(4000),
    swap_timeout_ms: intLike(z.number().int().min(100).max(30_000)).default(4000),
    max_proofs: intLike(z.number().int().min(1).max(1000)).default(64),
    max_token_bytes: intLike(z.number().int().min(256).max(1_000_000)).default(32_768),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.mints.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['mints'],
        message: 'list the mints you accept (with any mint, a payer could pay with ecash from a mint of their own that is worth nothing)',
      });
    }
    if (c.mode === 'p2pk' && !c.p2pk.private_key) {
      ctx.addIssue({ code: 'custom', path: ['p2pk', 'private_key'], message: 'P2PK mode needs the private key the proofs are locked to' });
    }
    if (new Set(c.mints).size !== c.mints.length) ctx.addIssue({ code: 'custom', path: ['mints'], message: 'a mint is listed twice' });
  })
  .transform((c) => ({
    mode: c.mode,
    unit: c.unit,
    mints: c.mints,
    dbPath: c.db_path,
    mnemonic: c.mnemonic,
    mnemonicFile: c.mnemonic_file,
    p2pk: {
      privateKey: c.p2pk.private_key,
      requireDleq: c.p2pk.require_dleq,
      checkState: c.p2pk.check_state,
      minLocktimeSecs: c.p2pk.min_locktime_secs,
    },
    redeem: {
      enabled: c.redeem.enabled,
      intervalSecs: c.redeem.interval_secs,
      minBalanceSat: c.redeem.min_balance_sat,
      feeReservePercent: c.redeem.fee_reserve_percent,
      minFeeReserveSat: c.redeem.min_fee_reserve_sat,
      maxProofsPerMelt: c.redeem.max_proofs_per_melt,
      meltTimeoutMs: c.redeem.melt_timeout_ms,
      invoiceExpirySecs: c.redeem.invoice_expiry_secs,
    },
    replayTtlSecs: c.replay_ttl_secs,
    mintTimeoutMs: c.mint_timeout_ms,
    swapTimeoutMs: c.swap_timeout_ms,
    maxProofs: c.max_proofs,
    maxTokenBytes: c.max_token_bytes,
  }));

/** Raw (YAML-shaped) section. */
export type CashuConfigInput = z.input<typeof cashuConfigSchema>;
/** Validated section. Secrets (mnemonic, p2pk.privateKey) must never be logged. */
export type CashuConfig = z.output<typeof cashuConfigSchema>;

const isTrue = (v: string | undefined) => (v ?? '').trim().toLowerCase() === 'true';

/**
 * The raw `cashu:` section from ngx_l402's environment names, or undefined when CASHU_ECASH_SUPPORT is not
 * `true`. Values stay strings: the schema validates and names the key. Unlike ngx_l402, a broken P2PK setup
 * is a config error, never a silent fallback to standard mode.
 */
export function cashuFromLegacyEnv(env: NodeJS.ProcessEnv): Record<string, unknown> | undefined {
  if (!isTrue(env.CASHU_ECASH_SUPPORT)) return undefined;
  const raw: Record<string, unknown> = {};
  const set = (key: string, name: string, into: Record<string, unknown> = raw) => {
    const v = env[name];
    if (v !== undefined && v.trim() !== '') into[key] = v.trim();
  };
  if (isTrue(env.CASHU_P2PK_MODE)) raw.mode = 'p2pk';
  set('db_path', 'CASHU_DB_PATH');
  set('mnemonic', 'CASHU_WALLET_MNEMONIC');
  set('mnemonic_file', 'CASHU_WALLET_MNEMONIC_FILE');
  if (env.CASHU_WHITELISTED_MINTS !== undefined) {
    raw.mints = env.CASHU_WHITELISTED_MINTS.split(',').map((s) => s.trim()).filter(Boolean);
  }
  set('replay_ttl_secs', 'L402_CASHU_TOKEN_TTL_SECONDS');

  const p2pk: Record<string, unknown> = {};
  set('private_key', 'CASHU_P2PK_PRIVATE_KEY', p2pk);
  // ngx_l402: only the literal "false" turns DLEQ checking off.
  if (env.CASHU_REQUIRE_DLEQ !== undefined) p2pk.require_dleq = env.CASHU_REQUIRE_DLEQ.trim().toLowerCase() === 'false' ? false : true;
  if (Object.keys(p2pk).length) raw.p2pk = p2pk;

  const redeem: Record<string, unknown> = {};
  if (env.CASHU_REDEEM_ON_LIGHTNING !== undefined) redeem.enabled = isTrue(env.CASHU_REDEEM_ON_LIGHTNING);
  set('interval_secs', 'CASHU_REDEMPTION_INTERVAL_SECS', redeem);
  set('min_balance_sat', 'CASHU_MELT_MIN_BALANCE_SATS', redeem);
  set('fee_reserve_percent', 'CASHU_MELT_FEE_RESERVE_PERCENT', redeem);
  set('min_fee_reserve_sat', 'CASHU_MELT_MIN_FEE_RESERVE_SATS', redeem);
  set('max_proofs_per_melt', 'CASHU_MAX_PROOFS_PER_MELT', redeem);
  if (Object.keys(redeem).length) raw.redeem = redeem;
  return raw;
}

/** The mnemonic file: `mnemonic_file` (relative to configDir), else `wallet.mnemonic` beside the database. */
export function resolveMnemonicFile(cfg: CashuConfig, dbPath: string, configDir: string): string {
  if (!cfg.mnemonicFile) return resolve(dirname(dbPath), 'wallet.mnemonic');
  return isAbsolute(cfg.mnemonicFile) ? cfg.mnemonicFile : resolve(configDir, cfg.mnemonicFile);
}

/** Default wallet database: <dataDir>/cashu/wallet.db; a configured relative path resolves against configDir. */
export function resolveDbPath(cfg: CashuConfig, dataDir: string, configDir: string): string {
  if (!cfg.dbPath) return resolve(dataDir, 'cashu', 'wallet.db');
  return isAbsolute(cfg.dbPath) ? cfg.dbPath : resolve(configDir, cfg.dbPath);
}
