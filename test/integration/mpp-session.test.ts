// MPP's Lightning `session` intent (tempoxyz/mpp-specs draft-lightning-session-00) end to end through real
// nginx over HTTPS (a self-signed certificate made here with openssl), and through l402d itself in standalone
// mode with tls:. mppx has no Lightning session client, so the client here is written from the spec (its
// credential JSON built by hand from the challenge's auth-params), paying with the dev wallet, which also makes
// the amountless return invoice and shows what the refund paid. mppx's generic Payment-scheme parsers are the
// independent oracle for the challenge (Challenge.deserialize) and the receipts (Receipt.deserialize).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { Challenge, Receipt } from 'mppx';
import { headerLines, httpsRequest, makeCert, paymentParams, type HttpsResult } from '../support/https-client.js';
import { Cleanup, freePort, http1, requireTool, startCountingUpstream, startNginx, startRedis, type CountingUpstream } from './harness.js';
import { startGateProcess, withUpstream } from './gate-process.js';
import { waitFor } from '../support/waits.js';
import { TEST_ROOT_KEY, writeSnippets } from './gate-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { decodeBolt11 } from '../../src/rails/lightning/codecs/bolt11.js';
import { sleep } from '../../src/util/timeout.js';
import { l402d } from './revocation-fixture.js';

const nginxBin = requireTool('nginx');
const redisBin = requireTool('redis-server');
const opensslBin = requireTool('openssl');
const skip = nginxBin && opensslBin ? false : 'nginx or openssl not installed';
const TYPES = 'https://paymentauth.org/problems/lightning/';

// 2 sat a request, 10 sat a deposit; a plan of two routes; a route whose upstream refuses every connection
// in the same plan as one that answers (an unserved request's draw is given back).
const ROUTES = `lightning: { type: dev }
routes:
  - { match: /sess, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp] }
  - { match: /other, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp] }
  - { match: /plan-a, amount_msat: 1000, access: balance, balance_msat: 5000, plan: p, schemes: [l402, mpp] }
  - { match: /plan-b, amount_msat: 3000, access: balance, balance_msat: 5000, plan: p, schemes: [l402, mpp] }
  - { match: /fl-ok, amount_msat: 2000, access: balance, balance_msat: 10000, plan: fl, schemes: [l402, mpp] }
  - { match: /fl-dead, amount_msat: 2000, access: balance, balance_msat: 10000, plan: fl, schemes: [l402, mpp] }
  - { match: /idle, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp], session_idle_secs: 2 }
  - { id: pinsess, match: /pinsess, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp], pinned: true }
`;
const PATHS = ['/sess', '/other', '/plan-a', '/plan-b', '/fl-ok', '/idle'];

const cleanup = new Cleanup();
let dir: string;
let ca: Buffer;
let up: CountingUpstream;
let tlsOrigin: string;
let plainOrigin: string;
let cachedOrigin: string;
let wallet: DevWallet;
let configFile: string;

