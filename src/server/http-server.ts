// HTTP front of l402d: the nginx auth_request endpoint, the error_page render endpoint, a health check,
// and (when `upstream` is configured) a standalone reverse proxy for machines without nginx.
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { decodedPathAmbiguity, normalizePath, pathAmbiguity, pathBytes, pathFromBytes, percentDecodeBytes } from '../policy/routes.js';
import { ownRequestId } from '../policy/claims.js';
import { upstreamFailure, type Gate } from './gate.js';
import type { Rendered } from './render.js';
import { buildManifest } from './manifest.js';
import { buildOpenApi, OPENAPI_PATH } from './openapi.js';
import { handlePageEndpoint } from './page-endpoints.js';
import type { Decision } from '../policy/decide.js';
import { bodyClientError, clientBodyFailure, unwatchBody, watchBody, type ProxyFailure } from './proxy-failure.js';
import { isGrpc } from './negotiate.js';
import { nginxHostHeader } from './host-header.js';
import { MAX_COOKIE_HEADER, noGateCookie, siteCookies } from '../protocol/cookie.js';
import { isOverrideHeader } from '../protocol/method-override.js';
import { errorShape } from './process-policy.js';
import { overrideCheck } from './override-check.js';

// A method token as nginx accepts it (A-Z, '_' and '-'; nginx has no length limit of its own): decided on
// exactly as received, never mapped to another. Longer than any method a route can name is refused.
const METHOD = /^[A-Z_-]{1,64}$/;
/** The request headers that carry a payment credential (gRPC metadata keys included). */
const CREDENTIAL_HEADERS = ['authorization', 'x-cashu', 'grpc-metadata-macaroon', 'token', 'macaroon', 'payment-signature', 'x-payment'] as const;
const CREDENTIAL_NAME_LENGTHS = new Set(CREDENTIAL_HEADERS.map((n) => n.length));
/** An Authorization value carrying a payment credential (anywhere in it, as upstream.conf's map reads it). */
const PAYMENT_SCHEME = /(^|[\s,])(l402|lsat|cashu|payment)(\s|$)/i;
/** Identity headers the gate gives the upstream of a paid request; no client-sent header of these names passes. */
const IDENTITY_PREFIX = 'x-l402-';
/** A pin no route id can equal (ids are letters, digits and _ . / : -): "no route" (route_pins: required without a pin, or no path sent). */
const NO_PIN = ' none';
let noPinWarnedAt = -Infinity;
function warnNoPin(log: { warn: (o: object, msg: string) => void }): void {
  if (Date.now() - noPinWarnedAt < 60_000) return;
  noPinWarnedAt = Date.now();
  log.warn({ event: 'no_route_pin' }, 'route_pins: required, and a protected location sent no $l402_route_pin: refused (403 no_route); add `set $l402_route_pin <route id>;` to it');
}
let noPathWarnedAt = -Infinity;
function warnNoPath(log: { warn: (o: object, msg: string) => void }): void {
  if (Date.now() - noPathWarnedAt < 60_000) return;
  noPathWarnedAt = Date.now();
  log.warn(
    { event: 'no_matched_path' },
    'a protected location sent no X-L402-URI (a location nested in a paid one, or a `rewrite ... break` before `include l402/protect.conf`, or snippets older than l402d): refused (403 no_route); include protect.conf first in every paid location, nested ones too, and regenerate the snippets',
  );
}
let foreignHostWarnedAt = -Infinity;
function warnForeignHost(log: { warn: (o: object, msg: string) => void }): void {
  if (Date.now() - foreignHostWarnedAt < 60_000) return;
  foreignHostWarnedAt = Date.now();
  log.warn({ event: 'foreign_host' }, 'refused a request naming a domain as Host (403): behind nginx only nginx calls l402d, as its upstream `l402d` or an address; a browser page rebinding its DNS name to this listener sends its domain. Proxy to l402d by address or upstream name, or set nginx_secret');
}
const INSTANCE = randomBytes(6).toString('hex');
const MANIFEST_PATH = '/.well-known/l402-services';

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * A credential header sent more than once with different values: the gate would have to pick one (Node keeps
 * the first Authorization and drops the rest), so it refuses instead. Identical repeats are one credential.
 */
function ambiguousCredential(req: IncomingMessage, grpc: boolean): string | undefined {
  // token/macaroon are credentials only on gRPC calls (Gate.requestFrom); elsewhere they are the app's.
  // Read from the raw list (names as sent, in order): Node's headersDistinct builds a map of every header per request.
  const raw = req.rawHeaders;
  let first: Map<string, string> | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const sent = raw[i]!;
    if (!CREDENTIAL_NAME_LENGTHS.has(sent.length)) continue;
    const name = sent.toLowerCase();
    if (!(CREDENTIAL_HEADERS as readonly string[]).includes(name) || (!grpc && (name === 'token' || name === 'macaroon'))) continue;
    const value = raw[i + 1]!.trim();
    first ??= new Map();
    const seen = first.get(name);
    if (seen === undefined) first.set(name, value);
    else if (seen !== value) return name;
  }
  return undefined;
}

/** What the upstream of a paid request may know: never the credential, only who paid how. */
function identityHeaders(d: Decision): Array<[string, string]> {
  if (d.outcome !== 'allow' || d.reason !== 'paid') return [];
  const out: Array<[string, string]> = [['X-L402-Route', d.route.id], ['X-L402-Rail', d.rail]];
  if (d.rail === 'lightning') {
    out.push(['X-L402-Token-Id', d.tokenId]);
    // The capabilities granted (sold, narrowed by the holder's caveats); absent when none were.
    if (d.capabilities && d.capabilities.length > 0) out.push(['X-L402-Capabilities', d.capabilities.join(',')]);
  } else {
    out.push(['X-L402-Amount-Msat', String(d.amountMsat)]);
    // Ecash pays for the route as it is sold now (no credential to narrow it): its whole set, as MPP and x402 payers get.
    if (d.route.capabilities && d.route.capabilities.length > 0) out.push(['X-L402-Capabilities', d.route.capabilities.join(',')]);
  }
  return out;
}

