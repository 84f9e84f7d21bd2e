// The HTML answer for browsers (clients that prefer text/html). Once paid (GET on a route), the page posts
// the credential to the gate, which sets it as the route's cookie and redirects to the page asked for; a
// Cashu payment or another method shows the answer in the page. Self-contained: no external fonts,
// styles or scripts, and a Content-Security-Policy that only allows the page's own inline script and
// style (by hash). Every interpolated value is escaped for its context: visible text is HTML-escaped,
// and what the script needs travels in a JSON data block, never in JavaScript string literals.
import { createHash } from 'node:crypto';
import QRCode from 'qrcode';
import type { Challenge } from '../policy/challenge.js';
import type { RouteConfig } from '../config/config.js';

export interface PageOptions {
  /** The request URI the page retries once paid (path and query, as the client sent it). */
  originalUri: string;
  /** Development wallet: offer a "pay with the development wallet" button. */
  devWallet: boolean;
  /** The route auto-detects settlement: the page can poll instead of asking for the preimage. */
  autoDetect: boolean;
  /** The original request method; the page only replays GET (and HEAD) requests itself. */
  method?: string;
  /**
   * The gate can set the credential cookie here (`/_l402/page/cookie` is served: standalone mode, or nginx
   * snippets that send `X-L402-Scheme`, which come with that location). Otherwise the page never posts the
   * credential there, where an older server.conf would hand it to the site.
   */
  cookie?: boolean;
}

export interface PageInput {
  status: number;
  title: string;
  message: string;
  outcome: string;
  challenge?: Challenge;
  route?: RouteConfig;
  page?: PageOptions;
  /**
   * Cashu (NUT-24) rail: the `creqA…` payment request the page offers (in a second tab beside Lightning, or
   * alone on a route that sells only Cashu) and its price.
   */
  cashu?: { request: string; amountMsat?: number };
}

/** Where the page's helpers live (served by page-endpoints.ts, proxied by nginx's server.conf). */
export const PAGE_ENDPOINTS = { status: '/_l402/page/status', devPay: '/_l402/page/dev-pay', cookie: '/_l402/page/cookie' } as const;

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/**
 * JSON for a `<script type="application/json">` block: nothing in it can close the element, open a
 * comment or an entity, or end a line for an old JavaScript parser.
 */
