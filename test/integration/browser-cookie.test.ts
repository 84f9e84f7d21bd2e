// The browser flow end to end in real headless Chromium, through real nginx: pay on a timed route's payment
// page with the development wallet, land on the real page with its own stylesheet, script and image (served
// by the upstream under the paid route), follow a link to another page of the route without paying again,
// see another route still ask for payment, and a single-use route serve exactly one page. The upstream never
// sees the credential cookie; the site's own cookie reaches it. Screenshots of each step: test-artifacts/.
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
import { Cleanup, requireTool } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';
import { startStandalone } from './standalone-fixture.js';

const nginxBin = requireTool('nginx');
const skip = !nginxBin ? 'nginx not installed' : !chromiumBin ? NO_CHROMIUM : false;
const ARTIFACTS = resolve(fileURLToPath(new URL('../../test-artifacts/', import.meta.url)));
const STEP_MS = 10_000;
/** A 4x3 PNG. */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAQAAAADCAIAAAA7ljmRAAAAEElEQVR4nGO4oKAARww4OQABFgzB2Be8jwAAAABJRU5ErkJggg==', 'base64');
const HEADING_COLOR = 'rgb(1, 120, 3)';

const cleanup = new Cleanup();
let s: Stack;
let browser: BrowserContext;
let site: { port: number; seen: Array<{ url: string; cookie?: string; authorization?: string }> };

