// Round 11b: a client that paid always gets what it paid for. Honest flows through real nginx that must never
// end refused, in a 5xx, or with money taken and nothing served.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { request as httpRequest } from 'node:http';
import http2 from 'node:http2';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import lightBolt11 from 'light-bolt11-decoder';
import { Cleanup, grpcClient, http1, requireTool, waitFor } from './harness.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroon } from '../../src/protocol/macaroon.js';
import { chromiumBin, launchChromium, NO_CHROMIUM } from '../support/chromium.js';
import { PassThrough } from 'node:stream';
import { ROUTES_YAML, TEST_ROOT_KEY, startStack, type Stack } from './gate-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { sleep } from '../../src/util/timeout.js';

const skip = requireTool('nginx') ? false : 'nginx not installed';
const cleanup = new Cleanup();
after(() => cleanup.run());

const JSON_ACCEPT = { accept: 'application/json' };

/** The invoice's expiry (unix seconds), read by an independent BOLT11 decoder. */
function invoiceExpiresAt(bolt11: string): number {
  const d = lightBolt11.decode(bolt11);
  const ts = d.sections.find((s) => s.name === 'timestamp');
  return Number(ts && 'value' in ts ? ts.value : NaN) + Number(d.expiry);
}

test('a credential with a macaroon_timeout under a minute still opens after its invoice is paid at the last moment', { skip }, async () => {
  const extraRoutes = '  - { match: /timed/short, amount_msat: 500, access: timed, macaroon_timeout: 2 }\n  - { match: /premium-short, amount_msat: 600, macaroon_timeout: 2 }\n';
  const s = await startStack(cleanup, { extraRoutes });
  for (const path of ['/timed/short', '/premium-short']) {
    const r = await http1(s.origin + path, { headers: JSON_ACCEPT });
    assert.equal(r.status, 402, r.body);
    const body = JSON.parse(r.body) as { macaroon: string; invoice: string; valid_until: string; expires_at: string };
    const invoiceEnd = invoiceExpiresAt(body.invoice);
    const validUntil = Math.floor(Date.parse(body.valid_until) / 1000);
    assert.equal(Math.floor(Date.parse(body.expires_at) / 1000), invoiceEnd, `${path}: expires_at is the invoice's expiry`);
    // The rule: whenever the invoice is paid, the payer still gets the whole macaroon_timeout after it.
    assert.ok(validUntil >= invoiceEnd + 2, `${path}: the credential (${validUntil}) outlives its invoice (${invoiceEnd}) by macaroon_timeout`);
    // Paid later than macaroon_timeout after the challenge, well before the invoice expires.
    await sleep(3_000);
    const preimage = s.wallet.pay(body.invoice).toString('hex');
    s.upstream.reset();
    const paid = await http1(s.origin + path, { headers: { ...JSON_ACCEPT, authorization: `L402 ${body.macaroon}:${preimage}` } });
    assert.equal(paid.status, 200, `${path}: paid, then refused: ${paid.body}`);
    assert.equal(s.upstream.hits, 1);
  }
});

test('a balance top-up paid at its invoice\'s last second still leaves time to draw on the balance', { skip }, async () => {
  // /premium-meter is under nginx's /premium location; one payment buys one request's credit.
  const s = await startStack(cleanup, { extraRoutes: '  - { match: /premium-meter, amount_msat: 1000, access: balance, balance_msat: 1000, macaroon_timeout: 70 }\n' });
  const get = (auth?: string) => http1(s.origin + '/premium-meter', { headers: { ...JSON_ACCEPT, ...(auth ? { authorization: auth } : {}) } });
  const { auth, macaroon } = await s.buy('/premium-meter');
  assert.equal((await get(auth)).status, 200);
  const empty = await get(auth);
  assert.equal(empty.status, 402, empty.body);
  const p = JSON.parse(empty.body) as { reason: string; macaroon: string; invoice: string; valid_until: string };
  assert.deepEqual([p.reason, p.macaroon], ['balance_empty', macaroon], 'a top-up for the same credential');
  const validUntil = Math.floor(Date.parse(p.valid_until) / 1000);
  const invoiceEnd = invoiceExpiresAt(p.invoice);
  assert.ok(validUntil - invoiceEnd >= 60, `the top-up invoice (until ${invoiceEnd}) leaves at least a minute of the credential (until ${validUntil})`);
  assert.ok(validUntil - invoiceEnd >= invoiceEnd - Math.floor(Date.now() / 1000), 'and at least as long as the invoice itself lives');
  // Paid: the credit is drawn.
  const topup = s.wallet.pay(p.invoice).toString('hex');
  const drawn = await get(`L402 ${macaroon}:${topup}`);
  assert.equal(drawn.status, 200, drawn.body);
});

