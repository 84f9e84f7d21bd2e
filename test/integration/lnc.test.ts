// The LNC backend against a protocol-faithful peer: a hashmail mailbox (websockets, JSON framing) and a
// litd-style node (go-back-N, Noise XXeke+SPAKE2 then KK, HTTP/2 gRPC forwarded to the lnd peer), and
// end to end through real nginx. Pairing, restart without the phrase, wrong phrase, mailbox down, node
// vanishing mid-call, and no secret (phrase, keys, macaroons) in any log line or error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { BackendCallError, type LightningBackend } from '../../src/rails/lightning/backend.js';
import { createLncBackend, lncConfigSchema } from '../../src/rails/lightning/lnc.js';
import { phraseToEntropy } from '../../src/rails/lightning/lnc/phrase.js';
import { SESSION_FILE } from '../../src/rails/lightning/lnc/session.js';
import { createLogger } from '../../src/util/log.js';
import { startLndPeer, type LndPeer } from '../peers/lnd-peer.js';
import { randomPhrase, startLncNode, startMailbox, type LncNode, type Mailbox } from '../peers/lnc-peer.js';
import { Cleanup, freePort, http1, requireTool, waitFor } from './harness.js';
import { startStack, TEST_ROOT_KEY } from './gate-fixture.js';
import { l402dArgs } from './gate-process.js';
import { sleep } from '../../src/util/timeout.js';

const cleanup = new Cleanup();
let lnd: LndPeer;
let mailbox: Mailbox;
let scratch: string;
/** Every log line any backend in this file wrote. */
const logLines: string[] = [];
/** Every error message any call in this file produced. */
const errors: string[] = [];
const secrets: string[] = [];

before(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'l402-lnc-test-'));
  cleanup.add(() => rmSync(scratch, { recursive: true, force: true }), 'rm scratch');
  lnd = cleanup.use(await startLndPeer({ alias: 'lnc-node' }), 'lnd peer');
  mailbox = cleanup.use(await startMailbox(scratch), 'mailbox');
  secrets.push(lnd.macaroon.toString('hex'));
});
after(() => cleanup.run());

async function node(): Promise<LncNode> {
  const n = cleanup.use(await startLncNode(mailbox, lnd), 'lnc node');
  secrets.push(...phraseParts(n.phrase), n.macaroonHex);
  return n;
}

/** The phrase, and every two adjacent words of it (single words are ordinary English and occur in messages). */
function phraseParts(phrase: string): string[] {
  const w = phrase.split(' ');
  return [phrase, ...w.slice(1).map((x, i) => `${w[i]} ${x}`), phraseToEntropy(phrase).toString('hex')];
}

function sink(): PassThrough {
  const s = new PassThrough();
  s.on('data', (c: Buffer) => logLines.push(...c.toString().split('\n').filter(Boolean)));
  return s;
}

function dataDir(): string {
  return mkdtempSync(join(scratch, 'data-'));
}

function backend(phrase: string, dir: string, timeoutMs = 3000, extra: Record<string, unknown> = {}): LightningBackend {
  const cfg = lncConfigSchema.parse({ type: 'lnc', pairing_phrase: phrase, mailbox_server: mailbox.address, mailbox_tls_ca_path: mailbox.caPath, ...extra });
  const b = createLncBackend(cfg, { configDir: '/', dataDir: dir, log: createLogger('debug', sink()), timeoutMs });
  cleanup.add(() => b.close(), 'close lnc backend');
  return b;
}

async function rejection(p: Promise<unknown>): Promise<BackendCallError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof BackendCallError, `expected BackendCallError, got ${String(err)}`);
    errors.push(err.message, String(err), err.stack ?? '');
    return err;
  }
  assert.fail('expected the call to fail');
}

/** Session keys as stored, so the no-secret check can look for them too. */
function rememberSessionKeys(dir: string): void {
  const s = JSON.parse(readFileSync(join(dir, SESSION_FILE), 'utf8')) as { local_key: string; remote_key?: string };
  secrets.push(s.local_key);
  if (s.remote_key) secrets.push(s.remote_key);
}