/** The site behind the paid routes: pages with their own stylesheet, script and image, relative links. */
async function startSite(): Promise<typeof site> {
  const seen: Array<{ url: string; cookie?: string; authorization?: string }> = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    const url = req.url ?? '/';
    seen.push({ url, cookie: req.headers.cookie, authorization: req.headers.authorization });
    const file = url.split('?')[0]!.split('/').pop() ?? '';
    const send = (type: string, body: string | Buffer) => {
      res.writeHead(200, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (file.endsWith('.html')) {
      send('text/html; charset=utf-8', `<!doctype html><html><head><meta charset="utf-8"><title>Real ${url}</title>
<link rel="stylesheet" href="style.css"><script src="app.js" defer></script></head>
<body><h1 id="real">Real page ${url}</h1><p id="js">no script</p>
<img id="pic" src="pic.png" alt="picture" width="40" height="30">
<p><a id="next" href="second.html">Next page</a></p></body></html>`);
    } else if (file === 'style.css') send('text/css', `#real{color:${HEADING_COLOR}} body{background:rgb(250, 240, 230);font-family:sans-serif} img{image-rendering:pixelated}`);
    else if (file === 'app.js') send('text/javascript', `document.getElementById('js').textContent = 'script ran';`);
    else if (file === 'pic.png') send('image/png', PNG);
    else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.add(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }, 'site');
  return { port: (server.address() as AddressInfo).port, seen };
}

before(async () => {
  if (skip) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  site = await startSite();
  s = await startStack(cleanup, {
    devPay: true,
    extraRoutes: `  - { match: /site/, amount_msat: 3000, access: timed, macaroon_timeout: 300 }
  - { match: /other/, amount_msat: 1500, access: timed, macaroon_timeout: 300 }
  - { match: /once/, amount_msat: 1000 }
`,
    extra: (dir) => ['/site/', '/other/', '/once/'].map((p) => `location ${p} { include ${dir}/protect.conf; proxy_pass http://127.0.0.1:${site.port}; }`).join('\n'),
  });
  browser = await launchChromium(cleanup, STEP_MS);
});
after(() => cleanup.run());

async function shot(page: Page, name: string): Promise<void> {
  const path = join(ARTIFACTS, name);
  rmSync(path, { force: true });
  await page.screenshot({ path, fullPage: true });
  assert.ok(existsSync(path) && statSync(path).size > 1000, `screenshot ${name} written`);
}

function invoiceCount(): number {
  const db = new Database(join(s.dataDir, 'dev-wallet.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT COUNT(*) AS n FROM invoices').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Runs `act` and waits for the top-level GET navigation to `path` to load: its status. */
async function landing(page: Page, path: string, act: () => Promise<unknown>): Promise<number> {
  const nav = page.waitForResponse((r) => r.request().isNavigationRequest() && r.request().method() === 'GET' && new URL(r.url()).pathname === path, { timeout: STEP_MS });
  await act();
  const r = await nav;
  await page.waitForLoadState('load');
  return r.status();
}

/** What the real page looks like: its stylesheet applied, its script run, its image decoded. */
async function realPage(page: Page): Promise<{ heading: string | null; color: string; js: string | null; imageWidth: number }> {
  await page.locator('#js').filter({ hasText: 'script ran' }).waitFor();
  await page.waitForFunction(() => (document.getElementById('pic') as HTMLImageElement | null)?.complete === true);
  return page.evaluate(() => ({
    heading: document.getElementById('real')?.textContent ?? null,
    color: getComputedStyle(document.getElementById('real')!).color,
    js: document.getElementById('js')?.textContent ?? null,
    imageWidth: (document.getElementById('pic') as HTMLImageElement).naturalWidth,
  }));
}

function assertNoCredentialAtSite(): void {
  for (const r of site.seen) {
    assert.ok(!/l402_/i.test(r.cookie ?? ''), `${r.url}: the site got ${r.cookie}`);
    assert.equal(r.authorization, undefined, r.url);
  }
}

test('timed route: pay on the page, land on the real page with its CSS, script and image, browse on without paying', { skip }, async () => {
  await browser.clearCookies();
  await browser.addCookies([{ name: 'session', value: 's1', url: s.origin }]);
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    const first = await page.goto(s.origin + '/site/index.html');
    assert.equal(first?.status(), 402);
    assert.equal(await page.title(), '402 Payment Required');
    await shot(page, 'browser-1-payment-page.png');
    // Dark mode: the pay button's text stays readable (dark text on the light orange).
    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = await page.locator('#dev-pay').evaluate((b) => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]);
    assert.deepEqual(dark, ['rgb(17, 17, 17)', 'rgb(255, 166, 77)']);
    await shot(page, 'browser-1-payment-page-dark.png');
    await page.emulateMedia({ colorScheme: 'light' });

    site.seen.length = 0;
    const posts: Array<Record<string, string>> = [];
    page.on('request', (r) => void (r.method() === 'POST' && new URL(r.url()).pathname === '/_l402/page/cookie' && posts.push(r.headers())));
    assert.equal(await landing(page, '/site/index.html', () => page.click('#dev-pay')), 200);
    // The form post names its origin (a browser without Sec-Fetch-Site is checked by it): never "null".
    assert.equal(posts.length, 1);
    assert.equal(posts[0]!.origin, s.origin);
    assert.equal(new URL(page.url()).pathname, '/site/index.html', 'the address bar shows the page asked for');
    assert.deepEqual(await realPage(page), { heading: 'Real page /site/index.html', color: HEADING_COLOR, js: 'script ran', imageWidth: 4 });
    await shot(page, 'browser-2-paid-real-page.png');

    const jar = (await browser.cookies(s.origin + '/site/')).filter((c) => c.name.startsWith('l402_'));
    assert.equal(jar.length, 1);
    const c = jar[0]!;
    assert.deepEqual([c.path, c.httpOnly, c.secure, c.sameSite], ['/site/', true, false, 'Lax']);
    // The credential's expiry: its invoice's (300 s, capped to macaroon_timeout) plus macaroon_timeout (300 s).
    assert.ok(c.expires > Date.now() / 1000 + 300 && c.expires <= Date.now() / 1000 + 601, `no longer than the credential (600 s): ${c.expires}`);
    assert.match(c.value, /^[A-Za-z0-9_-]+:[0-9a-f]{64}$/);
    assert.deepEqual(await page.evaluate(() => document.cookie), 'session=s1', 'HttpOnly: page scripts never see it');

    // The page, its stylesheet, script and image each passed the gate with the cookie; the site got its own
    // cookie and nothing of the credential.
    const paths = site.seen.map((r) => r.url).sort();
    assert.deepEqual(paths, ['/site/app.js', '/site/index.html', '/site/pic.png', '/site/style.css']);
    for (const r of site.seen) assert.equal(r.cookie, 'session=s1', r.url);

    const minted = invoiceCount();
    assert.equal(await landing(page, '/site/second.html', () => page.click('#next')), 200);
    assert.deepEqual(await realPage(page), { heading: 'Real page /site/second.html', color: HEADING_COLOR, js: 'script ran', imageWidth: 4 });
    assert.equal(invoiceCount(), minted, 'no new invoice: the same cookie opened the next page');
    await shot(page, 'browser-3-second-page.png');

    // Another route: its own price, its own payment.
    const other = await page.goto(s.origin + '/other/index.html');
    assert.equal(other?.status(), 402);
    assert.equal(await page.locator('#route').textContent(), '/other/');
    assert.equal(await page.locator('#dev-pay').isVisible(), true);
    await shot(page, 'browser-4-other-route.png');
    assertNoCredentialAtSite();
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('single-use route: the paid page is served exactly once; the next visit asks for payment again', { skip }, async () => {
  await browser.clearCookies();
  const page = await browser.newPage();
  try {
    assert.equal((await page.goto(s.origin + '/once/index.html'))?.status(), 402);
    site.seen.length = 0;
    assert.equal(await landing(page, '/once/index.html', () => page.click('#dev-pay')), 200);
    assert.equal(await page.locator('#real').textContent(), 'Real page /once/index.html');
    await shot(page, 'browser-5-single-use-paid.png');
    const pages = () => site.seen.filter((r) => r.url === '/once/index.html').length;
    assert.equal(pages(), 1);
    // The page's own stylesheet, script and image were not paid for: one request, one payment.
    assert.deepEqual(site.seen.map((r) => r.url), ['/once/index.html']);

    // The page's own stylesheet, script and image came with the cookie already spent: refused (401), and the
    // refusal deleted the cookie, so the next visit is a plain challenge.
    await page.waitForFunction(() => performance.getEntriesByType('resource').length >= 3);
    assert.deepEqual((await browser.cookies(s.origin + '/once/')).filter((c) => c.name.startsWith('l402_')), [], 'the spent cookie was deleted');
    const again = await page.reload();
    assert.equal(again?.status(), 402, 'the next visit asks for payment again');
    assert.equal(await page.locator('#dev-pay').isVisible(), true);
    await shot(page, 'browser-6-single-use-again.png');
    assert.equal(pages(), 1, 'served exactly once');
    assertNoCredentialAtSite();
  } finally {
    await page.close();
  }
});

test('standalone mode (no nginx): pay with the preimage, land on the page, browse the indefinite route without paying', { skip }, async () => {
  const alone = await startStandalone(cleanup, 'browser-cookie');
  const origin = `http://127.0.0.1:${alone.port}`;
  await browser.clearCookies();
  await browser.addCookies([{ name: 'session', value: 's2', url: origin }]);
  const page = await browser.newPage();
  try {
    assert.equal((await page.goto(origin + '/cheap/a?x=1'))?.status(), 402);
    const preimage = alone.wallet.pay(await page.inputValue('#invoice')).toString('hex');
    await page.fill('#preimage', preimage);
    alone.upstream.reset();
    assert.equal(await landing(page, '/cheap/a', () => page.click('#preimage-form button[type=submit]')), 200);
    assert.deepEqual(JSON.parse((await page.locator('body').textContent()) ?? ''), { ok: true, path: '/cheap/a?x=1' });
    await shot(page, 'browser-7-standalone-paid.png');
    assert.equal((await page.goto(origin + '/cheap/b'))?.status(), 200, 'the same cookie opens the next page');
    const jar = (await browser.cookies(origin + '/cheap/')).filter((c) => c.name.startsWith('l402_'));
    assert.deepEqual(jar.map((c) => [c.path, c.httpOnly, c.secure, c.sameSite]), [['/cheap/', true, false, 'Lax']]);
    const served = alone.upstream.requests.filter((r) => r.url.startsWith('/cheap/'));
    assert.deepEqual(served.map((r) => r.url), ['/cheap/a?x=1', '/cheap/b']);
    for (const r of alone.upstream.requests) assert.ok(!/l402_/i.test(String(r.headers.cookie ?? '')), String(r.headers.cookie));
    assert.equal(served[0]!.headers.cookie, 'session=s2');
    assert.equal((await page.goto(origin + '/expensive/x'))?.status(), 402, 'another route still asks');
  } finally {
    await page.close();
  }
});