/** curl, bounded (asynchronous: l402d runs in this process); its status and body. */
function curl(args: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '--max-time', '20', '-o', '-', '-w', '\n%{http_code}', ...args], { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`curl: ${err.message} ${stderr}`));
      const at = stdout.lastIndexOf('\n');
      resolve({ status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at) });
    });
  });
}

test('honest spellings of a paid credential through nginx: LSAT, any case, extra blanks, a header file with CRLF, HTTP/1.0, HTTP/2 with many large headers', { skip: skip || (requireTool('curl') ? false : 'curl not installed') }, async () => {
  const s = await startStack(cleanup);
  const file = join(s.dataDir, 'auth-header.txt');
  const variants: Array<[string, (mac: string, pre: string) => string[]]> = [
    ['LSAT scheme', (m, p) => ['-H', `Authorization: LSAT ${m}:${p}`, `${s.origin}/premium`]],
    ['lower-case scheme', (m, p) => ['-H', `Authorization: l402 ${m}:${p}`, `${s.origin}/premium`]],
    ['mixed-case LSAT, blanks around', (m, p) => ['-H', `Authorization:    LsAt   ${m}:${p}   `, `${s.origin}/premium`]],
    ['tab after the scheme', (m, p) => ['-H', `Authorization: L402\t${m}:${p}`, `${s.origin}/premium`]],
    ['-H @file with a CRLF line end', (m, p) => (writeFileSync(file, `Authorization: L402 ${m}:${p}\r\n`), ['-H', `@${file}`, `${s.origin}/premium`])],
    ['HTTP/1.0', (m, p) => ['--http1.0', '-H', `Authorization: L402 ${m}:${p}`, `${s.origin}/premium`]],
    ['HTTP/2 (prior knowledge), 40 large headers', (m, p) => ['--http2-prior-knowledge', ...Array.from({ length: 40 }, (_, i) => ['-H', `X-Big-${i}: ${'v'.repeat(300)}`]).flat(), '-H', `Authorization: L402 ${m}:${p}`, `http://127.0.0.1:${s.h2Port}/premium`]],
  ];
  for (const [name, args] of variants) {
    const { macaroon, preimage } = await s.buy('/premium');
    s.upstream.reset();
    const r = await curl(args(macaroon, preimage));
    assert.equal(r.status, 200, `${name}: ${r.body}`);
    assert.equal(s.upstream.hits, 1, name);
    // Spent: the same credential again is a clear refusal, never a 5xx.
    const again = await curl(['-H', 'Accept: application/json', ...args(macaroon, preimage)]);
    assert.equal(again.status, 401, `${name}, again: ${again.body}`);
    assert.equal(JSON.parse(again.body).reason, 'already_used', name);
  }
});

test('402 page, auto-detect: an invoice paid after the last poll, just before it expires, still opens the content (never "reload for a new invoice")', { skip: skip || (chromiumBin ? false : NO_CHROMIUM) }, async () => {
  const s = await startStack(cleanup);
  const browser = await launchChromium(cleanup, 15_000);
  // The page's own clock, driven by the test (the invoice's real expiry is an hour away).
  await browser.clock.install({ time: Date.now() });
  const page = await browser.newPage();
  const statuses: Array<{ status: number; body: string }> = [];
  page.on('response', (r) => {
    if (new URL(r.url()).pathname === '/_l402/page/status') void r.text().then((body) => statuses.push({ status: r.status(), body }), () => {});
  });
  const first = await page.goto(s.origin + '/auto', { waitUntil: 'load' });
  assert.equal(first?.status(), 402);
  const invoice = await page.inputValue('#invoice');
  const expiresAt = invoiceExpiresAt(invoice);
  // Just before the expiry: the poll due then finds nothing (unpaid), and the next one would come after it.
  await page.clock.pauseAt((expiresAt - 1.5) * 1000);
  await waitFor('a poll answered "not settled"', () => statuses.some((r) => r.status === 200 && JSON.parse(r.body).settled === false), { timeoutMs: 15_000 });
  s.wallet.pay(invoice);
  s.upstream.reset();
  const landed = page.waitForResponse((r) => r.request().isNavigationRequest() && r.request().method() === 'GET' && new URL(r.url()).pathname === '/auto', { timeout: 15_000 });
  // The invoice's expiry passes on the page.
  await page.clock.resume();
  assert.equal((await landed).status(), 200, `the page: ${await page.locator('body').textContent().catch(() => '')}`);
  // (Chromium also asks the free site for its favicon once it shows a page.)
  assert.deepEqual(s.upstream.requests.filter((r) => !r.url.startsWith('/favicon')).map((r) => r.url), ['/auto']);
});

