// Browser-facing helpers of the payment page, under /_l402/page/ (proxied by nginx's server.conf):
//   GET  /_l402/page/status   Authorization: L402 <macaroon>  ->  {"settled": bool}   (never mints an invoice)
//   POST /_l402/page/cookie   credential=<macaroon>:<preimage>&uri=<path>  ->  303 to uri, Set-Cookie: the route's
//        credential cookie (same-origin form posts from the payment page only; see policy/credential-cookie.ts)
//   POST /_l402/page/dev-pay  {"invoice": "<bolt11>"}         ->  {"preimage": "<hex>"} (local demo only: the dev
//        wallet with `lightning.pay_endpoint: true`, from a loopback client; nginx's server.conf never proxies it)
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Gate } from './gate.js';
import { parseAuthorization } from '../protocol/l402-header.js';
import { caveatPredicates, decodeMacaroon } from '../protocol/macaroon.js';
import { decodeIdentifier } from '../protocol/identifier.js';
import { signedByTokenKey } from '../protocol/root-key.js';
import { DevWallet, DevWalletError, type DevWalletErrorCode } from '../rails/lightning/dev/dev-wallet.js';
import { PAGE_ENDPOINTS } from './payment-page.js';
import { checkForCookie, cookieCovers, cookieValue, credentialSetCookie } from '../policy/credential-cookie.js';
import { normalizePath } from '../policy/routes.js';

const MAX_BODY_BYTES = 16 * 1024;
const BODY_TIMEOUT_MS = 5_000;
const MAX_INVOICE_CHARS = 4096;

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body) + '\n';
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(res.req?.method === 'HEAD' ? undefined : text);
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Returns true when it handled the request. */
export async function handlePageEndpoint(gate: Gate, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const url = req.url ?? '';
  if (!url.startsWith('/_l402/page/')) return false;
  const path = url.split('?')[0];
  if (path === PAGE_ENDPOINTS.status) await status(gate, req, res);
  else if (path === PAGE_ENDPOINTS.devPay) await devPay(gate, req, res);
  else if (path === PAGE_ENDPOINTS.cookie) await setCookie(gate, req, res);
  else {
    req.resume();
    json(res, 404, { error: 'not_found' });
  }
  return true;
}

async function status(gate: Gate, req: IncomingMessage, res: ServerResponse): Promise<void> {
  req.resume();
  if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method_not_allowed' }, { Allow: 'GET, HEAD' });
  const auth = one(req.headers.authorization);
  if (!auth) return json(res, 400, { error: 'missing_credential', message: 'send Authorization: L402 <macaroon>' });
  const parsed = parseAuthorization(auth);
  if (parsed.kind !== 'l402') return json(res, 400, { error: 'malformed_credential', message: 'send Authorization: L402 <macaroon>' });
  let mac;
  try {
    mac = decodeMacaroon(parsed.credential.macaroon);
  } catch {
    return json(res, 400, { error: 'malformed_macaroon' });
  }
  const id = decodeIdentifier(mac.identifier);
  if (!id) return json(res, 400, { error: 'unknown_identifier' });
  // The HMAC chain first: a forged macaroon never costs a backend round trip.
  if (!signedByTokenKey(mac, id.tokenId, gate.parts.rootKeys)) return json(res, 401, { error: 'bad_signature' });

  // Caveats only narrow, so every route caveat must name the same route for the token to be usable.
  const routeIds = new Set(caveatPredicates(mac).filter((p) => p.startsWith('route=')).map((p) => p.slice(6).trim()));
  const routeId = routeIds.size === 1 ? [...routeIds][0] : undefined;
  const route = routeId === undefined ? undefined : gate.parts.config.routes.find((r) => r.id === routeId);
  const isSettled = gate.isSettled;
  if (!route?.autoDetect || !isSettled) return json(res, 404, { error: 'auto_detect_off', message: 'this credential needs the preimage' });

  let settled: boolean;
  try {
    settled = await isSettled(id.paymentHash);
  } catch (e) {
    gate.parts.log.warn({ event: 'page_status_failed', route: route.id, backend: gate.parts.backend.kind, err: (e as Error).message }, 'settlement lookup failed');
    return json(res, 503, { error: 'backend_unavailable' }, { 'Retry-After': String(gate.parts.config.retryAfterSecs) });
  }
  json(res, 200, { settled });
}

