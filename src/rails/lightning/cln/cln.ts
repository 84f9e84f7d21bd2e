// Core Lightning backend (BOLT11): `invoice` to charge, `listinvoices` for settlement, `getinfo`
// for `l402d doctor`. Talks JSON-RPC over lightningd's unix socket (default) or clnrest over HTTPS.
// Every reply is checked before it reaches the gate: the invoice must decode and match the hash and
// amount we asked for; a "paid" preimage must hash to the payment hash.
import { createHash, randomBytes } from 'node:crypto';
import { readConfigFile, resolveConfigPath } from '../transports/config-file.js';
import { z } from 'zod';
import {
  BackendCallError, type BackendContext, type CreatedInvoice, type InvoiceRequest, type InvoiceState, type LightningBackend,
} from '../backend.js';
import { checkReturnedInvoice } from '../codecs/bolt11.js';
import { ClnSocketRpc, peerText, type ClnCaller } from './cln-rpc.js';
import { ClnRestRpc, clnRestUrlProblem } from './clnrest.js';

export { resolveConfigPath };

/**
 * lightningd's own default (lightningd-rpc(7)) for mainnet. ngx_l402's payment detector defaults to
 * /root/.lightning/bitcoin/lightning-rpc, which is this path for root.
 */
export const DEFAULT_CLN_RPC_PATH = '~/.lightning/bitcoin/lightning-rpc';

/** A configuration problem a CLN/BOLT12 backend detected; the message names the key. */
export class ClnConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClnConfigError';
  }
}

const pathString = z.string().trim().min(1);
// Runes are base64url; refusing anything else keeps a pasted newline or quote out of the header.
const runeString = z.string().trim().regex(/^[A-Za-z0-9_\-+/=]{8,4096}$/, 'must be a CLN rune (base64url text)');

/** Transport keys shared by `cln` and `bolt12`. */
export const clnTransportShape = {
  transport: z.enum(['rpc', 'rest']).default('rpc'),
  rpc_path: pathString.default(DEFAULT_CLN_RPC_PATH),
  rest_url: z.string().trim().min(1).optional(),
  rune: runeString.optional(),
  rune_file: pathString.optional(),
  ca_cert_path: pathString.optional(),
};

export interface ClnTransportConfig {
  transport: 'rpc' | 'rest';
  rpc_path: string;
  rest_url?: string;
  rune?: string;
  rune_file?: string;
  ca_cert_path?: string;
}

type RefineCtx = { addIssue(issue: { code: 'custom'; message: string; path: string[] }): void };

/** Cross-field rules for the transport keys (zod superRefine body). */
export function refineClnTransport(v: ClnTransportConfig, ctx: RefineCtx): void {
  if (v.transport === 'rest') {
    if (!v.rest_url) ctx.addIssue({ code: 'custom', path: ['rest_url'], message: 'required when transport is rest (e.g. https://127.0.0.1:3010)' });
    else {
      const p = clnRestUrlProblem(v.rest_url);
      if (p) ctx.addIssue({ code: 'custom', path: ['rest_url'], message: p });
    }
    if (!v.rune === !v.rune_file) ctx.addIssue({ code: 'custom', path: ['rune'], message: 'set exactly one of rune or rune_file when transport is rest' });
  } else {
    for (const key of ['rest_url', 'rune', 'rune_file', 'ca_cert_path'] as const) {
      if (v[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'only used with transport: rest' });
    }
  }
}

export const clnConfigSchema = z
  .object({ type: z.literal('cln'), ...clnTransportShape })
  .strict()
  .superRefine((v, ctx) => refineClnTransport(v, ctx));

export type ClnConfig = z.output<typeof clnConfigSchema>;

function nonEmpty(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t ? t : undefined;
}

/**
 * ngx_l402 environment → raw `lightning:` section for `type: cln`:
 * CLN_LIGHTNING_RPC_FILE_PATH → rpc_path (ngx_l402 only speaks the unix socket).
 */
export function clnFromLegacyEnv(env: Record<string, string | undefined>): Record<string, unknown> {
  const out: Record<string, unknown> = { type: 'cln', transport: 'rpc' };
  const path = nonEmpty(env.CLN_LIGHTNING_RPC_FILE_PATH);
  if (path) out.rpc_path = path;
  return out;
}

