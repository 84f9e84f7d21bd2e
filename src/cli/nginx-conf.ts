// The nginx side of the contract, generated from the config so the snippets always match l402d's address.
// `nginx/l402/` holds the same text for the default address (a test keeps the two identical).
import type { GateConfig } from '../config/config.js';
import { nginxMs, nginxTimeouts } from '../policy/budget.js';

export interface NginxSnippets {
  'upstream.conf': string;
  'server.conf': string;
  'protect.conf': string;
  'dry-run.conf': string;
  'payment-receipts.conf': string;
  'balance.conf': string;
}

export function nginxServerAddress(listen: string): string {
  return listen.startsWith('unix:') ? listen : listen;
}

// Pinned in every location that talks to l402d, whatever the surrounding server/http blocks say (a micro-cache,
// stale use, intercepted errors, another method, extra headers, an `expires`): each of these is inherited otherwise, and each
// could change what is cached, reused, retried or answered. A location-level value replaces the inherited one.
const PINNED = `    proxy_intercept_errors off;
    proxy_buffering on;
    proxy_store off;
    proxy_hide_header X-Powered-By;
    proxy_pass_header X-L402-None;
    auth_request off;
    # An inherited \`expires\` would replace l402d's Cache-Control (no-store) on a 200 or 303 it answers.
    expires off;
    # l402d's answer header is read whole, whatever buffers the surrounding config sets (a larger one is nginx's 502):
    # a challenge's macaroon, invoice and offers, a paid answer with the site's cookies (up to 16 KiB), the cookie
    # endpoint's credential cookie and Location (up to 4 KiB). The sizes that nginx -t checks against these are set
    # too, so an operator's smaller ones neither shrink them nor fail the config.
    proxy_buffer_size 32k;
    proxy_buffers 8 16k;
    proxy_busy_buffers_size 64k;
    proxy_temp_file_write_size 64k;
    proxy_max_temp_file_size 1024m;`;

// The auth and render subrequests carry only what l402d reads (the real method travels in X-Original-Method):
// no client can crowd out Authorization with hundreds of headers, and no operator header reaches l402d.
const COMMON = `    proxy_method GET;
    proxy_pass_request_headers off;
    proxy_set_header Authorization $http_authorization;
    proxy_set_header X-Cashu $http_x_cashu;
    proxy_set_header Grpc-Metadata-Macaroon $http_grpc_metadata_macaroon;
    # x402's payment (v2 name, and the v1 name some clients still send).
    proxy_set_header Payment-Signature $http_payment_signature;
    proxy_set_header X-Payment $http_x_payment;
    proxy_set_header Token $http_token;
    proxy_set_header Macaroon $http_macaroon;
    proxy_set_header Content-Type $content_type;
    proxy_set_header Accept $http_accept;
    proxy_set_header Origin $http_origin;
    proxy_set_header Access-Control-Request-Method $http_access_control_request_method;
    proxy_set_header Access-Control-Request-Headers $http_access_control_request_headers;
    proxy_set_header X-Forwarded-For $http_x_forwarded_for;
    # A method or path named for the upstream to use instead of this one: l402d refuses the request (method-override.ts).
    proxy_set_header X-HTTP-Method-Override $http_x_http_method_override;
    proxy_set_header X-HTTP-Method $http_x_http_method;
    proxy_set_header X-Method-Override $http_x_method_override;
    proxy_set_header X-Original-URL $http_x_original_url;
    proxy_set_header X-Rewrite-URL $http_x_rewrite_url;
    # The browser credential is a cookie; the auth answer hands the site's other cookies back (protect.conf).
    proxy_set_header Cookie $http_cookie;
${PINNED}
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
    proxy_set_header X-Original-URI $request_uri;
    # The path nginx matched and forwards (protect.conf sets it; control characters refused there).
    proxy_set_header X-L402-URI $l402_uri;
    proxy_set_header X-Original-Method $request_method;
    proxy_set_header X-Original-Protocol $server_protocol;
    # The route the operator pinned in this location (\`set $l402_route_pin <id>;\`; "" sends nothing): l402d then
    # decides with that route only. One l402d serves every server block, so a location pins its route wherever
    # another server has a route for the same paths.
    proxy_set_header X-L402-Route-Pin $l402_route_pin;
    # The client's connection as nginx sees it, never a client's header: MPP and x402 are offered over HTTPS
    # only (their specs), a credential cookie is Secure on HTTPS, and x402 names the resource by its URL (the
    # Host header, port included; l402d checks its form). nginx must terminate TLS itself for $scheme to say
    # "https".
    proxy_set_header X-L402-Scheme $scheme;
    proxy_set_header X-L402-Host $http_host;
    proxy_set_header X-L402-Client-Addr $remote_addr;
    # This client request's identity (also on nginx's retries of it): a single-use claim belongs to it.
    proxy_set_header X-L402-Request-Id $request_id;
    proxy_http_version 1.1;
    proxy_set_header Connection "";`;

