// Red team, standalone mode (l402d with `upstream:` facing clients): what reaches the upstream is exactly the
// request that was decided on. A request body is never read by the upstream as further requests (smuggling),
// and no client header can pass for the identity the gate vouches for.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, type CountingUpstream } from './harness.js';
import { buyStandalone, sendTo, startStandalone, type Standalone } from './standalone-fixture.js';
import { TEST_ROOT_KEY } from './gate-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { sleep } from '../../src/util/timeout.js';

const cleanup = new Cleanup();
let port: number;
let upstream: CountingUpstream;
let stack: Standalone;

before(async () => {
  stack = await startStandalone(cleanup, 'redteam-standalone', 'error');
  ({ port, upstream } = stack);
});
after(() => cleanup.run());

const send = (method: string, path: string, headers: Record<string, string | string[]> = {}) => sendTo(port, method, path, headers);
const buy = (path: string) => buyStandalone(stack, path);

/** Writes `bytes` on one connection and returns everything l402d sends back until it closes (bounded). */
function rawExchange(bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(bytes, 'latin1'));
    let out = '';
    sock.on('data', (c: Buffer) => (out += c.toString('latin1')));
    sock.on('end', () => resolve(out));
    sock.on('close', () => resolve(out));
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error(`no close within 5 s; got ${JSON.stringify(out)}`)));
  });
}

async function settle(): Promise<void> {
  // The upstream records a request when its body ends; give a smuggled one the same chance to arrive.
  for (let i = 0; i < 20; i++) await sleep(25);
}

test('standalone: a chunked body on a paid GET/DELETE/OPTIONS is forwarded as that body, never as a request of its own', async () => {
  const cheap = await buy('/cheap/x');
  for (const method of ['GET', 'DELETE', 'OPTIONS', 'PUT']) {
    for (const te of ['chunked', 'CHUNKED', 'gzip, chunked']) {
      upstream.reset();
      const smuggled = `GET /expensive/secret HTTP/1.1\r\nHost: x\r\n\r\n`;
      const req =
        `${method} /cheap/x HTTP/1.1\r\nHost: x\r\nAuthorization: ${cheap}\r\nTransfer-Encoding: ${te}\r\nConnection: close\r\n\r\n` +
        `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`;
      const reply = await rawExchange(req);
      await settle();
      // A coding before chunked is refused before any decision, as nginx refuses it (redteam-s11a.test.ts).
      if (te !== 'chunked' && te !== 'CHUNKED') {
        assert.match(reply, /^HTTP\/1\.1 400 /, `${method} ${te}: ${reply}`);
        assert.deepEqual(upstream.requests, [], `${method} (${te}): nothing reaches the upstream`);
        continue;
      }
      assert.match(reply, /^HTTP\/1\.1 200 /, `${method} ${te}: ${reply}`);
      assert.deepEqual(
        upstream.requests.map((r) => `${r.method} ${r.url}`),
        [`${method} /cheap/x`],
        `${method} (${te}): the upstream must see one request, the one paid for`,
      );
      assert.equal(upstream.requests[0]!.body, smuggled, `${method} (${te}): the body arrives as the body`);
    }
  }
});

test('standalone: an unpaid request cannot ride in the body of a paid one to a single-use route', async () => {
  // A per-request credential: the smuggled request names another path that nobody paid for.
  const auth = await buy('/expensive/a');
  upstream.reset();
  const smuggled = `POST /expensive/b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`;
  const reply = await rawExchange(
    `GET /expensive/a HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nTransfer-Encoding: chunked\r\n\r\n${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n` +
      // The next request on the same connection is decided on its own (unpaid: 402).
      `GET /expensive/c HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n`,
  );
  await settle();
  assert.match(reply, /^HTTP\/1\.1 200 /, reply);
  assert.match(reply, /HTTP\/1\.1 402 /, reply);
  assert.deepEqual(upstream.requests.map((r) => `${r.method} ${r.url}`), ['GET /expensive/a']);
});

test('standalone: no spelling of an identity header (underscores, case) reaches the upstream from a client', async () => {
  const auth = await buy('/expensive/id');
  upstream.reset();
  const forged = { X_L402_Token_Id: 'forged', x_l402_rail: 'forged', 'X-L402_Route': 'forged', X_L402_AMOUNT_MSAT: '1', 'x-l402-request-id': 'forged' };
  const r = await send('GET', '/expensive/id', { ...forged, authorization: auth });
  assert.equal(r.status, 200, r.body);
  const h = upstream.requests.at(-1)!.headers;
  for (const name of Object.keys(h)) {
    // An upstream behind CGI/WSGI/Rack reads X_L402_Token_Id as X-L402-Token-Id (HTTP_X_L402_TOKEN_ID).
    if (name.replace(/_/g, '-').startsWith('x-l402-')) assert.notEqual(h[name], 'forged', `${name} reached the upstream`);
  }
  assert.match(String(h['x-l402-token-id']), /^[0-9a-f]{64}$/);
});

test('standalone: CONNECT gets a problem document and the connection closes, never a tunnel or a silent drop', async () => {
  upstream.reset();
  for (const target of ['127.0.0.1:443', `127.0.0.1:${upstream.port}`, '/cheap/x']) {
    const reply = await rawExchange(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\nGET /expensive/x HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.match(reply, /^HTTP\/1\.1 400 Bad Request\r\n/, `${target}: ${JSON.stringify(reply)}`);
    assert.equal(JSON.parse(reply.split('\r\n\r\n')[1]!).reason, 'bad_method');
    assert.equal(reply.match(/HTTP\/1\.1 /g)!.length, 1, 'one answer, nothing after it');
  }
  assert.equal(upstream.hits, 0);
});

test('standalone: an upstream that never answers ends in a bounded 504 that gives the single-use payment back', async (t) => {
  const local = new Cleanup();
  t.after(() => local.run());
  const dir = mkdtempSync(join(tmpdir(), 'l402-redteam-hang-'));
  local.add(() => rmSync(dir, { recursive: true, force: true }));
  // Reads requests and answers only when told to; until then it holds every connection open.
  let answer = false;
  const held = new Set<net.Socket>();
  let hits = 0;
  const app = http.createServer((req, res) => {
    req.resume();
    hits++;
    if (answer) res.end('served\n');
  });
  app.on('connection', (s) => {
    held.add(s);
    s.on('close', () => held.delete(s));
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  local.add(async () => {
    for (const s of held) s.destroy();
    await new Promise<void>((r) => app.close(() => r()));
  });
  const p = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${p}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${(app.address() as net.AddressInfo).port}\nupstream_timeout_ms: 1000\nlog: { level: silent }
lightning: { type: dev }
routes:
  - { match: /expensive/, amount_msat: 900000 }
`,
    { env: {} },
  );
  const gate = await startGate(cfg, { log: createLogger('silent') });
  local.add(() => gate.close());
  const w = DevWallet.open(dir);
  local.add(() => w.close());
  const get = (headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: p, path: '/expensive/slow', headers: { connection: 'close', accept: 'application/json', ...headers } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
      req.end();
    });
  const c = JSON.parse((await get()).body) as { macaroon: string; invoice: string };
  const auth = `L402 ${c.macaroon}:${w.pay(c.invoice).toString('hex')}`;
  const r = await get({ authorization: auth });
  assert.equal(r.status, 504, r.body);
  assert.equal(JSON.parse(r.body).payment, 'not_consumed', r.body);
  assert.equal(hits, 1);
  answer = true;
  const again = await get({ authorization: auth });
  assert.equal(again.status, 200, again.body);
  assert.equal((await get({ authorization: auth })).status, 401, 'then spent');
});
