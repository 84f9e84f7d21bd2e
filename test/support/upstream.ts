// A small Node HTTP upstream that counts and records what nginx forwards to it.
import http from 'node:http';
import { DEFAULT_TIMEOUT_MS, withTimeout } from './waits.js';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface CountingUpstream {
  port: number;
  /** Number of requests received since start / last reset(). */
  readonly hits: number;
  /** Every request received since start / last reset(). */
  readonly requests: RecordedRequest[];
  reset(): void;
  stop(): Promise<void>;
}

/**
 * A node:http server on 127.0.0.1:<free port> that counts every request and answers
 * 200 `{"ok":true,"path":"<url>"}` — the upstream that unpaid requests must never reach.
 */
export async function startCountingUpstream(): Promise<CountingUpstream> {
  let requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = req.url ?? '';
      requests.push({ method: req.method ?? '', url, headers: req.headers, body: Buffer.concat(chunks).toString() });
      const body = JSON.stringify({ ok: true, path: url });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    req.on('error', () => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('counting upstream: unexpected address');
  let stopped = false;
  return {
    port: addr.port,
    get hits() {
      return requests.length;
    },
    get requests() {
      return requests;
    },
    reset() {
      requests = [];
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections(); // nginx may hold keep-alive upstream connections
      await withTimeout(closed, DEFAULT_TIMEOUT_MS, 'counting upstream to close');
    },
  };
}