/**
 * For the client of a request paid with MPP or x402: the receipt, kept out of shared caches (MPP: responses with
 * Payment-Receipt carry Cache-Control: private) and readable by browser clients.
 */
function receiptHeaders(d: Decision, o: { nginx?: boolean } = {}): Array<[string, string]> {
  if (d.outcome !== 'allow' || d.reason !== 'paid' || d.rail !== 'lightning' || !d.receipt) return [];
  // To nginx (the auth answer): under names of our own, so the auth answer's own caching headers stay as they are.
  if (o.nginx) return [d.receipt, ['X-L402-Receipt-Cache', 'private'], ['X-L402-Receipt-Expose', d.receipt[0]]];
  return [d.receipt, ['Cache-Control', 'private'], ['Access-Control-Expose-Headers', d.receipt[0]]];
}

/** For the client of a request drawn from a prepaid balance: what is left (never cached: each request draws). */
function balanceHeaders(d: Decision): Array<[string, string]> {
  if (d.outcome !== 'allow' || d.reason !== 'paid' || d.rail !== 'lightning' || d.balanceMsat === undefined) return [];
  return [['X-L402-Balance-Msat', String(d.balanceMsat)]];
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
  // A pure function of the two headers, asked again for every request on the same path: remembered for
  // short inputs (the key's length prefix keeps two different pairs apart).
  const key = rawUri.length + (matched?.length ?? 0) <= TARGET_MEMO_MAX_INPUT ? `${matched === undefined ? '-' : matched.length}:${matched ?? ''}${rawUri}` : undefined;
  const known = key === undefined ? undefined : targetMemo.get(key);
  if (known) return known;
  const t = Object.freeze(readTarget(rawUri, matched));
  if (key !== undefined) {
    if (targetMemo.size >= TARGET_MEMO_ENTRIES) targetMemo.clear();
    targetMemo.set(key, t);
  }
  return t;
}
const TARGET_MEMO_ENTRIES = 4096;
const TARGET_MEMO_MAX_INPUT = 512;
const targetMemo = new Map<string, { path?: string; ambiguous?: string }>();

function readTarget(rawUri: string, matched: string | undefined): { path?: string; ambiguous?: string } {
  const q = rawUri.search(/[?]/);
  const rawPath = q >= 0 ? rawUri.slice(0, q) : rawUri;
  const ambiguous = pathAmbiguity(rawPath);
  if (ambiguous) return { ambiguous };
  const bytes = matched ? Buffer.from(matched, 'latin1') : percentDecodeBytes(rawPath);
  const also = decodedPathAmbiguity(bytes) ?? onceMoreDecodedAmbiguity(bytes);
  if (also) return { ambiguous: also };
  return { path: pathFromBytes(bytes) };
}

/**
 * nginx forwards $uri as it decoded it, not escaped again (`proxy_pass http://app$uri;`; a regex capture is
 * escaped again), so "/api/%252e%252e/admin" is priced as $uri "/api/%2e%2e/admin" and an upstream that decodes
 * resolves it to /admin. A decoded path whose own escapes would decode to an ambiguous one is refused as that one
 * would be. A literal "%" not followed by two hex digits ("/files/100%") is only a character.
 */
function onceMoreDecodedAmbiguity(decoded: Buffer): string | undefined {
  // `proxy_pass http://app$uri;` forwards "?" and "#" decoded as syntax: "/api/gold%3Fx", matched as "/api/gold?x"
  // (not the exact route "= /api/gold"), would reach the upstream as /api/gold.
  if (decoded.includes(0x3f) || decoded.includes(0x23)) return 'an encoded "?" or "#" in the path (%3F, %23), which nginx may forward decoded';
  if (!decoded.includes(0x25)) return undefined;
  const text = decoded.toString('latin1');
  if (/%(?:2f|5c)/i.test(text)) return 'an encoded "/" or "\\" (%2F, %5C) left after decoding (sent twice encoded)';
  const why = decodedPathAmbiguity(percentDecodeBytes(text));
  return why === undefined ? undefined : `${why}, after decoding once more (sent twice encoded)`;
}

/** Compares digests (equal length whatever was sent); `wantDigest` is the configured secret's, made once. */
function sameSecret(got: string | undefined, wantDigest: Buffer): boolean {
  const a = createHash('sha256').update(got ?? '').digest();
  return got !== undefined && timingSafeEqual(a, wantDigest);
}

/** The digest sameSecret compares against, per configured secret (a reload may change it). */
const secretDigests = new Map<string, Buffer>();
function secretDigest(secret: string): Buffer {
  let d = secretDigests.get(secret);
  if (!d) {
    if (secretDigests.size >= 16) secretDigests.clear();
    d = createHash('sha256').update(secret).digest();
    secretDigests.set(secret, d);
  }
  return d;
}

/**
 * The auth subrequest's connection as the decision's "nginx went away" signal: it fires only when the
 * connection closes before the answer was written. Cheaper than an AbortController per request (its signal
 * and event machinery were a measurable share of each answer); decide() needs only these three members.
 */
class ConnectionGone {
  aborted = false;
  private listeners: Array<() => void> = [];
  constructor(res: ServerResponse) {
    res.once('close', () => {
      if (res.writableEnded) return;
      this.aborted = true;
      const l = this.listeners;
      this.listeners = [];
      for (const fn of l) fn();
    });
  }
  addEventListener(_type: 'abort', fn: () => void): void {
    this.listeners.push(fn);
  }
  removeEventListener(_type: 'abort', fn: () => void): void {
    this.listeners = this.listeners.filter((f) => f !== fn);
  }
}

function ambiguousPath(method: string, why: string, grpc = false): Rendered {
  if (grpc) return grpcRefusal(3, 'ambiguous request path');
  const body = JSON.stringify({ type: 'urn:l402:problem:ambiguous-path', title: 'Ambiguous request path', status: 400, reason: 'ambiguous_path', detail: `refused: ${why}; send the path without it` }) + '\n';
  return { status: 400, headers: [['Cache-Control', 'no-store'], ['Content-Type', 'application/problem+json']], body: method === 'HEAD' ? '' : body };
}