const get = (url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<HttpsResult> => httpsRequest(ca, url, headers, { method });
const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** What a 402 offers for a session, read by mppx's parser (the oracle) and checked against the spec. */
interface Offer {
  params: Record<string, string>;
  invoice: string;
  paymentHash: string;
}

function sessionOffer(r: HttpsResult): Offer {
  assert.equal(r.status, 402, r.body);
  assert.equal(r.headers['cache-control'], 'no-store');
  const www = headerLines(r, 'www-authenticate');
  assert.match(www[0]!, /^L402 macaroon="/, 'L402 stays first');
  const line = www.find((l) => /^Payment /.test(l));
  assert.ok(line, 'a Payment challenge beside L402');
  const c = Challenge.deserialize(line) as unknown as { method: string; intent: string; realm: string; id: string; expires: string; request: Record<string, string> };
  assert.equal(c.method, 'lightning');
  assert.equal(c.intent, 'session');
  const req = c.request;
  assert.equal(req.currency, 'sat');
  assert.match(req.amount!, /^[1-9][0-9]*$/);
  const inv = decodeBolt11(req.depositInvoice!);
  assert.equal(inv.paymentHash.toString('hex'), req.paymentHash, 'paymentHash is the deposit invoice\'s');
  assert.equal(String((inv.amountMsat ?? 0) / 1000), req.depositAmount, 'depositAmount is the invoice\'s amount');
  assert.ok(Date.parse(c.expires) > Date.now());
  return { params: paymentParams(line), invoice: req.depositInvoice!, paymentHash: req.paymentHash! };
}

/** The credential of draft-lightning-session-00 ("Credential Schema"): the echoed challenge and the action. */
function credential(p: Record<string, string>, payload: Record<string, string>): string {
  const challenge: Record<string, string> = { id: p.id!, realm: p.realm!, method: p.method!, intent: p.intent!, request: p.request! };
  if (p.expires) challenge.expires = p.expires;
  return `Payment ${b64url({ challenge, payload })}`;
}

/** A spec client's session: opened from a paid deposit, then bearer, topUp and close. */
class Session {
  constructor(
    readonly id: string,
    readonly preimage: string,
    readonly offer: Offer,
    readonly returnHash: Buffer,
  ) {}
  bearer(): string {
    return credential(this.offer.params, { action: 'bearer', sessionId: this.id, preimage: this.preimage });
  }
  close(): string {
    return credential(this.offer.params, { action: 'close', sessionId: this.id, preimage: this.preimage });
  }
}

async function open(origin: string, path: string): Promise<{ s: Session; opened: HttpsResult; openCred: string }> {
  const offer = sessionOffer(await get(origin + path));
  const preimage = wallet.pay(offer.invoice).toString('hex');
  const ret = wallet.createAmountlessInvoice({ memo: 'refund', expirySecs: 86_400 });
  const openCred = credential(offer.params, { action: 'open', preimage, returnInvoice: ret.bolt11 });
  const opened = await get(origin + path, { authorization: openCred });
  return { s: new Session(offer.paymentHash, preimage, offer, ret.paymentHash), opened, openCred };
}

/** A topUp for `s`: a fresh challenge from an unauthenticated request, its deposit paid. */
async function topUp(origin: string, path: string, s: Session): Promise<string> {
  const offer = sessionOffer(await get(origin + path));
  const topUpPreimage = wallet.pay(offer.invoice).toString('hex');
  return credential(offer.params, { action: 'topUp', sessionId: s.id, topUpPreimage });
}

/** A refusal as the spec has it: 402, the problem type, and a fresh session challenge. */
function assertRefused(r: HttpsResult, type: string): Record<string, unknown> {
  sessionOffer(r);
  const p = JSON.parse(r.body) as Record<string, unknown>;
  assert.equal(p.type, TYPES + type, r.body);
  assert.equal(p.status, 402);
  return p;
}

function receiptOf(r: HttpsResult): Record<string, unknown> {
  const v = r.headers['payment-receipt'];
  assert.equal(typeof v, 'string', 'a Payment-Receipt');
  return Receipt.deserialize(v as string) as unknown as Record<string, unknown>;
}

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'l402-mpps-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const { cert, key } = makeCert(opensslBin!, dir);
  ca = readFileSync(cert);
  const gatePort = await freePort();
  const yaml = `listen: 127.0.0.1:${gatePort}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nlog: { level: warn }\n${ROUTES}`;
  configFile = join(dir, 'l402.yaml');
  writeFileSync(configFile, yaml);
  const cfg = parseConfig(yaml, { env: {} });
  const gate = await startGate(cfg, { log: createLogger('warn', new PassThrough().resume()) });
  cleanup.add(() => gate.close());
  wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  up = cleanup.use(await startCountingUpstream());
  const snippets = join(dir, 'snippets');
  writeSnippets(cfg, snippets);
  const inc = (p: string) => `include ${snippets}/protect.conf; include ${snippets}/payment-receipts.conf; include ${snippets}/balance.conf;`;
  const locations =
    PATHS.map((p) => `location ${p} { ${inc(p)} proxy_pass http://127.0.0.1:${up.port}; }`).join('\n') +
    // An upstream that refuses every connection: nginx's own 502 after the gate let the request through.
    `\nlocation /fl-dead { ${inc('/fl-dead')} proxy_pass http://127.0.0.1:1; }` +
    // A route found only through the pin its location sets (pinned: true is never found by path).
    `\nlocation /pinsess { set $l402_route_pin pinsess; ${inc('/pinsess')} proxy_pass http://127.0.0.1:${up.port}; }`;
  const tlsPort = await freePort();
  const plainPort = await freePort();
  const cachedPort = await freePort();
  cleanup.use(
    await startNginx({
      http: `include ${snippets}/upstream.conf;
    server { listen 127.0.0.1:${tlsPort} ssl; ssl_certificate ${cert}; ssl_certificate_key ${key}; include ${snippets}/server.conf;
      ${locations} }
    server { listen 127.0.0.1:${cachedPort} ssl; ssl_certificate ${cert}; ssl_certificate_key ${key};
      # An operator's caching headers for the whole server.
      expires 1h; add_header Cache-Control "public, max-age=600" always;
      include ${snippets}/server.conf;
      ${locations} }
    server { listen 127.0.0.1:${plainPort}; include ${snippets}/server.conf;
      ${locations} }`,
    }),
  );
  tlsOrigin = `https://127.0.0.1:${tlsPort}`;
  cachedOrigin = `https://127.0.0.1:${cachedPort}`;
  plainOrigin = `http://127.0.0.1:${plainPort}`;
});
after(() => cleanup.run());

