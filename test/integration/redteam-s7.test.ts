// Red team, session 7: one l402d serves every nginx server block. A location pins its route
// (`set $l402_route_pin <id>;`), so a credential bought cheaply on one server never opens another server's
// location for the same path, nor prices it; and what reaches the upstream under an X-L402-* name is only ever
// the gate's. Real nginx with several servers on loopback ports.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import { Cleanup, freePort, grpcClient, http1, http2, requireTool, startCountingUpstream, startGrpcUpstream, startNginx, type CountingUpstream, type GrpcUpstream } from './harness.js';
import { TEST_ROOT_KEY, writeSnippets } from './gate-fixture.js';
import { buyStandalone, sendTo, startStandalone } from './standalone-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { GATE_IDENTITY_HEADERS, GATE_ONLY_HEADERS } from '../../src/cli/nginx-conf.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let upstream: CountingUpstream;
let wallet: DevWallet;
/** Server A: the dear /api/ (pinned to api-a). B: the cheap exact /api/x (pinned to api-b) and /api/y (api-c). */
let A = '';
let B = '';
/** Server C: /api/ without a pin (decided by path; api-c is `pinned: true`, so never by it). */
let C = '';
/** Server D: pins that are wrong (an unknown id, a route that does not cover the location's paths). */
let D = '';
/** Server E: underscores_in_headers on, HTTP/1.1 (E) and h2c (ePort2) with a gRPC location. */
let E = '';
let e2Port = 0;
let grpcUp: GrpcUpstream;
let n = 0;
const u = () => `?r=${++n}`;

before(async () => {
  if (!nginxBin) return;
  const dataDir = mkdtempSync(join(tmpdir(), 'l402-s7-'));
  cleanup.add(() => rmSync(dataDir, { recursive: true, force: true }), 'rm data dir');
  const gatePort = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${gatePort}\ndata_dir: ${dataDir}\nroot_key: ${TEST_ROOT_KEY}\nlightning: { type: dev }\nroutes:
  - { id: api-a, match: /api/, amount_msat: 50000, access: timed, macaroon_timeout: 600 }
  - { id: api-b, match: = /api/x, amount_msat: 1000, access: timed, macaroon_timeout: 600 }
  - { id: api-c, match: = /api/y, amount_msat: 1000, access: timed, macaroon_timeout: 600, pinned: true }
  - { id: content, match: /content.ContentService/, amount_msat: 3000, access: timed, macaroon_timeout: 600 }
`,
    { env: {} },
  );
  const sink = new PassThrough();
  sink.resume();
  const gate = await startGate(cfg, { log: createLogger('warn', sink) });
  cleanup.add(() => gate.close(), 'l402d');
  wallet = DevWallet.open(dataDir);
  cleanup.add(() => wallet.close(), 'wallet');
  upstream = cleanup.use(await startCountingUpstream(), 'upstream');
  const dir = join(dataDir, 'nginx-l402');
  writeSnippets(cfg, dir);
  grpcUp = cleanup.use(await startGrpcUpstream(), 'grpc upstream');
  const [pa, pb, pc, pd, pe] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  e2Port = await freePort();
  const up = `proxy_pass http://127.0.0.1:${upstream.port};`;
  await cleanup.use(
    await startNginx({
      http: `
    include ${dir}/upstream.conf;
    server {
        listen 127.0.0.1:${pa};
        include ${dir}/server.conf;
        location /api/ { set $l402_route_pin api-a; include ${dir}/protect.conf; ${up} }
    }
    server {
        listen 127.0.0.1:${pb};
        include ${dir}/server.conf;
        location = /api/x { set $l402_route_pin api-b; include ${dir}/protect.conf; ${up} }
        location = /api/y { include ${dir}/protect.conf; set $l402_route_pin api-c; ${up} }
    }
    server {
        listen 127.0.0.1:${pc};
        include ${dir}/server.conf;
        location /api/ { include ${dir}/protect.conf; ${up} }
    }
    server {
        listen 127.0.0.1:${pd};
        include ${dir}/server.conf;
        location /api/ { set $l402_route_pin no-such-route; include ${dir}/protect.conf; ${up} }
        location /other/ { set $l402_route_pin api-b; include ${dir}/protect.conf; ${up} }
    }
    server {
        listen 127.0.0.1:${pe};
        listen 127.0.0.1:${e2Port} http2;
        underscores_in_headers on;
        include ${dir}/server.conf;
        location /api/ { include ${dir}/protect.conf; include ${dir}/balance.conf; ${up} }
        location /content.ContentService/ { include ${dir}/protect.conf; grpc_pass grpc://127.0.0.1:${grpcUp.port}; }
    }`,
    }),
    'nginx',
  );
  [A, B, C, D, E] = [pa, pb, pc, pd, pe].map((p) => `http://127.0.0.1:${p}`) as [string, string, string, string, string];
});
after(() => cleanup.run());

