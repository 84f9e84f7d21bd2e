// LNURL-pay / Lightning Address backend against a protocol-faithful LNURL service over HTTPS (test CA),
// plus the bounded HTTP client's address policy. @getalby/lightning-tools and @atomiqlabs/bolt11 are
// independent oracles for what the service returns.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import lightBolt11 from 'light-bolt11-decoder';
import { decode as atomiqDecode } from '@atomiqlabs/bolt11';
import { decodeInvoice as albyDecodeInvoice, parseLnUrlPayResponse, validatePreimage } from '@getalby/lightning-tools';
import type { BackendContext, LightningBackend } from '../../src/rails/lightning/backend.js';
import {
  LnurlMetadataCache, buildCallbackUrl, createLnurlBackend, createLnurlBackendForAddress, lnurlConfigSchema, lnurlFromLegacyEnv,
  parseLnurlAddress, parsePayParams, type LnurlDeps,
} from '../../src/rails/lightning/http/lnurl.js';
import { isPublicAddress } from '../../src/rails/lightning/transports/safe-fetch.js';
import { createLogger } from '../../src/util/log.js';
import { requireTool } from '../integration/harness.js';
import { rejectsWith } from './assert-helpers.js';
import { startLnurlPeer, type LnurlPeer } from '../peers/lnurl-peer.js';

const sha256hex = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const section = (bolt11: string, name: string): unknown =>
  (lightBolt11.decode(bolt11).sections.find((s) => s.name === name) as { value?: unknown } | undefined)?.value;

let dir: string;
let peer: LnurlPeer | undefined;
const closers: Array<() => Promise<void> | void> = [];

function ctx(timeoutMs = 2000): BackendContext {
  return { configDir: dir, dataDir: dir, log: createLogger('silent'), timeoutMs };
}

/** A backend for the peer's alice@localhost:PORT, trusting the peer's CA, with its own cache. */
function backend(over: Record<string, unknown> = {}, opts: { timeoutMs?: number; deps?: LnurlDeps } = {}): LightningBackend {
  const cfg = lnurlConfigSchema.parse({ type: 'lnurl', address: peer!.address(), ca_cert_path: peer!.caCertPath, allow_private: true, ...over });
  const b = createLnurlBackend(cfg, ctx(opts.timeoutMs), { cache: new LnurlMetadataCache(), ...opts.deps });
  closers.push(() => b.close());
  return b;
}

const REQ = { amountMsat: 10_000, memo: 'L402 payment', expirySecs: 600 };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'l402-lnurl-test-'));
  if (requireTool('openssl')) peer = await startLnurlPeer({});
});
after(async () => {
  for (const c of closers.reverse()) await c();
  await peer?.stop();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  if (!peer) return;
  for (const k of Object.keys(peer.faults)) delete (peer.faults as Record<string, unknown>)[k];
  Object.assign(peer.options, { minSendable: 1000, maxSendable: 100_000_000_000, commentAllowed: 0, verify: true });
});

