// Eclair backend: Eclair's REST API (form-encoded POST, HTTP basic auth with an empty user and the API
// password). Replies are checked against the invoice itself, never taken on trust: the invoice must
// decode, commit to the hash Eclair names, carry the amount we asked for, and a "received" preimage
// must hash to the payment hash. Eclair returns `paymentPreimage` for pending invoices too, so only
// `status.type == "received"` counts as paid.
import { createHash } from 'node:crypto';
import { readConfigFile, resolveConfigPath } from '../transports/config-file.js';
import { z } from 'zod';
import { BackendCallError, type BackendContext, type CreatedInvoice, type InvoiceRequest, type InvoiceState, type LightningBackend } from '../backend.js';
import { checkReturnedInvoice } from '../codecs/bolt11.js';
import { BoundedHttpClient, HttpFetchError, redactUrl, type FetchResponse } from '../transports/safe-fetch.js';

const DEFAULT_URL = 'http://localhost:8080';
const MAX_RESPONSE_BYTES = 256 * 1024;

export const eclairConfigSchema = z
  .object({
    type: z.literal('eclair'),
    /** Eclair's API endpoint (`eclair.api.binding-ip`/`port`), http or https. */
    url: z
      .url({ protocol: /^https?$/, error: 'an http:// or https:// URL' })
      .default(DEFAULT_URL)
      .refine((u) => { const p = new URL(u); return !p.username && !p.password; }, 'must not carry credentials; put the API password in `password`')
      .refine((u) => { const p = new URL(u); return !p.search && !p.hash; }, 'must not have a query string or fragment'),
    /** `eclair.api.password`. Required: without it Eclair answers nothing. */
    password: z.string().min(1).optional(),
    /** File holding the API password (first line), resolved against the config directory. */
    password_file: z.string().min(1).optional(),
    /** PEM CA certificate to trust for an https `url` (e.g. a TLS proxy in front of Eclair). */
    ca_cert_path: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.password === undefined && c.password_file === undefined) {
      ctx.addIssue({ code: 'custom', path: ['password'], message: 'the Eclair API password is required (eclair.api.password): set `password`, `password_file` or ECLAIR_PASSWORD' });
    }
    if (c.password !== undefined && c.password_file !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['password_file'], message: 'set either `password` or `password_file`, not both' });
    }
  });

export type EclairConfig = z.output<typeof eclairConfigSchema>;

/** The raw `lightning:` section from ngx_l402's environment (ECLAIR_ADDRESS, ECLAIR_PASSWORD). */
export function eclairFromLegacyEnv(env: Record<string, string | undefined>): Record<string, unknown> {
  const raw: Record<string, unknown> = { type: 'eclair' };
  const address = env.ECLAIR_ADDRESS?.trim();
  // ngx_l402 concatenates the address and the path, so operators wrote a full URL; be lenient with a bare host:port.
  if (address) raw.url = /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address.replace(/\/+$/, '') : `http://${address.replace(/\/+$/, '')}`;
  if (env.ECLAIR_PASSWORD !== undefined && env.ECLAIR_PASSWORD !== '') raw.password = env.ECLAIR_PASSWORD;
  return raw;
}

