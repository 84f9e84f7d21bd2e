// The time budget of one request as the client sees it: nginx's auth subrequest, then (for anything but a
// pass) the render request. l402d ends each of its two steps by its own deadline, and nginx's timeouts for
// them end after those deadlines with a margin, so nginx never gives up on an l402d that is still working
// (and might still spend a single-use credential): when a dependency is stalled the client gets l402d's 503,
// and when l402d itself is stalled, nginx's. The nginx snippets take their timeouts from here.

/** What the defaults promise: every request is answered (at worst 503 + Retry-After) within this. */
export const ANSWER_BOUND_MS = 5000;

/** Default deadline of a decision (the auth step), counted from when nginx sent the subrequest. */
export const DECISION_DEADLINE_MS = 2000;

/** Default deadline of a render (the error_page step, which may mint an invoice), counted from its arrival. */
export const RENDER_DEADLINE_MS = 2000;

/** How much longer nginx waits for an answer than l402d's deadline for it. */
export const NGINX_MARGIN_MS = 500;

/** nginx's connect timeout to l402d (loopback or LAN: anything slower is a dead or overloaded l402d). */
export const NGINX_CONNECT_MS = 500;

/**
 * nginx retries another l402d (upstream block with several servers) only while the request is younger than
 * this: after a quick failure (connection refused or reset), not after a timeout. A timed-out attempt is not
 * repeated: the client gets its 503 at once, and the decision deadline (counted from the first send) would
 * leave the second l402d too little time anyway.
 */
export const NGINX_NEXT_UPSTREAM_MS = 1000;

export interface Timeouts {
  backendMs: number;
  storeMs: number;
  decisionMs: number;
  renderMs: number;
}

export interface NginxTimeouts {
  connectMs: number;
  authReadMs: number;
  renderReadMs: number;
  nextUpstreamMs: number;
  nextUpstreamTries: number;
}

export function nginxTimeouts(t: Pick<Timeouts, 'decisionMs' | 'renderMs'>): NginxTimeouts {
  return {
    connectMs: NGINX_CONNECT_MS,
    authReadMs: t.decisionMs + NGINX_MARGIN_MS,
    renderReadMs: t.renderMs + NGINX_MARGIN_MS,
    nextUpstreamMs: NGINX_NEXT_UPSTREAM_MS,
    nextUpstreamTries: 2,
  };
}

/**
 * The longest a client waits with these timeouts, one fault at a time:
 * - auth answered by l402d (by its decision deadline, counted from nginx's first send, whichever l402d
 *   answers), then the render answered by l402d (render deadline) or given up by nginx (render read
 *   timeout, the larger): decisionMs + renderMs + margin;
 * - auth given up by nginx: a quick failure retried (before nextUpstreamMs), then connect + read timeout;
 *   no render follows (nginx answers 503 itself).
 */
export function worstAnswerMs(t: Pick<Timeouts, 'decisionMs' | 'renderMs'>): number {
  const n = nginxTimeouts(t);
  return Math.max(t.decisionMs + n.renderReadMs, n.nextUpstreamMs + n.connectMs + n.authReadMs);
}

/** nginx duration syntax in milliseconds. */
export function nginxMs(ms: number): string {
  return `${Math.round(ms)}ms`;
}