test('open, bearer draws with the balance told, top-up (credited once), close refunds the unspent part once; nothing after close', { skip }, async () => {
  up.reset();
  const { s, opened, openCred } = await open(tlsOrigin, '/sess');
  // open serves the request and draws its price: 10 sat deposit, 2 sat drawn.
  assert.equal(opened.status, 200, opened.body);
  assert.equal(opened.headers['x-l402-balance-msat'], '8000');
  const r0 = receiptOf(opened);
  assert.equal(r0.method, 'lightning');
  assert.equal(r0.reference, s.id);
  assert.equal(r0.status, 'success');
  assert.equal(up.hits, 1);
  assert.equal(up.requests[0]!.headers.authorization, undefined, 'the session credential stays at the gate');
  assert.equal(up.requests[0]!.headers['x-l402-token-id'], s.id);
  // Bearer: each request draws 2 sat until the balance cannot cover one more.
  for (const left of ['6000', '4000', '2000', '0']) {
    const r = await get(tlsOrigin + '/sess', { authorization: s.bearer() });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['x-l402-balance-msat'], left);
    assert.equal(receiptOf(r).reference, s.id);
  }
  assertRefused(await get(tlsOrigin + '/sess', { authorization: s.bearer() }), 'insufficient-balance');
  assert.equal(up.hits, 5);
  // The open credential again (a replay): credits nothing, so it is refused like a bearer on an empty balance.
  assertRefused(await get(tlsOrigin + '/sess', { authorization: openCred }), 'insufficient-balance');
  // topUp: answered by the gate itself (200 {"status":"ok"}), never by the upstream; a replay credits once.
  const t = await topUp(tlsOrigin, '/sess', s);
  for (let i = 0; i < 2; i++) {
    const r = await get(tlsOrigin + '/sess', { authorization: t }, 'POST');
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(JSON.parse(r.body), { status: 'ok' });
    assert.equal(r.headers['x-l402-balance-msat'], '10000', 'credited once');
    assert.equal(receiptOf(r).reference, s.id);
  }
  assert.equal(up.hits, 5, 'management never reaches the upstream');
  const after1 = await get(tlsOrigin + '/sess', { authorization: s.bearer() });
  assert.equal(after1.status, 200);
  assert.equal(after1.headers['x-l402-balance-msat'], '8000');
  // close: 8 sat unspent, paid to the return invoice bound at open (the dev wallet says how much).
  const c = await get(tlsOrigin + '/sess', { authorization: s.close() });
  assert.equal(c.status, 200, c.body);
  assert.deepEqual(JSON.parse(c.body), { status: 'closed', refundSats: 8, refundStatus: 'succeeded' });
  const rc = receiptOf(c);
  assert.equal(rc.reference, s.id);
  assert.equal(rc.refundSats, 8);
  assert.equal(rc.refundStatus, 'succeeded');
  assert.equal(wallet.paidMsat(s.returnHash), 8000);
  assert.equal(up.hits, 6);
  // close twice refunds once (the second is refused, saying what the first paid); nothing else after close.
  const again = assertRefused(await get(tlsOrigin + '/sess', { authorization: s.close() }), 'session-closed');
  assert.equal(again.refundSats, 8);
  assertRefused(await get(tlsOrigin + '/sess', { authorization: s.bearer() }), 'session-closed');
  assertRefused(await get(tlsOrigin + '/sess', { authorization: openCred }), 'session-closed');
  assertRefused(await get(tlsOrigin + '/sess', { authorization: await topUp(tlsOrigin, '/sess', s) }), 'session-closed');
  assert.equal(wallet.paidMsat(s.returnHash), 8000);
  assert.equal(up.hits, 6);
});

test('a pinned session route: open, topUp and close are decided and performed on the route its location pinned', { skip }, async () => {
  up.reset();
  const { s, opened } = await open(tlsOrigin, '/pinsess');
  assert.equal(opened.status, 200, opened.body);
  assert.equal(opened.headers['x-l402-balance-msat'], '8000');
  const t = await topUp(tlsOrigin, '/pinsess', s);
  const r = await get(tlsOrigin + '/pinsess', { authorization: t }, 'POST');
  assert.equal(r.status, 200, r.body);
  assert.equal(r.headers['x-l402-balance-msat'], '18000');
  const c = await get(tlsOrigin + '/pinsess', { authorization: s.close() });
  assert.equal(c.status, 200, c.body);
  assert.deepEqual(JSON.parse(c.body), { status: 'closed', refundSats: 18, refundStatus: 'succeeded' });
  assert.equal(assertRefused(await get(tlsOrigin + '/pinsess', { authorization: s.close() }), 'session-closed').refundSats, 18);
  assert.equal(up.hits, 1);
});

