// Red team, standalone mode (l402d with `upstream:` facing clients): a payment goes back only for a failure
// that is the upstream's. A client that stalls its own request body (a chunked body without its last chunk,
// a Content-Length it never sends in full), sends a broken one, or disconnects while sending it, never gets
// the payment back, whatever the upstream then does: else one single-use credential drives a streaming
// upstream again and again for free. The honest case stays: the whole request reached the upstream, which
// then timed out or reset before answering, gives the payment back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1, requireTool, waitFor } from './harness.js';
import { headerLines, httpsRequest, makeCert, paymentParams } from '../support/https-client.js';
import { TEST_ROOT_KEY } from './gate-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { sleep } from '../../src/util/timeout.js';

const UPSTREAM_TIMEOUT_MS = 1000;

/** A streaming-ingest app: it reads each body as it comes (counting bytes), and answers when it ends, or not. */
interface Ingest {
  port: number;
  /** `stuck`: never reads the body at all. */
  mode: 'ok' | 'hang' | 'reset' | 'stuck';
  /** Requests that reached it, whose body ended, and whose connection went away before the body ended. */
  started: number;
  completed: number;
  cut: number;
  bytes: number;
}

const cleanup = new Cleanup();
let ingest: Ingest;
let port: number;
let wallet: DevWallet;

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-redteam-body-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const held = new Set<net.Socket>();
  const app = http.createServer((req, res) => {
    ingest.started++;
    if (ingest.mode === 'stuck') return;
    let ended = false;
    req.on('data', (c: Buffer) => (ingest.bytes += c.length));
    req.on('end', () => {
      ended = true;
      ingest.completed++;
      if (ingest.mode === 'ok') res.end(`ingested ${req.url}\n`);
      else if (ingest.mode === 'reset') req.socket.resetAndDestroy();
    });
    req.on('close', () => {
      if (!ended) ingest.cut++;
    });
    req.on('error', () => {});
  });
  app.on('connection', (s: net.Socket) => {
    held.add(s);
    s.on('close', () => held.delete(s));
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  cleanup.add(async () => {
    for (const s of held) s.destroy();
    await new Promise<void>((r) => app.close(() => r()));
  });
  ingest = { port: (app.address() as net.AddressInfo).port, mode: 'ok', started: 0, completed: 0, cut: 0, bytes: 0 };
  port = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${ingest.port}\nupstream_timeout_ms: ${UPSTREAM_TIMEOUT_MS}\nlog: { level: silent }
lightning: { type: dev }
routes:
  - { match: /ingest/, amount_msat: 900000 }
  - { match: /meter/, amount_msat: 1500, access: balance, balance_msat: 3000 }
`,
    { env: {} },
  );
  const gate = await startGate(cfg, { log: createLogger('silent') });
  cleanup.add(() => gate.close());
  wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
});
after(() => cleanup.run());

const json = (body: string) => JSON.parse(body) as Record<string, unknown>;

/** A complete request with a body. */
const post = (path: string, headers: Record<string, string> = {}, body = 'whole body\n') =>
  http1(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers: { accept: 'application/json', ...headers }, body });

async function buy(path: string): Promise<string> {
  const r = await post(path);
  assert.equal(r.status, 402, r.body);
  const c = json(r.body);
  return `L402 ${String(c.macaroon)}:${wallet.pay(String(c.invoice)).toString('hex')}`;
}

/** The head of a POST carrying `auth`, framed as `framing` says (a Content-Length of 1000 bytes, or chunked). */
function head(path: string, auth: string, framing: 'chunked' | 'length'): string {
  return `POST ${path} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nAuthorization: ${auth}\r\n${framing === 'chunked' ? 'Transfer-Encoding: chunked' : 'Content-Length: 1000'}\r\n\r\n`;
}
/** Part of the body only: never its last chunk, never its full length. */
function part(framing: 'chunked' | 'length'): string {
  return framing === 'chunked' ? `10\r\n${'p'.repeat(16)}\r\n` : 'p'.repeat(16);
}

/**
 * Writes `bytes` on one connection, then sends nothing more: resolves with the first whole answer l402d writes
 * (or what it wrote before closing), bounded.
 */
function stalled(bytes: string): Promise<{ status: number; body: string; raw: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(bytes, 'latin1'));
    let raw = '';
    const done = () => {
      sock.destroy();
      const [, ...rest] = raw.split('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(raw)?.[1] ?? 0), body: rest.join('\r\n\r\n'), raw });
    };
    sock.on('data', (c: Buffer) => {
      raw += c.toString('latin1');
      const split = raw.indexOf('\r\n\r\n');
      const len = /\r\ncontent-length: *(\d+)/i.exec(raw.slice(0, split));
      if (split >= 0 && len && raw.length - split - 4 >= Number(len[1])) done();
    });
    sock.on('close', done);
    sock.on('error', reject);
    sock.setTimeout(10_000, () => sock.destroy(new Error(`no answer within 10 s; got ${JSON.stringify(raw)}`)));
  });
}

for (const framing of ['chunked', 'length'] as const) {
  test(`standalone: a ${framing === 'chunked' ? 'chunked body without its last chunk' : 'body shorter than its Content-Length'} is the client's timeout (408): the single-use payment stays spent and the upstream's request ends`, async () => {
    const auth = await buy('/ingest/stall');
    ingest.mode = 'ok';
    const before = { started: ingest.started, cut: ingest.cut, bytes: ingest.bytes };
    const r = await stalled(head('/ingest/stall', auth, framing) + part(framing));
    // The upstream did get the request and what the client sent of its body (a streaming upstream works on it).
    assert.equal(ingest.started, before.started + 1);
    assert.ok(ingest.bytes > before.bytes, 'the upstream read the part that was sent');
    assert.equal(r.status, 408, r.raw);
    assert.equal(json(r.body).reason, 'request_timeout', r.body);
    assert.equal(json(r.body).payment, 'consumed', r.body);
    // The upstream's connection for it does not outlive the client's request.
    await waitFor('the upstream request cut', () => ingest.cut > before.cut);
    const again = await post('/ingest/stall', { authorization: auth });
    assert.equal(again.status, 401, again.body);
    assert.equal(json(again.body).reason, 'already_used', again.body);
  });

  test(`standalone: a client that disconnects (FIN, then RST) in the middle of its ${framing} body does not get the payment back, whatever the upstream then does`, async () => {
    for (const how of ['close', 'reset'] as const) {
      const auth = await buy('/ingest/gone');
      ingest.mode = 'ok';
      const before = { started: ingest.started, cut: ingest.cut };
      const sock = net.connect(port, '127.0.0.1', () => sock.write(head('/ingest/gone', auth, framing) + part(framing), 'latin1'));
      sock.on('error', () => {});
      await waitFor('the request at the upstream', () => ingest.started > before.started);
      if (how === 'close') sock.destroy();
      else sock.resetAndDestroy();
      await waitFor('the upstream request cut', () => ingest.cut > before.cut);
      // Past the upstream timeout: nothing l402d does after the client left gives the payment back.
      await sleep(UPSTREAM_TIMEOUT_MS + 500);
      const again = await post('/ingest/gone', { authorization: auth });
      assert.equal(again.status, 401, again.body);
      assert.equal(json(again.body).reason, 'already_used', `${how}: ${again.body}`);
    }
  });
}

test('standalone: a broken chunked body (a bad chunk size after a good chunk) is a 400 and the payment stays spent', async () => {
  const auth = await buy('/ingest/broken');
  ingest.mode = 'ok';
  const r = await stalled(head('/ingest/broken', auth, 'chunked') + part('chunked') + 'zz\r\nnot hex\r\n');
  assert.equal(r.status, 400, r.raw);
  await sleep(UPSTREAM_TIMEOUT_MS + 500);
  const again = await post('/ingest/broken', { authorization: auth });
  assert.equal(again.status, 401, again.body);
  assert.equal(json(again.body).reason, 'already_used', again.body);
});

test('standalone: a balance draw for a request whose body stalls is not given back', async () => {
  const auth = await buy('/meter/x');
  ingest.mode = 'ok';
  const r = await stalled(head('/meter/x', auth, 'chunked') + part('chunked'));
  assert.equal(r.status, 408, r.raw);
  await sleep(UPSTREAM_TIMEOUT_MS + 500);
  const next = await post('/meter/x', { authorization: auth });
  assert.equal(next.status, 200, next.body);
  assert.equal(next.headers['x-l402-balance-msat'], '0', 'the stalled request drew 1500 of 3000, and kept it');
});

test('standalone: the whole body reached the upstream, which then timed out or reset before answering: 504/502 and the payment back (both framings)', async () => {
  const auth = await buy('/ingest/honest');
  for (const [mode, status] of [['hang', 504], ['reset', 502]] as const) {
    for (const framing of ['chunked', 'length'] as const) {
      ingest.mode = mode;
      const completed = ingest.completed;
      const body = framing === 'chunked' ? `${part('chunked')}0\r\n\r\n` : 'p'.repeat(1000);
      const r = await stalled(head('/ingest/honest', auth, framing) + body);
      assert.equal(ingest.completed, completed + 1, 'the upstream read the whole body');
      assert.equal(r.status, status, `${mode} ${framing}: ${r.raw}`);
      assert.equal(json(r.body).payment, 'not_consumed', r.body);
    }
  }
  ingest.mode = 'ok';
  const served = await post('/ingest/honest', { authorization: auth });
  assert.equal(served.status, 200, served.body);
  assert.equal((await post('/ingest/honest', { authorization: auth })).status, 401, 'then spent');
});

test('standalone: an answer the proxy cannot read (a header too large for it, provoked by the client) is the upstream having answered: 502, the payment stays spent', async (t) => {
  // An app that echoes a request header into its answer: a client sends a large one (l402d reads 64 KiB of
  // request headers), the app does the work and answers, and l402d cannot parse that answer.
  const echo = http.createServer({ maxHeaderSize: 128 * 1024 }, (req, res) => {
    echoed++;
    req.resume();
    res.setHeader('x-echo', String(req.headers['x-echo'] ?? ''));
    res.end('done\n');
  });
  let echoed = 0;
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => echo.close(() => r())));
  const dir = mkdtempSync(join(tmpdir(), 'l402-redteam-echo-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const p = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${p}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${(echo.address() as net.AddressInfo).port}\nlog: { level: silent }
lightning: { type: dev }
routes:
  - { match: /echo/, amount_msat: 900000 }
`,
    { env: {} },
  );
  const gate = await startGate(cfg, { log: createLogger('silent') });
  t.after(() => gate.close());
  const w = DevWallet.open(dir);
  t.after(() => w.close());
  const get = (headers: Record<string, string> = {}) => http1(`http://127.0.0.1:${p}/echo/x`, { headers: { accept: 'application/json', ...headers } });
  const c = json((await get()).body);
  const auth = `L402 ${String(c.macaroon)}:${w.pay(String(c.invoice)).toString('hex')}`;
  const r = await get({ authorization: auth, 'x-echo': 'e'.repeat(40 * 1024) });
  assert.equal(echoed, 1, 'the app did the work');
  assert.equal(r.status, 502, r.body);
  assert.equal(json(r.body).payment, 'consumed', r.body);
  const again = await get({ authorization: auth });
  assert.equal(again.status, 401, again.body);
  assert.equal(json(again.body).reason, 'already_used', again.body);
});