test('pairs with the phrase, creates an invoice through the node, looks it up open and then settled', async () => {
  const n = await node();
  const dir = dataDir();
  const b = backend(n.phrase, dir);
  assert.match(await b.check!(), /^lnd "lnc-node" \(.*\) on regtest, .* via LNC mailbox 127\.0\.0\.1:\d+$/);
  const inv = await b.createInvoice({ amountMsat: 21_000, memo: 'lnc test', expirySecs: 600 });
  const issued = lnd.issued.get(inv.paymentHash.toString('hex'));
  assert.ok(issued, 'the invoice was minted by the lnd behind the LNC node');
  assert.equal(issued.bolt11, inv.bolt11);
  assert.equal(issued.amountMsat, 21_000);
  assert.deepEqual(await b.lookupInvoice!(inv.paymentHash), { state: 'open' });
  assert.deepEqual(await b.lookupInvoice!(randomBytes(32)), { state: 'unknown' });
  const preimage = lnd.settle(inv.bolt11);
  const st = await b.lookupInvoice!(inv.paymentHash);
  assert.ok(st.state === 'settled' && st.preimage.equals(preimage));
  assert.deepEqual(n.handshakes, ['XX']);
  assert.deepEqual(n.calls, ['/lnrpc.Lightning/GetInfo', '/lnrpc.Lightning/AddInvoice', '/lnrpc.Lightning/LookupInvoice', '/lnrpc.Lightning/LookupInvoice', '/lnrpc.Lightning/LookupInvoice']);
  assert.match(b.describe(), /^lnc via mailbox 127\.0\.0\.1:\d+, paired session, connected$/);
  // The session file: 0600, keys only, never the phrase.
  const path = join(dir, SESSION_FILE);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const text = readFileSync(path, 'utf8');
  for (const part of phraseParts(n.phrase)) assert.ok(!text.includes(part), 'no part of the phrase in the session file');
  rememberSessionKeys(dir);
  assert.ok(n.clientKey(), 'the node learned our static key');
});