test('challenges taken before a reload (new price, access mode) or a restart with a rotated root key are paid afterwards and served on the terms they were minted with', { skip }, async () => {
  const s = await startStack(cleanup, { extraYaml: 'store: { type: sqlite }\n' });
  const challenge = async (path: string) => {
    const r = await http1(s.origin + path, { headers: JSON_ACCEPT });
    assert.equal(r.status, 402, r.body);
    return JSON.parse(r.body) as { macaroon: string; invoice: string };
  };
  const get = (path: string, auth: string) => http1(s.origin + path, { headers: { ...JSON_ACCEPT, authorization: auth } });
  const before = { premium: await challenge('/premium'), timed: await challenge('/timed/a'), forever: await challenge('/forever') };
  const yaml = (routes: string, extra = '') => `listen: ${s.cfg.listen}\ndata_dir: ${s.dataDir}\nroot_key: ${TEST_ROOT_KEY}\nlog: { level: debug }\n${extra}${routes}`;
  const changed = ROUTES_YAML.replace('{ match: /premium, amount_msat: 10000 }', '{ match: /premium, amount_msat: 20000, access: timed, macaroon_timeout: 600 }')
    .replace('{ match: /timed/, amount_msat: 5000, access: timed, macaroon_timeout: 120 }', '{ match: /timed/, amount_msat: 9000, access: indefinite }')
    .replace('{ match: /forever, amount_msat: 2000, access: indefinite }', '{ match: /forever, amount_msat: 3000 }');
  assert.notEqual(changed, ROUTES_YAML);
  s.gate.reload(parseConfig(yaml(changed), { env: {} }), 'l402.yaml');
  assert.equal(JSON.parse((await http1(s.origin + '/premium', { headers: JSON_ACCEPT })).body).amount_msat, 20000, 'the new price applies to new challenges');
  const paid = (c: { macaroon: string; invoice: string }) => `L402 ${c.macaroon}:${s.wallet.pay(c.invoice).toString('hex')}`;
  s.upstream.reset();
  // Sold single-use at the old price: one request, also on a route now timed and dearer.
  const premium = paid(before.premium);
  assert.equal((await get('/premium', premium)).status, 200);
  assert.equal(JSON.parse((await get('/premium', premium)).body).reason, 'already_used');
  // Sold timed, on a route now indefinite: reusable (until its minted expiry).
  const timed = paid(before.timed);
  for (const p of ['/timed/a', '/timed/b']) assert.equal((await get(p, timed)).status, 200, p);
  // Sold indefinite, on a route now single-use: served once (what a route sells now only narrows).
  const forever = paid(before.forever);
  assert.equal((await get('/forever', forever)).status, 200);
  assert.equal(s.upstream.hits, 4);

  // A restart with a new root key, the old one kept in previous_root_keys: a challenge from before is paid after.
  const old = await challenge('/premium');
  await s.gate.close();
  const newKey = randomBytes(32).toString('hex');
  const restarted = await startGate(parseConfig(yaml(changed, `previous_root_keys: [${TEST_ROOT_KEY}]\n`).replace(`root_key: ${TEST_ROOT_KEY}`, `root_key: ${newKey}`), { env: {} }), { log: createLogger('warn', new PassThrough().resume()) });
  cleanup.add(() => restarted.close(), 'l402d restarted');
  s.upstream.reset();
  const rotated = paid(old);
  // (/premium is timed since the reload: reusable.)
  for (const p of ['/premium', '/premium/x']) assert.equal((await get(p, rotated)).status, 200, `${p}: a credential minted under the previous key`);
  // The single-use one spent before the restart stays spent.
  assert.equal(JSON.parse((await get('/premium', premium)).body).reason, 'already_used');
  assert.equal(s.upstream.hits, 2);
});

/**
 * Sends a paid GET /premium and drops it at once or a moment later (before, during or after the gate's decision):
 * 'close' (an HTTP/1.1 connection closed), 'h2-close' (the HTTP/2 connection closed) or 'h2-cancel' (RST_STREAM).
 * Then retries until the outcome is settled: the upstream saw the request (the retry is already_used), or the
 * retry is served; anything else is a payment spent and not served.
 */
