// HTTP front of l402d: the nginx auth_request endpoint, the error_page render endpoint, a health check,
// and (when `upstream` is configured) a standalone reverse proxy for machines without nginx.
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { normalizePath } from '../policy/routes.js';
import { REQUEST_ID } from '../store/abandon-claim.js';
import { randomBytes } from 'node:crypto';
import type { Gate } from './gate.js';
import type { Rendered } from './render.js';
import { buildManifest } from './manifest.js';
import { handlePageEndpoint } from './page-endpoints.js';
import type { Decision } from '../policy/decide.js';
import { isGrpc } from './negotiate.js';

// A method token as nginx accepts it (A-Z, '_' and '-'; nginx has no length limit of its own): decided on
// exactly as received, never mapped to another. Longer than any method a route can name is refused.
const METHOD = /^[A-Z_-]{1,64}$/;
/** The request headers that carry a payment credential (gRPC metadata keys included). */
const CREDENTIAL_HEADERS = ['authorization', 'x-cashu', 'token', 'macaroon'] as const;
/** An Authorization value carrying a payment credential the gate consumes (anything else is the app's own). */
const PAYMENT_SCHEME = /^\s*(l402|lsat|cashu)(\s|$)/i;
/** Identity headers the gate gives the upstream of a paid request; no client-sent header of these names passes. */
const IDENTITY_PREFIX = 'x-l402-';
const MANIFEST_PATH = '/.well-known/l402-services';

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * A credential header sent more than once with different values: the gate would have to pick one (Node keeps
 * the first Authorization and drops the rest), so it refuses instead. Identical repeats are one credential.
 */
function ambiguousCredential(req: IncomingMessage): string | undefined {
  // token/macaroon are credentials only on gRPC calls (Gate.requestFrom); elsewhere they are the app's.
  const grpc = isGrpc(one(req.headers['content-type']), one(req.headers['x-original-protocol']));
  for (const name of CREDENTIAL_HEADERS) {
    if (!grpc && (name === 'token' || name === 'macaroon')) continue;
    const all = req.headersDistinct[name];
    if (all && new Set(all.map((v) => v.trim())).size > 1) return name;
  }
  return undefined;
}

