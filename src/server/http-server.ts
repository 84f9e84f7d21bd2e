// HTTP front of l402d: the nginx auth_request endpoint, the error_page render endpoint, a health check,
// and (when `upstream` is configured) a standalone reverse proxy for machines without nginx.
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { normalizePath } from '../policy/routes.js';
import type { Gate } from './gate.js';
import type { Rendered } from './render.js';
import { buildManifest } from './manifest.js';
import { handlePageEndpoint } from './page-endpoints.js';

const METHOD = /^[A-Z]{1,16}$/;
const MANIFEST_PATH = '/.well-known/l402-services';

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function send(res: ServerResponse, r: Rendered): void {
  for (const [k, v] of r.headers) {
    const prev = res.getHeader(k);
    res.setHeader(k, prev === undefined ? v : ([] as string[]).concat(prev as string | string[], v));
  }
  res.setHeader('Content-Length', Buffer.byteLength(r.body));
  res.statusCode = r.status;
  res.end(r.body);
}

// Hop-by-hop headers (RFC 9110 7.6.1) are not forwarded by a proxy.
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

// Sub-delimiters left readable in forwarded paths. Not ";": Java servlet containers (Tomcat, Jetty) strip
// ";params" from segments before resolving "..", so "/cheap/..;x=1/expensive" would be served as /expensive.
const PCHAR_KEPT = /%(?:24|26|2B|2C|3A|3D|40)/g;

/**
 * The request-target to forward: the path the decision was made on (normalised, see normalizePath) encoded
 * so an upstream decodes it to that same path, plus the client's query string unchanged. Forwarding the raw
 * URL instead would let "/expensive/a%2F..%2F..%2Fcheap/x" be priced as /cheap/x yet served as /expensive/….
 */
export function forwardTarget(decidedPath: string, rawUrl: string): string {
  const path = decidedPath
    .split('/')
    .map((seg) => encodeURIComponent(seg).replace(PCHAR_KEPT, (m) => decodeURIComponent(m)))
    .join('/');
  const q = rawUrl.search(/[?#]/);
  return q >= 0 && rawUrl[q] === '?' ? path + rawUrl.slice(q).split('#')[0] : path;
}

function proxy(upstream: URL, target: string, req: IncomingMessage, res: ServerResponse, extra: Array<[string, string]>, onError: (e: Error) => void): void {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k)) headers[k] = v;
  headers['x-forwarded-for'] = req.socket.remoteAddress ?? '';
  headers.host = upstream.host;
  const base = upstream.pathname.replace(/\/$/, '');
  const send = upstream.protocol === 'https:' ? httpsRequest : httpRequest;
  const up = send(
    { protocol: upstream.protocol, hostname: upstream.hostname, port: upstream.port, method: req.method, path: base + target, headers },
    (ur) => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
      for (const [k, v] of extra) out[k.toLowerCase()] = v;
      res.writeHead(ur.statusCode ?? 502, out);
      ur.pipe(res);
    },
  );
  up.on('error', onError);
  req.pipe(up);
}

/** nginx's `$msec` ("1733541234.567", seconds) as ms since the epoch; undefined unless well-formed. */
export function sentAtMs(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,12}(\.\d{1,3})?$/.test(v)) return undefined;
  return Math.round(Number(v) * 1000);
}

/** The decision deadline nginx's snippets were generated for (they wait that plus a margin). */
function deadlineMs(v: string | undefined): number | undefined {
  return v !== undefined && /^\d{1,6}$/.test(v) && Number(v) > 0 ? Number(v) : undefined;
}