describe('addresses, config, parsing (no network)', () => {
  test('Lightning Address → LUD-16 well-known URL; case folded; bad user or domain refused', () => {
    const t = parseLnurlAddress('Alice@Example.com');
    assert.equal(t.url.href, 'https://example.com/.well-known/lnurlp/alice');
    assert.equal(t.identifier, 'alice@example.com');
    assert.equal(parseLnurlAddress('lightning:bob+tip@pay.example.org:8443').url.href, 'https://pay.example.org:8443/.well-known/lnurlp/bob+tip');
    assert.throws(() => parseLnurlAddress('al ice@example.com'), /user part/);
    assert.throws(() => parseLnurlAddress('alice@exa/mple.com'), /not a valid domain/);
    assert.throws(() => parseLnurlAddress('alice@nodot'), /not a valid domain/);
    assert.throws(() => parseLnurlAddress('alice@abcdef.onion'), /Tor/);
    assert.throws(() => parseLnurlAddress('nonsense'), /neither a Lightning Address/);
  });

  test('bech32 LNURL (LUD-01 vector), lnurlp:// (LUD-17), https URL; http only with allow_http; wrong tag refused', () => {
    const vector = 'LNURL1DP68GURN8GHJ7UM9WFMXJCM99E3K7MF0V9CXJ0M385EKVCENXC6R2C35XVUKXEFCV5MKVV34X5EKZD3EV56NYD3HXQURZEPEXEJXXEPNXSCRVWFNV9NXZCN9XQ6XYEFHVGCXXCMYXYMNSERXFQ5FNS';
    assert.equal(parseLnurlAddress(vector).url.href, 'https://service.com/api?q=3fc3645b439ce8e7f2553a69e5267081d96dcd340693afabe04be7b0ccd178df');
    assert.equal(parseLnurlAddress(vector.toLowerCase()).url.host, 'service.com');
    assert.throws(() => parseLnurlAddress(`lnurl1${vector.slice(6).toLowerCase().replace('d', 'D')}`), /mix/);
    assert.throws(() => parseLnurlAddress(vector.slice(0, -1) + 'Q'), /not a valid bech32/);
    assert.equal(parseLnurlAddress('lnurlp://pay.example.com/p/1').url.href, 'https://pay.example.com/p/1');
    assert.throws(() => parseLnurlAddress('http://pay.example.com/p'), /allow_http/);
    assert.equal(parseLnurlAddress('http://pay.example.com/p', true).url.protocol, 'http:');
    assert.throws(() => parseLnurlAddress('https://u:p@pay.example.com/p'), /credentials/);
    assert.throws(() => parseLnurlAddress('https://pay.example.com/w?tag=withdrawRequest'), /not a pay link/);
  });

  test('schema defaults, strictness, address errors; legacy LNURL_ADDRESS', () => {
    const c = lnurlConfigSchema.parse({ type: 'lnurl', address: 'alice@example.com' });
    assert.deepEqual(
      { ttl: c.metadata_ttl_secs, r: c.max_redirects, b: c.max_response_bytes, h: c.allow_http, p: c.allow_private, cm: c.send_comment, v: c.verify },
      { ttl: 600, r: 3, b: 512 * 1024, h: false, p: false, cm: true, v: true },
    );
    assert.equal(lnurlConfigSchema.safeParse({ type: 'lnurl', address: 'alice@example.com', proxy: true }).success, false);
    const bad = lnurlConfigSchema.safeParse({ type: 'lnurl', address: 'alice' });
    assert.equal(bad.success, false);
    assert.deepEqual(bad.error!.issues[0]!.path, ['address']);
    assert.equal(lnurlConfigSchema.safeParse({ type: 'lnurl' }).success, false);
    assert.deepEqual(lnurlFromLegacyEnv({ LNURL_ADDRESS: ' tips@example.com ' }), { type: 'lnurl', address: 'tips@example.com' });
    assert.deepEqual(lnurlFromLegacyEnv({}), { type: 'lnurl' });
    assert.equal(lnurlConfigSchema.parse(lnurlFromLegacyEnv({ LNURL_ADDRESS: 'tips@example.com' })).address, 'tips@example.com');
  });

  test('callback URL keeps the service\'s query string byte for byte (LUD-06 <?|&>amount=)', () => {
    assert.equal(buildCallbackUrl('https://x.com/cb?k=a%2Bb&z=1', 5000), 'https://x.com/cb?k=a%2Bb&z=1&amount=5000');
    assert.equal(buildCallbackUrl('https://x.com/cb', 5000, 'hi & bye'), 'https://x.com/cb?amount=5000&comment=hi%20%26%20bye');
  });

  test('payRequest validation: tag, callback scheme, min/max, metadata shape (agrees with lightning-tools on the hash)', async () => {
    const meta = JSON.stringify([['text/plain', 'hi'], ['text/identifier', 'a@b.com']]);
    const good = { tag: 'payRequest', callback: 'https://b.com/cb', minSendable: 1000, maxSendable: 5000, metadata: meta, commentAllowed: 20 };
    const p = parsePayParams(good, false);
    assert.equal(p.metadataHash, sha256hex(meta));
    assert.equal(p.metadataHash, (await parseLnUrlPayResponse(good)).metadataHash);
    assert.equal(p.commentAllowed, 20);
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...good, tag: 'withdrawRequest' }, /tag/],
      [{ ...good, callback: 'http://b.com/cb' }, /https/],
      [{ ...good, callback: 'not a url' }, /valid URL/],
      [{ ...good, minSendable: 0 }, /minSendable/],
      [{ ...good, maxSendable: 999 }, /maxSendable/],
      [{ ...good, minSendable: '1000' }, /minSendable/],
      [{ ...good, metadata: [['text/plain', 'x']] }, /string/],
      [{ ...good, metadata: '{"a":1}' }, /array/],
      [{ ...good, metadata: '[["text/long-desc","x"]]' }, /text\/plain/],
      [{ status: 'ERROR', reason: 'user disabled' }, /user disabled/],
    ];
    for (const [body, re] of bad) assert.throws(() => parsePayParams(body, false), re, JSON.stringify(body));
    assert.equal(parsePayParams({ ...good, callback: 'http://b.com/cb' }, true).callback, 'http://b.com/cb');
  });

  test('metadata cache: LRU bound, per-entry expiry, ttl 0 stores nothing', () => {
    const c = new LnurlMetadataCache(2);
    const p = parsePayParams({ tag: 'payRequest', callback: 'https://b.com/cb', minSendable: 1, maxSendable: 2, metadata: '[["text/plain","x"]]' }, false);
    c.set('a', p, 1000, 0);
    c.set('b', p, 1000, 0);
    assert.ok(c.get('a', 1)); // touch a: b is now the oldest
    c.set('c', p, 1000, 0);
    assert.equal(c.size, 2);
    assert.equal(c.get('b', 1), undefined);
    assert.ok(c.get('a', 1) && c.get('c', 1));
    assert.equal(c.get('a', 1000), undefined, 'expired');
    c.set('d', p, 0);
    assert.equal(c.get('d'), undefined);
  });

  test('address policy: loopback, private, link-local, CGNAT, mapped and embedded IPv4 are not public', () => {
    const notPublic = ['127.0.0.1', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0',
      '224.0.0.1', '255.255.255.255', '::1', '::', 'fe80::1', 'fe80::1%eth0', 'fc00::1', 'fd12:3456::1', 'ff02::1', '::ffff:127.0.0.1',
      '::ffff:7f00:1', '::ffff:10.0.0.1', '64:ff9b::a9fe:a9fe', '2002:c0a8:0101::1', '2001:db8::1', 'not-an-ip'];
    for (const a of notPublic) assert.equal(isPublicAddress(a), false, a);
    for (const a of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2001:4860:4860::8888', '2606:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808']) {
      assert.equal(isPublicAddress(a), true, a);
    }
  });
});

