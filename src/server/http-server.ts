// HTTP front of l402d: the nginx auth_request endpoint, the error_page render endpoint, a health check,
// and (when `upstream` is configured) a standalone reverse proxy for machines without nginx.
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { decodedPathAmbiguity, normalizePath, pathAmbiguity, pathBytes, pathFromBytes, percentDecodeBytes } from '../policy/routes.js';
import type { Gate } from './gate.js';
import type { Rendered } from './render.js';
import { buildManifest } from './manifest.js';
import { handlePageEndpoint } from './page-endpoints.js';

const METHOD = /^[A-Z]{1,16}$/;
const INSTANCE = randomBytes(6).toString('hex');
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

/** encodeURIComponent over bytes: unreserved characters kept, every other byte as %XX. */
function escapeBytes(b: Buffer): string {
  let out = '';
  for (const c of b) out += /[A-Za-z0-9\-_.!~*'()]/.test(String.fromCharCode(c)) ? String.fromCharCode(c) : `%${c.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/**
 * The request-target to forward: the path the decision was made on (normalised, see normalizePath) encoded
 * so an upstream decodes it to that same path, plus the client's query string unchanged. Forwarding the raw
 * URL instead would let "/expensive/a%2F..%2F..%2Fcheap/x" be priced as /cheap/x yet served as /expensive/….
 */
export function forwardTarget(decidedPath: string, rawUrl: string): string {
  // Byte-wise, so a path that is not UTF-8 (nginx serves "/caf%E9") is forwarded as the same bytes.
  const path = decidedPath
    .split('/')
    .map((seg) => escapeBytes(pathBytes(seg)).replace(PCHAR_KEPT, (m) => decodeURIComponent(m)))
    .join('/');
  const q = rawUrl.search(/[?#]/);
  return q >= 0 && rawUrl[q] === '?' ? path + rawUrl.slice(q).split('#')[0] : path;
}

/**
 * The path to decide on behind nginx: the one nginx matched and will forward. `matched` is nginx's $uri
 * (decoded bytes, sent by protect.conf as X-L402-URI; it differs from the raw target after a rewrite),
 * `rawUri` its $request_uri. An ambiguous raw target (see pathAmbiguity) is refused, because nginx forwards
 * it as it came when proxy_pass has no URI part; so is an ambiguous matched path.
 */
export function nginxTarget(rawUri: string | undefined, matched: string | undefined): { path?: string; ambiguous?: string } {
  if (rawUri === undefined) return {};
  const q = rawUri.search(/[?]/);
  const rawPath = q >= 0 ? rawUri.slice(0, q) : rawUri;
  const ambiguous = pathAmbiguity(rawPath);
  if (ambiguous) return { ambiguous };
  const bytes = matched ? Buffer.from(matched, 'latin1') : percentDecodeBytes(rawPath);
  const also = decodedPathAmbiguity(bytes);
  if (also) return { ambiguous: also };
  return { path: pathFromBytes(bytes) };
}

function sameSecret(got: string | undefined, want: string): boolean {
  const a = createHash('sha256').update(got ?? '').digest();
  const b = createHash('sha256').update(want).digest();
  return got !== undefined && timingSafeEqual(a, b);
}

function ambiguousPath(method: string, why: string): Rendered {
  const body = JSON.stringify({ type: 'urn:l402:problem:ambiguous-path', title: 'Ambiguous request path', status: 400, reason: 'ambiguous_path', detail: `refused: ${why}; send the path without it` }) + '\n';
  return { status: 400, headers: [['Cache-Control', 'no-store'], ['Content-Type', 'application/problem+json']], body: method === 'HEAD' ? '' : body };
}

/** A CORS preflight: answered by the gate (never the upstream, never an invoice) so the browser sends the paid request. */
function isPreflight(method: string, h: IncomingMessage['headers']): boolean {
  return method === 'OPTIONS' && !!one(h.origin) && !!one(h['access-control-request-method']);
}

const CORS_HEADERS = 'Authorization, X-Cashu, Content-Type, Accept';

function preflight(routeMethods: readonly string[] | undefined, h: IncomingMessage['headers']): Rendered {
  const asked = (one(h['access-control-request-headers']) ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter((x) => /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/.test(x))
    .slice(0, 32);
  const allowHeaders = [...new Set([...CORS_HEADERS.split(', '), ...asked].map((x) => x.toLowerCase()))].join(', ');
  return {
    status: 204,
    headers: [
      ['Access-Control-Allow-Origin', '*'],
      ['Access-Control-Allow-Methods', (routeMethods ?? ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']).join(', ')],
      ['Access-Control-Allow-Headers', allowHeaders],
      ['Access-Control-Max-Age', '600'],
      ['Cache-Control', 'no-store'],
    ],
    body: '',
  };
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

export function createGateServer(gate: Gate): Server {
  const { log, config } = gate.parts;
  const upstream = config.upstream ? new URL(config.upstream) : undefined;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/';
    // nginx's rewrite keeps the original query string; our endpoints ignore it.
    const endpoint = url.split('?')[0];
    if (endpoint === '/_l402/health') {
      // Nothing about the process (no pid): in standalone mode clients can reach this. A random id per process
      // lets operators (and the tests) tell workers apart.
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('Cache-Control', 'no-store');
      res.end(`{"status":"ok","instance":"${INSTANCE}"}\n`);
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
    // nginx's endpoints exist only in nginx mode. With an upstream, l402d faces clients, which must never
    // describe "the original request" (path, client address, outcome) themselves: these are ordinary paths.
    if (!upstream && (endpoint === '/_l402/auth' || endpoint === '/_l402/render')) {
      if (config.nginxSecret && !sameSecret(one(req.headers['x-l402-nginx-secret']), config.nginxSecret)) {
        // Not nginx: no decision, no invoice, nothing about the request. (nginx turns an auth 403 into a 403.)
        res.statusCode = 403;
        res.setHeader('Cache-Control', 'no-store');
        res.end();
        return;
      }
      // Called by nginx: the original request is described by the headers nginx sets.
      const method = (one(req.headers['x-original-method']) ?? 'GET').toUpperCase();
      const rawUri = one(req.headers['x-original-uri']);
      const target = nginxTarget(rawUri, one(req.headers['x-l402-uri']));
      const path = target.path;
      const gr = { ...gate.requestFrom(path, METHOD.test(method) ? method : 'GET', one(req.headers['x-l402-client-addr']), req.headers), uri: rawUri };
      // Refusals nginx turns into @l402_render, which recomputes them from the same headers.
      const early = target.ambiguous
        ? ambiguousPath(method, target.ambiguous)
        : path !== undefined && isPreflight(method, req.headers) && gate.routes.lookup(path)
          ? preflight(gate.routes.lookup(path)!.methods, req.headers)
          : undefined;
      if (early) {
        if (endpoint === '/_l402/render') return send(res, early);
        res.statusCode = 401;
        res.setHeader('Cache-Control', 'no-store');
        res.setHeader('X-L402-Outcome', early.status === 400 ? 'bad_request' : 'preflight');
        res.setHeader('X-L402-Reason', early.status === 400 ? 'ambiguous_path' : 'cors_preflight');
        res.end();
        return;
      }
      if (endpoint === '/_l402/auth') {
        const d = await gate.decide(gr);
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
    const method = (req.method ?? 'GET').toUpperCase();
    const route = path === undefined ? undefined : gate.routes.lookup(path);
    if (route && isPreflight(method, req.headers)) {
      req.resume();
      return send(res, preflight(route.methods, req.headers));
    }
    const gr = { ...gate.requestFrom(path, method, req.socket.remoteAddress, req.headers), uri: url };
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