export function createGateServer(gate: Gate): Server {
  const { log, config } = gate.parts;
  const upstream = config.upstream ? new URL(config.upstream) : undefined;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/';
    // nginx's rewrite keeps the original query string; our endpoints ignore it.
    const endpoint = url.split('?')[0];
    if (endpoint === '/_l402/health') {
      res.setHeader('Content-Type', 'application/json');
      res.end(`{"status":"ok","pid":${process.pid}}\n`);
      return;
    }
    if (endpoint === MANIFEST_PATH && config.manifest.enabled) {
      res.setHeader('Access-Control-Allow-Origin', '*');
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.statusCode = 405;
        res.setHeader('Allow', 'GET, HEAD');
        res.end();
        return;
      }
      const body = await buildManifest(config, gate.parts.backend.kind, gate.price);
      res.setHeader('Content-Type', 'application/json; charset=utf-8');
      res.setHeader('Cache-Control', 'public, max-age=60');
      res.setHeader('Content-Length', Buffer.byteLength(body));
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (await handlePageEndpoint(gate, req, res)) return;
    if (endpoint === '/_l402/auth' || endpoint === '/_l402/render') {
      // Called by nginx: the original request is described by the headers nginx sets.
      const method = (one(req.headers['x-original-method']) ?? 'GET').toUpperCase();
      const rawUri = one(req.headers['x-original-uri']);
      const path = rawUri === undefined ? undefined : normalizePath(rawUri);
      const gr = { ...gate.requestFrom(path, METHOD.test(method) ? method : 'GET', one(req.headers['x-l402-client-addr']), req.headers), uri: rawUri };
      if (endpoint === '/_l402/auth') {
        // nginx's give-up point counts from when it sent the subrequest (`$msec`, see server.conf), and a
        // closed connection means nobody will read the answer: the decision's deadline follows both.
        const gone = new AbortController();
        res.once('close', () => gone.abort());
        const d = await gate.decide(gr, { sentAt: sentAtMs(one(req.headers['x-l402-sent-at'])), deadlineMs: deadlineMs(one(req.headers['x-l402-deadline-ms'])), signal: gone.signal });
        const cacheSecs = gate.cacheSecondsFor(d);
        // nginx's auth cache (server.conf) keeps only answers that carry X-Accel-Expires.
        if (cacheSecs > 0) res.setHeader('X-Accel-Expires', String(cacheSecs));
        else res.setHeader('Cache-Control', 'no-store');
        if (d.outcome === 'allow') {
          if (d.reason === 'dry_run') for (const [k, v] of await gate.dryRunHeaders(d, gr)) res.setHeader(k, v);
          res.statusCode = 200;
          res.end();
          return;
        }
        // nginx turns this 401 into `error_page 401 = @l402`, which calls /_l402/render with these values.
        res.statusCode = 401;
        res.setHeader('X-L402-Outcome', d.outcome);
        res.setHeader('X-L402-Reason', d.reason);
        if (d.outcome === 'rate_limited') res.setHeader('X-L402-Retry-After', String(d.retryAfterSecs));
        if (d.outcome === 'cashu_rejected') res.setHeader('X-L402-Detail', d.detail.replace(/[^\x20-\x7e]/g, '?').slice(0, 300));
        res.end();
        return;
      }
      const retry = Number(one(req.headers['x-l402-retry-after']));
      const detail = one(req.headers['x-l402-detail']);
      send(res, await gate.render(one(req.headers['x-l402-outcome']), one(req.headers['x-l402-reason']), gr, req.headers, { retryAfterSecs: Number.isInteger(retry) ? retry : undefined, detail }));
      return;
    }
    if (!upstream) {
      res.statusCode = 404;
      res.setHeader('Content-Type', 'application/json');
      res.end('{"error":"not found: l402d serves nginx auth_request here (no upstream configured)"}\n');
      return;
    }
    // Standalone reverse-proxy mode. The protocol is this connection's, never a client's header.
    req.headers['x-original-protocol'] = `HTTP/${req.httpVersion}`;
    const path = normalizePath(url);
    const gr = { ...gate.requestFrom(path, (req.method ?? 'GET').toUpperCase(), req.socket.remoteAddress, req.headers), uri: url };
    const d = await gate.decide(gr);
    // Only a usable path can be allowed (decide refuses the rest); what is forwarded is what was decided on.
    if (d.outcome === 'allow' && path !== undefined) {
      const extra = d.reason === 'dry_run' ? await gate.dryRunHeaders(d, gr) : [];
      proxy(upstream, forwardTarget(path, url), req, res, extra, (e) => {
        log.warn({ event: 'upstream_error', err: e.message }, 'upstream error');
        if (!res.headersSent) {
          res.statusCode = 502;
          res.end();
        } else res.destroy();
      });
      return;
    }
    req.resume();
    send(res, await gate.render(d.outcome, d.reason, gr, req.headers, { detail: 'detail' in d ? d.detail : undefined, retryAfterSecs: d.outcome === 'rate_limited' ? d.retryAfterSecs : undefined }));
  };

  const server = createServer(
    {
      // nginx accepts up to 4 x 8 KiB of request headers by default; l402d must read whatever nginx lets through.
      maxHeaderSize: 64 * 1024,
      // Behind nginx (no upstream of our own), be as lenient as nginx about header bytes, so a control
      // character in a client's header is judged by our parsers (a 4xx) rather than refused by Node's (a 503
      // through nginx). With `upstream` set, l402d faces clients directly and keeps Node's strict parser.
      insecureHTTPParser: !upstream,
    },
    (req, res) => {
      // Shutting down: answer, then close the connection, so nginx moves to another l402d at once.
      if (!server.listening) res.shouldKeepAlive = false;
      handle(req, res).catch((e: Error) => {
        log.error({ err: e.message }, 'request handler failed');
        if (!res.headersSent) {
          res.statusCode = 503;
          res.setHeader('Retry-After', String(config.retryAfterSecs));
          res.end();
        } else res.destroy();
      });
    },
  );
  // Longer than nginx's upstream keepalive_timeout (60 s) so nginx never reuses a connection we just closed.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.maxHeadersCount = 200;
  return server;
}
