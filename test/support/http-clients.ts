// HTTP/1.1 and HTTP/2 (h2c) clients that return status, headers and body, bounded in time.
import http from 'node:http';
import http2 from 'node:http2';
import { DEFAULT_TIMEOUT_MS } from './waits.js';

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  /** Default 10 s. */
  timeoutMs?: number;
}

export interface SimpleResponse<H> {
  status: number;
  headers: H;
  body: string;
}

/**
 * One HTTP/1.1 request with a fresh non-keep-alive agent (the connection is closed after,
 * so nothing leaks between requests). Rejects on network errors or timeout; any status resolves.
 */
export function http1(url: string, opts: RequestOptions = {}): Promise<SimpleResponse<http.IncomingHttpHeaders>> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const agent = new http.Agent({ keepAlive: false, maxSockets: 1 });
  return new Promise<SimpleResponse<http.IncomingHttpHeaders>>((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { ...opts.headers };
    if (opts.body !== undefined && headers['content-length'] === undefined) {
      headers['content-length'] = Buffer.byteLength(opts.body);
    }
    const req = http.request(url, { method: opts.method ?? 'GET', headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`http1 ${opts.method ?? 'GET'} ${url}: timed out after ${timeoutMs}ms`)));
    req.on('error', reject);
    req.end(opts.body);
  }).finally(() => agent.destroy());
}

/**
 * One HTTP/2 request over cleartext with prior knowledge (h2c), e.g.
 * `http2('http://127.0.0.1:8443', '/x')`. The session is closed afterwards.
 * Response headers include pseudo-headers such as `:status`.
 */
export function http2Request(
  origin: string,
  path: string,
  opts: RequestOptions = {},
): Promise<SimpleResponse<http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader>> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const method = opts.method ?? 'GET';
  return new Promise((resolve, reject) => {
    const session = http2.connect(origin);
    let settled = false;
    const timer = setTimeout(() => fail(new Error(`http2 ${method} ${origin}${path}: timed out after ${timeoutMs}ms`)), timeoutMs);
    function fail(err: Error): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      reject(err);
    }
    session.on('error', fail);
    const req = session.request({ ':method': method, ':path': path, ...opts.headers }, { endStream: opts.body === undefined });
    let headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      headers = h;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', fail);
    req.on('end', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.close();
      resolve({ status: Number(headers[':status'] ?? 0), headers, body: Buffer.concat(chunks).toString() });
    });
    if (opts.body !== undefined) req.end(opts.body);
  });
}

/** Alias with the brief's name: `http2(origin, path, opts)`. */
export { http2Request as http2 };
