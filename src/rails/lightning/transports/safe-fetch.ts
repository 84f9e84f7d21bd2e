// A small HTTP(S) client for backends that talk to servers over plain HTTP APIs (Eclair REST, LNURL).
// Every call is bounded: one deadline for the whole exchange (redirects included), a response size
// cap, a redirect cap, and an address policy checked on the very addresses the socket connects to
// (the check runs inside the connection's DNS lookup, so a rebinding name cannot swap addresses
// between the check and the connect). undici is not installed; node:http/https do the work.
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';

export type HttpFetchErrorKind = 'timeout' | 'aborted' | 'too_large' | 'blocked' | 'network' | 'redirect' | 'scheme';

/** Why a request failed. Messages name the host and path, never query strings or headers. */
export class HttpFetchError extends Error {
  constructor(readonly kind: HttpFetchErrorKind, message: string) {
    super(message);
    this.name = 'HttpFetchError';
  }
}

export interface FetchResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The URL that answered (after redirects). */
  url: string;
}

export interface FetchRequest {
  url: string | URL;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
  /** Bound for the whole exchange, redirects included. */
  timeoutMs: number;
}

export type LookupAllFn = (hostname: string, cb: (err: Error | null, addresses: dns.LookupAddress[]) => void) => void;

export interface HttpClientOptions {
  /** Extra trusted CA certificates (PEM), added to Node's bundled roots. */
  ca?: string;
  /** Allow plain http:// URLs (and https → http redirects). */
  allowHttp: boolean;
  /** Allow loopback, private, link-local and other non-public addresses. */
  allowPrivate: boolean;
  /** 0 = a 3xx answer is returned to the caller as is. */
  maxRedirects: number;
  maxResponseBytes: number;
  /** Test hooks: name resolution and the address policy. */
  lookup?: LookupAllFn;
  addressAllowed?: (address: string, family: number) => boolean;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

// --- address policy -------------------------------------------------------------------------------

const BLOCKED = new net.BlockList();
for (const [addr, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15],
  ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) BLOCKED.addSubnet(addr, prefix, 'ipv4');
for (const [addr, prefix] of [
  ['::', 96], ['::1', 128], ['100::', 64], ['64:ff9b:1::', 48], ['2001:db8::', 32], ['fc00::', 7], ['fe80::', 10],
  ['fec0::', 10], ['ff00::', 8],
] as const) BLOCKED.addSubnet(addr, prefix, 'ipv6');

/** 16 bytes of an IPv6 address, or undefined if it does not parse. */
function ipv6Bytes(text: string): Buffer | undefined {
  let s = text.toLowerCase();
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (net.isIPv6(s) === false) return undefined;
  let tailV4: number[] = [];
  const lastColon = s.lastIndexOf(':');
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    tailV4 = tail.split('.').map(Number);
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const [head, rest] = s.includes('::') ? s.split('::') as [string, string] : [s, undefined];
  const h = head ? head.split(':') : [];
  const r = rest === undefined ? [] : rest ? rest.split(':') : [];
  const fill = rest === undefined ? 0 : 8 - h.length - r.length;
  const groups = [...h, ...Array<string>(fill).fill('0'), ...r].map((g) => parseInt(g, 16));
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return undefined;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  if (tailV4.length === 4) Buffer.from(tailV4).copy(out, 12);
  return out;
}

/** The IPv4 address an IPv6 address carries (mapped, NAT64 well-known prefix, 6to4), if any. */
function embeddedIpv4(b: Buffer): string | undefined {
  const v4 = (off: number) => `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return v4(12);
  if (b.readUInt32BE(0) === 0x0064ff9b && b.subarray(4, 12).every((x) => x === 0)) return v4(12);
  if (b.readUInt16BE(0) === 0x2002) return v4(2);
  return undefined;
}

/** True for globally routable unicast addresses; false for loopback, private, link-local, CGNAT, multicast, reserved. */
export function isPublicAddress(address: string): boolean {
  if (net.isIPv4(address)) return !BLOCKED.check(address, 'ipv4');
  const bytes = ipv6Bytes(address);
  if (!bytes) return false;
  const v4 = embeddedIpv4(bytes);
  if (v4 !== undefined && BLOCKED.check(v4, 'ipv4')) return false;
  const canonical = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16)).join(':');
  return !BLOCKED.check(canonical, 'ipv6');
}

// --- the client -----------------------------------------------------------------------------------

/** "https://host:port/path" without query or fragment: safe to put in errors and logs. */
export function redactUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

export class BoundedHttpClient {
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;
  private readonly addressAllowed: (address: string, family: number) => boolean;
  private readonly lookupAll: LookupAllFn;

  constructor(private readonly opts: HttpClientOptions) {
    // Idle sockets are dropped before the usual 5 s server keep-alive window ends, so a reused
    // socket is rarely one the server is closing at that moment.
    const agentOpts = { keepAlive: true, maxSockets: 16, maxFreeSockets: 4, timeout: 4_000, scheduling: 'lifo' as const };
    this.httpAgent = new http.Agent(agentOpts);
    this.httpsAgent = new https.Agent({ ...agentOpts, ca: opts.ca ? [...tls.rootCertificates, opts.ca] : undefined });
    this.addressAllowed = opts.addressAllowed ?? (opts.allowPrivate ? () => true : (a) => isPublicAddress(a));
    this.lookupAll = opts.lookup ?? ((host, cb) => dns.lookup(host, { all: true, verbatim: true }, cb));
  }

  async request(req: FetchRequest): Promise<FetchResponse> {
    const timeout = AbortSignal.timeout(req.timeoutMs);
    const signal = req.signal ? AbortSignal.any([req.signal, timeout]) : timeout;
    let url = typeof req.url === 'string' ? new URL(req.url) : new URL(req.url.href);
    let method = req.method ?? 'GET';
    let body = req.body;
    const headers: Record<string, string> = { ...req.headers };
    for (let hop = 0; ; hop++) {
      this.checkScheme(url, hop > 0);
      const res = await this.once(url, method, headers, body, signal, timeout, req.timeoutMs);
      const location = res.headers.location;
      if (!REDIRECT_STATUSES.has(res.status) || this.opts.maxRedirects === 0 || typeof location !== 'string') return res;
      if (hop >= this.opts.maxRedirects) {
        throw new HttpFetchError('redirect', `${redactUrl(url)}: more than ${this.opts.maxRedirects} redirects`);
      }
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw new HttpFetchError('redirect', `${redactUrl(url)}: redirect to an invalid URL`);
      }
      if (next.protocol === 'http:' && url.protocol === 'https:' && !this.opts.allowHttp) {
        throw new HttpFetchError('scheme', `${redactUrl(url)}: refusing a redirect from https to http (${redactUrl(next)})`);
      }
      // Credentials meant for one origin never follow a redirect to another.
      if (next.origin !== url.origin) delete headers.authorization;
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
        delete headers['content-type'];
      }
      url = next;
    }
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  private checkScheme(url: URL, redirected: boolean): void {
    const where = redirected ? 'redirect target' : 'URL';
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new HttpFetchError('scheme', `${where} ${url.protocol}//${url.host} is neither https nor http`);
    }
    if (url.protocol === 'http:' && !this.opts.allowHttp) {
      throw new HttpFetchError('scheme', `${where} ${redactUrl(url)} is plain http; only https is allowed`);
    }
    if (url.username || url.password) {
      throw new HttpFetchError('scheme', `${where} ${url.protocol}//${url.host}${url.pathname} carries credentials in the URL; refusing`);
    }
  }

  /** Resolves through the address policy; the result feeds the socket's own lookup. */
  private guardedLookup(url: URL) {
    return (hostname: string, options: dns.LookupOptions, callback: (...args: unknown[]) => void): void => {
      this.lookupAll(hostname, (err, addresses) => {
        if (err) return callback(err);
        const wanted = options.family === 4 || options.family === 6 ? addresses.filter((a) => a.family === options.family) : addresses;
        if (wanted.length === 0) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }));
        // Every address must pass: the socket may try any of them (happy eyeballs).
        const bad = wanted.find((a) => !this.addressAllowed(a.address, a.family));
        if (bad) return callback(this.blocked(url, bad.address));
        if (options.all) return callback(null, wanted);
        callback(null, wanted[0]!.address, wanted[0]!.family);
      });
    };
  }

  private blocked(url: URL, address: string): HttpFetchError {
    return new HttpFetchError(
      'blocked',
      `refusing to connect to ${url.host} (${address}): not a public address (loopback, private, link-local or reserved); set allow_private: true to allow it`,
    );
  }

  private once(
    url: URL, method: string, headers: Record<string, string>, body: string | undefined,
    signal: AbortSignal, timeout: AbortSignal, timeoutMs: number, retried = false,
  ): Promise<FetchResponse> {
    const host = stripBrackets(url.hostname);
    const literal = net.isIP(host);
    if (literal !== 0 && !this.addressAllowed(host, literal)) return Promise.reject(this.blocked(url, host));
    const where = `${method} ${redactUrl(url)}`;
    const abortError = (): HttpFetchError =>
      timeout.aborted ? new HttpFetchError('timeout', `${where}: timed out after ${timeoutMs} ms`) : new HttpFetchError('aborted', `${where}: aborted`);
    if (signal.aborted) return Promise.reject(abortError());

    return new Promise<FetchResponse>((resolve, reject) => {
      const isHttps = url.protocol === 'https:';
      const outHeaders: http.OutgoingHttpHeaders = { accept: 'application/json', 'user-agent': 'l402-nginx', ...headers };
      if (body !== undefined) outHeaders['content-length'] = Buffer.byteLength(body);
      let settled = false;
      let res: http.IncomingMessage | undefined;
      const finish = (err: Error | undefined, value?: FetchResponse): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        if (err) {
          req.destroy();
          res?.destroy();
          reject(err);
        } else resolve(value!);
      };
      const onAbort = (): void => finish(abortError());
      const options: https.RequestOptions = {
        method,
        protocol: url.protocol,
        hostname: host,
        port: url.port || (isHttps ? 443 : 80),
        path: `${url.pathname}${url.search}`,
        headers: outHeaders,
        agent: isHttps ? this.httpsAgent : this.httpAgent,
        lookup: literal === 0 ? (this.guardedLookup(url) as unknown as typeof dns.lookup) : undefined,
      };
      if (isHttps && literal === 0) options.servername = host;
      const req = (isHttps ? https : http).request(options, (response) => {
        res = response;
        const status = response.statusCode ?? 0;
        const declared = Number(response.headers['content-length']);
        if (Number.isFinite(declared) && declared > this.opts.maxResponseBytes) {
          finish(new HttpFetchError('too_large', `${where}: response of ${declared} bytes exceeds the ${this.opts.maxResponseBytes}-byte limit`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > this.opts.maxResponseBytes) {
            finish(new HttpFetchError('too_large', `${where}: response exceeds the ${this.opts.maxResponseBytes}-byte limit`));
            return;
          }
          chunks.push(chunk);
        });
        response.on('end', () => finish(undefined, { status, headers: response.headers, body: Buffer.concat(chunks), url: url.href }));
        response.on('error', (e) => finish(new HttpFetchError('network', `${where}: ${e.message}`)));
        response.on('aborted', () => finish(new HttpFetchError('network', `${where}: connection closed mid-response`)));
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (settled) return;
        if (e instanceof HttpFetchError) return finish(e);
        // The documented keep-alive race: the server closed an idle socket as we reused it. The
        // request never reached the application, so one retry on a fresh socket is safe.
        if (!retried && req.reusedSocket && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) {
          settled = true;
          signal.removeEventListener('abort', onAbort);
          this.once(url, method, headers, body, signal, timeout, timeoutMs, true).then(resolve, reject);
          return;
        }
        finish(new HttpFetchError('network', `${where}: ${e.code ? `${e.code} ` : ''}${e.message}`));
      });
      signal.addEventListener('abort', onAbort, { once: true });
      req.end(body);
    });
  }
}