/**
 * A Cookie header that holds a gate cookie and is too long to read for a credential and to hand back to nginx
 * without it (the auth answer carries the site's cookies then, see protect.conf): refused before any
 * decision, so nothing is spent. (Without a gate cookie any size passes: nginx forwards the header as is.)
 */
function cookieTooLarge(method: string, grpc = false): Rendered {
  if (grpc) return grpcRefusal(3, 'cookie header too large');
  const body = JSON.stringify({ type: 'urn:l402:problem:cookie-too-large', title: 'Request Header Fields Too Large', status: 431, reason: 'cookie_too_large', detail: `the Cookie header holds a payment cookie and is longer than ${MAX_COOKIE_HEADER} bytes` }) + '\n';
  return { status: 431, headers: [['Cache-Control', 'no-store'], ['Content-Type', 'application/problem+json']], body: method === 'HEAD' ? '' : body };
}

/** A request naming another method for the upstream to run (see protocol/method-override.ts): never decided. */
/** A 401 that nginx renders but the gate did not decide (another access check refused first). */
function notDecided(method: string, grpc = false): Rendered {
  if (grpc) return grpcRefusal(16, 'access denied');
  const body = JSON.stringify({ type: 'urn:l402:problem:unauthorized', title: 'Unauthorized', status: 401, reason: 'access_denied', detail: 'refused by another access check before payment was considered' }) + '\n';
  return { status: 401, headers: [['Cache-Control', 'no-store'], ['Content-Type', 'application/problem+json']], body: method === 'HEAD' ? '' : body };
}

/** A gRPC call's refusal: a gRPC status (Trailers-Only), never a problem document its client reports as INTERNAL. */
function grpcRefusal(code: number, message: string): Rendered {
  return { status: 200, headers: [['Cache-Control', 'no-store'], ['Content-Type', 'application/grpc'], ['grpc-status', String(code)], ['grpc-message', encodeURIComponent(message)]], body: '' };
}

/** A CORS preflight: answered by the gate (never the upstream, never an invoice) so the browser sends the paid request. */
function isPreflight(method: string, h: IncomingMessage['headers']): boolean {
  return method === 'OPTIONS' && !!one(h.origin) && !!one(h['access-control-request-method']);
}

const CORS_HEADERS = 'Authorization, X-Cashu, Payment-Signature, X-Payment, Content-Type, Accept';

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