/** `~/x` → home, relative → against the config file's directory. */
/** Opens the configured transport. Reads rune_file and ca_cert_path now, so a bad path fails at start. */
export function openClnCaller(cfg: ClnTransportConfig, ctx: BackendContext): ClnCaller {
  if (cfg.transport === 'rest') {
    if (!cfg.rest_url) throw new ClnConfigError('lightning.rest_url: required when transport is rest');
    const problem = clnRestUrlProblem(cfg.rest_url);
    if (problem) throw new ClnConfigError(`lightning.rest_url: ${problem}`);
    const rune = cfg.rune ?? (cfg.rune_file ? readConfigFile('rune_file', cfg.rune_file, ctx.configDir, (m) => new ClnConfigError(m)).toString('utf8').trim() : '');
    if (!/^[A-Za-z0-9_\-+/=]{8,4096}$/.test(rune)) {
      throw new ClnConfigError(`lightning.${cfg.rune_file ? 'rune_file' : 'rune'}: must hold a CLN rune (base64url text)`);
    }
    const ca = cfg.ca_cert_path ? readConfigFile('ca_cert_path', cfg.ca_cert_path, ctx.configDir, (m) => new ClnConfigError(m)) : undefined;
    return new ClnRestRpc({ url: cfg.rest_url, rune, ca, timeoutMs: ctx.timeoutMs });
  }
  return new ClnSocketRpc({ path: resolveConfigPath(cfg.rpc_path, ctx.configDir), timeoutMs: ctx.timeoutMs, log: ctx.log });
}

// ---------------------------------------------------------------------------------------------
// Reply validation (shared with the BOLT12 backend)
// ---------------------------------------------------------------------------------------------

function sha256(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

export function asObject(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new BackendCallError(`${what}: reply is not a JSON object`);
  return v as Record<string, unknown>;
}

export function hex32(v: unknown, what: string): Buffer {
  if (typeof v !== 'string' || !/^[0-9a-fA-F]{64}$/.test(v)) throw new BackendCallError(`${what} is not 32 bytes of hex`);
  return Buffer.from(v, 'hex');
}

/** CLN `msat` values: a u64 number, or (deprecated) a string "<n>msat". */
export function parseMsat(v: unknown): bigint | undefined {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string') {
    const m = /^(\d{1,20})(msat)?$/.exec(v);
    if (m) return BigInt(m[1]!);
  }
  return undefined;
}

/**
 * Maps a `listinvoices {payment_hash}` result to an InvoiceState. A "paid" entry must carry the
 * preimage of the hash we asked about; anything else is a malformed reply, never a settlement.
 */
export function invoiceStateFromList(result: unknown, paymentHash: Buffer, what = 'CLN listinvoices'): InvoiceState {
  const r = asObject(result, what);
  if (!Array.isArray(r.invoices)) throw new BackendCallError(`${what}: reply has no invoices array`);
  const wanted = paymentHash.toString('hex');
  const entries = r.invoices
    .map((x) => asObject(x, what))
    .filter((x) => typeof x.payment_hash === 'string' && x.payment_hash.toLowerCase() === wanted);
  if (entries.length === 0) {
    if (r.invoices.length > 0) throw new BackendCallError(`${what}: reply lists invoices for other payment hashes`);
    return { state: 'unknown' };
  }
  const paid = entries.find((x) => x.status === 'paid');
  if (paid) {
    const preimage = hex32(paid.payment_preimage, `${what}: payment_preimage of a paid invoice`);
    if (!sha256(preimage).equals(paymentHash)) throw new BackendCallError(`${what}: payment_preimage does not hash to the payment hash`, false);
    // CLN refuses an HTLC set below the invoice's amount, so "paid" with less received is a node that lies (or
    // answers about something else): never a settlement. The amount was checked against the price at creation.
    const asked = parseMsat(paid.amount_msat);
    if (asked !== undefined) {
      const received = parseMsat(paid.amount_received_msat);
      if (received === undefined || received < asked) {
        throw new BackendCallError(`${what}: a paid invoice of ${asked} msat reports ${received === undefined ? 'no amount' : `${received} msat`} received; refusing it`, false);
      }
    }
    return { state: 'settled', preimage };
  }
  const status = entries[0]!.status;
  if (status === 'unpaid') return { state: 'open' };
  if (status === 'expired') return { state: 'expired' };
  throw new BackendCallError(`${what}: unknown invoice status ${peerText(status, [], 40)}`);
}