// The render and release subrequests: the path the auth subrequest of this location was told, kept by protect.conf
// (auth_request_set) when its answer came. $l402_uri itself may be emptied by then: nginx runs the server's
// rewrite directives, server.conf's reset among them, in every subrequest, and a subrequest shares its parent's
// variables, so an operator's own subrequest in a paid location (a mirror, which nginx starts after the access
// phase) emptied it before the upstream failed, and the release refused the payment back (403 no_route).
// The route pin too ($l402_decided_pin), which server.conf empties as it does the path.
const AFTER_AUTH = COMMON.replace(
  `    # The path nginx matched and forwards (protect.conf sets it; control characters refused there).
    proxy_set_header X-L402-URI $l402_uri;`,
  `    # The path the auth subrequest was told (protect.conf keeps it with the auth answer): the one decided on.
    proxy_set_header X-L402-URI $l402_decided_uri;`,
).replace('    proxy_set_header X-L402-Route-Pin $l402_route_pin;', '    proxy_set_header X-L402-Route-Pin $l402_decided_pin;');
if (AFTER_AUTH === COMMON || !AFTER_AUTH.includes('$l402_decided_pin')) throw new Error('nginx-conf: the render and release path lines were not replaced');

/**
 * The development wallet's pay button (POST /_l402/page/dev-pay) for a local demo only: the quick start adds
 * it to its own nginx config. Never part of the generic snippets.
 */
export const DEV_PAY_LOCATION = `location = /_l402/page/dev-pay {
    proxy_pass http://l402d;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-L402-Client-Addr $remote_addr;
    client_max_body_size 16k;
}`;

/**
 * How long nginx waits for l402d: its deadline for the step plus a margin (policy/budget.ts). Another l402d
 * is tried only after a quick failure (refused, reset), never after a timeout, so the answer stays bounded.
 */
function timeoutLines(readMs: number, t: ReturnType<typeof nginxTimeouts>): string {
  return `    proxy_connect_timeout ${nginxMs(t.connectMs)};
    proxy_send_timeout ${nginxMs(readMs)};
    proxy_read_timeout ${nginxMs(readMs)};
    proxy_next_upstream error timeout;
    proxy_next_upstream_tries ${t.nextUpstreamTries};
    proxy_next_upstream_timeout ${nginxMs(t.nextUpstreamMs)};`;
}

/** The identity headers the gate sets for the upstream (protect.conf). */
const IDENTITY_HEADERS = ['X-L402-Token-Id', 'X-L402-Rail', 'X-L402-Amount-Msat', 'X-L402-Route', 'X-L402-Capabilities'];

/**
 * Every other X-L402-* name the gate reads or writes anywhere: between nginx and l402d (the outcome, the pin, the
 * client's address...), towards the client (a balance, a dry-run report) or l402d's answers to nginx. None of
 * them is for the upstream, so protect.conf blanks every spelling of each on the upstream request: an app that
 * reads X-L402-Balance-Msat or X-L402-Scheme never reads a client's. (nginx cannot drop headers by prefix;
 * test/unit/nginx-snippets.test.ts checks that every X-L402-* name in src/ is here or among IDENTITY_HEADERS.)
 */
export const GATE_ONLY_HEADERS = [
  'X-L402-Balance-Msat', 'X-L402-Scheme', 'X-L402-Host', 'X-L402-Client-Addr', 'X-L402-Request-Id', 'X-L402-Uri',
  'X-L402-Route-Pin', 'X-L402-Outcome', 'X-L402-Reason', 'X-L402-Detail', 'X-L402-Retry-After', 'X-L402-Sent-At',
  'X-L402-Deadline-Ms', 'X-L402-Nginx-Secret', 'X-L402-Upstream-Status', 'X-L402-Upstream-Bytes', 'X-L402-Abandoned',
  'X-L402-Upstream-Header-Time', 'X-L402-Cookie-Mode', 'X-L402-Upstream-Cookie', 'X-L402-Receipt-Cache',
  'X-L402-Receipt-Expose', 'X-L402-Dry-Run', 'X-L402-Dry-Run-Price-Msat', 'X-L402-Dry-Run-Challenge',
  'X-L402-Dry-Run-Rate-Limited', 'X-L402-Dry-Run-Retry-After', 'X-L402-None',
  // Reserved: names that would say what was sold or paid, which an upstream might be written to read.
  'X-L402-Plan', 'X-L402-Balance', 'X-L402-Amount', 'X-L402-Price-Msat', 'X-L402-Access',
  'X-L402-Uses', 'X-L402-Valid-Until', 'X-L402-Expires', 'X-L402-Paid', 'X-L402-Payment-Hash', 'X-L402-Preimage',
  'X-L402-Macaroon', 'X-L402-Invoice', 'X-L402-Service', 'X-L402-Credentials',
] as const;

/** Headers web frameworks read as the method (or path) to use instead of the request's (protocol/method-override.ts). */
const METHOD_OVERRIDE_HEADERS = ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override', 'X-Original-URL', 'X-Rewrite-URL'];

export const GATE_IDENTITY_HEADERS: readonly string[] = IDENTITY_HEADERS;