async function buy(origin: string, path: string): Promise<{ auth: string; amountMsat: number }> {
  const r = await http1(origin + path, { headers: { accept: 'application/json' } });
  assert.equal(r.status, 402, `${origin}${path}: ${r.body}`);
  const c = JSON.parse(r.body) as { macaroon: string; invoice: string; amount_msat: number };
  return { auth: `L402 ${c.macaroon}:${wallet.pay(c.invoice).toString('hex')}`, amountMsat: c.amount_msat };
}

test('a location pins its route: a credential bought cheaply on one server never opens another server\'s location for the same path', { skip }, async () => {
  // Each server prices /api/x by its own location's route.
  const cheap = await buy(B, '/api/x');
  assert.equal(cheap.amountMsat, 1000);
  const dear = await buy(A, '/api/x');
  assert.equal(dear.amountMsat, 50000, 'server A sells /api/x at its own route\'s price');
  upstream.reset();
  // Paid where bought, twice (the second may come from nginx's auth cache).
  for (let i = 0; i < 2; i++) assert.equal((await http1(B + '/api/x', { headers: { authorization: cheap.auth } })).status, 200);
  // Never on the other server, also with the same Host header and query (the auth cache key holds the pin).
  for (const headers of [{ authorization: cheap.auth }, { authorization: cheap.auth, host: new URL(B).host }] as Array<Record<string, string>>) {
    const r = await http1(A + '/api/x', { headers: { ...headers, accept: 'application/json' } });
    assert.equal(r.status, 401, r.body);
    assert.match(r.body, /wrong_route/);
  }
  // The dear credential opens its own server, not the cheap location either.
  assert.equal((await http1(A + '/api/x' + u(), { headers: { authorization: dear.auth } })).status, 200);
  assert.equal((await http1(B + '/api/x' + u(), { headers: { authorization: dear.auth } })).status, 401);
  assert.equal(upstream.hits, 3);
});

test('a `pinned: true` route decides no location that does not pin it; a location without a pin is priced by path', { skip }, async () => {
  const y = await buy(B, '/api/y');
  assert.equal(y.amountMsat, 1000);
  // Server C's /api/ has no pin: /api/y is api-a's there (api-c is pinned), at api-a's price.
  assert.equal((await buy(C, '/api/y')).amountMsat, 50000);
  upstream.reset();
  assert.equal((await http1(B + '/api/y' + u(), { headers: { authorization: y.auth } })).status, 200);
  for (const origin of [A, C]) {
    const r = await http1(origin + '/api/y' + u(), { headers: { authorization: y.auth, accept: 'application/json' } });
    assert.equal(r.status, 401, `${origin}: ${r.body}`);
  }
  assert.equal(upstream.hits, 1);
});

test('a pin naming no route, or a route that does not cover the path, is refused (403), never decided by path', { skip }, async () => {
  const paid = await buy(A, '/api/z');
  upstream.reset();
  for (const [path, auth] of [['/api/z', undefined], ['/api/z', paid.auth], ['/other/x', undefined], ['/api/x', undefined]] as const) {
    const r = await http1(D + path + u(), { headers: { accept: 'application/json', ...(auth ? { authorization: auth } : {}) } });
    assert.equal(r.status, 403, `${path}: ${r.body}`);
    assert.match(r.body, /no_route/);
  }
  assert.equal(upstream.hits, 0);
});

/** Every spelling of a header name with "_" for any of its "-" (the form itself included). */
function spellings(name: string): string[] {
  const parts = name.split('-');
  const out: string[] = [];
  for (let mask = 0; mask < 1 << (parts.length - 1); mask++) out.push(parts.reduce((acc, p, i) => (i === 0 ? p : acc + (mask & (1 << (i - 1)) ? '_' : '-') + p), ''));
  return out;
}

