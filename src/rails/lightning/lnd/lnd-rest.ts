// lnd's REST API (its grpc-gateway front) as an LndTransport, over HTTPS pinned to the node's tls.cert.
// The transport contract shared with the gRPC transport lives here too, so lnd.ts can import this file
// without an import cycle.
import https from 'node:https';
import { isIP } from 'node:net';
import tls from 'node:tls';
import type { PeerCertificate } from 'node:tls';
import { formatHostPort, openSocksTunnel, type HostPort, type SocksTunnel } from '../transports/socks-tunnel.js';

/** What a transport hands back for AddInvoice. */
export interface LndAddedInvoice {
  rHash: Buffer;
  paymentRequest: string;
}

/** The fields of lnrpc.Invoice the backend reads. */
export interface LndInvoice {
  rHash: Buffer;
  rPreimage: Buffer;
  /** lnrpc.Invoice.InvoiceState name: OPEN, SETTLED, CANCELED, ACCEPTED. */
  state: string;
  /** Unix seconds. */
  creationDate: number;
  /** Seconds after creationDate. */
  expiry: number;
  /** What the invoice asks (value_msat; 0 for an "any amount" invoice or when the reply omits it). */
  valueMsat: number;
  /** What it was paid (amt_paid_msat; 0 when the reply omits it). */
  amtPaidMsat: number;
}

/** The fields of lnrpc.GetInfoResponse the backend reads. */
export interface LndInfo {
  alias: string;
  identityPubkey: string;
  version: string;
  networks: string[];
  syncedToChain: boolean;
  blockHeight: number;
}

/** A failed call, as a gRPC status code and the node's message (already scrubbed of credentials). */
export class LndRpcError extends Error {
  constructor(
    readonly method: string,
    /** gRPC status code (grpc-gateway puts the same code in its JSON error body). */
    readonly code: number,
    readonly detail: string,
    /** Set when the call never got an answer from lnd (connect, TLS, proxy, timeout). */
    readonly transportFailure = false,
  ) {
    super(`${method}: ${detail}`);
  }
}

export interface LndTransport {
  /** "gRPC" or "REST", for messages. */
  readonly name: string;
  /** host:port the operator configured for this transport. */
  readonly address: string;
  addInvoice(req: { valueMsat: number; memo: string; expiry: number }, signal: AbortSignal | undefined, timeoutMs: number): Promise<LndAddedInvoice>;
  /** Resolves undefined when lnd does not know the hash. */
  lookupInvoice(rHash: Buffer, signal: AbortSignal | undefined, timeoutMs: number): Promise<LndInvoice | undefined>;
  getInfo(signal: AbortSignal | undefined, timeoutMs: number): Promise<LndInfo>;
  /**
   * lnrpc.Lightning.SendPaymentSync: pays a BOLT11 invoice (`amtMsat` only for one without an amount), routing
   * fees capped at `feeLimitMsat`. lnd answers a failed payment with `payment_error` set, not an RPC error.
   */
  sendPaymentSync(req: { paymentRequest: string; amtMsat?: number; feeLimitMsat: number }, signal: AbortSignal | undefined, timeoutMs: number): Promise<LndPaymentResult>;
  close(): Promise<void>;
}

/** SendPaymentSync's answer: `paymentError` empty when the payment completed, with its preimage. */
export interface LndPaymentResult {
  paymentError: string;
  preimage: Buffer;
}

export interface LndTransportOptions {
  address: HostPort;
  cert: Buffer;
  macaroonHex: string;
  socksProxy?: HostPort;
  /** Removes credentials from any text that may end up in an error. */
  scrub: (text: string) => string;
  connectTimeoutMs: number;
}

/**
 * lnd's "no such invoice": NOT_FOUND from lnd ≥ 0.15 (HTTP 404 over REST), UNKNOWN with the same text
 * from older releases.
 */
export function isInvoiceNotFound(err: LndRpcError): boolean {
  if (err.transportFailure) return false;
  return err.code === GrpcCode.NOT_FOUND || (err.code === GrpcCode.UNKNOWN && /unable to locate invoice|there are no existing invoices/i.test(err.detail));
}

// google.golang.org/grpc/codes numbering.
export const GrpcCode = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, PERMISSION_DENIED: 7,
  UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, UNAUTHENTICATED: 16,
} as const;

const MAX_BODY_BYTES = 1 << 20;

/** grpc-gateway accepts and emits standard base64 for bytes fields; be lenient about the URL-safe form. */
function bytesField(v: unknown, method: string, field: string): Buffer {
  if (v === undefined || v === null || v === '') return Buffer.alloc(0);
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(v)) {
    throw new LndRpcError(method, GrpcCode.INTERNAL, `malformed reply: ${field} is not base64`);
  }
  return Buffer.from(v.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

/** int64/uint64 arrive as JSON strings (protojson), 32-bit ints as numbers; accept either. */
function intField(v: unknown, method: string, field: string): number {
  if (v === undefined || v === null) return 0;
  const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : typeof v === 'number' ? v : NaN;
  if (!Number.isSafeInteger(n)) throw new LndRpcError(method, GrpcCode.INTERNAL, `malformed reply: ${field} is not an integer`);
  return n;
}

function stringField(v: unknown, method: string, field: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new LndRpcError(method, GrpcCode.INTERNAL, `malformed reply: ${field} is not a string`);
  return v;
}

function objectBody(v: unknown, method: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new LndRpcError(method, GrpcCode.INTERNAL, 'malformed reply: not a JSON object');
  }
  return v as Record<string, unknown>;
}