function proxy(
  upstream: URL,
  target: string,
  req: IncomingMessage,
  res: ServerResponse,
  extra: Array<[string, string]>,
  identity: { headers: Array<[string, string]>; forwardCredentials: boolean },
  timeoutMs: number,
  onFailure: (f: ProxyFailure, e: Error) => void,
): void {
  // The client left while its request was decided: nothing is forwarded, and nothing is given back.
  if (res.destroyed || req.socket.destroyed) return void req.destroy();
  const headers: Record<string, string | string[]> = {};
  // Every spelling of an identity header: CGI, WSGI and Rack read "X_L402_Token_Id" as "X-L402-Token-Id".
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k) && !k.replace(/_/g, '-').startsWith(IDENTITY_PREFIX)) headers[k] = v;
  // A method or path named for the upstream to use instead of the request's own (X-HTTP-Method-Override,
  // X-Original-URL, any spelling): never forwarded, as protect.conf empties them behind nginx. One naming another
  // was refused before; one naming the same raw target would still hand an upstream that reads it the raw form
  // ("/expensive/../cheap/x", decided and forwarded as /cheap/x).
  for (const k of Object.keys(headers)) if (isOverrideHeader(k)) delete headers[k];
  // Forward identity, not secrets: the credential the gate consumed stays here unless the operator opts in.
  // (Standalone mode speaks HTTP/1.1 only, so gRPC's token/macaroon metadata are never read nor stripped.)
  if (!identity.forwardCredentials) {
    delete headers['x-cashu'];
    delete headers['grpc-metadata-macaroon'];
    delete headers['payment-signature'];
    delete headers['x-payment'];
    if (typeof headers.authorization === 'string' && PAYMENT_SCHEME.test(headers.authorization)) delete headers.authorization;
    // The gate's credential cookies stay here too; the site's own cookies pass (Node joined them into one).
    const site = siteCookies(typeof headers.cookie === 'string' ? headers.cookie : undefined);
    if (site) headers.cookie = site;
    else delete headers.cookie;
  }
  for (const [k, v] of identity.headers) headers[k.toLowerCase()] = v;
  // The body is framed explicitly, as the client framed it. Node's parser has decoded a chunked body; without
  // the header Node's client sends a GET, HEAD, DELETE or OPTIONS body with neither Content-Length nor chunked
  // framing, and the upstream would read that body as further requests that were never decided on (smuggling).
  // Node's strict parser refuses Transfer-Encoding with Content-Length, and any coding not ending in chunked.
  // Only plain "chunked" gets here (createGateServer refuses any other transfer coding).
  if (req.headers['transfer-encoding'] !== undefined) headers['transfer-encoding'] = 'chunked';
  headers['x-forwarded-for'] = req.socket.remoteAddress ?? '';
  headers.host = upstream.host;
  const base = upstream.pathname.replace(/\/$/, '');
  const send = upstream.protocol === 'https:' ? httpsRequest : httpRequest;
  const up = send(
    { protocol: upstream.protocol, hostname: upstream.hostname, port: upstream.port, method: req.method, path: base + target, headers },
    (ur) => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
      for (const [k, v] of extra) {
        const name = k.toLowerCase();
        // The upstream's own exposed headers stay exposed; a receipt header of the upstream's is never the client's.
        const prev = out[name];
        out[name] = name === 'access-control-expose-headers' && typeof prev === 'string' && prev.trim() !== '' ? `${prev}, ${v}` : v;
      }
      if (extra.some(([k]) => /^(payment-receipt|payment-response)$/i.test(k)) === false) {
        delete out['payment-receipt'];
        delete out['payment-response'];
      }
      // Node's client parser accepts a status line Node's server cannot write ("099", "000": below 100), and
      // writeHead throws on it here, outside any request's promise: an uncaught exception, so l402d would exit
      // for every client on one upstream answer. Anything this relay cannot write is the upstream's failure
      // after it answered (its bytes arrived): a 502, nothing given back (security.md H).
      try {
        res.writeHead(ur.statusCode ?? 502, out);
      } catch (e) {
        ur.destroy();
        fail({ by: 'upstream', status: 502, answered: true, releasable: false }, e instanceof Error ? e : new Error('upstream answer not relayable'));
        return;
      }
      ur.pipe(res);
    },
  );
  // Whose failure ends the request decides whether a payment goes back (security.md H): only the upstream's,
  // after the client's whole request had arrived (or when the upstream never accepted the connection, so read
  // nothing of it), with the client still waiting. A client that stalls, breaks or abandons its own body never
  // gets it back, whatever the upstream then does.
  let settled = false;
  let connected = false;
  let timedOut = false;
  const socket = req.socket;
  const fail = (f: ProxyFailure, e: Error): void => {
    if (settled) return;
    settled = true;
    if (res.headersSent || res.destroyed) {
      // The upstream had started answering (so it handled the request): nothing to give back, nothing to add.
      up.destroy();
      res.destroy();
      return;
    }
    // A body not read to its end leaves the connection unusable for another request.
    if (!req.complete) res.shouldKeepAlive = false;
    req.unpipe(up);
    up.destroy();
    onFailure(f, e);
  };
  // Node's parser gave up on the client's body (its requestTimeout, a malformed or truncated body): the client's.
  // After the body ended, it gave up on a request pipelined behind this one: this answer is the connection's last.
  const onClientBody = (why: 'timeout' | 'malformed'): void => {
    if (!req.complete) return fail({ by: 'client', why }, new Error(`client request body: ${why}`));
    if (!res.headersSent) res.shouldKeepAlive = false;
    else res.once('finish', () => socket.end());
  };
  // Watched until the answer is written: a parser error meanwhile is this request's, and its answer closes.
  if (!req.complete) watchBody(socket, onClientBody);
  // The client left before its answer was written: nothing to answer and nothing given back; the upstream's
  // request ends with it (as behind nginx, whose proxy_ignore_client_abort is off by default).
  res.once('close', () => {
    unwatchBody(socket, onClientBody);
    if (settled || res.writableFinished) return;
    settled = true;
    up.destroy();
  });
  // Any byte of an answer means the upstream received and handled the request, even when it is one l402d cannot
  // read (a header too large for Node's parser, which a client can provoke from an app that echoes a header):
  // as nginx's $upstream_bytes_received behind nginx, nothing is given back then.
  let upSocket: Socket | undefined;
  let readBefore = 0;
  const heard = (): boolean => upSocket !== undefined && upSocket.bytesRead > readBefore;
  const connectTimedOut = (): void => {
    if (settled || connected) return;
    timedOut = true;
    up.destroy(new Error('upstream did not accept the connection in time'));
  };
  up.once('socket', (s: Socket) => {
    upSocket = s;
    readBefore = s.bytesRead;
    // A kept-alive connection was accepted earlier; a new one counts once the upstream accepted it.
    if (!s.connecting) connected = true;
    else {
      // Node starts the idle timeout below only once connected: an upstream address that drops SYNs (a
      // firewall, a dead host, a full accept queue), or whose name never resolves, would hold the request until
      // the OS gives up (minutes), or until whatever timeout Node's global agent has. The connect (DNS lookup
      // included) has its own bound; the upstream accepted nothing, so it is the upstream's failure, whatever
      // the client's body is doing: 504, and the payment goes back (releasable: not connected).
      // An https upstream is connected once its TLS handshake is done (a handshake that stalls counts as the connect).
      const connectTimer = setTimeout(connectTimedOut, Math.min(timeoutMs, UPSTREAM_CONNECT_TIMEOUT_MS));
      s.once(s instanceof TLSSocket ? 'secureConnect' : 'connect', () => {
        connected = true;
        clearTimeout(connectTimer);
      });
      s.once('close', () => clearTimeout(connectTimer));
    }
  });
  // The upstream connection staying silent ends the request, as nginx's proxy_read_timeout does. While the
  // client's body is incomplete and nothing waits for the upstream to read it, the silence is the client's:
  // it stopped sending (408, as nginx's client_body_timeout). Otherwise, before any response byte, it is the
  // upstream's: a 504 that gives the payment back, never a client left waiting for ever on a spent credential.
  up.setTimeout(timeoutMs, () => {
    if (settled) return;
    // Before the upstream accepted (Node's agent may time a connecting socket too): never the client's silence.
    if (!connected) return connectTimedOut();
    if (!req.complete && !up.writableNeedDrain && !res.headersSent) return fail({ by: 'client', why: 'timeout' }, new Error(`client sent nothing of its body for ${timeoutMs} ms`));
    timedOut = true;
    up.destroy(new Error(`upstream sent nothing for ${timeoutMs} ms`));
  });
  up.on('error', (e) => fail({ by: 'upstream', status: timedOut ? 504 : 502, answered: heard(), releasable: req.complete || !connected }, e));
  req.pipe(up);
}

/** The longest l402d waits for the upstream to accept a connection (DNS lookup included), at most upstream_timeout_ms. */
const UPSTREAM_CONNECT_TIMEOUT_MS = 5_000;

/**
 * On a gRPC call, bytes an upstream may send before any answer (HTTP/2 connection frames); past it, the
 * upstream answered. (A proxy_pass answer too big for nginx is at least proxy_buffer_size, 1 KiB or more.)
 */
const GRPC_PREAMBLE_BYTES = 512;

/** nginx's `$msec` ("1733541234.567", seconds) as ms since the epoch; undefined unless well-formed. */
export function sentAtMs(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,12}(\.\d{1,3})?$/.test(v)) return undefined;
  return Math.round(Number(v) * 1000);
}

/** The decision deadline nginx's snippets were generated for (they wait that plus a margin). */
function deadlineMs(v: string | undefined): number | undefined {
  return v !== undefined && /^\d{1,6}$/.test(v) && Number(v) > 0 ? Number(v) : undefined;
}