/** What the upstream of a paid request may know: never the credential, only who paid how. */
function identityHeaders(d: Decision): Array<[string, string]> {
  if (d.outcome !== 'allow' || d.reason !== 'paid') return [];
  const out: Array<[string, string]> = [['X-L402-Route', d.route.id], ['X-L402-Rail', d.rail]];
  if (d.rail === 'lightning') out.push(['X-L402-Token-Id', d.tokenId]);
  else out.push(['X-L402-Amount-Msat', String(d.amountMsat)]);
  return out;
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

function proxy(
  upstream: URL,
  target: string,
  req: IncomingMessage,
  res: ServerResponse,
  extra: Array<[string, string]>,
  identity: { headers: Array<[string, string]>; forwardCredentials: boolean },
  onError: (e: Error) => void,
): void {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k) && !k.startsWith(IDENTITY_PREFIX)) headers[k] = v;
  // Forward identity, not secrets: the credential the gate consumed stays here unless the operator opts in.
  // (Standalone mode speaks HTTP/1.1 only, so gRPC's token/macaroon metadata are never read nor stripped.)
  if (!identity.forwardCredentials) {
    delete headers['x-cashu'];
    if (typeof headers.authorization === 'string' && PAYMENT_SCHEME.test(headers.authorization)) delete headers.authorization;
  }
  for (const [k, v] of identity.headers) headers[k.toLowerCase()] = v;
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
    // Nothing l402d answers itself is for nginx to keep, unless the auth answer says how long (below).
    if (endpoint?.startsWith('/_l402/')) res.setHeader('X-Accel-Expires', '0');
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
    if (endpoint === '/_l402/auth' || endpoint === '/_l402/render' || (endpoint === '/_l402/release' && !upstream)) {
      // Called by nginx: the original request is described by the headers nginx sets. The method is the
      // exact one nginx received; a missing or unrepresentable one is refused, never decided as another.
      const method = req.headers['x-original-method'];
      const methodOk = typeof method === 'string' && METHOD.test(method);
      const rawUri = one(req.headers['x-original-uri']);
      const path = rawUri === undefined ? undefined : normalizePath(rawUri);
      // The request's identity is nginx's $request_id, set by the snippets (a client's header of that name is
      // replaced). In standalone mode clients talk to us directly: their header is never believed.
      const requestId = upstream ? undefined : one(req.headers['x-l402-request-id']);
      const gr = { ...gate.requestFrom(path, methodOk ? method : 'GET', one(req.headers['x-l402-client-addr']), req.headers), uri: rawUri, requestId: requestId !== undefined && REQUEST_ID.test(requestId) ? requestId : undefined };
      const ambiguous = ambiguousCredential(req);
      if (endpoint === '/_l402/release') {
        // nginx's error_page for its own 502/504 from the protected upstream (protect.conf): this request
        // was allowed but not served. $upstream_status lists every try ("502, 504" or "502 : 504"): the last counts.
        const last = (one(req.headers['x-l402-upstream-status']) ?? '').split(/[\s,:]+/).filter(Boolean).pop();
        req.resume();
        send(res, await gate.releaseAfterUpstreamFailure(gr, last === '504' ? 504 : 502));
        return;
      }
      if (endpoint === '/_l402/auth') {
        const d: Decision | { outcome: 'method_not_allowed' | 'invalid'; reason: string } = !methodOk
          ? { outcome: 'method_not_allowed', reason: 'bad_method' }
          : ambiguous
            ? { outcome: 'invalid', reason: 'malformed_credential' }
            : await gate.decide(gr);
        if (!methodOk) log.info({ event: 'bad_method', path }, 'refused a request whose method cannot be represented');
        if (ambiguous) log.info({ event: 'ambiguous_credential', header: ambiguous, path }, 'refused a request with two different credentials');
        const cacheSecs = 'route' in d ? gate.cacheSecondsFor(d) : 0;
        // nginx's auth cache (server.conf) keeps only answers that carry a positive X-Accel-Expires.
        if (cacheSecs > 0) res.setHeader('X-Accel-Expires', String(cacheSecs));
        else res.setHeader('Cache-Control', 'no-store');
        if (d.outcome === 'allow') {
          if (d.reason === 'dry_run') for (const [k, v] of await gate.dryRunHeaders(d, gr)) res.setHeader(k, v);
          for (const [k, v] of identityHeaders(d)) res.setHeader(k, v);
          res.statusCode = 200;
          res.end();
          return;
        }
        // nginx turns this 401 into `error_page 401 = @l402`, which calls /_l402/render with these values.
        res.statusCode = 401;
        res.setHeader('X-L402-Outcome', d.outcome);
        res.setHeader('X-L402-Reason', d.reason);
        if (d.outcome === 'rate_limited' && 'retryAfterSecs' in d) res.setHeader('X-L402-Retry-After', String(d.retryAfterSecs));
        if (d.outcome === 'cashu_rejected' && 'detail' in d) res.setHeader('X-L402-Detail', d.detail.replace(/[^\x20-\x7e]/g, '?').slice(0, 300));
        res.end();
        return;
      }
      const retry = Number(one(req.headers['x-l402-retry-after']));
      const detail = one(req.headers['x-l402-detail']);
      // The render never sells what the auth answer could not decide on.
      if (!methodOk) send(res, await gate.render('method_not_allowed', 'bad_method', gr, req.headers));
      else send(res, await gate.render(one(req.headers['x-l402-outcome']), one(req.headers['x-l402-reason']), gr, req.headers, { retryAfterSecs: Number.isInteger(retry) ? retry : undefined, detail }));
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
    // Node's parser accepts only the methods it knows (see clientError below); decided on exactly. This
    // request's own identity (never a client's header): a single-use claim made for it can be given back if
    // the upstream fails before answering.
    const methodOk = req.method !== undefined && METHOD.test(req.method);
    const gr = { ...gate.requestFrom(path, methodOk ? req.method! : 'GET', req.socket.remoteAddress, req.headers), uri: url, requestId: randomBytes(16).toString('hex') };
    if (!methodOk || ambiguousCredential(req)) {
      req.resume();
      send(res, await gate.render(methodOk ? 'invalid' : 'method_not_allowed', methodOk ? 'malformed_credential' : 'bad_method', gr, req.headers));
      return;
    }
    const d = await gate.decide(gr);
    // Only a usable path can be allowed (decide refuses the rest); what is forwarded is what was decided on.
    if (d.outcome === 'allow' && path !== undefined) {
      const extra = d.reason === 'dry_run' ? await gate.dryRunHeaders(d, gr) : [];
      proxy(upstream, forwardTarget(path, url), req, res, extra, { headers: identityHeaders(d), forwardCredentials: config.forwardPaymentCredentials }, (e) => {
        log.warn({ event: 'upstream_error', err: e.message }, 'upstream error');
        if (res.headersSent) {
          res.destroy();
          return;
        }
        // Nothing of the upstream's answer reached the client: not served, so the payment still pays.
        gate.releaseAfterUpstreamFailure(gr, 502).then(
          (r) => (res.headersSent || res.destroyed ? res.destroy() : send(res, r)),
          () => res.destroy(),
        );
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
  // Node drops headers past maxHeadersCount without a word, and Authorization could be one of them: no count
  // limit (maxHeaderSize bounds the bytes). Behind nginx the subrequests carry only the headers l402d reads.
  server.maxHeadersCount = 0;
  // Node's parser refuses what it cannot read (an unknown method, oversized headers) before any handler runs:
  // answer that with a problem document and close, rather than Node's bare 400.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || (err.code as string | undefined) === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const code = err.code ?? '';
    const [status, title, reason] =
      code === 'HPE_INVALID_METHOD'
        ? [400, 'Bad Request', 'bad_method']
        : code === 'HPE_HEADER_OVERFLOW'
          ? [431, 'Request Header Fields Too Large', 'headers_too_large']
          : code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? [408, 'Request Timeout', 'request_timeout']
            : [400, 'Bad Request', 'bad_request'];
    const body = `${JSON.stringify({ type: `urn:l402:problem:${reason.replace(/_/g, '-')}`, title, status, reason })}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${title}\r\nContent-Type: application/problem+json\r\nCache-Control: no-store\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  return server;
}
