// LND backend: invoices from an lnd node over its gRPC API (default) or its REST API, authenticated by
// the node's own TLS certificate and a macaroon. Every answer is checked against what was asked before
// the gate signs a macaroon over it: a wrong or swapped invoice would let a client pay for nothing.
import { createHash, X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { z } from 'zod';
import { BackendCallError, type BackendContext, type CreatedInvoice, type InvoiceRequest, type InvoiceState, type LightningBackend } from '../backend.js';
import { readConfigFile, resolveConfigPath } from '../transports/config-file.js';
import {
  GrpcCode, LndRestTransport, LndRpcError, isInvoiceNotFound,
  type LndAddedInvoice, type LndInfo, type LndInvoice, type LndPaymentResult, type LndTransport, type LndTransportOptions,
} from './lnd-rest.js';
import { formatHostPort, openSocksTunnel, parseHostPort, type SocksTunnel } from '../transports/socks-tunnel.js';
import { asBuffer, asInt, asString } from '../codecs/proto-fields.js';
import { createdInvoiceOf, invoiceStateOf, lndInvoiceOf } from './invoice-answers.js';
import { decodeBolt11 } from '../codecs/bolt11.js';

export const LND_DEFAULTS = {
  address: 'localhost:10009',
  tls_cert_path: 'tls.cert',
  macaroon_path: 'admin.macaroon',
  transport: 'grpc',
  rest_address: 'localhost:8080',
  pay_refunds: false,
  refund_fee_limit_msat: 1000,
} as const;

const hostPortSchema = z.string().refine((s) => {
  try {
    parseHostPort(s, 'address');
    return true;
  } catch {
    return false;
  }
}, 'must be host:port, e.g. localhost:10009 or [::1]:10009');

const socksSchema = z
  .string()
  .trim()
  .refine((s) => !s.includes('@'), 'SOCKS5 username/password is not supported; give host:port')
  .transform((s) => s.replace(/^socks5h?:\/\//i, ''))
  .pipe(hostPortSchema);

export const lndConfigSchema = z
  .object({
    type: z.literal('lnd'),
    /** lnd's gRPC listener (rpclisten). */
    address: hostPortSchema.default(LND_DEFAULTS.address),
    tls_cert_path: z.string().min(1).default(LND_DEFAULTS.tls_cert_path),
    macaroon_path: z.string().min(1).default(LND_DEFAULTS.macaroon_path),
    transport: z.enum(['grpc', 'rest']).default(LND_DEFAULTS.transport),
    /** lnd's REST listener (restlisten); used only with transport: rest. */
    rest_address: hostPortSchema.default(LND_DEFAULTS.rest_address),
    /** host:port of a SOCKS5 proxy (Tor: 127.0.0.1:9050) that every connection to the node goes through. */
    socks5_proxy: socksSchema.optional(),
    /**
     * Lets l402d pay out of this node: MPP sessions' refunds on close (SendPaymentSync; the macaroon then needs
     * offchain:write). Off by default: without it l402d never spends from the node.
     */
    pay_refunds: z.boolean().default(LND_DEFAULTS.pay_refunds),
    /** The most a refund may spend on routing fees, msat (on top of the refund, paid by the node). */
    refund_fee_limit_msat: z.number().int().min(0).max(1_000_000_000).default(LND_DEFAULTS.refund_fee_limit_msat),
  })
  .strict();

export type LndConfig = z.output<typeof lndConfigSchema>;

/** ngx_l402's variables for LN_CLIENT_TYPE=LND, as a raw (unvalidated) `lightning:` section. */
export function lndFromLegacyEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const raw: Record<string, unknown> = { type: 'lnd' };
  const set = (key: string, value: string | undefined): void => {
    if (value !== undefined && value.trim() !== '') raw[key] = value.trim();
  };
  set('address', env.LND_ADDRESS);
  set('tls_cert_path', env.CERT_FILE_PATH);
  set('macaroon_path', env.MACAROON_FILE_PATH);
  set('socks5_proxy', env.SOCKS5_PROXY);
  return raw;
}

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

function loadCert(p: string, configDir: string): { pem: Buffer; notAfter: Date } {
  const path = resolveConfigPath(p, configDir);
  const pem = readConfigFile('tls_cert_path', p, configDir);
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new Error(`lightning.tls_cert_path: ${path} is not a PEM certificate (expected lnd's tls.cert)`);
  }
  try {
    return { pem, notAfter: new Date(new X509Certificate(pem).validTo) };
  } catch {
    throw new Error(`lightning.tls_cert_path: ${path} does not contain a parsable X.509 certificate`);
  }
}

/** lnd writes macaroons as binary; some setups store them hex-encoded. Either way we send hex. */
function loadMacaroonHex(p: string, configDir: string): string {
  const path = resolveConfigPath(p, configDir);
  const raw = readConfigFile('macaroon_path', p, configDir);
  const text = raw.toString('latin1').trim();
  const bytes = /^(?:[0-9a-fA-F]{2})+$/.test(text) ? Buffer.from(text, 'hex') : raw;
  if (bytes.length === 0) throw new Error(`lightning.macaroon_path: ${path} is empty`);
  if (bytes.length > 64 * 1024) throw new Error(`lightning.macaroon_path: ${path} is too large to be a macaroon`);
  return bytes.toString('hex');
}

/** Replaces every occurrence of a secret (case-insensitively) so node messages can be quoted safely. */
function scrubberFor(secretHex: string): (text: string) => string {
  const needle = secretHex.toLowerCase();
  return (text) => {
    let out = text;
    for (let i = out.toLowerCase().indexOf(needle); i >= 0; i = out.toLowerCase().indexOf(needle)) {
      out = out.slice(0, i) + '[redacted]' + out.slice(i + needle.length);
    }
    return out;
  };
}

// ---------------------------------------------------------------------------------------------
// gRPC transport
// ---------------------------------------------------------------------------------------------

/** lnd's lightning.proto from the installed @lightningpolar/lnd-api package (never vendored). */
export function lndProtoDir(): string {
  const pkgJson = createRequire(import.meta.url).resolve('@lightningpolar/lnd-api/package.json');
  return join(dirname(pkgJson), 'protos');
}

type UnaryCallback = (err: grpc.ServiceError | null, res?: Record<string, unknown>) => void;
type UnaryMethod = (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: UnaryCallback) => grpc.ClientUnaryCall;
type LightningClient = grpc.Client & Record<'AddInvoice' | 'LookupInvoice' | 'GetInfo' | 'SendPaymentSync', UnaryMethod>;
type LightningCtor = new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => LightningClient;

let lightningCtor: LightningCtor | undefined;
function loadLightningService(): LightningCtor {
  if (!lightningCtor) {
    const dir = lndProtoDir();
    const def = protoLoader.loadSync(join(dir, 'lightning.proto'), {
      keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [dir],
    });
    const lnrpc = (grpc.loadPackageDefinition(def) as { lnrpc?: { Lightning?: LightningCtor } }).lnrpc;
    if (!lnrpc?.Lightning) throw new Error(`lnd protos at ${dir} define no lnrpc.Lightning service`);
    lightningCtor = lnrpc.Lightning;
  }
  return lightningCtor;
}


type SecureConnectorFactory = (...args: unknown[]) => { connectionOptions?: { servername?: unknown } } | undefined;

/**
 * grpc-js passes the dialled host to tls.connect as the TLS ServerName (SNI) even when it is an IP address
 * (`address: 192.0.2.7:10009`), which RFC 6066 forbids and Node answers with a non-JSON DEP0123 warning on
 * stderr, in the middle of the JSON log. An IP address gets no SNI here, as in any TLS client. The certificate
 * is still checked against that address (tls.connect checks `host` when there is no ServerName) or against
 * grpc.ssl_target_name_override (grpc-js's own checkServerIdentity). Names are untouched.
 */
export function withoutIpServerName(creds: grpc.ChannelCredentials): grpc.ChannelCredentials {
  const c = creds as unknown as { _createSecureConnector?: SecureConnectorFactory };
  const make = c._createSecureConnector;
  if (typeof make !== 'function') return creds;
  c._createSecureConnector = function (this: unknown, ...args: unknown[]) {
    const connector = make.apply(this, args);
    const o = connector?.connectionOptions;
    if (o && typeof o.servername === 'string' && isIP(o.servername) !== 0) delete o.servername;
    return connector;
  };
  return creds;
}

class LndGrpcTransport implements LndTransport {
  readonly name = 'gRPC';
  readonly address: string;
  private readonly opts: LndTransportOptions;
  private readonly ready: Promise<LightningClient>;
  private tunnel: SocksTunnel | undefined;
  private client: LightningClient | undefined;
  private closed = false;

  constructor(opts: LndTransportOptions) {
    this.opts = opts;
    this.address = formatHostPort(opts.address);
    const Lightning = loadLightningService();
    const macaroonHex = opts.macaroonHex;
    // Call credentials put the macaroon on every call, including ones grpc-js retries internally.
    const creds = withoutIpServerName(grpc.credentials.combineChannelCredentials(
      grpc.credentials.createSsl(opts.cert),
      grpc.credentials.createFromMetadataGenerator((_params, cb) => {
        const md = new grpc.Metadata();
        md.set('macaroon', macaroonHex);
        cb(null, md);
      }),
    ));
    const channelOptions: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      // lnd accepts client pings no more often than every 5 s (ClientPingMinWait); a minute is polite
      // and still notices a dead connection (e.g. a dropped Tor circuit) while calls are in flight.
      'grpc.keepalive_time_ms': 60_000,
      'grpc.keepalive_timeout_ms': 20_000,
    };
    const make = (target: string, extra: grpc.ChannelOptions = {}): LightningClient => {
      this.client = new Lightning(target, creds, { ...channelOptions, ...extra });
      return this.client;
    };
    if (opts.socksProxy) {
      this.ready = openSocksTunnel({ proxy: opts.socksProxy, target: opts.address, connectTimeoutMs: opts.connectTimeoutMs }).then((t) => {
        this.tunnel = t;
        if (this.closed) {
          void t.close();
          throw new Error('backend is closed');
        }
        // The channel dials the loopback tunnel; TLS (SNI, certificate name) and :authority stay the node's.
        return make(`127.0.0.1:${t.port}`, {
          'grpc.ssl_target_name_override': opts.address.host,
          'grpc.default_authority': this.address,
        });
      });
      this.ready.catch(() => {});
    } else {
      this.ready = Promise.resolve(make(this.address));
    }
  }

  async addInvoice(req: { valueMsat: number; memo: string; expiry: number }, signal: AbortSignal | undefined, timeoutMs: number): Promise<LndAddedInvoice> {
    const res = await this.unary('AddInvoice', { value_msat: String(req.valueMsat), memo: req.memo, expiry: String(req.expiry) }, signal, timeoutMs);
    return { rHash: asBuffer(res.r_hash), paymentRequest: asString(res.payment_request) };
  }

  async lookupInvoice(rHash: Buffer, signal: AbortSignal | undefined, timeoutMs: number): Promise<LndInvoice | undefined> {
    let res: Record<string, unknown>;
    try {
      res = await this.unary('LookupInvoice', { r_hash: rHash }, signal, timeoutMs);
    } catch (err) {
      if (err instanceof LndRpcError && isInvoiceNotFound(err)) return undefined;
      throw err;
    }
    return lndInvoiceOf(res);
  }

  async getInfo(signal: AbortSignal | undefined, timeoutMs: number): Promise<LndInfo> {
    const res = await this.unary('GetInfo', {}, signal, timeoutMs);
    const chains = Array.isArray(res.chains) ? (res.chains as Array<{ network?: unknown }>) : [];
    return {
      alias: asString(res.alias),
      identityPubkey: asString(res.identity_pubkey),
      version: asString(res.version),
      networks: chains.map((c) => asString(c?.network)).filter(Boolean),
      syncedToChain: res.synced_to_chain === true,
      blockHeight: asInt(res.block_height),
    };
  }

  async sendPaymentSync(req: { paymentRequest: string; amtMsat?: number; feeLimitMsat: number }, signal: AbortSignal | undefined, timeoutMs: number): Promise<LndPaymentResult> {
    const res = await this.unary('SendPaymentSync', { payment_request: req.paymentRequest, ...(req.amtMsat !== undefined ? { amt_msat: String(req.amtMsat) } : {}), fee_limit: { fixed_msat: String(req.feeLimitMsat) } }, signal, timeoutMs);
    return { paymentError: asString(res.payment_error), preimage: asBuffer(res.payment_preimage) };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.client?.close();
    await this.tunnel?.close();
  }

  private async unary(method: 'AddInvoice' | 'LookupInvoice' | 'GetInfo' | 'SendPaymentSync', req: object, signal: AbortSignal | undefined, timeoutMs: number): Promise<Record<string, unknown>> {
    if (this.closed) throw new LndRpcError(method, GrpcCode.UNAVAILABLE, 'backend is closed', true);
    if (signal?.aborted) throw new LndRpcError(method, GrpcCode.CANCELLED, 'aborted by the caller', true);
    const deadline = Date.now() + timeoutMs;
    let client: LightningClient;
    try {
      client = await this.ready;
    } catch (err) {
      throw new LndRpcError(method, GrpcCode.UNAVAILABLE, `cannot open the local SOCKS5 tunnel: ${(err as Error).message}`, true);
    }
    return new Promise((resolvePromise, reject) => {
      const onAbort = (): void => call.cancel();
      const call = client[method](req, new grpc.Metadata(), { deadline }, (err, res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(this.rpcError(method, err, timeoutMs));
        else if (!res || typeof res !== 'object') reject(new LndRpcError(method, GrpcCode.INTERNAL, 'empty reply'));
        else resolvePromise(res);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private rpcError(method: string, err: grpc.ServiceError, timeoutMs: number): LndRpcError {
    // grpc-js appends an empty "Resolution note:" to connection failures; it only adds noise.
    let detail = this.opts.scrub(err.details || err.message || 'no details').replace(/\.?\s*Resolution note:\s*$/, '').slice(0, 300);
    switch (err.code) {
      case grpc.status.DEADLINE_EXCEEDED:
        return new LndRpcError(method, err.code, `no answer within ${timeoutMs} ms`, true);
      case grpc.status.CANCELLED:
        return new LndRpcError(method, err.code, 'aborted by the caller', true);
      case grpc.status.UNAVAILABLE:
        if (this.tunnel?.lastError) detail += ` (${this.tunnel.lastError})`;
        return new LndRpcError(method, err.code, detail, true);
      default:
        return new LndRpcError(method, err.code, detail);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The backend: transport-independent checks and error wording
// ---------------------------------------------------------------------------------------------

/** The longest a refund payment (SendPaymentSync) is waited for when the caller gives no shorter bound. */
const PAY_TIMEOUT_MS = 60_000;

class LndBackend implements LightningBackend {
  readonly kind = 'lnd';
  /** LightningBackend.payInvoice, only with `pay_refunds: true` (absent: l402d never pays out of the node). */
  readonly payInvoice?: (req: { bolt11: string; amountMsat: number }, signal?: AbortSignal) => Promise<{ preimage: Buffer }>;

  constructor(
    private readonly transport: LndTransport,
    private readonly ctx: BackendContext,
    private readonly paths: { cert: string; macaroon: string; socks?: string },
    pay?: { feeLimitMsat: number },
  ) {
    if (pay) this.payInvoice = (req, signal) => this.pay(req, pay.feeLimitMsat, signal);
  }

  /**
   * Pays `bolt11` with exactly `amountMsat` (an invoice without an amount gets it; one with an amount must
   * be for exactly it), fees capped. Resolves only when lnd reports the payment complete with a preimage that
   * hashes to the invoice's payment hash; anything else rejects (never retried here).
   */
  private async pay(req: { bolt11: string; amountMsat: number }, feeLimitMsat: number, signal?: AbortSignal): Promise<{ preimage: Buffer }> {
    if (!Number.isSafeInteger(req.amountMsat) || req.amountMsat <= 0) throw new BackendCallError(`lnd: amountMsat must be a positive integer, got ${req.amountMsat}`, false);
    let inv;
    try {
      inv = decodeBolt11(req.bolt11);
    } catch (e) {
      throw new BackendCallError(`lnd: ${(e as Error).message}`, false);
    }
    if (inv.amountMsat !== undefined && inv.amountMsat !== 0 && inv.amountMsat !== req.amountMsat) throw new BackendCallError(`lnd: the invoice is for ${inv.amountMsat} msat, not ${req.amountMsat}`, false);
    const amountless = inv.amountMsat === undefined || inv.amountMsat === 0;
    // A payment takes as long as the network needs: bounded by the caller's signal, else by PAY_TIMEOUT_MS.
    const r = await this.call(() => this.transport.sendPaymentSync({ paymentRequest: req.bolt11, amtMsat: amountless ? req.amountMsat : undefined, feeLimitMsat }, signal, Math.max(this.ctx.timeoutMs, PAY_TIMEOUT_MS)));
    if (r.paymentError) throw new BackendCallError(`lnd ${this.transport.name} SendPaymentSync: payment failed: ${r.paymentError.slice(0, 200)}`, false);
    if (r.preimage.length !== 32 || !createHash('sha256').update(r.preimage).digest().equals(inv.paymentHash)) {
      throw new BackendCallError(`lnd ${this.transport.name} SendPaymentSync answered success without the invoice's preimage`, false);
    }
    return { preimage: r.preimage };
  }

  async createInvoice(req: InvoiceRequest, signal?: AbortSignal): Promise<CreatedInvoice> {
    if (!Number.isSafeInteger(req.amountMsat) || req.amountMsat <= 0) {
      throw new BackendCallError(`lnd: amountMsat must be a positive integer, got ${req.amountMsat}`, false);
    }
    if (!Number.isSafeInteger(req.expirySecs) || req.expirySecs <= 0) {
      throw new BackendCallError(`lnd: expirySecs must be a positive integer, got ${req.expirySecs}`, false);
    }
    const added = await this.call(() => this.transport.addInvoice({ valueMsat: req.amountMsat, memo: req.memo, expiry: req.expirySecs }, signal, this.ctx.timeoutMs));
    return createdInvoiceOf(added, req, `lnd ${this.transport.name}`);
  }

  async lookupInvoice(paymentHash: Buffer, signal?: AbortSignal): Promise<InvoiceState> {
    if (paymentHash.length !== 32) return { state: 'unknown' };
    const inv = await this.call(() => this.transport.lookupInvoice(paymentHash, signal, this.ctx.timeoutMs));
    if (!inv) return { state: 'unknown' };
    return invoiceStateOf(inv, paymentHash, `lnd ${this.transport.name}`);
  }

  async check(signal?: AbortSignal): Promise<string> {
    const info = await this.call(() => this.transport.getInfo(signal, this.ctx.timeoutMs));
    const networks = info.networks.length ? info.networks.join('/') : 'unknown network';
    const pubkey = /^[0-9a-f]{66}$/.test(info.identityPubkey) ? `${info.identityPubkey.slice(0, 12)}…` : 'no pubkey';
    const sync = info.syncedToChain ? 'synced to chain' : 'NOT synced to chain (invoices may not be payable until it is)';
    return `lnd ${JSON.stringify(info.alias)} (${pubkey}) on ${networks}, version ${info.version || 'unknown'}, block ${info.blockHeight}, ${sync}, via ${this.transport.name} ${this.transport.address}`;
  }

  describe(): string {
    const via = this.paths.socks ? ` through SOCKS5 proxy ${this.paths.socks}` : '';
    return `lnd ${this.transport.name} at ${this.transport.address}${via}, tls cert ${this.paths.cert}, macaroon ${this.paths.macaroon}`;
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  /** Runs one transport call and turns its failure into a BackendCallError an operator can act on. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof BackendCallError) throw err;
      if (!(err instanceof LndRpcError)) throw new BackendCallError(`lnd ${this.transport.name}: ${(err as Error).message}`);
      throw this.describeError(err);
    }
  }

  private describeError(err: LndRpcError): BackendCallError {
    const where = `lnd ${this.transport.name} ${this.transport.address}`;
    const d = err.detail;
    if (
      err.code === GrpcCode.UNAUTHENTICATED || err.code === GrpcCode.PERMISSION_DENIED ||
      // lnd's macaroon checks return plain errors, which gRPC reports as UNKNOWN.
      (err.code === GrpcCode.UNKNOWN && /macaroon|verification failed|permission denied|invalid auth/i.test(d))
    ) {
      return new BackendCallError(
        `${where} rejected the macaroon from macaroon_path (${this.paths.macaroon}) on ${err.method}: ${d}. ` +
          'Use a macaroon of this node with invoices:read, invoices:write and info:read (admin.macaroon, or lncli bakemacaroon invoices:read invoices:write info:read).',
        false,
      );
    }
    if (err.transportFailure && err.code === GrpcCode.DEADLINE_EXCEEDED) return new BackendCallError(`${where} ${err.method} timed out: ${d}`);
    if (err.transportFailure && err.code === GrpcCode.CANCELLED) return new BackendCallError(`${where} ${err.method} ${d}`);
    // grpc-js reports a refused connection, a failed TLS handshake and a node answering UNAVAILABLE
    // all as UNAVAILABLE; the wording fits each, and the detail tells them apart.
    if (err.transportFailure || err.code === GrpcCode.UNAVAILABLE) {
      const tlsHint = /certificate|self[- ]signed|ssl|tls|handshake|altnames|verify/i.test(d)
        ? `; TLS failed: check that tls_cert_path (${this.paths.cert}) is this node's current tls.cert and that it names host ${this.transport.address.replace(/:\d+$/, '')}`
        : '';
      return new BackendCallError(`${where} is unavailable (${err.method}): ${d}${tlsHint}`);
    }
    const retryable = err.code === GrpcCode.UNAVAILABLE || err.code === GrpcCode.DEADLINE_EXCEEDED || err.code === GrpcCode.INTERNAL || err.code === GrpcCode.UNKNOWN;
    return new BackendCallError(`${where} ${err.method} failed (${codeName(err.code)}): ${d}`, retryable);
  }
}


function codeName(code: number): string {
  return (grpc.status as unknown as Record<number, string>)[code] ?? `code ${code}`;
}

// ---------------------------------------------------------------------------------------------
// Factory
// ---------------------------------------------------------------------------------------------

/**
 * Builds the backend. Reads the certificate and macaroon now, so a wrong path fails at start with the
 * key and path named (never the contents). Connects lazily: the first call opens the one channel (gRPC)
 * or keep-alive pool (REST) that every later call reuses.
 */
export function createLndBackend(cfg: LndConfig, ctx: BackendContext): LightningBackend {
  const certPath = resolveConfigPath(cfg.tls_cert_path, ctx.configDir);
  const macaroonPath = resolveConfigPath(cfg.macaroon_path, ctx.configDir);
  const useRest = cfg.transport === 'rest';
  const address = parseHostPort(useRest ? cfg.rest_address : cfg.address, useRest ? 'lightning.rest_address' : 'lightning.address');
  const socksProxy = cfg.socks5_proxy ? parseHostPort(cfg.socks5_proxy, 'lightning.socks5_proxy') : undefined;
  if (address.host.toLowerCase().endsWith('.onion') && !socksProxy) {
    throw new Error(`lightning.${useRest ? 'rest_address' : 'address'}: ${address.host} is a Tor onion address; set lightning.socks5_proxy (e.g. 127.0.0.1:9050) to reach it`);
  }
  const cert = loadCert(cfg.tls_cert_path, ctx.configDir);
  if (cert.notAfter.getTime() < Date.now()) {
    ctx.log.warn({ tls_cert_path: certPath, notAfter: cert.notAfter.toISOString() }, 'lnd tls.cert has expired; lnd renews it on restart, so this file may be stale');
  }
  const macaroonHex = loadMacaroonHex(cfg.macaroon_path, ctx.configDir);
  const opts: LndTransportOptions = {
    address,
    cert: cert.pem,
    macaroonHex,
    socksProxy,
    scrub: scrubberFor(macaroonHex),
    // A Tor circuit can take longer than one call's budget; letting the proxied connect finish in the
    // background means the next call finds the connection ready instead of starting over.
    connectTimeoutMs: Math.max(ctx.timeoutMs, 20_000),
  };
  const transport = useRest ? new LndRestTransport(opts) : new LndGrpcTransport(opts);
  return new LndBackend(transport, ctx, { cert: certPath, macaroon: macaroonPath, socks: socksProxy ? formatHostPort(socksProxy) : undefined }, cfg.pay_refunds ? { feeLimitMsat: cfg.refund_fee_limit_msat } : undefined);
}