test('a session is refused on another route; a plan\'s session draws on every route of its plan; nobody draws another\'s session', { skip }, async () => {
  const { s, opened } = await open(tlsOrigin, '/plan-a');
  assert.equal(opened.headers['x-l402-balance-msat'], '4000');
  const b = await get(tlsOrigin + '/plan-b', { authorization: s.bearer() });
  assert.equal(b.status, 200, b.body);
  assert.equal(b.headers['x-l402-balance-msat'], '1000', 'plan-b draws its own price from the plan\'s session');
  // Another route (not of the plan): no such session there, and its close refunds nothing.
  up.reset();
  assertRefused(await get(tlsOrigin + '/sess', { authorization: s.bearer() }), 'session-not-found');
  assertRefused(await get(tlsOrigin + '/sess', { authorization: s.close() }), 'session-not-found');
  // Someone who knows the session id (a payment hash) but not its preimage; a made-up session.
  const wrong = credential(s.offer.params, { action: 'bearer', sessionId: s.id, preimage: randomBytes(32).toString('hex') });
  const w1 = await get(tlsOrigin + '/plan-a', { authorization: wrong });
  assertRefused(w1, 'invalid-preimage');
  // The same refused credential again gets the same offers for a few seconds (no new deposit invoice per copy).
  const w2 = await get(tlsOrigin + '/plan-a', { authorization: wrong });
  assert.deepEqual(headerLines(w2, 'www-authenticate'), headerLines(w1, 'www-authenticate'));
  const pre = randomBytes(32);
  const madeUp = credential(s.offer.params, { action: 'close', sessionId: createHash('sha256').update(pre).digest('hex'), preimage: pre.toString('hex') });
  assertRefused(await get(tlsOrigin + '/plan-a', { authorization: madeUp }), 'session-not-found');
  assert.equal(up.hits, 0);
  // A challenge minted for one route or plan opens no session on another (its id binds the route or plan).
  const offer = sessionOffer(await get(tlsOrigin + '/plan-a'));
  const preimage = wallet.pay(offer.invoice).toString('hex');
  const ret = wallet.createAmountlessInvoice({ memo: 'r', expirySecs: 3600 });
  const o = credential(offer.params, { action: 'open', preimage, returnInvoice: ret.bolt11 });
  assertRefused(await get(tlsOrigin + '/sess', { authorization: o }), 'unknown-challenge');
  // A return invoice with an amount, or an expired one, is refused at open (nothing credited: it opens later).
  const priced = await wallet.createInvoice({ amountMsat: 1000, memo: 'r', expirySecs: 3600 });
  assertRefused(await get(tlsOrigin + '/plan-a', { authorization: credential(offer.params, { action: 'open', preimage, returnInvoice: priced.bolt11 }) }), 'invalid-return-invoice');
  // Any route of the plan takes it (another method and path of the same balance).
  const ok = await get(tlsOrigin + '/plan-b', { authorization: o }, 'POST');
  assert.equal(ok.status, 200, ok.body);
  assert.equal(ok.headers['x-l402-balance-msat'], '2000');
  // One deposit pays one session: the open deposit presented as a top-up of another session credits nothing.
  const stolen = credential(offer.params, { action: 'topUp', sessionId: s.id, topUpPreimage: preimage });
  assertRefused(await get(tlsOrigin + '/plan-a', { authorization: stolen }), 'unknown-challenge');
  // The close refunds what is left, to the invoice bound at open only.
  const c = await get(tlsOrigin + '/plan-b', { authorization: s.close() });
  assert.deepEqual(JSON.parse(c.body), { status: 'closed', refundSats: 1, refundStatus: 'succeeded' });
  assert.equal(wallet.paidMsat(s.returnHash), 1000);
  assert.equal(up.hits, 1);
});

