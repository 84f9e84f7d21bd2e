// Red team round 13d: time, limits and counters, through real nginx over HTTPS (one stack for the file). The
// Lightning backend is the development wallet behind a port that can make its invoices short-lived (a node that
// honours a shorter expiry than asked), so an invoice paid in its last second can be presented after it expired
// without waiting minutes. The wallet refuses to pay an expired invoice, as a node does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import http2 from 'node:http2';
import { Challenge } from 'mppx';
import { headerLines, httpsRequest, makeCert, paymentParams, type HttpsResult } from '../support/https-client.js';
import { Cleanup, freePort, http1, requireTool, startCountingUpstream, startNginx, type CountingUpstream } from './harness.js';
import { TEST_ROOT_KEY, writeSnippets } from './gate-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import type { LightningBackend } from '../../src/rails/lightning/backend.js';
import { sleep } from '../../src/util/timeout.js';

const nginxBin = requireTool('nginx');
const opensslBin = requireTool('openssl');
const skip = nginxBin && opensslBin ? false : 'nginx or openssl not installed';

// 10 sat a request on /paid (every scheme); a session route whose invoice rate limit allows one offer an hour.
const ROUTES = `lightning: { type: dev }
routes:
  - { match: /paid, amount_msat: 10000, schemes: [l402, mpp, x402] }
  - { match: /sess, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp] }
  - { match: /limited, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp], invoice_rate_limit: 1r/h }
`;
const PATHS = ['/paid', '/sess', '/limited'];

const cleanup = new Cleanup();
let ca: Buffer;
let up: CountingUpstream;
let origin: string;
/** l402d's own listener (as nginx reaches it). */
let gateOrigin: string;
let wallet: DevWallet;
/** Seconds the backend's next invoices live (undefined: as asked). */
let invoiceLife: number | undefined;

