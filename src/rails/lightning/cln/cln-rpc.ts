// Core Lightning JSON-RPC over its unix socket (`lightning-rpc`, see lightningd-rpc(7)).
//
// One persistent connection carries every call; replies are matched to calls by JSON-RPC id, so any
// number of calls can be in flight. lightningd ends each reply with "\n\n", but the framing is
// really "JSON objects back to back" (plugins and proxies may omit or split the delimiter), so the
// reader is an incremental scanner for concatenated top-level objects, bounded in size.
import net from 'node:net';
import type { Logger } from '../../../util/log.js';
import { BackendCallError } from '../backend.js';

/** Largest single reply we will buffer. A `listinvoices {payment_hash}` reply is a few KB. */
export const DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

/** What the CLN backends need from a transport (unix-socket JSON-RPC or clnrest). */
export interface ClnCaller {
  /** Resolves to the JSON-RPC `result`; rejects with a BackendCallError (ClnRpcError for node errors). */
  call(method: string, params: Record<string, unknown>, signal?: AbortSignal): Promise<unknown>;
  /** One line without secrets, e.g. "JSON-RPC over unix socket /x/lightning-rpc". */
  describe(): string;
  close(): Promise<void>;
}

// Codes where asking again cannot help: malformed requests, auth, a dead offer.
const PERMANENT_CODES = new Set([-32600, -32601, -32602, -2, 901, 907, 908, 1002, 1007, 1501, 1502, 1503]);

/** CLN answered with a JSON-RPC error object. */
export class ClnRpcError extends BackendCallError {
  constructor(
    readonly method: string,
    readonly code: number | undefined,
    readonly rpcMessage: string,
    retryable = code === undefined || !PERMANENT_CODES.has(code),
  ) {
    super(`CLN ${method} failed: ${code !== undefined ? `error ${code}: ` : ''}${rpcMessage}`, retryable);
    this.name = 'ClnRpcError';
  }
}

/**
 * Makes text from a peer safe to put in an error: printable, bounded, and without any secret we
 * know of (a node may echo request headers or params back in its messages).
 */
export function peerText(value: unknown, secrets: readonly string[] = [], max = 300): string {
  let s = typeof value === 'string' ? value : value === undefined ? '' : String(JSON.stringify(value));
  for (const secret of secrets) if (secret.length >= 4) s = s.split(secret).join('[redacted]');
  // eslint-disable-next-line no-control-regex
  s = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** Turns a JSON-RPC error member into a ClnRpcError without trusting its shape. */
export function rpcErrorFrom(method: string, err: unknown, secrets: readonly string[] = []): ClnRpcError {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'number' && Number.isInteger(e.code) ? e.code : undefined;
  const message = typeof e.message === 'string' && e.message ? peerText(e.message, secrets) : 'error without a message';
  return new ClnRpcError(method, code, message);
}

export class FramingError extends Error {}

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Incremental splitter for a stream of concatenated JSON objects. Feed it chunks as they arrive; it
 * calls `onValue` for each complete top-level object, in order. Whitespace between objects is
 * skipped. Throws FramingError (after delivering every object completed before the fault) on
 * anything else between objects, on malformed JSON, or when one object outgrows `maxBytes`; the
 * stream cannot be resynchronised after that.
 */
export class JsonObjectStream {
  private parts: Buffer[] = [];
  private partsLen = 0;
  private inObject = false;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private failed = false;

  constructor(
    private readonly maxBytes: number,
    private readonly onValue: (value: unknown) => void,
  ) {}

  /** True while part of an object is buffered. */
  get midObject(): boolean {
    return this.inObject;
  }

  push(chunk: Buffer): void {
    if (this.failed) throw new FramingError('stream already failed');
    let segStart = this.inObject ? 0 : -1;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (!this.inObject) {
        if (WS.has(c)) continue;
        if (c !== 0x7b) return this.fail(`unexpected byte 0x${c.toString(16).padStart(2, '0')} where a JSON object should start`);
        this.inObject = true;
        this.depth = 1;
        segStart = i;
        continue;
      }
      if (this.partsLen + (i - segStart + 1) > this.maxBytes) return this.fail(`a reply larger than ${this.maxBytes} bytes`);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === BACKSLASH) this.escaped = true;
        else if (c === QUOTE) this.inString = false;
        continue;
      }
      if (c === QUOTE) this.inString = true;
      else if (c === 0x7b || c === 0x5b) this.depth++;
      else if (c === 0x7d || c === 0x5d) {
        this.depth--;
        if (this.depth === 0) {
          const piece = chunk.subarray(segStart, i + 1);
          const whole = this.parts.length ? Buffer.concat([...this.parts, piece]) : piece;
          this.parts = [];
          this.partsLen = 0;
          this.inObject = false;
          segStart = -1;
          let value: unknown;
          try {
            value = JSON.parse(whole.toString('utf8'));
          } catch {
            return this.fail('malformed JSON');
          }
          this.onValue(value);
          if (this.failed) return;
        }
      }
    }
    if (this.inObject && segStart >= 0 && segStart < chunk.length) {
      const piece = chunk.subarray(segStart);
      this.parts.push(piece);
      this.partsLen += piece.length;
    }
  }

  private fail(why: string): never {
    this.failed = true;
    this.parts = [];
    throw new FramingError(why);
  }
}