test('malformed and forged session credentials get the spec\'s 402 with fresh challenges, never a 5xx; nothing reaches the upstream', { skip }, async () => {
  const { s } = await open(tlsOrigin, '/sess');
  up.reset();
  const p = s.offer.params;
  const cases: Array<[string, string]> = [
    ['Payment !!!', 'malformed-credential'],
    [`Payment ${b64url({ challenge: { id: p.id }, payload: { action: 'bearer' } })}`, 'malformed-credential'],
    [credential(p, { action: 'bearer', sessionId: s.id.toUpperCase(), preimage: s.preimage }), 'malformed-credential'],
    [credential(p, { action: 'teleport', sessionId: s.id, preimage: s.preimage }), 'malformed-credential'],
    [`Payment ${'A'.repeat(7000)}`, 'malformed-credential'],
    // Another realm in the echo: not a challenge of ours.
    [credential({ ...p, realm: 'elsewhere' }, { action: 'bearer', sessionId: s.id, preimage: s.preimage }), 'unknown-challenge'],
    // The open deposit's own preimage as a topUp of its session.
    [credential(p, { action: 'topUp', sessionId: s.id, topUpPreimage: s.preimage }), 'invalid-preimage'],
    // A topUp echoing a challenge whose request was changed (the id no longer verifies).
    [credential({ ...p, request: p.request!.slice(0, -2) + 'xx' }, { action: 'topUp', sessionId: s.id, topUpPreimage: randomBytes(32).toString('hex') }), 'unknown-challenge'],
  ];
  for (const [authorization, type] of cases) {
    const r = await get(tlsOrigin + '/sess', { authorization });
    assert.ok(r.status < 500, `${type}: ${r.status}`);
    assertRefused(r, type);
  }
  // A credential of the charge intent (no payload.action) on a session route.
  const charge = `Payment ${b64url({ challenge: { id: p.id, realm: p.realm, method: 'lightning', intent: 'charge', request: p.request, expires: p.expires }, payload: { preimage: s.preimage } })}`;
  assertRefused(await get(tlsOrigin + '/sess', { authorization: charge }), 'malformed-credential');
  assert.equal(up.hits, 0);
  // The session itself is untouched: 4 requests' worth left.
  const b = await get(tlsOrigin + '/sess', { authorization: s.bearer() });
  assert.equal(b.headers['x-l402-balance-msat'], '6000');
});

test('over plain HTTP no session is offered and no session credential is read', { skip }, async () => {
  const { s } = await open(tlsOrigin, '/other');
  up.reset();
  const r = await http1(`${plainOrigin}/other`, { headers: { authorization: s.bearer(), accept: 'application/json' } });
  assert.notEqual(r.status, 200);
  assert.ok(r.status < 500, `${r.status}`);
  const www = ([] as string[]).concat(r.headers['www-authenticate'] ?? []);
  assert.ok(www.every((l) => !/^Payment/.test(l)), 'no Payment challenge over plain HTTP');
  const fresh = await http1(`${plainOrigin}/other`, { headers: { accept: 'application/json' } });
  assert.equal(fresh.status, 402);
  assert.ok(([] as string[]).concat(fresh.headers['www-authenticate'] ?? []).every((l) => !/^Payment/.test(l)));
  assert.equal(up.hits, 0);
  // The session is untouched (8 sat left after its open): its close over HTTPS refunds all of it.
  const c = await get(tlsOrigin + '/other', { authorization: s.close() });
  assert.deepEqual(JSON.parse(c.body), { status: 'closed', refundSats: 8, refundStatus: 'succeeded' });
});

test('concurrent bearer draws never overdraw a session (a storm of 16 on 4 requests\' worth)', { skip }, async () => {
  const { s, opened } = await open(tlsOrigin, '/sess');
  assert.equal(opened.headers['x-l402-balance-msat'], '8000');
  up.reset();
  const rs = await Promise.all(Array.from({ length: 16 }, () => get(tlsOrigin + '/sess', { authorization: s.bearer() })));
  const ok = rs.filter((r) => r.status === 200);
  assert.equal(ok.length, 4, rs.map((r) => r.status).join(','));
  for (const r of rs.filter((x) => x.status !== 200)) assertRefused(r, 'insufficient-balance');
  assert.deepEqual(ok.map((r) => r.headers['x-l402-balance-msat']).sort(), ['0', '2000', '4000', '6000']);
  assert.equal(up.hits, 4);
  const c = await get(tlsOrigin + '/sess', { authorization: s.close() });
  assert.deepEqual(JSON.parse(c.body), { status: 'closed', refundSats: 0, refundStatus: 'skipped' });
  assert.equal(wallet.paidMsat(s.returnHash), undefined, 'nothing to refund: no payment attempted');
});