/** Checks CLN's `invoice` reply against the request: decodable BOLT11, same hash, same amount, not expired. */
export function createdInvoiceFrom(result: unknown, req: InvoiceRequest, nowSecs = Math.floor(Date.now() / 1000)): CreatedInvoice {
  const r = asObject(result, 'CLN invoice');
  const bolt11 = r.bolt11;
  if (typeof bolt11 !== 'string' || bolt11.length > 7089) throw new BackendCallError('CLN invoice: reply has no bolt11 string');
  const paymentHash = hex32(r.payment_hash, 'CLN invoice: payment_hash');
  const expiresAt = r.expires_at;
  if (typeof expiresAt !== 'number' || !Number.isSafeInteger(expiresAt)) throw new BackendCallError('CLN invoice: expires_at is not an integer');
  // CLN's own expires_at is the expiry we report, never later than its bolt11's; a mismatch is a node fault (not
  // retryable), an expired one maybe its clock.
  const inv = checkReturnedInvoice(bolt11, {
    backend: 'CLN invoice',
    amountMsat: req.amountMsat,
    paymentHash,
    paymentHashField: 'payment_hash',
    expiresAt,
    expirySecs: req.expirySecs,
    now: nowSecs,
    retryable: { payment_hash: false, amount: false },
    wording: (p) => {
      if (p.kind === 'payment_hash') return 'bolt11 payment hash differs from payment_hash; refusing it';
      if (p.kind === 'amount') return `bolt11 amount ${p.invoiceMsat ?? 'missing'} msat differs from the requested ${p.requestedMsat} msat; refusing it`;
      return undefined;
    },
  });
  return { bolt11, paymentHash, expiresAt: inv.expiresAt };
}

/** One-line summary of `getinfo` for `l402d doctor`. */
export function describeGetinfo(result: unknown): { text: string; network: string; id: string } {
  const r = asObject(result, 'CLN getinfo');
  if (typeof r.id !== 'string' || !/^0[23][0-9a-fA-F]{64}$/.test(r.id)) throw new BackendCallError('CLN getinfo: id is not a node public key');
  if (typeof r.network !== 'string' || !r.network) throw new BackendCallError('CLN getinfo: no network');
  const alias = typeof r.alias === 'string' && r.alias ? peerText(r.alias, [], 32) : '(no alias)';
  const version = typeof r.version === 'string' ? ` ${peerText(r.version, [], 40)}` : '';
  const height = typeof r.blockheight === 'number' ? `, block ${r.blockheight}` : '';
  const warn = typeof r.warning_lightningd_sync === 'string' ? ' (still syncing)' : '';
  return {
    text: `CLN${version} ${alias} ${r.id.slice(0, 16)}… on ${peerText(r.network, [], 20)}${height}${warn}`,
    network: r.network,
    id: r.id.toLowerCase(),
  };
}

// ---------------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------------

class ClnBackend implements LightningBackend {
  readonly kind = 'cln';

  constructor(private readonly rpc: ClnCaller) {}

  async createInvoice(req: InvoiceRequest, signal?: AbortSignal): Promise<CreatedInvoice> {
    if (!Number.isSafeInteger(req.amountMsat) || req.amountMsat <= 0) throw new BackendCallError(`cln: amountMsat must be a positive integer`, false);
    // CLN labels are unique per node forever; a random one cannot collide with another gate or an operator's.
    const label = `l402-${randomBytes(16).toString('hex')}`;
    const result = await this.rpc.call(
      'invoice',
      { amount_msat: req.amountMsat, label, description: req.memo, expiry: req.expirySecs },
      signal,
    );
    return createdInvoiceFrom(result, req);
  }

  async lookupInvoice(paymentHash: Buffer, signal?: AbortSignal): Promise<InvoiceState> {
    if (paymentHash.length !== 32) return { state: 'unknown' };
    const result = await this.rpc.call('listinvoices', { payment_hash: paymentHash.toString('hex') }, signal);
    return invoiceStateFromList(result, paymentHash);
  }

  async check(signal?: AbortSignal): Promise<string> {
    return describeGetinfo(await this.rpc.call('getinfo', {}, signal)).text;
  }

  describe(): string {
    return `Core Lightning (BOLT11) via ${this.rpc.describe()}`;
  }

  close(): Promise<void> {
    return this.rpc.close();
  }
}

/** `cfg` is the validated `lightning:` section; paths resolve against ctx.configDir. */
export function createClnBackend(cfg: ClnConfig, ctx: BackendContext): LightningBackend {
  return new ClnBackend(openClnCaller(cfg, ctx));
}

/** For tests and embedding: a CLN backend over an already-open transport. */
export function createClnBackendWith(rpc: ClnCaller): LightningBackend {
  return new ClnBackend(rpc);
}
