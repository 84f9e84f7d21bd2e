// The payment page's HTML (escaping, CSP, QR, what it offers) and its /_l402/page/ endpoints, against an
// in-process gate with a real development wallet.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import QRCode from 'qrcode';
import {
  escapeHtml, formatSats, jsonForScript, paymentPage, qrSvg, PAYMENT_PAGE_CSP, PAYMENT_PAGE_HEADERS, type PageInput,
} from '../../src/server/payment-page.js';
import { parseConfig, type RouteConfig } from '../../src/config/config.js';
import type { Challenge } from '../../src/policy/challenge.js';
import { Gate } from '../../src/server/gate.js';
import { createGateServer } from '../../src/server/http-server.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import type { LightningBackend } from '../../src/rails/lightning/backend.js';
import { createLogger } from '../../src/util/log.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroonBase64 } from '../../src/protocol/macaroon.js';

const HOSTILE_SCRIPT = '</script><script>alert(1)</script>';
const HOSTILE_ATTR = '"><img src=x onerror=alert(1)>';

const ROUTE: RouteConfig = {
  match: '/premium', id: '/premium', methods: undefined, amountMsat: 10_000, access: 'per-request', macaroonTimeout: 0,
  autoDetect: false, dryRun: false, manifestHide: false, paymentPage: true, rateLimit: undefined,
} as RouteConfig;

function challenge(over: Partial<Challenge> = {}): Challenge {
  return {
    macaroon: 'AgEEbHNhdAJCAAB' + 'a'.repeat(40),
    invoice: 'lnbcrt100n1pj' + 'q'.repeat(250),
    paymentHash: 'ab'.repeat(32),
    amountMsat: 10_000,
    invoiceExpiresAt: Math.floor(Date.now() / 1000) + 3600,
    ...over,
  };
}

function page(over: Partial<PageInput> = {}): string {
  return paymentPage({
    status: 402, title: 'Payment Required', message: 'Pay the invoice.', outcome: 'challenge',
    challenge: challenge(), route: ROUTE,
    page: { originalUri: '/premium', devWallet: false, autoDetect: false, method: 'GET' },
    ...over,
  });
}

/** Start tags outside the script and style bodies (escaped text cannot produce one). */
function tagsOf(html: string): string[] {
  return html.replace(/<(script|style)([^>]*)>[\s\S]*?<\/\1>/g, '<$1$2>').match(/<[a-zA-Z][^>]*>/g) ?? [];
}