test('storm across two l402d processes on one Redis: concurrent bearer draws never overdraw, and draws plus the refund are the deposit', { skip: skip || (!redisBin && 'redis-server not installed'), timeout: 120_000 }, async () => {
  const sdir = join(dir, 'two');
  const redis = cleanup.use(await startRedis());
  const site = cleanup.use(await startCountingUpstream());
  const routes = `lightning: { type: dev }
routes:
  - { match: /api/a, amount_msat: 3000, access: balance, balance_msat: 150000, plan: api, schemes: [l402, mpp] }
  - { match: /api/b, amount_msat: 7000, access: balance, balance_msat: 150000, plan: api, schemes: [l402, mpp] }
`;
  // One data dir (the dev wallet is one SQLite file, safe across processes), one Redis store.
  const ports = [await freePort(), await freePort()];
  const gates: Array<{ output(): string }> = [];
  for (const [i, port] of ports.entries()) {
    const file = join(dir, `two-${i}.yaml`);
    writeFileSync(file, `listen: 127.0.0.1:${port}\ndata_dir: ${sdir}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: redis, url: "${redis.url}" }\nlog: { level: info }\n${routes}`);
    gates.push(cleanup.use(await startGateProcess(file, port)));
  }
  const snippets = join(dir, 'two-snippets');
  writeSnippets(parseConfig(`lightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n`, { env: {} }), snippets);
  const port = await freePort();
  cleanup.use(
    await startNginx({
      workers: 2,
      http: `${withUpstream(snippets, `server 127.0.0.1:${ports[0]}; server 127.0.0.1:${ports[1]}; keepalive 16;`)}
      server { listen 127.0.0.1:${port} ssl; ssl_certificate ${join(dir, 'cert.pem')}; ssl_certificate_key ${join(dir, 'key.pem')}; include ${snippets}/server.conf;
        location /api/ { include ${snippets}/protect.conf; include ${snippets}/payment-receipts.conf; include ${snippets}/balance.conf; proxy_pass http://127.0.0.1:${site.port}; } }`,
    }),
  );
  const origin = `https://127.0.0.1:${port}`;
  const w = DevWallet.open(sdir);
  cleanup.add(() => w.close());
  const offer = sessionOffer(await get(origin + '/api/a'));
  const preimage = w.pay(offer.invoice).toString('hex');
  const ret = w.createAmountlessInvoice({ memo: 'refund', expirySecs: 3600 });
  const opened = await get(origin + '/api/a', { authorization: credential(offer.params, { action: 'open', preimage, returnInvoice: ret.bolt11 }) });
  assert.equal(opened.status, 200, opened.body);
  const s = new Session(offer.paymentHash, preimage, offer, ret.paymentHash);
  // Enough draws on a deposit large enough that each process wins some under any load, and more than it holds.
  const paths = Array.from({ length: 60 }, (_, i) => (i % 3 === 0 ? '/api/b' : '/api/a'));
  const rs = await Promise.all(paths.map((p) => get(origin + p, { authorization: s.bearer() })));
  for (const r of rs) if (r.status !== 200) assertRefused(r, 'insufficient-balance');
  const drawn = 3000 + rs.reduce((a, r, i) => a + (r.status === 200 ? (paths[i] === '/api/b' ? 7000 : 3000) : 0), 0);
  assert.ok(drawn <= 150000, `never overdrawn: ${drawn}`);
  assert.ok(rs.some((r) => r.status !== 200), 'the storm asked for more than the deposit');
  assert.equal(site.hits, 1 + rs.filter((r) => r.status === 200).length, 'the upstream saw exactly the paid requests');
  const c = await get(origin + '/api/b', { authorization: s.close() });
  assert.equal(c.status, 200, c.body);
  const refundSats = (JSON.parse(c.body) as { refundSats: number }).refundSats;
  assert.equal(drawn + refundSats * 1000, 150000, `every draw accounted for: drawn ${drawn}, refunded ${refundSats} sat`);
  assert.equal(w.paidMsat(ret.paymentHash) ?? 0, refundSats * 1000);
  // Both processes decided some of the draws (the store, not one process, kept the count). Their logs are
  // written asynchronously: wait (bounded) for the lines to arrive, then check them.
  await waitFor('a decision line from each l402d', () => gates.every((g) => /"outcome":"allow"/.test(g.output())), { timeoutMs: 5_000 }).catch(() => undefined);
  for (const g of gates) assert.match(g.output(), /"outcome":"allow"/);
});

test('a request the upstream did not serve gives its draw back to the session', { skip }, async () => {
  const { s, opened } = await open(tlsOrigin, '/fl-ok');
  assert.equal(opened.headers['x-l402-balance-msat'], '8000');
  const dead = await get(tlsOrigin + '/fl-dead', { authorization: s.bearer() });
  assert.equal(dead.status, 502, dead.body);
  assert.equal((JSON.parse(dead.body) as { payment: string }).payment, 'not_consumed');
  const r = await get(tlsOrigin + '/fl-ok', { authorization: s.bearer() });
  assert.equal(r.headers['x-l402-balance-msat'], '6000', 'the unserved request\'s draw came back');
});

