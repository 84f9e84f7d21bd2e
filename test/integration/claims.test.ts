// A paid request is either served or still paid for. Through real nginx with two l402d processes sharing
// Redis: an l402d that claimed a single-use credential and then failed to answer is retried by nginx on the
// other one, which recognises the same request ($request_id) and lets it pass, exactly once; the protected
// upstream failing after the claim (refused, reset, timed out: nginx's own 502/504) gives the claim back,
// and only to that request. The same in standalone mode. A client can never choose the request identity.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1, requireTool, startNginx, startRedis } from './harness.js';
import { mintLocalCredential, ROUTES_YAML, TEST_ROOT_KEY, writeSnippets } from './gate-fixture.js';
import { startGateProcess, type GateProcess } from './gate-process.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { startAnswerDropper, type AnswerDropper } from '../support/answer-dropper.js';

const nginxBin = requireTool('nginx');
const redisBin = requireTool('redis-server');
const skip = !nginxBin || !redisBin ? 'nginx or redis-server not installed' : false;

const cleanup = new Cleanup();
after(() => cleanup.run());

function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  cleanup.add(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const GATE_CFG = parseConfig(`root_key: ${TEST_ROOT_KEY}\n${ROUTES_YAML}`, { env: {} });

/** Single-use (/premium, per-request) credentials exactly as l402d mints them. */
async function mint(n: number, path = '/premium'): Promise<string[]> {
  const route = GATE_CFG.routes.find((r) => r.match === '/premium')!;
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await mintLocalCredential(route, path)).auth);
  return out;
}

/** The protected app, whose failure mode the test chooses: answers, resets, hangs, or refuses connections. */
interface FaultyUpstream {
  port: number;
  hits: number;
  setMode(m: 'ok' | 'reset' | 'hang' | 'refuse'): Promise<void>;
  stop(): Promise<void>;
}

async function startFaultyUpstream(): Promise<FaultyUpstream> {
  let mode: 'ok' | 'reset' | 'hang' | 'refuse' = 'ok';
  const sockets = new Set<net.Socket>();
  const app = http.createServer((req, res) => {
    req.resume();
    h.hits++;
    res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
    res.end('served\n');
  });
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    // Reset once the request has arrived (the claim is made by then): nginx sees its upstream fail.
    if (mode === 'reset') s.once('data', () => s.resetAndDestroy());
    else if (mode === 'hang') s.resume();
    else app.emit('connection', s);
  });
  const port = await freePort();
  const listen = () => new Promise<void>((r, j) => server.once('error', j).listen(port, '127.0.0.1', () => r()));
  await listen();
  let listening = true;
  const h: FaultyUpstream = {
    port,
    hits: 0,
    async setMode(m) {
      mode = m;
      for (const s of sockets) s.destroy();
      if (m === 'refuse' && listening) {
        await new Promise<void>((r) => server.close(() => r()));
        listening = false;
      } else if (m !== 'refuse' && !listening) {
        await listen();
        listening = true;
      }
    },
    async stop() {
      for (const s of sockets) s.destroy();
      if (listening) await new Promise<void>((r) => server.close(() => r()));
      listening = false;
    },
  };
  return h;
}


const json = (body: string) => JSON.parse(body) as Record<string, unknown>;

let origin: string;
let gates: GateProcess[];
let upstream: FaultyUpstream;
let dropper: AnswerDropper;