/** Attribute names of one start tag (quoted values are skipped whole, so escaped text inside them is not a name). */
function attrsOf(tag: string): string[] {
  const names: string[] = [];
  const re = /\s([^\s=/>"']+)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>"']+))?/g;
  const rest = tag.replace(/^<[a-zA-Z0-9]+/, '');
  for (let m = re.exec(rest); m; m = re.exec(rest)) names.push(m[1]!.toLowerCase());
  return names;
}

function dataOf(html: string): Record<string, unknown> {
  const m = /<script type="application\/json" id="l402-data">([\s\S]*?)<\/script>/.exec(html);
  assert.ok(m, 'data block present');
  return JSON.parse(m[1]!) as Record<string, unknown>;
}

test('hostile route ids, paths, messages, invoices and Cashu requests render inert', () => {
  for (const evil of [HOSTILE_SCRIPT, HOSTILE_ATTR, "'><svg onload=alert(1)>", '<!--', '\u2028\u2029&amp;']) {
    const html = page({
      title: `Payment ${evil}`,
      message: evil,
      route: { ...ROUTE, id: evil },
      challenge: challenge({ invoice: `lnbcrt1${evil}`, macaroon: `mac${evil}` }),
      page: { originalUri: `/premium/${evil}?q=${evil}`, devWallet: true, autoDetect: true, method: 'GET' },
      cashu: { request: `creqA${evil}` },
    });
    // Exactly our own two script elements, and nothing the input could have opened.
    assert.equal(html.match(/<script/gi)?.length, 2, evil);
    assert.equal(html.match(/<\/script/gi)?.length, 2, evil);
    assert.ok(!html.includes('<img'), evil);
    assert.ok(!/<svg onload/i.test(html), evil);
    for (const tag of tagsOf(html)) assert.ok(!attrsOf(tag).some((n) => n.startsWith('on')), `no event handler attribute in ${tag}`);
    assert.ok(html.includes(escapeHtml(evil)), 'visible text is the escaped input');
    // The data block round-trips exactly, without raw markup characters inside it.
    const block = /id="l402-data">([\s\S]*?)<\/script>/.exec(html)![1]!;
    assert.ok(!/[<>&\u2028\u2029]/.test(block), 'data block has no raw < > & U+2028 U+2029');
    const d = dataOf(html);
    assert.equal(d.uri, `/premium/${evil}?q=${evil}`);
    assert.equal(d.invoice, `lnbcrt1${evil}`);
    assert.equal(d.macaroon, `mac${evil}`);
  }
});

test('jsonForScript escapes < > & and the JavaScript line terminators, and round-trips', () => {
  const v = { a: '</script><!-- & \u2028\u2029 "q"' };
  const s = jsonForScript(v);
  assert.equal(s, '{"a":"\\u003c/script\\u003e\\u003c!-- \\u0026 \\u2028\\u2029 \\"q\\""}');
  assert.deepEqual(JSON.parse(s), v);
});

test('no external resources: no http(s) URLs, a strict CSP that pins the inline script and style by hash', () => {
  const html = page({ page: { originalUri: '/premium', devWallet: true, autoDetect: true }, cashu: { request: 'creqAxyz' } });
  assert.ok(!/https?:\/\//i.test(html), 'no http(s):// anywhere in the page');
  const css = /<style>([\s\S]*?)<\/style>/.exec(html)![1]!;
  assert.ok(!/@import|url\(|@font-face/i.test(css), 'no imports, urls or fonts in the CSS');
  for (const tag of tagsOf(html)) assert.ok(!/^<link|\s(src|href)\s*=\s*"(?!lightning:|\/)/i.test(tag), `no external reference in ${tag}`);
  assert.ok(!/\sstyle=/i.test(html), 'no inline style attributes (the CSP would block them)');
  const meta = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html);
  assert.ok(meta);
  const csp = meta[1]!.replace(/&#39;/g, "'");
  assert.equal(csp, PAYMENT_PAGE_CSP);
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /connect-src 'self'/);
  assert.ok(!/unsafe-inline|unsafe-eval|\*/.test(csp));
  const hash = (t: string) => `'sha256-${createHash('sha256').update(t).digest('base64')}'`;
  const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1]!;
  const style = /<style>([\s\S]*?)<\/style>/.exec(html)![1]!;
  assert.ok(csp.includes(`script-src ${hash(script)}`), 'script hash matches');
  assert.ok(csp.includes(`style-src ${hash(style)}`), 'style hash matches');
  assert.equal(html.match(/<style>/g)?.length, 1);
  // The CSP meta must come before anything it governs.
  assert.ok(html.indexOf('Content-Security-Policy') < html.indexOf('<style>'));
  const header = PAYMENT_PAGE_HEADERS.find(([k]) => k === 'Content-Security-Policy')![1];
  assert.ok(header.startsWith(PAYMENT_PAGE_CSP) && header.includes("frame-ancestors 'none'"));
  // The script never takes data from anywhere but the JSON block, and never reloads.
  assert.ok(!/location\.reload|eval\(|innerHTML|document\.write/.test(script));
});

test('QR code: inline SVG of the upper-cased LIGHTNING: URI (alphanumeric mode, smaller than the lower-case one)', () => {
  const inv = 'lnbcrt100n1pjq' + 'x'.repeat(280);
  const html = page({ challenge: challenge({ invoice: inv }) });
  const svg = /<svg[\s\S]*?<\/svg>/.exec(html)?.[0];
  assert.ok(svg, 'svg present');
  assert.equal(svg, qrSvg(`LIGHTNING:${inv.toUpperCase()}`, 'QR code of the Lightning invoice'));
  const upper = QRCode.create(`LIGHTNING:${inv.toUpperCase()}`, { errorCorrectionLevel: 'M' });
  assert.deepEqual([...new Set(upper.segments.map((s) => s.mode.id))], ['Alphanumeric']);
  const lower = QRCode.create(`lightning:${inv}`, { errorCorrectionLevel: 'M' });
  assert.ok(upper.version < lower.version, `alphanumeric QR is smaller (${upper.version} < ${lower.version})`);
  assert.match(svg, /viewBox="0 0 (\d+) \1"/);
  assert.equal(Number(/viewBox="0 0 (\d+)/.exec(svg)![1]), upper.modules.size + 4, 'module count plus the quiet zone');
  // Too long for any QR code: the page still renders, without one.
  const huge = page({ challenge: challenge({ invoice: 'lnbcrt1' + 'q'.repeat(5000) }) });
  assert.ok(!huge.includes('<svg'));
  assert.match(huge, /No QR code/);
});

test('price in sats and msat, exact', () => {
  assert.equal(formatSats(10_000), '10 sats');
  assert.equal(formatSats(1_000), '1 sat');
  assert.equal(formatSats(1_500), '1.5 sats');
  assert.equal(formatSats(1), '0.001 sats');
  assert.equal(formatSats(123_456_789), '123,456.789 sats');
  const html = page({ challenge: challenge({ amountMsat: 2_500 }) });
  assert.match(html, /<strong id="price-sats">2\.5 sats<\/strong>/);
  assert.match(html, /\(2,500 msat\)/);
});

test('what the page offers follows the options: dev wallet, polling, Cashu tab, copy, preimage form', () => {
  const plain = page();
  assert.ok(!plain.includes('id="dev-pay"'));
  assert.ok(!plain.includes('id="poll-status"'));
  assert.ok(!plain.includes('role="tab"'));
  assert.ok(!plain.includes('id="tab-cashu"'));
  assert.match(plain, /<form id="preimage-form"/);
  assert.match(plain, /pattern="\[0-9a-fA-F\]\{64\}"/);
  assert.match(plain, /data-copy="invoice">Copy invoice</);
  assert.match(plain, /<textarea id="invoice" readonly[^>]*>lnbcrt100n1pj/);
  assert.deepEqual(
    { dev: dataOf(plain).devWallet, auto: dataOf(plain).autoDetect, replay: dataOf(plain).replay, status: dataOf(plain).statusUrl, pay: dataOf(plain).devPayUrl },
    { dev: false, auto: false, replay: true, status: '/_l402/page/status', pay: '/_l402/page/dev-pay' },
  );

  const full = page({ page: { originalUri: '/auto?x=1', devWallet: true, autoDetect: true, method: 'GET' }, cashu: { request: 'creqAbc-_123' } });
  assert.match(full, /<button type="button" class="primary" id="dev-pay">Pay with the development wallet<\/button>/);
  assert.match(full, /id="poll-status"/);
  assert.equal(full.match(/role="tab"/g)?.length, 2);
  assert.match(full, /<textarea id="cashu-request" readonly[^>]*>creqAbc-_123<\/textarea>/);
  assert.match(full, /data-copy="cashu-request"/);
  assert.match(full, /<textarea id="cashu-token"/);
  assert.equal(full.match(/<svg/g)?.length, 2, 'a QR code for the Cashu request too');
  assert.equal(dataOf(full).uri, '/auto?x=1');
  const script = /<script>([\s\S]*?)<\/script>/.exec(full)![1]!;
  assert.match(script, /'X-Cashu': token/, 'the token travels in the X-Cashu header');
  assert.match(script, /\^cashuB/);
});

test('the credential is never sent off-origin, and non-GET requests are not replayed by the page', () => {
  for (const uri of ['//evil.example/x', '/\\evil.example', 'https://evil.example/', 'javascript:alert(1)']) {
    const html = page({ page: { originalUri: uri, devWallet: false, autoDetect: false } });
    assert.equal(dataOf(html).uri, null, uri);
  }
  const script = /<script>([\s\S]*?)<\/script>/.exec(page())![1]!;
  assert.match(script, /u\.origin === location\.origin/);
  const post = page({ page: { originalUri: '/premium', devWallet: false, autoDetect: false, method: 'POST' } });
  assert.equal(dataOf(post).replay, false);
  assert.equal(dataOf(post).method, 'POST');
  assert.equal(dataOf(page({ route: { ...ROUTE, access: 'timed' } })).reusable, true);
  assert.equal(dataOf(page()).reusable, false);
});

test('pages without a challenge have no script, and a retry link only for same-origin paths', () => {
  const html = paymentPage({ status: 503, title: 'Unavailable', message: `down ${HOSTILE_ATTR}`, outcome: 'unavailable', page: { originalUri: '/premium?a=1&b=2', devWallet: false, autoDetect: false } });
  assert.ok(!html.includes('<script'));
  assert.match(html, /<title>503 Unavailable<\/title>/);
  assert.match(html, /href="\/premium\?a=1&amp;b=2">Try again/);
  assert.ok(html.includes(escapeHtml(HOSTILE_ATTR)));
  const evil = paymentPage({ status: 503, title: 'Unavailable', message: 'x', outcome: 'unavailable', page: { originalUri: '//evil.example/', devWallet: false, autoDetect: false } });
  assert.ok(!evil.includes('Try again'));
});

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

const CONFIG_YAML = `lightning: { type: dev, pay_endpoint: true }\nroutes:
  - { match: /premium, amount_msat: 10000 }
  - { match: /auto, amount_msat: 4000, auto_detect_payment: true }
`;

interface Served {
  gate: Gate;
  server: Server;
  port: number;
}

let dir: string;
let wallet: DevWallet;
const logs: string[] = [];
const rootKey = randomBytes(32);
let dev: Served;
let flaky: Served;
let flakyCalls = 0;
let flakyFails = true;

async function serve(backend: LightningBackend): Promise<Served> {
  const sink = new PassThrough();
  sink.on('data', (b: Buffer) => logs.push(b.toString()));
  const gate = new Gate({ config: parseConfig(CONFIG_YAML, { env: {} }), store: new MemoryStore(), backend, rootKeys: [rootKey], log: createLogger('debug', sink) });
  const server = createGateServer(gate);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { gate, server, port: (server.address() as AddressInfo).port };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'l402-page-'));
  wallet = DevWallet.open(dir);
  dev = await serve(wallet);
  // Not a dev wallet (dev-pay must answer 404); its settlement lookups are counted and can be made to fail.
  flaky = await serve({
    kind: 'flaky',
    createInvoice: (r, s) => wallet.createInvoice(r, s),
    lookupInvoice: async (h, signal) => {
      flakyCalls++;
      if (flakyFails) throw new Error('node down');
      return wallet.lookupInvoice(h, signal);
    },
    describe: () => 'flaky',
    close: async () => {},
  });
});

after(async () => {
  for (const s of [dev, flaky]) {
    if (!s) continue;
    s.server.closeAllConnections();
    await new Promise((r) => s.server.close(r));
  }
  await wallet?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function call(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string) {
  return new Promise<{ status: number; headers: IncomingHttpHeaders; body: string; json: Record<string, unknown> | undefined }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) }, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json: Record<string, unknown> | undefined;
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

async function mint(s: Served, path: string): Promise<{ macaroon: string; invoice: string; paymentHash: string }> {
  const r = await s.gate.render('challenge', 'no_credential', { path, method: 'GET', credentials: {} }, { accept: 'application/json' });
  assert.equal(r.status, 402);
  const b = JSON.parse(r.body) as { macaroon: string; invoice: string; payment_hash: string };
  return { macaroon: b.macaroon, invoice: b.invoice, paymentHash: b.payment_hash };
}

function invoiceCount(): number {
  return (wallet as unknown as { db: { prepare(s: string): { get(): { n: number } } } }).db.prepare('SELECT COUNT(*) AS n FROM invoices').get().n;
}

const status = (s: Served, auth?: string, method = 'GET') => call(s.port, method, '/_l402/page/status', auth ? { authorization: auth } : {});

test('status: {"settled": false} until paid, then true; never mints an invoice; HEAD has no body', async () => {
  const c = await mint(dev, '/auto');
  const before = invoiceCount();
  for (let i = 0; i < 3; i++) {
    const r = await status(dev, `L402 ${c.macaroon}`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { settled: false });
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.match(String(r.headers['content-type']), /^application\/json/);
  }
  wallet.pay(c.invoice);
  assert.deepEqual((await status(dev, `L402 ${c.macaroon}`)).json, { settled: true });
  assert.deepEqual((await status(dev, `LSAT ${c.macaroon}`)).json, { settled: true }, 'LSAT scheme too');
  assert.equal(invoiceCount(), before, 'no invoice minted by polling');
  const head = await status(dev, `L402 ${c.macaroon}`, 'HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
});

test('status: 400 malformed, 401 forged, 404 for routes that need the preimage, 405 other methods', async () => {
  const c = await mint(dev, '/auto');
  assert.equal((await status(dev)).status, 400);
  assert.equal((await status(dev, 'Basic dXNlcjpwdw==')).json?.error, 'malformed_credential');
  assert.equal((await status(dev, 'L402 !!!notbase64')).json?.error, 'malformed_credential');
  assert.equal((await status(dev, `L402 ${Buffer.from('not a macaroon').toString('base64')}`)).json?.error, 'malformed_macaroon');
  const forged = decodeMacaroonBase64(c.macaroon);
  forged.signature[0]! ^= 1;
  const r = await status(dev, `L402 ${encodeMacaroonBase64(forged)}`);
  assert.equal(r.status, 401);
  assert.equal(r.json?.error, 'bad_signature');
  // Attenuated to another route: still genuine, but no single route, so nothing to look up.
  const twoRoutes = await status(dev, `L402 ${encodeMacaroonBase64(attenuate(decodeMacaroonBase64(c.macaroon), 'route=/premium'))}`);
  assert.equal(twoRoutes.status, 404);
  const premium = await mint(dev, '/premium');
  const p = await status(dev, `L402 ${premium.macaroon}`);
  assert.equal(p.status, 404);
  assert.equal(p.json?.error, 'auto_detect_off');
  const post = await call(dev.port, 'POST', '/_l402/page/status', { authorization: `L402 ${c.macaroon}` });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
  assert.equal((await call(dev.port, 'GET', '/_l402/page/nope')).status, 404);
});

test('status: uses the gate\'s cached settlement check (no backend lookup once settled)', async () => {
  flakyFails = false;
  const c = await mint(flaky, '/auto');
  flakyCalls = 0;
  assert.deepEqual((await status(flaky, `L402 ${c.macaroon}`)).json, { settled: false });
  assert.equal(flakyCalls, 1);
  wallet.pay(c.invoice);
  assert.deepEqual((await status(flaky, `L402 ${c.macaroon}`)).json, { settled: true });
  assert.equal(flakyCalls, 2);
  for (let i = 0; i < 3; i++) assert.deepEqual((await status(flaky, `L402 ${c.macaroon}`)).json, { settled: true });
  assert.equal(flakyCalls, 2, 'settled answers come from the store cache');
  // The gate's own auto-detect path shares that cache: it lets the request through without a lookup.
  const d = await flaky.gate.decide({ path: '/auto', method: 'GET', credentials: { authorization: `L402 ${c.macaroon}` } });
  assert.equal(d.outcome, 'allow');
  assert.equal(flakyCalls, 2);
});

test('status: a failing backend answers 503 with Retry-After (after the signature check), never a crash', async () => {
  flakyFails = true;
  const c = await mint(flaky, '/auto');
  const forged = decodeMacaroonBase64(c.macaroon);
  forged.signature[5]! ^= 0x80;
  flakyCalls = 0;
  assert.equal((await status(flaky, `L402 ${encodeMacaroonBase64(forged)}`)).status, 401);
  assert.equal(flakyCalls, 0, 'a forged macaroon never reaches the backend');
  const r = await status(flaky, `L402 ${c.macaroon}`);
  assert.equal(r.status, 503);
  assert.equal(r.json?.error, 'backend_unavailable');
  assert.ok(Number(r.headers['retry-after']) > 0);
  assert.equal(flakyCalls, 1);
});

const devPay = (s: Served, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  call(s.port, 'POST', '/_l402/page/dev-pay', headers, body);

test('dev-pay: pays the dev wallet invoice and returns its preimage; clear 400s for paid, unknown, malformed', async () => {
  const c = await mint(dev, '/premium');
  const r = await devPay(dev, JSON.stringify({ invoice: c.invoice }));
  assert.equal(r.status, 200);
  const pre = String(r.json?.preimage);
  assert.match(pre, /^[0-9a-f]{64}$/);
  assert.equal(createHash('sha256').update(Buffer.from(pre, 'hex')).digest('hex'), c.paymentHash);
  const again = await devPay(dev, JSON.stringify({ invoice: c.invoice }));
  assert.equal(again.status, 400);
  assert.equal(again.json?.error, 'already_paid');

  const otherDir = mkdtempSync(join(tmpdir(), 'l402-page-other-'));
  const other = DevWallet.open(otherDir);
  try {
    const foreign = await other.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 });
    const unknown = await devPay(dev, JSON.stringify({ invoice: foreign.bolt11 }));
    assert.equal(unknown.status, 400);
    assert.equal(unknown.json?.error, 'unknown');
    assert.ok(!unknown.body.includes(dir), 'no data dir path in the answer');
  } finally {
    await other.close();
    rmSync(otherDir, { recursive: true, force: true });
  }
  assert.equal((await devPay(dev, JSON.stringify({ invoice: 'lnbcrt1garbage' }))).json?.error, 'malformed');
  assert.equal((await devPay(dev, '{not json')).status, 400);
  assert.equal((await devPay(dev, JSON.stringify({ invoice: 42 }))).status, 400);
  assert.equal((await devPay(dev, 'null')).status, 400);
  assert.equal((await devPay(dev, JSON.stringify({ invoice: c.invoice }), { 'content-type': 'text/plain' })).status, 415, 'no simple cross-site form posts');
  assert.equal((await devPay(dev, JSON.stringify({ invoice: 'x'.repeat(20_000) }))).status, 413);
  const get = await call(dev.port, 'GET', '/_l402/page/dev-pay');
  assert.equal(get.status, 405);
  assert.equal(get.headers.allow, 'POST');
  // Not a dev wallet: the endpoint does not exist.
  const fc = await mint(flaky, '/premium');
  assert.equal((await devPay(flaky, JSON.stringify({ invoice: fc.invoice }))).status, 404);
  // Secrets never reach the logs.
  const all = logs.join('');
  assert.ok(!all.includes(pre), 'preimage not logged');
  assert.ok(!all.includes(c.macaroon), 'macaroon not logged');
});

test('render: HTML page for browsers through the gate, with the original URI and method; payment_page: false gives JSON', async () => {
  const h = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };
  const r = await dev.gate.render('challenge', 'no_credential', { path: '/auto', uri: '/auto?x=1', method: 'GET', credentials: {} }, h);
  assert.equal(r.status, 402);
  const d = dataOf(r.body);
  assert.equal(d.uri, '/auto?x=1');
  assert.equal(d.autoDetect, true);
  assert.equal(d.devWallet, true);
  assert.equal(d.method, 'GET');
  const off = new Gate({
    config: parseConfig('lightning: { type: dev }\nroutes:\n  - { match: /nopage, amount_msat: 1000, payment_page: false }\n', { env: {} }),
    store: new MemoryStore(), backend: wallet, rootKeys: [rootKey], log: createLogger('silent'),
  });
  const j = await off.render('challenge', 'no_credential', { path: '/nopage', method: 'GET', credentials: {} }, h);
  assert.equal(j.status, 402);
  assert.match(String(j.headers.find(([k]) => k === 'Content-Type')?.[1]), /application\/problem\+json/);
});

// ---- Colour contrast (WCAG 2 AA, >= 4.5:1 for text) in the light and the dark scheme ----

/** sRGB relative luminance of #rgb / #rrggbb. */
function luminance(hex: string): number {
  let h = hex.replace(/^#/, '');
  if (h.length === 3) h = [...h].map((c) => c + c).join('');
  assert.match(h, /^[0-9a-f]{6}$/i, `colour ${hex}`);
  const [r, g, b] = [0, 2, 4].map((i) => {
    const c = parseInt(h.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
}
function contrast(a: string, b: string): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi! + 0.05) / (lo! + 0.05);
}

test('colour contrast: every text colour on its background is >= 4.5:1 in both schemes (the dev-pay button too)', () => {
  const html = page({ page: { originalUri: '/premium', devWallet: true, autoDetect: false, method: 'GET' } });
  assert.match(html, /class="primary"/, 'the page has a primary (dev-pay) button');
  const css = /<style>([\s\S]*?)<\/style>/.exec(html)![1]!;
  const varsOf = (block: string): Record<string, string> => Object.fromEntries([...block.matchAll(/(--[\w-]+):\s*(#[0-9a-fA-F]{3,6})\b/g)].map((m) => [m[1]!, m[2]!]));
  const light = varsOf(/:root\{([^}]*)\}/.exec(css)![1]!);
  const darkBlock = /@media \(prefers-color-scheme:dark\)\{:root\{([^}]*)\}\}/.exec(css);
  assert.ok(darkBlock, 'a dark scheme');
  const schemes = { light, dark: { ...light, ...varsOf(darkBlock[1]!) } };
  const rules = [...css.replace(/@media[^{]*\{(:root\{[^}]*\})\}/g, '').matchAll(/([^{}]+)\{([^{}]*)\}/g)].map((m) => ({ sel: m[1]!.trim(), decls: m[2]! }));
  const prop = (decls: string, name: string): string | undefined => new RegExp(`(?:^|;)${name}:([^;]+)`).exec(decls)?.[1]?.trim();
  let checked = 0;
  for (const [scheme, vars] of Object.entries(schemes)) {
    const resolve = (v: string): string => {
      const m = /^var\((--[\w-]+)\)$/.exec(v);
      const out = m ? vars[m[1]!] : v;
      assert.ok(out && /^#[0-9a-f]{3,6}$/i.test(out), `${scheme}: colour ${v} resolves to a hex value`);
      return out;
    };
    for (const r of rules) {
      if (r.sel.startsWith(':root')) continue;
      const color = prop(r.decls, 'color');
      if (!color || color === 'inherit') continue;
      const bg = prop(r.decls, 'background') ?? prop(r.decls, 'background-color');
      // A rule without its own background draws on the page's surfaces: the card and the page background.
      const surfaces = bg ? [bg] : ['var(--card)', 'var(--bg)'];
      for (const s of surfaces) {
        const ratio = contrast(resolve(color), resolve(s));
        assert.ok(ratio >= 4.5, `${scheme}: ${r.sel} ${color} on ${s}: ${ratio.toFixed(2)}:1 (< 4.5:1)`);
        checked++;
      }
    }
    // The primary button in particular (white on light orange in dark mode was the bug).
    const primary = rules.find((r) => r.sel === 'button.primary')!;
    assert.ok(contrast(resolve(prop(primary.decls, 'color')!), resolve(prop(primary.decls, 'background')!)) >= 4.5, `${scheme}: primary button`);
  }
  assert.ok(checked >= 10, `checked ${checked} pairs`);
});

test('the credential cookie is offered for a GET on a route where the gate serves its endpoint, never off-origin', () => {
  const on = { originalUri: '/premium', devWallet: false, autoDetect: false, method: 'GET', cookie: true };
  assert.equal(dataOf(page({ page: on })).cookie, true);
  assert.equal(dataOf(page({ page: on })).cookieUrl, '/_l402/page/cookie');
  assert.equal(dataOf(page({ page: { ...on, cookie: false } })).cookie, false, 'older snippets: not offered');
  assert.equal(dataOf(page({ page: { ...on, cookie: undefined } })).cookie, false);
  assert.equal(dataOf(page({ page: { ...on, method: 'POST' } })).cookie, false, 'only a GET lands on the page by a redirect');
  assert.equal(dataOf(page({ page: { ...on, method: 'HEAD' } })).cookie, false);
  assert.equal(dataOf(page({ page: { ...on, originalUri: '//evil.example/' } })).cookie, false);
  assert.equal(dataOf(page({ page: on, route: undefined })).cookie, false);
  // The form posts to this origin only, and the redirect it follows must stay on it.
  assert.match(PAYMENT_PAGE_CSP, /(^|; )form-action 'self'(;|$)/);
});