test('an idle session is closed by the server with its refund (session_idle_secs, told as idleTimeout); nothing after', { skip }, async () => {
  const r402 = await get(tlsOrigin + '/idle');
  sessionOffer(r402);
  const c = Challenge.deserialize(headerLines(r402, 'www-authenticate').find((l) => /^Payment /.test(l))!) as unknown as { request: Record<string, string> };
  assert.equal(c.request.idleTimeout, '2');
  const { s, opened } = await open(tlsOrigin, '/idle');
  assert.equal(opened.status, 200, opened.body);
  assert.equal(opened.headers['x-l402-balance-msat'], '8000');
  // Bounded wait for the server's close (2 s idle; l402d looks every second): no timing asserted.
  for (let i = 0; i < 100 && wallet.paidMsat(s.returnHash) === undefined; i++) await sleep(100);
  assert.equal(wallet.paidMsat(s.returnHash), 8000, 'the unspent part refunded by the server-initiated close');
  assertRefused(await get(tlsOrigin + '/idle', { authorization: s.bearer() }), 'session-closed');
  const again = assertRefused(await get(tlsOrigin + '/idle', { authorization: s.close() }), 'session-closed');
  assert.deepEqual([again.refundSats, again.refundStatus], [8, 'succeeded']);
  assert.equal(wallet.paidMsat(s.returnHash), 8000);
});

test('an idle session served before a restart is closed with its refund by the next process (it watches recent sessions from the sales)', { skip }, async () => {
  const rdir = join(dir, 'restart');
  const sup = cleanup.use(await startCountingUpstream());
  const yaml = (port: number) => `listen: 127.0.0.1:${port}\ndata_dir: ${rdir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${sup.port}\ntls: { cert_file: ${join(dir, 'cert.pem')}, key_file: ${join(dir, 'key.pem')} }\nlog: { level: warn }
lightning: { type: dev }
routes:
  - { match: /idle, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp], session_idle_secs: 3 }
`;
  const p1 = await freePort();
  const g1 = await startGate(parseConfig(yaml(p1), { env: {} }), { log: createLogger('warn', new PassThrough().resume()) });
  const w = DevWallet.open(rdir);
  cleanup.add(() => w.close());
  const origin1 = `https://127.0.0.1:${p1}`;
  const offer = sessionOffer(await get(origin1 + '/idle'));
  const preimage = w.pay(offer.invoice).toString('hex');
  const ret = w.createAmountlessInvoice({ memo: 'refund', expirySecs: 3600 });
  const opened = await get(origin1 + '/idle', { authorization: credential(offer.params, { action: 'open', preimage, returnInvoice: ret.bolt11 }) });
  assert.equal(opened.status, 200, opened.body);
  // The process that served it stops before the session is idle: nothing refunded yet.
  await g1.close();
  assert.equal(w.paidMsat(ret.paymentHash), undefined);
  const p2 = await freePort();
  const g2 = await startGate(parseConfig(yaml(p2), { env: {} }), { log: createLogger('warn', new PassThrough().resume()) });
  cleanup.add(() => g2.close());
  // No client request: the new process finds the session among the recent sales and closes it once idle.
  for (let i = 0; i < 150 && w.paidMsat(ret.paymentHash) === undefined; i++) await sleep(100);
  assert.equal(w.paidMsat(ret.paymentHash), 8000);
  const s = new Session(offer.paymentHash, preimage, offer, ret.paymentHash);
  assertRefused(await get(`https://127.0.0.1:${p2}/idle`, { authorization: s.bearer() }), 'session-closed');
});

test('l402d token revoke <session id>: the session opens nothing more; its close still refunds', { skip }, async () => {
  const { s, opened } = await open(tlsOrigin, '/other');
  assert.equal(opened.status, 200);
  const r = await l402d(['token', 'revoke', s.id, '--config', configFile]);
  assert.equal(r.code, 0, r.stderr);
  // Every process refuses it within a second of the revocation (bounded poll, no timing assertion).
  let refused: HttpsResult | undefined;
  let served = 0;
  for (let i = 0; i < 50 && !refused; i++) {
    const b = await get(tlsOrigin + '/other', { authorization: s.bearer() });
    if (b.status !== 200) refused = b;
    else {
      served++;
      await sleep(100);
    }
  }
  assert.ok(served <= 4);
  assert.ok(refused, 'refused after the revocation');
  assert.equal((JSON.parse(refused.body) as { reason: string }).reason, 'revoked');
  const t = await get(tlsOrigin + '/other', { authorization: await topUp(tlsOrigin, '/other', s) });
  assert.equal((JSON.parse(t.body) as { reason: string }).reason, 'revoked', 'no topUp into a revoked session');
  const c = await get(tlsOrigin + '/other', { authorization: s.close() });
  assert.equal(c.status, 200, c.body);
  assert.equal((JSON.parse(c.body) as { refundSats: number }).refundSats, 8 - 2 * served);
  assert.equal(wallet.paidMsat(s.returnHash) ?? 0, (8 - 2 * served) * 1000);
});

