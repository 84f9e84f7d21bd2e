// LNURL-pay / Lightning Address backend (LUD-01, -06, -12, -16, -17, -21).
//
// Decisions (see docs/backends):
// - The payRequest metadata is cached per URL (default 10 min) in one bounded LRU shared by every
//   address in the process; concurrent cold misses share one fetch. A failed callback drops the entry.
// - The callback may live on another host than the address (LUD-06 allows it and hosted services do
//   it). What protects us instead: https only (unless allow_http), no credentials in URLs, every
//   connection (redirects included) to public addresses only (unless allow_private), a redirect cap,
//   a response size cap and one deadline for the whole challenge.
// - Every invoice is checked as a LUD-06 wallet must: it decodes, its amount equals the requested
//   msat exactly and its description_hash is sha256(metadata). Anything else is refused.
// - Settlement: LNURL gives no view of the recipient's node. If the callback reply carries a LUD-21
//   `verify` URL we remember it (bounded map, payment hash → URL, in memory) and lookupInvoice asks it;
//   a "settled" answer counts only with a preimage that hashes to the payment hash. Invoices whose
//   verify URL we do not hold (other process, restart, no LUD-21) are `unknown`. `verify: false`
//   removes lookupInvoice altogether (auto-detect then refuses to start).
import { createHash } from 'node:crypto';
import { readConfigFile } from '../transports/config-file.js';
import { bech32 } from '@scure/base';
import { z } from 'zod';
import { BackendCallError, type BackendContext, type CreatedInvoice, type InvoiceRequest, type InvoiceState, type LightningBackend } from '../backend.js';
import { checkReturnedInvoice } from '../codecs/bolt11.js';
import { BoundedHttpClient, HttpFetchError, redactUrl, type FetchResponse, type HttpClientOptions, type LookupAllFn } from '../transports/safe-fetch.js';

const DEFAULT_TTL_SECS = 600;
const DEFAULT_MAX_BYTES = 512 * 1024;
const DEFAULT_CACHE_ENTRIES = 1000;
const VERIFY_ENTRIES = 10_000;
/** How long after an invoice expires we still answer auto-detect for it. */
const VERIFY_GRACE_SECS = 3600;

// --- addresses ------------------------------------------------------------------------------------

export interface LnurlTarget {
  /** The payRequest endpoint (LUD-06 step 2). */
  url: URL;
  /** `user@domain` for a Lightning Address (LUD-16). */
  identifier?: string;
}

const USER_RE = /^[a-z0-9\-_.+]+$/;

function checkEndpoint(url: URL, allowHttp: boolean, what: string): void {
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && allowHttp)) {
    throw new Error(`${what} must be an https:// URL${url.protocol === 'http:' ? ' (plain http needs allow_http: true)' : ''}`);
  }
  if (url.username || url.password) throw new Error(`${what} must not carry credentials`);
  if (url.hostname.endsWith('.onion')) throw new Error(`${what}: .onion services need a Tor proxy, which this backend does not support`);
}

/**
 * Parses what an operator may write for `address`: `user@domain[:port]` (LUD-16), a bech32
 * `lnurl1…` (LUD-01), `lnurlp://…` (LUD-17) or the https URL of the pay endpoint itself.
 * Throws an Error saying what is wrong.
 */