export function jsonForScript(v: unknown): string {
  return JSON.stringify(v).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** "1,234.5 sats": exact (msat are shown next to it), never rounded up or down. */
export function formatSats(msat: number): string {
  const whole = Math.floor(msat / 1000);
  const frac = msat % 1000;
  const text = whole.toLocaleString('en-US') + (frac ? '.' + String(frac).padStart(3, '0').replace(/0+$/, '') : '');
  return `${text} ${msat === 1000 ? 'sat' : 'sats'}`;
}

/**
 * Inline SVG QR code. qrcode's string renderer is synchronous when given a callback; if that ever
 * changes we render no QR rather than block. The xmlns URL is dropped: HTML does not need it, and the
 * page then contains no http(s) URL at all.
 */
export function qrSvg(text: string, label: string): string | undefined {
  let out: string | undefined;
  try {
    QRCode.toString(text, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 }, (err, svg) => {
      if (!err) out = svg;
    });
  } catch {
    return undefined;
  }
  if (!out || !out.startsWith('<svg ')) return undefined;
  return out.trim().replace(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" /, `<svg role="img" aria-label="${escapeHtml(label)}" `);
}

const CSS = `:root{color-scheme:light dark;--fg:#1d1d1f;--muted:#5f6368;--bg:#f5f5f7;--card:#fff;--line:#d2d2d7;--accent:#a85600;--on-accent:#fff;--ok:#1b7f3b;--err:#b00020}
@media (prefers-color-scheme:dark){:root{--fg:#f5f5f7;--muted:#a1a1a6;--bg:#111;--card:#1c1c1e;--line:#3a3a3c;--accent:#ffa64d;--on-accent:#111;--ok:#5fd07f;--err:#ff6b81}}
*{box-sizing:border-box}[hidden]{display:none!important}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:40rem;margin:2rem auto;padding:1.5rem;background:var(--card);border:1px solid var(--line);border-radius:12px}
h1{font-size:1.4rem;margin:0 0 .25rem}h2{font-size:1.1rem;margin:1rem 0 .5rem}
p{margin:.5rem 0}.muted{color:var(--muted);font-size:.9rem}.price{font-size:1.25rem}.price strong{color:var(--accent)}
code,textarea,input,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem}
code{overflow-wrap:anywhere}
textarea,input{width:100%;padding:.5rem;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg)}
textarea{resize:vertical;overflow-wrap:anywhere}
button,.button{display:inline-block;margin:.5rem .5rem .5rem 0;padding:.5rem 1rem;border:1px solid var(--line);border-radius:6px;background:var(--card);color:var(--fg);font:inherit;cursor:pointer;text-decoration:none}
button.primary{background:var(--accent);border-color:var(--accent);color:var(--on-accent)}button:disabled{opacity:.6;cursor:default}
.qr{display:flex;justify-content:center;margin:1rem 0}.qr svg{width:100%;max-width:280px;height:auto;background:#fff;border-radius:6px}
.tabs{display:flex;gap:.25rem;border-bottom:1px solid var(--line);margin:1rem 0}
.tabs button{margin:0;border-radius:6px 6px 0 0;border-bottom:none}.tabs button[aria-selected=true]{background:var(--bg);font-weight:600}
.dev{border:1px dashed var(--accent);border-radius:8px;padding:.5rem 1rem;margin:1rem 0}
.status{color:var(--muted)}.error{color:var(--err);font-weight:600}.ok{color:var(--ok)}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:.75rem;max-height:70vh;overflow:auto}
iframe{width:100%;min-height:60vh;border:1px solid var(--line);border-radius:6px;background:#fff}
img.content{max-width:100%}details{margin:1rem 0}summary{cursor:pointer}`;

// Static: everything it needs comes from the JSON block, so its CSP hash never changes.
const SCRIPT = `(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('l402-data').textContent);
  document.documentElement.className = 'js';
  function $(id) { return document.getElementById(id); }
  // paid: the invoice is known to be paid, so polling again could only repeat a failed unlock.
  var busy = false, done = false, paid = false, polls = 0, timer = null;

  function say(id, text, cls) { var el = $(id); if (!el) return; el.textContent = text; el.className = cls || ''; el.hidden = !text; }
  function fail(text) { say('error', text, 'error'); }
  function target() {
    // Same origin only: a crafted URI such as //evil.example must never receive the credential.
    try { var u = new URL(D.uri, location.href); if (u.origin === location.origin) return u.pathname + u.search; } catch (e) {}
    return location.pathname + location.search;
  }
  function timeoutSignal(ms) { var c = new AbortController(); setTimeout(function () { c.abort(); }, ms); return c.signal; }
  function hex(bytes) { var s = ''; for (var i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16); return s; }

  async function problem(r) {
    var text = '';
    try { text = await r.text(); var j = JSON.parse(text); if (j && (j.detail || j.title)) return j.detail || j.title; } catch (e) {}
    return 'HTTP ' + r.status + (text && text.length < 200 ? ': ' + text : '');
  }

  async function show(r, credential) {
    var ct = (r.headers.get('content-type') || '').toLowerCase();
    var box = $('content');
    box.textContent = '';
    if (/^text\\/html|^application\\/xhtml\\+xml/.test(ct)) {
      // Sandboxed without allow-scripts or allow-same-origin: the content cannot touch this page.
      var f = document.createElement('iframe');
      f.setAttribute('sandbox', '');
      f.setAttribute('title', 'Protected content');
      f.srcdoc = await r.text();
      box.appendChild(f);
    } else if (/^image\\//.test(ct)) {
      var img = document.createElement('img');
      img.className = 'content';
      img.alt = 'Protected content';
      img.src = URL.createObjectURL(await r.blob());
      box.appendChild(img);
    } else if (ct === '' || /^text\\/|json|xml|javascript/.test(ct)) {
      var pre = document.createElement('pre');
      var text = await r.text();
      if (/json/.test(ct)) { try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) {} }
      pre.textContent = text;
      box.appendChild(pre);
    } else {
      // Opaque type: a download that can never be opened as a document of this origin.
      var blob = new Blob([await r.arrayBuffer()], { type: 'application/octet-stream' });
      var a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = (target().split('?')[0].split('/').pop() || 'download').replace(/[^A-Za-z0-9._-]/g, '_');
      a.className = 'button';
      a.textContent = 'Download the content (' + blob.size + ' bytes)';
      box.appendChild(a);
    }
    finish(credential);
  }

  function finish(credential) {
    done = true;
    stopPolling();
    $('pay').hidden = true;
    $('message').hidden = true;
    $('result').hidden = false;
    $('heading').textContent = document.title = 'Paid';
    if (credential && D.reusable) { $('credential').value = credential; $('credential-box').hidden = false; }
  }

  // One unlock at a time: a poll that sees the payment and a button press must not both spend a
  // single-use credential.
  async function exclusive(fn) {
    if (busy || done) return;
    busy = true;
    fail('');
    try { await fn(); } catch (e) { fail('Network error: ' + (e && e.message ? e.message : e)); } finally { busy = false; }
    if (!done && !paid && D.autoDetect && !timer) schedule();
  }

  // A GET on a route: the gate sets the credential as the route's cookie (HttpOnly) and sends the browser
  // to the page itself (303), which then loads with its own styles, images and scripts, and the rest of a
  // reusable route opens with the same cookie.
  function navigate(credential) {
    done = true;
    stopPolling();
    var f = document.createElement('form');
    f.method = 'POST';
    f.action = D.cookieUrl;
    f.hidden = true;
    [['credential', credential], ['uri', target()]].forEach(function (kv) {
      var i = document.createElement('input');
      i.type = 'hidden'; i.name = kv[0]; i.value = kv[1];
      f.appendChild(i);
    });
    document.body.appendChild(f);
    say('progress', 'Paid. Opening the page\u2026', 'status');
    f.submit();
  }

  async function unlock(headers, credential) {
    if (D.cookie && credential) return navigate(credential);
    if (!D.replay) {
      finish(credential);
      $('content').textContent = 'Paid. Repeat your ' + D.method + ' request with the credential below.';
      $('credential').value = credential || '';
      $('credential-box').hidden = !credential;
      return;
    }
    say('progress', 'Loading the content\\u2026', 'status');
    var r = await fetch(target(), { method: D.method === 'HEAD' ? 'HEAD' : 'GET', headers: headers, cache: 'no-store', credentials: 'same-origin', redirect: 'follow', signal: timeoutSignal(20000) });
    say('progress', '');
    if (r.ok) return show(r, credential);
    fail(await problem(r));
  }

  function withPreimage(pre) { return 'L402 ' + D.macaroon + ':' + pre; }

  async function preimageMatches(pre) {
    if (!(window.crypto && crypto.subtle)) return true;
    var b = new Uint8Array(32);
    for (var i = 0; i < 32; i++) b[i] = parseInt(pre.substr(i * 2, 2), 16);
    return hex(new Uint8Array(await crypto.subtle.digest('SHA-256', b))) === D.paymentHash;
  }

  // Tabs (only rendered when there is more than one payment method).
  var tabs = document.querySelectorAll('[role=tab]');
  function select(name) {
    for (var i = 0; i < tabs.length; i++) {
      var t = tabs[i], on = t.getAttribute('data-tab') === name;
      t.setAttribute('aria-selected', on ? 'true' : 'false');
      $('tab-' + t.getAttribute('data-tab')).hidden = !on;
    }
  }
  for (var i = 0; i < tabs.length; i++) tabs[i].addEventListener('click', function (ev) { select(ev.currentTarget.getAttribute('data-tab')); });
  if (tabs.length) select('ln');

  // Copy buttons: data-copy names the textarea to copy.
  var copies = document.querySelectorAll('button[data-copy]');
  for (var k = 0; k < copies.length; k++) copies[k].addEventListener('click', function (ev) {
    var btn = ev.currentTarget, src = $(btn.getAttribute('data-copy')), label = btn.textContent;
    function ok() { btn.textContent = 'Copied'; setTimeout(function () { btn.textContent = label; }, 1500); }
    function legacy() { src.focus(); src.select(); try { if (document.execCommand('copy')) ok(); } catch (e) {} }
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(src.value).then(ok, legacy); else legacy();
  });

  var form = $('preimage-form');
  if (form) form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var pre = $('preimage').value.trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(pre)) { fail('The preimage is 64 hexadecimal characters.'); return; }
    exclusive(async function () {
      // Checked here first: a wrong preimage sent to the server would only cost a fresh invoice.
      if (!(await preimageMatches(pre))) { fail('This preimage does not belong to this invoice.'); return; }
      paid = true;
      await unlock({ Authorization: withPreimage(pre) }, withPreimage(pre));
    });
  });

  var dev = $('dev-pay');
  if (dev) dev.addEventListener('click', function () {
    exclusive(async function () {
      dev.disabled = true;
      stopPolling();
      try {
        var r = await fetch(D.devPayUrl, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ invoice: D.invoice }), cache: 'no-store', signal: timeoutSignal(15000) });
        var j = {};
        try { j = await r.json(); } catch (e) {}
        if (!r.ok || typeof j.preimage !== 'string' || !/^[0-9a-f]{64}$/.test(j.preimage)) { fail('Development wallet: ' + (j.message || j.error || ('HTTP ' + r.status))); return; }
        paid = true;
        $('preimage').value = j.preimage;
        await unlock({ Authorization: withPreimage(j.preimage) }, withPreimage(j.preimage));
      } finally { dev.disabled = done; }
    });
  });

  var cashu = $('cashu-form');
  if (cashu) cashu.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var token = $('cashu-token').value.replace(/\\s+/g, '');
    if (!/^cashuB[A-Za-z0-9_=+\\/-]+$/.test(token)) { fail('A Cashu token starts with cashuB.'); return; }
    exclusive(function () { return unlock({ 'X-Cashu': token }, null); });
  });

  // Auto-detect: ask the status endpoint (it never mints an invoice); every 2 s for a minute, then slower
  // (every 30 s at most), for as long as the invoice can be paid, and once more when it expires: a payment
  // made after one check and before the expiry is still found (never a page that gave up on a paid invoice).
  function delay(n) { return n < 30 ? 2000 : Math.min(30000, Math.round(2000 * Math.pow(1.2, n - 30))); }
  function stopPolling() { if (timer) clearTimeout(timer); timer = null; }
  function schedule() {
    if (done || paid || !D.autoDetect) return;
    if (Date.now() / 1000 >= D.expiresAt) { say('poll-status', 'Stopped checking for the payment.', 'status'); $('check-now').hidden = false; return; }
    timer = setTimeout(poll, delay(polls));
  }
  async function poll() {
    timer = null;
    if (done || busy) return schedule();
    polls++;
    var r;
    try { r = await fetch(D.statusUrl, { headers: { Authorization: 'L402 ' + D.macaroon }, cache: 'no-store', signal: timeoutSignal(10000) }); } catch (e) { return schedule(); }
    if (r.status === 200) {
      var j = {};
      try { j = await r.json(); } catch (e) {}
      if (j.settled === true) {
        paid = true;
        say('poll-status', 'Payment received.', 'ok');
        return exclusive(function () { return unlock({ Authorization: 'L402 ' + D.macaroon }, 'L402 ' + D.macaroon); });
      }
      return schedule();
    }
    if (r.status >= 500) return schedule();
    say('poll-status', 'Automatic payment detection is not available here: paste the preimage below.', 'status');
  }
  var again = $('check-now');
  if (again) again.addEventListener('click', function () { again.hidden = true; polls = 0; say('poll-status', 'Waiting for the payment\\u2026', 'status'); stopPolling(); poll(); });
  if (D.autoDetect) schedule();

  // Expiry countdown; an expired invoice can only be replaced by a fresh challenge (a reload), which would lose
  // a payment made just before the expiry: auto-detect checks once more, and the page says so.
  var exp = $('expiry');
  function tick() {
    if (!exp || done) return;
    var left = Math.floor(D.expiresAt - Date.now() / 1000);
    if (left <= 0) {
      exp.textContent = 'The invoice has expired. If you paid it, ' + (D.autoDetect ? 'check again' : 'enter its preimage below') + '; otherwise reload the page for a new one.';
      exp.className = 'error';
      if (D.autoDetect && !paid) { stopPolling(); poll(); }
      return;
    }
    exp.textContent = 'The invoice expires in ' + (left >= 120 ? Math.floor(left / 60) + ' minutes.' : left + ' seconds.');
    setTimeout(tick, left > 120 ? 30000 : 1000);
  }
  tick();
})();
`;

function cspHash(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

/**
 * The page's policy: only its own inline script and style run; it may talk to its own origin only
 * (status polling, dev wallet, the paid retry); images only from data:/blob: (unlocked image content).
 * The sandboxed iframe for HTML content uses srcdoc, which inherits this policy.
 */
export const PAYMENT_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${cspHash(SCRIPT)}`,
  `style-src ${cspHash(CSS)}`,
  'img-src data: blob:',
  "connect-src 'self'",
  "base-uri 'none'",
  // The credential cookie is set by a form post to this origin, which redirects (303) to the paid page.
  "form-action 'self'",
].join('; ');

/**
 * Response headers the payment page should be sent with (the meta tag cannot express
 * frame-ancestors). Proposed for render(): push these when it answers with the HTML page.
 */
export const PAYMENT_PAGE_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['Content-Security-Policy', `${PAYMENT_PAGE_CSP}; frame-ancestors 'none'`],
  ['X-Content-Type-Options', 'nosniff'],
  // Nothing leaves the origin; same-origin requests name it (under no-referrer, a form post's Origin is
  // "null", and a browser without Sec-Fetch-Site could not show the cookie endpoint where it comes from).
  ['Referrer-Policy', 'same-origin'],
];

function sameOriginPath(uri: string | undefined): string | undefined {
  return uri && uri.startsWith('/') && !uri.startsWith('//') && !uri.startsWith('/\\') ? uri : undefined;
}

function lightningPanel(p: PageInput, c: Challenge, o: PageOptions | undefined): string {
  const qr = qrSvg(`LIGHTNING:${c.invoice.toUpperCase()}`, 'QR code of the Lightning invoice');
  const dev = o?.devWallet
    ? `<div class="dev"><p><strong>Development wallet</strong>: no real money moves.</p><button type="button" class="primary" id="dev-pay">Pay with the development wallet</button></div>`
    : '';
  const auto = o?.autoDetect
    ? `<p id="poll-status" class="status" aria-live="polite">Waiting for the payment\u2026 this page opens the content when the invoice is paid.</p><button type="button" id="check-now" hidden>Check again</button>`
    : '';
  return `<div class="panel" id="tab-ln" role="tabpanel">
<div class="qr">${qr ?? '<p class="muted">(No QR code: the invoice is too long for one.)</p>'}</div>
<label for="invoice">Lightning invoice</label>
<textarea id="invoice" readonly rows="4" spellcheck="false">${escapeHtml(c.invoice)}</textarea>
<p><button type="button" data-copy="invoice">Copy invoice</button>${/^ln[a-z0-9]+$/i.test(c.invoice) ? `<a class="button" href="lightning:${c.invoice}">Open in a wallet</a>` : ''}</p>
<p id="expiry" class="muted"></p>
${dev}${auto}
<form id="preimage-form" autocomplete="off" novalidate>
<label for="preimage">${o?.autoDetect ? 'Or paste' : 'Paid? Paste'} the payment preimage (64 hexadecimal characters)</label>
<input id="preimage" name="preimage" inputmode="text" maxlength="64" spellcheck="false" pattern="[0-9a-fA-F]{64}" placeholder="preimage">
<button type="submit">Unlock</button>
</form>
<details><summary>For API clients</summary>
<p class="muted">Pay the invoice, then repeat the request with <code>Authorization: L402 &lt;macaroon&gt;:&lt;preimage&gt;</code>${p.route?.autoDetect ? ' (or the macaroon alone once paid)' : ''}.</p>
<label for="macaroon">Macaroon</label>
<textarea id="macaroon" readonly rows="3" spellcheck="false">${escapeHtml(c.macaroon)}</textarea>
<button type="button" data-copy="macaroon">Copy macaroon</button>
</details>
</div>`;
}

function cashuPanel(request: string): string {
  const qr = qrSvg(request, 'QR code of the Cashu payment request');
  return `<div class="panel" id="tab-cashu" role="tabpanel">
<div class="qr">${qr ?? ''}</div>
<label for="cashu-request">Cashu payment request</label>
<textarea id="cashu-request" readonly rows="3" spellcheck="false">${escapeHtml(request)}</textarea>
<p><button type="button" data-copy="cashu-request">Copy request</button></p>
<form id="cashu-form" autocomplete="off" novalidate>
<label for="cashu-token">Cashu token (<code>cashuB\u2026</code>)</label>
<textarea id="cashu-token" name="token" rows="4" spellcheck="false" placeholder="cashuB..."></textarea>
<button type="submit">Pay with Cashu</button>
</form>
</div>`;
}

export function paymentPage(p: PageInput): string {
  const c = p.challenge;
  const o = p.page;
  const uri = sameOriginPath(o?.originalUri);
  const head = `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${escapeHtml(PAYMENT_PAGE_CSP)}">
<meta name="viewport" content="width=device-width,initial-scale=1"><meta name="referrer" content="same-origin"><meta name="robots" content="noindex">
<title>${p.status} ${escapeHtml(p.title)}</title><style>${CSS}</style></head>
<body><main>
<h1 id="heading">${p.status} ${escapeHtml(p.title)}</h1>
<p id="message">${escapeHtml(p.message)}</p>
`;
  // What this answer offers: a Lightning challenge, a Cashu request, both, or nothing (then no payment form).
  const amountMsat = c?.amountMsat ?? p.cashu?.amountMsat;
  if ((!c && !p.cashu) || amountMsat === undefined) {
    const retry = uri && p.status >= 500 ? `<p><a class="button" href="${escapeHtml(uri)}">Try again</a></p>` : '';
    return `${head}${retry}</main></body></html>\n`;
  }
  const method = (o?.method ?? 'GET').toUpperCase();
  const data = {
    invoice: c?.invoice ?? null,
    macaroon: c?.macaroon ?? null,
    paymentHash: c?.paymentHash ?? null,
    expiresAt: c?.invoiceExpiresAt ?? 0,
    uri: uri ?? null,
    method,
    replay: method === 'GET' || method === 'HEAD',
    cookie: !!o?.cookie && method === 'GET' && p.route !== undefined && uri !== undefined,
    cookieUrl: PAGE_ENDPOINTS.cookie,
    reusable: p.route !== undefined && p.route.access !== 'per-request',
    devWallet: !!c && !!o?.devWallet,
    autoDetect: !!c && !!o?.autoDetect,
    statusUrl: PAGE_ENDPOINTS.status,
    devPayUrl: PAGE_ENDPOINTS.devPay,
  };
  const tabs = c && p.cashu
    ? `<div class="tabs" role="tablist"><button type="button" role="tab" data-tab="ln" aria-selected="true">Lightning</button><button type="button" role="tab" data-tab="cashu" aria-selected="false">Cashu</button></div>`
    : '';
  const resource = o?.originalUri ?? p.route?.id;
  return `${head}<section id="pay">
<p class="price">Price: <strong id="price-sats">${escapeHtml(formatSats(amountMsat))}</strong> <span class="muted" id="price-msat">(${escapeHtml(amountMsat.toLocaleString('en-US'))} msat)</span></p>
${resource !== undefined ? `<p class="muted">For <code id="resource">${escapeHtml(resource)}</code>${p.route ? ` (route <code id="route">${escapeHtml(p.route.id)}</code>)` : ''}</p>` : ''}
${tabs}${c ? lightningPanel(p, c, o) : ''}
${p.cashu ? cashuPanel(p.cashu.request) : ''}
<p id="progress" hidden></p>
<p id="error" role="alert" hidden></p>
<noscript><p>Without JavaScript: ${c ? 'pay the invoice, then repeat the request with the header <code>Authorization: L402 &lt;macaroon&gt;:&lt;preimage&gt;</code>' : ''}${c && p.cashu ? ', or ' : ''}${p.cashu ? 'repeat the request with a Cashu token for the payment request above in the header <code>X-Cashu</code>' : ''}.</p></noscript>
</section>
<section id="result" hidden>
<p class="ok">Payment accepted. The content:</p>
<div id="content"></div>
<details id="credential-box" hidden><summary>Your credential (to repeat the request)</summary>
<textarea id="credential" readonly rows="3" spellcheck="false"></textarea>
<button type="button" data-copy="credential">Copy credential</button>
</details>
</section>
<script type="application/json" id="l402-data">${jsonForScript(data)}</script>
<script>${SCRIPT}</script>
</main></body></html>\n`;
}