const DEV_PAY_MESSAGES: Record<DevWalletErrorCode, string> = {
  unknown: 'the invoice was not issued by this development wallet',
  expired: 'the invoice has expired; reload the page for a new one',
  already_paid: 'the invoice is already paid',
  malformed: 'not a valid BOLT11 invoice',
};

class BodyError extends Error {
  constructor(readonly status: number, readonly code: string) {
    super(code);
  }
}

function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      req.destroy();
      reject(new BodyError(408, 'body_timeout'));
    }, BODY_TIMEOUT_MS);
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        clearTimeout(timer);
        req.removeAllListeners('data');
        req.resume();
        reject(new BodyError(413, 'body_too_large'));
      } else chunks.push(c);
    });
    req.on('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3})$/;

/** The dev wallet's pay button is served: explicitly enabled for a local demo (see devPay). */
export function devPayEnabled(gate: Gate): boolean {
  const ln = gate.parts.config.lightning;
  return ln.type === 'dev' && ln.pay_endpoint === true && gate.parts.backend instanceof DevWallet;
}

async function devPay(gate: Gate, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const backend = gate.parts.backend;
  // Anyone who can call this unlocks any route for free: it exists only when the config asks for it, and
  // answers only a client on this machine (the socket's peer, and nginx's client address when it sends one).
  const peer = req.socket.remoteAddress ?? '';
  const via = one(req.headers['x-l402-client-addr']);
  if (!devPayEnabled(gate) || !(backend instanceof DevWallet) || !LOOPBACK.test(peer) || (via !== undefined && !LOOPBACK.test(via))) {
    req.resume();
    return json(res, 404, { error: 'not_found' });
  }
  if (req.method !== 'POST') {
    req.resume();
    return json(res, 405, { error: 'method_not_allowed' }, { Allow: 'POST' });
  }
  // JSON only: a cross-site page cannot send it without a CORS preflight, which we never grant.
  if (!/^application\/json\s*(;|$)/i.test(one(req.headers['content-type']) ?? '')) {
    req.resume();
    return json(res, 415, { error: 'unsupported_media_type', message: 'send Content-Type: application/json' });
  }
  let invoice: unknown;
  try {
    invoice = (JSON.parse(await readBody(req)) as { invoice?: unknown } | null)?.invoice;
  } catch (e) {
    if (e instanceof BodyError) return json(res, e.status, { error: e.code });
    return json(res, 400, { error: 'malformed', message: 'send {"invoice": "<bolt11>"}' });
  }
  if (typeof invoice !== 'string' || invoice.length === 0 || invoice.length > MAX_INVOICE_CHARS) {
    return json(res, 400, { error: 'malformed', message: 'send {"invoice": "<bolt11>"}' });
  }
  try {
    const preimage = backend.pay(invoice).toString('hex');
    gate.parts.log.info({ event: 'dev_pay', ok: true }, 'development wallet paid an invoice from the payment page');
    json(res, 200, { preimage });
  } catch (e) {
    if (e instanceof DevWalletError) {
      gate.parts.log.info({ event: 'dev_pay', ok: false, code: e.code }, 'development wallet refused an invoice');
      return json(res, 400, { error: e.code, message: DEV_PAY_MESSAGES[e.code] });
    }
    gate.parts.log.error({ event: 'dev_pay', ok: false, err: (e as Error).message }, 'development wallet failed');
    json(res, 503, { error: 'dev_wallet_failed' });
  }
}

/**
 * Where the browser is sent after the cookie is set: a path of this origin, printable ASCII, as long as a request
 * line nginx takes by default (8 KiB; the 303 carries it back as Location). The payment page offers the cookie
 * only for a URL this takes (pageCookieTakes): a longer one would be refused after the browser paid.
 */
const SAME_ORIGIN_URI = /^\/(?![/\\])[\x21-\x7e]{0,8191}$/;

/** The cookie form's body: the URL, each byte escaped at worst ("/" is "%2F"), and the credential. */
export const COOKIE_FORM_MAX_BYTES = 32 * 1024;

/** /_l402/page/cookie takes this raw request target (the page it redirects to once the cookie is set). */
export function pageCookieTakes(uri: string): boolean {
  return SAME_ORIGIN_URI.test(uri);
}

/**
 * The payment page posts the paid credential here (a form, so the answer is a navigation): the credential is
 * checked as far as that is possible without spending it, set as the route's cookie, and the browser is sent
 * (303) to the page it asked for, which decide() then opens with the cookie. Only from a page of the same
 * origin (Sec-Fetch-Site, else Origin): another site could otherwise overwrite a payer's cookie with its own.
 */
async function setCookie(gate: Gate, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'POST') {
    req.resume();
    return json(res, 405, { error: 'method_not_allowed' }, { Allow: 'POST' });
  }
  // The scheme and host are nginx's ($scheme, $http_host; server.conf sets them), or this connection's in
  // standalone mode, where l402d faces the client itself (over HTTPS with `tls:`): never a client's header.
  const standalone = gate.parts.config.upstream !== undefined;
  const https = standalone ? (req.socket as { encrypted?: boolean }).encrypted === true : one(req.headers['x-l402-scheme']) === 'https';
  const host = standalone ? one(req.headers.host) : one(req.headers['x-l402-host']);
  const site = one(req.headers['sec-fetch-site']);
  const origin = one(req.headers.origin);
  const sameOrigin = site !== undefined ? site === 'same-origin' : origin !== undefined && host !== undefined && origin === `${https ? 'https' : 'http'}://${host}`;
  if (!sameOrigin) {
    req.resume();
    return json(res, 403, { error: 'cross_origin', message: 'the credential cookie is set from the payment page of this site only' });
  }
  if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(one(req.headers['content-type']) ?? '')) {
    req.resume();
    return json(res, 415, { error: 'unsupported_media_type', message: 'send a form (application/x-www-form-urlencoded)' });
  }
  let form: URLSearchParams;
  try {
    form = new URLSearchParams(await readBody(req, COOKIE_FORM_MAX_BYTES));
  } catch (e) {
    if (e instanceof BodyError) return json(res, e.status, { error: e.code });
    return json(res, 400, { error: 'malformed' });
  }
  const uri = form.get('uri') ?? '';
  const path = SAME_ORIGIN_URI.test(uri) ? normalizePath(uri) : undefined;
  const route = path === undefined ? undefined : gate.routes.lookup(path);
  if (path === undefined || !route) return json(res, 400, { error: 'bad_uri', message: 'uri must be a path of this site under a paid route' });
  // A cookie the browser would not send back for this page would leave a paid credential unusable.
  if (!cookieCovers(route, uri)) return json(res, 400, { error: 'not_covered', message: "the route's cookie path does not cover this uri: send the credential in the Authorization header" });
  const text = (form.get('credential') ?? '').trim();
  const parsed = parseAuthorization(/^(l402|lsat)[ \t]/i.test(text) ? text : `L402 ${text}`);
  if (parsed.kind !== 'l402') return json(res, 400, { error: 'malformed_credential', message: 'credential must be <macaroon>:<preimage>' });
  const { macaroon, preimage } = parsed.credential;
  const check = checkForCookie({ macaroon, preimage }, route, path, { service: gate.parts.config.service, rootKeys: gate.parts.rootKeys, now: Math.floor(Date.now() / 1000) });
  if (!check.ok) return json(res, 400, { error: check.reason });
  res.statusCode = 303;
  res.setHeader('Set-Cookie', credentialSetCookie(route, cookieValue(macaroon, preimage), { maxAge: check.maxAge, singleUse: check.singleUse, secure: https }));
  res.setHeader('Location', uri);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Content-Length', 0);
  res.end();
}