export function parseLnurlAddress(input: string, allowHttp = false): LnurlTarget {
  let s = input.trim().replace(/^lightning:/i, '');
  if (!s) throw new Error('empty LNURL / Lightning Address');
  if (!s.includes('://') && s.includes('@')) {
    s = s.toLowerCase();
    const at = s.lastIndexOf('@');
    const user = s.slice(0, at);
    const domain = s.slice(at + 1);
    if (!USER_RE.test(user)) throw new Error(`Lightning Address "${input.trim()}": the user part may only use a-z 0-9 - _ . +`);
    let url: URL;
    try {
      url = new URL(`https://${domain}/.well-known/lnurlp/${user}`);
    } catch {
      throw new Error(`Lightning Address "${input.trim()}": "${domain}" is not a valid domain`);
    }
    if (url.host !== domain || !domain.includes('.') && !/^localhost(:\d+)?$/.test(domain) && !/^\[[0-9a-f:.]+\](:\d+)?$/.test(domain)) {
      throw new Error(`Lightning Address "${input.trim()}": "${domain}" is not a valid domain`);
    }
    checkEndpoint(url, allowHttp, `Lightning Address "${input.trim()}"`);
    return { url, identifier: `${user}@${domain}` };
  }
  let urlText: string;
  if (/^lnurl1/i.test(s)) {
    if (s !== s.toLowerCase() && s !== s.toUpperCase()) throw new Error('bech32 LNURL must not mix upper and lower case');
    let decoded;
    try {
      decoded = bech32.decode(s.toLowerCase() as `${string}1${string}`, false);
    } catch (e) {
      throw new Error(`not a valid bech32 LNURL: ${(e as Error).message}`);
    }
    if (decoded.prefix !== 'lnurl') throw new Error(`bech32 LNURL has prefix "${decoded.prefix}", expected "lnurl"`);
    urlText = Buffer.from(bech32.fromWords(decoded.words)).toString('utf8');
  } else if (/^lnurlp:\/\//i.test(s)) {
    urlText = `https://${s.slice('lnurlp://'.length)}`;
  } else if (/^https?:\/\//i.test(s)) {
    urlText = s;
  } else {
    throw new Error(`"${input.trim()}" is neither a Lightning Address (user@domain) nor an LNURL (lnurl1…, lnurlp://, https://)`);
  }
  let url: URL;
  try {
    url = new URL(urlText);
  } catch {
    throw new Error('LNURL does not decode to a valid URL');
  }
  checkEndpoint(url, allowHttp, 'LNURL');
  const tag = url.searchParams.get('tag');
  if (tag !== null && tag !== 'payRequest') throw new Error(`LNURL is a "${tag}" link, not a pay link (payRequest)`);
  url.hash = '';
  return { url };
}

// --- config ---------------------------------------------------------------------------------------

const lnurlFields = z
  .object({
    type: z.literal('lnurl'),
    /** `user@domain` Lightning Address, `lnurl1…`, `lnurlp://…` or the https pay endpoint. */
    address: z.string().trim().min(1, 'a Lightning Address (user@domain) or LNURL is required'),
    /** PEM CA certificate to trust in addition to the system roots (private deployments, tests). */
    ca_cert_path: z.string().min(1).optional(),
    /** How long the payRequest metadata is reused; 0 fetches it for every challenge. */
    metadata_ttl_secs: z.number().int().min(0).max(86_400).default(DEFAULT_TTL_SECS),
    max_redirects: z.number().int().min(0).max(10).default(3),
    max_response_bytes: z.number().int().min(4096).max(8 * 1024 * 1024).default(DEFAULT_MAX_BYTES),
    /** Accept plain http:// endpoints and callbacks. For tests and closed networks only. */
    allow_http: z.boolean().default(false),
    /** Allow connections to loopback, private, link-local and other non-public addresses. */
    allow_private: z.boolean().default(false),
    /** Send the invoice memo as a LUD-12 comment when the service accepts comments. */
    send_comment: z.boolean().default(true),
    /** Use LUD-21 `verify` URLs for settlement lookups (auto-detect). */
    verify: z.boolean().default(true),
  })
  .strict();

export const lnurlConfigSchema = lnurlFields.superRefine((c, ctx) => {
  try {
    parseLnurlAddress(c.address, c.allow_http);
  } catch (e) {
    ctx.addIssue({ code: 'custom', path: ['address'], message: (e as Error).message });
  }
});

export type LnurlConfig = z.output<typeof lnurlConfigSchema>;

const lnurlOptionsSchema = lnurlFields.omit({ type: true, address: true });
/** Everything in the config section except `type` and `address`, as written in YAML (snake_case). */
export type LnurlOptionsInput = z.input<typeof lnurlOptionsSchema>;
export type LnurlOptions = z.output<typeof lnurlOptionsSchema>;

/** The raw `lightning:` section from ngx_l402's environment (LNURL_ADDRESS). */
export function lnurlFromLegacyEnv(env: Record<string, string | undefined>): Record<string, unknown> {
  const raw: Record<string, unknown> = { type: 'lnurl' };
  const address = env.LNURL_ADDRESS?.trim();
  if (address) raw.address = address;
  return raw;
}

// --- metadata cache -------------------------------------------------------------------------------

export interface PayParams {
  callback: string;
  minSendable: number;
  maxSendable: number;
  /** The raw metadata string; the invoice's description_hash commits to exactly these bytes. */
  metadata: string;
  metadataHash: string;
  commentAllowed: number;
}