/** Standalone mode's answer to a request framed with a transfer coding other than chunked alone (see handleOn). */
function unsupportedTransferCoding(): Rendered {
  const body = `${JSON.stringify({ type: 'urn:l402:problem:bad-request', title: 'Bad Request', status: 400, reason: 'bad_request', detail: 'Transfer-Encoding must be "chunked" alone.' })}\n`;
  return { status: 400, headers: [['Content-Type', 'application/problem+json'], ['Cache-Control', 'no-store']], body };
}

/** A whole HTTP/1.1 problem answer written on a raw socket (before or instead of Node's request handling). */
function problemReply(status: number, title: string, reason: string): string {
  const body = `${JSON.stringify({ type: `urn:l402:problem:${reason.replace(/_/g, '-')}`, title, status, reason })}\n`;
  return `HTTP/1.1 ${status} ${title}\r\nContent-Type: application/problem+json\r\nCache-Control: no-store\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/** `current`: the gate a request starts on (a reload swaps it; a request in flight finishes on its own). */
export function createGateServer(gate: Gate, current: () => Gate = () => gate): Server {
  const { log, config } = gate.parts;
  const upstream = config.upstream ? new URL(config.upstream) : undefined;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    return handleOn(current(), req, res);
  };
  const handleOn = async (gate: Gate, req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const { config } = gate.parts;
    const url = req.url ?? '/';
    // nginx's rewrite keeps the original query string; our endpoints ignore it.
    const endpoint = url.split('?')[0];
    // Nothing l402d answers itself is for nginx to keep, unless the auth answer says how long (below).
    if (endpoint?.startsWith('/_l402/')) res.setHeader('X-Accel-Expires', '0');
    if (endpoint === '/_l402/health') {
      // Nothing about the process (no pid): in standalone mode clients can reach this. A random id per process
      // lets operators (and the tests) tell workers apart.
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('Cache-Control', 'no-store');
      res.end(`{"status":"ok","instance":"${INSTANCE}"}\n`);
      return;
    }
    // Behind nginx only nginx calls l402d, naming the upstream block (`l402d`, one label) or an address as Host.
    // A web page in a browser on the same host can reach the loopback listener too, by DNS rebinding (its own
    // name made to resolve to 127.0.0.1): it names that domain, and is answered nothing (with nginx_secret set,
    // the secret decides instead).
    if (!upstream && !config.nginxSecret && !nginxHostHeader(req.headers.host)) {
      warnForeignHost(log);
      res.statusCode = 403;
      res.setHeader('Cache-Control', 'no-store');
      res.end();
      return;
    }
    const discovery = endpoint === MANIFEST_PATH && config.manifest.enabled ? 'manifest' : endpoint === OPENAPI_PATH && config.manifest.openapi ? 'openapi' : undefined;
    if (discovery) {
      res.setHeader('Access-Control-Allow-Origin', '*');
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.statusCode = 405;
        res.setHeader('Allow', 'GET, HEAD');
        res.end();
        return;
      }
      const body = discovery === 'manifest' ? await buildManifest(config, gate.parts.backend.kind, gate.price) : await buildOpenApi(config, gate.price);
      // The discovery draft asks for application/json and recommends five minutes of caching.
      res.setHeader('Content-Type', discovery === 'manifest' ? 'application/json; charset=utf-8' : 'application/json');
      res.setHeader('Cache-Control', discovery === 'manifest' ? 'public, max-age=60' : 'public, max-age=300');
      res.setHeader('Content-Length', Buffer.byteLength(body));
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (await handlePageEndpoint(gate, req, res)) return;
    // nginx's endpoints exist only in nginx mode. With an upstream, l402d faces clients, which must never
    // describe "the original request" (path, client address, outcome, identity) themselves: ordinary paths.
    if (!upstream && (endpoint === '/_l402/auth' || endpoint === '/_l402/render' || endpoint === '/_l402/release')) {
      if (config.nginxSecret && !sameSecret(one(req.headers['x-l402-nginx-secret']), secretDigest(config.nginxSecret))) {
        // Not nginx: no decision, no invoice, nothing about the request. (nginx turns an auth 403 into a 403.)
        res.statusCode = 403;
        res.setHeader('Cache-Control', 'no-store');
        res.end();
        return;
      }
      // Called by nginx: the original request is described by the headers nginx sets. The method is the
      // exact one nginx received; a missing or unrepresentable one is refused, never decided as another.
      const method = req.headers['x-original-method'];
      const methodOk = typeof method === 'string' && METHOD.test(method);
      const rawUri = one(req.headers['x-original-uri']);
      // The path the location serves ($uri where protect.conf ran). None: the location did not run it (see
      // server.conf), so what nginx serves is unknown; the request is refused, never decided on the raw target.
      const matched = one(req.headers['x-l402-uri']);
      const target = nginxTarget(rawUri, matched);
      const path = target.path;
      // The request's identity is nginx's $request_id, set by the snippets (a client's header of that name is
      // replaced).
      const requestId = one(req.headers['x-l402-request-id']);
      // The route the location pinned ($l402_route_pin, set by the operator in nginx, never a client's header:
      // the snippets send only the headers they name): only that route decides this request.
      // route_pins: required: a location without a pin has no route at all (NO_PIN names none), never the path's.
      const routePin = !matched ? NO_PIN : one(req.headers['x-l402-route-pin']) || (config.routePins === 'required' ? NO_PIN : undefined);
      if (!matched && endpoint === '/_l402/auth') warnNoPath(log);
      else if (routePin === NO_PIN && endpoint === '/_l402/auth') warnNoPin(log);
      const gr = gate.requestFrom(path, methodOk ? method : 'GET', one(req.headers['x-l402-client-addr']), req.headers, { uri: rawUri, requestId: ownRequestId(requestId), routePin });
      // A gRPC call (by its content type and protocol) gets its refusals as gRPC statuses.
      const grpc = isGrpc(one(req.headers['content-type']), one(req.headers['x-original-protocol']));
      const ambiguous = ambiguousCredential(req, grpc);
      if (endpoint === '/_l402/release') {
        // protect.conf's post_action: nginx ended this paid request with nothing served and nothing sent upstream
        // (upstream.conf's $l402_abandoned says when). Its answer goes nowhere.
        const abandoned = one(req.headers['x-l402-abandoned']);
        if (abandoned !== undefined) {
          req.resume();
          if (/^(400|408|413|499|009)$/.test(abandoned)) await gate.releaseAbandoned(gr, abandoned);
          res.statusCode = 204;
          res.setHeader('Cache-Control', 'no-store');
          res.end();
          return;
        }
        // nginx's error_page for its own 502/504 from the protected upstream (protect.conf): this request
        // was allowed but not served. $upstream_status lists every try ("502, 504" or "502 : 504"): the last counts.
        const last = (one(req.headers['x-l402-upstream-status']) ?? '').split(/[\s,:]+/).filter(Boolean).pop();
        // $upstream_bytes_received, per try: an upstream that sent any byte of an answer (too big or malformed
        // for nginx, or a 502/504 of its own sent here by an intercepting config) has handled the request, and
        // a client could provoke that on purpose: the payment is not given back. As in standalone mode, only
        // a failure before any response byte releases.
        // A gRPC upstream (grpc_pass) sends HTTP/2 settings on connecting, before any answer: for a gRPC call a
        // response header ($upstream_header_time: a time, not "-") is what counts.
        // The content type is the client's, though: on a proxy_pass location a client calling itself gRPC must
        // not turn the bytes rule off, so for a gRPC call more bytes than an HTTP/2 upstream sends before any
        // answer (SETTINGS, WINDOW_UPDATE, PING, RST_STREAM: well under GRPC_PREAMBLE_BYTES) count too; an answer
        // too big for nginx is at least proxy_buffer_size (4 KiB by default).
        const bytes = one(req.headers['x-l402-upstream-bytes']) ?? '';
        const answered = grpc
          ? /\d/.test(one(req.headers['x-l402-upstream-header-time']) ?? '') || (bytes.match(/\d+/g) ?? []).some((n) => Number(n) >= GRPC_PREAMBLE_BYTES)
          : /[1-9]/.test(bytes);
        req.resume();
        send(res, await gate.releaseAfterUpstreamFailure(gr, last === '504' ? 504 : 502, { answered }));
        return;
      }
      // Refusals nginx turns into @l402_render, which recomputes them from the same headers.
      // On a dry-run route an override passes, reported as the refusal it would get (override-check.ts).
      const override = methodOk ? overrideCheck(method, req.rawHeaders, rawUri, () => (path === undefined ? undefined : gate.routes.lookup(path, routePin)), grpc) : undefined;
      const early: [Rendered, string] | undefined = target.ambiguous
        ? [ambiguousPath(methodOk ? method : 'GET', target.ambiguous, grpc), 'ambiguous_path']
        : (one(req.headers.cookie)?.length ?? 0) > MAX_COOKIE_HEADER && !noGateCookie(one(req.headers.cookie)!)
          ? [cookieTooLarge(methodOk ? method : 'GET', grpc), 'cookie_too_large']
          : override && 'refuse' in override
          ? [override.refuse, 'method_override']
          : methodOk && path !== undefined && isPreflight(method, req.headers) && gate.routes.lookup(path, routePin)
          ? [preflight(gate.routes.lookup(path, routePin)!.methods, req.headers), 'cors_preflight']
          : undefined;
      if (early) {
        if (endpoint === '/_l402/render') return send(res, early[0]);
        res.statusCode = 401;
        res.setHeader('Cache-Control', 'no-store');
        res.setHeader('X-L402-Outcome', early[0].status === 204 ? 'preflight' : 'bad_request');
        res.setHeader('X-L402-Reason', early[1]);
        res.end();
        return;
      }
      if (endpoint === '/_l402/auth') {
        // nginx's give-up point counts from when it sent the subrequest (`$msec`, see server.conf), and a
        // closed connection means nobody will read the answer: the decision's deadline follows both.
        const gone = new ConnectionGone(res);
        const d: Decision | { outcome: 'method_not_allowed' | 'invalid'; reason: string } = !methodOk
          ? { outcome: 'method_not_allowed', reason: 'bad_method' }
          : ambiguous
            ? await gate.refuseAmbiguous(gr)
            : override && 'pass' in override ? override.pass : await gate.decide(gr, { sentAt: sentAtMs(one(req.headers['x-l402-sent-at'])), deadlineMs: deadlineMs(one(req.headers['x-l402-deadline-ms'])), signal: gone });
        if (!methodOk) log.info({ event: 'bad_method', path }, 'refused a request whose method cannot be represented');
        if (ambiguous) log.info({ event: 'ambiguous_credential', header: ambiguous, path }, 'refused a request with two different credentials');
        // Never kept for a request with cookies: the answer hands the site's cookies back (below), and the cache
        // key must not let a request without the credential cookie reuse a pass that one earned.
        const cacheSecs = 'route' in d && !one(req.headers.cookie) ? gate.cacheSecondsFor(d) : 0;
        // nginx's auth cache (server.conf) keeps only answers that carry a positive X-Accel-Expires.
        if (cacheSecs > 0) res.setHeader('X-Accel-Expires', String(cacheSecs));
        else res.setHeader('Cache-Control', 'no-store');
        if (d.outcome === 'allow') {
          if (d.reason === 'dry_run') for (const [k, v] of await gate.dryRunHeaders(d, gr)) res.setHeader(k, v);
          for (const [k, v] of identityHeaders(d)) res.setHeader(k, v);
          // The Cookie header for the upstream (protect.conf): the client's as it is when it holds nothing of the
          // gate's ("keep"), else the one handed back here without the gate's credential cookies ("strip").
          const cookie = one(req.headers.cookie);
          if (cookie !== undefined && cookie !== '') {
            const keep = noGateCookie(cookie);
            res.setHeader('X-L402-Cookie-Mode', keep ? 'keep' : 'strip');
            const site = keep ? '' : siteCookies(cookie);
            if (site) res.setHeader('X-L402-Upstream-Cookie', site);
          }
          // MPP's Payment-Receipt / x402's PAYMENT-RESPONSE: payment-receipts.conf hands them to the client.
          for (const [k, v] of receiptHeaders(d, { nginx: true })) res.setHeader(k, v);
          // What is left on a prepaid balance: balance.conf hands it to the client.
          for (const [k, v] of balanceHeaders(d)) res.setHeader(k, v);
          if (d.reason === 'paid' && d.rail === 'lightning' && d.balanceMsat !== undefined) res.setHeader('X-Accel-Expires', '0');
          res.statusCode = 200;
          res.end();
          return;
        }
        // nginx turns this 401 into `error_page 401 = @l402`, which calls /_l402/render with these values.
        res.statusCode = 401;
        res.setHeader('X-L402-Outcome', d.outcome);
        res.setHeader('X-L402-Reason', d.reason);
        if (d.outcome === 'rate_limited' && 'retryAfterSecs' in d) res.setHeader('X-L402-Retry-After', String(d.retryAfterSecs));
        if ((d.outcome === 'cashu_rejected' || d.outcome === 'rate_limited') && 'detail' in d && d.detail) res.setHeader('X-L402-Detail', d.detail.replace(/[^\x20-\x7e]/g, '?').slice(0, 300));
        res.end();
        return;
      }
      const outcome = one(req.headers['x-l402-outcome']);
      // No outcome: the 401 nginx is rendering is not the gate's decision (auth_basic before auth_request in
      // the same location, an intercepted upstream 401). Nothing was decided, so nothing is sold here: no
      // invoice outside the decision and its rate limit, and nginx's own WWW-Authenticate stays the challenge.
      if (methodOk && (outcome === undefined || outcome.trim() === '')) return send(res, notDecided(method, grpc));
      const retry = Number(one(req.headers['x-l402-retry-after']));
      const detail = one(req.headers['x-l402-detail']);
      // The render never sells what the auth answer could not decide on.
      if (!methodOk) send(res, await gate.render('method_not_allowed', 'bad_method', gr, req.headers));
      else send(res, await gate.render(outcome, one(req.headers['x-l402-reason']), gr, req.headers, { retryAfterSecs: Number.isInteger(retry) ? retry : undefined, detail }));
      return;
    }
    if (!upstream) {
      res.statusCode = 404;
      res.setHeader('Content-Type', 'application/json');
      res.end('{"error":"not found: l402d serves nginx auth_request here (no upstream configured)"}\n');
      return;
    }
    // Standalone reverse-proxy mode. A transfer coding other than chunked alone ("identity, chunked", "gzip,
    // chunked": Node's parser accepts any list ending in chunked) is refused before anything, as nginx refuses it:
    // forwarded as sent, an upstream that reads such a list as no body would run the body as a request nobody
    // decided on. Only "chunked" is forwarded (proxy() frames the body again).
    const te = req.headers['transfer-encoding'];
    if (te !== undefined && te.trim().toLowerCase() !== 'chunked') {
      res.shouldKeepAlive = false;
      req.resume();
      return send(res, unsupportedTransferCoding());
    }
    // The protocol is this connection's, never a client's header.
    req.headers['x-original-protocol'] = `HTTP/${req.httpVersion}`;
    // Likewise the scheme (from this very connection: a credential cookie set over plain HTTP is never Secure,
    // and MPP and x402 are offered over HTTPS only), and the host (x402's resource URL).
    req.headers['x-l402-scheme'] = (req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http';
    req.headers['x-l402-host'] = one(req.headers.host) ?? '';
    const path = normalizePath(url);
    // A "\" in the path (raw or %5C) is refused before anything, as behind nginx (pathAmbiguity): l402d reads it
    // as part of a segment and forwards it as %5C, but IIS and other Windows servers decode it to a "/", so
    // /cheap/..%5Cexpensive/x, priced under /cheap/, would be served as /expensive/x.
    if (path !== undefined && path.includes('\\')) {
      req.resume();
      return send(res, ambiguousPath(req.method ?? 'GET', 'a "\\" in the path'));
    }
    // Node's parser accepts only the methods it knows (see clientError below); decided on exactly. This
    // request's own identity (never a client's header): a single-use claim made for it can be given back if
    // the upstream fails before answering.
    const methodOk = req.method !== undefined && METHOD.test(req.method);
    // A request naming another method or path for the upstream (X-HTTP-Method-Override, X-Original-URL, `_method`)
    // is refused before anything else, free paths included: an upstream that reads X-Original-URL as its path
    // would serve a priced path through a free one.
    // On a dry-run route it passes, reported as the refusal it would get (override-check.ts).
    const grpc = isGrpc(one(req.headers['content-type']), req.headers['x-original-protocol']);
    const override = methodOk ? overrideCheck(req.method!, req.rawHeaders, url, () => (path === undefined ? undefined : gate.routes.lookup(path)), grpc) : undefined;
    if (override && 'refuse' in override) {
      req.resume();
      return send(res, override.refuse);
    }
    // A free path (free_paths): proxied without payment, exactly as a paid request is (the normalised path,
    // re-encoded; credentials and identity headers stripped), only when nothing about it is ambiguous.
    if (methodOk && path !== undefined && gate.freePaths.isFree(url.split('?')[0]!, path)) {
      proxy(upstream, forwardTarget(path, url), req, res, [], { headers: [], forwardCredentials: config.forwardPaymentCredentials }, config.upstreamTimeoutMs, (f, e) => {
        if (f.by === 'client') {
          log.info({ event: 'client_body_failure', why: f.why, path }, 'the client did not send its whole request body');
          return send(res, clientBodyFailure(f.why, false, req.method ?? 'GET'));
        }
        log.warn({ event: f.status === 504 ? 'upstream_timeout' : 'upstream_error', err: e.message }, 'upstream error');
        send(res, upstreamFailure(f.status, 'none', config.retryAfterSecs, req.method ?? 'GET'));
      });
      return;
    }
    const route = path === undefined ? undefined : gate.routes.lookup(path);
    if (methodOk && route && isPreflight(req.method!, req.headers)) {
      req.resume();
      return send(res, preflight(route.methods, req.headers));
    }
    const gr = gate.requestFrom(path, methodOk ? req.method! : 'GET', req.socket.remoteAddress, req.headers, { uri: url, requestId: randomBytes(16).toString('hex') });
    if (!methodOk) {
      req.resume();
      send(res, await gate.render('method_not_allowed', 'bad_method', gr, req.headers));
      return;
    }
    if (ambiguousCredential(req, grpc)) {
      req.resume();
      // Through the route's invoice rate limit: the refusal offers a fresh payment.
      const d = await gate.refuseAmbiguous(gr);
      send(res, await gate.render(d.outcome, d.reason, gr, req.headers, { detail: 'detail' in d ? d.detail : undefined, retryAfterSecs: d.outcome === 'rate_limited' ? d.retryAfterSecs : undefined }));
      return;
    }
    const d = override && 'pass' in override ? override.pass : await gate.decide(gr);
    // Only a usable path can be allowed (decide refuses the rest); what is forwarded is what was decided on.
    if (d.outcome === 'allow' && path !== undefined) {
      const extra = d.reason === 'dry_run' ? await gate.dryRunHeaders(d, gr) : [...receiptHeaders(d), ...balanceHeaders(d)];
      proxy(upstream, forwardTarget(path, url), req, res, extra, { headers: identityHeaders(d), forwardCredentials: config.forwardPaymentCredentials }, config.upstreamTimeoutMs, (f, e) => {
        // The client stalled or broke its own body: its failure, so what it paid stays paid.
        if (f.by === 'client') {
          log.info({ event: 'client_body_failure', why: f.why, path }, 'the client did not send its whole request body');
          return send(res, clientBodyFailure(f.why, d.reason === 'paid', req.method!));
        }
        log.warn({ event: f.status === 504 ? 'upstream_timeout' : 'upstream_error', err: e.message }, 'upstream error');
        // Nothing of the upstream's answer reached the client: not served, so the payment still pays, if the
        // whole request had reached the upstream (else the upstream may have worked on a part: kept).
        gate.releaseAfterUpstreamFailure(gr, f.status, { answered: f.answered, incomplete: !f.releasable }).then(
          (r) => (res.headersSent || res.destroyed ? res.destroy() : send(res, r)),
          () => res.destroy(),
        );
      });
      return;
    }
    req.resume();
    send(res, await gate.render(d.outcome, d.reason, gr, req.headers, { detail: 'detail' in d ? d.detail : undefined, retryAfterSecs: d.outcome === 'rate_limited' ? d.retryAfterSecs : undefined }));
  };

  const options = {
    // nginx accepts up to 4 x 8 KiB of request headers by default, and an operator may allow far more
    // (large_client_header_buffers 8 32k): l402d must read whatever nginx lets through, the path twice
    // (X-Original-URI, X-L402-URI) included. Behind nginx only nginx connects; facing clients, 64 KiB.
    maxHeaderSize: upstream ? 64 * 1024 : 1024 * 1024,
    // Behind nginx (no upstream of our own), be as lenient as nginx about header bytes, so a control
    // character in a client's header is judged by our parsers (a 4xx) rather than refused by Node's (a 503
    // through nginx). With `upstream` set, l402d faces clients directly and keeps Node's strict parser.
    insecureHTTPParser: !upstream,
    // Facing clients, the whole request (headers and body) must arrive within requestTimeout (below): checked
    // every second rather than Node's 30 s, so a client dripping its body holds the connection and the
    // upstream's for 31 s at most.
    ...(upstream ? { connectionsCheckingInterval: 1000 } : {}),
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    inFlight.set(req.socket, { req, res });
    // Shutting down: answer, then close the connection, so nginx moves to another l402d at once.
    if (!server.listening) res.shouldKeepAlive = false;
    // Fail closed for this request only (a 503, nothing decided): the process keeps serving every other one.
    handle(req, res).catch((e: unknown) => {
      log.error({ event: 'request_failed', err: errorShape(e) }, 'request handler failed');
      try {
        if (!res.headersSent) {
          res.statusCode = 503;
          res.setHeader('Retry-After', String(config.retryAfterSecs));
          res.end();
        } else res.destroy();
      } catch {
        res.destroy();
      }
    });
  };
  // Each connection's latest request and its response, for clientError below.
  const inFlight = new WeakMap<Duplex, { req: IncomingMessage; res: ServerResponse }>();
  // Standalone mode with `tls:`: l402d is the HTTPS endpoint (the scheme MPP and x402 need); read at start.
  const tls = upstream && config.tls ? { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) } : undefined;
  const server: Server = tls ? (createHttpsServer({ ...options, ...tls }, onRequest) as unknown as Server) : createServer(options, onRequest);
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
    // A standalone proxy reading this connection's body answers for it (never a raw reply over its own).
    if (bodyClientError(socket, err.code)) return;
    // The parser gave up on the body of a request already answered (a body l402d did not wait for, still
    // dripping when Node's requestTimeout ends it): a raw reply now would follow that answer on a keep-alive
    // connection, where the next reader (nginx's next subrequest) could take it for its own. Close instead.
    const cur = inFlight.get(socket);
    if (cur && !cur.req.complete && cur.res.headersSent) {
      socket.destroy();
      return;
    }
    if (!socket.writable || (err.code as string | undefined) === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const code = err.code ?? '';
    const [status, title, reason] =
      code === 'HPE_INVALID_METHOD'
        ? [400, 'Bad Request', 'bad_method']
        : code === 'HPE_HEADER_OVERFLOW'
          ? // Behind nginx, auth_request turns any status but 2xx/401/403 into a 500 (a 503 "gate unavailable"
            // for the client's own oversized request): 403, which nginx passes on as a 4xx.
            [upstream ? 431 : 403, upstream ? 'Request Header Fields Too Large' : 'Forbidden', 'headers_too_large']
          : code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? [408, 'Request Timeout', 'request_timeout']
            : [400, 'Bad Request', 'bad_request'];
    socket.end(problemReply(status, title, reason));
  });
  // CONNECT asks for a tunnel, which l402d never opens (Node would drop the connection without a word).
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    if (!socket.writable) return void socket.destroy();
    socket.end(problemReply(400, 'Bad Request', 'bad_method'));
  });
  return server;
}
