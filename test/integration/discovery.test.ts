// MPP discovery (mpp-specs draft-payment-discovery-00): GET /openapi.json beside /.well-known/l402-services,
// generated from the same routes, through nginx's snippets and in standalone mode. Every paid operation
// carries `x-payment-info` offers that satisfy the draft's JSON Schema and a 402 response.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1, requireTool, startCountingUpstream } from './harness.js';
import { TEST_ROOT_KEY, startStack } from './gate-fixture.js';
import { sendTo } from './standalone-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { nginxSnippets } from '../../src/cli/nginx-conf.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';

const skip = requireTool('nginx') ? false : 'nginx not installed';
const cleanup = new Cleanup();
after(() => cleanup.run());

type Doc = { openapi: string; info: { title: string; version: string }; paths: Record<string, Record<string, { 'x-payment-info': unknown; responses: Record<string, unknown> }>> };

/** The draft's JSON Schema for x-payment-info (single offer or `offers`), checked field by field. */
function checkPaymentInfo(info: unknown, where: string): Array<Record<string, unknown>> {
  assert.ok(info && typeof info === 'object', where);
  const offers = 'offers' in info ? (info as { offers: unknown }).offers : [info];
  if ('offers' in info) assert.deepEqual(Object.keys(info), ['offers'], `${where}: no other member beside offers`);
  assert.ok(Array.isArray(offers) && offers.length >= 1, `${where}: at least one offer`);
  for (const o of offers as Array<Record<string, unknown>>) {
    for (const k of Object.keys(o)) assert.ok(['intent', 'method', 'amount', 'currency', 'description'].includes(k), `${where}: additional property ${k}`);
    assert.ok(o.intent === 'charge' || o.intent === 'session', `${where}: intent`);
    assert.equal(typeof o.method, 'string', `${where}: method`);
    assert.ok(o.amount === null || (typeof o.amount === 'string' && /^(0|[1-9][0-9]*)$/.test(o.amount)), `${where}: amount ${String(o.amount)}`);
    for (const k of ['currency', 'description']) assert.ok(o[k] === undefined || typeof o[k] === 'string', `${where}: ${k}`);
  }
  return offers as Array<Record<string, unknown>>;
}

function checkDoc(doc: Doc): void {
  assert.match(doc.openapi, /^3\.1\./);
  assert.equal(typeof doc.info.title, 'string');
  assert.equal(typeof doc.info.version, 'string');
  assert.ok(Object.keys(doc.paths).length > 0);
  for (const [path, ops] of Object.entries(doc.paths)) {
    assert.ok(path.startsWith('/'), path);
    for (const [method, op] of Object.entries(ops)) {
      assert.ok(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'].includes(method), `${path} ${method}`);
      checkPaymentInfo(op['x-payment-info'], `${method} ${path}`);
      assert.ok(op.responses['402'], `${method} ${path}: a 402 response`);
    }
  }
}

test('/openapi.json through nginx: the draft\'s document, from the same routes as the manifest', { skip }, async () => {
  const s = await startStack(cleanup, { extraRoutes: '  - { match: "~ ^/regex/", amount_msat: 1 }\n  - { match: = /exactly, amount_msat: 1500, access: timed, macaroon_timeout: 60 }\n' });
  const r = await http1(`${s.origin}/openapi.json`);
  assert.equal(r.status, 200, r.body);
  assert.equal(r.headers['content-type'], 'application/json');
  assert.match(String(r.headers['cache-control']), /max-age=300/);
  assert.equal(r.headers['access-control-allow-origin'], '*');
  const doc = JSON.parse(r.body) as Doc;
  checkDoc(doc);
  // The same routes as the manifest: hidden and dry-run routes left out; a regex has no OpenAPI path.
  const manifest = JSON.parse((await http1(`${s.origin}/.well-known/l402-services`)).body) as { routes: Array<{ path: string }> };
  const listed = manifest.routes.map((x) => x.path.replace(/^=\s*/, '')).filter((p) => p.startsWith('/')).sort();
  assert.deepEqual(Object.keys(doc.paths).sort(), listed);
  assert.equal(doc.paths['/hidden'], undefined);
  assert.equal(doc.paths['/shadow'], undefined);
  // Prices and methods as sold: /premium 10000 msat per request over L402; /getonly GET and HEAD only.
  const premium = checkPaymentInfo(doc.paths['/premium']!.get!['x-payment-info'], 'premium');
  assert.deepEqual(premium.map((o) => [o.intent, o.method, o.amount, o.currency]), [['charge', 'l402', '10000', 'msat']]);
  assert.deepEqual(Object.keys(doc.paths['/getonly']!).sort(), ['get', 'head']);
  assert.match(String(checkPaymentInfo(doc.paths['/exactly']!.post!['x-payment-info'], 'exactly')[0]!.description), /60 s/);
  // Read-only, and never behind the paywall.
  assert.equal((await http1(`${s.origin}/openapi.json`, { method: 'POST', body: '' })).status, 405);
  assert.equal(s.upstream.requests.filter((x) => x.url.startsWith('/openapi.json')).length, 0);
});

test('/openapi.json in standalone mode, Cashu offers in the mint\'s unit; manifest.openapi: false leaves it to the upstream', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-openapi-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const upstream = cleanup.use(await startCountingUpstream());
  const start = async (extra: string) => {
    const port = await freePort();
    const cfg = parseConfig(
      `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${upstream.port}\nlog: { level: error }\nlightning: { type: dev }\ncashu: { mints: ["http://127.0.0.1:9"] }\n${extra}routes:\n  - { match: /api/, amount_msat: 2500, methods: [POST] }\n  - { match: /ecash, amount_msat: 1500, rails: [cashu] }\n`,
      { env: {} },
    );
    const gate = await startGate(cfg, { log: createLogger('error') });
    cleanup.add(() => gate.close());
    return port;
  };
  const port = await start('manifest: { name: Example API }\n');
  const r = await sendTo(port, 'GET', '/openapi.json');
  assert.equal(r.status, 200);
  const doc = JSON.parse(r.body) as Doc;
  checkDoc(doc);
  assert.equal(doc.info.title, 'Example API');
  assert.deepEqual(Object.keys(doc.paths['/api/']!), ['post']);
  const api = checkPaymentInfo(doc.paths['/api/']!.post!['x-payment-info'], 'api');
  assert.deepEqual(api.map((o) => [o.method, o.amount, o.currency]), [['l402', '2500', 'msat'], ['cashu', '3', 'sat']], 'Cashu asks whole sats, rounded up as its 402 does');
  const ecash = checkPaymentInfo(doc.paths['/ecash']!.get!['x-payment-info'], 'ecash');
  assert.deepEqual(ecash.map((o) => o.method), ['cashu'], 'a Cashu-only route offers only Cashu');
  assert.equal(upstream.hits, 0);

  const off = await start('manifest: { openapi: false }\nfree_paths: ["= /openapi.json"]\n');
  const own = await sendTo(off, 'GET', '/openapi.json');
  assert.equal(own.status, 200);
  assert.equal(upstream.requests.at(-1)?.url, '/openapi.json', "the upstream's own document");
  assert.doesNotMatch(nginxSnippets({ ...parseConfig(`manifest: { openapi: false }\nlightning: { type: dev }\nroutes:\n  - { match: /a, amount_msat: 1 }\n`, { env: {} }) })['server.conf'], /openapi\.json/);
});