/** Bounded LRU with per-entry expiry and single-flight fetches, shared across addresses. */
export class LnurlMetadataCache {
  private readonly entries = new Map<string, { params: PayParams; expiresAtMs: number }>();
  private readonly inflight = new Map<string, Promise<PayParams>>();

  constructor(readonly maxEntries = DEFAULT_CACHE_ENTRIES) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string, nowMs = Date.now()): PayParams | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    this.entries.delete(key);
    if (e.expiresAtMs <= nowMs) return undefined;
    this.entries.set(key, e);
    return e.params;
  }

  set(key: string, params: PayParams, ttlMs: number, nowMs = Date.now()): void {
    this.entries.delete(key);
    if (ttlMs <= 0) return;
    this.entries.set(key, { params, expiresAtMs: nowMs + ttlMs });
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  /** The cached entry, or one fetch shared by every concurrent caller for the same key. */
  getOrFetch(key: string, ttlMs: number, fetch: () => Promise<PayParams>): { params: PayParams } | Promise<PayParams> {
    const hit = this.get(key);
    if (hit) return { params: hit };
    let p = this.inflight.get(key);
    if (!p) {
      p = fetch().then(
        (params) => { this.set(key, params, ttlMs); return params; },
      ).finally(() => this.inflight.delete(key));
      // Every caller may have given up already; a failure nobody awaits must not become an unhandled rejection.
      p.catch(() => {});
      this.inflight.set(key, p);
    }
    return p;
  }
}

/** Shared by every LNURL backend in the process unless a test passes its own. */
export const defaultLnurlMetadataCache = new LnurlMetadataCache(DEFAULT_CACHE_ENTRIES);

// --- helpers --------------------------------------------------------------------------------------