export class LndRestTransport implements LndTransport {
  readonly name = 'REST';
  readonly address: string;
  private readonly opts: LndTransportOptions;
  private readonly agent: https.Agent;
  private readonly tunnel: Promise<SocksTunnel> | undefined;
  private closed = false;

  constructor(opts: LndTransportOptions) {
    this.opts = opts;
    this.address = formatHostPort(opts.address);
    const realHost = opts.address.host;
    // One keep-alive agent for the life of the backend: calls reuse TLS connections instead of paying a
    // handshake (and, over Tor, a circuit) per lookup.
    this.agent = new https.Agent({
      keepAlive: true,
      maxSockets: 16,
      ca: opts.cert,
      // Through the tunnel we dial 127.0.0.1, but the certificate must still match the node's name.
      checkServerIdentity: (_host: string, cert: PeerCertificate) => tls.checkServerIdentity(realHost, cert),
    });
    if (opts.socksProxy) {
      this.tunnel = openSocksTunnel({ proxy: opts.socksProxy, target: opts.address, connectTimeoutMs: opts.connectTimeoutMs });
      // A failed listen surfaces on the first call; do not let it become an unhandled rejection.
      this.tunnel.catch(() => {});
    }
  }

  async addInvoice(req: { valueMsat: number; memo: string; expiry: number }, signal: AbortSignal | undefined, timeoutMs: number): Promise<LndAddedInvoice> {
    const method = 'AddInvoice';
    const body = { value_msat: String(req.valueMsat), memo: req.memo, expiry: String(req.expiry) };
    const res = objectBody(await this.request(method, 'POST', '/v1/invoices', body, signal, timeoutMs), method);
    return { rHash: bytesField(res.r_hash, method, 'r_hash'), paymentRequest: stringField(res.payment_request, method, 'payment_request') };
  }

  async lookupInvoice(rHash: Buffer, signal: AbortSignal | undefined, timeoutMs: number): Promise<LndInvoice | undefined> {
    const method = 'LookupInvoiceV2';
    // invoicesrpc.Invoices.LookupInvoiceV2 (lnd's invoices.yaml: GET /v2/invoices/lookup); bytes in a
    // query parameter travel as URL-safe base64.
    const path = `/v2/invoices/lookup?payment_hash=${encodeURIComponent(rHash.toString('base64url'))}`;
    let raw: unknown;
    try {
      raw = await this.request(method, 'GET', path, undefined, signal, timeoutMs);
    } catch (err) {
      if (err instanceof LndRpcError && isInvoiceNotFound(err)) {
        // grpc-gateway answers an unrouted path with code 5 "Not Found" as well; that is a node built
        // without invoicesrpc, not an unknown invoice, and must not read as "unpaid".
        if (err.code === GrpcCode.NOT_FOUND && /^not found$/i.test(err.detail.trim())) {
          throw new LndRpcError(method, GrpcCode.UNIMPLEMENTED, 'this lnd has no REST route /v2/invoices/lookup (built without the invoicesrpc sub-server?); use transport: grpc');
        }
        return undefined;
      }
      throw err;
    }
    const res = objectBody(raw, method);
    return {
      rHash: bytesField(res.r_hash, method, 'r_hash'),
      rPreimage: bytesField(res.r_preimage, method, 'r_preimage'),
      state: stringField(res.state, method, 'state'),
      creationDate: intField(res.creation_date, method, 'creation_date'),
      expiry: intField(res.expiry, method, 'expiry'),
      valueMsat: intField(res.value_msat, method, 'value_msat'),
      amtPaidMsat: intField(res.amt_paid_msat, method, 'amt_paid_msat'),
    };
  }

  async getInfo(signal: AbortSignal | undefined, timeoutMs: number): Promise<LndInfo> {
    const method = 'GetInfo';
    const res = objectBody(await this.request(method, 'GET', '/v1/getinfo', undefined, signal, timeoutMs), method);
    const chains = Array.isArray(res.chains) ? res.chains : [];
    return {
      alias: stringField(res.alias, method, 'alias'),
      identityPubkey: stringField(res.identity_pubkey, method, 'identity_pubkey'),
      version: stringField(res.version, method, 'version'),
      networks: chains.map((c) => stringField((c as { network?: unknown } | null)?.network, method, 'chains.network')).filter(Boolean),
      syncedToChain: res.synced_to_chain === true,
      blockHeight: intField(res.block_height, method, 'block_height'),
    };
  }

