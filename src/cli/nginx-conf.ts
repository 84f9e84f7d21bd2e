// The nginx side of the contract, generated from the config so the snippets always match l402d's address.
// `nginx/l402/` holds the same text for the default address (a test keeps the two identical).
import type { GateConfig } from '../policy/config.js';
import { nginxMs, nginxTimeouts } from '../policy/budget.js';

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
    proxy_set_header X-Original-Method $request_method;
    proxy_set_header X-Original-Protocol $server_protocol;
    proxy_set_header X-L402-Client-Addr $remote_addr;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    # Challenges carry a macaroon and an invoice in headers; the 4-8 KiB default is too tight for some.
    proxy_buffer_size 16k;
    proxy_buffers 8 16k;`;

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

export function nginxSnippets(cfg: Pick<GateConfig, 'listen' | 'retryAfterSecs' | 'timeouts'>): NginxSnippets {
  const retry = cfg.retryAfterSecs;
  const t = nginxTimeouts(cfg.timeouts);
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
${timeoutLines(t.authReadMs, t)}
    # When nginx sent the subrequest (its first attempt) and the deadline these timeouts were made for:
    # l402d answers by then, so it never spends a single-use credential after nginx gave up.
    proxy_set_header X-L402-Sent-At $msec;
    proxy_set_header X-L402-Deadline-Ms ${cfg.timeouts.decisionMs};
    proxy_cache l402_auth;
    # Fields joined by newlines, which no header value or request line can contain: no two requests share a key.
    proxy_cache_key "$request_method\n$scheme://$host$request_uri\n$http_authorization\n$http_token\n$http_macaroon\n$content_type";
    proxy_cache_methods GET HEAD POST;
    proxy_cache_lock off;
    # Never let a client choose these.
    proxy_set_header X-L402-Outcome "";
    proxy_set_header X-L402-Reason "";
    proxy_set_header X-L402-Retry-After "";
    proxy_set_header X-L402-Detail "";
}

# Renders the real answer (402 challenge, 400 Cashu rejection, 401, 403, 405, 429, 503, or a gRPC status).
location @l402_render {
    rewrite ^ /_l402/render break;
    proxy_pass http://l402d;
    # l402d gone between the auth answer and this render: still a clean 503, never a raw 502.
    error_page 502 503 504 = @l402_unavailable;
${COMMON}
${timeoutLines(t.renderReadMs, t)}
    proxy_set_header X-L402-Outcome $l402_outcome;
    proxy_set_header X-L402-Reason $l402_reason;
    proxy_set_header X-L402-Retry-After $l402_retry_after;
    proxy_set_header X-L402-Detail $l402_detail;
}

# The public capability manifest (never behind the paywall: an exact match wins over any prefix).
location = /.well-known/l402-services {
    proxy_pass http://l402d;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-L402-Outcome "";
}

# The payment page's helpers (settlement status polling; the dev wallet's pay button in dev mode).
location /_l402/page/ {
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