const get = (path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<HttpsResult> => httpsRequest(ca, origin + path, headers, { method });
const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** The Payment challenge of a 402, read by mppx's parser (the oracle), with its auth-params. */
function paymentChallenge(r: HttpsResult): { params: Record<string, string>; request: Record<string, string>; intent: string } {
  assert.equal(r.status, 402, r.body);
  const line = headerLines(r, 'www-authenticate').find((l) => /^Payment /.test(l));
  assert.ok(line, 'a Payment challenge');
  const c = Challenge.deserialize(line) as unknown as { intent: string; request: Record<string, string> };
  return { params: paymentParams(line), request: c.request, intent: c.intent };
}

/** A credential of the Payment scheme as the spec shapes it (the echoed challenge and a payload). */
function credential(p: Record<string, string>, payload: Record<string, string>): string {
  const challenge: Record<string, string> = { id: p.id!, realm: p.realm!, method: p.method!, intent: p.intent!, request: p.request! };
  if (p.expires) challenge.expires = p.expires;
  return `Payment ${b64url({ challenge, payload })}`;
}

/** `n` copies of one request sent at once as streams of one HTTP/2 connection (to make them race in l402d). */
async function h2Burst(path: string, headers: Record<string, string>, n: number): Promise<Array<{ status: number; www: string[]; body: string }>> {
  const session = http2.connect(origin, { ca });
  try {
    return await Promise.all(
      Array.from({ length: n }, () =>
        new Promise<{ status: number; www: string[]; body: string }>((resolve, reject) => {
          const s = session.request({ ':path': path, accept: 'application/json', ...headers });
          let status = 0;
          let www: string[] = [];
          const chunks: Buffer[] = [];
          s.on('response', (h) => {
            status = Number(h[':status']);
            const w = h['www-authenticate'];
            www = w === undefined ? [] : [w].flat().map(String);
          });
          s.on('data', (c: Buffer) => chunks.push(c));
          s.on('end', () => resolve({ status, www, body: Buffer.concat(chunks).toString() }));
          s.on('error', reject);
          s.setTimeout(15_000, () => s.close(http2.constants.NGHTTP2_CANCEL));
          s.end();
        }),
      ),
    );
  } finally {
    session.close();
  }
}

/** Waits (a few seconds at most) until the unix second `at` is past by a whole second. */
async function until(at: number): Promise<void> {
  for (let i = 0; i < 100 && Date.now() / 1000 < at + 1; i++) await sleep(100);
  assert.ok(Date.now() / 1000 >= at + 1, 'the invoice has expired');
}

before(async () => {
  if (skip) return;
  const dir = mkdtempSync(join(tmpdir(), 'l402-redteam-s13d-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const { cert, key } = makeCert(opensslBin!, dir);
  ca = readFileSync(cert);
  const gatePort = await freePort();
  gateOrigin = `http://127.0.0.1:${gatePort}`;
  const cfg = parseConfig(`listen: 127.0.0.1:${gatePort}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nlog: { level: warn }\n${ROUTES}`, { env: {} });
  wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  const backend: LightningBackend = {
    kind: 'dev',
    createInvoice: (r, s) => wallet.createInvoice({ ...r, expirySecs: invoiceLife === undefined ? r.expirySecs : Math.min(r.expirySecs, invoiceLife) }, s),
    lookupInvoice: (h, s) => wallet.lookupInvoice(h, s),
    payInvoice: (r, s) => wallet.payInvoice(r, s),
    describe: () => wallet.describe(),
    close: async () => {},
  };
  const gate = await startGate(cfg, { log: createLogger('warn', new PassThrough().resume()), backend });
  cleanup.add(() => gate.close());
  up = cleanup.use(await startCountingUpstream());
  const snippets = join(dir, 'snippets');
  writeSnippets(cfg, snippets);
  const inc = `include ${snippets}/protect.conf; include ${snippets}/payment-receipts.conf; include ${snippets}/balance.conf;`;
  const locations = PATHS.map((p) => `location ${p} { ${inc} proxy_pass http://127.0.0.1:${up.port}; }`).join('\n');
  const port = await freePort();
  cleanup.use(
    await startNginx({
      http: `include ${snippets}/upstream.conf;
    server { listen 127.0.0.1:${port} ssl http2; ssl_certificate ${cert}; ssl_certificate_key ${key}; include ${snippets}/server.conf;
      ${locations} }`,
    }),
  );
  origin = `https://127.0.0.1:${port}`;
});
after(() => cleanup.run());

// Found: an MPP charge or x402 payment is refused once its invoice has expired (`mpp_expired_invoice`,
// `x402_expired_invoice`), so an invoice paid in its last second, its credential arriving a second later, took the
// money and served nothing; L402's credential for the same kind of invoice is served (its expiry counts from the
// invoice's). A payment proven after its challenge expired is honoured for a grace period, once.
test('MPP and x402 payments made in their invoice\'s last second are served once when presented after it expired', { skip, timeout: 60_000 }, async () => {
  invoiceLife = 3;
  try {
    const t = await get('/paid');
    const mpp = paymentChallenge(t);
    assert.equal(mpp.intent, 'charge');
    const body = JSON.parse(t.body) as { macaroon: string; invoice: string };
    // The invoice L402 and MPP share, and x402's own, both paid while they can be.
    const preimage = wallet.pay(body.invoice).toString('hex');
    const pr = JSON.parse(Buffer.from(String(t.headers['payment-required']), 'base64').toString()) as { accepts: Array<{ scheme: string; network: string; extra: { invoice: string; expiresAt: number } }> };
    const a = pr.accepts[0]!;
    wallet.pay(a.extra.invoice);
    const x402 = Buffer.from(JSON.stringify({ x402Version: 2, scheme: a.scheme, network: a.network, payload: { invoice: a.extra.invoice }, accepted: a })).toString('base64');
    const mppCred = credential(mpp.params, { preimage });
    await until(Math.max(Date.parse(mpp.params.expires!) / 1000, a.extra.expiresAt));
    up.reset();
    const m = await get('/paid', { authorization: mppCred });
    assert.equal(m.status, 200, `MPP paid before expiry: ${m.body}`);
    const x = await get('/paid', { 'payment-signature': x402 });
    assert.equal(x.status, 200, `x402 paid before expiry: ${x.body}`);
    assert.equal(up.hits, 2);
    // Still one request each: the spent marks hold, and the L402 twin of the MPP payment is spent with it.
    assert.equal((await get('/paid', { authorization: mppCred })).status, 402);
    assert.equal((await get('/paid', { 'payment-signature': x402 })).status, 402);
    assert.equal((await get('/paid', { authorization: `L402 ${body.macaroon}:${preimage}` })).status, 401);
    assert.equal(up.hits, 2);
  } finally {
    invoiceLife = undefined;
  }
});

// The same for a session's deposit: an open whose deposit was paid in the invoice's last second was refused as
// `challenge-expired`, and the deposit credited nothing.
test('an MPP session deposit paid in its invoice\'s last second opens the session when presented after it expired', { skip, timeout: 60_000 }, async () => {
  invoiceLife = 3;
  let offer;
  try {
    offer = paymentChallenge(await get('/sess'));
  } finally {
    invoiceLife = undefined;
  }
  assert.equal(offer.intent, 'session');
  const preimage = wallet.pay(offer.request.depositInvoice!).toString('hex');
  const ret = wallet.createAmountlessInvoice({ memo: 'refund', expirySecs: 86_400 });
  const open = credential(offer.params, { action: 'open', preimage, returnInvoice: ret.bolt11 });
  await until(Date.parse(offer.params.expires!) / 1000);
  up.reset();
  const r = await get('/sess', { authorization: open });
  assert.equal(r.status, 200, `deposit paid before expiry: ${r.body}`);
  assert.equal(r.headers['x-l402-balance-msat'], '8000');
  assert.equal(up.hits, 1);
});

// Found: topUp and close are decided `management` (nothing minted, so not counted by invoice_rate_limit) and
// performed by the render; a close that lost a race to another close of the same session (or a topUp whose deposit
// another session took meanwhile) was then refused there with a fresh L402 challenge and a session offer, two
// invoices minted outside the limit. The render's refusal passes the limit as the decision's would.
test('concurrent closes of one session: the refused ones mint nothing past invoice_rate_limit', { skip, timeout: 60_000 }, async () => {
  const offer = paymentChallenge(await get('/limited'));
  const preimage = wallet.pay(offer.request.depositInvoice!).toString('hex');
  const ret = wallet.createAmountlessInvoice({ memo: 'refund', expirySecs: 86_400 });
  const opened = await get('/limited', { authorization: credential(offer.params, { action: 'open', preimage, returnInvoice: ret.bolt11 }) });
  assert.equal(opened.status, 200, opened.body);
  // The one offer of this hour is spent: every further refusal is 429, without an invoice.
  const limited = await get('/limited');
  assert.equal(limited.status, 429, limited.body);
  const close = credential(offer.params, { action: 'close', sessionId: offer.request.paymentHash!, preimage });
  const answers = await h2Burst('/limited', { authorization: close }, 24);
  const statuses = answers.map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 200).length, 1, `one close closes: ${statuses.join(',')}`);
  for (const r of answers) {
    if (r.status === 200) continue;
    const www = r.www;
    assert.equal(www.length, 0, `a refused close (${r.status}) offers no new invoice past the limit: ${www.join(' | ')}`);
    assert.doesNotMatch(r.body, /lnbcrt/, 'no invoice in the body');
  }
  // The render's side of that race, without depending on the timing: nginx asks for the render of a close that
  // the auth answer passed as `management`, and the session is closed by then.
  const render = await http1(gateOrigin + '/_l402/render', {
    headers: {
      accept: 'application/json',
      authorization: close,
      'x-original-uri': '/limited',
      'x-l402-uri': '/limited',
      'x-original-method': 'GET',
      'x-original-protocol': 'HTTP/2.0',
      'x-l402-scheme': 'https',
      'x-l402-host': origin.slice('https://'.length),
      'x-l402-client-addr': '127.0.0.1',
      'x-l402-request-id': '0123456789abcdef0123456789abcdef',
      'x-l402-outcome': 'management',
      'x-l402-reason': 'mpp_session_close',
    },
  });
  assert.equal(render.status, 429, render.body);
  assert.equal(render.headers['www-authenticate'], undefined);
  assert.doesNotMatch(render.body, /lnbcrt/);
});