export interface ClnSocketRpcOptions {
  /** Absolute path of lightningd's `lightning-rpc` socket. */
  path: string;
  /** Bound for one call (connect + request + reply), in ms. */
  timeoutMs: number;
  maxResponseBytes?: number;
  log?: Logger;
}

interface Pending {
  method: string;
  socket?: net.Socket;
  resolve(v: unknown): void;
  reject(e: Error): void;
}

function errCode(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err?.code ?? err?.message ?? String(e);
}

/** JSON-RPC client for lightningd's unix socket: one persistent, multiplexed connection. */
export class ClnSocketRpc implements ClnCaller {
  private readonly path: string;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly log?: Logger;
  private socket?: net.Socket;
  private connecting?: Promise<net.Socket>;
  private readonly pending = new Map<string, Pending>();
  private seq = 0;
  private closed = false;

  constructor(opts: ClnSocketRpcOptions) {
    this.path = opts.path;
    this.timeoutMs = opts.timeoutMs;
    this.maxBytes = opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.log = opts.log;
  }

  describe(): string {
    return `JSON-RPC over unix socket ${this.path}`;
  }

  /** Calls in flight (for tests and metrics). */
  get inFlight(): number {
    return this.pending.size;
  }

  call(method: string, params: Record<string, unknown>, signal?: AbortSignal): Promise<unknown> {
    if (this.closed) return Promise.reject(new BackendCallError('CLN RPC client is closed', false));
    if (signal?.aborted) return Promise.reject(new BackendCallError(`CLN ${method} aborted before it was sent`));
    // lightningd-rpc(7) id format: PREFIX ':' METHOD '#' NUMBER; it shows up in CLN's logs.
    const id = `l402d:${method}#${++this.seq}`;
    return new Promise<unknown>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => settle(new BackendCallError(`CLN ${method} aborted`));
      const settle = (err: Error | null, value?: unknown): void => {
        if (!this.pending.delete(id)) return;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (this.pending.size === 0) this.socket?.unref();
        if (err) reject(err);
        else resolve(value);
      };
      const entry: Pending = { method, resolve: (v) => settle(null, v), reject: (e) => settle(e) };
      this.pending.set(id, entry);
      timer = setTimeout(() => settle(new BackendCallError(`CLN ${method} timed out after ${this.timeoutMs} ms`)), this.timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.getSocket().then(
        (sock) => {
          if (!this.pending.has(id)) return;
          entry.socket = sock;
          sock.ref();
          sock.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
        },
        (err: Error) => settle(err),
      );
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const err = new BackendCallError('CLN RPC client closed', false);
    for (const p of [...this.pending.values()]) p.reject(err);
    const s = this.socket;
    this.socket = undefined;
    if (s && !s.destroyed) {
      await new Promise<void>((resolve) => {
        s.once('close', () => resolve());
        s.destroy();
      });
    }
  }

  private getSocket(): Promise<net.Socket> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket);
    if (this.connecting) return this.connecting;
    this.connecting = new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection({ path: this.path });
      const onError = (e: Error): void => {
        s.destroy();
        reject(new BackendCallError(`cannot connect to CLN RPC socket ${this.path}: ${errCode(e)}`));
      };
      s.once('error', onError);
      s.once('connect', () => {
        s.off('error', onError);
        if (this.closed) {
          s.destroy();
          reject(new BackendCallError('CLN RPC client closed', false));
          return;
        }
        this.attach(s);
        resolve(s);
      });
    }).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private attach(s: net.Socket): void {
    this.socket = s;
    const parser = new JsonObjectStream(this.maxBytes, (msg) => this.onMessage(msg));
    s.on('data', (chunk: Buffer) => {
      try {
        parser.push(chunk);
      } catch (e) {
        this.drop(s, new BackendCallError(`CLN RPC sent ${(e as Error).message}; connection reset`));
      }
    });
    s.on('error', (e) => this.drop(s, new BackendCallError(`CLN RPC connection failed: ${errCode(e)}`)));
    s.on('close', () => this.drop(s, new BackendCallError('CLN closed the RPC connection before replying')));
  }

  /** Forgets a broken connection and fails the calls that were sent on it; the next call reconnects. */
  private drop(s: net.Socket, err: BackendCallError): void {
    if (this.socket === s) {
      this.socket = undefined;
      this.log?.warn({ event: 'cln_rpc_disconnected', socket: this.path, err: err.message }, 'CLN RPC connection dropped');
    }
    if (!s.destroyed) s.destroy();
    for (const p of [...this.pending.values()]) if (p.socket === s) p.reject(err);
  }

  private onMessage(msg: unknown): void {
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return;
    const m = msg as { id?: unknown; result?: unknown; error?: unknown };
    // Notifications carry no id; replies to calls that already timed out are no longer pending.
    if (typeof m.id !== 'string') return;
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.error !== undefined && m.error !== null) p.reject(rpcErrorFrom(p.method, m.error));
    else if ('result' in m) p.resolve(m.result);
    else p.reject(new BackendCallError(`CLN ${p.method}: reply has neither result nor error`));
  }
}