before(async () => {
  if (skip) return;
  const dir = tmp('l402-claims-');
  const redis = cleanup.use(await startRedis());
  upstream = await startFaultyUpstream();
  cleanup.add(() => upstream.stop(), 'faulty upstream');
  const ports = [await freePort(), await freePort()];
  gates = [];
  for (const port of ports) {
    const file = join(dir, `l402-${port}.yaml`);
    writeFileSync(file, `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: redis, url: "${redis.url}" }\nlog: { level: info }\n${ROUTES_YAML}`);
    gates.push(cleanup.use(await startGateProcess(file, port)));
  }
  dropper = await startAnswerDropper(ports[0]!, { dropping: true });
  dropper.dropping = false;
  cleanup.add(() => dropper.stop(), 'dropper');
  const snippets = join(dir, 'snippets');
  writeSnippets(parseConfig(`listen: 127.0.0.1:${ports[1]}\nlightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n`, { env: {} }), snippets);
  // The first l402d sits behind the dropper; max_fails=0 keeps nginx trying it (round robin), so about every
  // other request is decided there first and retried on the second.
  const conf = readFileSync(join(snippets, 'upstream.conf'), 'utf8').replace(/server [^;]+;/, `server 127.0.0.1:${dropper.port} max_fails=0;\n    server 127.0.0.1:${ports[1]} max_fails=0;`);
  writeFileSync(join(snippets, 'upstream.conf'), conf);
  const ngPort = await freePort();
  const nginx = cleanup.use(
    await startNginx({
      workers: 1,
      http: `include ${snippets}/upstream.conf;
      server { listen 127.0.0.1:${ngPort}; include ${snippets}/server.conf;
        location /premium { include ${snippets}/protect.conf; proxy_pass http://127.0.0.1:${upstream.port}; proxy_read_timeout 1s; proxy_connect_timeout 1s; } }`,
    }),
  );
  void nginx;
  origin = `http://127.0.0.1:${ngPort}`;
});

const get = (auth: string, headers: Record<string, string | string[]> = {}) => http1(origin + '/premium', { headers: { authorization: auth, accept: 'application/json', ...headers } });

test('nginx retries a paid request on the other l402d after the first claimed it and died before answering: it passes, exactly once; a replay is refused; a client cannot choose the request identity', { skip }, async () => {
  await upstream.setMode('ok');
  const creds = await mint(8);
  dropper.dropping = true;
  dropper.drops = 0;
  const hits0 = upstream.hits;
  try {
    for (const c of creds) {
      const r = await get(c);
      assert.equal(r.status, 200, `first use of a paid credential must be served: ${r.status} ${r.body}`);
    }
  } finally {
    dropper.dropping = false;
  }
  assert.ok(dropper.drops >= 2, `the first l402d answered (and was cut off) for some requests: ${dropper.drops}`);
  assert.equal(upstream.hits - hits0, creds.length, 'each credential served once');
  assert.match(gates[0]!.output(), /"outcome":"allow"/, 'the first l402d did claim before being cut off');
  for (const c of creds) {
    const r = await get(c);
    assert.equal(r.status, 401, r.body);
    assert.equal(json(r.body).reason, 'already_used');
  }
  assert.equal(upstream.hits - hits0, creds.length);

  // A client-sent X-L402-Request-Id never reaches l402d: nginx's $request_id replaces it. Otherwise the same
  // chosen id would make every replay "the same request".
  const [c] = await mint(1);
  const chosen = 'a'.repeat(32);
  const spoof = { 'x-l402-request-id': chosen };
  assert.equal((await get(c!, spoof)).status, 200);
  const variants: Array<Record<string, string | string[]>> = [spoof, { 'X-L402-Request-Id': chosen }, { 'x-l402-request-id': `${chosen}, ${chosen}` }, { 'x-l402-request-id': [chosen, chosen] }];
  for (const h of variants) {
    const r = await get(c!, h);
    assert.equal(r.status, 401, `replay with a chosen request id: ${r.body}`);
    assert.equal(json(r.body).reason, 'already_used');
  }
  assert.equal(upstream.hits - hits0, creds.length + 1);
});

