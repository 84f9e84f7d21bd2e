// The HTML payment page in real headless Chromium, through nginx + l402d + the development wallet:
// pay with the dev wallet button, by auto-detect polling and by pasting the preimage, and land on the
// protected content itself (the gate sets the credential cookie and redirects; never a fresh 402).
// Screenshots go to test-artifacts/. (The real-page flow with styles and images: browser-cookie.test.ts.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { BrowserContext, Page } from 'playwright-core';
import { chromiumBin, launchChromium, NO_CHROMIUM } from '../support/chromium.js';
import { Cleanup, http1, requireTool, waitFor } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';
import { escapeHtml, paymentPage } from '../../src/server/payment-page.js';
import type { RouteConfig } from '../../src/config/config.js';
import { sleep } from '../../src/util/timeout.js';

const nginxBin = requireTool('nginx');
const skip = !nginxBin ? 'nginx not installed' : !chromiumBin ? NO_CHROMIUM : false;
const ARTIFACTS = resolve(fileURLToPath(new URL('../../test-artifacts/', import.meta.url)));
const STEP_MS = 10_000;

const cleanup = new Cleanup();
let s: Stack;
let browser: BrowserContext;

before(async () => {
  if (skip) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  // The local demo's dev wallet pay button: enabled explicitly (lightning.pay_endpoint) and proxied on its own.
  s = await startStack(cleanup, { devPay: true });
  browser = await launchChromium(cleanup, STEP_MS);
});
after(() => cleanup.run());

interface Opened {
  page: Page;
  status: number;
  /** Every response the page received (main document and fetches), in order. */
  responses: Array<{ url: string; status: number; authorization?: string }>;
  dialogs: string[];
  /** Console errors and uncaught exceptions (CSP violations land here). */
  errors: string[];
  navigations: string[];
}

async function open(url: string): Promise<Opened> {
  // Each page starts without the credential cookies an earlier one bought (a spent one would answer 401).
  await browser.clearCookies();
  const page = await browser.newPage();
  const o: Opened = { page, status: 0, responses: [], dialogs: [], errors: [], navigations: [] };
  page.on('response', (r) => o.responses.push({ url: r.url(), status: r.status(), authorization: r.request().headers().authorization }));
  page.on('dialog', (d) => {
    o.dialogs.push(d.message());
    void d.dismiss().catch(() => {});
  });
  page.on('console', (m) => {
    // Chromium logs the 402 of the page itself as a failed load; that one is expected.
    if (m.type() === 'error' && !(m.location().url === url && /status of 402/.test(m.text()))) o.errors.push(m.text());
  });
  page.on('pageerror', (e) => o.errors.push(e.message));
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) o.navigations.push(f.url());
  });
  const resp = await page.goto(url, { waitUntil: 'load' });
  o.status = resp?.status() ?? 0;
  return o;
}

