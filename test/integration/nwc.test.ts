// NWC (NIP-47) backend against a real Nostr relay and a real NIP-47 wallet service (test/peers/nwc-peer.ts),
// and once end to end through real nginx. Every wait is bounded; every relay, socket and wallet is closed.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { inspect } from 'node:util';
import { PassThrough } from 'node:stream';
import { NostrRelay } from 'snstr/utils/ephemeral-relay';
import { startNwcPeer, type NwcPeer, type NwcPeerOptions } from '../peers/nwc-peer.js';
import { createNwcBackend, nwcConfigSchema, NwcWalletError } from '../../src/rails/lightning/nwc/nwc.js';
import { BackendCallError, type BackendContext, type LightningBackend } from '../../src/rails/lightning/backend.js';
import { createLogger } from '../../src/util/log.js';
import { parseConfig, ConfigError } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { Cleanup, freePort, http1, requireTool } from './harness.js';
import { startStack, TEST_ROOT_KEY } from './gate-fixture.js';
import { sleep } from '../../src/util/timeout.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

/** Every log line any backend wrote in this file, to check no secret ever reaches the logs. */
const logLines: string[] = [];
/** Every client secret used in this file. */
const secrets: string[] = [];

function context(timeoutMs = 3000): BackendContext {
  const sink = new PassThrough();
  sink.on('data', (b: Buffer) => logLines.push(b.toString()));
  return { configDir: process.cwd(), dataDir: process.cwd(), log: createLogger('debug', sink), timeoutMs };
}

async function peer(opts: NwcPeerOptions = {}): Promise<NwcPeer> {
  const p = await startNwcPeer(opts);
  cleanup.add(() => p.close(), 'nwc peer');
  secrets.push(p.clientSecretHex);
  return p;
}

async function backendFor(uri: string, timeoutMs = 3000): Promise<LightningBackend> {
  const b = await createNwcBackend(nwcConfigSchema.parse({ type: 'nwc', uri }), context(timeoutMs));
  cleanup.add(() => b.close(), 'nwc backend');
  return b;
}

function sha256(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof Error);
    return e;
  }
  assert.fail('expected a rejection');
}

/** Errors collected from every failure mode below; none may carry a secret. */
const errors: Error[] = [];
async function expectBackendError(p: Promise<unknown>, re: RegExp): Promise<BackendCallError> {
  const e = await rejection(p);
  errors.push(e);
  assert.ok(e instanceof BackendCallError, `expected BackendCallError, got ${inspect(e)}`);
  assert.match(e.message, re);
  return e;
}

async function roundTrip(p: NwcPeer, b: LightningBackend): Promise<void> {
  const inv = await b.createInvoice({ amountMsat: 21_000, memo: 'nwc test', expirySecs: 600 });
  assert.match(inv.bolt11, /^lnbcrt210n1/);
  assert.equal(inv.paymentHash.length, 32);
  assert.ok(Math.abs(inv.expiresAt - (Date.now() / 1000 + 600)) < 30);
  assert.deepEqual(await b.lookupInvoice!(inv.paymentHash), { state: 'open' });
  const preimage = p.settle(inv.bolt11);
  const st = await b.lookupInvoice!(inv.paymentHash);
  assert.equal(st.state, 'settled');
  assert.ok(st.state === 'settled' && st.preimage.equals(preimage) && sha256(st.preimage).equals(inv.paymentHash));
  assert.deepEqual(await b.lookupInvoice!(randomBytes(32)), { state: 'unknown' }, 'NOT_FOUND maps to unknown');
}

test('NIP-44 v2 wallet: make_invoice → lookup open → settle → lookup settled with a verified preimage', async () => {
  const p = await peer();
  const b = await backendFor(p.uri);
  assert.equal(b.kind, 'nwc');
  await roundTrip(p, b);
  assert.ok(p.seen.length >= 5);
  assert.ok(p.seen.every((s) => s.encryption === 'nip44_v2'), `every request NIP-44: ${JSON.stringify(p.seen)}`);
  const d = b.describe();
  assert.match(d, new RegExp(`NWC wallet ${p.walletPubkey.slice(0, 8)}… via 127\\.0\\.0\\.1:${p.relayPort} \\(nip44_v2, lookup_invoice yes\\)`));
  assert.ok(!d.includes(p.walletPubkey), 'only a prefix of the wallet key');
  assert.match(await b.check!(), /alias "nwc-peer", network regtest, methods: make_invoice lookup_invoice get_info; nip44_v2/);
});