test('the protected upstream fails after the claim (reset, timeout, refused): 502/504 saying the payment was not consumed; the credential then passes exactly once; nobody else can release it', { skip, timeout: 60_000 }, async () => {
  const [c, other] = await mint(2);
  const hits0 = upstream.hits;
  for (const [mode, status] of [['reset', 502], ['hang', 504], ['refuse', 502]] as const) {
    await upstream.setMode(mode);
    const started = Date.now();
    const r = await get(c!);
    assert.ok(Date.now() - started < 5_000, `${mode}: answered within 5 s`);
    assert.equal(r.status, status, `${mode}: ${r.body}`);
    assert.match(String(r.headers['content-type']), /application\/problem\+json/);
    assert.ok(Number(r.headers['retry-after']) >= 1, `${mode}: Retry-After`);
    const b = json(r.body);
    assert.equal(b.status, status);
    assert.equal(b.reason, 'upstream_unavailable');
    assert.equal(b.payment, 'not_consumed', `${mode}: ${r.body}`);
    assert.ok(!r.body.includes(c!.slice(5, 40)), 'no credential in the answer');
  }
  await upstream.setMode('ok');
  assert.equal(upstream.hits, hits0);
  assert.equal((await get(c!)).status, 200, 'the retry after the failures passes');
  assert.equal(upstream.hits - hits0, 1);
  const spent = await get(c!);
  assert.equal(spent.status, 401, spent.body);
  assert.equal(json(spent.body).reason, 'already_used');

  // Another request (another id) asking l402d directly, as nginx would, cannot release the spent claim.
  for (const g of gates) {
    for (const id of [randomBytes(16).toString('hex'), undefined, 'zz', chosenUpper()]) {
      const headers: Record<string, string> = { authorization: c!, 'x-original-uri': '/premium', 'x-l402-uri': '/premium', 'x-original-method': 'GET', 'x-l402-upstream-status': '502' };
      if (id) headers['x-l402-request-id'] = id;
      const r = await http1(`http://127.0.0.1:${g.port}/_l402/release`, { headers });
      assert.equal(r.status, 502);
      assert.notEqual(json(r.body).payment, 'not_consumed', r.body);
    }
  }
  const still = await get(c!);
  assert.equal(still.status, 401, `a spent credential stays spent: ${still.body}`);
  assert.equal(upstream.hits - hits0, 1);

  // Clients cannot reach the release endpoint through nginx (a named location; no location proxies the path).
  const direct = await http1(`${origin}/_l402/release`, { headers: { authorization: other!, 'x-original-uri': '/premium', 'x-l402-uri': '/premium' } });
  assert.equal(direct.status, 404);
  // Another credential is unaffected.
  assert.equal((await get(other!)).status, 200);
  assert.equal(upstream.hits - hits0, 2);
});

function chosenUpper(): string {
  return randomBytes(16).toString('hex').toUpperCase();
}

test('standalone mode: an upstream connection error before any response byte gives this request its claim back; a client-sent request id is ignored', { skip, timeout: 60_000 }, async () => {
  const dir = tmp('l402-claims-standalone-');
  const up = await startFaultyUpstream();
  cleanup.add(() => up.stop(), 'standalone upstream');
  const port = await freePort();
  const cfg = parseConfig(`listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${up.port}\nlog: { level: warn }\n${ROUTES_YAML}`, { env: {} });
  const gate = await startGate(cfg, { log: createLogger('silent') });
  cleanup.add(() => gate.close(), 'standalone l402d');
  const base = `http://127.0.0.1:${port}`;
  const req = (auth: string, headers: Record<string, string> = {}, path = '/premium') => http1(base + path, { headers: { authorization: auth, accept: 'application/json', ...headers } });
  const [c, d] = await mint(2);
  for (const mode of ['refuse', 'reset'] as const) {
    await up.setMode(mode);
    const r = await req(c!);
    assert.equal(r.status, 502, `${mode}: ${r.body}`);
    assert.equal(json(r.body).payment, 'not_consumed', r.body);
    assert.ok(Number(r.headers['retry-after']) >= 1);
  }
  await up.setMode('ok');
  assert.equal((await req(c!)).status, 200);
  assert.equal(up.hits, 1);
  assert.equal((await req(c!)).status, 401);

  // Standalone l402d faces clients: their X-L402-Request-Id is never the request's identity.
  const chosen = 'b'.repeat(32);
  assert.equal((await req(d!, { 'x-l402-request-id': chosen })).status, 200);
  assert.equal((await req(d!, { 'x-l402-request-id': chosen })).status, 401);
  // Nor is the release endpoint reachable: it is not an endpoint in standalone mode.
  const rel = await req(d!, { 'x-l402-request-id': chosen, 'x-original-uri': '/premium', 'x-l402-uri': '/premium', 'x-l402-upstream-status': '502' }, '/_l402/release');
  assert.notEqual(rel.status, 502, rel.body);
  assert.equal((await req(d!, { 'x-l402-request-id': chosen })).status, 401);
  assert.equal(up.hits, 2);
});
