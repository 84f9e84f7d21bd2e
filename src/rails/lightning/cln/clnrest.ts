// Core Lightning's REST plugin (clnrest): POST /v1/<method> with the params as a JSON body and the
// rune in a `Rune` header. Success is HTTP 201 with the bare `result`; failures carry the JSON-RPC
// error object ({code, message}) with 401/403 (rune), 404 (unknown method) or 500 (the call failed).
import http from 'node:http';
import https from 'node:https';
import { BackendCallError } from '../backend.js';
import { DEFAULT_MAX_RESPONSE_BYTES, peerText, rpcErrorFrom, type ClnCaller } from './cln-rpc.js';

export interface ClnRestOptions {
  /** Base URL, e.g. https://127.0.0.1:3010 (plain http only for loopback hosts). */
  url: string;
  /** Secret: never logged, never in errors. */
  rune: string;
  /** PEM of the CA that signed clnrest's certificate (CLN writes <lightning-dir>/<network>/ca.pem). */
  ca?: string | Buffer;
  timeoutMs: number;
  maxResponseBytes?: number;
}

const LOOPBACK = new Set(['127.0.0.1', '[::1]', 'localhost']);

/** Checks a clnrest base URL; returns the reason it is unusable, or undefined. */
export function clnRestUrlProblem(raw: string): string | undefined {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return 'must be an absolute URL such as https://127.0.0.1:3010';
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return 'must use https://';
  // The rune travels in a header: plain http would hand it to anyone on the path.
  if (u.protocol === 'http:' && !LOOPBACK.has(u.hostname)) return 'plain http:// is only allowed for loopback hosts; use https://';
  if (u.username || u.password) return 'must not contain credentials (use rune)';
  if (u.search || u.hash) return 'must not contain a query or fragment';
  return undefined;
}

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED', 'CERT_SIGNATURE_FAILURE',
]);

export class ClnRestRpc implements ClnCaller {
  private readonly base: string;
  private readonly rune: string;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly agent: http.Agent;
  private readonly mod: typeof http | typeof https;

  constructor(opts: ClnRestOptions) {
    const problem = clnRestUrlProblem(opts.url);
    if (problem) throw new BackendCallError(`clnrest url ${problem}`, false);
    const u = new URL(opts.url);
    this.base = `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
    this.rune = opts.rune;
    this.timeoutMs = opts.timeoutMs;
    this.maxBytes = opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    if (u.protocol === 'https:') {
      this.mod = https;
      this.agent = new https.Agent({ keepAlive: true, maxSockets: 16, ca: opts.ca });
    } else {
      this.mod = http;
      this.agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    }
  }

  describe(): string {
    return `clnrest ${this.base}`;
  }

  call(method: string, params: Record<string, unknown>, signal?: AbortSignal): Promise<unknown> {
    if (!/^[a-z0-9_-]+$/i.test(method)) return Promise.reject(new BackendCallError(`invalid CLN method name ${method}`, false));
    if (signal?.aborted) return Promise.reject(new BackendCallError(`clnrest ${method} aborted before it was sent`));
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const body = Buffer.from(JSON.stringify(params));
    return new Promise<unknown>((resolve, reject) => {
      let done = false;
      const finish = (err: Error | null, value?: unknown): void => {
        if (done) return;
        done = true;
        if (err) reject(err);
        else resolve(value);
      };
      const req = this.mod.request(
        `${this.base}/v1/${method}`,
        {
          method: 'POST',
          agent: this.agent,
          signal: combined,
          headers: {
            rune: this.rune,
            'content-type': 'application/json',
            accept: 'application/json',
            'content-length': body.length,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > this.maxBytes) {
              finish(new BackendCallError(`clnrest ${method}: reply larger than ${this.maxBytes} bytes`));
              res.destroy();
              return;
            }
            chunks.push(c);
          });
          res.on('error', (e) => finish(this.netError(method, e, timeout)));
          res.on('end', () => {
            if (done) return;
            try {
              finish(null, this.interpret(method, res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')));
            } catch (e) {
              finish(e as Error);
            }
          });
        },
      );
      req.on('error', (e) => finish(this.netError(method, e, timeout)));
      req.end(body);
    });
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }

  private interpret(method: string, status: number, text: string): unknown {
    let json: unknown;
    let parsed = false;
    try {
      json = JSON.parse(text);
      parsed = true;
    } catch {
      // handled per status below
    }
    if (status === 200 || status === 201) {
      if (!parsed) throw new BackendCallError(`clnrest ${method}: HTTP ${status} reply is not JSON`);
      return json;
    }
    const detail = parsed ? rpcErrorFrom(method, json, [this.rune]) : undefined;
    const what = detail ? `${detail.code !== undefined ? `code ${detail.code}: ` : ''}${detail.rpcMessage}` : peerText(text.slice(0, 200), [this.rune], 120);
    if (status === 401 || status === 403) {
      throw new BackendCallError(`clnrest rejected the rune for ${method} (HTTP ${status}, ${what}); check lightning.rune and its restrictions`, false);
    }
    if (status === 404) throw new BackendCallError(`clnrest does not know method ${method} (HTTP 404, ${what})`, false);
    if (status === 500 && detail) throw detail;
    throw new BackendCallError(`clnrest ${method}: HTTP ${status}${what ? ` (${what})` : ''}`);
  }

  private netError(method: string, e: Error, timeout: AbortSignal): BackendCallError {
    if (e.name === 'AbortError' || (e as NodeJS.ErrnoException).code === 'ABORT_ERR') {
      return new BackendCallError(timeout.aborted ? `clnrest ${method} timed out after ${this.timeoutMs} ms` : `clnrest ${method} aborted`);
    }
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (TLS_CODES.has(code)) {
      return new BackendCallError(`clnrest ${this.base}: TLS verification failed (${code}); set ca_cert_path to CLN's ca.pem and use a host name the certificate covers`, false);
    }
    return new BackendCallError(`clnrest ${this.base} ${method}: ${code || peerText(e.message, [this.rune])}`);
  }
}