/** The X-L402-* headers the upstream got, folded as CGI-style apps read them ("_" as "-", lower case). */
function gateHeadersSeen(h: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(h).filter(([k]) => k.replace(/_/g, '-').toLowerCase().startsWith('x-l402-')));
}

test('a client\'s X-L402-* header of any name the gate uses, in any spelling, never reaches the upstream (HTTP/1.1, HTTP/2)', { skip }, async () => {
  const paid = await buy(E, '/api/q');
  // Half the spellings per request (nginx and Node cap the header count), every value a forgery.
  const all = [...GATE_ONLY_HEADERS, ...GATE_IDENTITY_HEADERS].flatMap(spellings);
  const halves = [all.filter((_, i) => i % 2 === 0), all.filter((_, i) => i % 2 === 1)];
  const identity = new Set(GATE_IDENTITY_HEADERS.map((h) => h.toLowerCase()));
  for (const half of halves) {
    for (const send of ['h1', 'h2'] as const) {
      upstream.reset();
      const forged: Record<string, string> = { authorization: paid.auth };
      for (const name of half) forged[send === 'h2' ? name.toLowerCase() : name] = 'forged';
      const r = send === 'h1' ? await http1(E + '/api/q' + u(), { headers: forged }) : await http2(`http://127.0.0.1:${e2Port}`, '/api/q' + u(), { headers: forged });
      assert.equal(r.status, 200, `${send}: ${r.body}`);
      assert.equal(upstream.hits, 1);
      const seen = gateHeadersSeen(upstream.requests[0]!.headers);
      for (const [k, v] of Object.entries(seen)) {
        assert.ok(identity.has(k), `${send}: ${k} reached the upstream`);
        assert.notEqual(v, 'forged', `${send}: ${k}`);
      }
      assert.equal(seen['x-l402-route'], 'api-a');
    }
  }
});

test('gRPC: a client\'s metadata under a name the gate uses never reaches the upstream', { skip }, async () => {
  const client = grpcClient(e2Port);
  try {
    const forged: Record<string, string> = {};
    for (const name of [...GATE_ONLY_HEADERS, ...GATE_IDENTITY_HEADERS]) forged[name.toLowerCase()] = 'forged';
    const e = (await client.getContent({ id: 'a' }, forged).catch((err: grpc.ServiceError) => err)) as grpc.ServiceError;
    assert.equal(e.code, 13);
    const m = /macaroon="([^"]+)", invoice="([^"]+)"/.exec(String(e.metadata.get('www-authenticate')[0]))!;
    grpcUp.reset();
    await client.getContent({ id: 'a' }, { ...forged, authorization: `L402 ${m[1]}:${wallet.pay(m[2]!).toString('hex')}` });
    const seen = gateHeadersSeen(grpcUp.metadata.at(-1)!);
    for (const [k, v] of Object.entries(seen)) {
      assert.ok(GATE_IDENTITY_HEADERS.some((h) => h.toLowerCase() === k), `${k} reached the gRPC upstream`);
      assert.notEqual(String(v), 'forged', k);
    }
    assert.equal(seen['x-l402-route'], 'content');
  } finally {
    client.close();
  }
});

test('the payment page offers the credential cookie only where /_l402/page/cookie would find the same route', { skip }, async () => {
  const page = async (origin: string, path: string) => {
    const r = await http1(origin + path, { headers: { accept: 'text/html' } });
    assert.equal(r.status, 402, r.body);
    return /"cookie":(true|false)/.exec(r.body)?.[1];
  };
  // B's /api/x pins api-b, which is also the path's route; A's pins api-a, whose cookie the endpoint cannot set.
  assert.equal(await page(B, '/api/x'), 'true');
  assert.equal(await page(A, '/api/x'), 'false');
  assert.equal(await page(A, '/api/q'), 'true');
  // And the endpoint itself never sets a cookie for a credential of another route than the path's.
  const dear = await buy(A, '/api/x');
  const r = await http1(A + '/_l402/page/cookie', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin' },
    body: new URLSearchParams({ uri: '/api/x', credential: dear.auth.slice('L402 '.length) }).toString(),
  });
  assert.equal(r.status, 400, r.body);
  assert.equal(r.headers['set-cookie'], undefined);
});