async function dropPaidRequests(s: Stack, how: Array<'close' | 'h2-close' | 'h2-cancel'>, rounds: number): Promise<string[]> {
  const port = Number(new URL(s.origin).port);
  const outcomes: string[] = [];
  for (let i = 0; i < rounds; i++) {
    const kind = how[i % how.length]!;
    const delayMs = Math.floor(i / how.length) % 3;
    const b = await s.buy('/premium');
    s.upstream.reset();
    await new Promise<void>((resolve) => {
      if (kind === 'close') {
        const c = net.connect(port, '127.0.0.1', () => {
          c.write(`GET /premium HTTP/1.1\r\nHost: x\r\nAuthorization: ${b.auth}\r\n\r\n`);
          if (delayMs === 0) c.destroy();
          else setTimeout(() => c.destroy(), delayMs);
        });
        c.on('close', () => resolve());
        c.on('error', () => {});
        return;
      }
      const session = http2.connect(`http://127.0.0.1:${s.h2Port}`);
      session.on('error', () => {});
      // Bounded: a cancelled stream leaves the session open until it is destroyed here.
      const bound = setTimeout(() => session.destroy(), 2_000);
      session.on('close', () => (clearTimeout(bound), resolve()));
      const st = session.request({ ':path': '/premium', authorization: b.auth });
      st.on('error', () => {});
      st.on('close', () => session.destroy());
      st.end();
      setTimeout(() => (kind === 'h2-cancel' ? st.close(http2.constants.NGHTTP2_CANCEL) : session.destroy()), delayMs);
    });
    const outcome = await waitFor('the dropped request to settle', async () => {
      const r = await http1(s.origin + '/premium', { headers: { authorization: b.auth, accept: 'application/json' } });
      return r.status === 200 ? 'retry served' : s.upstream.hits > 0 && JSON.parse(r.body).reason === 'already_used' ? 'reached the upstream' : undefined;
    }, { timeoutMs: 3_000, intervalMs: 100 }).catch(() => `${kind} after ${delayMs} ms: spent, not served`);
    outcomes.push(outcome);
  }
  return outcomes;
}

// Found in round 11b: nginx ends a request whose HTTP/1.1 client closed its connection; when that landed after l402d
// spent the payment and before nginx sent the request to the upstream, the payment was spent and not served. Fixed:
// the auth location reads l402d's answer even after the client left (proxy_ignore_client_abort there only), and
// protect.conf's post_action gives back what a request spent when nginx ended it with no byte sent upstream.
test('a client that drops its HTTP/1.1 connection right after sending a paid request: the request reaches the upstream, or the payment is not spent (never spent and not served)', { skip, timeout: 180_000 }, async () => {
  const s = await startStack(cleanup);
  const outcomes = await dropPaidRequests(s, ['close'], 12);
  assert.deepEqual(outcomes.filter((o) => o.includes('spent')), [], outcomes.join(', '));
});

// The give-back after the request (protect.conf's post_action) must never return a payment whose request was
// served without an upstream: nginx's own answers (a file, a `return`) count as served; its 413 does not.
test('a paid location nginx answers itself (a file): the payment is spent once served, never given back after it', { skip }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'l402-static-'));
  cleanup.add(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'premium'));
  writeFileSync(join(root, 'premium', 'static'), 'paid content\n');
  const s = await startStack(cleanup, { extra: (sn) => `location = /premium/static { include ${sn}/protect.conf; root ${root}; default_type text/plain; }` });
  const get = (auth: string) => http1(s.origin + '/premium/static', { headers: { authorization: auth, accept: 'application/json' } });
  const { auth } = await s.buy('/premium/static');
  const first = await get(auth);
  assert.equal(first.status, 200, first.body);
  assert.equal(first.body, 'paid content\n');
  await sleep(200);
  const again = await get(auth);
  assert.equal(again.status, 401, again.body);
  assert.equal(JSON.parse(again.body).reason, 'already_used', 'a request nginx answered itself is served: nothing given back');
});

// Found, not fixed for a cancelled stream: nginx (1.22) ends an HTTP/2 stream whose client cancelled it (RST_STREAM)
// whatever proxy_ignore_client_abort says, without the post_action that gives the payment back; when that lands after
// l402d spent the payment and before nginx sent the request to the upstream, the payment is spent and not served.
// (A closed HTTP/2 connection is given back as an HTTP/1.1 one is.)
test('an HTTP/2 client that cancels its stream or closes its connection right after sending a paid request: reaches the upstream or not spent', { skip, todo: 'nginx ends a cancelled HTTP/2 stream without post_action', timeout: 120_000 }, async () => {
  const s = await startStack(cleanup);
  const outcomes = await dropPaidRequests(s, ['h2-cancel', 'h2-close'], 4);
  assert.deepEqual(outcomes.filter((o) => o.includes('spent')), [], outcomes.join(', '));
});

