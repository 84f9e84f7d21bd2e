// The operator console and the revenue counters, against the payments this test makes through real nginx:
// Lightning credentials (single-use, timed, indefinite; reused) and a Cashu payment from a cashu-ts wallet at
// a real mint peer. /metrics counts each sale once; /console.json, `l402d stats` and the page in real
// Chromium (light and dark) show the same numbers; no credential or secret appears anywhere in them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getEncodedToken } from '@cashu/cashu-ts';
import type { BrowserContext, Page } from 'playwright-core';
import { chromiumBin, launchChromium, NO_CHROMIUM } from '../support/chromium.js';
import { Cleanup, freePort, http1, requireTool, waitFor } from './harness.js';
import { ROUTES_YAML, startStack, TEST_ROOT_KEY, type Stack } from './gate-fixture.js';
import { l402dArgs } from './gate-process.js';
import { CashuMintPeer } from '../peers/cashu-mint.js';
import { decodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';
import type { ConsoleData } from '../../src/server/console-data.js';

const nginxBin = requireTool('nginx');
const skip = !nginxBin ? 'nginx not installed' : false;
const ARTIFACTS = resolve(fileURLToPath(new URL('../../test-artifacts/', import.meta.url)));
const TOKEN = 'console-token-0123456789abcdef';
const cleanup = new Cleanup();
after(() => cleanup.run());

let s: Stack;
let mint: CashuMintPeer;
let metricsOrigin: string;
let configFile: string;
/** Every secret this test handled: none may appear in the console, its JSON or /metrics. */
const secrets: string[] = [TOKEN, TEST_ROOT_KEY];
let revokedTokenId = '';

const bearer = { authorization: `Bearer ${TOKEN}` };

function l402d(args: string[]) {
  const r = spawnSync(process.execPath, l402dArgs(...args), { env: { ...process.env, L402_CONFIG: '' }, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function pay(path: string, uses: number): Promise<{ tokenId: string }> {
  const c = await s.buy(path);
  const id = decodeIdentifier(decodeMacaroonBase64(c.macaroon).identifier)!;
  secrets.push(c.macaroon, c.preimage, id.tokenId.toString('hex'), id.paymentHash.toString('hex'), c.auth);
  for (let i = 0; i < uses; i++) {
    const r = await http1(s.origin + path, { headers: { authorization: c.auth } });
    assert.equal(r.status, 200, `${path} use ${i}: ${r.body}`);
  }
  return { tokenId: id.tokenId.toString('hex') };
}

async function json(): Promise<ConsoleData> {
  const r = await http1(`${metricsOrigin}/console.json`, { headers: bearer });
  assert.equal(r.status, 200, r.body);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  return JSON.parse(r.body) as ConsoleData;
}

/** What this test paid, by route and by rail (msat). */
const EXPECTED = {
  byRoute: { '/premium': 30_000, '/timed/': 5_000, '/forever': 2_000 },
  byRail: { lightning: 27_000, cashu: 10_000 },
  total: 37_000,
  sales: 5,
};

before(async () => {
  if (skip) return;
  const dir = mkdtempSync(join(tmpdir(), 'l402-console-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  cleanup.add(() => mint.close());
  const mport = await freePort();
  metricsOrigin = `http://127.0.0.1:${mport}`;
  const cashu = `cashu: { mode: standard, mints: ["${mint.url}"] }\n`;
  s = await startStack(cleanup, { extraYaml: `metrics: { listen: 127.0.0.1:${mport}, token: ${TOKEN} }\n${cashu}` });
  // The operator's copy of the gate's config, for the CLI: the same data dir, so the same SQLite store.
  configFile = join(dir, 'l402.yaml');
  writeFileSync(configFile, `data_dir: ${s.dataDir}\nroot_key: ${TEST_ROOT_KEY}\n${cashu}${ROUTES_YAML}`);

  await pay('/premium', 1);
  await pay('/premium', 1);
  await pay('/timed/a', 3);
  revokedTokenId = (await pay('/forever', 2)).tokenId;
  // Bought, never used: not a sale.
  const unused = await s.buy('/premium');
  secrets.push(unused.macaroon, unused.preimage);
  const { wallet, proofs } = await mint.fundedWallet(18);
  const { send } = await wallet.ops.send(10, proofs).run();
  const cashuToken = getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send });
  secrets.push(cashuToken, ...send.map((p) => p.secret));
  const r = await http1(s.origin + '/premium', { headers: { 'x-cashu': cashuToken } });
  assert.equal(r.status, 200, r.body);
  await waitFor('every sale recorded', async () => (await json()).totals.sales === EXPECTED.sales, { timeoutMs: 10_000, intervalMs: 100 });
});

function metricValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}="${v}"`).join(',');
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${want}} `));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

test('/metrics: revenue in msat by route and rail, once per sale (not per use), no credential in it', { skip }, async () => {
  const read = async () => (await http1(`${metricsOrigin}/metrics`, { headers: bearer })).body;
  const expected: Array<[Record<string, string>, number, number]> = [
    [{ route: '/premium', rail: 'lightning' }, 20_000, 2],
    [{ route: '/premium', rail: 'cashu' }, 10_000, 1],
    [{ route: '/timed/', rail: 'lightning' }, 5_000, 1],
    [{ route: '/forever', rail: 'lightning' }, 2_000, 1],
  ];
  const matches = (text: string) => expected.every(([l, msat, n]) => metricValue(text, 'l402_revenue_msat_total', l) === msat && metricValue(text, 'l402_sales_total', l) === n);
  await waitFor('revenue counters', async () => matches(await read()), { timeoutMs: 10_000, intervalMs: 200 });
  const text = await read();
  assert.match(text, /# TYPE l402_revenue_msat_total counter/);
  // Uses of credentials already sold add requests, not revenue (/timed/ was used three times, /forever twice).
  assert.ok(Number(metricValue(text, 'l402_payments_valid_total', { route: '/timed/', rail: 'lightning' })) >= 1);
  for (const leak of secrets) assert.ok(!text.includes(leak), 'no credential or secret in /metrics');
  assert.ok(!/token_id|payment_hash|macaroon/.test(text), 'no credential labels');
});

test('/console.json and `l402d stats`: the payments made, by route and rail, over time; the latest payments; no secrets', { skip }, async () => {
  const d = await json();
  assert.equal(d.unit, 'msat');
  assert.equal(d.totals.msat, EXPECTED.total);
  assert.equal(d.totals.sales, EXPECTED.sales);
  assert.deepEqual(Object.fromEntries(d.totals.by_route.map((r) => [r.route, r.msat])), EXPECTED.byRoute);
  assert.deepEqual(Object.fromEntries(d.totals.by_rail.map((r) => [r.rail, r.msat])), EXPECTED.byRail);
  assert.equal(d.last_24h.msat, EXPECTED.total);
  assert.equal(d.last_30d.msat, EXPECTED.total);
  assert.equal(d.last_24h.by_route.starts.length, 24);
  assert.equal(d.last_30d.by_rail.starts.length, 30);
  assert.equal(d.last_24h.by_rail.by.cashu!.reduce((a, b) => a + b, 0), 10_000);
  assert.equal(d.last_24h.by_route.by['/premium']!.at(-1), 30_000, 'this hour\'s bucket');
  assert.equal(d.latest_payments.length, EXPECTED.sales);
  assert.equal(d.latest_payments.reduce((a, p) => a + p.amount_msat, 0), EXPECTED.total);
  assert.equal(d.latest_payments[0]!.rail, 'cashu', 'newest first');
  assert.ok(d.latest_payments.every((p) => /^(cashu|[0-9a-f]{12}…)$/.test(p.credential)), 'credentials by prefix only');
  assert.equal(d.backend?.kind, 'dev');
  assert.equal(d.backend?.ok, true);
  assert.deepEqual(d.store, { kind: 'sqlite', ok: true });
  assert.deepEqual(d.balances, { supported: true, open: [] });
  const raw = JSON.stringify(d);
  for (const leak of secrets) assert.ok(!raw.includes(leak), 'no credential or secret in /console.json');

  const stats = l402d(['stats', '--json', '--config', configFile]);
  assert.equal(stats.code, 0, stats.stderr);
  const fromStore = JSON.parse(stats.stdout) as ConsoleData;
  assert.deepEqual({ ...fromStore.totals, since: '' }, { ...d.totals, since: '' }, 'the terminal reads the same data from the store');
  assert.deepEqual(fromStore.latest_payments.slice(0, 10), d.latest_payments.slice(0, 10));
  const text = l402d(['stats', '--config', configFile]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /earnings since \S+: 37,000 msat in 5 sales/);
  assert.match(text.stdout, /\/premium\s+30,000 msat\s+3 sales/);
  for (const leak of secrets) assert.ok(!text.stdout.includes(leak) && !stats.stdout.includes(leak), 'no secret in l402d stats');
});

test('the console is behind the metrics token: Bearer, or Basic with the token as password (the browser asks)', { skip }, async () => {
  for (const path of ['/console', '/console.json']) {
    const none = await http1(metricsOrigin + path);
    assert.equal(none.status, 401);
    assert.match(String(none.headers['www-authenticate']), /^Basic realm="l402d console"/);
    assert.equal((await http1(metricsOrigin + path, { headers: { authorization: `Bearer ${TOKEN}x` } })).status, 401);
    assert.equal((await http1(metricsOrigin + path, { headers: { authorization: `Basic ${Buffer.from(`op:${TOKEN}x`).toString('base64')}` } })).status, 401);
    assert.equal((await http1(metricsOrigin + path, { headers: { authorization: `Basic ${Buffer.from(`op:${TOKEN}`).toString('base64')}` } })).status, 200);
    assert.equal((await http1(metricsOrigin + path, { headers: bearer })).status, 200);
  }
  const page = await http1(`${metricsOrigin}/console`, { headers: bearer });
  const csp = String(page.headers['content-security-policy']);
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /style-src 'sha256-[A-Za-z0-9+/=]+'/);
  assert.ok(!/script-src|unsafe/.test(csp), csp);
  assert.ok(!/<script|\son[a-z]+=|style="|https?:\/\/(?!www\.w3\.org)/i.test(page.body), 'no script, handler, inline style or external reference');
});

async function luminance(page: Page, selector: string, prop: 'color' | 'backgroundColor'): Promise<number> {
  const rgb = await page.locator(selector).first().evaluate((el, p) => getComputedStyle(el)[p], prop);
  const [r, g, b] = (rgb.match(/\d+(\.\d+)?/g) ?? []).slice(0, 3).map(Number).map((v) => {
    const c = v / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
}

test('the console in Chromium, light and dark: the numbers on the page are the payments made; revoked shown; no secrets', { skip: skip || (!chromiumBin ? NO_CHROMIUM : false) }, async () => {
  const revoke = l402d(['token', 'revoke', revokedTokenId, '--config', configFile]);
  assert.equal(revoke.code, 0, revoke.stderr);
  mkdirSync(ARTIFACTS, { recursive: true });
  const browser: BrowserContext = await launchChromium(cleanup, 10_000, { extraHTTPHeaders: bearer });
  for (const scheme of ['light', 'dark'] as const) {
    const page = await browser.newPage();
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('request', (r) => requests.push(r.url()));
    try {
      await page.emulateMedia({ colorScheme: scheme });
      const resp = await page.goto(`${metricsOrigin}/console`, { waitUntil: 'load' });
      assert.equal(resp?.status(), 200);
      assert.equal(await page.title(), 'l402d console: l402');
      assert.equal(Number(await page.locator('#total-all .n').getAttribute('data-msat')), EXPECTED.total);
      assert.equal((await page.locator('#total-all .n').textContent())?.trim(), '37,000');
      assert.equal(Number(await page.locator('#total-24h .n').getAttribute('data-msat')), EXPECTED.total);
      const table = async (id: string) =>
        Object.fromEntries(
          await page.locator(`#${id} tbody tr`).evaluateAll((rows) => rows.map((r) => [r.children[0]!.textContent!, Number(r.children[2]!.textContent!.replace(/,/g, ''))])),
        );
      assert.deepEqual(await table('by-route'), EXPECTED.byRoute);
      assert.deepEqual(await table('by-rail'), EXPECTED.byRail);
      const amounts = await page.locator('#payments-table tbody td[data-msat]').evaluateAll((tds) => tds.map((td) => Number(td.getAttribute('data-msat'))));
      assert.equal(amounts.length, EXPECTED.sales);
      assert.equal(amounts.reduce((a, b) => a + b, 0), EXPECTED.total);
      assert.equal(await page.locator('#payments-table tbody tr', { hasText: 'revoked' }).count(), 1, 'the revoked sale is marked');
      assert.equal(await page.locator('#revocations-table tbody tr').count(), 1);
      assert.equal(await page.locator('svg.chart').count(), 4, 'four charts drawn on the server');
      assert.ok((await page.locator('svg.chart rect').count()) >= 4, 'bars drawn');
      assert.match((await page.locator('#health-table').textContent()) ?? '', /dev.*ok/s);
      assert.equal(await page.locator('#balances').count(), 1);
      // Readable: text against its background at >= 4.5:1, in the scheme asked for.
      const bg = await luminance(page, 'body', 'backgroundColor');
      const fg = await luminance(page, 'body', 'color');
      assert.ok(scheme === 'dark' ? bg < 0.05 : bg > 0.9, `${scheme} background`);
      assert.ok((Math.max(bg, fg) + 0.05) / (Math.min(bg, fg) + 0.05) >= 4.5, `${scheme} contrast`);
      const muted = await luminance(page, '.card .muted', 'color');
      const card = await luminance(page, '.card', 'backgroundColor');
      assert.ok((Math.max(card, muted) + 0.05) / (Math.min(card, muted) + 0.05) >= 4.5, `${scheme} muted text contrast`);
      assert.deepEqual(errors, [], 'no console errors (no CSP violation)');
      assert.deepEqual(requests.filter((u) => !u.startsWith(`${metricsOrigin}/console`)), [], 'nothing else loaded');
      const html = await page.content();
      for (const leak of secrets) assert.ok(!html.includes(leak), 'no credential or secret in the page');
      const path = join(ARTIFACTS, `console-${scheme}.png`);
      rmSync(path, { force: true });
      await page.screenshot({ path, fullPage: true });
      assert.ok(existsSync(path) && statSync(path).size > 1000);
    } finally {
      await page.close();
    }
  }
});