  async sendPaymentSync(req: { paymentRequest: string; amtMsat?: number; feeLimitMsat: number }, signal: AbortSignal | undefined, timeoutMs: number): Promise<LndPaymentResult> {
    const method = 'SendPaymentSync';
    // lnd's lightning.yaml: POST /v1/channels/transactions (int64 as strings, the fee limit's oneof by name).
    const body = { payment_request: req.paymentRequest, ...(req.amtMsat !== undefined ? { amt_msat: String(req.amtMsat) } : {}), fee_limit: { fixed_msat: String(req.feeLimitMsat) } };
    const res = objectBody(await this.request(method, 'POST', '/v1/channels/transactions', body, signal, timeoutMs), method);
    return { paymentError: stringField(res.payment_error, method, 'payment_error'), preimage: bytesField(res.payment_preimage, method, 'payment_preimage') };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.agent.destroy();
    if (this.tunnel) await this.tunnel.then((t) => t.close(), () => {});
  }

  private async request(method: string, verb: 'GET' | 'POST', path: string, body: unknown, signal: AbortSignal | undefined, timeoutMs: number): Promise<unknown> {
    if (this.closed) throw new LndRpcError(method, GrpcCode.UNAVAILABLE, 'backend is closed', true);
    if (signal?.aborted) throw new LndRpcError(method, GrpcCode.CANCELLED, 'aborted by the caller', true);
    const started = Date.now();
    let dial: HostPort = this.opts.address;
    let tunnel: SocksTunnel | undefined;
    if (this.tunnel) {
      try {
        tunnel = await this.tunnel;
      } catch (err) {
        throw new LndRpcError(method, GrpcCode.UNAVAILABLE, `cannot open the local SOCKS5 tunnel: ${(err as Error).message}`, true);
      }
      dial = { host: '127.0.0.1', port: tunnel.port };
    }
    const remaining = Math.max(1, timeoutMs - (Date.now() - started));
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));

    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (err: LndRpcError | null, value?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(value);
      };
      const req = https.request({
        host: dial.host,
        port: dial.port,
        method: verb,
        path,
        agent: this.agent,
        // SNI must not carry an IP literal (RFC 6066); Node warns and ignores it otherwise.
        servername: isIP(this.opts.address.host) ? undefined : this.opts.address.host,
        headers: {
          host: this.address,
          accept: 'application/json',
          'grpc-metadata-macaroon': this.opts.macaroonHex,
          ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
        },
      });
      const timer = setTimeout(() => {
        finish(new LndRpcError(method, GrpcCode.DEADLINE_EXCEEDED, `no answer within ${timeoutMs} ms`, true));
        req.destroy();
      }, remaining);
      const onAbort = (): void => {
        finish(new LndRpcError(method, GrpcCode.CANCELLED, 'aborted by the caller', true));
        req.destroy();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err: NodeJS.ErrnoException) => {
        let detail = this.opts.scrub(err.message);
        if (tunnel?.lastError) detail += ` (${tunnel.lastError})`;
        finish(new LndRpcError(method, GrpcCode.UNAVAILABLE, detail, true));
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY_BYTES) {
            finish(new LndRpcError(method, GrpcCode.INTERNAL, `reply larger than ${MAX_BODY_BYTES} bytes`));
            req.destroy();
            return;
          }
          chunks.push(c);
        });
        res.on('error', (err) => finish(new LndRpcError(method, GrpcCode.UNAVAILABLE, this.opts.scrub(err.message), true)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            finish(new LndRpcError(method, res.statusCode === 200 ? GrpcCode.INTERNAL : codeForHttpStatus(res.statusCode), `HTTP ${res.statusCode}, reply is not JSON`));
            return;
          }
          if (res.statusCode === 200) {
            finish(null, json);
            return;
          }
          // grpc-gateway error body: {"code": <grpc code>, "message": "...", "details": []}
          const errBody = (typeof json === 'object' && json !== null ? json : {}) as { code?: unknown; message?: unknown };
          const code = typeof errBody.code === 'number' ? errBody.code : codeForHttpStatus(res.statusCode);
          const message = typeof errBody.message === 'string' ? errBody.message : `HTTP ${res.statusCode}`;
          finish(new LndRpcError(method, code, this.opts.scrub(message).slice(0, 300)));
        });
      });
      req.end(payload);
    });
  }
}

/** The inverse of grpc-gateway's HTTPStatusFromCode, for error bodies that carry no code. */
function codeForHttpStatus(status: number | undefined): number {
  switch (status) {
    case 400: return GrpcCode.INVALID_ARGUMENT;
    case 401: return GrpcCode.UNAUTHENTICATED;
    case 403: return GrpcCode.PERMISSION_DENIED;
    case 404: return GrpcCode.NOT_FOUND;
    case 501: return GrpcCode.UNIMPLEMENTED;
    case 503: return GrpcCode.UNAVAILABLE;
    case 504: return GrpcCode.DEADLINE_EXCEEDED;
    default: return GrpcCode.UNKNOWN;
  }
}