describe('against the LNURL-pay peer (HTTPS, test CA)', () => {
  test('Lightning Address: real invoice, amount exact, description_hash = sha256(metadata); oracles agree', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    const b = backend();
    const inv = await b.createInvoice(REQ);
    assert.equal(section(inv.bolt11, 'amount'), '10000');
    assert.equal(section(inv.bolt11, 'description_hash'), sha256hex(peer.metadata()));
    assert.equal(section(inv.bolt11, 'payment_hash'), inv.paymentHash.toString('hex'));
    // Oracles: a signature-checking decoder, and Alby's lightning-tools.
    const d = atomiqDecode(inv.bolt11);
    assert.equal(d.tagsObject.purpose_commit_hash, sha256hex(peer.metadata()));
    assert.equal(inv.expiresAt, (d.timestamp ?? 0) + 600);
    const alby = albyDecodeInvoice(inv.bolt11)!;
    assert.equal(alby.paymentHash, inv.paymentHash.toString('hex'));
    assert.equal(alby.satoshi, 10);
    const preimage = peer.settle(inv.bolt11);
    assert.ok(validatePreimage(preimage.toString('hex'), inv.paymentHash.toString('hex')));
    assert.equal(peer.callbackQueries.at(-1)!.get('k'), 'k9-test', 'the callback\'s own query string survived');
    assert.equal(peer.callbackQueries.at(-1)!.get('amount'), '10000');
    assert.match(b.describe(), /^LNURL-pay to alice@localhost:\d+ \(https:\/\/localhost:\d+\/\.well-known\/lnurlp\/alice\)$/);
  });

  test('bech32 lnurl1… form works the same', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    const b = backend({ address: peer.lnurl('carol') });
    const inv = await b.createInvoice(REQ);
    assert.equal(section(inv.bolt11, 'description_hash'), sha256hex(peer.metadata('carol')));
  });

  test('metadata cache: the second challenge makes one callback request and no metadata request', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    const b = backend();
    const m0 = peer.counts.metadata;
    const c0 = peer.counts.callback;
    await b.createInvoice(REQ);
    await b.createInvoice(REQ);
    assert.equal(peer.counts.metadata - m0, 1);
    assert.equal(peer.counts.callback - c0, 2);
  });

  test('metadata cache: concurrent cold challenges share one fetch; ttl 0 refetches every time', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    const m0 = peer.counts.metadata;
    const b = backend();
    const invs = await Promise.all(Array.from({ length: 5 }, () => b.createInvoice(REQ)));
    assert.equal(new Set(invs.map((i) => i.bolt11)).size, 5);
    assert.equal(peer.counts.metadata - m0, 1);
    const m1 = peer.counts.metadata;
    const nocache = backend({ metadata_ttl_secs: 0 });
    await nocache.createInvoice(REQ);
    await nocache.createInvoice(REQ);
    assert.equal(peer.counts.metadata - m1, 2);
  });

  test('per-route addresses: createLnurlBackendForAddress shares one cache across addresses', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    const cache = new LnurlMetadataCache(1000);
    const opts = { ca_cert_path: peer.caCertPath, allow_private: true };
    const m0 = peer.counts.metadata;
    const bobs = [createLnurlBackendForAddress(peer.address('bob'), ctx(), opts, { cache }), createLnurlBackendForAddress(peer.address('bob'), ctx(), opts, { cache })];
    const dave = createLnurlBackendForAddress(peer.address('dave'), ctx(), { ...opts, type: 'lnurl', address: 'ignored@example.com' }, { cache });
    closers.push(() => bobs[0]!.close(), () => bobs[1]!.close(), () => dave.close());
    const i1 = await bobs[0]!.createInvoice(REQ);
    await bobs[1]!.createInvoice(REQ);
    const i3 = await dave.createInvoice(REQ);
    assert.equal(peer.counts.metadata - m0, 2, 'one fetch per address');
    assert.equal(cache.size, 2);
    assert.equal(section(i1.bolt11, 'description_hash'), sha256hex(peer.metadata('bob')));
    assert.equal(section(i3.bolt11, 'description_hash'), sha256hex(peer.metadata('dave')));
    assert.throws(() => createLnurlBackendForAddress('not an address', ctx(), opts), /neither/);
    assert.throws(() => createLnurlBackendForAddress(peer!.address(), ctx(), { max_redirects: 99 }), /max_redirects/);
  });

  test('an invoice for the wrong amount is refused', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    peer.faults.wrongAmount = true;
    const e = await rejectsWith(backend().createInvoice(REQ), /invoice for 11000 msat, requested 10000 msat; refusing it/);
    assert.match(e.message, /alice@localhost/);
  });

  test('an invoice whose description_hash is not sha256(metadata) is refused', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    peer.faults.wrongDescriptionHash = true;
    await rejectsWith(backend().createInvoice(REQ), /description_hash is not sha256\(metadata\)/);
  });

  test('amount outside [minSendable, maxSendable] is refused before any callback', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    peer.options.minSendable = 20_000;
    const b = backend();
    const c0 = peer.counts.callback;
    const e = await rejectsWith(b.createInvoice(REQ), /10000 msat is outside what alice@localhost:\d+ accepts \(20000–100000000000 msat\)/);
    assert.equal(e.retryable, false);
    assert.equal(peer.counts.callback, c0);
  });

  test('status ERROR from the callback carries the reason, and the cached metadata is dropped', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    const b = backend();
    await b.createInvoice(REQ);
    const m0 = peer.counts.metadata;
    peer.faults.callbackError = 'wallet offline';
    await rejectsWith(b.createInvoice(REQ), /refused the invoice request: wallet offline/);
    delete peer.faults.callbackError;
    await b.createInvoice(REQ);
    assert.equal(peer.counts.metadata - m0, 1, 'metadata fetched afresh after the failure');
  });

  test('status ERROR from the metadata endpoint, and non-JSON replies', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    peer.faults.metadataError = 'no such user';
    await rejectsWith(backend().createInvoice(REQ), /payRequest: service error: no such user/);
    delete peer.faults.metadataError;
    peer.faults.garbage = true;
    await rejectsWith(backend().createInvoice(REQ), /metadata reply is not JSON \(HTTP 200\)/);
  });

  test('LUD-12 comment: memo sent, cut to commentAllowed; never sent when not allowed or disabled', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    peer.options.commentAllowed = 8;
    await backend().createInvoice({ ...REQ, memo: 'L402 payment for /premium' });
    assert.equal(peer.callbackQueries.at(-1)!.get('comment'), 'L402 pay');
    await backend({ send_comment: false }).createInvoice(REQ);
    assert.equal(peer.callbackQueries.at(-1)!.get('comment'), null);
    peer.options.commentAllowed = 0;
    await backend().createInvoice(REQ);
    assert.equal(peer.callbackQueries.at(-1)!.get('comment'), null);
  });

  test('slow service: bounded by ctx.timeoutMs (cold and warm cache); the caller\'s AbortSignal also ends it', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    peer.faults.delayMs = 3000;
    const t0 = Date.now();
    await rejectsWith(backend({}, { timeoutMs: 300 }).createInvoice(REQ), /no answer within the 300 ms limit/);
    assert.ok(Date.now() - t0 < 2000, `cold: ${Date.now() - t0} ms`);
    delete peer.faults.delayMs;
    const warm = backend({}, { timeoutMs: 300 });
    await warm.createInvoice(REQ);
    peer.faults.delayMs = 3000;
    const t1 = Date.now();
    await rejectsWith(warm.createInvoice(REQ), /no answer within the 300 ms limit/);
    await rejectsWith(backend({}, { timeoutMs: 4000 }).createInvoice(REQ, AbortSignal.timeout(150)), /aborted/);
    assert.ok(Date.now() - t1 < 2000, `warm + abort: ${Date.now() - t1} ms`);
  });

  test('huge body: refused at max_response_bytes, quickly', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    peer.faults.hugeBodyBytes = 8 * 1024 * 1024;
    const t0 = Date.now();
    await rejectsWith(backend().createInvoice(REQ), /exceeds the 524288-byte limit/);
    await rejectsWith(backend({ max_response_bytes: 4096 }).createInvoice(REQ), /exceeds the 4096-byte limit/);
    assert.ok(Date.now() - t0 < 3000);
  });

  test('no TLS trust without ca_cert_path', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    await rejectsWith(backend({ ca_cert_path: undefined }).createInvoice(REQ), /certificate/i);
  });

  test('default policy: a loopback service is refused without allow_private, before any connection', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    const m0 = peer.counts.metadata;
    const e = await rejectsWith(backend({ allow_private: false }).createInvoice(REQ), /refusing to connect to localhost:\d+ \((127\.0\.0\.1|::1)\).*allow_private/);
    assert.equal(e.retryable, false);
    assert.equal(peer.counts.metadata, m0);
  });

  test('redirects: to a private address refused without connecting; via DNS to a private address refused; loops capped; https→http refused', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    // A trap on 127.0.0.2 counts connections: none may arrive.
    let trapped = 0;
    const trap = net.createServer((s) => { trapped++; s.destroy(); });
    await new Promise<void>((r) => trap.listen(0, '127.0.0.2', r));
    t.after(() => new Promise<void>((r) => trap.close(() => r())));
    const trapPort = (trap.address() as net.AddressInfo).port;
    // Only the peer itself (127.0.0.1) counts as allowed; every other non-public address keeps the default policy.
    const deps: LnurlDeps = {
      addressAllowed: (a) => a === '127.0.0.1' || isPublicAddress(a),
      lookup: (host, cb) => {
        if (host === 'localhost') return cb(null, [{ address: '127.0.0.1', family: 4 }]);
        if (host === 'evil.test') return cb(null, [{ address: '127.0.0.1', family: 4 }, { address: '127.0.0.2', family: 4 }]);
        cb(Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' }), []);
      },
    };
    const strict = (over: Record<string, unknown> = {}) => backend({ allow_private: false, ...over }, { deps });

    peer.faults.redirectMetadataTo = `https://127.0.0.2:${trapPort}/.well-known/lnurlp/alice`;
    await rejectsWith(strict().createInvoice(REQ), /refusing to connect to 127\.0\.0\.2:\d+ \(127\.0\.0\.2\)/);
    peer.faults.redirectMetadataTo = `https://evil.test:${trapPort}/x`;
    await rejectsWith(strict().createInvoice(REQ), /refusing to connect to evil\.test:\d+ \(127\.0\.0\.2\)/);
    peer.faults.redirectMetadataTo = 'https://[::ffff:169.254.169.254]/latest/meta-data';
    await rejectsWith(strict().createInvoice(REQ), /refusing to connect/);
    assert.equal(trapped, 0);

    peer.faults.redirectMetadataTo = peer.payUrl();
    const m0 = peer.counts.metadata;
    await rejectsWith(strict().createInvoice(REQ), /more than 3 redirects/);
    assert.equal(peer.counts.metadata - m0, 4);
    peer.faults.redirectMetadataTo = `http://localhost:${peer.port}/.well-known/lnurlp/alice`;
    await rejectsWith(strict().createInvoice(REQ), /redirect from https to http/);
    peer.faults.redirectMetadataTo = peer.payUrl();
    await rejectsWith(strict({ max_redirects: 0 }).createInvoice(REQ), /not JSON \(HTTP 302\)/);
  });

  test('LUD-21 verify: open → settled with a preimage that hashes to the payment hash; unknown hash is unknown', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    const b = backend();
    const inv = await b.createInvoice(REQ);
    assert.deepEqual(await b.lookupInvoice!(inv.paymentHash), { state: 'open' });
    const pre = peer.settle(inv.bolt11);
    const st = await b.lookupInvoice!(inv.paymentHash);
    assert.ok(st.state === 'settled' && st.preimage.equals(pre));
    const v0 = peer.counts.verify;
    assert.deepEqual(await b.lookupInvoice!(randomBytes(32)), { state: 'unknown' });
    assert.equal(peer.counts.verify, v0, 'no request for a hash we hold no verify URL for');
  });

  test('LUD-21 verify: lies are refused; `verify: false` removes lookupInvoice; no verify URL means unknown', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    const b = backend();
    const inv = await b.createInvoice(REQ);
    peer.faults.verifyLie = 'wrong_preimage';
    await rejectsWith(b.lookupInvoice!(inv.paymentHash), /preimage that does not hash/);
    peer.faults.verifyLie = 'settled_without_preimage';
    await rejectsWith(b.lookupInvoice!(inv.paymentHash), /settled but gives no valid preimage/);
    delete peer.faults.verifyLie;
    assert.equal(backend({ verify: false }).lookupInvoice, undefined);
    peer.options.verify = false;
    const inv2 = await b.createInvoice(REQ);
    peer.settle(inv2.bolt11);
    assert.deepEqual(await b.lookupInvoice!(inv2.paymentHash), { state: 'unknown' });
  });

  test('check(): fetches the metadata and summarises it', async (t) => {
    if (!peer) return t.skip('openssl not installed');
    peer.options.commentAllowed = 32;
    assert.match(await backend().check!(), /^LNURL-pay alice@localhost:\d+: accepts 1000–100000000000 msat, comments up to 32 chars, callback https:\/\/localhost:\d+\/lnurlp\/callback\/alice$/);
    peer.faults.metadataError = 'gone';
    await rejectsWith(backend().check!(), /gone/);
  });
});