test('standalone: a client dripping its body (a byte well within upstream_timeout_ms, for ever) gets 408 once the whole-request timeout passes, and the payment stays spent', { timeout: 90_000 }, async () => {
  const auth = await buy('/ingest/drip');
  ingest.mode = 'ok';
  const before = { cut: ingest.cut };
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  sock.write(head('/ingest/drip', auth, 'chunked'), 'latin1');
  let raw = '';
  sock.on('data', (c: Buffer) => (raw += c.toString('latin1')));
  sock.on('error', () => {});
  let closed = false;
  sock.on('close', () => (closed = true));
  try {
    // One chunk every UPSTREAM_TIMEOUT_MS / 4: the upstream connection is never silent for long enough.
    for (let i = 0; i < 400 && !closed && !raw.includes('\r\n\r\n'); i++) {
      sock.write('1\r\nd\r\n');
      await sleep(UPSTREAM_TIMEOUT_MS / 4);
    }
  } finally {
    sock.destroy();
  }
  assert.match(raw, /^HTTP\/1\.1 408 /, raw);
  assert.equal(json(raw.split('\r\n\r\n')[1]!).payment, 'consumed', raw);
  await waitFor('the upstream request cut', () => ingest.cut > before.cut);
  const again = await post('/ingest/drip', { authorization: auth });
  assert.equal(again.status, 401, again.body);
  assert.equal(json(again.body).reason, 'already_used', again.body);
});