/** Every other spelling of these headers with "_" for some "-" (nginx's $http_ variables read them as one). */
function identitySpellings(names: readonly string[] = IDENTITY_HEADERS, withCanonical = false): string[] {
  const out: string[] = [];
  for (const name of names) {
    const parts = name.split('-');
    for (let mask = withCanonical ? 0 : 1; mask < 1 << (parts.length - 1); mask++) {
      out.push(parts.reduce((acc, p, i) => (i === 0 ? p : acc + (mask & (1 << (i - 1)) ? '_' : '-') + p), ''));
    }
  }
  return out;
}

/**
 * A 400 that server.conf answers itself (before any location), as a problem document and, to a gRPC call
 * (`$l402_grpc_refusal`), as grpc-status 3.
 */
function serverRefusal(name: string, p: { type: string; title: string; reason: string; detail: string }, grpcMessage: string): string {
  const body = JSON.stringify({ type: `urn:l402:problem:${p.type}`, title: p.title, status: 400, reason: p.reason, detail: p.detail });
  return `location = /_l402/${name} {
    internal;
    default_type application/problem+json;
    add_header Cache-Control no-store always;
    return 400 '${body}\\n';
}
location = /_l402/${name}-grpc {
    internal;
    default_type application/grpc;
    expires off;
    add_header Cache-Control no-store always;
    add_header grpc-status 3 always;
    add_header grpc-message "${grpcMessage}" always;
    return 200 "";
}
`;
}

/** A public document l402d serves from the routes (manifest, discovery): never behind the paywall. */
function publicDocument(path: string): string {
  return `location = ${path} {
    proxy_pass http://l402d;
    proxy_method $request_method;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-L402-Outcome "";
${PINNED}
    proxy_cache off;
    error_page 502 503 504 = @l402_unavailable;
}`;
}

