// /metrics on its own listen address (never the gate's), optionally behind a bearer token.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Metrics } from './metrics.js';
import type { Logger } from '../util/log.js';

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export function createMetricsServer(metrics: Metrics, token: string | undefined, log: Logger): Server {
  const expected = token === undefined ? undefined : digest(`Bearer ${token}`);
  return createServer((req, res) => {
    if ((req.url ?? '').split('?')[0] !== '/metrics') {
      res.statusCode = 404;
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
    if (expected && !timingSafeEqual(digest(req.headers.authorization ?? ''), expected)) {
      res.statusCode = 401;
      res.setHeader('WWW-Authenticate', 'Bearer realm="l402d metrics"');
      res.end();
      return;
    }
    metrics.render().then(
      (text) => {
        res.setHeader('Content-Type', 'text/plain; version=0.0.4; charset=utf-8');
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (e: Error) => {
        log.error({ err: e.message }, 'metrics render failed');
        res.statusCode = 503;
        res.setHeader('Retry-After', '5');
        res.end();
      },
    );
  });
}