const opensslBin = requireTool('openssl');

test('standalone with tls: an MPP or x402 charge for a request whose body stalls is not given back either', { skip: opensslBin ? false : 'openssl not installed' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-redteam-body-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { cert, key } = makeCert(opensslBin!, dir);
  const ca = readFileSync(cert);
  const p = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${p}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${ingest.port}\nupstream_timeout_ms: ${UPSTREAM_TIMEOUT_MS}\ntls: { cert_file: ${cert}, key_file: ${key} }\nlog: { level: silent }
lightning: { type: dev }
routes:
  - { match: /charge/, amount_msat: 10000, schemes: [l402, mpp, x402] }
`,
    { env: {} },
  );
  const gate = await startGate(cfg, { log: createLogger('silent') });
  t.after(() => gate.close());
  const w = DevWallet.open(dir);
  t.after(() => w.close());
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64');
  const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const offer = await httpsRequest(ca, `https://127.0.0.1:${p}/charge/x`, {}, { method: 'POST', body: '' });
  assert.equal(offer.status, 402, offer.body);
  // MPP: the Payment challenge paid, its preimage in the credential.
  const pp = paymentParams(headerLines(offer, 'www-authenticate').find((l) => l.startsWith('Payment '))!);
  const inv = (JSON.parse(Buffer.from(pp.request!, 'base64url').toString()) as { methodDetails: { invoice: string } }).methodDetails.invoice;
  const challenge = { id: pp.id, realm: pp.realm, method: pp.method, intent: pp.intent, request: pp.request, expires: pp.expires };
  const mpp = `Payment ${b64url({ challenge, payload: { preimage: w.pay(inv).toString('hex') } })}`;
  // x402: the PAYMENT-REQUIRED invoice paid, the payload as Alby's client builds it.
  const a = (JSON.parse(Buffer.from(String(offer.headers['payment-required']), 'base64').toString()) as { accepts: Array<{ scheme: string; network: string; extra: { invoice: string } }> }).accepts[0]!;
  w.pay(a.extra.invoice);
  const x402 = b64({ x402Version: 2, scheme: a.scheme, network: a.network, payload: { invoice: a.extra.invoice }, accepted: a });
  ingest.mode = 'ok';
  for (const [name, value] of [['Authorization', mpp], ['Payment-Signature', x402]] as const) {
    const started = ingest.started;
    const raw = await new Promise<string>((resolve, reject) => {
      const sock = tls.connect({ host: '127.0.0.1', port: p, ca }, () =>
        sock.write(`POST /charge/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n${name}: ${value}\r\nTransfer-Encoding: chunked\r\n\r\n${part('chunked')}`),
      );
      let out = '';
      sock.on('data', (c: Buffer) => {
        out += c.toString('latin1');
        if (out.includes('\r\n\r\n') && out.split('\r\n\r\n')[1]!.endsWith('\n')) sock.destroy();
      });
      sock.on('close', () => resolve(out));
      sock.on('error', reject);
      sock.setTimeout(10_000, () => sock.destroy(new Error(`no answer within 10 s; got ${JSON.stringify(out)}`)));
    });
    assert.equal(ingest.started, started + 1, `${name}: the request reached the upstream`);
    assert.match(raw, /^HTTP\/1\.1 408 /, `${name}: ${raw}`);
    await sleep(UPSTREAM_TIMEOUT_MS + 500);
    const again = await httpsRequest(ca, `https://127.0.0.1:${p}/charge/x`, { [name.toLowerCase()]: value }, { method: 'POST', body: 'whole\n' });
    assert.equal(again.status, 402, `${name}: the charge was spent by the stalled request: ${again.body}`);
    assert.equal(ingest.started, started + 1, `${name}: the charge did not reach the upstream twice`);
  }
});