function invoiceCount(): number {
  const db = new Database(join(s.dataDir, 'dev-wallet.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT COUNT(*) AS n FROM invoices').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

async function shot(page: Page, name: string): Promise<void> {
  const path = join(ARTIFACTS, name);
  rmSync(path, { force: true });
  await page.screenshot({ path, fullPage: true });
  assert.ok(existsSync(path) && statSync(path).size > 1000, `screenshot ${name} written`);
}

function assertCleanPage(o: Opened, navigations = 1): void {
  assert.deepEqual(o.dialogs, [], 'no dialog fired');
  assert.deepEqual(o.errors, [], 'no console errors (no CSP violations, no exceptions)');
  assert.equal(o.navigations.length, navigations, `navigations: ${o.navigations.join(', ')}`);
}

/** Runs `act` and waits for the page to land on `path` by a GET navigation (after the cookie's 303): its status. */
async function landing(o: Opened, path: string, act: () => Promise<void>): Promise<number> {
  const nav = o.page.waitForResponse((r) => r.request().isNavigationRequest() && r.request().method() === 'GET' && new URL(r.url()).pathname === path, { timeout: STEP_MS });
  await act();
  const r = await nav;
  await o.page.waitForLoadState('load');
  return r.status();
}

/** What reached the upstream, but the favicon Chromium asks the (free) site for once it shows a page. */
function served(): Array<{ url: string; headers: Record<string, unknown> }> {
  return s.upstream.requests.filter((r) => !r.url.startsWith('/favicon'));
}

/** The JSON the counting upstream answered, as Chromium shows it. */
async function landedJson(page: Page): Promise<unknown> {
  return JSON.parse((await page.locator('body').textContent()) ?? '');
}

test('402 page in Chromium: QR and price; the dev wallet button pays and lands on the content, upstream hit once', { skip }, async () => {
  const o = await open(s.origin + '/premium');
  const { page } = o;
  try {
    assert.equal(o.status, 402);
    assert.equal(await page.title(), '402 Payment Required');
    assert.equal(await page.evaluate(() => document.documentElement.className), 'js', 'the inline script ran under the CSP');
    assert.equal(await page.locator('.qr svg').count(), 1);
    assert.equal(await page.locator('#price-sats').textContent(), '10 sats');
    assert.equal(await page.locator('#price-msat').textContent(), '(10,000 msat)');
    assert.match(await page.inputValue('#invoice'), /^lnbcrt/);
    await shot(page, 'payment-page-402.png');

    s.upstream.reset();
    const mark = o.responses.length;
    assert.equal(await landing(o, '/premium', () => page.click('#dev-pay')), 200);
    assert.deepEqual(await landedJson(page), { ok: true, path: '/premium' });
    await shot(page, 'payment-page-dev-paid.png');
    assert.equal(served().length, 1);
    // The credential stays at the gate; the upstream learns who paid (forward_payment_credentials: false).
    assert.equal(served()[0]!.headers.authorization, undefined);
    assert.equal(served()[0]!.headers.cookie, undefined, 'the credential cookie stays at the gate');
    assert.equal(served()[0]!.headers['x-l402-rail'], 'lightning');
    const after = o.responses.slice(mark);
    assert.deepEqual(after.map((r) => [new URL(r.url).pathname, r.status]), [['/_l402/page/dev-pay', 200], ['/_l402/page/cookie', 303], ['/premium', 200]]);
    assert.ok(!after.some((r) => r.status === 402), 'no further 402 fetched');
    assertCleanPage(o, 2);
  } finally {
    await page.close();
  }
});

test('auto-detect: paid out of band, the page notices by polling the status endpoint (no new invoices) and lands on the content', { skip }, async () => {
  const o = await open(s.origin + '/auto');
  const { page } = o;
  try {
    assert.equal(o.status, 402);
    const invoice = await page.inputValue('#invoice');
    const minted = invoiceCount();
    const polls = () => o.responses.filter((r) => new URL(r.url).pathname === '/_l402/page/status' && r.status === 200).length;
    await waitFor('a status poll', () => polls() >= 1, { timeoutMs: STEP_MS });
    s.upstream.reset();
    assert.equal(await landing(o, '/auto', async () => void s.wallet.pay(invoice)), 200);
    assert.deepEqual(await landedJson(page), { ok: true, path: '/auto' });
    await shot(page, 'payment-page-auto-detected.png');
    assert.equal(invoiceCount(), minted, 'polling minted no invoice');
    assert.equal(served().length, 1);
    assert.equal(served()[0]!.headers.authorization, undefined, 'the credential stays at the gate');
    const cookies = await browser.cookies(s.origin + '/auto');
    const gate = cookies.filter((c) => c.name.startsWith('l402_'));
    assert.equal(gate.length, 1);
    assert.equal(gate[0]!.value.includes(':'), false, 'unlocked with the macaroon alone');
    assert.equal(o.responses.filter((r) => r.status === 402).length, 1, 'only the first page load was a 402');
    assert.equal(o.responses.filter((r) => new URL(r.url).pathname === '/auto').length, 2, 'page load + the landing');
    const pollsAtEnd = polls();
    await sleep(2_200);
    assert.equal(polls(), pollsAtEnd, 'polling stopped once paid');
    assertCleanPage(o, 2);
  } finally {
    await page.close();
  }
});

test('preimage form: checks the preimage locally, unlocks with it; a credential already used lands on a fresh payment page', { skip }, async () => {
  const o = await open(s.origin + '/premium');
  const { page } = o;
  try {
    const invoice = await page.inputValue('#invoice');
    const mark = o.responses.length;
    await page.fill('#preimage', 'xyz');
    await page.click('#preimage-form button[type=submit]');
    assert.match((await page.locator('#error').textContent()) ?? '', /64 hexadecimal/);
    await page.fill('#preimage', 'ab'.repeat(32));
    await page.click('#preimage-form button[type=submit]');
    await waitFor('local mismatch error', async () => /does not belong/.test((await page.locator('#error').textContent()) ?? ''));
    assert.equal(o.responses.length, mark, 'a wrong preimage is caught before any request (which would mint a new invoice)');

    const preimage = s.wallet.pay(invoice).toString('hex');
    s.upstream.reset();
    await page.fill('#preimage', preimage.toUpperCase());
    assert.equal(await landing(o, '/premium', () => page.click('#preimage-form button[type=submit]')), 200);
    assert.deepEqual(await landedJson(page), { ok: true, path: '/premium' });
    assert.equal(served().length, 1);
    assert.ok(!o.responses.slice(mark).some((r) => r.status === 402));
    assertCleanPage(o, 2);
  } finally {
    await page.close();
  }

  // A credential already spent elsewhere: the page says so and stays on the payment view.
  const o2 = await open(s.origin + '/premium');
  try {
    const invoice = await o2.page.inputValue('#invoice');
    const macaroon = await o2.page.inputValue('#macaroon');
    const preimage = s.wallet.pay(invoice).toString('hex');
    s.upstream.reset();
    assert.equal((await http1(s.origin + '/premium', { headers: { authorization: `L402 ${macaroon}:${preimage}` } })).status, 200);
    await o2.page.fill('#preimage', preimage);
    // The cookie endpoint cannot tell a spent credential without spending it: the page itself says so (401,
    // with a fresh invoice), and the spent cookie is deleted.
    assert.equal(await landing(o2, '/premium', () => o2.page.click('#preimage-form button[type=submit]')), 401);
    assert.match((await o2.page.locator('#message').textContent()) ?? '', /already been used/);
    await shot(o2.page, 'payment-page-already-used.png');
    assert.equal(served().length, 1);
    assert.equal(await o2.page.locator('#pay').isVisible(), true);
    assert.notEqual(await o2.page.inputValue('#invoice'), invoice, 'a fresh invoice');
    assert.deepEqual((await browser.cookies(s.origin + '/premium')).filter((c) => c.name.startsWith('l402_')), [], 'the spent cookie was deleted');
    assert.deepEqual(o2.dialogs, []);
    assert.equal(o2.navigations.length, 2);
  } finally {
    await o2.page.close();
  }
});

test('hostile route ids and paths render inert in Chromium, with and without the CSP', { skip }, async () => {
  const evilScript = '</script><script>alert(1)</script>';
  const evilAttr = '"><img src=x onerror=alert(1)>';
  const html = paymentPage({
    status: 402,
    title: `Payment Required ${evilAttr}`,
    message: evilScript,
    outcome: 'challenge',
    route: { id: evilScript, match: '/x', amountMsat: 1000, access: 'per-request', macaroonTimeout: 0, autoDetect: true, dryRun: false, manifestHide: false, paymentPage: true } as RouteConfig,
    challenge: { macaroon: `AgE${evilAttr}`, invoice: `lnbcrt1${evilAttr}`, paymentHash: '00'.repeat(32), amountMsat: 1000, invoiceExpiresAt: Math.floor(Date.now() / 1000) + 600 },
    page: { originalUri: `/x/${evilAttr}?q=${evilScript}`, devWallet: true, autoDetect: true, method: 'GET' },
    cashu: { request: `creqA${evilScript}` },
  });
  const bodies: Record<string, string> = { '/csp': html, '/nocsp': html.replace(/<meta http-equiv="Content-Security-Policy"[^>]*>/, '') };
  assert.notEqual(bodies['/nocsp'], html);
  const server: Server = createServer((req, res) => {
    const body = bodies[req.url ?? ''];
    res.writeHead(body ? 402 : 404, { 'content-type': body ? 'text/html; charset=utf-8' : 'application/json' });
    res.end(body ?? '{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as AddressInfo).port;
    for (const path of Object.keys(bodies)) {
      const o = await open(`http://127.0.0.1:${port}${path}`);
      try {
        await o.page.waitForTimeout(300);
        assert.deepEqual(o.dialogs, [], `${path}: no dialog`);
        const facts = await o.page.evaluate(() => ({
          scripts: document.scripts.length,
          imgs: document.images.length,
          js: document.documentElement.className,
          route: document.getElementById('route')?.textContent,
          message: document.getElementById('message')?.textContent,
          title: document.title,
        }));
        assert.deepEqual(facts, { scripts: 2, imgs: 0, js: 'js', route: evilScript, message: evilScript, title: `402 Payment Required ${evilAttr}` }, path);
        assert.equal(await o.page.inputValue('#invoice'), `lnbcrt1${evilAttr}`);
        assert.ok(!(await o.page.content()).includes(`<img src="x"`));
        assert.ok(html.includes(escapeHtml(evilAttr)));
        if (path === '/csp') await shot(o.page, 'payment-page-hostile.png');
      } finally {
        await o.page.close();
      }
    }
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test('HTML content is shown in a sandboxed iframe: its scripts never run, and the page itself is untouched', { skip }, async () => {
  const secret = '<h1 id="secret">Members only</h1><script>alert("content script")</script><img src=x onerror="alert(3)">';
  const pre = '11'.repeat(32);
  const seen: Array<{ path: string; auth?: string }> = [];
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '';
    seen.push({ path, auth: req.headers.authorization });
    req.resume();
    if (path === '/_l402/page/dev-pay') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ preimage: pre }));
    } else if (path === '/article' && req.headers.authorization) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(secret);
    } else {
      res.writeHead(402, { 'content-type': 'text/html; charset=utf-8' });
      res.end(
        paymentPage({
          status: 402, title: 'Payment Required', message: 'Pay.', outcome: 'challenge',
          challenge: { macaroon: 'AgEmac', invoice: 'lnbcrt1abc', paymentHash: '00'.repeat(32), amountMsat: 1000, invoiceExpiresAt: Math.floor(Date.now() / 1000) + 600 },
          page: { originalUri: '/article', devWallet: true, autoDetect: false, method: 'GET' },
        }),
      );
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const o = await open(`http://127.0.0.1:${(server.address() as AddressInfo).port}/article`);
    try {
      await o.page.click('#dev-pay');
      const frame = o.page.frameLocator('#content iframe');
      assert.equal(await frame.locator('#secret').textContent(), 'Members only');
      assert.equal(await o.page.locator('#content iframe').getAttribute('sandbox'), '');
      await o.page.waitForTimeout(300);
      assert.deepEqual(o.dialogs, [], 'no script of the content ran');
      assert.deepEqual(seen.map((x) => x.path), ['/article', '/_l402/page/dev-pay', '/article']);
      assert.equal(seen[2]!.auth, `L402 AgEmac:${pre}`);
      assert.equal(o.navigations.length, 1);
      await shot(o.page, 'payment-page-html-content.png');
    } finally {
      await o.page.close();
    }
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test('payment_page: false gives browsers the JSON problem; other routes give them the page', { skip }, async () => {
  const accept = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';
  const off = await http1(s.origin + '/nopage', { headers: { accept } });
  assert.equal(off.status, 402);
  assert.match(String(off.headers['content-type']), /^application\/problem\+json/);
  assert.match(JSON.parse(off.body).invoice, /^lnbcrt/);
  const on = await http1(s.origin + '/premium', { headers: { accept } });
  assert.match(String(on.headers['content-type']), /^text\/html/);
  // And in the browser: the JSON body, not a page with a script.
  const o = await open(s.origin + '/nopage');
  try {
    assert.equal(o.status, 402);
    assert.equal(await o.page.locator('#l402-data').count(), 0);
    assert.match((await o.page.textContent('body')) ?? '', /payment-required/);
  } finally {
    await o.page.close();
  }
});