test('restart reconnects with the stored session keys (KK); the phrase is no longer needed and no longer works', async () => {
  const n = await node();
  const dir = dataDir();
  const first = backend(n.phrase, dir);
  await first.check!();
  await first.close();
  // A phrase pairs once: its mailbox streams are gone after pairing.
  const again = backend(n.phrase, dir);
  assert.match(await again.check!(), /via LNC mailbox/);
  assert.deepEqual(n.handshakes, ['XX', 'KK']);
  await again.close();
  // Another data dir (no stored keys) can only try the phrase, which the mailbox no longer knows.
  const stranger = backend(n.phrase, dataDir(), 1500);
  const err = await rejection(stranger.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
  assert.match(err.message, /has no session for lightning\.pairing_phrase: the phrase is mistyped, was already used to pair another client/);
  assert.deepEqual(n.handshakes, ['XX', 'KK']);
  rememberSessionKeys(dir);
});

test('a phrase mistyped after pairing loses nothing: once corrected, the backend reconnects with the kept session keys (KK)', async () => {
  const n = await node();
  const dir = dataDir();
  const first = backend(n.phrase, dir);
  await first.check!();
  await first.close();
  let typo = randomPhrase();
  while (typo === n.phrase) typo = randomPhrase();
  secrets.push(...phraseParts(typo));
  const mistyped = backend(typo, dir, 1500);
  const err = await rejection(mistyped.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
  assert.match(err.message, /lightning\.pairing_phrase/);
  await mistyped.close();
  // The phrase was used up by the first pairing: only the kept session keys can reconnect now.
  const fixed = backend(n.phrase, dir);
  assert.match(await fixed.check!(), /via LNC mailbox/);
  assert.deepEqual(n.handshakes, ['XX', 'KK']);
  await fixed.close();
  rememberSessionKeys(dir);
});

test("a check (at start, doctor) waits for the first connection as long as its caller allows, past one call's budget", async () => {
  const n = await node();
  n.vanish();
  const b = backend(n.phrase, dataDir(), 1000);
  const checking = b.check!(AbortSignal.timeout(30_000));
  // Longer than one call's budget (1000 ms): the node answers the pairing only after that.
  await sleep(1500);
  n.comeBack();
  assert.match(await checking, /via LNC mailbox/);
  // A caller that gives up first gets the connection state, not a bare abort.
  const slow = await node();
  slow.vanish();
  const c = backend(slow.phrase, dataDir(), 1000);
  const err = await rejection(c.check!(AbortSignal.timeout(300)));
  assert.match(err.message, /^lnc: still connecting to the node through 127\.0\.0\.1:\d+/);
  slow.comeBack();
});

test('wrong phrase: a clear error naming the key, never the phrase, and no handshake at the node', async () => {
  const n = await node();
  let wrong = randomPhrase();
  while (wrong === n.phrase) wrong = randomPhrase();
  secrets.push(...phraseParts(wrong));
  const b = backend(wrong, dataDir(), 1500);
  const err = await rejection(b.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
  assert.match(err.message, /^lnc: (not connected to the node|still connecting to the node).*lightning\.pairing_phrase/);
  assert.equal(err.retryable, true, 'the gate answers 503 and keeps retrying in the background');
  const check = await rejection(b.check!());
  assert.match(check.message, /lightning\.pairing_phrase/);
  assert.deepEqual(n.handshakes, []);
});

test('mailbox unreachable or not trusted: a clear error naming lightning.mailbox_server, within the budget', async () => {
  const n = await node();
  const closed = await freePort();
  const nothing = createLncBackend(lncConfigSchema.parse({ type: 'lnc', pairing_phrase: n.phrase, mailbox_server: `127.0.0.1:${closed}` }), { configDir: '/', dataDir: dataDir(), log: createLogger('debug', sink()), timeoutMs: 1500 });
  cleanup.add(() => nothing.close(), 'close lnc backend');
  assert.match((await rejection(nothing.check!())).message, /lightning\.mailbox_server: cannot connect to the mailbox 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
  // The test mailbox's self-signed certificate without mailbox_tls_ca_path: TLS refuses it.
  const untrusted = createLncBackend(lncConfigSchema.parse({ type: 'lnc', pairing_phrase: n.phrase, mailbox_server: mailbox.address }), { configDir: '/', dataDir: dataDir(), log: createLogger('debug', sink()), timeoutMs: 1500 });
  cleanup.add(() => untrusted.close(), 'close lnc backend');
  assert.match((await rejection(untrusted.check!())).message, /lightning\.mailbox_server: cannot connect to the mailbox .*certificate/);
  assert.deepEqual(n.handshakes, []);
});

test('the session macaroon is sent on every call; a session without the permissions gets a clear error', async () => {
  const n = await node();
  const b = backend(n.phrase, dataDir());
  await b.check!();
  n.knobs.denyCalls = true;
  const err = await rejection(b.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
  assert.match(err.message, /refused AddInvoice: verification failed.*must allow invoices:read, invoices:write and info:read \(litcli sessions add --type custom/);
  assert.equal(err.retryable, false);
  // A node echoing secrets in its error text: the phrase and the session macaroon are blanked.
  n.knobs.denyMessage = `verification failed for ${n.phrase.toUpperCase().split(' ').join(', ')} with macaroon ${n.macaroonHex}`;
  const echoed = await rejection(b.lookupInvoice!(randomBytes(32)));
  assert.match(echoed.message, /refused LookupInvoice: verification failed for \[pairing phrase\] with macaroon \[macaroon\]/);
  n.knobs.denyCalls = false;
  await b.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 });
});

test('a second client on the same session (doctor while l402d runs) gets a clear "in use" error; the first keeps working', async () => {
  const n = await node();
  const dir = dataDir();
  const pairing = backend(n.phrase, dir);
  await pairing.check!();
  await pairing.close();
  // l402d restarted: it runs on the session keys (KK streams) now.
  const running = backend(n.phrase, dir);
  await waitFor('the reconnect on the session keys', () => running.check!(), { timeoutMs: 20_000, intervalMs: 100 });
  const second = backend(n.phrase, dir, 1500);
  const err = await rejection(second.check!());
  assert.match(err.message, /another client is connected to this LNC session \(a second l402d, workers > 1, or l402d doctor while l402d runs\)/);
  await second.close();
  const inv = await running.createInvoice({ amountMsat: 3000, memo: 'still here', expirySecs: 60 });
  assert.ok(lnd.issued.has(inv.paymentHash.toString('hex')));
  rememberSessionKeys(dir);
});

test('node vanishing mid-call: the call fails within its budget, the backend reconnects once the node is back', async () => {
  const n = await node();
  const dir = dataDir();
  const b = backend(n.phrase, dir, 1500);
  await waitFor('the first connection', () => b.check!(), { timeoutMs: 20_000, intervalMs: 100 });
  n.vanishOnNextCall();
  const err = await rejection(b.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
  assert.match(err.message, /AddInvoice: no answer within 1500 ms/);
  n.comeBack();
  const inv = await waitFor('the backend to reconnect', () => b.createInvoice({ amountMsat: 2000, memo: 'back', expirySecs: 60 }), { timeoutMs: 30_000, intervalMs: 200 });
  assert.ok(lnd.issued.has(inv.paymentHash.toString('hex')));
  assert.deepEqual(n.handshakes, ['XX', 'KK']);
  rememberSessionKeys(dir);
});

const nginxBin = requireTool('nginx');

test('end to end through nginx: 402 with an invoice minted over LNC, settle at the node, preimage → 200', { skip: nginxBin ? false : 'nginx not installed' }, async () => {
  const n = await node();
  const stackCleanup = new Cleanup();
  try {
    const dir = dataDir();
    const cfg = lncConfigSchema.parse({ type: 'lnc', pairing_phrase: n.phrase, mailbox_server: mailbox.address, mailbox_tls_ca_path: mailbox.caPath });
    const b = createLncBackend(cfg, { configDir: '/', dataDir: dir, log: createLogger('debug', sink()), timeoutMs: 3000 });
    const s = await startStack(stackCleanup, { backend: b }); // the gate owns and closes the backend
    const r = await http1(s.origin + '/premium', { headers: { accept: 'application/json' } });
    assert.equal(r.status, 402, r.body);
    const body = JSON.parse(r.body) as { invoice: string; macaroon: string; payment_hash: string };
    assert.equal(lnd.issued.get(body.payment_hash)?.bolt11, body.invoice, 'the challenge carries the invoice the node minted');
    const preimage = lnd.settle(body.invoice).toString('hex');
    const ok = await http1(s.origin + '/premium', { headers: { authorization: `L402 ${body.macaroon}:${preimage}` } });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(s.upstream.hits, 1);
    logLines.push(...s.logs);
    rememberSessionKeys(dir);
  } finally {
    await stackCleanup.run();
  }
});

test('mailbox down: bounded 503 with Retry-After through nginx, then recovery once it is back', { skip: nginxBin ? false : 'nginx not installed' }, async () => {
  const n = await node();
  const stackCleanup = new Cleanup();
  try {
    const dir = dataDir();
    const cfg = lncConfigSchema.parse({ type: 'lnc', pairing_phrase: n.phrase, mailbox_server: mailbox.address, mailbox_tls_ca_path: mailbox.caPath });
    const b = createLncBackend(cfg, { configDir: '/', dataDir: dir, log: createLogger('debug', sink()), timeoutMs: 1500 });
    const s = await startStack(stackCleanup, { backend: b, extraYaml: 'timeouts: { backend_ms: 1500 }\n' });
    assert.equal((await http1(s.origin + '/premium', { headers: { accept: 'application/json' } })).status, 402);
    mailbox.down();
    try {
      const r = await waitFor('a 503 while the mailbox is down', async () => {
        const res = await http1(s.origin + '/premium', { headers: { accept: 'application/json' } });
        return res.status === 503 ? res : undefined;
      }, { timeoutMs: 20_000, intervalMs: 100 });
      assert.equal(r.headers['retry-after'], '5');
      assert.equal(JSON.parse(r.body).reason, 'backend_unavailable');
      assert.equal(s.upstream.hits, 0);
    } finally {
      mailbox.up();
    }
    const back = await waitFor('a 402 once the mailbox is back', async () => {
      const res = await http1(s.origin + '/premium', { headers: { accept: 'application/json' } });
      return res.status === 402 ? res : undefined;
    }, { timeoutMs: 30_000, intervalMs: 200 });
    const body = JSON.parse(back.body) as { payment_hash: string };
    assert.ok(lnd.issued.has(body.payment_hash));
    assert.ok(n.handshakes.length >= 2 && n.handshakes.slice(1).every((h) => h === 'KK'), 'reconnects used the session keys');
    logLines.push(...s.logs);
    rememberSessionKeys(dir);
  } finally {
    await stackCleanup.run();
  }
});

test('l402d doctor pairs through the mailbox with the phrase from the environment, reports the node, prints no secret', async () => {
  const n = await node();
  const dir = dataDir();
  const cfgPath = join(dir, 'l402.yaml');
  writeFileSync(cfgPath, [
    'listen: 127.0.0.1:18402',
    `data_dir: ${dir}`,
    `root_key: ${TEST_ROOT_KEY}`,
    'timeouts: { backend_ms: 8000, render_ms: 9000 }',
    `lightning: { type: lnc, pairing_phrase: "\${LNC_PAIRING_PHRASE}", mailbox_server: ${mailbox.address}, mailbox_tls_ca_path: ${mailbox.caPath} }`,
    'routes:',
    '  - { match: /premium, amount_msat: 1000, auto_detect_payment: true }',
    '',
  ].join('\n'));
  const run = promisify(execFile);
  const r = await run(process.execPath, l402dArgs('doctor', '--config', cfgPath), { env: { ...process.env, L402_CONFIG: '', LNC_PAIRING_PHRASE: n.phrase }, timeout: 60_000 }).catch((e: { stdout: string; stderr: string }) => e);
  assert.match(r.stdout, /ok {3}lightning: lnc: lnd "lnc-node" \(.*\) on regtest, .*via LNC mailbox/, r.stdout + r.stderr);
  assert.ok(!/auto-detect/.test(r.stdout), 'lnc supports settlement lookups');
  assert.deepEqual(n.handshakes, ['XX']);
  // The daemon that later starts on the same data dir reuses the keys doctor paired.
  rememberSessionKeys(dir);
  errors.push(r.stdout, r.stderr);
});

test('no secret (phrase, its words, session keys, macaroons) in any log line or error of this file', () => {
  assert.ok(logLines.length > 10 && errors.length > 5, 'there was something to look at');
  assert.ok(logLines.some((l) => l.includes('lnc: connected to the node')));
  const all = [...logLines, ...errors].join('\n').toLowerCase();
  for (const s of secrets) assert.ok(!all.includes(s.toLowerCase()), `a secret leaked (${s.length} chars, starting ${s.slice(0, 3)}…)`);
});