function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function excerpt(text: unknown, max = 200): string {
  const clean = String(text).replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/** Resolves with `p`, or rejects as soon as `signal` aborts (the shared fetch keeps running for others). */
function raceSignal<T>(p: Promise<T>, signal: AbortSignal, onAbort: () => Error): Promise<T> {
  if (signal.aborted) return Promise.reject(onAbort());
  return new Promise<T>((resolveP, rejectP) => {
    const abort = (): void => rejectP(onAbort());
    signal.addEventListener('abort', abort, { once: true });
    p.then(
      (v) => { signal.removeEventListener('abort', abort); resolveP(v); },
      (e) => { signal.removeEventListener('abort', abort); rejectP(e); },
    );
  });
}

/** Validates a LUD-06 first response; throws an Error naming the bad field. */
export function parsePayParams(body: unknown, allowHttp: boolean): PayParams {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new Error('reply is not a JSON object');
  const o = body as Record<string, unknown>;
  if (o.status === 'ERROR') throw new Error(`service error: ${excerpt(o.reason ?? 'no reason given')}`);
  if (o.tag !== 'payRequest') throw new Error(`tag is ${JSON.stringify(excerpt(o.tag ?? null, 40))}, expected "payRequest"`);
  if (typeof o.callback !== 'string' || !o.callback) throw new Error('no callback URL');
  let cb: URL;
  try {
    cb = new URL(o.callback);
  } catch {
    throw new Error('callback is not a valid URL');
  }
  checkEndpoint(cb, allowHttp, 'callback');
  const min = o.minSendable;
  const max = o.maxSendable;
  if (typeof min !== 'number' || !Number.isSafeInteger(min) || min < 1) throw new Error('minSendable must be a positive integer (msat)');
  if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < min) throw new Error('maxSendable must be an integer >= minSendable (msat)');
  if (typeof o.metadata !== 'string') throw new Error('metadata must be a string (LUD-06)');
  let meta: unknown;
  try {
    meta = JSON.parse(o.metadata);
  } catch {
    throw new Error('metadata is not valid JSON');
  }
  if (!Array.isArray(meta) || !meta.every((e) => Array.isArray(e) && typeof e[0] === 'string')) {
    throw new Error('metadata must be a JSON array of [type, value] arrays');
  }
  if (!meta.some((e) => (e as unknown[])[0] === 'text/plain')) throw new Error('metadata has no text/plain entry (LUD-06)');
  const ca = o.commentAllowed;
  const commentAllowed = typeof ca === 'number' && Number.isSafeInteger(ca) && ca > 0 ? ca : 0;
  return { callback: cb.href.replace(/#.*$/, ''), minSendable: min, maxSendable: max, metadata: o.metadata, metadataHash: sha256Hex(o.metadata), commentAllowed };
}

/** LUD-06 `<callback><?|&>amount=…`: appended so the service's own query string stays byte for byte. */
export function buildCallbackUrl(callback: string, amountMsat: number, comment?: string): string {
  let url = `${callback}${callback.includes('?') ? '&' : '?'}amount=${amountMsat}`;
  if (comment) url += `&comment=${encodeURIComponent(comment)}`;
  return url;
}

// --- verify map (LUD-21) --------------------------------------------------------------------------

interface VerifyEntry { url: string; bolt11: string; expiresAt: number }

class VerifyMap {
  private readonly map = new Map<string, VerifyEntry>();
  constructor(private readonly max: number) {}
  set(hashHex: string, e: VerifyEntry): void {
    this.map.delete(hashHex);
    this.map.set(hashHex, e);
    const now = Date.now() / 1000;
    // Entries arrive in roughly expiry order, so the oldest are the ones to drop.
    for (const [k, v] of this.map) {
      if (this.map.size <= this.max && v.expiresAt + VERIFY_GRACE_SECS > now) break;
      this.map.delete(k);
    }
  }
  get(hashHex: string): VerifyEntry | undefined {
    const e = this.map.get(hashHex);
    if (e && e.expiresAt + VERIFY_GRACE_SECS <= Date.now() / 1000) {
      this.map.delete(hashHex);
      return undefined;
    }
    return e;
  }
}

// --- the backend ----------------------------------------------------------------------------------

/** Test and library hooks; not part of the config file. */
export interface LnurlDeps {
  cache?: LnurlMetadataCache;
  lookup?: LookupAllFn;
  addressAllowed?: HttpClientOptions['addressAllowed'];
}

class LnurlBackend implements LightningBackend {
  readonly kind = 'lnurl';
  readonly lookupInvoice?: (paymentHash: Buffer, signal?: AbortSignal) => Promise<InvoiceState>;
  private readonly http: BoundedHttpClient;
  private readonly cache: LnurlMetadataCache;
  private readonly cacheKey: string;
  private readonly verifyMap = new VerifyMap(VERIFY_ENTRIES);

  constructor(
    private readonly target: LnurlTarget,
    private readonly opts: LnurlOptions,
    private readonly ctx: BackendContext,
    deps: LnurlDeps,
  ) {
    const ca = opts.ca_cert_path === undefined ? undefined : readConfigFile('ca_cert_path', opts.ca_cert_path, ctx.configDir).toString('utf8');
    this.http = new BoundedHttpClient({
      ca,
      allowHttp: opts.allow_http,
      allowPrivate: opts.allow_private,
      maxRedirects: opts.max_redirects,
      maxResponseBytes: opts.max_response_bytes,
      lookup: deps.lookup,
      addressAllowed: deps.addressAllowed,
    });
    this.cache = deps.cache ?? defaultLnurlMetadataCache;
    // Metadata validated under looser rules must not be served to a stricter backend.
    this.cacheKey = `${opts.allow_http ? 'h' : '-'}${opts.allow_private ? 'p' : '-'}|${opts.ca_cert_path ?? ''}|${target.url.href}`;
    if (opts.verify) this.lookupInvoice = (h, s) => this.verifyLookup(h, s);
  }

  describe(): string {
    const where = redactUrl(this.target.url);
    return this.target.identifier ? `LNURL-pay to ${this.target.identifier} (${where})` : `LNURL-pay at ${where}`;
  }

  async createInvoice(req: InvoiceRequest, signal?: AbortSignal): Promise<CreatedInvoice> {
    const msat = req.amountMsat;
    if (!Number.isSafeInteger(msat) || msat <= 0) throw new BackendCallError('lnurl: amountMsat must be a positive integer', false);
    // One budget for the whole challenge: metadata (when not cached) plus callback.
    const deadline = Date.now() + this.ctx.timeoutMs;
    const cached = this.cache.getOrFetch(this.cacheKey, this.opts.metadata_ttl_secs * 1000, () => this.fetchParams());
    let params: PayParams;
    if ('params' in cached) {
      params = cached.params;
    } else {
      const timeout = AbortSignal.timeout(this.ctx.timeoutMs);
      const bound = signal ? AbortSignal.any([signal, timeout]) : timeout;
      params = await raceSignal(cached, bound, () => (timeout.aborted ? this.timeoutError('metadata') : new BackendCallError(`lnurl: ${this.who()} metadata: aborted`)));
    }

    if (msat < params.minSendable || msat > params.maxSendable) {
      throw new BackendCallError(`lnurl: ${msat} msat is outside what ${this.who()} accepts (${params.minSendable}–${params.maxSendable} msat)`, false);
    }
    const comment = this.opts.send_comment && params.commentAllowed > 0 && req.memo
      ? Array.from(req.memo).slice(0, params.commentAllowed).join('')
      : undefined;
    const cbUrl = new URL(buildCallbackUrl(params.callback, msat, comment));

    let reply: unknown;
    try {
      const res = await this.get(cbUrl, signal, Math.max(1, deadline - Date.now()), 'callback');
      reply = this.parseJson(res, 'callback');
      if (reply && typeof reply === 'object' && (reply as { status?: unknown }).status === 'ERROR') {
        throw new BackendCallError(`lnurl: ${this.who()} refused the invoice request: ${excerpt((reply as { reason?: unknown }).reason ?? 'no reason given')}`);
      }
    } catch (e) {
      // The callback may have moved or expired with the metadata: fetch it afresh next time
      // (unless our own caller gave up, which says nothing about the service).
      if (!signal?.aborted) this.cache.delete(this.cacheKey);
      throw e;
    }

    const o = reply as { pr?: unknown; verify?: unknown } | null;
    if (!o || typeof o !== 'object' || typeof o.pr !== 'string' || !o.pr) throw new BackendCallError(`lnurl: ${this.who()} callback reply has no invoice (pr)`);
    const bolt11 = o.pr.trim();
    // LUD-06: the amount is exactly the one asked for and description_hash is sha256(metadata).
    const inv = checkReturnedInvoice(bolt11, {
      backend: `lnurl: ${this.who()}`,
      amountMsat: msat,
      descriptionHash: { hex: params.metadataHash, of: 'metadata' },
      wording: (p) => (p.kind === 'amount' ? `got an invoice for ${p.invoiceMsat ?? 'an unspecified amount of'} msat, requested ${msat} msat; refusing it` : undefined),
    });
    if (this.lookupInvoice && typeof o.verify === 'string') this.rememberVerify(inv.paymentHash.toString('hex'), o.verify, bolt11, inv.expiresAt);
    return { bolt11, paymentHash: inv.paymentHash, expiresAt: inv.expiresAt };
  }

  async check(signal?: AbortSignal): Promise<string> {
    const timeout = AbortSignal.timeout(this.ctx.timeoutMs);
    const bound = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const params = await raceSignal(this.fetchParams(), bound, () => (timeout.aborted ? this.timeoutError('metadata') : new BackendCallError(`lnurl: ${this.who()} metadata: aborted`)));
    this.cache.set(this.cacheKey, params, this.opts.metadata_ttl_secs * 1000);
    const comments = params.commentAllowed > 0 ? `, comments up to ${params.commentAllowed} chars` : '';
    return `LNURL-pay ${this.who()}: accepts ${params.minSendable}–${params.maxSendable} msat${comments}, callback ${redactUrl(new URL(params.callback))}`;
  }

  async close(): Promise<void> {
    this.http.close();
  }

  private timeoutError(what: string): BackendCallError {
    return new BackendCallError(`lnurl: ${this.who()} ${what}: no answer within the ${this.ctx.timeoutMs} ms limit`);
  }

  private who(): string {
    return this.target.identifier ?? this.target.url.host;
  }

  /** One metadata fetch, bounded on its own: it may serve callers other than the one that started it. */
  private async fetchParams(): Promise<PayParams> {
    const res = await this.get(this.target.url, undefined, this.ctx.timeoutMs, 'metadata');
    const body = this.parseJson(res, 'metadata');
    try {
      const params = parsePayParams(body, this.opts.allow_http);
      this.ctx.log.debug({ event: 'lnurl_metadata', target: this.who(), min: params.minSendable, max: params.maxSendable }, 'LNURL-pay metadata fetched');
      return params;
    } catch (e) {
      throw new BackendCallError(`lnurl: ${this.who()} payRequest: ${(e as Error).message}`);
    }
  }

  private async get(url: URL, signal: AbortSignal | undefined, timeoutMs: number, what: string): Promise<FetchResponse> {
    try {
      return await this.http.request({ url, method: 'GET', signal, timeoutMs });
    } catch (e) {
      if (e instanceof HttpFetchError) {
        if (e.kind === 'timeout') throw this.timeoutError(what);
        const retryable = e.kind !== 'blocked' && e.kind !== 'scheme';
        throw new BackendCallError(`lnurl: ${this.who()} ${what}: ${e.message}`, retryable);
      }
      throw e;
    }
  }

  /** LUD-01: status codes carry no meaning, the JSON body does. Non-JSON is an error naming the status. */
  private parseJson(res: FetchResponse, what: string): unknown {
    try {
      return JSON.parse(res.body.toString('utf8'));
    } catch {
      throw new BackendCallError(`lnurl: ${this.who()} ${what} reply is not JSON (HTTP ${res.status})`);
    }
  }

  private rememberVerify(hashHex: string, verify: string, bolt11: string, expiresAt: number): void {
    let url: URL;
    try {
      url = new URL(verify);
      checkEndpoint(url, this.opts.allow_http, 'verify');
    } catch (e) {
      this.ctx.log.debug({ event: 'lnurl_verify_ignored', target: this.who(), err: (e as Error).message }, 'ignoring an unusable LUD-21 verify URL');
      return;
    }
    this.verifyMap.set(hashHex, { url: url.href, bolt11, expiresAt });
  }

  private async verifyLookup(paymentHash: Buffer, signal?: AbortSignal): Promise<InvoiceState> {
    if (paymentHash.length !== 32) return { state: 'unknown' };
    const hashHex = paymentHash.toString('hex');
    const entry = this.verifyMap.get(hashHex);
    if (!entry) return { state: 'unknown' };
    const res = await this.get(new URL(entry.url), signal, this.ctx.timeoutMs, 'verify');
    const body = this.parseJson(res, 'verify');
    if (!body || typeof body !== 'object') throw new BackendCallError(`lnurl: ${this.who()} verify reply is not a JSON object`);
    const o = body as { status?: unknown; reason?: unknown; settled?: unknown; preimage?: unknown; pr?: unknown };
    if (o.status === 'ERROR') throw new BackendCallError(`lnurl: ${this.who()} verify: ${excerpt(o.reason ?? 'no reason given')}`);
    if (typeof o.pr === 'string' && o.pr.trim().toLowerCase() !== entry.bolt11.toLowerCase()) {
      throw new BackendCallError(`lnurl: ${this.who()} verify answered about a different invoice`);
    }
    if (o.settled === true) {
      if (typeof o.preimage !== 'string' || !/^[0-9a-f]{64}$/i.test(o.preimage)) {
        throw new BackendCallError(`lnurl: ${this.who()} verify says settled but gives no valid preimage`);
      }
      const preimage = Buffer.from(o.preimage, 'hex');
      if (sha256Hex(preimage) !== hashHex) throw new BackendCallError(`lnurl: ${this.who()} verify gave a preimage that does not hash to the payment hash`);
      return { state: 'settled', preimage };
    }
    if (o.settled !== false) throw new BackendCallError(`lnurl: ${this.who()} verify reply has no boolean "settled"`);
    return { state: Date.now() / 1000 >= entry.expiresAt ? 'expired' : 'open' };
  }
}

/**
 * A backend for one LNURL / Lightning Address, e.g. a route's `lnurl_addr` override. Every backend
 * made here shares `deps.cache` (default: one process-wide cache of 1000 entries), so many
 * addresses cost one bounded cache. Each backend owns its keep-alive sockets: close() it when the
 * caller drops it. Throws an Error for an unusable address or options.
 */
export function createLnurlBackendForAddress(
  address: string,
  ctx: BackendContext,
  opts: LnurlOptionsInput & { type?: unknown; address?: unknown } = {},
  deps: LnurlDeps = {},
): LightningBackend {
  const { type: _type, address: _address, ...rest } = opts;
  const parsed = lnurlOptionsSchema.safeParse(rest);
  if (!parsed.success) throw new Error(`lnurl options: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  const target = parseLnurlAddress(address, parsed.data.allow_http);
  return new LnurlBackend(target, parsed.data, ctx, deps);
}

export function createLnurlBackend(cfg: LnurlConfig, ctx: BackendContext, deps: LnurlDeps = {}): LightningBackend {
  const { type: _type, address, ...opts } = cfg;
  return new LnurlBackend(parseLnurlAddress(address, cfg.allow_http), opts, ctx, deps);
}