test('a paid request retried after it was served, on a route whose invoice rate limit is used up: the answer still says the credential was used', { skip }, async () => {
  const s = await startStack(cleanup);
  const b = await s.buy('/limited');
  const get = (auth?: string) => http1(s.origin + '/limited', { headers: { ...JSON_ACCEPT, ...(auth ? { authorization: auth } : {}) } });
  assert.equal((await get(b.auth)).status, 200);
  assert.equal((await get()).status, 402, 'the second invoice of the minute (2r/m)');
  const again = await get(b.auth);
  assert.equal(again.status, 429, again.body);
  const p = JSON.parse(again.body) as { reason: string; detail: string };
  assert.equal(p.reason, 'invoice_rate_limited');
  assert.match(p.detail, /already_used/, 'why the credential was refused, not only that no new invoice is offered');
});

// Found, not fixed: a chunked body found over client_max_body_size after the gate spent a single-use payment is
// answered 413 by nginx and never reaches the upstream, but the payment stays spent (a Content-Length over the
// limit is refused before the decision and spends nothing). `error_page 413 = @l402_release` gives it back, but
// nginx then reads the rest of the body again in that location and answers its own 413 or the release's 502
// (racing): a 5xx for a client's mistake. Needs another way to release on 413.
test('a paid request whose chunked body outgrows client_max_body_size: 413, and the payment still pays (the upstream never got it)', { skip }, async () => {
  const s = await startStack(cleanup, { surround: { server: 'client_max_body_size 64k;' } });
  const b = await s.buy('/premium', 'POST');
  s.upstream.reset();
  const big = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpRequest(s.origin + '/premium', { method: 'POST', headers: { authorization: b.auth, 'transfer-encoding': 'chunked', accept: 'application/json' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    for (let i = 0; i < 4; i++) req.write(Buffer.alloc(32 * 1024, 97));
    req.end();
  });
  assert.equal(big.status, 413, big.body);
  assert.equal(s.upstream.hits, 0);
  const small = await http1(s.origin + '/premium', { method: 'POST', body: 'small', headers: { ...JSON_ACCEPT, authorization: b.auth } });
  assert.equal(small.status, 200, `the same credential with a body that fits: ${small.body}`);
  assert.equal(s.upstream.hits, 1);
  // A Content-Length over the limit is refused before the gate decides: nothing spent either.
  const declared = await http1(s.origin + '/premium', { method: 'POST', body: 'x'.repeat(100 * 1024), headers: { ...JSON_ACCEPT, authorization: b.auth } });
  assert.equal(declared.status, 413);
  assert.equal(s.upstream.hits, 1);
});

test('gRPC through nginx: a paid call with the spec\'s `token` metadata, lnd\'s `macaroon` metadata, or an L402 `authorization`, each served once', { skip }, async () => {
  const s = await startStack(cleanup);
  const client = grpcClient(s.h2Port);
  try {
    for (const form of ['token', 'macaroon', 'authorization'] as const) {
      s.grpcUp.reset();
      const e = (await client.getContent({ id: form }).then(() => assert.fail('unpaid call passed'), (err: unknown) => err)) as { code: number; metadata: { get(k: string): unknown[] } };
      assert.equal(e.code, 13, form);
      const m = /macaroon="([^"]+)", invoice="([^"]+)"/.exec(String(e.metadata.get('www-authenticate')[0]))!;
      const pre = s.wallet.pay(m[2]!).toString('hex');
      const meta = form === 'authorization' ? { authorization: `L402 ${m[1]}:${pre}` } : { [form]: encodeMacaroon(attenuate(decodeMacaroonBase64(m[1]!), `preimage=${pre}`)).toString('hex') };
      const res = await client.getContent({ id: form }, meta);
      assert.equal(res.id, form);
      assert.equal(s.grpcUp.calls, 1, form);
      const replay = (await client.getContent({ id: form }, meta).then(() => assert.fail('replayed call passed'), (err: unknown) => err)) as { code: number };
      assert.equal(replay.code, 16, `${form}: a replay is refused (unauthenticated), not served`);
      assert.equal(s.grpcUp.calls, 1, form);
    }
  } finally {
    client.close();
  }
});