test('route_pins: required: a location without a pin decides nothing (403 no_route), a pinned one is decided as usual', { skip }, async () => {
  const local = new Cleanup();
  try {
    const dataDir = mkdtempSync(join(tmpdir(), 'l402-s7-req-'));
    local.add(() => rmSync(dataDir, { recursive: true, force: true }), 'rm data dir');
    const cfg = parseConfig(
      `listen: 127.0.0.1:${await freePort()}\ndata_dir: ${dataDir}\nroot_key: ${TEST_ROOT_KEY}\nlightning: { type: dev }\nroute_pins: required\nroutes:
  - { id: api, match: /api/, amount_msat: 5000, access: timed, macaroon_timeout: 600 }
`,
      { env: {} },
    );
    assert.throws(() => parseConfig(`root_key: ${TEST_ROOT_KEY}\nlightning: { type: dev }\nupstream: http://127.0.0.1:1\nroute_pins: required\nroutes: [{ match: /a, amount_msat: 1 }]\n`, { env: {} }), /route_pins/);
    const sink = new PassThrough();
    const logs: string[] = [];
    sink.on('data', (b: Buffer) => logs.push(b.toString()));
    const gate = await startGate(cfg, { log: createLogger('warn', sink) });
    local.add(() => gate.close(), 'l402d');
    const w = DevWallet.open(dataDir);
    local.add(() => w.close(), 'wallet');
    const dir = join(dataDir, 'nginx-l402');
    writeSnippets(cfg, dir);
    const port = await freePort();
    local.use(await startNginx({ http: `
    include ${dir}/upstream.conf;
    server {
        listen 127.0.0.1:${port};
        include ${dir}/server.conf;
        location /api/ { set $l402_route_pin api; include ${dir}/protect.conf; proxy_pass http://127.0.0.1:${upstream.port}; }
        location /api/forgot/ { include ${dir}/protect.conf; proxy_pass http://127.0.0.1:${upstream.port}; }
    }` }), 'nginx');
    const origin = `http://127.0.0.1:${port}`;
    const r = await http1(origin + '/api/a', { headers: { accept: 'application/json' } });
    assert.equal(r.status, 402, r.body);
    const c = JSON.parse(r.body) as { macaroon: string; invoice: string };
    const auth = `L402 ${c.macaroon}:${w.pay(c.invoice).toString('hex')}`;
    upstream.reset();
    assert.equal((await http1(origin + '/api/a' + u(), { headers: { authorization: auth } })).status, 200);
    for (const headers of [{ accept: 'application/json' }, { accept: 'application/json', authorization: auth }] as Array<Record<string, string>>) {
      const f = await http1(origin + '/api/forgot/x' + u(), { headers });
      assert.equal(f.status, 403, f.body);
      assert.match(f.body, /no_route/);
    }
    assert.equal(upstream.hits, 1);
    assert.match(logs.join(''), /no_route_pin/);
  } finally {
    await local.run();
  }
});

test('a client\'s X-L402-Route-Pin (any spelling) pins nothing: behind nginx, and in standalone mode', { skip }, async () => {
  const cheap = await buy(B, '/api/x');
  for (const name of ['X-L402-Route-Pin', 'X_L402_Route_Pin']) {
    for (const [origin, pin] of [[A, 'api-b'], [D, 'api-b']] as const) {
      const r = await http1(origin + '/api/x' + u(), { headers: { authorization: cheap.auth, accept: 'application/json', [name]: pin } });
      assert.notEqual(r.status, 200, `${origin} ${name}: ${r.body}`);
    }
  }
  const local = new Cleanup();
  try {
    const st = await startStandalone(local, 's7-pin');
    const auth = await buyStandalone(st, '/cheap/a');
    for (const name of ['X-L402-Route-Pin', 'X_L402_Route_Pin']) {
      const r = await sendTo(st.port, 'GET', '/expensive/a', { authorization: auth, [name]: '/cheap/' });
      assert.equal(r.status, 401, r.body);
      assert.match(r.body, /wrong_route/);
    }
    assert.equal(st.upstream.hits, 0);
  } finally {
    await local.run();
  }
});