test('standalone: an upstream that stops reading a body the client is still sending: 504, and the payment stays spent (it may have worked on the part it got)', async () => {
  const auth = await buy('/ingest/stuck');
  ingest.mode = 'stuck';
  const started = ingest.started;
  // More than the loopback buffers between the client, l402d and the upstream hold: l402d has bytes waiting
  // for the upstream to read when its silence ends the request.
  const total = 64 * 1024 * 1024;
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  let raw = '';
  let closed = false;
  sock.on('data', (c: Buffer) => (raw += c.toString('latin1')));
  sock.on('close', () => (closed = true));
  sock.on('error', () => {});
  try {
    sock.write(`POST /ingest/stuck HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nAuthorization: ${auth}\r\nContent-Length: ${total}\r\n\r\n`);
    const chunk = Buffer.alloc(64 * 1024, 'p');
    let sent = 0;
    // Bounded: as much as the connection takes, until l402d answers (the upstream timeout) or 10 s pass.
    for (let i = 0; i < 400 && sent < total && !closed && !raw.includes('\r\n\r\n'); i++) {
      while (sent < total && sock.write(chunk)) sent += chunk.length;
      await sleep(25);
    }
    await waitFor('the answer', () => raw.includes('\r\n\r\n') && raw.split('\r\n\r\n')[1]!.endsWith('\n'));
  } finally {
    sock.destroy();
  }
  assert.equal(ingest.started, started + 1);
  assert.match(raw, /^HTTP\/1\.1 504 /, raw);
  assert.equal(json(raw.split('\r\n\r\n')[1]!).payment, 'consumed', raw);
  ingest.mode = 'ok';
  const again = await post('/ingest/stuck', { authorization: auth });
  assert.equal(again.status, 401, again.body);
  assert.equal(json(again.body).reason, 'already_used', again.body);
});
