// The HTML answer for browsers (clients that prefer text/html). Self-contained: no external fonts or
// scripts. Everything interpolated is escaped for its context.
import type { Challenge } from '../policy/challenge.js';
import type { RouteConfig } from '../policy/config.js';

export interface PageOptions {
  /** The request URI the page retries once paid (path and query, as the client sent it). */
  originalUri: string;
  /** Development wallet: offer a "pay with the development wallet" button. */
  devWallet: boolean;
  /** The route auto-detects settlement: the page can poll instead of asking for the preimage. */
  autoDetect: boolean;
}

export interface PageInput {
  status: number;
  title: string;
  message: string;
  outcome: string;
  challenge?: Challenge;
  route?: RouteConfig;
  page?: PageOptions;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

export function paymentPage(p: PageInput): string {
  const c = p.challenge;
  const pay = c
    ? `<p>Price: <strong>${escapeHtml(String(Math.ceil(c.amountMsat / 1000)))} sats</strong> (${escapeHtml(String(c.amountMsat))} msat)</p>
<p>Lightning invoice:</p><textarea readonly rows="5" cols="70">${escapeHtml(c.invoice)}</textarea>
<p>Macaroon:</p><textarea readonly rows="4" cols="70">${escapeHtml(c.macaroon)}</textarea>
<p>After paying, repeat the request with <code>Authorization: L402 &lt;macaroon&gt;:&lt;preimage&gt;</code>.</p>`
    : '';
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${p.status} ${escapeHtml(p.title)}</title></head>
<body><h1>${p.status} ${escapeHtml(p.title)}</h1><p>${escapeHtml(p.message)}</p>${pay}</body></html>\n`;
}