for (const encryption of ['nip04', 'none'] as const) {
  test(`NIP-04-only wallet (encryption tag: ${encryption}): the client falls back to NIP-04 and round trips`, async () => {
    const p = await peer({ encryption });
    const b = await backendFor(p.uri);
    await roundTrip(p, b);
    assert.ok(p.seen.length >= 5 && p.seen.every((s) => s.encryption === 'nip04'), `every request NIP-04: ${JSON.stringify(p.seen)}`);
    assert.match(b.describe(), /\(nip04, lookup_invoice yes\)/);
    assert.ok(logLines.some((l) => l.includes('only speaks NIP-04')), 'the fallback is logged');
  });
}

test('wallet without lookup_invoice: lookupInvoice is absent and the gate refuses auto_detect_payment at start', async () => {
  const p = await peer({ lookupInvoice: false });
  const b = await backendFor(p.uri);
  assert.equal(b.lookupInvoice, undefined);
  assert.ok(!('lookupInvoice' in b));
  assert.match(b.describe(), /lookup_invoice no/);
  const inv = await b.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 });
  assert.equal(inv.paymentHash.length, 32);

  const port = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${port}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: memory }\nlightning: { type: dev }\nroutes:\n  - { match: /auto, amount_msat: 1000, auto_detect_payment: true }\n`,
    { env: {} },
  );
  await assert.rejects(startGate(cfg, { backend: b, log: context().log }), (e: Error) => e instanceof ConfigError && /auto_detect_payment needs a backend that can look up invoices; lightning.type nwc cannot/.test(e.message));
});

test('wallet without get_info: methods come from the info event; check() reads the info event', async () => {
  const p = await peer({ getInfo: false });
  const b = await backendFor(p.uri);
  assert.equal(typeof b.lookupInvoice, 'function');
  assert.match(await b.check!(), /\(no get_info\) advertises: make_invoice lookup_invoice; nip44_v2/);
  assert.ok(!p.seen.some((s) => s.method === 'get_info'));
});

test('wallet with no info event: start-up fails with an actionable message, bounded', async () => {
  const p = await peer({ noInfoEvent: true });
  const t0 = Date.now();
  await expectBackendError(backendFor(p.uri, 4000), new RegExp(`has no info event \\(kind 13194\\) on 127\\.0\\.0\\.1:${p.relayPort}; is it running`));
  assert.ok(Date.now() - t0 < 2000, 'EOSE without the event ends discovery at once, not at the 4 s bound');
});

test('relay stops and restarts: calls fail fast while it is down, then work again on the same backend', async () => {
  const p = await peer();
  const b = await backendFor(p.uri);
  await b.createInvoice({ amountMsat: 1000, memo: 'before', expirySecs: 60 });

  // Dropped in the middle of a call: the call fails at once instead of waiting for its bound.
  p.faults.delayMs = 2000;
  const pending = b.createInvoice({ amountMsat: 1000, memo: 'during', expirySecs: 60 });
  await sleep(300);
  const t0 = Date.now();
  const failed = expectBackendError(pending, /could not reach the wallet service through any relay .*connection closed/);
  await p.stopRelay();
  await failed;
  assert.ok(Date.now() - t0 < 1500, 'a dropped relay fails the call promptly');
  p.faults.delayMs = 0;

  const t1 = Date.now();
  await expectBackendError(b.createInvoice({ amountMsat: 1000, memo: 'down', expirySecs: 60 }), /could not reach the wallet service through any relay .*ECONNREFUSED/);
  assert.ok(Date.now() - t1 < 1500);

  await p.startRelay();
  const inv = await b.createInvoice({ amountMsat: 2000, memo: 'after', expirySecs: 60 });
  assert.match(inv.bolt11, /^lnbcrt20n1/);
  assert.deepEqual(await b.lookupInvoice!(inv.paymentHash), { state: 'open' });
});

test('several relays, one refusing and one hanging: publishes to all, the live one answers, bounded', async () => {
  const p = await peer();
  // A second real relay the wallet service does not listen on: the request must reach it too.
  const bystander = new NostrRelay(await freePort());
  await bystander.start();
  cleanup.add(() => bystander.close(), 'bystander relay');
  const refused = await freePort();
  const held: net.Socket[] = [];
  const hung = net.createServer((s) => {
    held.push(s);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
  cleanup.add(() => new Promise<void>((r) => {
    for (const s of held) s.destroy();
    hung.close(() => r());
  }), 'hung relay');
  const hungPort = (hung.address() as net.AddressInfo).port;
  const uri = p.uri.replace('?', `?relay=${encodeURIComponent(`ws://127.0.0.1:${refused}`)}&relay=${encodeURIComponent(`ws://127.0.0.1:${hungPort}`)}&relay=${encodeURIComponent(bystander.url)}&`);
  const t0 = Date.now();
  const b = await backendFor(uri, 2500);
  assert.ok(Date.now() - t0 < 2000, 'start-up does not wait for the hanging relay');
  assert.match(b.describe(), new RegExp(`via 127\\.0\\.0\\.1:${refused}, 127\\.0\\.0\\.1:${hungPort}, 127\\.0\\.0\\.1:\\d+, 127\\.0\\.0\\.1:${p.relayPort} `));
  for (let i = 0; i < 3; i++) {
    const t = Date.now();
    const inv = await b.createInvoice({ amountMsat: 3000 + i, memo: `multi ${i}`, expirySecs: 60 });
    assert.equal(inv.paymentHash.length, 32);
    assert.ok(Date.now() - t < 2000, 'the first valid reply wins; the dead relays do not hold the call');
  }
  assert.ok(held.length >= 1, 'the hanging relay was dialled');
  const requests = bystander.cache.filter((e) => e.kind === 23194 && e.pubkey !== p.walletPubkey);
  assert.ok(requests.length >= 3, `every request was published to the bystander relay too (${requests.length})`);
  assert.ok(requests.every((e) => e.tags.some((t) => t[0] === 'encryption' && t[1] === 'nip44_v2') && e.tags.some((t) => t[0] === 'expiration')));
});

test('slow wallet: every call is bounded by ctx.timeoutMs and by the caller\'s AbortSignal', async () => {
  const p = await peer();
  const b = await backendFor(p.uri, 700);
  p.faults.delayMs = 10_000;
  let t0 = Date.now();
  await expectBackendError(b.createInvoice({ amountMsat: 1000, memo: 'slow', expirySecs: 60 }), /NWC make_invoice timed out after 700 ms \(request accepted by 127\.0\.0\.1:\d+, no reply\)/);
  assert.ok(Date.now() - t0 < 2000, 'bounded by timeoutMs');
  t0 = Date.now();
  await expectBackendError(b.lookupInvoice!(randomBytes(32), AbortSignal.timeout(100)), /NWC lookup_invoice aborted by the caller/);
  assert.ok(Date.now() - t0 < 1000, 'bounded by the signal');
  const ac = new AbortController();
  ac.abort();
  await expectBackendError(b.createInvoice({ amountMsat: 1000, memo: 'pre-aborted', expirySecs: 60 }, ac.signal), /aborted by the caller/);
  p.faults.delayMs = 0;
  const inv = await b.createInvoice({ amountMsat: 1000, memo: 'fast again', expirySecs: 60 });
  assert.equal(inv.paymentHash.length, 32);
});

test('wallet error responses become BackendCallErrors carrying the NIP-47 code', async () => {
  const p = await peer();
  const b = await backendFor(p.uri);
  p.faults.errors.make_invoice = { code: 'QUOTA_EXCEEDED', message: 'budget\u0000 used up' };
  const e1 = await expectBackendError(b.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }), /refused make_invoice: QUOTA_EXCEEDED \(budget +used up\)/);
  assert.ok(e1 instanceof NwcWalletError);
  assert.equal(e1.code, 'QUOTA_EXCEEDED');
  assert.equal(e1.retryable, false);
  p.faults.errors.lookup_invoice = { code: 'RATE_LIMITED', message: 'slow down' };
  const e2 = await expectBackendError(b.lookupInvoice!(randomBytes(32)), /refused lookup_invoice: RATE_LIMITED/);
  assert.ok(e2 instanceof NwcWalletError && e2.code === 'RATE_LIMITED' && e2.retryable === true);
  p.faults.errors = { get_info: { code: 'UNAUTHORIZED', message: 'no wallet connected' } };
  await expectBackendError(b.check!(), /refused get_info: UNAUTHORIZED/);
  await expectBackendError(backendFor(p.uri), /refused get_info: UNAUTHORIZED/);
});

test('invoices and lookups are checked, not trusted: wrong amount, wrong hash, bad preimage, garbage replies', async () => {
  const p = await peer();
  const b = await backendFor(p.uri);
  p.faults.wrongAmount = true;
  await expectBackendError(b.createInvoice({ amountMsat: 5000, memo: 'x', expirySecs: 60 }), /invoice is for 6000 msat, not the 5000 msat asked for/);
  p.faults.wrongAmount = false;
  p.faults.wrongHash = true;
  await expectBackendError(b.createInvoice({ amountMsat: 5000, memo: 'x', expirySecs: 60 }), /payment hash the wallet service names is not the one in its invoice/);
  p.faults.wrongHash = false;

  const inv = await b.createInvoice({ amountMsat: 5000, memo: 'x', expirySecs: 60 });
  p.faults.preimageWhenOpen = true;
  assert.deepEqual(await b.lookupInvoice!(inv.paymentHash), { state: 'open' }, 'a preimage alone does not mean paid');
  p.settle(inv.bolt11);
  p.faults.wrongPreimage = true;
  await expectBackendError(b.lookupInvoice!(inv.paymentHash), /preimage the wallet service returned does not hash to the payment hash/);
  p.faults.wrongPreimage = false;

  p.faults.garbleReplies = true;
  const t0 = Date.now();
  await expectBackendError(b.lookupInvoice!(inv.paymentHash), /reply could not be decrypted \(nip44_v2\)/);
  assert.ok(Date.now() - t0 < 1500, 'a malformed reply fails at once, not at the timeout');
  p.faults.garbleReplies = false;
  assert.equal((await b.lookupInvoice!(inv.paymentHash)).state, 'settled');
});

test('after close(): calls reject at once and in-flight calls end', async () => {
  const p = await peer();
  const b = await createNwcBackend(nwcConfigSchema.parse({ type: 'nwc', uri: p.uri }), context(5000));
  p.faults.delayMs = 10_000;
  const pending = b.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 });
  await sleep(200);
  await b.close();
  await expectBackendError(pending, /aborted: backend closed/);
  await expectBackendError(b.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }), /closed/);
});

test('END TO END through nginx: unpaid → 402 with the wallet\'s invoice; settle; preimage → 200', async (t) => {
  if (!requireTool('nginx')) return t.skip('nginx not installed');
  const local = new Cleanup();
  try {
    const p = await peer();
    const b = await createNwcBackend(nwcConfigSchema.parse({ type: 'nwc', uri: p.uri }), context(3000));
    local.add(() => b.close(), 'nwc backend');
    const s = await startStack(local, { backend: b });
    const r1 = await http1(s.origin + '/premium', { headers: { accept: 'application/json' } });
    assert.equal(r1.status, 402);
    const body = JSON.parse(r1.body) as { invoice: string; macaroon: string };
    assert.match(String(r1.headers['www-authenticate']), new RegExp(`invoice="${body.invoice}"`));
    assert.match(body.invoice, /^lnbcrt100n1/, '10 000 msat as the route asks');
    assert.equal(s.upstream.hits, 0);
    const preimage = p.settle(body.invoice).toString('hex');
    assert.ok(p.seen.some((x) => x.method === 'make_invoice' && x.encryption === 'nip44_v2'), 'the invoice came from the NWC wallet');
    const r2 = await http1(s.origin + '/premium', { headers: { authorization: `L402 ${body.macaroon}:${preimage}` } });
    assert.equal(r2.status, 200);
    assert.equal(s.upstream.hits, 1);
    const r3 = await http1(s.origin + '/premium', { headers: { authorization: `L402 ${body.macaroon}:${preimage}`, accept: 'application/json' } });
    assert.notEqual(r3.status, 200, 'per-request: the same preimage pays once');
    assert.equal(s.upstream.hits, 1);
    for (const line of s.logs) for (const secret of secrets) assert.ok(!line.includes(secret), 'gate logs carry no NWC secret');
  } finally {
    await local.run();
  }
});

test('no secret in any error, describe() or log line of this file', () => {
  assert.ok(errors.length >= 10, `collected ${errors.length} errors`);
  assert.ok(secrets.length >= 10);
  for (const e of errors) {
    const text = `${e.message}\n${inspect(e, { depth: 5 })}\n${JSON.stringify(e)}`;
    for (const secret of secrets) assert.ok(!text.toLowerCase().includes(secret), `error leaks a secret: ${e.message}`);
  }
  const logs = logLines.join('');
  assert.ok(logs.includes('NWC wallet service ready'));
  for (const secret of secrets) assert.ok(!logs.includes(secret), 'logs carry no secret');
});