function sha256(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

const HEX32 = /^[0-9a-f]{64}$/i;

function readPassword(cfg: EclairConfig, configDir: string): string {
  if (cfg.password !== undefined) return cfg.password;
  const text = readConfigFile('password_file', cfg.password_file!, configDir).toString('utf8');
  const pw = text.split(/\r?\n/)[0] ?? '';
  if (!pw) throw new Error(`eclair: password_file ${resolveConfigPath(cfg.password_file!, configDir)} is empty`);
  return pw;
}

/** Short, printable excerpt of a peer's error text (peers are not trusted to send clean strings). */
function excerpt(text: string, max = 200): string {
  const clean = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

class EclairBackend implements LightningBackend {
  readonly kind = 'eclair';
  private readonly http: BoundedHttpClient;
  private readonly authHeader: string;
  private readonly base: URL;
  private readonly secrets: string[];

  constructor(cfg: EclairConfig, private readonly ctx: BackendContext) {
    const password = readPassword(cfg, ctx.configDir);
    this.authHeader = `Basic ${Buffer.from(`:${password}`, 'utf8').toString('base64')}`;
    this.secrets = [password, this.authHeader.slice('Basic '.length)];
    this.base = new URL(cfg.url.endsWith('/') ? cfg.url : `${cfg.url}/`);
    // The operator names the node; it is usually on loopback or a private network, and a node API has no business redirecting.
    this.http = new BoundedHttpClient({
      ca: cfg.ca_cert_path === undefined ? undefined : readConfigFile('ca_cert_path', cfg.ca_cert_path, ctx.configDir).toString('utf8'),
      allowHttp: true,
      allowPrivate: true,
      maxRedirects: 0,
      maxResponseBytes: MAX_RESPONSE_BYTES,
    });
  }

  describe(): string {
    return `eclair REST API at ${redactUrl(this.base)} (basic auth)`;
  }

  async createInvoice(req: InvoiceRequest, signal?: AbortSignal): Promise<CreatedInvoice> {
    if (!Number.isSafeInteger(req.amountMsat) || req.amountMsat <= 0) throw new BackendCallError(`eclair: amountMsat must be a positive integer`, false);
    const res = await this.call('createinvoice', { description: req.memo, amountMsat: String(req.amountMsat), expireIn: String(req.expirySecs) }, signal);
    const body = this.json(res, 'createinvoice');
    if (res.status !== 200) throw this.httpError(res, body, 'createinvoice');
    const o = body as Record<string, unknown> | null;
    const bolt11 = o && typeof o === 'object' ? o.serialized : undefined;
    if (typeof bolt11 !== 'string' || !bolt11) throw new BackendCallError('eclair createinvoice: reply has no `serialized` invoice');
    const inv = checkReturnedInvoice(bolt11, {
      backend: 'eclair createinvoice',
      amountMsat: req.amountMsat,
      // Eclair always names the hash: a missing one is a mismatch (null is compared, undefined would not be).
      paymentHash: o!.paymentHash ?? null,
      description: req.memo,
      expirySecs: req.expirySecs,
      wording: (p) => {
        if (p.kind === 'payment_hash') return '`paymentHash` does not match the invoice; refusing it';
        if (p.kind === 'amount') return `invoice is for ${p.invoiceMsat ?? 'any'} msat, asked for ${p.requestedMsat}; refusing it`;
        return undefined;
      },
    });
    return { bolt11, paymentHash: inv.paymentHash, expiresAt: inv.expiresAt };
  }

  async lookupInvoice(paymentHash: Buffer, signal?: AbortSignal): Promise<InvoiceState> {
    if (paymentHash.length !== 32) return { state: 'unknown' };
    const hashHex = paymentHash.toString('hex');
    const res = await this.call('getreceivedinfo', { paymentHash: hashHex }, signal);
    if (res.status === 404) return { state: 'unknown' };
    const text = res.body.toString('utf8');
    if (/^\s*"?not found"?\s*$/i.test(text)) return { state: 'unknown' };
    const body = this.json(res, 'getreceivedinfo');
    if (body && typeof body === 'object' && typeof (body as { error?: unknown }).error === 'string' && /not found/i.test((body as { error: string }).error)) {
      return { state: 'unknown' };
    }
    if (res.status !== 200) throw this.httpError(res, body, 'getreceivedinfo');
    const o = body as { paymentPreimage?: unknown; status?: { type?: unknown; amount?: unknown }; invoice?: { paymentHash?: unknown; amount?: unknown } } | null;
    if (!o || typeof o !== 'object') throw new BackendCallError('eclair getreceivedinfo: reply is not a JSON object');
    if (o.invoice && typeof o.invoice === 'object' && typeof o.invoice.paymentHash === 'string' && o.invoice.paymentHash.toLowerCase() !== hashHex) {
      throw new BackendCallError('eclair getreceivedinfo: reply is about a different payment hash');
    }
    const type = o.status && typeof o.status === 'object' ? o.status.type : undefined;
    switch (type) {
      case 'pending':
        return { state: 'open' };
      case 'expired':
        return { state: 'expired' };
      case 'received': {
        const pre = o.paymentPreimage;
        if (typeof pre !== 'string' || !HEX32.test(pre)) throw new BackendCallError('eclair getreceivedinfo: "received" without a valid preimage');
        const preimage = Buffer.from(pre, 'hex');
        if (!sha256(preimage).equals(paymentHash)) throw new BackendCallError('eclair getreceivedinfo: preimage does not hash to the payment hash');
        const got = o.status?.amount;
        const want = o.invoice?.amount;
        if (typeof got === 'number' && typeof want === 'number' && got < want) {
          throw new BackendCallError(`eclair getreceivedinfo: received ${got} msat for an invoice of ${want} msat`);
        }
        return { state: 'settled', preimage };
      }
      default:
        throw new BackendCallError(`eclair getreceivedinfo: unknown status ${this.scrub(JSON.stringify(typeof type === 'string' ? excerpt(type, 40) : typeof type))}`);
    }
  }

  async check(signal?: AbortSignal): Promise<string> {
    const res = await this.call('getinfo', {}, signal);
    const body = this.json(res, 'getinfo');
    if (res.status !== 200) throw this.httpError(res, body, 'getinfo');
    const o = (body ?? {}) as Record<string, unknown>;
    const str = (v: unknown) => (typeof v === 'string' ? excerpt(v, 64) : '?');
    const node = typeof o.nodeId === 'string' ? o.nodeId : '';
    return `eclair ${str(o.version)}, alias "${str(o.alias)}", node ${node ? `${node.slice(0, 12)}…` : '?'}, network ${str(o.network)}, block ${typeof o.blockHeight === 'number' ? o.blockHeight : '?'}`;
  }

  async close(): Promise<void> {
    this.http.close();
  }

  private async call(method: string, form: Record<string, string>, signal?: AbortSignal): Promise<FetchResponse> {
    try {
      return await this.http.request({
        url: new URL(method, this.base),
        method: 'POST',
        headers: { authorization: this.authHeader, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(form).toString(),
        signal,
        timeoutMs: this.ctx.timeoutMs,
      });
    } catch (e) {
      if (e instanceof HttpFetchError) throw new BackendCallError(`eclair ${method}: ${e.message}`, e.kind !== 'scheme' && e.kind !== 'blocked');
      throw e;
    }
  }

  /** Parses JSON; undefined for an empty body. Garbage is an error only where the caller needs JSON. */
  private json(res: FetchResponse, method: string): unknown {
    const text = res.body.toString('utf8');
    if (!text.trim()) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      if (res.status !== 200) return text;
      throw new BackendCallError(`eclair ${method}: reply is not JSON (HTTP ${res.status})`);
    }
  }

  private httpError(res: FetchResponse, body: unknown, method: string): BackendCallError {
    if (res.status === 401 || res.status === 403) {
      return new BackendCallError(`eclair ${method}: Eclair rejected the API password (HTTP ${res.status}); check lightning.password / ECLAIR_PASSWORD`, false);
    }
    const detail = body && typeof body === 'object' && typeof (body as { error?: unknown }).error === 'string'
      ? (body as { error: string }).error
      : typeof body === 'string' ? body : '';
    return new BackendCallError(`eclair ${method}: HTTP ${res.status}${detail ? `: ${this.scrub(excerpt(detail))}` : ''}`, res.status >= 500 || res.status === 429);
  }

  /** A proxy in front of Eclair might echo the request; its text never carries our credentials onward. */
  private scrub(text: string): string {
    let out = text;
    for (const s of this.secrets) if (s) out = out.split(s).join('[redacted]');
    return out;
  }
}

export function createEclairBackend(cfg: EclairConfig, ctx: BackendContext): LightningBackend {
  return new EclairBackend(cfg, ctx);
}
