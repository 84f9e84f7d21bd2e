// Eclair backend against a protocol-faithful Eclair REST peer (DevWallet-signed invoices).
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import lightBolt11 from 'light-bolt11-decoder';
import { decode as atomiqDecode } from '@atomiqlabs/bolt11';
import type { BackendContext } from '../../src/rails/lightning/backend.js';
import { createEclairBackend, eclairConfigSchema, eclairFromLegacyEnv, type EclairConfig } from '../../src/rails/lightning/http/eclair.js';
import { createLogger } from '../../src/util/log.js';
import { requireTool } from '../integration/harness.js';
import { rejectsWith } from './assert-helpers.js';
import { startEclairPeer, type EclairPeer } from '../peers/eclair-peer.js';
import { sleep } from '../../src/util/timeout.js';

const PASSWORD = 'correct horse battery staple';
const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
const section = (bolt11: string, name: string): unknown =>
  (lightBolt11.decode(bolt11).sections.find((s) => s.name === name) as { value?: unknown } | undefined)?.value;

let dir: string;
let peer: EclairPeer;
const closers: Array<() => Promise<void> | void> = [];

function ctx(timeoutMs = 2000): BackendContext {
  return { configDir: dir, dataDir: dir, log: createLogger('silent'), timeoutMs };
}

function backend(over: Partial<Record<string, unknown>> = {}, timeoutMs = 2000) {
  const cfg: EclairConfig = eclairConfigSchema.parse({ type: 'eclair', url: peer.url, password: PASSWORD, ...over });
  const b = createEclairBackend(cfg, ctx(timeoutMs));
  closers.push(() => b.close());
  return b;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'l402-eclair-test-'));
  peer = await startEclairPeer({ password: PASSWORD, authFailDelayMs: 200 });
});
after(async () => {
  for (const c of closers.reverse()) await c();
  await peer?.stop();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  for (const k of Object.keys(peer.faults)) delete (peer.faults as Record<string, unknown>)[k];
});

describe('config', () => {
  test('password is required; the error names the key and the env var', () => {
    const r = eclairConfigSchema.safeParse({ type: 'eclair', url: 'http://127.0.0.1:8080' });
    assert.equal(r.success, false);
    const issue = r.error!.issues[0]!;
    assert.deepEqual(issue.path, ['password']);
    assert.match(issue.message, /password.*ECLAIR_PASSWORD/);
  });

  test('defaults to http://localhost:8080; rejects credentials in the URL, other schemes, and password + password_file', () => {
    assert.equal(eclairConfigSchema.parse({ type: 'eclair', password: 'x' }).url, 'http://localhost:8080');
    const creds = eclairConfigSchema.safeParse({ type: 'eclair', url: 'http://u:secretpw@127.0.0.1:8080', password: 'x' });
    assert.equal(creds.success, false);
    assert.ok(!JSON.stringify(creds.error!.issues.map((i) => i.message)).includes('secretpw'));
    assert.equal(eclairConfigSchema.safeParse({ type: 'eclair', url: 'ftp://127.0.0.1', password: 'x' }).success, false);
    assert.equal(eclairConfigSchema.safeParse({ type: 'eclair', password: 'x', password_file: 'p' }).success, false);
    assert.equal(eclairConfigSchema.safeParse({ type: 'eclair', password: 'x', extra: 1 }).success, false);
  });

  test('legacy env: ECLAIR_ADDRESS / ECLAIR_PASSWORD map onto the section; a bare host:port gets http://', () => {
    assert.deepEqual(eclairFromLegacyEnv({ ECLAIR_ADDRESS: 'http://10.0.0.5:8080/', ECLAIR_PASSWORD: 'pw' }), { type: 'eclair', url: 'http://10.0.0.5:8080', password: 'pw' });
    assert.deepEqual(eclairFromLegacyEnv({ ECLAIR_ADDRESS: 'eclair:8080', ECLAIR_PASSWORD: 'pw' }), { type: 'eclair', url: 'http://eclair:8080', password: 'pw' });
    const parsed = eclairConfigSchema.parse(eclairFromLegacyEnv({ ECLAIR_PASSWORD: 'pw' }));
    assert.equal(parsed.url, 'http://localhost:8080');
    // ngx_l402 ran without a password and silently lost settlement lookups; here it is a config error.
    assert.equal(eclairConfigSchema.safeParse(eclairFromLegacyEnv({ ECLAIR_ADDRESS: 'http://x:8080', ECLAIR_PASSWORD: '' })).success, false);
  });

  test('password_file is read relative to the config dir (first line)', async () => {
    writeFileSync(join(dir, 'eclair.pw'), `${PASSWORD}\n`);
    const b = backend({ password: undefined, password_file: 'eclair.pw' });
    assert.match(await b.check!(), /eclair-peer/);
    assert.throws(() => createEclairBackend(eclairConfigSchema.parse({ type: 'eclair', password_file: 'missing.pw' }), ctx()), /password_file .*missing\.pw.*ENOENT/);
  });
});

