// /metrics and the operator console (/console, /console.json) on their own listen address (never the gate's),
// optionally behind a token: `Authorization: Bearer <token>`, or Basic with the token as password (browsers).
import { localHostHeader } from './host-header.js';
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { errorShape } from './process-policy.js';
import type { Metrics } from './metrics.js';
import type { Logger } from '../util/log.js';
import { CONSOLE_PATHS, failed, serveConsole, type ConsoleSource } from './console-routes.js';

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** The password of a Basic authorization (any user name), or undefined. */
function basicPassword(h: string | undefined): string | undefined {
  const m = /^Basic ([A-Za-z0-9+/=]{1,1024})$/i.exec(h ?? '');
  if (!m) return undefined;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i < 0 ? undefined : text.slice(i + 1);
}

export function createMetricsServer(metrics: Metrics, token: string | undefined, log: Logger, consoleSource?: ConsoleSource): Server {
  const expected = token === undefined ? undefined : digest(`Bearer ${token}`);
  const expectedPassword = token === undefined ? undefined : digest(token);
  const server = createServer((req, res) => {
    try {
      answer(req, res);
    } catch (e) {
      // Fail closed for this request only: the listener (and the gate beside it) keeps answering.
      log.error({ event: 'metrics_listener_failed', err: errorShape(e) }, 'metrics listener request failed');
      failed(res, 500);
    }
  });
  const answer = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '').split('?')[0]!;
    const isConsole = consoleSource !== undefined && CONSOLE_PATHS.has(path);
    if (path !== '/metrics' && !isConsole) {
      res.statusCode = 404;
      res.end();
      return;
    }
    if (token === undefined && !localHostHeader(req.headers.host)) {
      res.statusCode = 403;
      res.setHeader('Cache-Control', 'no-store');
      res.end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.statusCode = 405;
      res.setHeader('Allow', 'GET, HEAD');
      res.end();
      return;
    }
    // Compare digests so the comparison is constant-time whatever the header's length.
    // One constant-time compare per request: the Basic password against the token, else the whole header
    // against "Bearer <token>".
    const h = req.headers.authorization ?? '';
    const password = /^Basic /i.test(h) ? basicPassword(h) : undefined;
    const ok = expected === undefined || (password !== undefined ? timingSafeEqual(digest(password), expectedPassword!) : timingSafeEqual(digest(h), expected));
    if (!ok) {
      res.statusCode = 401;
      res.setHeader('Cache-Control', 'no-store');
      // A browser asks for the console's token (as the password) on a Basic challenge.
      res.setHeader('WWW-Authenticate', isConsole ? 'Basic realm="l402d console", charset="UTF-8"' : 'Bearer realm="l402d metrics"');
      res.end();
      return;
    }
    if (isConsole) {
      serveConsole(path, req, res, consoleSource, log);
      return;
    }
    metrics
      .render()
      .then(
        (text) => {
          res.setHeader('Content-Type', 'text/plain; version=0.0.4; charset=utf-8');
          res.end(req.method === 'HEAD' ? undefined : text);
        },
        (e: Error) => {
          log.error({ err: e.message }, 'metrics render failed');
          failed(res, 503);
        },
      )
      .catch((e: unknown) => {
        log.error({ event: 'metrics_listener_failed', err: errorShape(e) }, 'metrics answer failed');
        failed(res, 500);
      });
  };
  return server;
}