export function nginxSnippets(
  cfg: Pick<GateConfig, 'listen' | 'retryAfterSecs' | 'timeouts'> & Partial<Pick<GateConfig, 'forwardPaymentCredentials'>> & { nginxSecret?: string; manifest?: { openapi?: boolean } },
): NginxSnippets {
  const retry = cfg.retryAfterSecs;
  const t = nginxTimeouts(cfg.timeouts);
  const forward = cfg.forwardPaymentCredentials === true;
  // nginx_secret: proves to l402d that a call to its endpoints comes from this nginx (keep server.conf private).
  const secret = cfg.nginxSecret ? `\n    proxy_set_header X-L402-Nginx-Secret "${cfg.nginxSecret}";` : '';
  return {
    'upstream.conf': `# l402-nginx: include once in the http {} block.
upstream l402d {
    server ${nginxServerAddress(cfg.listen)};
    keepalive 64;
}

# Short-lived cache of "paid" answers for reusable (timed/indefinite) credentials. l402d decides what may be
# kept and for how long (X-Accel-Expires, never past the credential's expiry); single-use credentials and
# refusals are never cached. The path is relative to nginx's prefix unless absolute.
proxy_cache_path l402_auth_cache levels=1:2 keys_zone=l402_auth:10m max_size=64m inactive=1m use_temp_path=off;

# protect.conf forwards the client's Authorization to the upstream unless it carries a payment credential
# (L402, LSAT, Cashu or MPP's Payment): the gate consumed that one. Any other scheme (Bearer, Basic) is the app's
# own. A payment scheme anywhere in the list ("Bearer x, L402 …", which l402d refuses) is dropped too: on a
# dry-run route such a request still passes, and the credential in it must not. The scheme counts as separated by
# any whitespace byte a parser may take for one (also VT, FF and 0xA0, which JavaScript's \\s matches): nginx strips
# more than l402d reads, never less.
map $http_authorization $l402_upstream_authorization {
    "~*(^|[\\s,\\x0b\\x0c\\xa0])(l402|lsat|cashu|payment)([\\s\\x0b\\x0c\\xa0]|$)" "";
    default $http_authorization;
}

# On a gRPC call the L402 spec's \`token\`/\`macaroon\` metadata carry the credential (l402d reads them then):
# protect.conf drops them on proxy_pass too, whenever the content type is gRPC's (grpc_pass drops them always).
# On any other request they are the app's own and pass.
map $content_type $l402_upstream_token {
    "~*application/grpc([+;\\s]|$)" "";
    default $http_token;
}
map $content_type $l402_upstream_macaroon {
    "~*application/grpc([+;\\s]|$)" "";
    default $http_macaroon;
}

# The browser credential cookies (l402_…) never reach an upstream: protect.conf takes the Cookie header from
# l402d's answer. A free location (no protect.conf) under a credential cookie's path (a regex route's cookie
# may be scoped to "/") sets \`proxy_set_header Cookie $l402_free_cookie;\`: the client's cookies with one
# gate cookie cut out, or none at all if another is left.
map $http_cookie $l402_free_cookie_cut {
    "~*^(?<l402_cookie_before>.*?)(^|;[ \\t]*)l402_[^;]*(?<l402_cookie_after>.*)$" "$l402_cookie_before$l402_cookie_after";
    default $http_cookie;
}
map $l402_free_cookie_cut $l402_free_cookie {
    "~*l402_" "";
    default $l402_free_cookie_cut;
}

# The upstream's Cookie in a paid location (protect.conf): the client's as it came when l402d found nothing of
# the gate's in it ("keep"), else the Cookie header l402d handed back without the credential cookies (none
# at all when l402d said nothing, as an older l402d does). protect.conf sets the two variables from l402d's
# answer; they are declared here so that this file also stands without a protect.conf.
map "" $l402_cookie_mode {
    default "";
}
map "" $l402_upstream_site_cookie {
    default "";
}
map $l402_cookie_mode $l402_upstream_cookie {
    keep $http_cookie;
    default $l402_upstream_site_cookie;
}

# The route a protected location pins: \`set $l402_route_pin <id>;\` in the location (or its server;
# \`include l402/server.conf\` empties a location's pin on each request and internal redirect) makes l402d
# decide its requests with that route only (routes with \`pinned: true\` are decided nowhere else); unset, l402d
# finds the route by path. Declared here so that locations without a pin send none.
map "" $l402_route_pin {
    default "";
}

# protect.conf's check of the path it sends l402d (a decoded control character, an encoded CR/LF, must never
# reach a header): a map, not a regex \`if\` in the location, which would empty the location's regex captures
# ($1... read after the include, as in \`proxy_pass http://app/api/$1;\`). A map's regex without captures leaves
# them as they are. volatile: worked out again on each use, never a value kept from an earlier path.
map $l402_uri $l402_uri_refused {
    volatile;
    "~[\\x00-\\x1f\\x7f]" 1;
    default "";
}

# A request of a paid location that nginx ended with nothing served: no byte sent to any upstream
# ($upstream_bytes_sent empty or zeros) and nginx's own refusal of the request's body (400 malformed, 408 too slow,
# 413 too large: read only after the decision) or no status at all (the client left before any answer, maybe while
# the auth answer was on its way; post_action reads that as "009"). protect.conf's post_action asks l402d to give
# back what this request spent, if anything (only a claim made under this very $request_id is). A static, cached or
# returned answer (200, 206, 304...) is never one of these, upstream or not.
map "$status:$upstream_bytes_sent" $l402_abandoned {
    volatile;
    "~^(400|408|413|499|009):[0, :]*$" 1;
    default "";
}

# A request naming a path in a header some apps serve instead of its own (server.conf refuses it).
map "$http_x_original_url$http_x_rewrite_url" $l402_path_header {
    "" "";
    default 1;
}

# A gRPC call (HTTP/2 and a gRPC content type, as l402d reads it) that server.conf refuses itself gets a gRPC
# answer (grpc-status), not a problem document its client would report as INTERNAL, the "payment required" code.
map "$server_protocol|$content_type" $l402_grpc_refusal {
    "~*^HTTP/2\\.0\\|application/grpc([+;]|$)" "-grpc";
    default "";
}
`,
    'server.conf': `# l402-nginx: include once in each server {} block that has protected locations.
# Internal endpoints only: clients cannot reach them.

# A header name with "_" is dropped by nginx unless underscores_in_headers is on. An operator's
# \`ignore_invalid_headers off\` (http level, or this server's) would keep it under a lookup hash without its "_"s,
# which no proxy_set_header in protect.conf matches: X_HTTP_Method_Override, X_L402_Token_Id or X_Cashu would reach
# the upstream as sent, and CGI-style apps read them as the "-" spelling. Set here, so a server that also sets it
# fails nginx -t ("is duplicate") rather than run open. For headers before Host nginx may apply the setting of
# the address:port's default server: include server.conf there too (docs/nginx.md).
ignore_invalid_headers on;

# The path a protected location serves is set by protect.conf in that location. It starts empty for every
# request and again on each internal redirect (try_files, index, error_page to a URI run the server's rewrite
# directives again), so a location that did not run protect.conf's \`set\` (a location nested in a paid one, a
# \`rewrite ... break\` before the include) sends no path, and l402d refuses it (403 no_route) instead of deciding
# on the client's raw path or on the path of a location the request was in before. Not in the auth subrequest,
# which runs the server's rewrite directives too and shares the request's variables. The route pin likewise: a
# location's \`set $l402_route_pin\` holds for that location only, never for a paid location a fallback leads to.
# A pin set at server level holds wherever it stands: the auth subrequest runs it again.
if ($uri != /_l402/auth) {
    set $l402_uri "";
    set $l402_route_pin "";
}

# Every request of this server, protected location or not: a raw target nginx resolves to another path than
# an upstream may read (a dot segment, raw or encoded, also as "..;x" or between backslashes; "//" kept by
# merge_slashes off) is refused. nginx matches its location on the resolved path but proxy_pass without a URI
# part forwards the raw one, so "/premium/../free" would be matched as the free /free and read as /premium/...
if ($request_uri ~* "^[^?#]*(/|\\x5c|%2f|%5c)([.]|%2e){1,2}((;|%3b)[^/?#\\x5c]*)?(/|\\x5c|%2f|%5c|[?#]|$)") {
    rewrite ^ /_l402/ambiguous-path$l402_grpc_refusal last;
}
if ($uri ~ "//") {
    rewrite ^ /_l402/ambiguous-path$l402_grpc_refusal last;
}
# A raw "#" in the path: nginx ends the path there (as a fragment) and matches "/free" for "/free#/../premium",
# while proxy_pass forwards the whole raw target and an upstream that reads it as a path (Go's ParseRequestURI,
# then path.Clean in http.FileServer) resolves it to /premium. No client sends a fragment in a request target.
if ($request_uri ~ "^[^?]*#") {
    rewrite ^ /_l402/ambiguous-path$l402_grpc_refusal last;
}
# A ";" in the path, raw or encoded: servlet containers (Tomcat, Jetty, Spring on them) cut ";params" from each
# segment and merge the "//" left, so the free "location /" matches "/premium;x/a" and "/;/premium" while such
# an upstream serves /premium/a and /premium.
if ($request_uri ~* "^[^?#]*(;|%3b)") {
    rewrite ^ /_l402/ambiguous-path$l402_grpc_refusal last;
}
# A path named in a header (X-Original-URL, X-Rewrite-URL, any "_" spelling): IIS modules, Zend/Laminas and older
# Symfony serve it instead of the request's own, so through a free location "/public/x" with X-Original-URL:
# /premium/x would reach such an upstream unpaid. No client needs to send one.
if ($l402_path_header) {
    rewrite ^ /_l402/path-override$l402_grpc_refusal last;
}
${serverRefusal('ambiguous-path', { type: 'ambiguous-path', title: 'Ambiguous request path', reason: 'ambiguous_path', detail: 'refused: a dot segment, an empty segment or a semicolon in the request target, which nginx and an upstream could read as different paths; send the path without it' }, 'ambiguous request path')}${serverRefusal('path-override', { type: 'method-override', title: 'Method override refused', reason: 'method_override', detail: 'refused: X-Original-URL or X-Rewrite-URL names a path for the upstream to serve instead of the request target; send the request to that path instead' }, 'method override')}
# The auth_request subrequest: l402d answers 200 (paid) or 401 with the outcome in headers.
location = /_l402/auth {
    internal;
    proxy_pass http://l402d;
${COMMON}
    # A client that leaves while l402d decides: its answer is still read (l402d may have spent the payment), so
    # the request ends in protect.conf's post_action with the auth answer known, and what it spent is given back.
    proxy_ignore_client_abort on;
    # nginx's own failure here (l402d down) must never meet a server-level error_page that answers 200: the
    # location's list replaces the inherited one, and auth_request turns the 503 into protect.conf's 500.
    error_page 500 502 503 504 = @l402_unavailable;
${timeoutLines(t.authReadMs, t)}
    # When nginx sent the subrequest (its first attempt) and the deadline these timeouts were made for:
    # l402d answers by then, so it never spends a single-use credential after nginx gave up.
    proxy_set_header X-L402-Sent-At $msec;
    proxy_set_header X-L402-Deadline-Ms ${cfg.timeouts.decisionMs};
    proxy_cache l402_auth;
    # Only l402d decides what is kept and for how long (X-Accel-Expires on a reusable "paid" answer;
    # X-Accel-Expires: 0 and Cache-Control: no-store on everything else): no default validity, no stale
    # answer while l402d is down or slow, no conditional revalidation, no background refresh.
    proxy_cache_valid any 0;
    proxy_ignore_headers X-Accel-Redirect X-Accel-Limit-Rate X-Accel-Buffering X-Accel-Charset;
    proxy_cache_use_stale off;
    proxy_cache_background_update off;
    proxy_cache_revalidate off;
    proxy_cache_min_uses 1;
    proxy_cache_bypass 0;
    proxy_no_cache 0;
    # Fields joined by newlines, which no header value or request line can contain: no two requests share a key.
    # Every header l402d reads a credential from is in it, also those it prefers over a cached L402 credential
    # (X-Cashu on a Cashu route, x402's): a kept answer never passes a request l402d would decide on another.
    # So is the protocol: the gRPC metadata keys (token, macaroon) are read on HTTP/2 gRPC calls only.
    # l402d never marks a request with cookies cacheable; the cookies are in the key all the same.
    proxy_cache_key "$request_method\n$scheme://$host$request_uri\n$server_protocol\n$http_authorization\n$http_grpc_metadata_macaroon\n$http_token\n$http_macaroon\n$http_x_cashu\n$http_payment_signature\n$http_x_payment\n$content_type\n$l402_uri\n$http_cookie\n$l402_route_pin";
    proxy_cache_methods GET HEAD;
    proxy_cache_lock off;
    # Never let a client choose these.
    proxy_set_header X-L402-Outcome "";
    proxy_set_header X-L402-Reason "";
    proxy_set_header X-L402-Retry-After "";
    proxy_set_header X-L402-Detail "";${secret}
}

# Renders the real answer (402 challenge, 400 Cashu rejection, 401, 403, 405, 429, 503, or a gRPC status), and
# answers an MPP session's topUp and close itself (200, the auth answer said "management"; never the upstream).
location @l402_render {
    rewrite ^ /_l402/render break;
    proxy_pass http://l402d;
    # l402d gone between the auth answer and this render: still a clean 503, never a raw 502.
    error_page 502 503 504 = @l402_unavailable;
${AFTER_AUTH}
    proxy_cache off;
${timeoutLines(t.renderReadMs, t)}
    proxy_set_header X-L402-Outcome $l402_outcome;
    proxy_set_header X-L402-Reason $l402_reason;
    proxy_set_header X-L402-Retry-After $l402_retry_after;
    proxy_set_header X-L402-Detail $l402_detail;${secret}
}

# The protected upstream failed before answering (nginx's own 502/504: refused, reset, timed out; see
# protect.conf). l402d gives back the single-use claim THIS request made (told by $request_id, so nobody else's)
# and answers 502/504 saying the payment was not consumed and can be retried. An upstream that sent any byte
# of an answer has handled the request: nothing is given back.
location @l402_release {
    rewrite ^ /_l402/release break;
    proxy_pass http://l402d;
    error_page 502 503 504 = @l402_unavailable;
${AFTER_AUTH}
    proxy_set_header X-L402-Upstream-Status $upstream_status;
    # Bytes of a response from a try (an answer too big or malformed for nginx, or a 502/504 of its own that an
    # intercepting config sent here): the upstream answered, so the payment is not given back. (gRPC upstreams
    # send HTTP/2 settings before any answer: for them the response header's time counts.)
    proxy_set_header X-L402-Upstream-Bytes $upstream_bytes_received;
    proxy_set_header X-L402-Upstream-Header-Time $upstream_header_time;${secret}
    # l402d's own 502/504 is the answer: never replaced or cached (PINNED keeps errors uncaught).
    proxy_cache off;
${timeoutLines(t.renderReadMs, t)}
}

# After every request of a paid location (protect.conf's post_action; its answer is never sent to the client): when
# nginx ended a paid request with nothing served and no byte sent to the upstream ($l402_abandoned), l402d gives
# back the single-use claim or draw THIS request made ($request_id), as @l402_release does for an upstream failure.
location @l402_abandoned {
    if ($l402_abandoned = "") {
        return 204;
    }
    rewrite ^ /_l402/release break;
    proxy_pass http://l402d;
    # The client may be gone already (that is one of the reasons to be here).
    proxy_ignore_client_abort on;
${AFTER_AUTH}
    proxy_set_header X-L402-Abandoned $status;${secret}
    proxy_cache off;
${timeoutLines(t.renderReadMs, t)}
}

# The public capability manifest (never behind the paywall: an exact match wins over any prefix).
${publicDocument('/.well-known/l402-services')}

${cfg.manifest?.openapi === false ? '' : `# The MPP discovery document (OpenAPI with x-payment-info), generated from the same routes. (manifest.openapi:
# false leaves /openapi.json to your own locations.)
${publicDocument('/openapi.json')}

`}# The payment page's settlement status polling. (The development wallet's pay button is never proxied here:
# anyone reaching it could unlock every route for free. The local quick start adds it on its own.)
location = /_l402/page/status {
    proxy_pass http://l402d;
    proxy_method $request_method;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-L402-Client-Addr $remote_addr;
    client_max_body_size 16k;
${PINNED}
    proxy_cache off;
    error_page 502 503 504 = @l402_unavailable;
}

# The payment page posts the paid credential here (same-origin form): l402d sets it as the route's cookie and
# redirects (303) to the page. Never cached (Cache-Control: no-store, X-Accel-Expires: 0).
location = /_l402/page/cookie {
    proxy_pass http://l402d;
    proxy_method $request_method;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-L402-Client-Addr $remote_addr;
    proxy_set_header X-L402-Scheme $scheme;
    proxy_set_header X-L402-Host $http_host;
    proxy_set_header Cookie "";
    # The form carries the page's URL (up to 8 KiB, "/" and "&" escaped to three bytes each) and the credential.
    client_max_body_size 32k;
${PINNED}
    proxy_cache off;
    error_page 502 503 504 = @l402_unavailable;
}

# l402d unreachable or too slow: fail closed with a bounded 503.
location @l402_unavailable {
    default_type application/problem+json;
    add_header Retry-After ${retry} always;
    add_header Cache-Control no-store always;
    return 503 '{"type":"urn:l402:problem:gate-unavailable","title":"Payment gate unavailable","status":503,"reason":"gate_unavailable","retry_after":${retry}}\\n';
}
`,
    'protect.conf': `# l402-nginx: include in each location that must be paid for.
# l402d prices the path nginx matched and forwards ($uri, after any rewrite), sent to it as X-L402-URI.
# $uri is decoded: a control character (an encoded CR/LF) must never reach a header, so it is refused here.
# (The check is a map in upstream.conf: a regex \`if\` here would empty the location's captures, $1 and on, which
# the operator's proxy_pass after this include may read.)
set $l402_uri $uri;
if ($l402_uri_refused) {
    return 400;
}
satisfy all;
auth_request /_l402/auth;
# The path and route pin this decision was made on, for @l402_render and @l402_release (see server.conf): kept when the auth
# answer comes, before any of this request's other subrequests can empty them (they share its variables).
auth_request_set $l402_decided_uri $l402_uri;
auth_request_set $l402_decided_pin $l402_route_pin;
auth_request_set $l402_outcome $upstream_http_x_l402_outcome;
auth_request_set $l402_reason $upstream_http_x_l402_reason;
auth_request_set $l402_retry_after $upstream_http_x_l402_retry_after;
auth_request_set $l402_detail $upstream_http_x_l402_detail;
error_page 401 = @l402_render;
error_page 500 = @l402_unavailable;
# The upstream failed before answering (nginx's own 502/504): not served, so the payment is given back.
error_page 502 504 = @l402_release;
# nginx ended this paid request after the decision with nothing served (a body it then refused, a client that left
# before the upstream got a byte): the single-use payment is given back (see $l402_abandoned in upstream.conf).
post_action @l402_abandoned;
# Lets @l402_render turn its own upstream failure into the 503 above (nginx allows one error page otherwise).
recursive_error_pages on;
# These error pages are for the gate's answers and nginx's own failures only: the upstream's own 401, 500, 502
# or 504 to a request the gate let through is its answer, passed on as it is (an inherited "intercept errors"
# would render it as a fresh 402 challenge, outside the invoice rate limit, or give a served payment back).
proxy_intercept_errors off;
grpc_intercept_errors off;
# What the gate decided, for the upstream: set by l402d's answer only (a client's header of the same name is
# replaced, and dropped when the request was not paid). Values: token id (Lightning), rail, msat paid (Cashu), route,
# capabilities granted (the route's capability set, narrowed by the holder's caveats).
auth_request_set $l402_token_id $upstream_http_x_l402_token_id;
auth_request_set $l402_rail $upstream_http_x_l402_rail;
auth_request_set $l402_amount_msat $upstream_http_x_l402_amount_msat;
auth_request_set $l402_route $upstream_http_x_l402_route;
auth_request_set $l402_capabilities $upstream_http_x_l402_capabilities;
proxy_set_header X-L402-Token-Id $l402_token_id;
proxy_set_header X-L402-Rail $l402_rail;
proxy_set_header X-L402-Amount-Msat $l402_amount_msat;
proxy_set_header X-L402-Route $l402_route;
proxy_set_header X-L402-Capabilities $l402_capabilities;
grpc_set_header X-L402-Token-Id $l402_token_id;
grpc_set_header X-L402-Rail $l402_rail;
grpc_set_header X-L402-Amount-Msat $l402_amount_msat;
grpc_set_header X-L402-Route $l402_route;
grpc_set_header X-L402-Capabilities $l402_capabilities;
# With underscores_in_headers on, a client's X_L402_Token_Id (any mix of "-" and "_") is another header to
# nginx, but the same one to CGI-style apps (HTTP_X_L402_TOKEN_ID) and to nginx's $http_x_l402_token_id: dropped.
${identitySpellings().map((h) => `proxy_set_header ${h} "";\ngrpc_set_header ${h} "";\n`).join('')}# Every other X-L402-* name the gate reads or writes (towards nginx or the client, never the upstream): a client's
# header of such a name never reaches the upstream. Trust only the five names above. proxy_pass: every spelling
# (an app behind it may read "_" as "-"); grpc_pass: the "-" spelling (gRPC metadata keys are exact; nginx's
# gRPC module has a fixed, smaller header hash). The hash below holds them all without a warning.
proxy_headers_hash_max_size 2048;
proxy_headers_hash_bucket_size 128;
${identitySpellings(GATE_ONLY_HEADERS, true).map((h) => `proxy_set_header ${h} "";\n`).join('')}${GATE_ONLY_HEADERS.map((h) => `grpc_set_header ${h} "";\n`).join('')}# A method or path named for the upstream to use instead of the request's own: l402d refuses a request whose header
# names another one, and no spelling of these reaches the upstream (of a repeated header l402d sees only the first).
${identitySpellings(METHOD_OVERRIDE_HEADERS, true).map((h) => `proxy_set_header ${h} "";\n`).join('')}${forward ? `# forward_payment_credentials: true: the payment credential travels on to the upstream as the client sent it.
` : `# The payment credential the gate consumed stays here (forward_payment_credentials: false): an L402/LSAT/Cashu/
# Payment Authorization, X-Cashu, Grpc-Metadata-Macaroon, x402's Payment-Signature/X-Payment, and on gRPC the
# token/macaroon metadata. Another Authorization scheme passes. (X_Cashu, Payment_Signature, X_Payment: with
# underscores_in_headers on, nginx reads those spellings as $http_x_cashu etc. too.)
proxy_set_header Authorization $l402_upstream_authorization;
proxy_set_header X-Cashu "";
proxy_set_header X_Cashu "";
proxy_set_header Payment-Signature "";
proxy_set_header Payment_Signature "";
proxy_set_header X-Payment "";
proxy_set_header X_Payment "";
grpc_set_header Authorization $l402_upstream_authorization;
grpc_set_header X-Cashu "";
grpc_set_header X_Cashu "";
grpc_set_header Payment-Signature "";
grpc_set_header Payment_Signature "";
grpc_set_header X-Payment "";
grpc_set_header X_Payment "";
# Aperture's REST form of the credential (a hex macaroon with a preimage caveat), in every spelling nginx reads
# as $http_grpc_metadata_macaroon.
${['Grpc-Metadata-Macaroon', ...identitySpellings(['Grpc-Metadata-Macaroon'])].map((h) => `proxy_set_header ${h} "";\ngrpc_set_header ${h} "";\n`).join('')}proxy_set_header Token $l402_upstream_token;
proxy_set_header Macaroon $l402_upstream_macaroon;
grpc_set_header Token "";
grpc_set_header Macaroon "";
# The browser credential cookies (named l402_…) stay here too: the upstream gets the client's Cookie header
# when l402d found none of them in it, else the one l402d handed back without them (see upstream.conf).
auth_request_set $l402_cookie_mode $upstream_http_x_l402_cookie_mode;
auth_request_set $l402_upstream_site_cookie $upstream_http_x_l402_upstream_cookie;
proxy_set_header Cookie $l402_upstream_cookie;
grpc_set_header Cookie $l402_upstream_cookie;
`}# nginx: these proxy_set_header/grpc_set_header lines stop every server- or http-level one from applying to
# this location. Repeat the ones the upstream needs (Host, X-Forwarded-For, X-Forwarded-Proto...) after the include.
`,
    'dry-run.conf': `# l402-nginx: include after protect.conf in locations whose route has dry_run: true, to show the client
# what it would have been charged. (add_header here stops server-level add_header from applying.)
auth_request_set $l402_dry_run $upstream_http_x_l402_dry_run;
auth_request_set $l402_dry_run_price $upstream_http_x_l402_dry_run_price_msat;
auth_request_set $l402_dry_run_challenge $upstream_http_x_l402_dry_run_challenge;
auth_request_set $l402_dry_run_limited $upstream_http_x_l402_dry_run_rate_limited;
auth_request_set $l402_dry_run_retry $upstream_http_x_l402_dry_run_retry_after;
add_header X-L402-Dry-Run $l402_dry_run always;
add_header X-L402-Dry-Run-Price-Msat $l402_dry_run_price always;
add_header X-L402-Dry-Run-Challenge $l402_dry_run_challenge always;
add_header X-L402-Dry-Run-Rate-Limited $l402_dry_run_limited always;
add_header X-L402-Dry-Run-Retry-After $l402_dry_run_retry always;
`,
    'balance.conf': `# l402-nginx: include after protect.conf in locations whose route has access: balance, to tell the client
# what is left on its prepaid balance after this request's draw (X-L402-Balance-Msat; the 402 of an empty
# balance carries it from l402d itself). (add_header and proxy_hide_header here stop server-level ones of
# theirs from applying: repeat those you need.)
auth_request_set $l402_balance_msat $upstream_http_x_l402_balance_msat;
# Only the gate says what is left: an upstream's header of the same name is dropped.
proxy_hide_header X-L402-Balance-Msat;
grpc_hide_header X-L402-Balance-Msat;
add_header X-L402-Balance-Msat $l402_balance_msat always;
`,
    'payment-receipts.conf': `# l402-nginx: include after protect.conf in locations whose route offers mpp or x402 (schemes:), to hand
# the client its receipt: MPP's Payment-Receipt, x402's PAYMENT-RESPONSE. l402d sets them on the auth answer
# of a paid request only. (add_header, proxy_hide_header and grpc_hide_header here stop server-level ones of theirs
# from applying: repeat those you need.)
auth_request_set $l402_payment_receipt $upstream_http_payment_receipt;
auth_request_set $l402_payment_response $upstream_http_payment_response;
auth_request_set $l402_receipt_cache $upstream_http_x_l402_receipt_cache;
auth_request_set $l402_receipt_expose $upstream_http_x_l402_receipt_expose;
# Only the gate issues receipts: an upstream's header of the same name is dropped (proxy_pass and grpc_pass).
proxy_hide_header Payment-Receipt;
proxy_hide_header PAYMENT-RESPONSE;
grpc_hide_header Payment-Receipt;
grpc_hide_header PAYMENT-RESPONSE;
add_header Payment-Receipt $l402_payment_receipt always;
add_header PAYMENT-RESPONSE $l402_payment_response always;
# A response that carries a receipt is not for shared caches (draft-httpauth-payment, "Caching").
add_header Cache-Control $l402_receipt_cache always;
add_header Access-Control-Expose-Headers $l402_receipt_expose always;
`,
  };
}