describe('calls against the Eclair peer', () => {
  test('createInvoice: Eclair form call, invoice verified (signature by the node, hash, amount, memo, expiry)', async () => {
    const before = peer.calls.createinvoice ?? 0;
    const b = backend();
    const inv = await b.createInvoice({ amountMsat: 21_000, memo: 'L402 test', expirySecs: 900 });
    assert.equal(peer.calls.createinvoice, before + 1);
    assert.equal(section(inv.bolt11, 'payment_hash'), inv.paymentHash.toString('hex'));
    assert.equal(section(inv.bolt11, 'amount'), '21000');
    assert.equal(section(inv.bolt11, 'description'), 'L402 test');
    // An independent decoder that checks the signature and recovers the payee.
    const d = atomiqDecode(inv.bolt11);
    assert.equal(d.payeeNodeKey, peer.nodeId);
    assert.equal(inv.expiresAt, (d.timestamp ?? 0) + 900);
    assert.match(b.describe(), /eclair REST API at http:\/\/127\.0\.0\.1:\d+\//);
    assert.ok(!b.describe().includes(PASSWORD));
  });

  test('lookupInvoice: pending (Eclair sends the preimage anyway) is open; after payment settled with a matching preimage', async () => {
    const b = backend();
    const inv = await b.createInvoice({ amountMsat: 5000, memo: 'L402', expirySecs: 600 });
    assert.deepEqual(await b.lookupInvoice!(inv.paymentHash), { state: 'open' });
    const paid = peer.settle(inv.bolt11);
    const st = await b.lookupInvoice!(inv.paymentHash);
    assert.equal(st.state, 'settled');
    assert.ok(st.state === 'settled' && st.preimage.equals(paid));
    assert.ok(st.state === 'settled' && sha256(st.preimage).equals(inv.paymentHash));
  });

  test('lookupInvoice: unknown hash (404 Not found) is unknown; an expired invoice is expired', async () => {
    const b = backend();
    assert.deepEqual(await b.lookupInvoice!(randomBytes(32)), { state: 'unknown' });
    const inv = await b.createInvoice({ amountMsat: 1000, memo: 'L402', expirySecs: 1 });
    await sleep(1100);
    assert.deepEqual(await b.lookupInvoice!(inv.paymentHash), { state: 'expired' });
  });

  test('check(): getinfo summary', async () => {
    const s = await backend().check!();
    assert.match(s, /eclair 0\.13\.0-l402test, alias "eclair-peer", node [0-9a-f]{12}…, network regtest, block 101/);
  });

  test('wrong password: clear, non-retryable error without the password; bounded', async () => {
    const b = backend({ password: 'wrong password 123' });
    const t0 = Date.now();
    const e = await rejectsWith(b.createInvoice({ amountMsat: 1000, memo: 'L402', expirySecs: 60 }), /rejected the API password \(HTTP 401\)/, PASSWORD);
    assert.equal(e.retryable, false);
    assert.ok(!e.message.includes('wrong password 123'));
    await rejectsWith(b.check!(), /HTTP 401/, PASSWORD);
    assert.ok(Date.now() - t0 < 5000);
    assert.ok(peer.unauthorized >= 2);
  });
});

describe('faults: malformed or hostile replies become BackendCallError', () => {
  test('invoice for another amount is refused', async () => {
    peer.faults.wrongAmount = true;
    await rejectsWith(backend().createInvoice({ amountMsat: 3000, memo: 'L402', expirySecs: 60 }), /invoice is for 4000 msat, asked for 3000/, PASSWORD);
  });

  test('paymentHash that is not the invoice\'s is refused', async () => {
    peer.faults.wrongHash = true;
    await rejectsWith(backend().createInvoice({ amountMsat: 3000, memo: 'L402', expirySecs: 60 }), /paymentHash. does not match/, PASSWORD);
  });

  test('garbage JSON', async () => {
    peer.faults.garbage = true;
    const b = backend();
    await rejectsWith(b.createInvoice({ amountMsat: 3000, memo: 'L402', expirySecs: 60 }), /not JSON/, PASSWORD);
    await rejectsWith(b.lookupInvoice!(randomBytes(32)), /not JSON/, PASSWORD);
  });

  test('"received" with a preimage that does not hash to the payment hash', async () => {
    const b = backend();
    const inv = await b.createInvoice({ amountMsat: 3000, memo: 'L402', expirySecs: 60 });
    peer.settle(inv.bolt11);
    peer.faults.badPreimage = true;
    await rejectsWith(b.lookupInvoice!(inv.paymentHash), /preimage does not hash/, PASSWORD);
  });

  test('HTTP 500 with an error body', async () => {
    peer.faults.httpStatus = 500;
    const e = await rejectsWith(backend().createInvoice({ amountMsat: 3000, memo: 'L402', expirySecs: 60 }), /HTTP 500: injected failure/, PASSWORD);
    assert.equal(e.retryable, true);
  });

  test('peer down (connection closed without an answer)', async () => {
    peer.faults.down = true;
    await rejectsWith(backend().createInvoice({ amountMsat: 3000, memo: 'L402', expirySecs: 60 }), /socket hang up|ECONNRESET/, PASSWORD);
  });

  test('connection refused', async () => {
    const b = backend({ url: 'http://127.0.0.1:1' });
    await rejectsWith(b.createInvoice({ amountMsat: 3000, memo: 'L402', expirySecs: 60 }), /ECONNREFUSED/, PASSWORD);
  });

  test('slow peer: bounded by ctx.timeoutMs', async () => {
    peer.faults.delayMs = 3000;
    const b = backend({}, 300);
    const t0 = Date.now();
    await rejectsWith(b.createInvoice({ amountMsat: 3000, memo: 'L402', expirySecs: 60 }), /timed out after 300 ms/, PASSWORD);
    await rejectsWith(b.lookupInvoice!(randomBytes(32)), /timed out after 300 ms/, PASSWORD);
    assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
  });

  test('slow peer: the caller\'s AbortSignal ends the call', async () => {
    peer.faults.delayMs = 3000;
    const b = backend({}, 4000);
    const t0 = Date.now();
    await rejectsWith(b.createInvoice({ amountMsat: 3000, memo: 'L402', expirySecs: 60 }, AbortSignal.timeout(150)), /aborted/, PASSWORD);
    assert.ok(Date.now() - t0 < 2000);
  });
});

describe('https', () => {
  test('ca_cert_path trusts the node\'s CA; without it the TLS handshake fails', async (t) => {
    if (!requireTool('openssl')) return t.skip('openssl not installed');
    const tlsPeer = await startEclairPeer({ password: PASSWORD, tls: true });
    t.after(() => tlsPeer.stop());
    const good = createEclairBackend(eclairConfigSchema.parse({ type: 'eclair', url: tlsPeer.url, password: PASSWORD, ca_cert_path: tlsPeer.caCertPath }), ctx());
    t.after(() => good.close());
    const inv = await good.createInvoice({ amountMsat: 2000, memo: 'L402', expirySecs: 60 });
    assert.equal(section(inv.bolt11, 'amount'), '2000');
    const bad = createEclairBackend(eclairConfigSchema.parse({ type: 'eclair', url: tlsPeer.url, password: PASSWORD }), ctx());
    t.after(() => bad.close());
    await rejectsWith(bad.createInvoice({ amountMsat: 2000, memo: 'L402', expirySecs: 60 }), /certificate/i, PASSWORD);
  });
});
