// The nginx side of the contract, generated from the config so the snippets always match l402d's address.
// `nginx/l402/` holds the same text for the default address (a test keeps the two identical).
import type { GateConfig } from '../policy/config.js';

export interface NginxSnippets {
  'upstream.conf': string;
  'server.conf': string;
  'protect.conf': string;
  'dry-run.conf': string;
}

export function nginxServerAddress(listen: string): string {
  return listen.startsWith('unix:') ? listen : listen;
}

const COMMON = `    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
    proxy_set_header X-Original-URI $request_uri;
    # The path nginx matched and forwards (protect.conf sets it; control characters refused there).
    proxy_set_header X-L402-URI $l402_uri;
    proxy_set_header X-Original-Method $request_method;
    proxy_set_header X-Original-Protocol $server_protocol;
    proxy_set_header X-L402-Client-Addr $remote_addr;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_connect_timeout 2s;
    proxy_send_timeout 6s;
    proxy_read_timeout 6s;
    # Challenges carry a macaroon and an invoice in headers; the 4-8 KiB default is too tight for some.
    proxy_buffer_size 16k;
    proxy_buffers 8 16k;`;

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

export function nginxSnippets(cfg: Pick<GateConfig, 'listen' | 'retryAfterSecs'> & { nginxSecret?: string }): NginxSnippets {
  const retry = cfg.retryAfterSecs;
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
`,
    'server.conf': `# l402-nginx: include once in each server {} block that has protected locations.
# Internal endpoints only: clients cannot reach them.

# The auth_request subrequest: l402d answers 200 (paid) or 401 with the outcome in headers.
location = /_l402/auth {
    internal;
    proxy_pass http://l402d;
${COMMON}
    proxy_cache l402_auth;
    # Fields joined by newlines, which no header value or request line can contain: no two requests share a key.
    proxy_cache_key "$request_method\n$scheme://$host$request_uri\n$http_authorization\n$http_token\n$http_macaroon\n$content_type\n$l402_uri";
    proxy_cache_methods GET HEAD POST;
    proxy_cache_lock off;
    # Never let a client choose these.
    proxy_set_header X-L402-Outcome "";
    proxy_set_header X-L402-Reason "";
    proxy_set_header X-L402-Retry-After "";
    proxy_set_header X-L402-Detail "";${secret}
}

# Renders the real answer (402 challenge, 400 Cashu rejection, 401, 403, 405, 429, 503, or a gRPC status).
location @l402_render {
    rewrite ^ /_l402/render break;
    proxy_pass http://l402d;
    # l402d gone between the auth answer and this render: still a clean 503, never a raw 502.
    error_page 502 503 504 = @l402_unavailable;
${COMMON}
    proxy_set_header X-L402-Outcome $l402_outcome;
    proxy_set_header X-L402-Reason $l402_reason;
    proxy_set_header X-L402-Retry-After $l402_retry_after;
    proxy_set_header X-L402-Detail $l402_detail;${secret}
}

# The public capability manifest (never behind the paywall: an exact match wins over any prefix).
location = /.well-known/l402-services {
    proxy_pass http://l402d;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-L402-Outcome "";
}

# The payment page's settlement status polling. (The development wallet's pay button is never proxied here:
# anyone reaching it could unlock every route for free. The local quick start adds it on its own.)
location = /_l402/page/status {
    proxy_pass http://l402d;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-L402-Client-Addr $remote_addr;
    client_max_body_size 16k;
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
set $l402_uri $uri;
if ($l402_uri ~ "[\\x00-\\x1f\\x7f]") {
    return 400;
}
satisfy all;
auth_request /_l402/auth;
auth_request_set $l402_outcome $upstream_http_x_l402_outcome;
auth_request_set $l402_reason $upstream_http_x_l402_reason;
auth_request_set $l402_retry_after $upstream_http_x_l402_retry_after;
auth_request_set $l402_detail $upstream_http_x_l402_detail;
error_page 401 = @l402_render;
error_page 500 = @l402_unavailable;
# Lets @l402_render turn its own upstream failure into the 503 above (nginx allows one error page otherwise).
recursive_error_pages on;
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
  };
}