test('standalone mode with tls: l402d itself offers the session, draws, tops up and closes with the refund', { skip }, async () => {
  const sup = cleanup.use(await startCountingUpstream());
  const port = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${sup.port}\ntls: { cert_file: ${join(dir, 'cert.pem')}, key_file: ${join(dir, 'key.pem')} }\nlog: { level: warn }\n${ROUTES}`,
    { env: {}, baseDir: join(dir, 'standalone') },
  );
  const g = await startGate(cfg, { log: createLogger('warn', new PassThrough().resume()) });
  cleanup.add(() => g.close());
  const origin = `https://127.0.0.1:${port}`;
  const { s, opened } = await open(origin, '/sess');
  assert.equal(opened.status, 200, opened.body);
  assert.equal(opened.headers['x-l402-balance-msat'], '8000');
  assert.equal(receiptOf(opened).reference, s.id);
  assert.equal(sup.requests[0]!.headers.authorization, undefined);
  const b = await get(origin + '/sess', { authorization: s.bearer() });
  assert.equal(b.headers['x-l402-balance-msat'], '6000');
  const t = await get(origin + '/sess', { authorization: await topUp(origin, '/sess', s) });
  assert.equal(t.status, 200, t.body);
  assert.deepEqual(JSON.parse(t.body), { status: 'ok' });
  assert.equal(t.headers['x-l402-balance-msat'], '16000');
  assertRefused(await get(origin + '/other', { authorization: s.bearer() }), 'session-not-found');
  const c = await get(origin + '/sess', { authorization: s.close() });
  assert.deepEqual(JSON.parse(c.body), { status: 'closed', refundSats: 16, refundStatus: 'succeeded' });
  assert.equal(receiptOf(c).refundStatus, 'succeeded');
  assert.equal(wallet.paidMsat(s.returnHash), 16000);
  assertRefused(await get(origin + '/sess', { authorization: s.close() }), 'session-closed');
  assertRefused(await get(origin + '/sess', { authorization: s.bearer() }), 'session-closed');
  assert.equal(sup.hits, 2);
  // Plain HTTP to the same routes: no session offered (a second listener without tls:).
  const plainPort = await freePort();
  const pcfg = parseConfig(`listen: 127.0.0.1:${plainPort}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${sup.port}\nlog: { level: warn }\n${ROUTES}`, { env: {}, baseDir: join(dir, 'standalone-plain') });
  const pg = await startGate(pcfg, { log: createLogger('warn', new PassThrough().resume()) });
  cleanup.add(() => pg.close());
  const pr = await http1(`http://127.0.0.1:${plainPort}/sess`, { headers: { authorization: s.bearer(), accept: 'application/json' } });
  assert.notEqual(pr.status, 200);
  assert.ok(([] as string[]).concat(pr.headers['www-authenticate'] ?? []).every((l) => !/^Payment/.test(l)));
  assert.equal(sup.hits, 2);
});

test('under a server-level expires and add_header Cache-Control, the gate\'s topUp and close answers (200) keep Cache-Control: no-store', { skip }, async () => {
  // Offers and the open through the plain TLS server; the management requests through the operator's.
  const { s, opened } = await open(tlsOrigin, '/other');
  assert.equal(opened.status, 200, opened.body);
  const notStorable = (what: string, r: HttpsResult) => {
    const cc = String(r.headers['cache-control'] ?? '');
    assert.match(cc, /(^|,\s*)no-store(\s*,|$)/, `${what}: Cache-Control "${cc}"`);
    assert.doesNotMatch(cc, /max-age=3600/, `${what}: the operator's expires replaced the gate's Cache-Control`);
    assert.equal(r.headers.expires, undefined, `${what}: an Expires header`);
  };
  const t = await get(cachedOrigin + '/other', { authorization: await topUp(tlsOrigin, '/other', s) }, 'POST');
  assert.equal(t.status, 200, t.body);
  assert.deepEqual(JSON.parse(t.body), { status: 'ok' });
  notStorable('topUp', t);
  const c = await get(cachedOrigin + '/other', { authorization: s.close() });
  assert.equal(c.status, 200, c.body);
  assert.equal((JSON.parse(c.body) as { status: string }).status, 'closed');
  notStorable('close', c);
});
